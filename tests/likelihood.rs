//! Log-likelihood reductions on whatever adapter `Gpu::new()` finds (run with
//! WGPU_BACKEND=vulkan and WGPU_BACKEND=gl): PyTorch's semantics, accuracy against an f64
//! oracle computed from the same f32 inputs with bounds written as formulas, special values,
//! GPU reductions that are deterministic and independent of binding sizes and grid shapes, the
//! encoder-level API, and errors.

mod common;

use common::*;
use logdomain::{
    Bce, CrossEntropy, Error, GaussianNll, Gpu, InputFormat, LossOp, PoissonNll, Reduction,
    SENTINEL_BITS,
};
use wgpu::util::DeviceExt;

const INF: f32 = f32::INFINITY;
const NEG_INF: f32 = f32::NEG_INFINITY;
const NAN: f32 = f32::NAN;
const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Sum, Reduction::Mean];

/// An f64 truth and the bound the f32 result must meet.
#[derive(Clone, Copy, Debug)]
struct Want {
    v: f64,
    bound: f64,
}

fn want(v: f64, bound: f64) -> Want {
    Want { v, bound }
}

/// Same special value, or within the bound; a truth beyond f32's range must come out as the
/// infinity it rounds to. Never the sentinel.
fn ok(got: f32, w: Want) -> bool {
    if got.to_bits() == SENTINEL_BITS {
        return false;
    }
    if w.v.is_nan() {
        return got.is_nan();
    }
    if w.v.is_infinite() || w.v.abs() > f64::from(f32::MAX) * (1.0 + U) {
        return f64::from(got) == w.v.signum() * f64::INFINITY;
    }
    got.is_finite() && (f64::from(got) - w.v).abs() <= w.bound
}

fn check_all(got: &[f32], want: &[Want], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            ok(g, w),
            "{what}[{i}]: got {g:e}, want {:e} ± {:e} (error {:e})",
            w.v,
            w.bound,
            (f64::from(g) - w.v).abs()
        );
    }
}

/// Depth of the GPU's summation tree for N values: pairwise within chunks of 64 and across 64
/// partials per level, so at most ⌈log2 N⌉ plus one per level.
fn depth(n: usize) -> f64 {
    let n = n.max(1) as f64;
    n.log2().ceil() + n.log(64.0).ceil() + 1.0
}

/// The reduced truth: Σ v (or Σ v / W) with the bound Σ bounds + depth(N)·u·Σ|v| (and, for a
/// mean, the same relative error again for the summed weights, plus u for the division).
fn reduce(values: &[Want], weights: &[f64], reduction: Reduction) -> Vec<Want> {
    if reduction == Reduction::None {
        return values.to_vec();
    }
    let sum: f64 = values.iter().map(|w| w.v).sum();
    let abs: f64 = values
        .iter()
        .filter(|w| w.v.is_finite())
        .map(|w| w.v.abs())
        .sum();
    let bound: f64 = values
        .iter()
        .filter(|w| w.v.is_finite())
        .map(|w| w.bound)
        .sum::<f64>()
        + depth(values.len()) * U * abs;
    if reduction == Reduction::Sum {
        return vec![want(sum, bound)];
    }
    let w: f64 = weights.iter().sum();
    let mean = sum / w;
    let wabs: f64 = weights.iter().map(|w| w.abs()).sum();
    vec![want(
        mean,
        bound / w.abs() + depth(values.len()) * U * mean.abs() * wabs / w.abs() + U * mean.abs(),
    )]
}

// ---------------------------------------------------------------------------------------------
// f64 oracles of PyTorch's formulas, from the same f32 inputs.

fn f(x: f32) -> f64 {
    f64::from(x)
}

