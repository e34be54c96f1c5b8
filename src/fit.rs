//! Fitting a Gaussian mixture by expectation-maximisation, as scikit-learn's
//! `GaussianMixture` does, with every E-step on the GPU.
//!
//! One iteration is one [`GmmReduceOp`] ([`GmmReduction::CenteredStats`], or
//! [`GmmReduction::CenteredScatter`] for full covariances): the log-joint of every point and
//! component, its row log-sum-exp and the responsibilities stay on the GPU, and only the
//! `k`- and `k × dims`-sized sums — `N_k`, `Σ r (x − μ_k)`, the scatter about the current mean —
//! and the total log-likelihood are read back. The M-step runs on the host in f64 (it touches
//! `k × dims²` numbers) with scikit-learn's formulas: `N_k + 10 ε` (f64's ε) so that a component
//! that loses all its points keeps a tiny weight instead of dividing by zero, `reg_covar` on the
//! variances, precisions' Cholesky factors from the covariances' (an ill-conditioned covariance
//! is scikit-learn's error). The scatter is taken about the current means and turned into
//! scikit-learn's `Σ r x²/N − μ²` exactly (in exact arithmetic), without its cancellation far
//! from the origin.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64;

use crate::engine::device::Gpu;
use crate::error::Error;
use crate::gmm::{
    Covariance, Gmm, GmmCenteredStats, GmmOp, GmmOutput, GmmReduceOp, GmmReduction, KMeansStepOp,
    dim_pairs,
};

/// The covariance of each component, as scikit-learn's `covariance_type` (`tied` is not
/// offered).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CovarianceType {
    /// A full `dims × dims` covariance per component (scikit-learn's default).
    #[default]
    Full,
    /// A diagonal covariance per component.
    Diag,
    /// One variance per component.
    Spherical,
    /// One full `dims × dims` covariance all components share.
    Tied,
}

impl CovarianceType {
    /// scikit-learn's name: `full`, `diag`, `spherical` or `tied`.
    pub fn name(self) -> &'static str {
        match self {
            CovarianceType::Full => "full",
            CovarianceType::Diag => "diag",
            CovarianceType::Spherical => "spherical",
            CovarianceType::Tied => "tied",
        }
    }

    fn of(cov: &Covariance) -> CovarianceType {
        match cov {
            Covariance::Full(_) => CovarianceType::Full,
            Covariance::Diag(_) => CovarianceType::Diag,
            Covariance::Spherical(_) => CovarianceType::Spherical,
            Covariance::Tied(_) => CovarianceType::Tied,
        }
    }
}

/// How the first parameters are chosen (scikit-learn's `init_params`, and its `*_init`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum InitParams {
    /// scikit-learn's default `kmeans`: the labels of a k-means run (scikit-learn's
    /// `KMeans(n_init=1)`: k-means++ seeding, then Lloyd iterations until no centre moves, the
    /// centres' total squared shift is at most 1e−4 times the mean variance of the dimensions,
    /// or 300 iterations), one-hot responsibilities, then one M-step. The assignments are GPU
    /// passes, and the centroid sums too where [`GaussianMixture::centroid_sums`] says so (by
    /// default, off CPU adapters); an empty cluster keeps its centre.
    #[default]
    KMeans,
    /// scikit-learn's `k-means++`: `n_components` points chosen by k-means++ seeding (squared
    /// distances evaluated on the GPU, `2 + ⌊ln k⌋` candidates per step), each the sole member
    /// of its component: means at those points, covariances `reg_covar`, weights `1 / n` (as
    /// scikit-learn's first M-step leaves them; the first lower bound includes their log-sum).
    KMeansPlusPlus,
    /// scikit-learn's `random`: responsibilities drawn uniformly and normalised per point, then
    /// one M-step (on the host, in f64).
    Random,
    /// scikit-learn's `random_from_data`: `n_components` distinct points drawn uniformly, each
    /// the sole member of its component, then the M-step of `k-means++`.
    RandomFromData,
    /// The caller's parameters (their covariance type must be the fit's; a tied fit takes
    /// [`Covariance::Tied`]).
    Given(Gmm),
    /// scikit-learn's `weights_init`, `means_init` and `precisions_init` given apart: each one
    /// given replaces what `init`'s first M-step made, as scikit-learn's `_initialize` does
    /// (the covariances not given are those of `init`'s responsibilities about their own
    /// means, even where the means are given). `init` is `KMeans`, `KMeansPlusPlus`, `Random`
    /// or `RandomFromData`; `covariance` as [`InitParams::Given`] takes it.
    GivenPartly {
        /// What makes the parameters not given.
        init: Box<InitParams>,
        /// `k` weights summing to 1.
        weights: Option<Vec<f32>>,
        /// `k × dims` means.
        means: Option<Vec<f32>>,
        /// The covariances, of the fit's type.
        covariance: Option<Covariance>,
    },
    /// scikit-learn's `warm_start=True` on a fitted estimator: EM continues from a previous
    /// fit's parameters, in f64 as its last M-step left them, for up to `max_iter` more
    /// iterations. Every initialisation starts there, so `n_init` has no effect (scikit-learn
    /// runs one then).
    WarmStart(Box<FittedGmm>),
}

/// One EM iteration, for a progress callback.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FitProgress {
    /// Which initialisation (0-based, of `n_init`).
    pub init: usize,
    /// Iterations done in this initialisation (1-based).
    pub iter: usize,
    /// The iteration limit.
    pub max_iter: usize,
    /// The mean log-likelihood per point under the parameters before this iteration's M-step.
    pub lower_bound: f64,
    /// Its change from the previous iteration (`+inf` on the first).
    pub change: f64,
}

/// Options of an EM fit, with scikit-learn's defaults (`GaussianMixture::new(k)`), set with the
/// builder methods.
///
/// ```no_run
/// use logdomain::{CovarianceType, GaussianMixture, Gpu};
/// let gpu = Gpu::new()?;
/// let points: Vec<f32> = (0..2000).map(|i| ((i % 2) as f32) * 10.0 + (i as f32).sin()).collect();
/// let fit = GaussianMixture::new(2)
///     .covariance_type(CovarianceType::Diag)
///     .seed(7)
///     .fit(&gpu, &points, 1000, 2)?;
/// println!("{} iterations, lower bound {}", fit.n_iter, fit.lower_bound);
/// let labels = fit.predict(&gpu, &points, 1000)?;
/// # Ok::<(), logdomain::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianMixture {
    /// Number of components.
    pub n_components: usize,
    /// Covariance of each component.
    pub covariance_type: CovarianceType,
    /// Convergence threshold on the change of the lower bound (1e−3).
    pub tol: f64,
    /// Added to the covariances' diagonals (1e−6).
    pub reg_covar: f64,
    /// EM iterations per initialisation (100).
    pub max_iter: usize,
    /// Initialisations; the best lower bound is kept (1).
    pub n_init: usize,
    /// How the parameters start.
    pub init_params: InitParams,
    /// Seed of the random choices (k-means++, random responsibilities, sampling).
    pub seed: u64,
    /// Bytes of points kept on each device for the whole fit ([`DEFAULT_RESIDENT_BYTES`],
    /// 1 GiB); beyond, each E-step uploads the points batch by batch into one buffer a device,
    /// so the points need not fit in the devices' memory (the same bits either way).
    pub resident_bytes: u64,
    /// Where the `KMeans` initialisation's Lloyd iterations sum each cluster's points.
    pub centroid_sums: CentroidSums,
}

/// Where the Lloyd iterations of the `KMeans` initialisation sum each cluster's points.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CentroidSums {
    /// On the devices, unless one is a CPU adapter (lavapipe, llvmpipe, WARP): there the
    /// device is the host's own cores, and the host's sum from the labels, one pass over the
    /// points, is the cheaper (docs/performance.md, "k-means on the GPU").
    #[default]
    Auto,
    /// On the devices ([`crate::KMeansStepOp`]: the labels, then per centre `N` and
    /// `Σ (x − c)`), where one invocation holds every centre of a point; else on the host.
    Device,
    /// On the host, in f64 in point order, from the labels the devices compute.
    Host,
}

