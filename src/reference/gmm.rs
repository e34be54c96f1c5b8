//! CPU mirror of `shaders/gmm.wgsl`: the log-joint of points and components in scikit-learn's
//! parameterisation, then the log-sum-exp family's reference per row.
//!
//! These are test oracles and CPU baselines: inputs are assumed valid (the GPU ops check them),
//! and mismatched lengths or out-of-range targets panic.

use super::logsumexp::{log_softmax, logsumexp};

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
    /// One `dims × dims` Cholesky factor of the precision matrix all components share, as
    /// scikit-learn's `precisions_cholesky_` for `covariance_type='tied'` (evaluated as
    /// [`Covariance::Full`] with this factor for every component).
    Tied(Vec<f32>),
}

impl Covariance {
    /// [`Covariance::Tied`] as the [`Covariance::Full`] of `k` components that each have its
    /// factor; every other kind as it is.
    pub fn untied(&self, k: usize) -> std::borrow::Cow<'_, Covariance> {
        match self {
            Covariance::Tied(p) => std::borrow::Cow::Owned(Covariance::Full(p.repeat(k))),
            other => std::borrow::Cow::Borrowed(other),
        }
    }
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

impl Gmm {
    /// `k` components of equal weights and unit spherical variances about `means` (`k × dims`):
    /// its log-joint `const − ‖x − μ‖²/2` is largest at the nearest mean, so its labels are
    /// k-means' assignments; the fitter also carries centres in it.
    pub(crate) fn about_centres(means: Vec<f32>, k: usize) -> Gmm {
        Gmm {
            weights: vec![1.0 / k as f32; k],
            means,
            covariance: Covariance::Spherical(vec![1.0; k]),
        }
    }
}

/// What a [`GmmReduceOp`](crate::GmmReduceOp) sums over the points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GmmReduction {
    /// The total log-likelihood and its gradient with respect to the weights, means and
    /// variances ([`GmmGradients`](crate::GmmGradients)).
    Gradients,
    /// The E-step statistics `Σᵢ rᵢₖ`, `Σᵢ rᵢₖ xᵢ`, `Σᵢ rᵢₖ xᵢ²` and the total log-likelihood
    /// ([`GmmSufficientStats`](crate::GmmSufficientStats)).
    SufficientStats,
    /// The scatter of the points about each component's mean `μ_k` (the mixture's own means):
    /// `Σᵢ rᵢₖ`, `Σᵢ rᵢₖ (xᵢ − μ_k)` and `Σᵢ rᵢₖ (xᵢ − μ_k)²` per dimension, and the total
    /// log-likelihood ([`GmmCenteredStats`](crate::GmmCenteredStats)) — what EM's M-step needs for diagonal and
    /// spherical covariances, without the cancellation of `Σ r x² − N μ²` far from the origin.
    CenteredStats,
    /// [`GmmReduction::CenteredStats`] and the off-diagonal scatter
    /// `Σᵢ rᵢₖ (x_ia − μ_ka)(x_ib − μ_kb)`, `a < b` — what EM's M-step needs for full
    /// covariances.
    CenteredScatter,
}

/// Each component's constant `ln w_k + ln det(P_k) − (d/2)·ln 2π`, from f64 (−inf for a
/// weight of zero), as the GPU op packs it.
pub fn component_constants(weights: &[f32], log_det: &[f64], d: usize) -> Vec<f32> {
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    weights
        .iter()
        .zip(log_det)
        .map(|(&w, &ld)| {
            if w == 0.0 {
                f32::NEG_INFINITY
            } else {
                (f64::from(w).ln() + ld - d as f64 * half_log_2pi) as f32
            }
        })
        .collect()
}