fn softplus64(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

fn gaussian_want(x: f32, y: f32, var: f32, eps: f32, full: bool) -> Want {
    let var = f(var);
    if var.is_nan() || var < 0.0 {
        return want(f64::NAN, 0.0);
    }
    let v = if var.is_finite() {
        var.max(f(eps))
    } else {
        var
    };
    let d = f(x) - f(y);
    let q = d * d / v;
    let lv = v.ln();
    let c = if full {
        (2.0 * std::f64::consts::PI).ln()
    } else {
        0.0
    };
    let value = 0.5 * (lv + q + c);
    // ln: 4u relative; d rounded (u), squared and divided (3u): 6u·q; the sums: u each.
    want(value, 0.5 * (8.0 * U * (lv.abs() + q + c)))
}

fn bce_want(x: f32, y: f32, pw: f32) -> Want {
    let (x, y, pw) = (f(x), f(y), f(pw));
    if x.is_finite() && y.is_finite() {
        let a = (1.0 - y) * softplus64(x);
        let b = pw * y * softplus64(-x);
        // softplus 4u, (1 − y) u, products 2u, the sum u.
        return want(a + b, 8.0 * U * (a.abs() + b.abs()));
    }
    // PyTorch's form in IEEE arithmetic: (1 − y)·x − (1 + (pw − 1)·y)·logsigmoid(x).
    let log_sig = if x.is_nan() {
        f64::NAN
    } else {
        x.min(0.0) - (-x.abs()).exp().ln_1p()
    };
    want((1.0 - y) * x - log_sig * (1.0 + (pw - 1.0) * y), 0.0)
}

fn poisson_want(x: f32, y: f32, log_input: bool, full: bool, eps: f32) -> Want {
    let (x, y) = (f(x), f(y));
    let (mut v, mut bound) = if log_input {
        let e = x.exp();
        (e - y * x, 4.0 * U * (e + (y * x).abs()))
    } else {
        let l = (x + f(eps)).ln();
        (x - y * l, 4.0 * U * (x.abs() + y.abs() * (l.abs() + 1.0)))
    };
    if full && y > 1.0 {
        let s = y * y.ln() - y + 0.5 * (2.0 * std::f64::consts::PI * y).ln();
        v += s;
        bound += 6.0
            * U
            * ((y * y.ln()).abs() + y + (0.5 * (2.0 * std::f64::consts::PI * y).ln()).abs());
    }
    if !v.is_finite() {
        bound = 0.0;
    }
    want(v, bound)
}

/// Per-row truths of `log_prod`: Σ ln p with the bound (4 + depth(cols)) · u · Σ |ln p|.
fn log_prod_want(p: &[f32], rows: usize, cols: usize) -> Vec<Want> {
    (0..rows)
        .map(|r| {
            let row = &p[r * cols..(r + 1) * cols];
            let v: f64 = row.iter().map(|&q| f(q).ln()).sum();
            let abs: f64 = row.iter().map(|&q| f(q).ln().abs()).sum();
            want(v, (4.0 + depth(cols)) * U * abs)
        })
        .collect()
}

/// −log_softmax of a row of logits (or minus the row of log-probabilities, `nll`) in f64, and
/// the error bound e_c of each entry.
fn neg_log_softmax(row: &[f32], nll: bool) -> (Vec<f64>, Vec<f64>) {
    let classes = row.len();
    if nll {
        row.iter().map(|&v| (-f(v), U * f(v).abs())).unzip()
    } else if row.iter().any(|v| v.is_nan() || *v == INF) {
        // PyTorch's log_softmax: x − max is NaN at a +inf, and the sum then NaN.
        (vec![f64::NAN; classes], vec![0.0; classes])
    } else {
        let tr = truth(row);
        let g = (classes.max(2) as f64).log2().ceil();
        let lo = tr.lse - tr.max;
        row.iter()
            .zip(&tr.log_softmax)
            .map(|(&v, &lsm)| {
                let e = U * (tr.max - f(v)).abs()
                    + U * lsm.abs()
                    + 8.0 * U * lo.abs()
                    + (70.0 + g) * U
                    + U * tr.shift_term;
                (-lsm, e)
            })
            .unzip()
    }
}

/// Per-row truths of cross-entropy (or NLL from log-probabilities) with the weights each row
/// adds to a mean's denominator.
fn categorical_want(
    x: &[f32],
    rows: usize,
    classes: usize,
    targets: &[i64],
    o: &CrossEntropy,
    nll: bool,
) -> (Vec<Want>, Vec<f64>) {
    let eps = f(o.label_smoothing);
    let w = |c: usize| o.weight.as_ref().map_or(1.0, |w| f(w[c]));
    let mut out = Vec::new();
    let mut weights = Vec::new();
    for r in 0..rows {
        let row = &x[r * classes..(r + 1) * classes];
        if targets[r] == o.ignore_index {
            out.push(want(0.0, 0.0));
            weights.push(0.0);
            continue;
        }
        let t = targets[r] as usize;
        let (neg_lsm, err) = neg_log_softmax(row, nll);
        let nll_t = w(t) * neg_lsm[t];
        let mut v = nll_t;
        let mut bound = w(t).abs() * err[t] + U * nll_t.abs();
        if eps > 0.0 {
            let terms: Vec<f64> = (0..classes).map(|c| w(c) * neg_lsm[c]).collect();
            let smooth: f64 = terms.iter().sum();
            let sb: f64 = (0..classes).map(|c| w(c).abs() * err[c]).sum::<f64>()
                + (depth(classes) + 1.0) * U * terms.iter().map(|t| t.abs()).sum::<f64>();
            let k = eps / classes as f64;
            v = (1.0 - eps) * nll_t + k * smooth;
            bound = (1.0 - eps) * bound
                + k * sb
                + 3.0 * U * ((1.0 - eps) * nll_t.abs() + k * smooth.abs());
        }
        if !v.is_finite() {
            bound = 0.0;
        }
        out.push(want(v, bound));
        weights.push(w(t));
    }
    (out, weights)
}

// ---------------------------------------------------------------------------------------------

#[test]
fn cross_entropy_semantics() {
    let gpu = gpu();
    let ln3 = 3f64.ln();
    // Equal logits: ln C per row, whatever the target.
    let got = gpu
        .cross_entropy(&[5.0; 6], 2, 3, &[0, 2], &CrossEntropy::default())
        .unwrap();
    check_all(&got, &[want(ln3, 4.0 * U)], "uniform mean");
    // Ignored rows: 0 per row, no share in the mean's denominator; every row ignored: the
    // mean is NaN and the sum 0 (PyTorch).
    let x = [1.0, 2.0, 3.0, 0.5, 0.5, 9.0];
    let none = CrossEntropy {
        reduction: Reduction::None,
        ..Default::default()
    };
    let got = gpu.cross_entropy(&x, 2, 3, &[-100, 1], &none).unwrap();
    assert_eq!(got[0], 0.0);
    let mean = gpu
        .cross_entropy(&x, 2, 3, &[-100, 1], &CrossEntropy::default())
        .unwrap();
    assert_eq!(mean[0].to_bits(), got[1].to_bits());
    let all_ignored = gpu
        .cross_entropy(
            &x,
            2,
            3,
            &[7, 7],
            &CrossEntropy {
                ignore_index: 7,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(all_ignored[0].is_nan() && all_ignored[0].to_bits() != SENTINEL_BITS);
    let sum_ignored = gpu
        .cross_entropy(
            &x,
            2,
            3,
            &[7, 7],
            &CrossEntropy {
                ignore_index: 7,
                reduction: Reduction::Sum,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(sum_ignored, vec![0.0]);
    // An empty batch: mean NaN, sum 0, none empty.
    assert!(
        gpu.cross_entropy(&[], 0, 3, &[], &CrossEntropy::default())
            .unwrap()[0]
            .is_nan()
    );
    assert!(gpu.cross_entropy(&[], 0, 3, &[], &none).unwrap().is_empty());
    // Class weights: the mean divides by the summed weights of the non-ignored targets.
    let o = CrossEntropy {
        weight: Some(vec![0.5, 2.0, 0.0]),
        ..Default::default()
    };
    let x = [1.0, 2.0, 3.0, 0.5, 0.5, 9.0, -1.0, 4.0, 2.0];
    let targets = [0, 1, 2];
    let (rows, w) = categorical_want(&x, 3, 3, &targets, &o, false);
    check_all(
        &gpu.cross_entropy(&x, 3, 3, &targets, &o).unwrap(),
        &reduce(&rows, &w, Reduction::Mean),
        "weighted mean",
    );
    // Zero weights everywhere: 0 / 0 = NaN, as in PyTorch.
    let zero = CrossEntropy {
        weight: Some(vec![0.0; 3]),
        ..Default::default()
    };
    assert!(gpu.cross_entropy(&x, 3, 3, &targets, &zero).unwrap()[0].is_nan());
    // Label smoothing against the f64 oracle of PyTorch's formula, all reductions.
    for reduction in REDUCTIONS {
        let o = CrossEntropy {
            weight: Some(vec![0.5, 2.0, 1.5]),
            label_smoothing: 0.2,
            ignore_index: 1,
            reduction,
        };
        let targets = [0, 1, 2];
        let (rows, w) = categorical_want(&x, 3, 3, &targets, &o, false);
        check_all(
            &gpu.cross_entropy(&x, 3, 3, &targets, &o).unwrap(),
            &reduce(&rows, &w, reduction),
            &format!("label smoothing {reduction:?}"),
        );
    }
}

#[test]
fn cross_entropy_special_values() {
    let gpu = gpu();
    let none = CrossEntropy {
        reduction: Reduction::None,
        ..Default::default()
    };
    #[rustfmt::skip]
    let x = [
        0.0, NEG_INF, 1.0,     // target -inf: +inf
        0.0, NEG_INF, 1.0,     // target finite, another -inf: finite
        NAN, 0.0, 1.0,         // NaN: NaN
        INF, 0.0, 1.0,         // +inf: NaN
        NEG_INF, NEG_INF, NEG_INF, // all -inf: NaN
        3e38, -3e38, 0.0,      // extremes: finite
        1e4, 1e4 + 1.0, 1e4 - 1.0, // far from 0: the difference is exact
    ];
    let targets = [1, 2, 0, 1, 0, 1, 0];
    let (want_rows, _) = categorical_want(&x, 7, 3, &targets, &none, false);
    let got = gpu.cross_entropy(&x, 7, 3, &targets, &none).unwrap();
    check_all(&got, &want_rows, "special rows");
    assert_eq!(got[0], INF);
    assert!(got[2].is_nan() && got[3].is_nan() && got[4].is_nan());
    // The mean sees the +inf and the NaNs.
    assert!(
        gpu.cross_entropy(&x, 7, 3, &targets, &CrossEntropy::default())
            .unwrap()[0]
            .is_nan()
    );
    // NLL from log-probabilities: -inf log-probability gives +inf; 0 weight times inf is NaN.
    let lp = [NEG_INF, 0.0, -0.5, -2.0];
    let got = gpu.nll_loss(&lp, 2, 2, &[0, 1], &none).unwrap();
    assert_eq!(got, vec![INF, 2.0]);
    let zero_w = CrossEntropy {
        weight: Some(vec![0.0, 1.0]),
        ..none.clone()
    };
    let got = gpu.nll_loss(&lp, 2, 2, &[0, 1], &zero_w).unwrap();
    assert!(got[0].is_nan() && got[1] == 2.0);
}

#[test]
fn cross_entropy_accuracy_on_many_shapes() {
    let gpu = gpu();
    let mut rng = Rng(3);
    for (rows, classes) in [(1, 1), (3, 7), (70_000, 5), (300, 1000), (2, 100_003)] {
        let x = rng.vec(rows * classes, -30.0, 30.0);
        let targets: Vec<i64> = (0..rows)
            .map(|r| {
                if r % 17 == 5 {
                    -100
                } else {
                    (rng.next_u64() % classes as u64) as i64
                }
            })
            .collect();
        let weight: Vec<f32> = rng.vec(classes, 0.1, 3.0);
        for (smoothing, weighted) in [(0.0, false), (0.1, true)] {
            for reduction in REDUCTIONS {
                let o = CrossEntropy {
                    weight: weighted.then(|| weight.clone()),
                    label_smoothing: smoothing,
                    reduction,
                    ..Default::default()
                };
                let (rows_w, w) = categorical_want(&x, rows, classes, &targets, &o, false);
                let what = format!("ce {rows}x{classes} eps {smoothing} {reduction:?}");
                check_all(
                    &gpu.cross_entropy(&x, rows, classes, &targets, &o).unwrap(),
                    &reduce(&rows_w, &w, reduction),
                    &what,
                );
                if smoothing == 0.0 {
                    let lp = gpu.log_softmax(&x, rows, classes).unwrap();
                    let (rows_w, w) = categorical_want(&lp, rows, classes, &targets, &o, true);
                    check_all(
                        &gpu.nll_loss(&lp, rows, classes, &targets, &o).unwrap(),
                        &reduce(&rows_w, &w, reduction),
                        &format!("nll {what}"),
                    );
                }
            }
        }
    }
}

#[test]
fn elementwise_losses_match_pytorch_formulas() {
    let gpu = gpu();
    let mut rng = Rng(11);
    for n in [1usize, 63, 64, 65, 4097, 300_001] {
        let x = rng.vec(n, -20.0, 20.0);
        let y = rng.vec(n, -20.0, 20.0);
        let var = rng.vec(n, 0.0, 5.0);
        let counts: Vec<f32> = (0..n).map(|_| (rng.next_u64() % 12) as f32).collect();
        let rates = rng.vec(n, 0.0, 10.0);
        let probs = rng.vec(n, 0.0, 1.0);
        let ones = vec![1.0; n];
        for reduction in REDUCTIONS {
            for full in [false, true] {
                let o = GaussianNll {
                    full,
                    reduction,
                    ..Default::default()
                };
                let per: Vec<Want> = (0..n)
                    .map(|i| gaussian_want(x[i], y[i], var[i], o.eps, full))
                    .collect();
                check_all(
                    &gpu.gaussian_nll(&x, &y, &var, &o).unwrap(),
                    &reduce(
                        &per,
                        &ones.iter().map(|&v| f(v)).collect::<Vec<_>>(),
                        reduction,
                    ),
                    &format!("gaussian n={n} full={full} {reduction:?}"),
                );
                let shared: Vec<Want> = (0..n)
                    .map(|i| gaussian_want(x[i], y[i], 0.3, o.eps, full))
                    .collect();
                check_all(
                    &gpu.gaussian_nll(&x, &y, &[0.3], &o).unwrap(),
                    &reduce(&shared, &vec![1.0; n], reduction),
                    &format!("gaussian shared var n={n}"),
                );
            }
            for (log_input, full) in [(true, false), (true, true), (false, false), (false, true)] {
                let o = PoissonNll {
                    log_input,
                    full,
                    reduction,
                    ..Default::default()
                };
                let input = if log_input { &x } else { &rates };
                let per: Vec<Want> = (0..n)
                    .map(|i| poisson_want(input[i], counts[i], log_input, full, o.eps))
                    .collect();
                check_all(
                    &gpu.poisson_nll(input, &counts, &o).unwrap(),
                    &reduce(&per, &vec![1.0; n], reduction),
                    &format!("poisson n={n} log_input={log_input} full={full} {reduction:?}"),
                );
            }
            // Bernoulli as rows × cols with a pos_weight per column.
            let cols = if n % 7 == 0 { 7 } else { 1 };
            let rows = n / cols;
            let pw = rng.vec(cols, 0.2, 4.0);
            for pos_weight in [None, Some(pw.clone())] {
                let o = Bce {
                    pos_weight: pos_weight.clone(),
                    reduction,
                };
                let per: Vec<Want> = (0..rows * cols)
                    .map(|i| {
                        bce_want(
                            x[i],
                            probs[i],
                            pos_weight.as_ref().map_or(1.0, |p| p[i % cols]),
                        )
                    })
                    .collect();
                check_all(
                    &gpu.binary_cross_entropy_with_logits(
                        &x[..rows * cols],
                        &probs[..rows * cols],
                        rows,
                        cols,
                        &o,
                    )
                    .unwrap(),
                    &reduce(&per, &vec![1.0; rows * cols], reduction),
                    &format!("bce {rows}x{cols} {reduction:?}"),
                );
            }
        }
    }
}

/// With unit variance the Gaussian negative log-likelihood is half the squared error plus the
/// constant ½·ln 2π: minimising the mean squared error is maximising the Gaussian likelihood.
#[test]
fn unit_variance_gaussian_nll_is_half_the_squared_error() {
    let gpu = gpu();
    let mut rng = Rng(5);
    let n = 10_000;
    let x = rng.vec(n, -3.0, 3.0);
    let y = rng.vec(n, -3.0, 3.0);
    let mse: f64 = x
        .iter()
        .zip(&y)
        .map(|(&a, &b)| (f(a) - f(b)).powi(2))
        .sum::<f64>()
        / n as f64;
    let c = 0.5 * (2.0 * std::f64::consts::PI).ln();
    for (full, constant) in [(false, 0.0), (true, c)] {
        let o = GaussianNll {
            full,
            ..Default::default()
        };
        let nll = f(gpu.gaussian_nll(&x, &y, &[1.0], &o).unwrap()[0]);
        let want = 0.5 * mse + constant;
        let bound = (8.0 + depth(n)) * U * want;
        assert!((nll - want).abs() <= bound, "full={full}: {nll} vs {want}");
    }
}

#[test]
fn elementwise_special_values() {
    let gpu = gpu();
    let none = Reduction::None;
    // Bernoulli: finite at ±1e4 and ±3e38 (no NaN); PyTorch's NaN at -inf and at +inf with y = 1.
    let x = [
        1e4, -1e4, 3e38, -3e38, 1e4, -1e4, INF, INF, NEG_INF, NAN, -20.0,
    ];
    let y = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5, 1.0, 0.0, 0.5, 0.0];
    let got = gpu
        .binary_cross_entropy_with_logits(
            &x,
            &y,
            1,
            x.len(),
            &Bce {
                pos_weight: None,
                reduction: none,
            },
        )
        .unwrap();
    let per: Vec<Want> = x
        .iter()
        .zip(&y)
        .map(|(&a, &b)| bce_want(a, b, 1.0))
        .collect();
    check_all(&got, &per, "bce specials");
    assert!(got[..6].iter().all(|v| v.is_finite()));
    assert_eq!(got[6], INF);
    assert!(got[7].is_nan() && got[8].is_nan() && got[9].is_nan());
    // log1p(e^-20) ≈ 2.06e-9, to full relative accuracy (PyTorch's f32 form gives 0 here).
    assert!((f(got[10]) - 2.061_153_6e-9).abs() < 4.0 * U * 2.1e-9);

    // Gaussian: zero variance clamped by eps; eps = 0 with zero variance is NaN (0/0 and
    // -inf + inf); infinite variance gives +inf; NaN anywhere gives NaN.
    let x = [1.0, 1.0, 1.0, 1.0, NAN, INF];
    let y = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0];
    let v = [0.0, 0.0, INF, 1e-30, 1.0, 1.0];
    let o = GaussianNll {
        reduction: none,
        ..Default::default()
    };
    let got = gpu.gaussian_nll(&x, &y, &v, &o).unwrap();
    let per: Vec<Want> = (0..6)
        .map(|i| gaussian_want(x[i], y[i], v[i], o.eps, false))
        .collect();
    check_all(&got, &per, "gaussian specials");
    let o0 = GaussianNll { eps: 0.0, ..o };
    let got = gpu
        .gaussian_nll(&[1.0, 1.0], &[1.0, 0.0], &[0.0, 0.0], &o0)
        .unwrap();
    assert!(got[0].is_nan() && got[1].is_nan(), "{got:?}");

    // Poisson: e^x overflow, -inf log-rate, zero rate without eps, the Stirling term from y > 1.
    let x = [100.0, NEG_INF, NEG_INF, 0.5, NAN];
    let t = [1.0, 2.0, 0.0, 3.0, 1.0];
    let o = PoissonNll {
        reduction: none,
        ..Default::default()
    };
    let got = gpu.poisson_nll(&x, &t, &o).unwrap();
    let per: Vec<Want> = (0..5)
        .map(|i| poisson_want(x[i], t[i], true, false, o.eps))
        .collect();
    check_all(&got, &per, "poisson specials");
    let o = PoissonNll {
        log_input: false,
        eps: 0.0,
        full: true,
        reduction: none,
    };
    let r = [0.0, 0.0, 2.0, 1.0];
    let t = [1.0, 0.0, 1.0, 5.0];
    let got = gpu.poisson_nll(&r, &t, &o).unwrap();
    let per: Vec<Want> = (0..4)
        .map(|i| poisson_want(r[i], t[i], false, true, 0.0))
        .collect();
    check_all(&got, &per, "poisson rates");

    // Sums see infinities and NaNs: +inf and -inf together are NaN.
    let g = gpu.log_prod(&[0.0, 0.5, INF, 0.5], 2, 2).unwrap();
    assert_eq!(g, vec![NEG_INF, INF]);
    let g = gpu
        .log_prod(&[0.0, INF, -1.0, 0.5, 1e-40, 1.0], 3, 2)
        .unwrap();
    assert!(g[0].is_nan() && g[1].is_nan());
    check_all(
        &g[2..],
        &[want((1e-40f32 as f64).ln(), 4.0 * U * 92.2)],
        "subnormal p",
    );
}

#[test]
fn log_prod_of_many_small_probabilities() {
    let gpu = gpu();
    // 10^4 probabilities of 0.01: the product underflows f32, its log is -46051.7.
    let got = gpu.log_prod(&vec![0.01; 10_000], 1, 10_000).unwrap();
    let want_v = 10_000.0 * f(0.01f32).ln();
    let bound = (4.0 + depth(10_000)) * U * want_v.abs();
    assert!(
        (f(got[0]) - want_v).abs() <= bound,
        "{} vs {want_v}",
        got[0]
    );
    assert!((got[0] + 46051.7).abs() < 0.05);
    // Rows of every length around the chunk size, against the f64 oracle.
    let mut rng = Rng(21);
    for (rows, cols) in [
        (0, 5),
        (5, 0),
        (3, 1),
        (7, 63),
        (5, 64),
        (9, 65),
        (2, 100_000),
        (20_000, 3),
    ] {
        let p = rng.vec(rows * cols, 0.0, 1.0);
        check_all(
            &gpu.log_prod(&p, rows, cols).unwrap(),
            &log_prod_want(&p, rows, cols),
            &format!("log_prod {rows}x{cols}"),
        );
    }
}

/// Same input, same device: the same bits, for every reduction of every op.
#[test]
fn reductions_are_bit_identical_across_runs() {
    let gpu = gpu();
    let mut rng = Rng(8);
    let n = 200_003;
    let x = rng.vec(n, -10.0, 10.0);
    let y = rng.vec(n, 0.0, 1.0);
    let targets: Vec<i64> = (0..n / 7).map(|i| (i % 7) as i64).collect();
    let runs = |k: u32| -> Vec<Vec<u32>> {
        let bits = |v: Vec<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        let _ = k;
        vec![
            bits(
                gpu.gaussian_nll(&x, &y, &y, &GaussianNll::default())
                    .unwrap(),
            ),
            bits(
                gpu.binary_cross_entropy_with_logits(&x, &y, 1, n, &Bce::default())
                    .unwrap(),
            ),
            bits(gpu.poisson_nll(&x, &y, &PoissonNll::default()).unwrap()),
            bits(gpu.log_prod(&y, 1, n).unwrap()),
            bits(
                gpu.cross_entropy(
                    &x[..n / 7 * 7],
                    n / 7,
                    7,
                    &targets,
                    &CrossEntropy {
                        label_smoothing: 0.1,
                        ..Default::default()
                    },
                )
                .unwrap(),
            ),
        ]
    };
    let first = runs(0);
    for k in 1..3 {
        assert_eq!(runs(k), first, "run {k}");
    }
}

/// A device with 64 KiB bindings and 16 workgroups per grid dimension: losses are windowed and
/// dispatched on 2-D grids, long rows are split across bindings, and the element-wise reductions
/// give the same bits as on the default device (chunks never depend on the binding size).
#[test]
fn small_binding_limits_and_grids() {
    let small = small_gpu();
    let big = gpu();
    let mut rng = Rng(13);
    let n = 100_003;
    let x = rng.vec(n, -10.0, 10.0);
    let y = rng.vec(n, 0.0, 1.0);
    for reduction in REDUCTIONS {
        let o = GaussianNll {
            reduction,
            ..Default::default()
        };
        let a = small.gaussian_nll(&x, &y, &y, &o).unwrap();
        let b = big.gaussian_nll(&x, &y, &y, &o).unwrap();
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "gaussian {reduction:?}"
        );
        let per: Vec<Want> = (0..n)
            .map(|i| gaussian_want(x[i], y[i], y[i], o.eps, false))
            .collect();
        check_all(
            &a,
            &reduce(&per, &vec![1.0; n], reduction),
            "small gaussian",
        );
    }
    let a = small.log_prod(&y, 1, n).unwrap();
    assert_eq!(a[0].to_bits(), big.log_prod(&y, 1, n).unwrap()[0].to_bits());
    // Cross-entropy with windows of logits and 2-D grids (4,000 rows × 5: two windows; the
    // per-row values, 12 bytes a row, fit one binding).
    let (rows, classes) = (4_000, 5);
    let targets: Vec<i64> = (0..rows).map(|r| (r % classes) as i64).collect();
    for smoothing in [0.0, 0.3] {
        let o = CrossEntropy {
            label_smoothing: smoothing,
            reduction: Reduction::Sum,
            ..Default::default()
        };
        let (per, w) = categorical_want(&x[..rows * classes], rows, classes, &targets, &o, false);
        check_all(
            &small
                .cross_entropy(&x[..rows * classes], rows, classes, &targets, &o)
                .unwrap(),
            &reduce(&per, &w, Reduction::Sum),
            "small ce",
        );
    }
    // A row of classes larger than a binding, or more rows than one binding of per-row values
    // holds, is refused with the limit named, never misread.
    for (rows, classes) in [(1, 20_000), (20_000, 5)] {
        let err = LossOp::cross_entropy(&small, rows, classes, &CrossEntropy::default()).err();
        assert!(matches!(err, Some(Error::Limit(_))), "{err:?}");
    }
}

/// An input past the default 128 MiB storage binding (2^25 + 100,003 values in one row).
#[test]
fn log_prod_past_the_default_binding_size() {
    let gpu = gpu();
    let n = (1usize << 25) + 100_003;
    let p: Vec<f32> = (0..n).map(|i| 0.5 + (i % 1000) as f32 * 1e-4).collect();
    let got = gpu.log_prod(&p, 1, n).unwrap();
    let (v, abs) = p.iter().fold((0.0, 0.0), |(s, a), &q| {
        let l = f(q).ln();
        (s + l, a + l.abs())
    });
    check_all(
        &got,
        &[want(v, (4.0 + depth(n)) * U * abs)],
        "log_prod 2^25+",
    );
}

#[test]
fn encoder_level_losses_share_one_submit_on_a_caller_device() {
    let (device, queue) = own_device(|_| {});
    let gpu = Gpu::from_device(device, queue);
    gpu.fill_outputs_with_sentinel(true);
    let d = gpu.device();
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let make = |bytes: &[u8]| {
        d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytes,
            usage,
        })
    };
    let sentinel = |n: usize| make(bytemuck::cast_slice(&vec![SENTINEL_BITS; n]));
    let mut rng = Rng(4);
    let (rows, classes) = (1000, 10);
    let x = rng.vec(rows * classes, -5.0, 5.0);
    let t: Vec<i32> = (0..rows as i32).map(|r| r % 10).collect();
    let t64: Vec<i64> = t.iter().map(|&v| i64::from(v)).collect();
    let o = CrossEntropy {
        reduction: Reduction::None,
        ..Default::default()
    };
    let ce = LossOp::cross_entropy(&gpu, rows, classes, &o).unwrap();
    let ce_mean = LossOp::cross_entropy(&gpu, rows, classes, &CrossEntropy::default()).unwrap();
    let g = LossOp::gaussian_nll(&gpu, rows * classes, true, &GaussianNll::default()).unwrap();
    assert_eq!(ce.inputs().len(), 2);
    assert_eq!(g.inputs()[2].bytes, 4);
    let (xb, tb, vb) = (
        make(bytemuck::cast_slice(&x)),
        make(bytemuck::cast_slice(&t)),
        make(bytemuck::cast_slice(&[2.0f32])),
    );
    let (o1, o2, o3) = (sentinel(rows), sentinel(1), sentinel(1));
    let mut encoder = d.create_command_encoder(&Default::default());
    ce.record(&mut encoder, &[&xb, &tb], &o1).unwrap();
    ce_mean.record(&mut encoder, &[&xb, &tb], &o2).unwrap();
    g.record(&mut encoder, &[&xb, &xb, &vb], &o3).unwrap();
    gpu.queue().submit([encoder.finish()]);
    let (per, w) = categorical_want(&x, rows, classes, &t64, &o, false);
    check_all(
        &gpu.read_f32(&o1, rows as u64 * 4).unwrap(),
        &per,
        "encoder ce none",
    );
    check_all(
        &gpu.read_f32(&o2, 4).unwrap(),
        &reduce(&per, &w, Reduction::Mean),
        "encoder ce mean",
    );
    // input == target: ½·ln 2 per element.
    check_all(
        &gpu.read_f32(&o3, 4).unwrap(),
        &[want(0.5 * 2f64.ln(), 8.0 * U)],
        "encoder gaussian",
    );
    // GPU time of all the op's passes (log-sum-exp parts, per-row losses, reduction levels).
    let has = d.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    let t = ce_mean.kernel_time(&gpu, &[&xb, &tb], &o2).unwrap();
    assert_eq!(t.is_some(), has, "{t:?}");
    if let Some(t) = t {
        assert!(
            t > std::time::Duration::ZERO && t < std::time::Duration::from_secs(10),
            "{t:?}"
        );
    }
    // Out-of-range targets at the encoder level give NaN for their row, never a stray read.
    let bad = make(bytemuck::cast_slice(&[0i32, 99, -3, 1]));
    let out = sentinel(4);
    let op4 = LossOp::cross_entropy(&gpu, 4, 10, &o).unwrap();
    let mut encoder = d.create_command_encoder(&Default::default());
    op4.record(&mut encoder, &[&xb, &bad], &out).unwrap();
    gpu.queue().submit([encoder.finish()]);
    let got = gpu.read_f32(&out, 16).unwrap();
    assert!(got[0].is_finite() && got[1].is_nan() && got[2].is_nan() && got[3].is_finite());
    assert!(got.iter().all(|v| v.to_bits() != SENTINEL_BITS));
    // Wrong buffers are errors.
    let mut encoder = d.create_command_encoder(&Default::default());
    assert!(matches!(
        ce.record(&mut encoder, &[&xb], &o1),
        Err(Error::Buffer(_))
    ));
    assert!(matches!(
        ce.record(&mut encoder, &[&xb, &tb], &o2),
        Err(Error::Buffer(_))
    ));
    assert!(matches!(
        ce.record(&mut encoder, &[&xb, &tb], &xb),
        Err(Error::Buffer(_))
    ));
}

