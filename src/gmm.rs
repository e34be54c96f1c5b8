//! Gaussian mixtures on the GPU: `log p(x)` per point (scikit-learn's
//! `GaussianMixture.score_samples`) and the log-posteriors of the components
//! (`predict_proba` in log space), in scikit-learn's parameterisation.
//!
//! A kernel (`shaders/gmm.wgsl`) writes the `n × k` log-joint `ln w_k + ln N(x | μ_k, Σ_k)`,
//! its quadratic form taken as `Σ_j (Σ_i (x_i − μ_i) P_ij)²` — the difference first, never the
//! expanded `Σx²τ − 2Σxμτ + Σμ²τ` that cancels in f32 far from the origin — and then the
//! log-sum-exp family reduces each row ([`crate::RowFn::Logsumexp`] or
//! [`crate::RowFn::LogSoftmax`]). CPU mirror: [`crate::reference::gmm`].

use crate::error::Error;
use crate::gpu::Gpu;
use crate::likelihood::{Bind, LL_WG, LlPass, MODE_TRIANGULAR, Program, Src, Step, key, usable};
use crate::logsumexp::{Caps, RowFn, RowOp, RowsLayout, Strategy, u32_of, window};
use crate::shaders::LlParams;

/// The covariances of a mixture's components, as scikit-learn's `covariance_type`.
#[derive(Clone, Debug, PartialEq)]
pub enum Covariance {
    /// `k × dims` variances (positive, finite).
    Diag(Vec<f32>),
    /// `k` variances, one per component (positive, finite).
    Spherical(Vec<f32>),
    /// `k × dims × dims` Cholesky factors of the precision matrices, row-major, as
    /// scikit-learn's `precisions_cholesky_` (upper triangular there; any matrix with a positive
    /// diagonal is accepted, and a triangular one is evaluated in half the work).
    Full(Vec<f32>),
}

/// A Gaussian mixture: `k` components in `dims` dimensions.
#[derive(Clone, Debug, PartialEq)]
pub struct Gmm {
    /// `k` mixture weights: non-negative, summing to 1 within 1e−4.
    pub weights: Vec<f32>,
    /// `k × dims` means, row-major.
    pub means: Vec<f32>,
    /// The components' covariances.
    pub covariance: Covariance,
}

/// What a [`GmmOp`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GmmOutput {
    /// `log p(x)` per point: `n` values (`score_samples`).
    ScoreSamples,
    /// `log p(k | x)`: `n × k` values (`predict_proba` in log space).
    LogResponsibilities,
}

/// Per-component iterations one invocation may spend (llvmpipe ends an invocation's loops after
/// 65,535 iterations in all; see the README).
const LANE_BUDGET: u64 = 16_000;

/// The parameter block the kernel reads and the mode bits, validated.
struct Packed {
    words: Vec<f32>,
    k: u64,
    op: u32,
    mode: u32,
    per_component: u64,
}

fn pack(gmm: &Gmm, dims: usize) -> Result<Packed, Error> {
    let k = gmm.weights.len();
    if k == 0 {
        return Err(Error::Value(
            "a mixture needs at least one component".into(),
        ));
    }
    if dims == 0 {
        return Err(Error::Shape("points need at least one dimension".into()));
    }
    let d = dims;
    let bad = |what: &str, i: usize, v: f32, rule: &str| {
        Err(Error::Value(format!("{what}[{i}] is {v}; {rule}")))
    };
    for (i, &w) in gmm.weights.iter().enumerate() {
        if !(w.is_finite() && w >= 0.0) {
            return bad("weights", i, w, "weights must be finite and ≥ 0");
        }
    }
    let sum: f64 = gmm.weights.iter().map(|&w| f64::from(w)).sum();
    if (sum - 1.0).abs() > 1e-4 {
        return Err(Error::Value(format!(
            "the weights sum to {sum}; they must sum to 1 within 1e-4"
        )));
    }
    let expect = |what: &'static str, v: &[f32], n: usize| {
        if v.len() != n {
            Err(Error::InputLength {
                what,
                expected: n,
                actual: v.len(),
            })
        } else {
            Ok(())
        }
    };
    expect("means (k × dims)", &gmm.means, k * d)?;
    if let Some(i) = gmm.means.iter().position(|m| !m.is_finite()) {
        return bad("means", i, gmm.means[i], "means must be finite");
    }
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    let mut log_det = vec![0f64; k];
    let (prec, op, mode, per_component): (Vec<f32>, u32, u32, u64) = match &gmm.covariance {
        Covariance::Diag(var) | Covariance::Spherical(var) => {
            let spherical = matches!(gmm.covariance, Covariance::Spherical(_));
            let per = if spherical { 1 } else { d };
            expect(
                if spherical {
                    "variances (k)"
                } else {
                    "variances (k × dims)"
                },
                var,
                k * per,
            )?;
            let mut prec = Vec::with_capacity(var.len());
            for (i, &v) in var.iter().enumerate() {
                if !(v.is_finite() && v > 0.0) {
                    return bad("variances", i, v, "variances must be finite and > 0");
                }
                let pc = 1.0 / f64::from(v).sqrt();
                log_det[i / per] += pc.ln() * if spherical { d as f64 } else { 1.0 };
                prec.push(pc as f32);
            }
            (prec, if spherical { 1 } else { 0 }, 0, d as u64)
        }
        Covariance::Full(p) => {
            expect("precisions_cholesky (k × dims × dims)", p, k * d * d)?;
            if let Some(i) = p.iter().position(|v| !v.is_finite()) {
                return bad("precisions_cholesky", i, p[i], "entries must be finite");
            }
            let mut triangular = true;
            for c in 0..k {
                for i in 0..d {
                    let diag = p[c * d * d + i * d + i];
                    if diag <= 0.0 {
                        return bad(
                            "precisions_cholesky",
                            c * d * d + i * d + i,
                            diag,
                            "the diagonal of each Cholesky factor must be > 0",
                        );
                    }
                    log_det[c] += f64::from(diag).ln();
                    for j in 0..i {
                        triangular &= p[c * d * d + i * d + j] == 0.0;
                    }
                }
            }
            let per = if triangular {
                (d * (d + 1) / 2) as u64
            } else {
                (d * d) as u64
            };
            (
                p.clone(),
                2,
                if triangular { MODE_TRIANGULAR } else { 0 },
                per + d as u64,
            )
        }
    };
    let mut words: Vec<f32> = gmm
        .weights
        .iter()
        .zip(&log_det)
        .map(|(&w, &ld)| {
            if w == 0.0 {
                f32::NEG_INFINITY
            } else {
                (f64::from(w).ln() + ld - d as f64 * half_log_2pi) as f32
            }
        })
        .collect();
    words.extend_from_slice(&gmm.means);
    words.extend_from_slice(&prec);
    Ok(Packed {
        words,
        k: k as u64,
        op,
        mode,
        per_component,
    })
}