/// `ln w_k + ln N(x_p | μ_k, Σ_k)` for every point and component: `n × k`, row-major. Parameters
/// are assumed valid (the GPU op checks them).
pub fn log_joint(points: &[f32], n: usize, dims: usize, gmm: &Gmm) -> Vec<f32> {
    let k = gmm.weights.len();
    if let Covariance::Tied(_) = gmm.covariance {
        let untied = Gmm {
            covariance: gmm.covariance.untied(k).into_owned(),
            ..gmm.clone()
        };
        return log_joint(points, n, dims, &untied);
    }
    let d = dims;
    // Constants and precisions' Cholesky factors as the host packs them for the kernel.
    let mut log_det = vec![0f64; k];
    let prec: Vec<f32> = match &gmm.covariance {
        Covariance::Diag(v) => v
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let pc = 1.0 / f64::from(v).sqrt();
                log_det[i / d] += pc.ln();
                pc as f32
            })
            .collect(),
        Covariance::Spherical(v) => v
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let pc = 1.0 / f64::from(v).sqrt();
                log_det[i] += pc.ln() * d as f64;
                pc as f32
            })
            .collect(),
        Covariance::Full(p) | Covariance::Tied(p) => {
            for (c, ld) in log_det.iter_mut().enumerate() {
                for i in 0..d {
                    *ld += f64::from(p[c * d * d + i * d + i]).ln();
                }
            }
            p.clone()
        }
    };
    let consts = component_constants(&gmm.weights, &log_det, d);
    let mut out = Vec::with_capacity(n * k);
    for p in 0..n {
        let x = &points[p * d..(p + 1) * d];
        let finite = x.iter().all(|v| v.is_finite());
        for c in 0..k {
            if !finite {
                out.push(f32::NAN);
                continue;
            }
            if consts[c] == f32::NEG_INFINITY {
                out.push(f32::NEG_INFINITY);
                continue;
            }
            let mu = &gmm.means[c * d..(c + 1) * d];
            let mut q = 0f32;
            match &gmm.covariance {
                Covariance::Diag(_) => {
                    for i in 0..d {
                        let t = (x[i] - mu[i]) * prec[c * d + i];
                        q += t * t;
                    }
                }
                Covariance::Spherical(_) => {
                    for i in 0..d {
                        let t = (x[i] - mu[i]) * prec[c];
                        q += t * t;
                    }
                }
                Covariance::Full(_) | Covariance::Tied(_) => {
                    for j in 0..d {
                        let mut y = 0f32;
                        for i in 0..d {
                            y += (x[i] - mu[i]) * prec[c * d * d + i * d + j];
                        }
                        q += y * y;
                    }
                }
            }
            out.push(if q.is_finite() {
                consts[c] - 0.5 * q
            } else {
                f32::NEG_INFINITY
            });
        }
    }
    out
}

/// `score_samples`: `log p(x)` per point.
pub fn score_samples(points: &[f32], n: usize, dims: usize, gmm: &Gmm) -> Vec<f32> {
    logsumexp(&log_joint(points, n, dims, gmm), n, gmm.weights.len())
}

/// `predict`: the index of each point's largest log-joint, the first of equals (values
/// ordered as `f32::total_cmp` orders them, −inf lowest); `u32::MAX` for a point with a
/// non-finite coordinate.
pub fn predict(points: &[f32], n: usize, dims: usize, gmm: &Gmm) -> Vec<u32> {
    let k = gmm.weights.len();
    log_joint(points, n, dims, gmm)
        .chunks(k)
        .zip(points.chunks(dims))
        .map(|(row, x)| {
            if x.iter().any(|v| !v.is_finite()) {
                return u32::MAX;
            }
            let mut best = 0;
            for (c, v) in row.iter().enumerate() {
                if v.total_cmp(&row[best]) == std::cmp::Ordering::Greater {
                    best = c;
                }
            }
            best as u32
        })
        .collect()
}

/// Log-responsibilities `log p(k | x)`: `n × k`.
pub fn log_responsibilities(points: &[f32], n: usize, dims: usize, gmm: &Gmm) -> Vec<f32> {
    log_softmax(&log_joint(points, n, dims, gmm), n, gmm.weights.len())
}

