//! CPU mirror of `shaders/gradients.wgsl`: the backward of the log-sum-exp family in f32, row
//! sums in the kernels' pairwise order, special values as the kernels give them.
//!
//! These are test oracles and CPU baselines: inputs are assumed valid (the GPU ops check them),
//! and mismatched lengths or out-of-range targets panic.

use super::likelihood::{Bce, CrossEntropy, GaussianNll, PoissonNll, Reduction};
use super::likelihood::{
    bce_element, categorical, chunk_partials, gaussian_nll_element, poisson_nll_element,
    reduce_levels, sum_total, xexp,
};
use super::logsumexp::{ld_exp_neg, logsumexp_parts};

fn row_sums(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..rows)
        .map(|r| {
            sum_total(reduce_levels(chunk_partials(
                &values[r * cols..(r + 1) * cols],
            )))
        })
        .collect()
}

/// `g_r · exp(x_rj − lse_r)`; NaN where the row's lse is NaN or +inf, 0 at −inf entries.
pub fn logsumexp_backward(x: &[f32], lse: &[f32], g: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for &v in &x[r * cols..(r + 1) * cols] {
            out.push(lse_backward_entry(v, g[r], lse[r]));
        }
    }
    out
}

/// `g_j − exp(out_j) · Σ_k g_k`; NaN at NaN outputs, 0 at −inf ones.
pub fn log_softmax_backward(out: &[f32], g: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let s = row_sums(g, rows, cols);
    (0..rows * cols)
        .map(|i| log_softmax_backward_entry(out[i], g[i], s[i / cols]))
        .collect()
}

/// `p_j · (g_j − Σ_k g_k p_k)`; NaN at NaN probabilities, 0 at zero ones.
pub fn softmax_backward(p: &[f32], g: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let gp: Vec<f32> = p.iter().zip(g).map(|(a, b)| a * b).collect();
    let s = row_sums(&gp, rows, cols);
    (0..rows * cols)
        .map(|i| softmax_backward_entry(p[i], g[i], s[i / cols]))
        .collect()
}

/// logsumexp's backward at one entry: `g · exp(x − lse)`; NaN where lse is NaN or +inf or x is
/// NaN, 0 at x = −inf. Mirrors `lse_backward_bits` in `shaders/common.wgsl`.
pub fn lse_backward_entry(x: f32, g: f32, lse: f32) -> f32 {
    if lse.is_nan() || lse == f32::INFINITY || x.is_nan() {
        f32::NAN
    } else if x == f32::NEG_INFINITY {
        0.0
    } else if !lse.is_finite() {
        f32::NAN
    } else {
        g * xexp(x - lse)
    }
}

/// log_softmax's backward at one entry of its output `y`: `g − exp(y) · Σ g`; NaN at NaN, 0 at
/// −inf. Mirrors `log_softmax_backward_bits`.
pub fn log_softmax_backward_entry(y: f32, g: f32, sum_g: f32) -> f32 {
    if y.is_nan() {
        f32::NAN
    } else if y == f32::NEG_INFINITY {
        0.0
    } else {
        g - xexp(y) * sum_g
    }
}

/// softmax's backward at one entry of its output `p`: `p · (g − Σ g p)`; NaN at NaN, 0 at 0.
/// Mirrors `softmax_backward_bits`.
pub fn softmax_backward_entry(p: f32, g: f32, sum_gp: f32) -> f32 {
    if p.is_nan() {
        f32::NAN
    } else if p == 0.0 {
        0.0
    } else {
        p * (g - sum_gp)
    }
}

/// `e^y − 1` for `y ≤ 0`, as the kernels compute it: a series where `|y| < ln 2 / 2`.
pub fn ld_expm1_neg(y: f32) -> f32 {
    if y < -0.346_573_6 {
        return ld_exp_neg(y) - 1.0;
    }
    let mut p = 1.0 + y * (1.0 / 10.0);
    for k in (2..=9).rev() {
        p = 1.0 + y * (1.0 / k as f32) * p;
    }
    y * p
}

/// `(σ(x), σ(−x))` for a finite x.
pub fn sigmoid_pair(x: f32) -> (f32, f32) {
    let e = ld_exp_neg(-x.abs());
    let (big, small) = (1.0 / (1.0 + e), e / (1.0 + e));
    if x >= 0.0 { (big, small) } else { (small, big) }
}

/// The gradient of one element of `F.gaussian_nll_loss` with respect to the input
/// (`dvar = false`) or the variance: `(x − y)/v` or `½ (1 − (x − y)·((x − y)/v))/v`,
/// `v = max(var, eps)`; NaN where the loss is NaN.
pub fn gaussian_nll_grad_element(
    x: f32,
    y: f32,
    var: f32,
    eps: f32,
    full: bool,
    dvar: bool,
) -> f32 {
    if gaussian_nll_element(x, y, var, eps, full).is_nan() {
        return f32::NAN;
    }
    let v = if var.is_finite() { var.max(eps) } else { var };
    let d = x - y;
    let dx = d / v;
    if dvar { 0.5 * ((1.0 - d * dx) / v) } else { dx }
}

/// The gradient of one element of `F.binary_cross_entropy_with_logits` with respect to the
/// logit: `(1 − y) σ(x) − pw · y · σ(−x)`; NaN where the loss is NaN.
pub fn bce_grad_element(x: f32, y: f32, pw: f32) -> f32 {
    if bce_element(x, y, pw).is_nan() {
        return f32::NAN;
    }
    let (s, t) = if x.is_finite() {
        sigmoid_pair(x)
    } else if x == f32::NEG_INFINITY {
        (0.0, 1.0)
    } else {
        (1.0, 0.0)
    };
    (1.0 - y) * s - (pw * y) * t
}