/// A fitted mixture: the parameters (in the crate's [`Gmm`] form and in scikit-learn's
/// `covariances_` layout) and how the fit went.
#[derive(Clone, Debug, PartialEq)]
pub struct FittedGmm {
    /// The parameters, ready for [`Gpu::gmm_score_samples`].
    pub gmm: Gmm,
    /// scikit-learn's `weights_`, in f64 as the M-step computed them.
    pub weights: Vec<f64>,
    /// scikit-learn's `means_` (`k × dims`), in f64 as the M-step computed them.
    pub means: Vec<f64>,
    /// Dimensions of a point.
    pub dims: usize,
    /// The covariance type.
    pub covariance_type: CovarianceType,
    /// scikit-learn's `covariances_`: `k × dims × dims` (full), `k × dims` (diag), `k`
    /// (spherical) or `dims × dims` (tied), in f64 as the M-step computed them.
    pub covariances: Vec<f64>,
    /// scikit-learn's `precisions_cholesky_`, same layout as the covariances (upper triangular
    /// for full and tied; `1/√σ²` otherwise).
    pub precisions_cholesky: Vec<f64>,
    /// Whether the lower bound changed by less than `tol` before `max_iter`.
    pub converged: bool,
    /// Iterations of the kept initialisation.
    pub n_iter: usize,
    /// Mean log-likelihood per point at the last iteration (scikit-learn's `lower_bound_`).
    pub lower_bound: f64,
    /// The lower bound after each iteration of the kept initialisation.
    pub lower_bounds: Vec<f64>,
}

/// The E-step's sums in f64: the GPU's per batch of points, added on the host.
#[derive(Clone, Debug, Default)]
struct Stats64 {
    /// `Σ log p(x)`.
    ll: f64,
    /// `Σ r` per component.
    nk: Vec<f64>,
    /// `Σ r (x − μ)`, `k × dims`.
    s1: Vec<f64>,
    /// `Σ r (x − μ)²`, `k × dims`.
    s2: Vec<f64>,
    /// `Σ r (x_a − μ_a)(x_b − μ_b)`, `a < b`, `k × dims (dims − 1) / 2` (full only).
    cross: Vec<f64>,
}

impl Stats64 {
    /// Zero sums of `k` components in `d` dimensions, the off-diagonal ones with `scatter`.
    fn zeros(k: usize, d: usize, scatter: bool) -> Stats64 {
        Stats64 {
            ll: 0.0,
            nk: vec![0.0; k],
            s1: vec![0.0; k * d],
            s2: vec![0.0; k * d],
            cross: vec![0.0; if scatter { k * dim_pairs(d) } else { 0 }],
        }
    }

    /// Adds a point of deviation `dev` (from component `c`'s centre) with responsibility `r`.
    fn push(&mut self, c: usize, r: f64, dev: &[f64]) {
        let d = dev.len();
        self.nk[c] += r;
        let (s1, s2) = (
            &mut self.s1[c * d..(c + 1) * d],
            &mut self.s2[c * d..(c + 1) * d],
        );
        for ((s1, s2), &v) in s1.iter_mut().zip(s2.iter_mut()).zip(dev) {
            *s1 += r * v;
            *s2 += r * v * v;
        }
        if !self.cross.is_empty() {
            let mut q = c * dim_pairs(d);
            for a in 0..d {
                for b in a + 1..d {
                    self.cross[q] += r * dev[a] * dev[b];
                    q += 1;
                }
            }
        }
    }

    fn add(&mut self, s: &GmmCenteredStats) {
        fn acc(into: &mut Vec<f64>, from: &[f32]) {
            into.resize(from.len(), 0.0);
            into.iter_mut()
                .zip(from)
                .for_each(|(a, &b)| *a += f64::from(b));
        }
        self.ll += f64::from(s.log_likelihood);
        acc(&mut self.nk, &s.resp_sums);
        acc(&mut self.s1, &s.sum_dev);
        acc(&mut self.s2, &s.sum_dev2);
        acc(&mut self.cross, &s.cross);
    }
}

/// Which responsibilities an M-step takes.
#[derive(Clone, Copy, Debug)]
enum Resp {
    /// An E-step's (each point's sum to 1): weights `N_k / Σ N`.
    EStep,
    /// An initialisation's of `n` points that sum to 1 per point (k-means labels, random):
    /// weights `N_k / n`, as scikit-learn's `_initialize` leaves them.
    Init(usize),
    /// One point per component (k-means++, random_from_data): weights `N_k / n`, and
    /// scikit-learn's tied covariance `(XᵀX − Σ N_k μ_k μ_kᵀ) / Σ N_k` in full.
    OnePoint(usize),
}

/// The parameters in f64, as the M-step leaves them.
#[derive(Clone, Debug)]
struct Params {
    weights: Vec<f64>,
    means: Vec<f64>,
    covariances: Vec<f64>,
    precisions_cholesky: Vec<f64>,
}

impl GaussianMixture {
    /// `n_components` components and scikit-learn's defaults: full covariances, `tol` 1e−3,
    /// `reg_covar` 1e−6, `max_iter` 100, `n_init` 1, k-means initialisation, seed 0.
    pub fn new(n_components: usize) -> GaussianMixture {
        GaussianMixture {
            n_components,
            covariance_type: CovarianceType::Full,
            tol: 1e-3,
            reg_covar: 1e-6,
            max_iter: 100,
            n_init: 1,
            init_params: InitParams::KMeans,
            seed: 0,
            resident_bytes: DEFAULT_RESIDENT_BYTES,
            centroid_sums: CentroidSums::Auto,
        }
    }

    /// Sets the covariance type.
    pub fn covariance_type(mut self, t: CovarianceType) -> Self {
        self.covariance_type = t;
        self
    }