/// The packed sums of [`crate::GmmReduceOp`], as the kernels order them:
/// `[Σ log p(x) | first (k × dims) | per component (k) | pairs (k × P) | second (k × dims)]`,
/// with `rᵢₖ = exp(Lᵢₖ − log p(xᵢ))` and, per (component, dimension), the sums `Σ r x` and
/// `Σ r x²` (statistics), `Σ r (x − μ)` and `Σ r (x − μ)²` (centered) or `Σ r (x − μ)/σ²` and
/// `Σ r ((x − μ)²/σ² − 1)/(2σ²)` (gradients, diagonal mixtures only), per component `Σ r` or
/// `Σ r / w`, per pair `a < b` of dimensions `Σ r (x_a − μ_a)(x_b − μ_b)` (scatter only). Each
/// sum is pairwise over chunks of 64 points, then 64 partials at a time.
pub fn moments(points: &[f32], n: usize, dims: usize, gmm: &Gmm, kind: GmmReduction) -> Vec<f32> {
    use super::likelihood::{chunk_partials, reduce_levels, sum_total, xexp};
    let gradients = kind == GmmReduction::Gradients;
    let centered = matches!(
        kind,
        GmmReduction::CenteredStats | GmmReduction::CenteredScatter
    );
    let var = match &gmm.covariance {
        Covariance::Diag(var) => Some(var),
        _ if gradients => panic!("gradients are for diagonal covariances"),
        _ => None,
    };
    let k = gmm.weights.len();
    let joint = log_joint(points, n, dims, gmm);
    let ll = logsumexp(&joint, n, k);
    let r = |i: usize, c: usize| xexp(joint[i * k + c] - ll[i]);
    let sum = |terms: Vec<f32>| sum_total(reduce_levels(chunk_partials(&terms)));
    let mut out = vec![sum(ll.clone())];
    if centered {
        let scatter = kind == GmmReduction::CenteredScatter;
        return centered_tiled(points, n, dims, gmm, &r, out, scatter);
    }
    let mut second = Vec::with_capacity(k * dims);
    for c in 0..k {
        for j in 0..dims {
            let mu = gmm.means[c * dims + j];
            let tau = var.map_or(1.0, |v| (1.0 / f64::from(v[c * dims + j])) as f32);
            let (mut s, mut w) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for i in 0..n {
                let (ri, x) = (r(i, c), points[i * dims + j]);
                if gradients {
                    let dev = x - mu;
                    let rd = ri * dev * tau;
                    s.push(rd);
                    w.push(0.5 * (rd * dev - ri) * tau);
                } else if centered {
                    let rd = ri * (x - mu);
                    s.push(rd);
                    w.push(rd * (x - mu));
                } else {
                    s.push(ri * x);
                    w.push(ri * x * x);
                }
            }
            out.push(sum(s));
            second.push(sum(w));
        }
    }
    for c in 0..k {
        let terms = (0..n)
            .map(|i| {
                if gradients {
                    r(i, c) / gmm.weights[c]
                } else {
                    r(i, c)
                }
            })
            .collect();
        out.push(sum(terms));
    }
    if kind == GmmReduction::CenteredScatter {
        for c in 0..k {
            for a in 0..dims {
                for b in a + 1..dims {
                    let (ma, mb) = (gmm.means[c * dims + a], gmm.means[c * dims + b]);
                    let terms = (0..n)
                        .map(|i| {
                            r(i, c) * (points[i * dims + a] - ma) * (points[i * dims + b] - mb)
                        })
                        .collect();
                    out.push(sum(terms));
                }
            }
        }
    }
    out.extend(second);
    out
}

/// A sum over the points of the terms a function gives, in some kernel's order.
type SumOf<'a> = dyn Fn(&dyn Fn(usize) -> f32) -> f32 + 'a;

/// The centered sums' rows in the packed order, each summed by `sum`: `Σ r (x − μ)` per
/// (component, dimension) and `Σ r` per component pushed to `out`; `Σ r (x − μ)²` returned
/// (they end the packed output).
fn centered_rows(
    points: &[f32],
    dims: usize,
    gmm: &Gmm,
    r: &dyn Fn(usize, usize) -> f32,
    sum: &SumOf<'_>,
    out: &mut Vec<f32>,
) -> Vec<f32> {
    let k = gmm.weights.len();
    let mut second = Vec::with_capacity(k * dims);
    for c in 0..k {
        for j in 0..dims {
            let mu = gmm.means[c * dims + j];
            let dev = |i: usize| points[i * dims + j] - mu;
            out.push(sum(&|i| r(i, c) * dev(i)));
            second.push(sum(&|i| r(i, c) * dev(i) * dev(i)));
        }
    }
    for c in 0..k {
        out.push(sum(&|i| r(i, c)));
    }
    second
}

/// A tiled kernel's chunk sum as the partial state `moment_store` writes: NaN where it is not
/// finite.
fn chunk_state(sum: f32) -> super::likelihood::SumState {
    use super::likelihood::{SUM_NAN, SumState};
    if sum.is_finite() {
        SumState {
            s: sum,
            w: 0.0,
            flags: 0,
        }
    } else {
        SumState {
            s: f32::NAN,
            w: f32::NAN,
            flags: SUM_NAN,
        }
    }
}