#[test]
fn bad_input_gives_clear_errors() {
    let gpu = gpu();
    let x = [0.0f32; 6];
    let e = gpu
        .cross_entropy(&x, 2, 3, &[0, 3], &CrossEntropy::default())
        .unwrap_err();
    assert!(
        matches!(e, Error::Value(_)) && e.to_string().contains("row 1"),
        "{e}"
    );
    let e = gpu
        .cross_entropy(&x, 2, 3, &[-1, 0], &CrossEntropy::default())
        .unwrap_err();
    assert!(e.to_string().contains("row 0"), "{e}");
    assert!(matches!(
        gpu.cross_entropy(&x, 2, 3, &[0], &CrossEntropy::default()),
        Err(Error::InputLength {
            what: "targets",
            ..
        })
    ));
    assert!(matches!(
        gpu.cross_entropy(
            &x,
            2,
            3,
            &[0, 1],
            &CrossEntropy {
                weight: Some(vec![1.0; 2]),
                ..Default::default()
            }
        ),
        Err(Error::InputLength { what: "weight", .. })
    ));
    for eps in [-0.1, 1.5, NAN] {
        assert!(matches!(
            gpu.cross_entropy(
                &x,
                2,
                3,
                &[0, 1],
                &CrossEntropy {
                    label_smoothing: eps,
                    ..Default::default()
                }
            ),
            Err(Error::Value(_))
        ));
    }
    assert!(matches!(
        gpu.nll_loss(
            &x,
            2,
            3,
            &[0, 1],
            &CrossEntropy {
                label_smoothing: 0.1,
                ..Default::default()
            }
        ),
        Err(Error::Value(_))
    ));
    let e = gpu
        .gaussian_nll(
            &[1.0, 2.0],
            &[1.0, 2.0],
            &[1.0, -1.0],
            &GaussianNll::default(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("negative"), "{e}");
    assert!(matches!(
        gpu.gaussian_nll(
            &[1.0, 2.0],
            &[1.0, 2.0],
            &[1.0, 1.0, 1.0],
            &GaussianNll::default()
        ),
        Err(Error::InputLength { .. })
    ));
    assert!(matches!(
        gpu.binary_cross_entropy_with_logits(
            &x,
            &x,
            2,
            3,
            &Bce {
                pos_weight: Some(vec![1.0; 2]),
                ..Default::default()
            }
        ),
        Err(Error::InputLength {
            what: "pos_weight",
            ..
        })
    ));
    assert!(matches!(
        gpu.poisson_nll(&x, &x[..5], &PoissonNll::default()),
        Err(Error::InputLength { .. })
    ));
    assert!(matches!(
        gpu.log_prod(&x, 4, 2),
        Err(Error::InputLength { .. })
    ));
}

/// The CPU reference mirrors the kernels: same summation order, same elementary functions.
#[test]
fn cpu_reference_agrees_with_the_gpu() {
    use logdomain::reference::likelihood as cpu;
    let gpu = gpu();
    let mut rng = Rng(17);
    let (rows, classes) = (500, 33);
    let x = rng.vec(rows * classes, -8.0, 8.0);
    let y = rng.vec(rows * classes, 0.0, 1.0);
    let targets: Vec<i64> = (0..rows).map(|r| (r % classes) as i64).collect();
    let o = CrossEntropy {
        label_smoothing: 0.05,
        ..Default::default()
    };
    let (per, w) = categorical_want(&x, rows, classes, &targets, &o, false);
    let want_v = reduce(&per, &w, Reduction::Mean);
    check_all(
        &cpu::categorical(&x, rows, classes, &targets, &o, false),
        &want_v,
        "cpu ce",
    );
    check_all(
        &gpu.cross_entropy(&x, rows, classes, &targets, &o).unwrap(),
        &want_v,
        "gpu ce",
    );
    let b = Bce::default();
    let per: Vec<Want> = (0..rows * classes)
        .map(|i| bce_want(x[i], y[i], 1.0))
        .collect();
    let want_b = reduce(&per, &vec![1.0; rows * classes], Reduction::Mean);
    check_all(
        &cpu::binary_cross_entropy_with_logits(&x, &y, rows, classes, &b),
        &want_b,
        "cpu bce",
    );
    // Same order and the same ln; a GPU may still contract multiply-adds differently, so the
    // two agree within the bound each has against f64, not necessarily bit for bit.
    let (c, g) = (
        cpu::log_prod(&y, rows, classes),
        gpu.log_prod(&y, rows, classes).unwrap(),
    );
    for r in 0..rows {
        let abs: f64 = y[r * classes..(r + 1) * classes]
            .iter()
            .map(|&v| f(v).ln().abs())
            .sum();
        let bound = 2.0 * (4.0 + depth(classes)) * U * abs;
        assert!(
            (f(c[r]) - f(g[r])).abs() <= bound,
            "log_prod row {r}: {} vs {}",
            c[r],
            g[r]
        );
    }
}

/// f16 logits: the f16 ops give, bit for bit, the f32 ops' results on the same values converted
/// to f32 (the decode is exact and the passes are the same), for every option, special values,
/// odd class counts (rows that start in the middle of a word) and windows of a small binding.
/// (Where `Strategy::Auto` reads f32 rows as vec4 words — GPUs, rows of a multiple of 4 classes
/// that start on 16 bytes — the f32 op sums in another order than the f16 op's scalar kernel, and
/// the two agree within the accuracy contract only; none of the shapes here is such a row.)
#[test]
fn f16_logits_give_the_f32_ops_bits() {
    let small = small_gpu();
    let mut rng = Rng(1616);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let specials = [INF, NEG_INF, NAN, 65504.0, -65504.0, 6e-8, -0.0];
    // (rows, classes): odd counts put rows across words; on the small device (64 KiB bindings)
    // 4,001 × 5 and 300 × 198 take several windows of rows, some starting mid-word.
    for (gpu, rows, classes) in [
        (gpu(), 7, 3),
        (gpu(), 33, 1001),
        (&small, 4_001, 5),
        (&small, 300, 198),
    ] {
        let mut x: Vec<half::f16> = (0..rows * classes)
            .map(|_| half::f16::from_f32(rng.uniform(-12.0, 12.0)))
            .collect();
        // Special values in rows 1 and 2 (one each, the target's column in row 2).
        for (j, &v) in specials.iter().enumerate() {
            x[classes + j % classes] = half::f16::from_f32(v);
        }
        let targets: Vec<i64> = (0..rows).map(|r| ((r * 7) % classes) as i64).collect();
        x[2 * classes + targets[2] as usize] = half::f16::from_f32(INF);
        let x32: Vec<f32> = x.iter().map(|h| h.to_f32()).collect();
        let weight: Vec<f32> = (0..classes).map(|c| 0.5 + (c % 3) as f32).collect();
        for reduction in REDUCTIONS {
            for (smoothing, weighted, ignore) in
                [(0.0, false, -100), (0.25, true, 1), (0.1, false, 0)]
            {
                let o = CrossEntropy {
                    weight: weighted.then(|| weight.clone()),
                    ignore_index: ignore,
                    label_smoothing: smoothing,
                    reduction,
                };
                let what = format!("{rows}x{classes} {o:?}");
                let want = gpu
                    .cross_entropy(&x32, rows, classes, &targets, &o)
                    .unwrap();
                let got = gpu
                    .cross_entropy_f16(&x, rows, classes, &targets, &o)
                    .unwrap();
                assert_eq!(bits(&got), bits(&want), "cross_entropy_f16 {what}");
                let o = CrossEntropy {
                    label_smoothing: 0.0,
                    ..o
                };
                let want = gpu.nll_loss(&x32, rows, classes, &targets, &o).unwrap();
                let got = gpu.nll_loss_f16(&x, rows, classes, &targets, &o).unwrap();
                assert_eq!(bits(&got), bits(&want), "nll_loss_f16 {what}");
            }
        }
    }
    // The f32 results are themselves right: PyTorch's loss within its bound.
    let (rows, classes) = (9, 5);
    let x: Vec<half::f16> = (0..rows * classes)
        .map(|_| half::f16::from_f32(rng.uniform(-3.0, 3.0)))
        .collect();
    let x32: Vec<f32> = x.iter().map(|h| h.to_f32()).collect();
    let targets: Vec<i64> = (0..rows).map(|r| (r % classes) as i64).collect();
    let o = CrossEntropy {
        reduction: Reduction::None,
        ..Default::default()
    };
    let (per, _) = categorical_want(&x32, rows, classes, &targets, &o, false);
    check_all(
        &gpu()
            .cross_entropy_f16(&x, rows, classes, &targets, &o)
            .unwrap(),
        &per,
        "cross_entropy_f16 against f64",
    );
    // Encoder level: the input's size is whole words; a short buffer is refused.
    let op = LossOp::cross_entropy_f16(gpu(), 3, 3, &CrossEntropy::default()).unwrap();
    assert_eq!(op.inputs()[0].bytes, 20, "9 f16 entries in 5 words");
    assert!(op.inputs()[0].name.contains("f16"));
    let make = |bytes: &[u8]| {
        gpu()
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            })
    };
    let short = make(&[0u8; 16]);
    let t = make(bytemuck::cast_slice(&[0i32, 1, 2]));
    let out = make(&[0u8; 4]);
    let mut encoder = gpu().device().create_command_encoder(&Default::default());
    assert!(matches!(
        op.record(&mut encoder, &[&short, &t], &out),
        Err(Error::Buffer(_))
    ));
    // Lengths are checked in entries.
    assert!(matches!(
        gpu().cross_entropy_f16(&x[1..], rows, classes, &targets, &o),
        Err(Error::InputLength { .. })
    ));
}