    /// Sets the convergence threshold.
    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }

    /// Sets the regularisation added to the covariances' diagonals.
    pub fn reg_covar(mut self, reg: f64) -> Self {
        self.reg_covar = reg;
        self
    }

    /// Sets the iteration limit.
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self
    }

    /// Sets the number of initialisations.
    pub fn n_init(mut self, n_init: usize) -> Self {
        self.n_init = n_init;
        self
    }

    /// Sets the initialisation.
    pub fn init_params(mut self, init: InitParams) -> Self {
        self.init_params = init;
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the bytes of points kept on each device ([`GaussianMixture::resident_bytes`]).
    pub fn resident_bytes(mut self, bytes: u64) -> Self {
        self.resident_bytes = bytes;
        self
    }

    /// Sets where k-means sums its clusters ([`GaussianMixture::centroid_sums`]).
    pub fn centroid_sums(mut self, place: CentroidSums) -> Self {
        self.centroid_sums = place;
        self
    }

    /// Fits `n` points (row-major `n × dims`, finite) by EM.
    pub fn fit(
        &self,
        gpu: &Gpu,
        points: &[f32],
        n: usize,
        dims: usize,
    ) -> Result<FittedGmm, Error> {
        self.fit_with_progress(gpu, points, n, dims, |_| {})
    }

    /// [`GaussianMixture::fit`], calling `progress` after every iteration.
    pub fn fit_with_progress(
        &self,
        gpu: &Gpu,
        points: &[f32],
        n: usize,
        dims: usize,
        progress: impl FnMut(FitProgress),
    ) -> Result<FittedGmm, Error> {
        self.fit_on_with_progress(&[gpu], points, n, dims, progress)
    }

    /// [`GaussianMixture::fit`] on several devices at once: the points go in batches (as on
    /// one device, the batch size the smallest any device needs), batch `b` to device
    /// `b mod len`, and each E-step's sums are added in batch order, so the result is the same
    /// every run and, where the devices compute the same bits, that of one device.
    ///
    /// ```no_run
    /// use logdomain::{AdapterChoice, GaussianMixture, Gpu};
    /// let on = |backend: &str| {
    ///     Gpu::with_choice(&AdapterChoice { backend: Some(backend.into()), ..Default::default() })
    /// };
    /// let (a, b) = (on("vulkan")?, on("gl")?);
    /// let points: Vec<f32> = (0..20_000).map(|i| (i % 7) as f32 + (i as f32).sin()).collect();
    /// let fit = GaussianMixture::new(4).fit_on(&[&a, &b], &points, 10_000, 2)?;
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn fit_on(
        &self,
        gpus: &[&Gpu],
        points: &[f32],
        n: usize,
        dims: usize,
    ) -> Result<FittedGmm, Error> {
        self.fit_on_with_progress(gpus, points, n, dims, |_| {})
    }

    /// [`GaussianMixture::fit_on`], calling `progress` after every iteration.
    pub fn fit_on_with_progress(
        &self,
        gpus: &[&Gpu],
        points: &[f32],
        n: usize,
        dims: usize,
        mut progress: impl FnMut(FitProgress),
    ) -> Result<FittedGmm, Error> {
        self.validate(points, n, dims)?;
        // scikit-learn's tied covariance of one-point components needs the points' scatter
        // about their mean, once per fit.
        let base = match &self.init_params {
            InitParams::GivenPartly { init, .. } => init.as_ref(),
            other => other,
        };
        let gram = (self.covariance_type == CovarianceType::Tied
            && matches!(
                base,
                InitParams::KMeansPlusPlus | InitParams::RandomFromData
            ))
        .then(|| Gram::of(points, dims));
        let data = Resident::new(
            gpus,
            points,
            dims,
            self.n_components,
            self.covariance_type,
            self.resident_bytes,
        )?;
        let mut rng = Pcg64::seed_from_u64(self.seed);
        let mut best: Option<FittedGmm> = None;
        let inits = if matches!(self.init_params, InitParams::WarmStart(_)) {
            1
        } else {
            self.n_init
        };
        for init in 0..inits {
            let mut params =
                self.initial(&self.init_params, &data, points, gram.as_ref(), &mut rng)?;
            let mut lower = f64::NEG_INFINITY;
            let mut history = Vec::new();
            let mut converged = false;
            for iter in 1..=self.max_iter {
                let gmm = self.to_gmm(&params);
                let stats = data.centered_stats(&gmm, self.covariance_type)?;
                // The kernels take weights that sum to 1; an initialisation's need not
                // (scikit-learn's from one-point components sum to k / n): log p(x) moves by
                // the log of their sum.
                let ll = stats.ll + n as f64 * params.weights.iter().sum::<f64>().ln();
                if !ll.is_finite() {
                    return Err(Error::Value(format!(
                        "the log-likelihood became {ll} at iteration {iter}; the data or the \
                         initial parameters make a component degenerate (try a larger reg_covar)"
                    )));
                }
                params = self.m_step(&stats, &gmm, dims, gram.as_ref(), Resp::EStep)?;
                let prev = lower;
                lower = ll / n as f64;
                history.push(lower);
                let change = lower - prev;
                progress(FitProgress {
                    init,
                    iter,
                    max_iter: self.max_iter,
                    lower_bound: lower,
                    change,
                });
                if change.abs() < self.tol {
                    converged = true;
                    break;
                }
            }
            let fitted = FittedGmm {
                gmm: self.to_gmm(&params),
                weights: params.weights,
                means: params.means,
                dims,
                covariance_type: self.covariance_type,
                covariances: params.covariances,
                precisions_cholesky: params.precisions_cholesky,
                converged,
                n_iter: history.len(),
                lower_bound: lower,
                lower_bounds: history,
            };
            // scikit-learn keeps the first of equal bounds, and any over none.
            if best
                .as_ref()
                .is_none_or(|b| fitted.lower_bound > b.lower_bound)
            {
                best = Some(fitted);
            }
        }
        best.ok_or_else(|| Error::Value("n_init must be at least 1".into()))
    }

    /// Checks the options and the points as [`GaussianMixture::fit`] does first, without a
    /// GPU: the error a fit would return, or `Ok`.
    pub fn validate(&self, points: &[f32], n: usize, dims: usize) -> Result<(), Error> {
        let k = self.n_components;
        if k == 0 {
            return Err(Error::Value("n_components must be at least 1".into()));
        }
        if dims == 0 {
            return Err(Error::Shape("points need at least one dimension".into()));
        }
        crate::gmm::check_points(points.len(), n, dims)?;
        if n < k {
            return Err(Error::Value(format!(
                "expected n_samples >= n_components, got n_components = {k}, n_samples = {n}"
            )));
        }
        if let Some(i) = points.iter().position(|v| !v.is_finite()) {
            return Err(Error::Value(format!(
                "point {} (dimension {}) is {}; the points must be finite",
                i / dims,
                i % dims,
                points[i]
            )));
        }
        if self.tol.is_nan() || self.tol < 0.0 {
            return Err(Error::Value(format!("tol is {}; it must be ≥ 0", self.tol)));
        }
        if !(self.reg_covar >= 0.0 && self.reg_covar.is_finite()) {
            return Err(Error::Value(format!(
                "reg_covar is {}; it must be finite and ≥ 0",
                self.reg_covar
            )));
        }
        if self.max_iter == 0 || self.n_init == 0 {
            return Err(Error::Value(
                "max_iter and n_init must be at least 1".into(),
            ));
        }
        if let InitParams::Given(g) = &self.init_params {
            let t = CovarianceType::of(&g.covariance);
            if t != self.covariance_type {
                return Err(Error::Value(format!(
                    "the initial parameters have {} covariances; the fit is for {}",
                    t.name(),
                    self.covariance_type.name()
                )));
            }
            if g.weights.len() != k {
                return Err(Error::Value(format!(
                    "the initial parameters have {} components; n_components is {k}",
                    g.weights.len()
                )));
            }
        }
        if let InitParams::GivenPartly {
            init,
            weights,
            means,
            covariance,
        } = &self.init_params
        {
            if !matches!(
                init.as_ref(),
                InitParams::KMeans
                    | InitParams::KMeansPlusPlus
                    | InitParams::Random
                    | InitParams::RandomFromData
            ) {
                return Err(Error::Value(
                    "GivenPartly's init must be KMeans, KMeansPlusPlus, Random or RandomFromData"
                        .into(),
                ));
            }
            let length = |what: &'static str, v: &Option<Vec<f32>>, expected: usize| match v {
                Some(v) if v.len() != expected => Err(Error::InputLength {
                    what,
                    expected,
                    actual: v.len(),
                }),
                _ => Ok(()),
            };
            length("weights_init (k)", weights, k)?;
            length("means_init (k × dims)", means, k * dims)?;
            if let Some(c) = covariance {
                let t = CovarianceType::of(c);
                if t != self.covariance_type {
                    return Err(Error::Value(format!(
                        "the initial covariances are {}; the fit is for {}",
                        t.name(),
                        self.covariance_type.name()
                    )));
                }
            }
        }
        if let InitParams::WarmStart(f) = &self.init_params {
            if f.covariance_type != self.covariance_type {
                return Err(Error::Value(format!(
                    "the warm start has {} covariances; the fit is for {}",
                    f.covariance_type.name(),
                    self.covariance_type.name()
                )));
            }
            if (f.n_components(), f.dims) != (k, dims) {
                return Err(Error::Value(format!(
                    "the warm start has {} components of {} dimensions; the fit is for {k} of \
                     {dims}",
                    f.n_components(),
                    f.dims
                )));
            }
        }
        Ok(())
    }

    /// The first parameters of one initialisation by `init`.
    fn initial(
        &self,
        init: &InitParams,
        data: &Resident,
        points: &[f32],
        gram: Option<&Gram>,
        rng: &mut Pcg64,
    ) -> Result<Params, Error> {
        let (n, d, k) = (data.n, data.dims, self.n_components);
        let to64 = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
        match init {
            InitParams::GivenPartly {
                init,
                weights,
                means,
                covariance,
            } => {
                let mut p = self.initial(init, data, points, gram, rng)?;
                if let Some(w) = weights {
                    p.weights = to64(w);
                }
                if let Some(m) = means {
                    p.means = to64(m);
                }
                if let Some(c) = covariance {
                    (p.covariances, p.precisions_cholesky) = given_covariance(c, k, d)?;
                }
                Ok(p)
            }
            InitParams::WarmStart(f) => Ok(Params {
                weights: f.weights.clone(),
                means: f.means.clone(),
                covariances: f.covariances.clone(),
                precisions_cholesky: f.precisions_cholesky.clone(),
            }),
            InitParams::Given(g) => {
                // Validated by the first E-step; carried in f64 for the M-step's layout.
                let (covariances, precisions_cholesky) = given_covariance(&g.covariance, k, d)?;
                Ok(Params {
                    weights: to64(&g.weights),
                    means: to64(&g.means),
                    covariances,
                    precisions_cholesky,
                })
            }
            InitParams::KMeansPlusPlus | InitParams::RandomFromData => {
                let centers = if *init == InitParams::RandomFromData {
                    rand::seq::index::sample(rng, n, k).into_vec()
                } else {
                    data.kmeans_plusplus(points, k, rng)?
                };
                // Each chosen point the sole member of its component: N = 1, no scatter.
                let stats = Stats64 {
                    ll: 0.0,
                    nk: vec![1.0; k],
                    s1: vec![0.0; k * d],
                    s2: vec![0.0; k * d],
                    cross: vec![0.0; k * dim_pairs(d)],
                };
                let mut means = Vec::with_capacity(k * d);
                for &i in &centers {
                    means.extend_from_slice(&points[i * d..(i + 1) * d]);
                }
                let center = Gmm::about_centres(means, k);
                self.m_step(&stats, &center, d, gram, Resp::OnePoint(n))
            }
            InitParams::Random => {
                let mut resp = vec![0.0f64; n * k];
                for row in resp.chunks_mut(k) {
                    row.iter_mut().for_each(|r| *r = rng.random::<f64>());
                    let s: f64 = row.iter().sum();
                    row.iter_mut().for_each(|r| *r /= s);
                }
                let (stats, center) = host_stats(points, d, k, &resp);
                self.m_step(&stats, &center, d, gram, Resp::Init(n))
            }
            InitParams::KMeans => {
                let seeds = data.kmeans_plusplus(points, k, rng)?;
                let mut centres = Vec::with_capacity(k * d);
                for &i in &seeds {
                    centres.extend(points[i * d..(i + 1) * d].iter().map(|&v| f64::from(v)));
                }
                let hard = data.kmeans(centres, self.covariance_type, self.centroid_sums)?;
                self.m_step(&hard.0, &hard.1, d, gram, Resp::Init(n))
            }
        }
    }

    /// scikit-learn's M-step from the scatter about the means of `gmm` (and, for tied
    /// covariances, the points' `gram`) under responsibilities of kind `resp`.
    fn m_step(
        &self,
        s: &Stats64,
        gmm: &Gmm,
        d: usize,
        gram: Option<&Gram>,
        resp: Resp,
    ) -> Result<Params, Error> {
        let k = self.n_components;
        let eps10 = 10.0 * f64::EPSILON;
        let nk: Vec<f64> = s.nk.iter().map(|&v| v + eps10).collect();
        let total: f64 = nk.iter().sum();
        let divisor = match resp {
            Resp::EStep => total,
            Resp::Init(n) | Resp::OnePoint(n) => n as f64,
        };
        let weights: Vec<f64> = nk.iter().map(|v| v / divisor).collect();
        let mut means = vec![0.0; k * d];
        // scikit-learn's diagonal variances Σ r x²/N − μ² (before reg_covar), from the scatter
        // S1 = Σ r (x − c), S2 = Σ r (x − c)² about the old mean c: with δ = S1/N' and
        // ρ = N/N' (N' = N + 10ε), μ = δ + cρ and the variance is
        // S2/N' − δ² + 2cδ(1 − ρ) + c²ρ(1 − ρ).
        let mut diag = vec![0.0; k * d];
        for (c, (&n_raw, &nk_c)) in s.nk.iter().zip(&nk).enumerate() {
            let rho = n_raw / nk_c;
            let one_minus = eps10 / nk_c;
            for j in 0..d {
                let i = c * d + j;
                let center = f64::from(gmm.means[i]);
                let delta = s.s1[i] / nk_c;
                means[i] = delta + center * rho;
                diag[i] = s.s2[i] / nk_c - delta * delta
                    + 2.0 * center * delta * one_minus
                    + center * center * rho * one_minus;
            }
        }
        let reg = self.reg_covar;
        let bad = |c: usize| {
            Error::Value(format!(
                "fitting the mixture failed because component {c} has an ill-defined empirical \
                 covariance (for instance caused by singleton or collapsed samples); try fewer \
                 components, a larger reg_covar, or scaled input data"
            ))
        };
        let (covariances, precisions_cholesky) = match self.covariance_type {
            CovarianceType::Diag | CovarianceType::Spherical => {
                let cov: Vec<f64> = if self.covariance_type == CovarianceType::Diag {
                    diag.iter().map(|v| v + reg).collect()
                } else {
                    diag.chunks(d)
                        .map(|row| row.iter().map(|v| v + reg).sum::<f64>() / d as f64)
                        .collect()
                };
                if let Some(i) = cov.iter().position(|&v| v.is_nan() || v <= 0.0) {
                    let per = if self.covariance_type == CovarianceType::Diag {
                        d
                    } else {
                        1
                    };
                    return Err(bad(i / per));
                }
                let prec = cov.iter().map(|v| 1.0 / v.sqrt()).collect();
                (cov, prec)
            }
            CovarianceType::Full => {
                let mut cov = vec![0.0; k * d * d];
                let mut prec = vec![0.0; k * d * d];
                for c in 0..k {
                    let m = &mut cov[c * d * d..(c + 1) * d * d];
                    scatter_about(s, gmm, &means, c, d, m);
                    m.iter_mut().for_each(|v| *v /= nk[c]);
                    for a in 0..d {
                        m[a * d + a] += reg;
                    }
                    let u = precision_cholesky(m, d).ok_or_else(|| bad(c))?;
                    prec[c * d * d..(c + 1) * d * d].copy_from_slice(&u);
                }
                (cov, prec)
            }
            CovarianceType::Tied => {
                let mut num = vec![0.0; d * d];
                if let Resp::OnePoint(n) = resp {
                    // scikit-learn's (XᵀX − Σ N_k μ_k μ_kᵀ) / Σ N_k, which for one-point
                    // components is not their scatter (their responsibilities do not sum to 1
                    // per point), about the points' mean c: with δ_k = μ_k − c and
                    // t = Σ N_k δ_k, the numerator is
                    // G − Σ N_k δ_k δ_kᵀ + (n − Σ N_k) c cᵀ − c tᵀ − t cᵀ.
                    let g = gram.ok_or_else(|| {
                        Error::Value("a tied M-step needs the points' scatter".into())
                    })?;
                    let c = &g.centre;
                    num.copy_from_slice(&g.matrix);
                    let mut t = vec![0.0; d];
                    let mut delta = vec![0.0; d];
                    for (comp, &n_c) in nk.iter().enumerate() {
                        for a in 0..d {
                            delta[a] = means[comp * d + a] - c[a];
                            t[a] += n_c * delta[a];
                        }
                        for a in 0..d {
                            for b in 0..d {
                                num[a * d + b] -= n_c * delta[a] * delta[b];
                            }
                        }
                    }
                    let excess = n as f64 - total;
                    for a in 0..d {
                        for b in 0..d {
                            num[a * d + b] += excess * c[a] * c[b] - c[a] * t[b] - t[a] * c[b];
                        }
                    }
                } else {
                    // Where each point's responsibilities sum to 1, scikit-learn's formula is
                    // the components' scatters summed, taken from the GPU's scatter about each
                    // component's mean (which does not cancel as XᵀX − Σ N μ μᵀ does).
                    let mut m = vec![0.0; d * d];
                    for c in 0..k {
                        scatter_about(s, gmm, &means, c, d, &mut m);
                        num.iter_mut().zip(&m).for_each(|(a, b)| *a += b);
                    }
                }
                let mut cov: Vec<f64> = num.iter().map(|v| v / total).collect();
                for a in 0..d {
                    cov[a * d + a] += reg;
                }
                let prec = precision_cholesky(&cov, d).ok_or_else(|| {
                    Error::Value(
                        "fitting the mixture failed because the shared (tied) covariance is \
                         ill-defined (for instance caused by collapsed samples); try a larger \
                         reg_covar, or scaled input data"
                            .into(),
                    )
                })?;
                (cov, prec)
            }
        };
        Ok(Params {
            weights,
            means,
            covariances,
            precisions_cholesky,
        })
    }

    fn to_gmm(&self, p: &Params) -> Gmm {
        let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        // f32 weights renormalised so they sum to 1 within f32's rounding.
        let total: f64 = p.weights.iter().map(|&w| f64::from(w as f32)).sum();
        let weights = p.weights.iter().map(|&w| (w / total) as f32).collect();
        let covariance = match self.covariance_type {
            CovarianceType::Full => Covariance::Full(f(&p.precisions_cholesky)),
            CovarianceType::Diag => Covariance::Diag(f(&p.covariances)),
            CovarianceType::Spherical => Covariance::Spherical(f(&p.covariances)),
            CovarianceType::Tied => Covariance::Tied(f(&p.precisions_cholesky)),
        };
        Gmm {
            weights,
            means: f(&p.means),
            covariance,
        }
    }
}