/// The gradient of one element of `F.poisson_nll_loss` with respect to the input:
/// `e^x − y` (log input) or `1 − y/(x + eps)`; NaN where the loss is NaN.
pub fn poisson_nll_grad_element(x: f32, y: f32, log_input: bool, full: bool, eps: f32) -> f32 {
    if poisson_nll_element(x, y, log_input, full, eps).is_nan() {
        return f32::NAN;
    }
    if log_input {
        xexp(x) - y
    } else {
        1.0 - y / (x + eps)
    }
}

fn scale_of(reduction: Reduction, n: usize) -> f32 {
    if reduction == Reduction::Mean && n > 0 {
        (1.0 / n as f64) as f32
    } else {
        1.0
    }
}

/// `F.gaussian_nll_loss` and its gradients `(loss, d_input, d_var)`; `d_var` is summed when
/// the variance is shared (one value).
pub fn gaussian_nll_with_grad(
    input: &[f32],
    target: &[f32],
    var: &[f32],
    o: &GaussianNll,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = input.len();
    let s = scale_of(o.reduction, n);
    let v = |i: usize| if var.len() == 1 { var[0] } else { var[i] };
    let grad = |dvar: bool| -> Vec<f32> {
        (0..n)
            .map(|i| s * gaussian_nll_grad_element(input[i], target[i], v(i), o.eps, o.full, dvar))
            .collect()
    };
    let dx = grad(false);
    let mut dv = grad(true);
    if var.len() == 1 && n != 1 {
        dv = vec![sum_total(reduce_levels(chunk_partials(&dv)))];
    }
    (
        super::likelihood::gaussian_nll(input, target, var, o),
        dx,
        dv,
    )
}

/// `F.binary_cross_entropy_with_logits` over `rows × cols` and its gradient.
pub fn binary_cross_entropy_with_logits_with_grad(
    logits: &[f32],
    targets: &[f32],
    rows: usize,
    cols: usize,
    o: &Bce,
) -> (Vec<f32>, Vec<f32>) {
    let s = scale_of(o.reduction, rows * cols);
    let pw = |c: usize| o.pos_weight.as_ref().map_or(1.0, |p| p[c]);
    let grad = (0..rows * cols)
        .map(|i| s * bce_grad_element(logits[i], targets[i], pw(i % cols.max(1))))
        .collect();
    (
        super::likelihood::binary_cross_entropy_with_logits(logits, targets, rows, cols, o),
        grad,
    )
}

/// `F.poisson_nll_loss` and its gradient.
pub fn poisson_nll_with_grad(
    input: &[f32],
    target: &[f32],
    o: &PoissonNll,
) -> (Vec<f32>, Vec<f32>) {
    let s = scale_of(o.reduction, input.len());
    let grad = input
        .iter()
        .zip(target)
        .map(|(&x, &y)| s * poisson_nll_grad_element(x, y, o.log_input, o.full, o.eps))
        .collect();
    (super::likelihood::poisson_nll(input, target, o), grad)
}

/// `F.cross_entropy` and its gradient with respect to the logits, as the fused kernel computes
/// them (see `shaders/gradients.wgsl`); targets must be valid.
pub fn cross_entropy_with_grad(
    x: &[f32],
    rows: usize,
    classes: usize,
    targets: &[i64],
    o: &CrossEntropy,
) -> (Vec<f32>, Vec<f32>) {
    let loss = categorical(x, rows, classes, targets, o, false);
    let parts = logsumexp_parts(x, rows, classes);
    let eps = f64::from(o.label_smoothing);
    let keep = (1.0 - eps) as f32;
    let share = (eps / classes.max(1) as f64) as f32;
    let w = |c: usize| o.weight.as_ref().map_or(1.0, |w| w[c]);
    let weight_sum = match &o.weight {
        Some(w) => w.iter().map(|&v| f64::from(v)).sum::<f64>() as f32,
        None => classes as f32,
    };
    // D: the pairwise sum of the targets' weights, as the kernels' reduction.
    let weights: Vec<f32> = targets
        .iter()
        .map(|&t| {
            if t == o.ignore_index {
                0.0
            } else {
                w(t as usize)
            }
        })
        .collect();
    let denom = reduce_levels(
        weights
            .iter()
            .map(|&v| super::likelihood::SumState {
                w: v,
                ..Default::default()
            })
            .collect(),
    )
    .w;
    let mut grad = Vec::with_capacity(rows * classes);
    for r in 0..rows {
        let (hi, lo) = (parts[2 * r], parts[2 * r + 1]);
        let t = targets[r];
        let ignored = t == o.ignore_index;
        let wt = if ignored { 1.0 } else { w(t as usize) };
        let coef = keep * wt + share * weight_sum;
        for c in 0..classes {
            let xv = x[r * classes + c];
            let g = if ignored || xv == f32::NEG_INFINITY {
                0.0
            } else if !hi.is_finite() {
                f32::NAN
            } else {
                let e = (xv - hi) - lo;
                let p = ld_exp_neg(e);
                let g = if c as i64 == t {
                    keep * wt * ld_expm1_neg(e) + share * (weight_sum * p - wt)
                } else {
                    coef * p - share * w(c)
                };
                if o.reduction == Reduction::Mean {
                    g / denom
                } else {
                    g
                }
            };
            grad.push(g);
        }
    }
    (loss, grad)
}