/// An encoder-level Gaussian-mixture evaluation, prepared for `n` points of `dims` dimensions
/// and one mixture. The input is the row-major `n × dims` points (f32, from byte 0).
///
/// ```no_run
/// use logdomain::{Covariance, Gmm, GmmOp, GmmOutput, Gpu};
/// let gpu = Gpu::new()?;
/// let gmm = Gmm { weights: vec![0.5, 0.5], means: vec![-1.0, 1.0],
///                 covariance: Covariance::Spherical(vec![1.0, 1.0]) };
/// let op = GmmOp::new(&gpu, 1000, 1, &gmm, GmmOutput::ScoreSamples)?;
/// assert_eq!(op.output_len(), 1000);
/// # Ok::<(), logdomain::Error>(())
/// ```
pub struct GmmOp {
    output: GmmOutput,
    output_len: usize,
    k: usize,
    program: Program,
}

impl GmmOp {
    /// Prepares the evaluation; invalid parameters (weights negative or not summing to 1
    /// within 1e−4, non-positive variances, wrong lengths, non-finite values) are errors.
    pub fn new(
        gpu: &Gpu,
        n: usize,
        dims: usize,
        gmm: &Gmm,
        output: GmmOutput,
    ) -> Result<GmmOp, Error> {
        let caps = Caps::of(gpu);
        let packed = pack(gmm, dims)?;
        let (n64, d, k) = (n as u64, dims as u64, packed.k);
        if caps.cpu && packed.per_component + d > LANE_BUDGET {
            return Err(Error::Limit(format!(
                "{dims} dimensions need {} loop iterations per component in one invocation; \
                 software adapters end loops after 65,535",
                packed.per_component
            )));
        }
        let kb = ((LANE_BUDGET.saturating_sub(d)) / packed.per_component).clamp(1, k);
        let blocks = k.div_ceil(kb);
        let joint_bytes = n64
            .checked_mul(k * 4)
            .ok_or_else(|| Error::Shape("n × k overflows".into()))?;
        let usable = usable(&caps)?;
        if d * 4 > usable || k * 4 > usable {
            return Err(Error::Limit(
                "one point (or its k values) is larger than a storage binding".into(),
            ));
        }
        let p_max = (usable / (d * 4))
            .min(usable / (k * 4))
            .min((1u64 << 22) * u64::from(LL_WG) / blocks)
            .max(1);
        let c_off = u32_of(k, "components")?;
        let c2_off = u32_of(k + k * d, "means")?;
        let mut passes = Vec::new();
        let mut p0 = 0;
        while p0 < n64 {
            let p = p_max.min(n64 - p0);
            let (xw, xoff) = window(p0 * d * 4, p * d * 4, caps.storage_align);
            let (ow, ooff) = window(p0 * k * 4, p * k * 4, caps.storage_align);
            passes.push(LlPass {
                key: key("gmm_log_joint", packed.op, 0),
                params: LlParams {
                    rows: p as u32,
                    cols: u32_of(d, "dims")?,
                    a_off: xoff,
                    b_off: 0,
                    c_off,
                    c2_off,
                    out_off: ooff,
                    mode: packed.mode,
                    slots: blocks as u32,
                    k: k as u32,
                    kb: kb as u32,
                    ..LlParams::default()
                },
                groups: (p * blocks).div_ceil(u64::from(LL_WG)),
                bind: [
                    Bind {
                        src: Src::Input(0),
                        window: Some(xw),
                    },
                    Bind::whole(Src::Aux),
                    Bind::whole(Src::Dummy),
                    Bind {
                        src: Src::Scratch(0),
                        window: Some(ow),
                    },
                ],
            });
            p0 += p;
        }
        let func = match output {
            GmmOutput::ScoreSamples => RowFn::Logsumexp,
            GmmOutput::LogResponsibilities => RowFn::LogSoftmax,
        };
        let mut steps = vec![Step::Ll(passes)];
        if n > 0 {
            let rows = RowOp::new(
                gpu,
                func,
                RowsLayout::contiguous(n, k as usize),
                Strategy::Auto,
            )?;
            steps.push(Step::Rows(Box::new(rows), Src::Scratch(0), Src::Output));
        }
        let aux_bytes = packed.words.len() as u64 * 4;
        if aux_bytes > caps.max_binding {
            return Err(Error::Limit(format!(
                "the mixture's parameters ({aux_bytes} bytes) exceed a storage binding"
            )));
        }
        let output_len = match output {
            GmmOutput::ScoreSamples => n,
            GmmOutput::LogResponsibilities => n * k as usize,
        };
        let program = Program::new(
            gpu,
            steps,
            Some((bytemuck::cast_slice(&packed.words).to_vec(), 0)),
            [joint_bytes, 0],
            vec![n64 * d * 4],
            output_len as u64 * 4,
        )?;
        Ok(GmmOp {
            output,
            output_len,
            k: k as usize,
            program,
        })
    }