/// `Σ r (x − μ)(x − μ)ᵀ` of component `c` into `m` (`d × d`), from the statistics about the
/// means of `gmm`, `c_k`, with `μ = c_k + e`: `S − e S1ᵀ − S1 eᵀ + N e eᵀ`, `S` the scatter
/// about `c_k` (its diagonal `s2`, its upper triangle `cross`).
fn scatter_about(s: &Stats64, gmm: &Gmm, means: &[f64], c: usize, d: usize, m: &mut [f64]) {
    let pairs = dim_pairs(d);
    let n_raw = s.nk[c];
    let e: Vec<f64> = (0..d)
        .map(|j| means[c * d + j] - f64::from(gmm.means[c * d + j]))
        .collect();
    let s1 = &s.s1[c * d..(c + 1) * d];
    let mut p = 0;
    for a in 0..d {
        for b in a..d {
            let sab = if a == b {
                s.s2[c * d + a]
            } else {
                let v = s.cross[c * pairs + p];
                p += 1;
                v
            };
            let v = sab - e[a] * s1[b] - s1[a] * e[b] + n_raw * e[a] * e[b];
            m[a * d + b] = v;
            m[b * d + a] = v;
        }
    }
}

/// Covariances given in the crate's form as scikit-learn's `covariances_` and
/// `precisions_cholesky_` in f64, their lengths checked (their values by the first E-step).
fn given_covariance(c: &Covariance, k: usize, d: usize) -> Result<(Vec<f64>, Vec<f64>), Error> {
    let to64 = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
    let length = |what: &'static str, v: &[f32], expected: usize| {
        if v.len() == expected {
            Ok(())
        } else {
            Err(Error::InputLength {
                what,
                expected,
                actual: v.len(),
            })
        }
    };
    match c {
        Covariance::Diag(v) | Covariance::Spherical(v) => {
            if matches!(c, Covariance::Diag(_)) {
                length("variances (k × dims)", v, k * d)?;
            } else {
                length("variances (k)", v, k)?;
            }
            Ok((
                to64(v),
                v.iter().map(|&x| 1.0 / f64::from(x).sqrt()).collect(),
            ))
        }
        Covariance::Tied(p) => {
            length("precisions_cholesky (dims × dims, tied)", p, d * d)?;
            let p = to64(p);
            Ok((covariance_from_precision_cholesky(&p, d)?, p))
        }
        Covariance::Full(p) => {
            length("precisions_cholesky (k × dims × dims)", p, k * d * d)?;
            let mut cov = Vec::with_capacity(p.len());
            for pc in p.chunks(d * d) {
                cov.extend(covariance_from_precision_cholesky(&to64(pc), d)?);
            }
            Ok((cov, to64(p)))
        }
    }
}

