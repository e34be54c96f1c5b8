//! CPU mirror of `shaders/gradients.wgsl`: the backward of the log-sum-exp family in f32, row
//! sums in the kernels' pairwise order, special values as the kernels give them.
//!
//! These are test oracles and CPU baselines: inputs are assumed valid (the GPU ops check them),
//! and mismatched lengths or out-of-range targets panic.

use super::likelihood::{chunk_partials, reduce_levels, sum_total, xexp};

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
            out.push(
                if lse[r].is_nan() || lse[r] == f32::INFINITY || v.is_nan() {
                    f32::NAN
                } else if v == f32::NEG_INFINITY {
                    0.0
                } else if !lse[r].is_finite() {
                    f32::NAN
                } else {
                    g[r] * xexp(v - lse[r])
                },
            );
        }
    }
    out
}

/// `g_j − exp(out_j) · Σ_k g_k`; NaN at NaN outputs, 0 at −inf ones.
pub fn log_softmax_backward(out: &[f32], g: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let s = row_sums(g, rows, cols);
    (0..rows * cols)
        .map(|i| {
            let o = out[i];
            if o.is_nan() {
                f32::NAN
            } else if o == f32::NEG_INFINITY {
                0.0
            } else {
                g[i] - xexp(o) * s[i / cols]
            }
        })
        .collect()
}

/// `p_j · (g_j − Σ_k g_k p_k)`; NaN at NaN probabilities, 0 at zero ones.
pub fn softmax_backward(p: &[f32], g: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let gp: Vec<f32> = p.iter().zip(g).map(|(a, b)| a * b).collect();
    let s = row_sums(&gp, rows, cols);
    (0..rows * cols)
        .map(|i| {
            if p[i].is_nan() {
                f32::NAN
            } else if p[i] == 0.0 {
                0.0
            } else {
                p[i] * (g[i] - s[i / cols])
            }
        })
        .collect()
}
