//! CPU mirror of `shaders/transform.wgsl`: the log transforms and the mean of logs in f32, the
//! sum in the kernels' pairwise order. Test oracles and CPU baselines.

use super::likelihood::{chunk_partials, reduce_levels, sum_mean, xlog};
use super::logsumexp::{ld_log1p, lse_identity, lse_push, lse_result};

/// A log transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogFn {
    /// `ln x` (−inf at 0, NaN below 0).
    Ln,
    /// `log10 x`.
    Log10,
    /// `ln(1 + x)`, accurate near 0 (−inf at −1, NaN below −1).
    Log1p,
}

/// `ln(e^x1 + e^x2)` as the kernels compute it: the log-sum-exp monoid over the pair, so NumPy's
/// special values (NaN if either is NaN, +inf if either is +inf, −inf only if both are) and
/// `x + ln 2` for equal finite values.
pub fn logaddexp(x1: f32, x2: f32) -> f32 {
    lse_result(lse_push(lse_push(lse_identity(), x1), x2))
}

/// `ln(1 + x)` as the kernels compute it (accurate near 0; −inf at −1, NaN below).
pub fn log1p(x: f32) -> f32 {
    if x.is_nan() || x < -1.0 {
        f32::NAN
    } else if x == -1.0 {
        f32::NEG_INFINITY
    } else if x == f32::INFINITY {
        x
    } else if (-0.292_893_22..0.414_213_57).contains(&x) {
        // ld_log1p's series branch holds on this interval.
        ld_log1p(x)
    } else {
        xlog(1.0 + x)
    }
}

/// `f(x)` as the kernels compute it.
pub fn transform(x: &[f32], f: LogFn) -> Vec<f32> {
    x.iter()
        .map(|&v| match f {
            LogFn::Ln => xlog(v),
            LogFn::Log10 => xlog(v) * std::f32::consts::LOG10_E,
            LogFn::Log1p => log1p(v),
        })
        .collect()
}

/// The mean of `ln(δ + x)` over the `rows × cols` values (chunks along rows, as the kernel).
pub fn mean_log(x: &[f32], rows: usize, cols: usize, delta: f32) -> f32 {
    let terms: Vec<f32> = x.iter().map(|&v| xlog(v + delta)).collect();
    let mut partials = Vec::new();
    for r in 0..rows {
        partials.extend(chunk_partials(&terms[r * cols..(r + 1) * cols]));
    }
    sum_mean(reduce_levels(partials), (rows * cols) as f32)
}