/// The upper-triangular `U` with `U Uᵀ = Σ⁻¹` (scikit-learn's `precisions_cholesky_`):
/// `U = L⁻ᵀ` for the Cholesky factor `L` of `Σ`. `None` when `Σ` is not positive definite.
fn precision_cholesky(cov: &[f64], d: usize) -> Option<Vec<f64>> {
    let l = cholesky(cov, d)?;
    // Solve L X = I (X lower triangular), then U = Xᵀ.
    let mut x = vec![0.0; d * d];
    for col in 0..d {
        for row in col..d {
            let mut v = if row == col { 1.0 } else { 0.0 };
            for t in col..row {
                v -= l[row * d + t] * x[t * d + col];
            }
            x[row * d + col] = v / l[row * d + row];
        }
    }
    let mut u = vec![0.0; d * d];
    for a in 0..d {
        for b in 0..d {
            u[a * d + b] = x[b * d + a];
        }
    }
    Some(u)
}

/// The lower Cholesky factor of a symmetric positive definite `d × d` matrix.
fn cholesky(m: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut v = m[i * d + j];
            for t in 0..j {
                v -= l[i * d + t] * l[j * d + t];
            }
            if i == j {
                if v.is_nan() || v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[i * d + i] = v.sqrt();
            } else {
                l[i * d + j] = v / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// `Σ = (P Pᵀ)⁻¹` from a precision's factor `P` (any square factor with `P Pᵀ` positive
/// definite, as [`Covariance::Full`] accepts).
fn covariance_from_precision_cholesky(p: &[f64], d: usize) -> Result<Vec<f64>, Error> {
    let mut prec = vec![0.0; d * d];
    for a in 0..d {
        for b in 0..d {
            prec[a * d + b] = (0..d).map(|t| p[a * d + t] * p[b * d + t]).sum();
        }
    }
    // Σ = (L Lᵀ)⁻¹ = L⁻ᵀ L⁻¹ with L the Cholesky factor of the precision.
    let l = cholesky(&prec, d).ok_or_else(|| {
        Error::Value("an initial precision matrix is not positive definite".into())
    })?;
    let mut inv = vec![0.0; d * d]; // L⁻¹, lower
    for col in 0..d {
        for row in col..d {
            let mut v = if row == col { 1.0 } else { 0.0 };
            for t in col..row {
                v -= l[row * d + t] * inv[t * d + col];
            }
            inv[row * d + col] = v / l[row * d + row];
        }
    }
    let mut cov = vec![0.0; d * d];
    for a in 0..d {
        for b in 0..d {
            cov[a * d + b] = (0..d).map(|t| inv[t * d + a] * inv[t * d + b]).sum();
        }
    }
    Ok(cov)
}

/// The points' scatter `G = Σᵢ (xᵢ − c)(xᵢ − c)ᵀ` about their mean `c`, in f64, from which
/// scikit-learn's tied covariance of one-point components follows (see `GaussianMixture::m_step`).
struct Gram {
    centre: Vec<f64>,
    /// `dims × dims`, row-major.
    matrix: Vec<f64>,
}

impl Gram {
    fn of(points: &[f32], d: usize) -> Gram {
        let centre = mean_of(points, d);
        let mut matrix = vec![0.0f64; d * d];
        let mut dev = vec![0.0f64; d];
        for p in points.chunks(d) {
            dev.iter_mut()
                .zip(p)
                .zip(&centre)
                .for_each(|((v, &x), &c)| *v = f64::from(x) - c);
            for a in 0..d {
                for b in a..d {
                    matrix[a * d + b] += dev[a] * dev[b];
                }
            }
        }
        for a in 0..d {
            for b in 0..a {
                matrix[a * d + b] = matrix[b * d + a];
            }
        }
        Gram { centre, matrix }
    }
}

/// One Lloyd iteration's outcome: every point's label, each centre's number of points, and
/// the mean of its points (`k × dims`; meaningless where the count is 0).
struct Lloyd {
    labels: Vec<u32>,
    counts: Vec<f64>,
    means: Vec<f64>,
}

/// Points and coordinate sums per label (`k × dims`, f64, in point order).
fn label_sums(points: &[f32], d: usize, k: usize, labels: &[u32]) -> (Vec<u64>, Vec<f64>) {
    let mut counts = vec![0u64; k];
    let mut sums = vec![0.0f64; k * d];
    for (p, &l) in points.chunks(d).zip(labels) {
        let c = l as usize;
        if c < k {
            counts[c] += 1;
            sums[c * d..(c + 1) * d]
                .iter_mut()
                .zip(p)
                .for_each(|(s, &x)| *s += f64::from(x));
        }
    }
    (counts, sums)
}

/// The statistics of one-hot responsibilities (point i in component `labels[i]`) about the
/// centres `means` (`k × dims`), in f64: `N_k`, `Σ (x − c)`, `Σ (x − c)²` and, with `scatter`,
/// the off-diagonal `Σ (x_a − c_a)(x_b − c_b)`, as the M-step takes them.
fn label_stats(
    points: &[f32],
    d: usize,
    k: usize,
    labels: &[u32],
    means: &[f32],
    scatter: bool,
) -> Stats64 {
    let mut s = Stats64::zeros(k, d, scatter);
    let mut dev = vec![0.0f64; d];
    for (p, &l) in points.chunks(d).zip(labels) {
        let c = l as usize;
        if c >= k {
            continue;
        }
        for j in 0..d {
            dev[j] = f64::from(p[j]) - f64::from(means[c * d + j]);
        }
        s.push(c, 1.0, &dev);
    }
    s
}

/// The points' mean (`d` coordinates, summed in point order in f64).
fn mean_of(points: &[f32], d: usize) -> Vec<f64> {
    let n = (points.len() / d.max(1)).max(1);
    let mut mean = vec![0.0f64; d];
    for p in points.chunks(d) {
        mean.iter_mut()
            .zip(p)
            .for_each(|(m, &x)| *m += f64::from(x));
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    mean
}

/// The scatter of the points about their overall mean under host-side responsibilities
/// (`n × k`), in the form the M-step takes, and the mixture whose means are that center.
fn host_stats(points: &[f32], d: usize, k: usize, resp: &[f64]) -> (Stats64, Gmm) {
    let center32: Vec<f32> = mean_of(points, d).iter().map(|&c| c as f32).collect();
    let mut stats = Stats64::zeros(k, d, true);
    let mut dev = vec![0.0f64; d];
    for (p, r) in points.chunks(d).zip(resp.chunks(k)) {
        for j in 0..d {
            dev[j] = f64::from(p[j]) - f64::from(center32[j]);
        }
        for (c, &rc) in r.iter().enumerate() {
            stats.push(c, rc, &dev);
        }
    }
    let mut means = Vec::with_capacity(k * d);
    for _ in 0..k {
        means.extend_from_slice(&center32);
    }
    (stats, Gmm::about_centres(means, k))
}

/// Bytes of points kept on each device for a whole fit by default
/// ([`GaussianMixture::resident_bytes`]).
pub const DEFAULT_RESIDENT_BYTES: u64 = 1 << 30;

/// The points as the E-steps read them: in batches small enough for every buffer of one E-step
/// (the n × k log-joint, the partial sums) to fit a storage binding of every device, batch `b`
/// on device `b mod g`. Either every batch is uploaded once, for the whole fit, or (points
/// beyond the resident budget) each device has one buffer into which each E-step uploads its
/// batches in turn. Per-batch results are combined in batch order, so a fit's bits depend on
/// the batches alone: not on the number of devices, nor on whether the points stream.
pub(crate) struct Resident<'a> {
    gpus: Vec<&'a Gpu>,
    points: &'a [f32],
    /// (first point, points) of each batch (a multiple of 64 points but the last).
    batches: Vec<(usize, usize)>,
    /// One buffer per batch (resident) or per device (streamed).
    buffers: Vec<wgpu::Buffer>,
    streamed: bool,
    n: usize,
    dims: usize,
}

impl<'a> Resident<'a> {
    /// Batches of `points` for `k` components of covariance `t` over `gpus` (at least one),
    /// streamed where they exceed `budget` bytes a device.
    pub(crate) fn new(
        gpus: &[&'a Gpu],
        points: &'a [f32],
        dims: usize,
        k: usize,
        t: CovarianceType,
        budget: u64,
    ) -> Result<Resident<'a>, Error> {
        if gpus.is_empty() {
            return Err(Error::Value("no GPU given".into()));
        }
        let n = points.len() / dims.max(1);
        let mut per = usize::MAX;
        for gpu in gpus {
            per = per.min(batch_points(gpu, k, dims, t)?);
        }
        let batches: Vec<(usize, usize)> = (0..n.div_ceil(per))
            .map(|b| (b * per, per.min(n - b * per)))
            .collect();
        let bytes = (n * dims * 4) as u64;
        let streamed = bytes.div_ceil(gpus.len() as u64) > budget && batches.len() > 1;
        let slice =
            |&(first, count): &(usize, usize)| &points[first * dims..(first + count) * dims];
        let buffers = if streamed {
            let largest = (per.min(n) * dims * 4) as u64;
            gpus.iter()
                .map(|gpu| {
                    gpu.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("logdomain fit points (streamed)"),
                        size: largest.max(4),
                        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                })
                .collect()
        } else {
            batches
                .iter()
                .enumerate()
                .map(|(b, batch)| {
                    gpus[b % gpus.len()].create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("logdomain fit points"),
                        contents: bytemuck::cast_slice(slice(batch)),
                        usage: wgpu::BufferUsages::STORAGE,
                    })
                })
                .collect()
        };
        Ok(Resident {
            gpus: gpus.to_vec(),
            points,
            batches,
            buffers,
            streamed,
            n,
            dims,
        })
    }

    /// `f(gpu, buffer, points)` of every batch, in batch order; the devices work at once, each
    /// on its own batches in turn (uploading each first where the points stream).
    fn each_batch<T: Send>(
        &self,
        f: impl Fn(&Gpu, &wgpu::Buffer, usize) -> Result<T, Error> + Sync,
    ) -> Result<Vec<T>, Error> {
        let g = self.gpus.len();
        let run = |device: usize| -> Result<Vec<(usize, T)>, Error> {
            let gpu = self.gpus[device];
            let mut out = Vec::new();
            for b in (device..self.batches.len()).step_by(g) {
                let (first, count) = self.batches[b];
                let buffer = if self.streamed {
                    let buffer = &self.buffers[device];
                    let chunk = &self.points[first * self.dims..(first + count) * self.dims];
                    gpu.write_buffer(buffer, 0, bytemuck::cast_slice(chunk));
                    buffer
                } else {
                    &self.buffers[b]
                };
                out.push((b, f(gpu, buffer, count)?));
            }
            Ok(out)
        };
        let mut all: Vec<(usize, T)> = if g == 1 {
            run(0)?
        } else {
            let results: Vec<Result<Vec<(usize, T)>, Error>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..g).map(|d| scope.spawn(move || run(d))).collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(Error::Gpu("a device's thread panicked".into()))
                        })
                    })
                    .collect()
            });
            let mut all = Vec::new();
            for r in results {
                all.extend(r?);
            }
            all
        };
        all.sort_by_key(|(b, _)| *b);
        Ok(all.into_iter().map(|(_, v)| v).collect())
    }

    /// One E-step: the scatter about the means of `gmm` and the total log-likelihood, per
    /// batch on the GPU, the batches added in f64 in order.
    fn centered_stats(&self, gmm: &Gmm, t: CovarianceType) -> Result<Stats64, Error> {
        let scatter = matches!(t, CovarianceType::Full | CovarianceType::Tied);
        let kind = if scatter {
            GmmReduction::CenteredScatter
        } else {
            GmmReduction::CenteredStats
        };
        let (k, dims) = (gmm.weights.len(), self.dims);
        let per_batch = self.each_batch(|gpu, buffer, n| {
            let op = GmmReduceOp::new(gpu, n, dims, gmm, kind)?;
            let v = gpu.run_resident(op.program(), &[buffer], op.output_len())?;
            GmmCenteredStats::from_packed(&v, k, dims, scatter)
        })?;
        let mut total = Stats64::default();
        per_batch.iter().for_each(|s| total.add(s));
        Ok(total)
    }

    /// `log p(x)` of every point under `gmm` (`output`: or the `n × k` log-responsibilities).
    pub(crate) fn score(&self, gmm: &Gmm, output: GmmOutput) -> Result<Vec<f32>, Error> {
        let dims = self.dims;
        let per_batch = self.each_batch(|gpu, buffer, n| {
            let op = GmmOp::new(gpu, n, dims, gmm, output)?;
            gpu.run_resident(op.program(), &[buffer], op.output_len())
        })?;
        Ok(per_batch.concat())
    }

    /// Squared distances of every point to each of `centres` (point indices), on the GPU in
    /// one pass: entry `i·t + c` is point i's to centre c (`t` centres). The log-joint of a
    /// spherical mixture of variances ½ and equal weights `w` is `ln w − (d/2) ln π − ‖x − c‖²`.
    fn squared_distances(&self, points: &[f32], centres: &[usize]) -> Result<Vec<f64>, Error> {
        let (t, d) = (centres.len(), self.dims);
        let w = 1.0 / t as f32;
        let mut means = Vec::with_capacity(t * d);
        for &i in centres {
            means.extend_from_slice(&points[i * d..(i + 1) * d]);
        }
        let gmm = Gmm {
            weights: vec![w; t],
            means,
            covariance: Covariance::Spherical(vec![0.5; t]),
        };
        let offset = 0.5 * d as f64 * std::f64::consts::PI.ln() - f64::from(w).ln();
        Ok(self
            .score(&gmm, GmmOutput::LogJoint)?
            .iter()
            .map(|&v| (-f64::from(v) - offset).max(0.0))
            .collect())
    }

    /// Lloyd's k-means from `centres` (`k × dims`, f64), as scikit-learn's `KMeans` (its
    /// `lloyd` loop: stop when no label changes or the centres' total squared shift is at most
    /// 1e−4 times the mean variance of the dimensions, after at most 300 iterations; then the
    /// labels of the final centres). Each iteration is one `lloyd_step`: the labels of a
    /// spherical mixture of equal weights and unit variances, whose log-joint
    /// `c − ‖x − μ_k‖²/2` is largest at the nearest centre (`GmmOutput::Labels`, the first of
    /// equals), and each centre's sums on the GPU or the host as `sums` says; each centre moves
    /// to the mean of its points (an empty cluster keeps its centre). Returns the statistics of
    /// the final labels' one-hot responsibilities about the final centres (what the M-step
    /// needs, the off-diagonal scatter included for `t` full or tied) and the mixture whose
    /// means are those centres.
    fn kmeans(
        &self,
        mut centres: Vec<f64>,
        t: CovarianceType,
        sums: CentroidSums,
    ) -> Result<(Stats64, Gmm), Error> {
        let on_device = match sums {
            CentroidSums::Auto => self
                .gpus
                .iter()
                .all(|g| g.info().device_type != wgpu::DeviceType::Cpu),
            CentroidSums::Device => true,
            CentroidSums::Host => false,
        };
        let (n, d, points) = (self.n, self.dims, self.points);
        let k = centres.len() / d;
        let mut var_sum = 0.0f64;
        for (j, mean) in mean_of(points, d).into_iter().enumerate() {
            let col = points.iter().skip(j).step_by(d).map(|&v| f64::from(v));
            var_sum += col.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
        }
        let tol = 1e-4 * var_sum / d as f64;
        let hard =
            |centres: &[f64]| Gmm::about_centres(centres.iter().map(|&v| v as f32).collect(), k);
        const MAX_ITER: usize = 300;
        let mut previous: Option<Vec<u32>> = None;
        let mut strict = false;
        for _ in 0..MAX_ITER {
            let Lloyd {
                labels,
                counts,
                means: moved,
            } = self.lloyd_step(&hard(&centres), on_device)?;
            let mut shift = 0.0;
            for c in 0..k {
                if counts[c] == 0.0 {
                    continue;
                }
                for j in 0..d {
                    let new = moved[c * d + j];
                    shift += (new - centres[c * d + j]) * (new - centres[c * d + j]);
                    centres[c * d + j] = new;
                }
            }
            if previous.as_ref() == Some(&labels) {
                strict = true;
                previous = Some(labels);
                break;
            }
            previous = Some(labels);
            if shift <= tol {
                break;
            }
        }
        let gmm = hard(&centres);
        let labels = match previous {
            Some(labels) if strict => labels,
            _ => self.labels(&gmm)?,
        };
        let scatter = matches!(t, CovarianceType::Full | CovarianceType::Tied);
        Ok((label_stats(points, d, k, &labels, &gmm.means, scatter), gmm))
    }

    /// One Lloyd iteration from the centres of `hard` (its means): every point's label, and per
    /// centre its number of points and, where it has any, their mean. `on_device`, on the GPU
    /// ([`KMeansStepOp`]: the mean is the f32 centre plus the deviations' sum over the count,
    /// the batches' sums added in f64 in order); otherwise, or where one invocation cannot hold
    /// every centre, the labels on the GPU and the sums on the host, in f64 in point order.
    fn lloyd_step(&self, hard: &Gmm, on_device: bool) -> Result<Lloyd, Error> {
        let (d, k) = (self.dims, hard.weights.len());
        let steps = if !on_device {
            vec![None]
        } else {
            self.each_batch(|gpu, buffer, n| {
                let op = match KMeansStepOp::new(gpu, n, d, &hard.means) {
                    Err(Error::Unsupported(_)) => return Ok(None),
                    op => op?,
                };
                let v = gpu.run_resident(op.program(), &[buffer], op.output_len())?;
                op.unpack(&v).map(Some)
            })?
        };
        if steps.iter().any(Option::is_none) {
            let labels = self.labels(hard)?;
            let (counts, sums) = label_sums(self.points, d, k, &labels);
            let means = sums
                .chunks(d.max(1))
                .zip(&counts)
                .flat_map(|(s, &c)| s.iter().map(move |&v| v / c.max(1) as f64))
                .collect();
            return Ok(Lloyd {
                labels,
                counts: counts.iter().map(|&c| c as f64).collect(),
                means,
            });
        }
        let (mut labels, mut counts, mut devs) = (Vec::new(), vec![0.0f64; k], vec![0.0f64; k * d]);
        for step in steps.into_iter().flatten() {
            labels.extend_from_slice(&step.labels);
            counts
                .iter_mut()
                .zip(&step.counts)
                .for_each(|(a, &v)| *a += f64::from(v));
            devs.iter_mut()
                .zip(&step.deviation_sums)
                .for_each(|(a, &v)| *a += f64::from(v));
        }
        let means = devs
            .iter()
            .enumerate()
            .map(|(i, &s)| f64::from(hard.means[i]) + s / counts[i / d].max(1.0))
            .collect();
        Ok(Lloyd {
            labels,
            counts,
            means,
        })
    }

    /// The most probable component of every point under `gmm` (see `GmmOutput::Labels`; where
    /// a point's components do not fit one invocation, the argmax of the log-responsibilities).
    fn labels(&self, gmm: &Gmm) -> Result<Vec<u32>, Error> {
        match self.score(gmm, GmmOutput::Labels) {
            Ok(v) => Ok(v.iter().map(|x| x.to_bits()).collect()),
            Err(Error::Unsupported(_)) => {
                let r = self.score(gmm, GmmOutput::LogResponsibilities)?;
                Ok(crate::gmm::argmax_rows(&r, gmm.weights.len()))
            }
            Err(e) => Err(e),
        }
    }

    /// scikit-learn's k-means++ seeding: the indices of `k` points.
    fn kmeans_plusplus(
        &self,
        points: &[f32],
        k: usize,
        rng: &mut Pcg64,
    ) -> Result<Vec<usize>, Error> {
        let n = self.n;
        let trials = 2 + (k as f64).ln() as usize;
        let first = rng.random_range(0..n);
        let mut centers = vec![first];
        let mut closest = self.squared_distances(points, &[first])?;
        let mut pot: f64 = closest.iter().sum();
        let mut cumsum = Vec::with_capacity(n);
        while centers.len() < k {
            cumsum.clear();
            let mut acc = 0.0;
            for &v in &closest {
                acc += v;
                cumsum.push(acc);
            }
            // The candidates drawn first, their distances in one pass; the potential of each
            // is the sum of min(closest, its distance), the lowest kept (the first of equals).
            let ids: Vec<usize> = (0..trials)
                .map(|_| {
                    let target = rng.random::<f64>() * pot;
                    cumsum.partition_point(|&c| c < target).min(n - 1)
                })
                .collect();
            let dist = self.squared_distances(points, &ids)?;
            let mut pots = vec![0.0f64; trials];
            for (row, &c) in dist.chunks(trials).zip(&closest) {
                for (p, &v) in pots.iter_mut().zip(row) {
                    *p += c.min(v);
                }
            }
            let mut best = 0;
            for (t, &p) in pots.iter().enumerate() {
                if p < pots[best] {
                    best = t;
                }
            }
            centers.push(ids[best]);
            for (c, row) in closest.iter_mut().zip(dist.chunks(trials)) {
                *c = c.min(row[best]);
            }
            pot = pots[best];
        }
        Ok(centers)
    }
}