/// Reductions whose partial sums pass f32's range while the mean (or weighted mean) does not:
/// the sums carry a scale once they reach 2^64, so the mean comes out finite and within the
/// bound, and a sum whose true value exceeds f32 comes out as IEEE's infinity. On the default
/// device and on one with 64 KiB bindings and 2-D grids (other windows and levels), with the same
/// bits on both, and the same bits from the ops with gradients. The bound is `reduce`'s plus n·2^-62: scaling by 2^-64 may flush values below
/// 2^-62 to zero.
#[test]
fn reductions_that_overflow_midway() {
    let small = small_gpu();
    let devices = [gpu(), &small];
    let flushed = |w: Vec<Want>, n: usize| -> Vec<Want> {
        w.into_iter()
            .map(|w| want(w.v, w.bound + n as f64 * 2f64.powi(-62)))
            .collect()
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let (rows, cols) = (257, 9);
    let n = rows * cols;
    let mut rng = Rng(38);
    // Logits of a few units, with ±3e38 at every 97th entry: BCE with logits ≈ 3e38 there (the
    // positive one with target 0, the negative one with target 1).
    let mut x = rng.vec(n, -4.0, 4.0);
    let mut y: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
    for i in (0..n).step_by(97) {
        x[i] = if i % 2 == 0 { 3e38 } else { -3e38 };
        y[i] = if i % 2 == 0 { 0.0 } else { 1.0 };
    }
    let ones = vec![1.0; n];
    for reduction in [Reduction::Sum, Reduction::Mean] {
        let o = Bce {
            pos_weight: None,
            reduction,
        };
        let per: Vec<Want> = (0..n).map(|i| bce_want(x[i], y[i], 1.0)).collect();
        let truth = flushed(reduce(&per, &ones, reduction), n);
        if reduction == Reduction::Mean {
            assert!(
                truth[0].v.is_finite() && truth[0].v > 1e35,
                "{:?}",
                truth[0]
            );
        } else {
            assert!(truth[0].v > f64::from(f32::MAX), "{:?}", truth[0]);
        }
        let got: Vec<Vec<f32>> = devices
            .iter()
            .map(|g| {
                g.binary_cross_entropy_with_logits(&x, &y, rows, cols, &o)
                    .unwrap()
            })
            .collect();
        check_all(&got[0], &truth, &format!("bce {reduction:?}"));
        assert_eq!(bits(&got[0]), bits(&got[1]), "bce {reduction:?}: devices");
        // The loss of the op with its gradient is the forward's, bit for bit.
        let (loss, _) = gpu()
            .binary_cross_entropy_with_logits_with_grad(&x, &y, rows, cols, &o)
            .unwrap();
        assert_eq!(bits(&loss), bits(&got[0]), "bce {reduction:?} with grad");
        check_all(
            &logdomain::reference::likelihood::binary_cross_entropy_with_logits(
                &x, &y, rows, cols, &o,
            ),
            &truth,
            &format!("cpu bce {reduction:?}"),
        );
    }
    // Gaussian: (x − y)^2 / 2 ≈ 1.6e38 at every 97th entry.
    let mut gx = rng.vec(n, -1.0, 1.0);
    let gy = rng.vec(n, -1.0, 1.0);
    let var = vec![1.0f32; n];
    for i in (0..n).step_by(97) {
        gx[i] = if i % 2 == 0 { 1.8e19 } else { -1.8e19 };
    }
    // Poisson with log inputs: e^x − y·x ≈ 3e38 where y = 1e38 and x = −3.
    let px = rng.vec(n, -1.0, 1.0);
    let mut py: Vec<f32> = (0..n).map(|i| (i % 5) as f32).collect();
    for i in (0..n).step_by(97) {
        py[i] = 1e38;
    }
    let px: Vec<f32> = px
        .iter()
        .enumerate()
        .map(|(i, &v)| if i % 97 == 0 { -3.0 } else { v })
        .collect();
    for reduction in [Reduction::Sum, Reduction::Mean] {
        let go = GaussianNll {
            reduction,
            ..Default::default()
        };
        let per: Vec<Want> = (0..n)
            .map(|i| gaussian_want(gx[i], gy[i], var[i], go.eps, false))
            .collect();
        let truth = flushed(reduce(&per, &ones, reduction), n);
        let got: Vec<Vec<f32>> = devices
            .iter()
            .map(|g| g.gaussian_nll(&gx, &gy, &var, &go).unwrap())
            .collect();
        check_all(&got[0], &truth, &format!("gaussian {reduction:?}"));
        assert_eq!(bits(&got[0]), bits(&got[1]), "gaussian: devices");
        let (loss, _, _) = gpu().gaussian_nll_with_grad(&gx, &gy, &var, &go).unwrap();
        assert_eq!(
            bits(&loss),
            bits(&got[0]),
            "gaussian {reduction:?} with grad"
        );
        let po = PoissonNll {
            reduction,
            ..Default::default()
        };
        let per: Vec<Want> = (0..n)
            .map(|i| poisson_want(px[i], py[i], true, false, po.eps))
            .collect();
        let truth = flushed(reduce(&per, &ones, reduction), n);
        let got: Vec<Vec<f32>> = devices
            .iter()
            .map(|g| g.poisson_nll(&px, &py, &po).unwrap())
            .collect();
        check_all(&got[0], &truth, &format!("poisson {reduction:?}"));
        assert_eq!(bits(&got[0]), bits(&got[1]), "poisson: devices");
        let (loss, _) = gpu().poisson_nll_with_grad(&px, &py, &po).unwrap();
        assert_eq!(
            bits(&loss),
            bits(&got[0]),
            "poisson {reduction:?} with grad"
        );
    }
    // Cross-entropy: rows [5e37, −5e37, small…] with the target on −5e37 lose 1e38 each; with
    // class weights of 3 a weighted term is 3e38. Then weights of 1e37 on ordinary rows: the
    // summed weights pass f32 too, and the weighted mean is an ordinary loss.
    let classes = 6;
    let mut logits = rng.vec(rows * classes, -3.0, 3.0);
    for r in (0..rows).step_by(3) {
        logits[r * classes] = 5e37;
        logits[r * classes + 1] = -5e37;
    }
    let targets: Vec<i64> = (0..rows)
        .map(|r| if r % 3 == 0 { 1 } else { (r % classes) as i64 })
        .collect();
    let plain = rng.vec(rows * classes, -3.0, 3.0);
    let cases = [
        (&logits, None, "huge losses"),
        (&logits, Some(vec![3.0f32; classes]), "huge weighted losses"),
        (&plain, Some(vec![1e37f32; classes]), "huge weights"),
    ];
    for (x, weight, what) in cases {
        for reduction in [Reduction::Sum, Reduction::Mean] {
            let o = CrossEntropy {
                weight: weight.clone(),
                reduction,
                ..Default::default()
            };
            let (per, w) = categorical_want(x, rows, classes, &targets, &o, false);
            let truth = flushed(reduce(&per, &w, reduction), rows);
            let got: Vec<Vec<f32>> = devices
                .iter()
                .map(|g| g.cross_entropy(x, rows, classes, &targets, &o).unwrap())
                .collect();
            check_all(
                &got[0],
                &truth,
                &format!("cross_entropy {what} {reduction:?}"),
            );
            check_all(
                &logdomain::reference::likelihood::categorical(
                    x, rows, classes, &targets, &o, false,
                ),
                &truth,
                &format!("cpu cross_entropy {what} {reduction:?}"),
            );
            assert_eq!(
                bits(&got[0]),
                bits(&got[1]),
                "cross_entropy {what}: devices"
            );
            let (loss, _) = gpu()
                .cross_entropy_with_grad(x, rows, classes, &targets, &o)
                .unwrap();
            assert_eq!(bits(&loss), bits(&got[0]), "cross_entropy {what} with grad");
        }
    }
    // log_prod: a term is at least ln(2^-149) ≈ −103.3 and at most ln(f32::MAX) ≈ 88.7, so no
    // row of fewer than 2^57 terms can overflow midway; the extremes still give the truth.
    let p: Vec<f32> = (0..n)
        .map(|i| match i % 3 {
            0 => f32::from_bits(1),
            1 => f32::MAX,
            _ => 0.5,
        })
        .collect();
    let got: Vec<Vec<f32>> = devices
        .iter()
        .map(|g| g.log_prod(&p, rows, cols).unwrap())
        .collect();
    check_all(&got[0], &log_prod_want(&p, rows, cols), "log_prod extremes");
    assert_eq!(bits(&got[0]), bits(&got[1]), "log_prod: devices");
}

// ---------------------------------------------------------------------------------------------
// PyTorch's class axis 1: (N, C, d1, …, dk).

/// (N, C, d1…dk) row-major as rows of classes: row n·D + p holds the classes of position p of
/// sample n (the transpose the kernels do not make; the oracle's layout).
fn class_rows(x: &[f32], shape: &[usize]) -> Vec<f32> {
    let (n, c) = (shape[0], shape[1]);
    let d: usize = shape[2..].iter().product();
    let mut rows = vec![0.0; x.len()];
    for s in 0..n {
        for k in 0..c {
            for p in 0..d {
                rows[(s * d + p) * c + k] = x[(s * c + k) * d + p];
            }
        }
    }
    rows
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn cross_entropy_on_the_class_axis() {
    use logdomain::reference::likelihood::categorical_nd;
    let gpu = gpu();
    let mut rng = Rng(21);
    for shape in [
        vec![2, 3, 5],
        vec![3, 7, 4, 5],
        vec![2, 5, 3, 1, 4],
        vec![1, 2, 1, 9],
        vec![4, 1, 6],
        vec![3, 64, 17],
        vec![2, 130, 33],
    ] {
        let total: usize = shape.iter().product();
        let (n, c) = (shape[0], shape[1]);
        let d: usize = shape[2..].iter().product();
        let rows = n * d;
        let x = rng.vec(total, -20.0, 20.0);
        let targets: Vec<i64> = (0..rows)
            .map(|r| {
                if r % 7 == 3 {
                    -100
                } else {
                    (rng.next_u64() % c as u64) as i64
                }
            })
            .collect();
        let weight = rng.vec(c, 0.1, 3.0);
        let x_rows = class_rows(&x, &shape);
        for (smoothing, weighted) in [(0.0, false), (0.0, true), (0.25, true), (1.0, false)] {
            for reduction in REDUCTIONS {
                let o = CrossEntropy {
                    weight: weighted.then(|| weight.clone()),
                    label_smoothing: smoothing,
                    reduction,
                    ..Default::default()
                };
                let what = format!("{shape:?} eps {smoothing} weighted {weighted} {reduction:?}");
                let got = gpu.cross_entropy_nd(&x, &shape, &targets, &o).unwrap();
                let want_shape = if reduction == Reduction::None {
                    std::iter::once(n)
                        .chain(shape[2..].iter().copied())
                        .collect()
                } else {
                    vec![]
                };
                assert_eq!(got.shape, want_shape, "{what}");
                // PyTorch's formula in f64 on the same values, within the rows' bound.
                let (per, w) = categorical_want(&x_rows, rows, c, &targets, &o, false);
                check_all(&got.values, &reduce(&per, &w, reduction), &what);
                // The CPU mirror of the kernels, bit for bit (one segment for these classes).
                let mirror = categorical_nd(&x, &shape, &targets, &o, false, 512);
                assert_eq!(bits(&got.values), bits(&mirror), "{what}: mirror");
                if smoothing == 0.0 {
                    // NLL of log-probabilities on the same axis: the row path's bits, since
                    // nothing is summed over the classes.
                    let lp_rows = gpu.log_softmax(&x_rows, rows, c).unwrap();
                    let lp = class_rows_back(&lp_rows, &shape);
                    let nll = gpu.nll_loss_nd(&lp, &shape, &targets, &o).unwrap();
                    let rows_nll = gpu.nll_loss(&lp_rows, rows, c, &targets, &o).unwrap();
                    assert_eq!(bits(&nll.values), bits(&rows_nll), "nll {what}");
                }
            }
        }
    }
}

/// The inverse of [`class_rows`].
fn class_rows_back(rows: &[f32], shape: &[usize]) -> Vec<f32> {
    let (n, c) = (shape[0], shape[1]);
    let d: usize = shape[2..].iter().product();
    let mut x = vec![0.0; rows.len()];
    for s in 0..n {
        for k in 0..c {
            for p in 0..d {
                x[(s * c + k) * d + p] = rows[(s * d + p) * c + k];
            }
        }
    }
    x
}

#[test]
fn class_axis_semantics_and_special_values() {
    let gpu = gpu();
    let none = CrossEntropy {
        reduction: Reduction::None,
        ..Default::default()
    };
    // (C,) and (N, C) are the row family's inputs, bit for bit.
    let x = [1.0, 2.0, 3.0, 0.5, 0.5, 9.0];
    let one = gpu.cross_entropy_nd(&x[..3], &[3], &[2], &none).unwrap();
    assert!(one.shape.is_empty());
    assert_eq!(
        bits(&one.values),
        bits(&gpu.cross_entropy(&x[..3], 1, 3, &[2], &none).unwrap())
    );
    let two = gpu.cross_entropy_nd(&x, &[2, 3], &[2, 0], &none).unwrap();
    assert_eq!(two.shape, [2]);
    assert_eq!(
        bits(&two.values),
        bits(&gpu.cross_entropy(&x, 2, 3, &[2, 0], &none).unwrap())
    );
    // Special values per position, as the row family gives them: (1, 3, 7), target per column.
    #[rustfmt::skip]
    let cols = [
        [0.0, NEG_INF, 1.0],
        [0.0, NEG_INF, 1.0],
        [NAN, 0.0, 1.0],
        [INF, 0.0, 1.0],
        [NEG_INF, NEG_INF, NEG_INF],
        [3e38, -3e38, 0.0],
        [1e4, 1e4 + 1.0, 1e4 - 1.0],
    ];
    let targets = [1, 2, 0, 1, 0, 1, 0];
    let x: Vec<f32> = (0..3)
        .flat_map(|k| cols.iter().map(move |c| c[k]))
        .collect();
    let rows: Vec<f32> = cols.iter().flatten().copied().collect();
    let got = gpu
        .cross_entropy_nd(&x, &[1, 3, 7], &targets, &none)
        .unwrap();
    let (want_rows, _) = categorical_want(&rows, 7, 3, &targets, &none, false);
    check_all(&got.values, &want_rows, "special positions");
    assert_eq!(got.values[0], INF);
    assert!(got.values[2].is_nan() && got.values[3].is_nan() && got.values[4].is_nan());
    // Empty extents: no samples, no positions (mean NaN, sum 0), or no classes with every
    // target ignored.
    for shape in [vec![0, 3, 4], vec![2, 3, 0]] {
        let mean = gpu
            .cross_entropy_nd(&[], &shape, &[], &CrossEntropy::default())
            .unwrap();
        assert!(
            mean.shape.is_empty() && mean.values[0].is_nan(),
            "{shape:?}"
        );
        let sum = CrossEntropy {
            reduction: Reduction::Sum,
            ..Default::default()
        };
        assert_eq!(
            gpu.cross_entropy_nd(&[], &shape, &[], &sum).unwrap().values,
            [0.0]
        );
    }
    let got = gpu
        .cross_entropy_nd(&[], &[1, 0, 2], &[-100, -100], &none)
        .unwrap();
    assert_eq!((got.shape, got.values), (vec![1, 2], vec![0.0, 0.0]));
    // Errors: no class axis, a target out of range (named), lengths that disagree.
    let o = CrossEntropy::default();
    assert!(matches!(
        gpu.cross_entropy_nd(&[1.0], &[], &[0], &o),
        Err(Error::Shape(_))
    ));
    let err = gpu
        .cross_entropy_nd(&[0.0; 12], &[1, 3, 4], &[0, 1, 3, 2], &o)
        .unwrap_err();
    assert!(err.to_string().contains("target 3 of row 2"), "{err}");
    assert!(matches!(
        gpu.cross_entropy_nd(&[0.0; 12], &[1, 3, 4], &[0, 1, 2], &o),
        Err(Error::InputLength { .. })
    ));
    assert!(matches!(
        gpu.cross_entropy_nd(&[0.0; 11], &[1, 3, 4], &[0, 1, 2, 0], &o),
        Err(Error::InputLength { .. })
    ));
    assert!(matches!(
        LossOp::categorical_nd(
            gpu,
            logdomain::Loss::PoissonNll,
            &[1, 3, 4],
            InputFormat::F32,
            &o
        ),
        Err(Error::Unsupported(_))
    ));
}

/// f16 logits on the class axis give the f32 op's bits; on the 64 KiB-binding device (windows
/// of whole samples, then of positions inside one sample) the default device's bits; the
/// encoder-level op with sentinel-filled output the blocking call's.
#[test]
fn class_axis_f16_small_bindings_and_the_encoder_level_op() {
    let gpu = gpu();
    let small = small_gpu();
    let mut rng = Rng(22);
    for (shape, smoothing) in [
        (vec![3, 6, 1000], 0.1), // 24 KB a sample: two samples a window
        (vec![1, 4, 4200], 0.0), // 67 KB a sample: positions in runs inside it
        (vec![3, 70, 200], 0.2), // classes in two chunks of the smoothing sum
    ] {
        let total: usize = shape.iter().product();
        let rows = total / shape[1];
        let x = rng.vec(total, -8.0, 8.0);
        let x16: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
        let x16_32: Vec<f32> = x16.iter().map(|v| v.to_f32()).collect();
        let targets: Vec<i64> = (0..rows).map(|r| (r % shape[1]) as i64).collect();
        for reduction in REDUCTIONS {
            let o = CrossEntropy {
                label_smoothing: smoothing,
                reduction,
                weight: Some(rng.vec(shape[1], 0.5, 2.0)),
                ..Default::default()
            };
            let what = format!("{shape:?} {reduction:?}");
            let want = gpu.cross_entropy_nd(&x, &shape, &targets, &o).unwrap();
            let on_small = small.cross_entropy_nd(&x, &shape, &targets, &o).unwrap();
            assert_eq!(bits(&on_small.values), bits(&want.values), "small {what}");
            let half = gpu
                .cross_entropy_nd_f16(&x16, &shape, &targets, &o)
                .unwrap();
            let full = gpu.cross_entropy_nd(&x16_32, &shape, &targets, &o).unwrap();
            assert_eq!(bits(&half.values), bits(&full.values), "f16 {what}");
            let lp = gpu.nll_loss_nd_f16(
                &x16,
                &shape,
                &targets,
                &CrossEntropy {
                    label_smoothing: 0.0,
                    ..o.clone()
                },
            );
            assert!(lp.is_ok(), "nll f16 {what}: {lp:?}");
        }
    }
    // The encoder level: sentinel-filled output, one submit, the blocking call's bits.
    let shape = [2, 4, 3, 5];
    let x = rng.vec(120, -5.0, 5.0);
    let targets: Vec<i32> = (0..30).map(|r| r % 4).collect();
    let t64: Vec<i64> = targets.iter().map(|&t| i64::from(t)).collect();
    let o = CrossEntropy {
        reduction: Reduction::None,
        label_smoothing: 0.1,
        ..Default::default()
    };
    let op = LossOp::categorical_nd(
        gpu,
        logdomain::Loss::CrossEntropy,
        &shape,
        InputFormat::F32,
        &o,
    )
    .unwrap();
    assert_eq!(op.output_len(), 30);
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let make = |bytes: &[u8]| {
        gpu.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytes,
                usage,
            })
    };
    let xb = make(bytemuck::cast_slice(&x));
    let tb = make(bytemuck::cast_slice(&targets));
    let out = make(bytemuck::cast_slice(&[SENTINEL_BITS; 30]));
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    op.record(&mut encoder, &[&xb, &tb], &out).unwrap();
    gpu.queue().submit([encoder.finish()]);
    let got = gpu.read_f32(&out, 30 * 4).unwrap();
    let want = gpu.cross_entropy_nd(&x, &shape, &t64, &o).unwrap();
    assert_eq!(bits(&got), bits(&want.values));
}