    /// What the op writes.
    pub fn output(&self) -> GmmOutput {
        self.output
    }

    /// Number of components.
    pub fn components(&self) -> usize {
        self.k
    }

    /// Number of f32 values written to the output.
    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// Records the evaluation: reads the points (f32, `n × dims`, from byte 0 of `points`) and
    /// writes [`GmmOp::output_len`] values at the start of `output`.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        points: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.program.check(&[points], output)?;
        self.program.encode(encoder, &[points], output, None)
    }

    /// Runs the evaluation once on resident buffers and returns the GPU time of its compute
    /// passes, from timestamp queries (`None` without `Features::TIMESTAMP_QUERY`). Waits.
    pub fn kernel_time(
        &self,
        gpu: &Gpu,
        points: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Option<std::time::Duration>, Error> {
        self.program.check(&[points], output)?;
        self.program.kernel_time(gpu, &[points], output)
    }
}

impl Gpu {
    fn run_gmm(
        &self,
        points: &[f32],
        n: usize,
        dims: usize,
        gmm: &Gmm,
        output: GmmOutput,
    ) -> Result<Vec<f32>, Error> {
        let expected = n
            .checked_mul(dims)
            .ok_or_else(|| Error::Shape(format!("{n} × {dims} overflows")))?;
        if points.len() != expected {
            return Err(Error::InputLength {
                what: "points",
                expected,
                actual: points.len(),
            });
        }
        let op = GmmOp::new(self, n, dims, gmm, output)?;
        self.run_program(&op.program, &[bytemuck::cast_slice(points)], op.output_len)
    }

    /// `log p(x)` of each of `n` points (row-major `n × dims`) under the mixture: scikit-learn's
    /// `GaussianMixture.score_samples`.
    ///
    /// ```no_run
    /// use logdomain::{Covariance, Gmm, Gpu};
    /// let gpu = Gpu::new()?;
    /// let gmm = Gmm { weights: vec![1.0], means: vec![0.0],
    ///                 covariance: Covariance::Diag(vec![1.0]) };
    /// let lp = gpu.gmm_score_samples(&[0.0], 1, 1, &gmm)?;
    /// assert!((lp[0] + 0.9189385).abs() < 1e-6);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn gmm_score_samples(
        &self,
        points: &[f32],
        n: usize,
        dims: usize,
        gmm: &Gmm,
    ) -> Result<Vec<f32>, Error> {
        self.run_gmm(points, n, dims, gmm, GmmOutput::ScoreSamples)
    }

    /// `log p(k | x)` for each point and component: `n × k` values, row-major
    /// (`predict_proba` in log space).
    pub fn gmm_log_responsibilities(
        &self,
        points: &[f32],
        n: usize,
        dims: usize,
        gmm: &Gmm,
    ) -> Result<Vec<f32>, Error> {
        self.run_gmm(points, n, dims, gmm, GmmOutput::LogResponsibilities)
    }
}