/// The most points one E-step takes: a multiple of 64 for which the `n × k` log-joint, the
/// points and the partial sums (one row per component and sum, one partial per 64 points)
/// each fit a storage binding, and whose sums are one bounded dispatch on GL.
fn batch_points(gpu: &Gpu, k: usize, d: usize, t: CovarianceType) -> Result<usize, Error> {
    let limits = gpu.device().limits();
    let binding = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    let pairs = if matches!(t, CovarianceType::Full | CovarianceType::Tied) {
        dim_pairs(d)
    } else {
        0
    };
    let (k, d) = (k as u64, d as u64);
    let rows = k * (d + 1 + pairs as u64);
    let by_partials = binding / (rows * 12) * 64;
    let by_joint = binding / (k * 4);
    let by_points = binding / (d * 4);
    // On GL, an E-step's sums of one batch are a dispatch within the budget of
    // `Caps::dispatch_work` (unbounded elsewhere): k rows of d + 1 + pairs sums a point.
    let by_work = crate::engine::geometry::Caps::of(gpu)
        .per_dispatch(rows)
        .max(64);
    let per = by_partials.min(by_joint).min(by_points).min(by_work) / 64 * 64;
    if per == 0 {
        return Err(Error::Limit(format!(
            "{k} components of {d} dimensions need more than a storage binding for 64 points"
        )));
    }
    Ok(usize::try_from(per).unwrap_or(usize::MAX))
}