/// Per-sample truths of cross-entropy with probability targets (rows of classes, targets as
/// rows): Σ_c w_c·t'_c·(−log_softmax_c) in f64 from the f32 inputs, with the bound
/// Σ |w_c t'_c|·e_c + (depth(C) + 4)·u·Σ|terms| (t' rounded to f32 first, as PyTorch does).
fn probs_want(x: &[f32], rows: usize, classes: usize, t: &[f32], o: &CrossEntropy) -> Vec<Want> {
    let eps = f(o.label_smoothing);
    let w = |c: usize| o.weight.as_ref().map_or(1.0, |w| f(w[c]));
    (0..rows)
        .map(|r| {
            let row = &x[r * classes..(r + 1) * classes];
            let (neg_lsm, err) = neg_log_softmax(row, false);
            let tp = |c: usize| f(t[r * classes + c]) * (1.0 - eps) + eps / classes as f64;
            let terms: Vec<f64> = (0..classes).map(|c| neg_lsm[c] * tp(c) * w(c)).collect();
            let v: f64 = terms.iter().sum();
            let bound = (0..classes)
                .map(|c| (w(c) * tp(c)).abs() * err[c])
                .sum::<f64>()
                + (depth(classes) + 4.0) * U * terms.iter().map(|x| x.abs()).sum::<f64>();
            want(v, if v.is_finite() { bound } else { 0.0 })
        })
        .collect()
}