/// [`moments`] for `CenteredStats` as `gmm_estep_tiled` orders them, the one-pass E-step of
/// diagonal and spherical mixtures ([`crate::GmmReduceOp::one_pass`]): `log p(x)` through the
/// log-sum-exp monoid in component order and `r = exp(L − log p(x))`; per chunk of 256 points,
/// four streams (points `4u + s`) each adding its terms in order, then the streams added in
/// order (a non-finite chunk sum becomes NaN); the chunk sums pairwise 64 at a time; and the
/// pairwise sum of `log p(x)`.
pub fn moments_one_pass(points: &[f32], n: usize, dims: usize, gmm: &Gmm) -> Vec<f32> {
    use super::likelihood::{SumState, chunk_partials, reduce_levels, sum_total, xexp};
    use super::logsumexp::{lse_identity, lse_push};
    let k = gmm.weights.len();
    let joint = log_joint(points, n, dims, gmm);
    let lp: Vec<f32> = joint
        .chunks(k)
        .map(|row| {
            row.iter()
                .fold(lse_identity(), |st, &v| lse_push(st, v))
                .logsumexp()
        })
        .collect();
    let r = |i: usize, c: usize| xexp(joint[i * k + c] - lp[i]);
    let chunk_sum = |ch: usize, term: &dyn Fn(usize) -> f32| -> SumState {
        let (start, count) = (ch * 256, (n - ch * 256).min(256));
        let mut total = 0.0f32;
        for s in 0..4 {
            let mut acc = 0.0f32;
            for p in (s..count.next_multiple_of(4)).step_by(4) {
                acc += if p < count { term(start + p) } else { 0.0 };
            }
            total = if s == 0 { acc } else { total + acc };
        }
        chunk_state(total)
    };
    let sum = |term: &dyn Fn(usize) -> f32| -> f32 {
        sum_total(reduce_levels(
            (0..n.div_ceil(256)).map(|ch| chunk_sum(ch, term)).collect(),
        ))
    };
    let mut out = vec![sum_total(reduce_levels(chunk_partials(&lp)))];
    let second = centered_rows(points, dims, gmm, &r, &sum, &mut out);
    out.extend(second);
    out
}

/// One Lloyd iteration of k-means as [`crate::KMeansStepOp`] packs it:
/// `[labels (u32 bits) | Σ (x − c) (k × dims) | N (k) | Σ (x − c)² (k × dims)]`. The labels are
/// [`predict`]'s under equal weights and unit spherical variances about `centres`; the sums are
/// [`moments`]' centered sums with one-hot responsibilities, in `gmm_moments_tiled`'s order.
pub fn kmeans_step(points: &[f32], n: usize, dims: usize, centres: &[f32]) -> Vec<f32> {
    let k = centres.len() / dims;
    let gmm = Gmm::about_centres(centres.to_vec(), k);
    let labels = predict(points, n, dims, &gmm);
    let r = |i: usize, c: usize| if labels[i] == c as u32 { 1.0 } else { 0.0 };
    let out = labels.iter().map(|&l| f32::from_bits(l)).collect();
    centered_tiled(points, n, dims, &gmm, &r, out, false)
}

/// [`moments`] for `CenteredStats` and `CenteredScatter`, as `gmm_moments_tiled` and
/// `gmm_scatter_tiled` order the sums: within each chunk of 64 points the terms added one after
/// another (a non-finite chunk sum becomes NaN), the chunk sums pairwise 64 at a time.
fn centered_tiled(
    points: &[f32],
    n: usize,
    dims: usize,
    gmm: &Gmm,
    r: &dyn Fn(usize, usize) -> f32,
    mut out: Vec<f32>,
    scatter: bool,
) -> Vec<f32> {
    use super::likelihood::{SumState, reduce_levels, sum_total};
    let k = gmm.weights.len();
    let chunk = |f: &dyn Fn(usize) -> f32| -> f32 {
        let partials: Vec<SumState> = (0..n.div_ceil(64))
            .map(|ch| {
                let mut acc = 0.0f32;
                for i in ch * 64..(ch * 64 + 64).min(n) {
                    acc += f(i);
                }
                chunk_state(acc)
            })
            .collect();
        sum_total(reduce_levels(partials))
    };
    let second = centered_rows(points, dims, gmm, r, &chunk, &mut out);
    for c in 0..k * usize::from(scatter) {
        let dev = |i: usize, j: usize| points[i * dims + j] - gmm.means[c * dims + j];
        for a in 0..dims {
            for b in a + 1..dims {
                out.push(chunk(&|i| r(i, c) * dev(i, a) * dev(i, b)));
            }
        }
    }
    out.extend(second);
    out
}