impl FittedGmm {
    /// Number of components.
    pub fn n_components(&self) -> usize {
        self.gmm.weights.len()
    }

    /// `log p(x)` of each of `n` points (scikit-learn's `score_samples`), in batches that fit
    /// the device's bindings, streamed beyond [`DEFAULT_RESIDENT_BYTES`]: any number of points.
    pub fn score_samples(&self, gpu: &Gpu, points: &[f32], n: usize) -> Result<Vec<f32>, Error> {
        self.score_samples_on(&[gpu], points, n)
    }

    /// [`FittedGmm::score_samples`] with the batches shared out over several devices (as
    /// [`GaussianMixture::fit_on`] does).
    pub fn score_samples_on(
        &self,
        gpus: &[&Gpu],
        points: &[f32],
        n: usize,
    ) -> Result<Vec<f32>, Error> {
        self.scored(gpus, points, n, GmmOutput::ScoreSamples)
    }

    fn scored(
        &self,
        gpus: &[&Gpu],
        points: &[f32],
        n: usize,
        output: GmmOutput,
    ) -> Result<Vec<f32>, Error> {
        crate::gmm::check_points(points.len(), n, self.dims)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        self.resident(gpus, points)?.score(&self.gmm, output)
    }

    /// The points in batches for this mixture's scoring ops.
    fn resident<'a>(&self, gpus: &[&'a Gpu], points: &'a [f32]) -> Result<Resident<'a>, Error> {
        Resident::new(
            gpus,
            points,
            self.dims,
            self.n_components(),
            self.covariance_type,
            DEFAULT_RESIDENT_BYTES,
        )
    }

    /// The mean log-likelihood per point (scikit-learn's `score`).
    pub fn score(&self, gpu: &Gpu, points: &[f32], n: usize) -> Result<f64, Error> {
        let lp = self.score_samples(gpu, points, n)?;
        Ok(lp.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64)
    }

    /// The number of free parameters (scikit-learn's `_n_parameters`): the covariances'
    /// (`k·d(d + 1)/2` full, `k·d` diag, `k` spherical, `d(d + 1)/2` tied), the means' `k·d`
    /// and the weights' `k − 1`.
    pub fn n_parameters(&self) -> usize {
        let (k, d) = (self.n_components(), self.dims);
        let covariances = match self.covariance_type {
            CovarianceType::Full => k * d * (d + 1) / 2,
            CovarianceType::Diag => k * d,
            CovarianceType::Spherical => k,
            CovarianceType::Tied => d * (d + 1) / 2,
        };
        covariances + k * d + k - 1
    }

    /// The Bayesian information criterion on `n` points, scikit-learn's `bic`:
    /// `−2·score·n + n_parameters·ln n` (lower is better).
    pub fn bic(&self, gpu: &Gpu, points: &[f32], n: usize) -> Result<f64, Error> {
        let score = self.score(gpu, points, n)?;
        Ok(-2.0 * score * n as f64 + self.n_parameters() as f64 * (n as f64).ln())
    }

    /// The Akaike information criterion on `n` points, scikit-learn's `aic`:
    /// `−2·score·n + 2·n_parameters` (lower is better).
    pub fn aic(&self, gpu: &Gpu, points: &[f32], n: usize) -> Result<f64, Error> {
        let score = self.score(gpu, points, n)?;
        Ok(-2.0 * score * n as f64 + 2.0 * self.n_parameters() as f64)
    }

    /// `log p(k | x)`, `n × k` (scikit-learn's `predict_proba` in log space).
    pub fn log_responsibilities(
        &self,
        gpu: &Gpu,
        points: &[f32],
        n: usize,
    ) -> Result<Vec<f32>, Error> {
        self.scored(&[gpu], points, n, GmmOutput::LogResponsibilities)
    }

    /// `p(k | x)`, `n × k` (scikit-learn's `predict_proba`).
    pub fn predict_proba(&self, gpu: &Gpu, points: &[f32], n: usize) -> Result<Vec<f32>, Error> {
        let mut r = self.log_responsibilities(gpu, points, n)?;
        r.iter_mut().for_each(|v| *v = v.exp());
        Ok(r)
    }

    /// The most probable component of each point (scikit-learn's `predict`: the argmax of the
    /// log-joint, the first of equals), one GPU pass that reads back `n` labels. Points must be
    /// finite.
    pub fn predict(&self, gpu: &Gpu, points: &[f32], n: usize) -> Result<Vec<usize>, Error> {
        crate::gmm::check_points(points.len(), n, self.dims)?;
        crate::gmm::check_finite_points(points, self.dims)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        Ok(self
            .resident(&[gpu], points)?
            .labels(&self.gmm)?
            .into_iter()
            .map(|l| l as usize)
            .collect())
    }

    /// `n` points drawn from the mixture and their components, as scikit-learn's `sample`:
    /// the count per component drawn from the multinomial of the weights, then the points of
    /// component 0, 1, … in order. Deterministic for a seed.
    pub fn sample(&self, n: usize, seed: u64) -> Result<(Vec<f32>, Vec<usize>), Error> {
        let (k, d) = (self.n_components(), self.dims);
        let mut rng = Pcg64::seed_from_u64(seed);
        let mut counts = vec![0usize; k];
        let mut cum = Vec::with_capacity(k);
        let mut acc = 0.0;
        for &w in &self.gmm.weights {
            acc += f64::from(w);
            cum.push(acc);
        }
        for _ in 0..n {
            let u = rng.random::<f64>() * acc;
            let c = cum.partition_point(|&v| v <= u).min(k - 1);
            counts[c] += 1;
        }
        let mut points = Vec::with_capacity(n * d);
        let mut labels = Vec::with_capacity(n);
        let mut z = vec![0.0f64; d];
        for (c, &count) in counts.iter().enumerate() {
            let factor: Vec<f64> = match self.covariance_type {
                CovarianceType::Full => cholesky(&self.covariances[c * d * d..(c + 1) * d * d], d)
                    .ok_or_else(|| {
                        Error::Value(format!(
                            "component {c}'s covariance is not positive definite"
                        ))
                    })?,
                CovarianceType::Diag => self.covariances[c * d..(c + 1) * d]
                    .iter()
                    .map(|v| v.sqrt())
                    .collect(),
                CovarianceType::Spherical => vec![self.covariances[c].sqrt(); d],
                CovarianceType::Tied => cholesky(&self.covariances, d).ok_or_else(|| {
                    Error::Value("the tied covariance is not positive definite".into())
                })?,
            };
            for _ in 0..count {
                z.iter_mut()
                    .for_each(|v| *v = StandardNormal.sample(&mut rng));
                for a in 0..d {
                    let offset = if matches!(
                        self.covariance_type,
                        CovarianceType::Full | CovarianceType::Tied
                    ) {
                        (0..=a).map(|t| factor[a * d + t] * z[t]).sum::<f64>()
                    } else {
                        factor[a] * z[a]
                    };
                    points.push((f64::from(self.gmm.means[c * d + a]) + offset) as f32);
                }
                labels.push(c);
            }
        }
        Ok((points, labels))
    }
}