#[test]
fn cross_entropy_with_probability_targets() {
    use logdomain::reference::likelihood::cross_entropy_probs;
    let gpu = gpu();
    let mut rng = Rng(24);
    for shape in [
        vec![5],
        vec![7, 3],
        vec![40, 130],
        vec![2, 5, 3, 4],
        vec![3, 64, 17],
    ] {
        let total: usize = shape.iter().product();
        let c = if shape.len() == 1 { shape[0] } else { shape[1] };
        let rows = total / c;
        let x = rng.vec(total, -20.0, 20.0);
        // Probabilities per position (a few exactly 0), normalised along the class axis.
        let mut t_rows: Vec<f32> = (0..total)
            .map(|i| {
                if i % 5 == 2 {
                    0.0
                } else {
                    rng.uniform(0.0, 1.0)
                }
            })
            .collect();
        for r in 0..rows {
            let s: f32 = t_rows[r * c..(r + 1) * c].iter().sum();
            t_rows[r * c..(r + 1) * c]
                .iter_mut()
                .for_each(|v| *v /= s.max(1e-30));
        }
        let (x_rows, t) = if shape.len() > 2 {
            (class_rows(&x, &shape), class_rows_back(&t_rows, &shape))
        } else {
            (x.clone(), t_rows.clone())
        };
        let weight = rng.vec(c, 0.1, 3.0);
        for (smoothing, weighted) in [(0.0, false), (0.0, true), (0.3, true), (1.0, false)] {
            for reduction in REDUCTIONS {
                let o = CrossEntropy {
                    weight: weighted.then(|| weight.clone()),
                    label_smoothing: smoothing,
                    reduction,
                    ..Default::default()
                };
                let what = format!("{shape:?} eps {smoothing} weighted {weighted} {reduction:?}");
                let got = gpu.cross_entropy_probs(&x, &shape, &t, &o).unwrap();
                // PyTorch: the mean divides by the number of samples, whatever the weights.
                let per = probs_want(&x_rows, rows, c, &t_rows, &o);
                check_all(
                    &got.values,
                    &reduce(&per, &vec![1.0; rows], reduction),
                    &what,
                );
                let mirror = cross_entropy_probs(&x, &shape, &t, &o, 512);
                assert_eq!(bits(&got.values), bits(&mirror), "{what}: mirror");
                if reduction == Reduction::None {
                    assert_eq!(got.shape.iter().product::<usize>(), rows, "{what}");
                }
            }
        }
    }
    // One-hot targets are class indices: the same losses within both bounds.
    let x = rng.vec(12, -3.0, 3.0);
    let none = CrossEntropy {
        reduction: Reduction::None,
        ..Default::default()
    };
    let one_hot: Vec<f32> = (0..12)
        .map(|i| f32::from(u8::from(i % 4 == i / 4)))
        .collect();
    let soft = gpu
        .cross_entropy_probs(&x, &[3, 4], &one_hot, &none)
        .unwrap();
    let hard = gpu.cross_entropy(&x, 3, 4, &[0, 1, 2], &none).unwrap();
    for (a, b) in soft.values.iter().zip(&hard) {
        assert!(
            (a - b).abs() <= 4.0 * f32::EPSILON * b.abs().max(1.0),
            "{a} vs {b}"
        );
    }
    // Special values as PyTorch: a −inf logit under a zero target is 0·inf = NaN; an empty
    // batch's mean NaN and sum 0; no classes, 0 per sample.
    let got = gpu
        .cross_entropy_probs(&[NEG_INF, 0.0, 1.0], &[3], &[0.0, 0.5, 0.5], &none)
        .unwrap();
    assert!(got.values[0].is_nan() && got.values[0].to_bits() != SENTINEL_BITS);
    let mean = gpu
        .cross_entropy_probs(&[], &[0, 3], &[], &CrossEntropy::default())
        .unwrap();
    assert!(mean.values[0].is_nan());
    let got = gpu.cross_entropy_probs(&[], &[2, 0], &[], &none).unwrap();
    assert_eq!(got.values, [0.0, 0.0]);
    // Errors: lengths, weights, label smoothing.
    let o = CrossEntropy::default();
    assert!(matches!(
        gpu.cross_entropy_probs(&[0.0; 6], &[2, 3], &[0.0; 5], &o),
        Err(Error::InputLength { .. })
    ));
    let bad = CrossEntropy {
        weight: Some(vec![1.0; 2]),
        ..Default::default()
    };
    assert!(
        gpu.cross_entropy_probs(&[0.0; 6], &[2, 3], &[0.0; 6], &bad)
            .is_err()
    );
    let bad = CrossEntropy {
        label_smoothing: 1.5,
        ..Default::default()
    };
    assert!(matches!(
        gpu.cross_entropy_probs(&[0.0; 6], &[2, 3], &[0.0; 6], &bad),
        Err(Error::Value(_))
    ));
}
