//! CPU mirror of `shaders/gmm.wgsl`: the log-joint of points and components in scikit-learn's
//! parameterisation, then the log-sum-exp family's reference per row.
//!
//! These are test oracles and CPU baselines: inputs are assumed valid (the GPU ops check them),
//! and mismatched lengths or out-of-range targets panic.

use super::logsumexp::{log_softmax, logsumexp};
use crate::gmm::{Covariance, Gmm};

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
        Covariance::Full(p) => {
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
                Covariance::Full(_) => {
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

/// Log-responsibilities `log p(k | x)`: `n × k`.
pub fn log_responsibilities(points: &[f32], n: usize, dims: usize, gmm: &Gmm) -> Vec<f32> {
    log_softmax(&log_joint(points, n, dims, gmm), n, gmm.weights.len())
}
