//! Gradients of the log-sum-exp family on whatever adapter `Gpu::new()` finds: the f64
//! references against central finite differences of the f64 forward functions, the GPU against
//! the f64 references within bounds written as formulas, special values, the encoder level and
//! errors.

mod common;

use common::*;
use logdomain::{BackwardOp, Error, Gpu, RowFn, SENTINEL_BITS};
use wgpu::util::DeviceExt;

fn f(x: f32) -> f64 {
    f64::from(x)
}

// ---- f64 forward functions and their backward, for the finite-difference check -------------

fn lse64(row: &[f64]) -> f64 {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// Σ_r c_r · F(x_r) for a forward F and fixed weights c: its gradient is the backward applied
/// to grad_out = c.
fn objective(func: RowFn, x: &[f64], cols: usize, c: &[f64]) -> f64 {
    x.chunks(cols)
        .enumerate()
        .map(|(r, row)| {
            let lse = lse64(row);
            match func {
                RowFn::Logsumexp => c[r] * lse,
                RowFn::LogSoftmax => row
                    .iter()
                    .enumerate()
                    .map(|(j, v)| c[r * cols + j] * (v - lse))
                    .sum(),
                _ => row
                    .iter()
                    .enumerate()
                    .map(|(j, v)| c[r * cols + j] * (v - lse).exp())
                    .sum(),
            }
        })
        .sum()
}

/// The backward formulas in f64, from the forward outputs (as the GPU gets them).
fn backward64(func: RowFn, x: &[f64], cols: usize, g: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    for (r, row) in x.chunks(cols).enumerate() {
        let lse = lse64(row);
        let p: Vec<f64> = row.iter().map(|v| (v - lse).exp()).collect();
        match func {
            RowFn::Logsumexp => out.extend(p.iter().map(|pj| g[r] * pj)),
            RowFn::LogSoftmax => {
                let s: f64 = g[r * cols..(r + 1) * cols].iter().sum();
                out.extend((0..cols).map(|j| g[r * cols + j] - p[j] * s));
            }
            _ => {
                let s: f64 = (0..cols).map(|j| g[r * cols + j] * p[j]).sum();
                out.extend((0..cols).map(|j| p[j] * (g[r * cols + j] - s)));
            }
        }
    }
    out
}

const FUNCS: [RowFn; 3] = [RowFn::Logsumexp, RowFn::LogSoftmax, RowFn::Softmax];

#[test]
fn f64_backward_formulas_match_central_differences() {
    let mut rng = Rng(41);
    let (rows, cols) = (3, 5);
    for func in FUNCS {
        let x: Vec<f64> = rng
            .vec(rows * cols, -3.0, 3.0)
            .iter()
            .map(|&v| f(v))
            .collect();
        let gl = if func == RowFn::Logsumexp {
            rows
        } else {
            rows * cols
        };
        let g: Vec<f64> = rng.vec(gl, -1.0, 1.0).iter().map(|&v| f(v)).collect();
        let analytic = backward64(func, &x, cols, &g);
        for i in 0..rows * cols {
            let h = 1e-5;
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += h;
            down[i] -= h;
            let fd =
                (objective(func, &up, cols, &g) - objective(func, &down, cols, &g)) / (2.0 * h);
            let scale = analytic[i].abs().max(fd.abs()).max(1e-3);
            assert!(
                (fd - analytic[i]).abs() <= 1e-6 * scale,
                "{func:?}[{i}]: finite difference {fd}, formula {}",
                analytic[i]
            );
        }
    }
}

// ---- GPU against f64 ------------------------------------------------------------------------

/// GPU backward against the f64 formula evaluated on the same f32 forward outputs, with bounds:
/// logsumexp `(|x − lse| + 4)·u·|out|`;
/// log_softmax `u·|g| + exp(out)·(depth·u·Σ|g| + 4u·|Σg|) + u·|out|`;
/// softmax `p·(u·|g| + (depth + 1)·u·Σ|g·p| + u·|g − Σgp|) + u·|out|`;
/// with depth = ⌈log2 cols⌉ + ⌈log64 cols⌉ + 1 (the pairwise row sum).
fn check_backward(
    gpu: &Gpu,
    func: RowFn,
    x: &[f32],
    g: &[f32],
    rows: usize,
    cols: usize,
    what: &str,
) {
    let depth = |n: usize| {
        let n = n.max(1) as f64;
        n.log2().ceil() + n.log(64.0).ceil() + 1.0
    };
    let d = depth(cols);
    let (got, want): (Vec<f32>, Vec<(f64, f64)>) = match func {
        RowFn::Logsumexp => {
            let lse = gpu.logsumexp(x, rows, cols).unwrap();
            let got = gpu.logsumexp_backward(x, &lse, g, rows, cols).unwrap();
            let want = (0..rows * cols)
                .map(|i| {
                    let (r, v) = (i / cols, f(x[i]));
                    if v == f64::NEG_INFINITY {
                        return (0.0, 0.0);
                    }
                    let out = f(g[r]) * (v - f(lse[r])).exp();
                    (out, ((v - f(lse[r])).abs() + 4.0) * U * out.abs())
                })
                .collect();
            (got, want)
        }
        RowFn::LogSoftmax => {
            let out = gpu.log_softmax(x, rows, cols).unwrap();
            let got = gpu.log_softmax_backward(&out, g, rows, cols).unwrap();
            let sums: Vec<(f64, f64)> = g
                .chunks(cols)
                .map(|row| {
                    let s = row.iter().map(|&v| f(v)).sum();
                    let abs = row.iter().map(|&v| f(v).abs()).sum();
                    (s, abs)
                })
                .collect();
            let want = (0..rows * cols)
                .map(|i| {
                    if out[i] == f32::NEG_INFINITY {
                        return (0.0, 0.0);
                    }
                    let (s, abs) = sums[i / cols];
                    let e = f(out[i]).exp();
                    let v = f(g[i]) - e * s;
                    (
                        v,
                        U * f(g[i]).abs() + e * (d * U * abs + 4.0 * U * s.abs()) + U * v.abs(),
                    )
                })
                .collect();
            (got, want)
        }
        _ => {
            let p = gpu.softmax(x, rows, cols).unwrap();
            let got = gpu.softmax_backward(&p, g, rows, cols).unwrap();
            let sums: Vec<(f64, f64)> = (0..rows)
                .map(|r| {
                    let idx = r * cols..(r + 1) * cols;
                    let s = idx.clone().map(|k| f(g[k]) * f(p[k])).sum();
                    let abs = idx.map(|k| (f(g[k]) * f(p[k])).abs()).sum();
                    (s, abs)
                })
                .collect();
            let want = (0..rows * cols)
                .map(|i| {
                    let (s, abs) = sums[i / cols];
                    let pi = f(p[i]);
                    let v = pi * (f(g[i]) - s);
                    let b = pi
                        * (U * f(g[i]).abs() + (d + 1.0) * U * abs + U * (f(g[i]) - s).abs())
                        + U * v.abs();
                    (v, b)
                })
                .collect();
            (got, want)
        }
    };
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&gv, &(w, b))) in got.iter().zip(&want).enumerate() {
        assert!(
            gv.to_bits() != SENTINEL_BITS && gv.is_finite() && (f(gv) - w).abs() <= b,
            "{what}[{i}]: got {gv:e}, want {w:e} ± {b:e}"
        );
    }
}

#[test]
fn backward_on_many_shapes() {
    let gpu = gpu();
    let mut rng = Rng(42);
    for (rows, cols) in [
        (1, 1),
        (3, 7),
        (64, 65),
        (300, 1000),
        (2, 70_001),
        (20_000, 5),
    ] {
        let x = rng.vec(rows * cols, -20.0, 20.0);
        for func in FUNCS {
            let g = rng.vec(
                if func == RowFn::Logsumexp {
                    rows
                } else {
                    rows * cols
                },
                -2.0,
                2.0,
            );
            check_backward(
                gpu,
                func,
                &x,
                &g,
                rows,
                cols,
                &format!("{func:?} {rows}x{cols}"),
            );
        }
    }
}

#[test]
fn masked_entries_get_zero_and_nan_rows_nan() {
    let gpu = gpu();
    let ninf = f32::NEG_INFINITY;
    #[rustfmt::skip]
    let x = [
        0.0, ninf, 1.0,   // a masked entry: gradient 0 there
        ninf, ninf, ninf, // every entry masked: 0 everywhere
        f32::NAN, 0.0, 1.0, // forward NaN: NaN
    ];
    let lse = gpu.logsumexp(&x, 3, 3).unwrap();
    let g = gpu
        .logsumexp_backward(&x, &lse, &[1.0, 1.0, 1.0], 3, 3)
        .unwrap();
    assert_eq!(g[1], 0.0);
    assert!(g[0] > 0.0 && g[2] > 0.0);
    assert_eq!(&g[3..6], &[0.0; 3]);
    assert!(
        g[6..]
            .iter()
            .all(|v| v.is_nan() && v.to_bits() != SENTINEL_BITS)
    );
    let out = gpu.log_softmax(&x, 3, 3).unwrap();
    let gl = gpu.log_softmax_backward(&out, &[1.0; 9], 3, 3).unwrap();
    assert_eq!(gl[1], 0.0);
    // log_softmax of an all −inf row is NaN (SciPy's semantics): its gradient is NaN.
    assert!(
        gl[3..]
            .iter()
            .all(|v| v.is_nan() && v.to_bits() != SENTINEL_BITS)
    );
    let p = gpu.softmax(&x, 3, 3).unwrap();
    let gs = gpu
        .softmax_backward(&p, &[1.0, 5.0, 2.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0], 3, 3)
        .unwrap();
    assert_eq!(gs[1], 0.0);
    assert!(gs[3..].iter().all(|v| v.is_nan()));
    // A row of equal probabilities and a constant gradient: the gradient is 0.
    let flat = gpu.softmax_backward(&[0.25; 4], &[3.0; 4], 1, 4).unwrap();
    assert_eq!(flat, vec![0.0; 4]);
}

#[test]
fn encoder_level_backward_and_errors() {
    let (device, queue) = own_device(|_| {});
    let gpu = Gpu::from_device(device, queue);
    gpu.fill_outputs_with_sentinel(true);
    let mut rng = Rng(43);
    let (rows, cols) = (500, 33);
    let x = rng.vec(rows * cols, -5.0, 5.0);
    let g = rng.vec(rows * cols, -1.0, 1.0);
    let p = gpu.softmax(&x, rows, cols).unwrap();
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let make = |bytes: &[u8]| {
        gpu.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytes,
                usage,
            })
    };
    let (pb, gb) = (
        make(bytemuck::cast_slice(&p)),
        make(bytemuck::cast_slice(&g)),
    );
    let out = make(bytemuck::cast_slice(&vec![SENTINEL_BITS; rows * cols]));
    let op = BackwardOp::new(&gpu, RowFn::Softmax, rows, cols).unwrap();
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    op.record(&mut encoder, &[&pb, &gb], &out).unwrap();
    gpu.queue().submit([encoder.finish()]);
    let got = gpu.read_f32(&out, (rows * cols * 4) as u64).unwrap();
    let blocking = gpu.softmax_backward(&p, &g, rows, cols).unwrap();
    assert_eq!(
        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        blocking.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // The CPU mirror and the GPU each meet the softmax-backward bound against f64, so they are
    // within twice that bound of each other (a GPU may contract multiply-adds differently).
    let cpu = logdomain::reference::gradients::softmax_backward(&p, &g, rows, cols);
    let depth = (cols as f64).log2().ceil() + (cols as f64).log(64.0).ceil() + 1.0;
    for r in 0..rows {
        let idx = r * cols..(r + 1) * cols;
        let s: f64 = idx.clone().map(|k| f(g[k]) * f(p[k])).sum();
        let abs: f64 = idx.clone().map(|k| (f(g[k]) * f(p[k])).abs()).sum();
        for i in idx {
            let v = f(p[i]) * (f(g[i]) - s);
            let b = f(p[i])
                * (U * f(g[i]).abs() + (depth + 1.0) * U * abs + U * (f(g[i]) - s).abs())
                + U * v.abs();
            assert!(
                (f(got[i]) - f(cpu[i])).abs() <= 2.0 * b,
                "{i}: {} vs {}",
                got[i],
                cpu[i]
            );
        }
    }
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    assert!(matches!(
        op.record(&mut encoder, &[&pb], &out),
        Err(Error::Buffer(_))
    ));
    assert!(matches!(
        op.record(&mut encoder, &[&pb, &gb], &gb),
        Err(Error::Buffer(_))
    ));
    assert!(matches!(
        gpu.logsumexp_backward(&x, &[0.0; 3], &[0.0; 3], rows, cols),
        Err(Error::InputLength { what: "lse", .. })
    ));
    assert!(matches!(
        gpu.log_softmax_backward(&x, &g[..10], rows, cols),
        Err(Error::InputLength { .. })
    ));
    assert!(matches!(
        BackwardOp::new(&gpu, RowFn::LogsumexpParts, 2, 2),
        Err(Error::Unsupported(_))
    ));
}

// ---- Fused cross-entropy ----------------------------------------------------------------------

use logdomain::{
    Bce, CrossEntropy, CrossEntropyGradOp, GaussianNll, LossGradOp, PoissonNll, Reduction,
};

fn depth(n: usize) -> f64 {
    let n = n.max(1) as f64;
    n.log2().ceil() + n.log(64.0).ceil() + 1.0
}

/// PyTorch's `F.cross_entropy` in f64 (class-index targets, every option): the reduced loss
/// (for `Reduction::None`, the sum of the rows' losses).
fn ce_total64(x: &[f64], classes: usize, targets: &[i64], o: &CrossEntropy) -> f64 {
    let eps = f64::from(o.label_smoothing);
    let w = |c: usize| o.weight.as_ref().map_or(1.0, |w| f64::from(w[c]));
    let (mut total, mut denom) = (0.0, 0.0);
    for (r, row) in x.chunks(classes).enumerate() {
        let t = targets[r];
        if t == o.ignore_index {
            continue;
        }
        let t = t as usize;
        let lse = lse64(row);
        let smooth: f64 = (0..classes).map(|c| w(c) * (lse - row[c])).sum();
        total += (1.0 - eps) * w(t) * (lse - row[t]) + eps / classes as f64 * smooth;
        denom += w(t);
    }
    if o.reduction == Reduction::Mean {
        total / denom
    } else {
        total
    }
}

/// The upstream gradient PyTorch's autograd hands log_softmax's backward, per element:
/// `−s ((1 − ε) w_t [j = t] + ε/C w_j)`, 0 on ignored rows; and s.
fn ce_upstream64(rows: usize, classes: usize, targets: &[i64], o: &CrossEntropy) -> Vec<f64> {
    let eps = f64::from(o.label_smoothing);
    let w = |c: usize| o.weight.as_ref().map_or(1.0, |w| f64::from(w[c]));
    let denom: f64 = targets
        .iter()
        .filter(|&&t| t != o.ignore_index)
        .map(|&t| w(t as usize))
        .sum();
    let s = if o.reduction == Reduction::Mean {
        1.0 / denom
    } else {
        1.0
    };
    let mut g = vec![0.0; rows * classes];
    for r in 0..rows {
        let t = targets[r];
        if t == o.ignore_index {
            continue;
        }
        for c in 0..classes {
            let onehot = if c as i64 == t { 1.0 - eps } else { 0.0 };
            g[r * classes + c] = -s * (onehot * w(c) + eps / classes as f64 * w(c));
        }
    }
    g
}

/// PyTorch's gradient of the reduced cross-entropy: log_softmax's backward of the upstream
/// gradient, `g_j − p_j Σ_c g_c`, in f64.
fn ce_grad64(x: &[f64], classes: usize, upstream: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for (r, row) in x.chunks(classes).enumerate() {
        let lse = lse64(row);
        let g = &upstream[r * classes..(r + 1) * classes];
        let s: f64 = g.iter().sum();
        out.extend((0..classes).map(|j| g[j] - (row[j] - lse).exp() * s));
    }
    out
}

fn ce_options() -> Vec<CrossEntropy> {
    let mut all = Vec::new();
    for weighted in [false, true] {
        for smoothing in [0.0, 0.1] {
            for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
                all.push(CrossEntropy {
                    weight: None,
                    // A valid class as ignore_index half the time (PyTorch allows it).
                    ignore_index: if weighted { 2 } else { -100 },
                    label_smoothing: smoothing,
                    reduction,
                });
                let _ = weighted;
            }
        }
    }
    all
}

fn with_weights(o: &CrossEntropy, classes: usize, rng: &mut Rng) -> CrossEntropy {
    CrossEntropy {
        weight: (o.ignore_index == 2).then(|| rng.vec(classes, 0.2, 2.0)),
        ..o.clone()
    }
}

fn ce_targets(rng: &mut Rng, rows: usize, classes: usize, o: &CrossEntropy) -> Vec<i64> {
    (0..rows)
        .map(|r| {
            if r % 5 == 1 {
                o.ignore_index
            } else {
                (rng.next_u64() % classes as u64) as i64
            }
        })
        .collect()
}

#[test]
fn f64_cross_entropy_gradient_matches_central_differences() {
    let mut rng = Rng(51);
    let (rows, classes) = (6, 5);
    for o in ce_options() {
        let o = with_weights(&o, classes, &mut rng);
        let x: Vec<f64> = rng
            .vec(rows * classes, -3.0, 3.0)
            .iter()
            .map(|&v| f(v))
            .collect();
        let targets = ce_targets(&mut rng, rows, classes, &o);
        let analytic = ce_grad64(&x, classes, &ce_upstream64(rows, classes, &targets, &o));
        for i in 0..x.len() {
            let h = 1e-5;
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (ce_total64(&up, classes, &targets, &o)
                - ce_total64(&down, classes, &targets, &o))
                / (2.0 * h);
            let scale = analytic[i].abs().max(fd.abs()).max(1e-3);
            assert!(
                (fd - analytic[i]).abs() <= 1e-6 * scale,
                "{o:?}[{i}]: finite difference {fd}, formula {}",
                analytic[i]
            );
        }
    }
}

/// The fused op on the blocking API: the loss bit for bit `cross_entropy`'s; the gradient
/// against PyTorch's formula in f64 within
///
/// `s·[(α p_j + (1−ε)|w_t|[j=t])·(|x_j − lse| + 2 ln C + 6)·2u + ε/C (|S_w| p_j + |w_j|)·4u
/// + α·2⁻¹²⁶] + |g_j|·(depth(R) + 2)·u`,
///
/// α = (1−ε)|w_t| + ε/C |S_w|, s = 1/D for a mean (D's pairwise sum adds depth(R)·u); and the
/// separate path (GPU log_softmax, then log_softmax_backward of the upstream gradient) within
/// `u|g_j| + p_j |Σg| (|lp_j| + 2 ln C + 10) u + p_j depth(C) u Σ|g| + u|out|` of the same
/// formula, so the two paths agree within the sum of the bounds.
fn check_ce(
    gpu: &Gpu,
    x: &[f32],
    rows: usize,
    classes: usize,
    targets: &[i64],
    o: &CrossEntropy,
    what: &str,
) {
    let (loss, grad) = gpu
        .cross_entropy_with_grad(x, rows, classes, targets, o)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let forward = gpu.cross_entropy(x, rows, classes, targets, o).unwrap();
    assert_eq!(
        loss.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        forward.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "{what}: the fused loss is cross_entropy's"
    );
    let x64: Vec<f64> = x.iter().map(|&v| f(v)).collect();
    let up = ce_upstream64(rows, classes, targets, o);
    let want = ce_grad64(&x64, classes, &up);
    // The separate path, from the upstream gradient rounded to f32.
    let up32: Vec<f32> = up.iter().map(|&v| v as f32).collect();
    let lp = gpu.log_softmax(x, rows, classes).unwrap();
    let sep = gpu.log_softmax_backward(&lp, &up32, rows, classes).unwrap();
    let eps = f64::from(o.label_smoothing);
    let share = eps / classes as f64;
    let w = |c: usize| o.weight.as_ref().map_or(1.0, |w| f(w[c]));
    let sw: f64 = (0..classes).map(w).sum();
    let denom: f64 = targets
        .iter()
        .filter(|&&t| t != o.ignore_index)
        .map(|&t| w(t as usize))
        .sum();
    let s = if o.reduction == Reduction::Mean {
        1.0 / denom
    } else {
        1.0
    };
    let ln_c = (classes as f64).ln();
    assert_eq!(grad.len(), rows * classes, "{what}");
    for r in 0..rows {
        let row = &x64[r * classes..(r + 1) * classes];
        let lse = lse64(row);
        let t = targets[r];
        let ignored = t == o.ignore_index;
        let wt = if ignored { 0.0 } else { w(t as usize) };
        let alpha = (1.0 - eps) * wt.abs() + share * sw.abs();
        let g_up = &up[r * classes..(r + 1) * classes];
        let up_sum: f64 = up32[r * classes..(r + 1) * classes]
            .iter()
            .map(|&v| f(v))
            .sum();
        let up_abs: f64 = g_up.iter().map(|v| v.abs()).sum();
        #[allow(clippy::needless_range_loop)] // j indexes the row, the gradient and the oracles
        for j in 0..classes {
            let i = r * classes + j;
            let g = grad[i];
            assert!(g.to_bits() != SENTINEL_BITS, "{what}[{i}] unwritten");
            if ignored {
                assert_eq!(g.to_bits(), 0, "{what}[{i}]: ignored row");
                continue;
            }
            let p = (row[j] - lse).exp();
            let on_t = if j as i64 == t {
                (1.0 - eps) * wt.abs()
            } else {
                0.0
            };
            let bound = s
                * ((alpha * p + on_t) * ((row[j] - lse).abs() + 2.0 * ln_c + 6.0) * 2.0 * U
                    + share * (sw.abs() * p + w(j).abs()) * 4.0 * U
                    + alpha * f64::from(f32::MIN_POSITIVE))
                + want[i].abs() * (depth(rows) + 2.0) * U;
            assert!(
                (f(g) - want[i]).abs() <= bound,
                "{what}[{i}]: got {g:e}, want {:e} ± {bound:e}",
                want[i]
            );
            let sep_want = f(up32[i]) - p * up_sum;
            let sep_bound = U * f(up32[i]).abs()
                + p * up_sum.abs() * (f(lp[i]).abs() + 2.0 * ln_c + 10.0) * U
                + p * depth(classes) * U * up_abs
                + U * sep_want.abs();
            assert!(
                (f(sep[i]) - sep_want).abs() <= sep_bound,
                "{what}[{i}]: separate path {} vs {sep_want:e} ± {sep_bound:e}",
                sep[i]
            );
            let rounding = U * (f(up32[i]).abs() + p * up_abs);
            assert!(
                (f(g) - f(sep[i])).abs() <= bound + sep_bound + rounding,
                "{what}[{i}]: fused {g:e} vs separate {:e}",
                sep[i]
            );
        }
    }
}

#[test]
fn fused_cross_entropy_every_option() {
    let gpu = gpu();
    let mut rng = Rng(52);
    for (rows, classes) in [(5, 7), (70, 130), (3, 1000)] {
        for o in ce_options() {
            let o = with_weights(&o, classes, &mut rng);
            let x = rng.vec(rows * classes, -8.0, 8.0);
            let targets = ce_targets(&mut rng, rows, classes, &o);
            check_ce(
                gpu,
                &x,
                rows,
                classes,
                &targets,
                &o,
                &format!("{rows}x{classes} {o:?}"),
            );
        }
    }
    // A larger batch with the defaults: rows past a workgroup of rows, classes past a chunk.
    let (rows, classes) = (300, 3000);
    let x = rng.vec(rows * classes, -20.0, 20.0);
    let o = CrossEntropy::default();
    let targets = ce_targets(&mut rng, rows, classes, &o);
    check_ce(gpu, &x, rows, classes, &targets, &o, "300x3000");
}

#[test]
fn fused_cross_entropy_is_accurate_for_confident_predictions() {
    // p_t = 1 − 3e^−30 (1 − p_t ≈ 2.8e−13): softmax − onehot in f32 gives 0 or −6e−8; the fused
    // kernel takes p_t − 1 as expm1(−nll_t) and keeps it to a few ulp.
    let gpu = gpu();
    let x = [30.0f32, 0.0, 0.0, 0.0];
    let o = CrossEntropy {
        reduction: Reduction::Sum,
        ..CrossEntropy::default()
    };
    let (_, g) = gpu.cross_entropy_with_grad(&x, 1, 4, &[0], &o).unwrap();
    // The f64 formula p_t − 1 would itself cancel here (1 − p_t is 3e−13 of 1): the truth is
    // −Σ_{c≠t} p_c, with lse = 30 + ln1p(3e^−30).
    let x64: Vec<f64> = x.iter().map(|&v| f(v)).collect();
    let lse = 30.0 + (3.0 * (-30.0f64).exp()).ln_1p();
    let p: Vec<f64> = x64.iter().map(|v| (v - lse).exp()).collect();
    let want = [-(p[1] + p[2] + p[3]), p[1], p[2], p[3]];
    for j in 0..4 {
        let bound = ((x64[j] - lse).abs() + 8.0) * 2.0 * U * want[j].abs();
        assert!(
            (f(g[j]) - want[j]).abs() <= bound,
            "[{j}]: got {:e}, want {:e}",
            g[j],
            want[j]
        );
    }
    assert!(want[0] < -2e-13 && want[0] > -3e-13);
}

#[test]
fn fused_cross_entropy_special_values() {
    let gpu = gpu();
    let ninf = f32::NEG_INFINITY;
    #[rustfmt::skip]
    let x = [
        1.0, ninf, 0.5,        // a masked logit: gradient 0 there
        f32::NAN, 0.0, 1.0,    // NaN logits: the loss is NaN, so is the gradient
        f32::INFINITY, 0.0, 1.0, // +inf: NaN as well
        7.0, f32::NAN, 2.0,    // an ignored row: zero gradient whatever it holds
    ];
    let targets = [0i64, 1, 2, -100];
    for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
        let o = CrossEntropy {
            reduction,
            ..CrossEntropy::default()
        };
        let (loss, g) = gpu.cross_entropy_with_grad(&x, 4, 3, &targets, &o).unwrap();
        let forward = gpu.cross_entropy(&x, 4, 3, &targets, &o).unwrap();
        assert_eq!(
            loss.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            forward.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(g[1], 0.0, "{reduction:?}");
        assert!(g[0] < 0.0 && g[2] > 0.0, "{reduction:?}: {g:?}");
        assert!(g[3..9].iter().all(|v| v.is_nan()), "{reduction:?}: {g:?}");
        assert_eq!(&g[9..], &[0.0; 3], "{reduction:?}");
    }
    // Every target ignored: the mean is NaN (0/0) and the gradient 0, as in PyTorch.
    let o = CrossEntropy::default();
    let (loss, g) = gpu
        .cross_entropy_with_grad(&[1.0, 2.0, 3.0, 4.0], 2, 2, &[-100, -100], &o)
        .unwrap();
    assert!(loss[0].is_nan());
    assert_eq!(g, vec![0.0; 4]);
    // An empty batch.
    let (loss, g) = gpu.cross_entropy_with_grad(&[], 0, 5, &[], &o).unwrap();
    assert!(loss[0].is_nan() && g.is_empty());
    assert!(matches!(
        gpu.cross_entropy_with_grad(&[0.0; 4], 2, 2, &[0, 2], &o),
        Err(Error::Value(_))
    ));
    assert!(matches!(
        gpu.cross_entropy_with_grad(&[0.0; 4], 2, 2, &[0], &o),
        Err(Error::InputLength { .. })
    ));
}

fn storage_buffer(gpu: &Gpu, bytes: &[u8]) -> wgpu::Buffer {
    gpu.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        })
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn fused_cross_entropy_in_place_and_on_a_four_buffer_device() {
    let mut rng = Rng(53);
    let (rows, classes) = (40, 300);
    let x = rng.vec(rows * classes, -6.0, 6.0);
    let weight = Some(rng.vec(classes, 0.5, 1.5));
    for smoothing in [0.0, 0.2] {
        let o = CrossEntropy {
            weight: weight.clone(),
            label_smoothing: smoothing,
            ..CrossEntropy::default()
        };
        let targets = ce_targets(&mut rng, rows, classes, &o);
        let (loss, grad) = gpu()
            .cross_entropy_with_grad(&x, rows, classes, &targets, &o)
            .unwrap();
        let t32: Vec<i32> = targets.iter().map(|&t| t as i32).collect();
        // A device of the caller's, once with its own limits and once with four storage buffers
        // per stage (no wide layout: the smoothing sums take a pass of their own).
        for four in [false, true] {
            let (device, queue) = own_device(|l| {
                if four {
                    l.max_storage_buffers_per_shader_stage = 4;
                }
            });
            let gpu = Gpu::from_device(device, queue);
            gpu.fill_outputs_with_sentinel(true);
            let logits = storage_buffer(&gpu, bytemuck::cast_slice(&x));
            let tb = storage_buffer(&gpu, bytemuck::cast_slice(&t32));
            let lb = storage_buffer(&gpu, bytemuck::cast_slice(&[SENTINEL_BITS; 1]));
            let op = CrossEntropyGradOp::in_place(&gpu, rows, classes, &o).unwrap();
            assert!(op.is_in_place() && op.grad_len() == rows * classes && op.loss_len() == 1);
            let mut encoder = gpu.device().create_command_encoder(&Default::default());
            op.record(&mut encoder, &logits, &tb, &lb, None).unwrap();
            gpu.queue().submit([encoder.finish()]);
            let what = format!("smoothing {smoothing}, four buffers {four}");
            // The logits buffer now holds exactly the gradient: no trace of the old logits.
            let got = gpu.read_f32(&logits, (rows * classes * 4) as u64).unwrap();
            assert_eq!(bits(&got), bits(&grad), "{what}");
            assert_eq!(bits(&gpu.read_f32(&lb, 4).unwrap()), bits(&loss), "{what}");
            // The separate-buffer op on the same device, and its buffer checks.
            let logits = storage_buffer(&gpu, bytemuck::cast_slice(&x));
            let gb = storage_buffer(&gpu, bytemuck::cast_slice(&vec![SENTINEL_BITS; x.len()]));
            let op = CrossEntropyGradOp::new(&gpu, rows, classes, &o).unwrap();
            let mut encoder = gpu.device().create_command_encoder(&Default::default());
            op.record(&mut encoder, &logits, &tb, &lb, Some(&gb))
                .unwrap();
            gpu.queue().submit([encoder.finish()]);
            let got = gpu.read_f32(&gb, (rows * classes * 4) as u64).unwrap();
            assert_eq!(bits(&got), bits(&grad), "{what}");
            let mut encoder = gpu.device().create_command_encoder(&Default::default());
            assert!(matches!(
                op.record(&mut encoder, &logits, &tb, &lb, None),
                Err(Error::Buffer(_))
            ));
            assert!(matches!(
                op.record(&mut encoder, &logits, &tb, &lb, Some(&logits)),
                Err(Error::Buffer(_))
            ));
            assert!(matches!(
                op.record(&mut encoder, &logits, &tb, &lb, Some(&lb)),
                Err(Error::Buffer(_))
            ));
            let in_place = CrossEntropyGradOp::in_place(&gpu, rows, classes, &o).unwrap();
            assert!(matches!(
                in_place.record(&mut encoder, &logits, &tb, &lb, Some(&gb)),
                Err(Error::Buffer(_))
            ));
            assert!(matches!(
                in_place.record(&mut encoder, &logits, &logits, &lb, None),
                Err(Error::Buffer(_))
            ));
        }
    }
}

// ---- Element-wise losses ------------------------------------------------------------------------

/// f64 per-element losses and their derivatives (PyTorch's formulas).
fn gauss64(x: f64, y: f64, v: f64) -> f64 {
    0.5 * (v.ln() + (x - y).powi(2) / v)
}
fn bce64(x: f64, y: f64, pw: f64) -> f64 {
    let sp = |z: f64| z.max(0.0) + (-z.abs()).exp().ln_1p();
    (1.0 - y) * sp(x) + pw * y * sp(-x)
}
fn poisson64(x: f64, y: f64, log_input: bool, eps: f64) -> f64 {
    if log_input {
        x.exp() - y * x
    } else {
        x - y * (x + eps).ln()
    }
}
fn gauss_grad64(x: f64, y: f64, v: f64) -> (f64, f64) {
    let d = x - y;
    (d / v, 0.5 * (1.0 / v - d * d / (v * v)))
}
fn sigmoid64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
fn bce_grad64(x: f64, y: f64, pw: f64) -> f64 {
    (1.0 - y) * sigmoid64(x) - pw * y * sigmoid64(-x)
}
fn poisson_grad64(x: f64, y: f64, log_input: bool, eps: f64) -> f64 {
    if log_input {
        x.exp() - y
    } else {
        1.0 - y / (x + eps)
    }
}

#[test]
fn f64_elementwise_loss_gradients_match_central_differences() {
    let mut rng = Rng(54);
    let h = 1e-6;
    let fd = |f: &dyn Fn(f64) -> f64, x: f64| (f(x + h) - f(x - h)) / (2.0 * h);
    let close = |a: f64, b: f64, what: &str| {
        assert!(
            (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-3),
            "{what}: formula {a}, finite difference {b}"
        )
    };
    for _ in 0..50 {
        let (x, y) = (f(rng.uniform(-3.0, 3.0)), f(rng.uniform(-3.0, 3.0)));
        let v = f(rng.uniform(0.2, 3.0));
        let pw = f(rng.uniform(0.2, 3.0));
        let yb = f(rng.uniform(0.0, 1.0));
        let yp = f(rng.uniform(0.0, 5.0));
        let (dx, dv) = gauss_grad64(x, y, v);
        close(dx, fd(&|t| gauss64(t, y, v), x), "gaussian d_input");
        close(dv, fd(&|t| gauss64(x, y, t), v), "gaussian d_var");
        close(bce_grad64(x, yb, pw), fd(&|t| bce64(t, yb, pw), x), "bce");
        close(
            poisson_grad64(x, yp, true, 1e-8),
            fd(&|t| poisson64(t, yp, true, 1e-8), x),
            "poisson log input",
        );
        close(
            poisson_grad64(v, yp, false, 1e-8),
            fd(&|t| poisson64(t, yp, false, 1e-8), v),
            "poisson rates",
        );
    }
}

fn assert_within(got: &[f32], want: &[(f64, f64)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &(w, b))) in got.iter().zip(want).enumerate() {
        // Plus the rounding of the scale s and of the product by it.
        let b = b + 2.0 * U * w.abs();
        assert!(
            g.to_bits() != SENTINEL_BITS && (f(g) - w).abs() <= b,
            "{what}[{i}]: got {g:e}, want {w:e} ± {b:e}"
        );
    }
}

/// GPU gradients of the element-wise losses against the f64 formulas on the same f32 inputs,
/// scaled by s (1/n for a mean), within: Gaussian d_input `s·|g|·4u`, d_var
/// `s·½(1 + d²/v)/v·8u` (summed, plus depth(n)·u·Σ|g_i|, for a shared variance); BCE
/// `s·((1 − y)σ(x) + pw·y·σ(−x))·8u`; Poisson `s·(e^x·(|x| + 4) + |y|)·2u` (log input) and
/// `s·(1 + |y/(x + eps)|·4)·2u` (rates), each plus 2u·|g| for the scale; and the loss bit for
/// bit the forward op's.
#[test]
fn elementwise_loss_gradients() {
    let gpu = gpu();
    let mut rng = Rng(55);
    for n in [1usize, 63, 1000, 70_001] {
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            let s = if reduction == Reduction::Mean {
                1.0 / n as f64
            } else {
                1.0
            };
            let what = format!("n {n} {reduction:?}");
            let x = rng.vec(n, -4.0, 4.0);
            let y = rng.vec(n, -4.0, 4.0);
            let var = rng.vec(n, 1e-7, 3.0);
            // Gaussian, one variance per element (some below eps: clamped, gradient kept).
            let o = GaussianNll {
                reduction,
                ..GaussianNll::default()
            };
            let (loss, dx, dv) = gpu.gaussian_nll_with_grad(&x, &y, &var, &o).unwrap();
            assert_eq!(
                bits(&loss),
                bits(&gpu.gaussian_nll(&x, &y, &var, &o).unwrap()),
                "{what}"
            );
            let v = |i: usize| f(var[i]).max(f(o.eps));
            let want: Vec<(f64, f64)> = (0..n)
                .map(|i| {
                    let g = s * gauss_grad64(f(x[i]), f(y[i]), v(i)).0;
                    (g, g.abs() * 4.0 * U)
                })
                .collect();
            assert_within(&dx, &want, &format!("gaussian d_input {what}"));
            let dv_want: Vec<(f64, f64)> = (0..n)
                .map(|i| {
                    let (d, vi) = (f(x[i]) - f(y[i]), v(i));
                    let g = s * gauss_grad64(f(x[i]), f(y[i]), vi).1;
                    (g, s * 0.5 * (1.0 + d * d / vi) / vi * 8.0 * U)
                })
                .collect();
            assert_within(&dv, &dv_want, &format!("gaussian d_var {what}"));
            // A shared variance: its gradient is the sum.
            let (_, _, dv1) = gpu.gaussian_nll_with_grad(&x, &y, &[0.7], &o).unwrap();
            let terms: Vec<(f64, f64)> = (0..n)
                .map(|i| {
                    let d = f(x[i]) - f(y[i]);
                    let g = s * gauss_grad64(f(x[i]), f(y[i]), f(0.7f32)).1;
                    (g, s * 0.5 * (1.0 + d * d / f(0.7f32)) / f(0.7f32) * 8.0 * U)
                })
                .collect();
            let total: f64 = terms.iter().map(|t| t.0).sum();
            let bound: f64 = terms.iter().map(|t| t.1).sum::<f64>()
                + depth(n) * U * terms.iter().map(|t| t.0.abs()).sum::<f64>();
            assert_within(
                &dv1,
                &[(total, bound)],
                &format!("gaussian shared d_var {what}"),
            );
            // BCE with logits, rows × cols with pos_weight per column.
            let cols = if n % 7 == 0 { 7 } else { 1 };
            let pw = rng.vec(cols, 0.2, 3.0);
            let yb = rng.vec(n, 0.0, 1.0);
            let o = Bce {
                pos_weight: Some(pw.clone()),
                reduction,
            };
            let (loss, d) = gpu
                .binary_cross_entropy_with_logits_with_grad(&x, &yb, n / cols, cols, &o)
                .unwrap();
            assert_eq!(
                bits(&loss),
                bits(
                    &gpu.binary_cross_entropy_with_logits(&x, &yb, n / cols, cols, &o)
                        .unwrap()
                ),
                "{what}"
            );
            let want: Vec<(f64, f64)> = (0..n)
                .map(|i| {
                    let (xi, yi, p) = (f(x[i]), f(yb[i]), f(pw[i % cols]));
                    let mag = (1.0 - yi) * sigmoid64(xi) + p * yi * sigmoid64(-xi);
                    (s * bce_grad64(xi, yi, p), s * mag * 8.0 * U)
                })
                .collect();
            assert_within(&d, &want, &format!("bce {what}"));
            // Poisson, both parametrisations.
            let yp = rng.vec(n, 0.0, 6.0);
            for log_input in [true, false] {
                let o = PoissonNll {
                    log_input,
                    full: true,
                    reduction,
                    ..PoissonNll::default()
                };
                let rates: Vec<f32> = x.iter().map(|v| v.abs() + 0.1).collect();
                let input = if log_input { &x } else { &rates };
                let (loss, d) = gpu.poisson_nll_with_grad(input, &yp, &o).unwrap();
                assert_eq!(
                    bits(&loss),
                    bits(&gpu.poisson_nll(input, &yp, &o).unwrap()),
                    "{what}"
                );
                let want: Vec<(f64, f64)> = (0..n)
                    .map(|i| {
                        let (xi, yi) = (f(input[i]), f(yp[i]));
                        let g = s * poisson_grad64(xi, yi, log_input, f(o.eps));
                        let b = if log_input {
                            s * (xi.exp() * (xi.abs() + 4.0) + yi.abs()) * 2.0 * U
                        } else {
                            s * (1.0 + (yi / (xi + f(o.eps))).abs() * 4.0) * 2.0 * U
                        };
                        (g, b)
                    })
                    .collect();
                assert_within(&d, &want, &format!("poisson log_input {log_input} {what}"));
            }
        }
    }
}

#[test]
fn elementwise_loss_gradients_special_values_and_encoder_level() {
    let gpu = gpu();
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    let o = GaussianNll {
        reduction: Reduction::None,
        eps: 0.0,
        ..GaussianNll::default()
    };
    // NaN input, zero variance with eps = 0 (loss NaN): NaN gradients; a finite element.
    let (loss, dx, dv) = gpu
        .gaussian_nll_with_grad(&[nan, 1.0, 2.0], &[0.0, 1.0, 1.0], &[1.0, 0.0, 4.0], &o)
        .unwrap();
    assert!(loss[0].is_nan() && loss[1].is_nan());
    assert!(dx[0].is_nan() && dv[0].is_nan() && dx[1].is_nan() && dv[1].is_nan());
    assert_eq!((dx[2], dv[2]), (0.25, 0.5 * (1.0 - 0.25) / 4.0));
    // A variance below eps is clamped and its gradient is the clamped value's (no gradient
    // through the clamp, which PyTorch applies without tracking).
    let o = GaussianNll {
        reduction: Reduction::Sum,
        eps: 0.5,
        ..GaussianNll::default()
    };
    let (_, dx, dv) = gpu
        .gaussian_nll_with_grad(&[1.0], &[0.0], &[0.1], &o)
        .unwrap();
    assert_eq!((dx[0], dv[0]), (2.0, 0.5 * (1.0 - 2.0) / 0.5));
    // BCE: +inf with y = 0 has loss +inf and gradient 1; −inf is NaN (PyTorch's loss).
    let o = Bce {
        reduction: Reduction::None,
        ..Bce::default()
    };
    let (loss, d) = gpu
        .binary_cross_entropy_with_logits_with_grad(&[inf, -inf, 0.0], &[0.0, 0.0, 1.0], 1, 3, &o)
        .unwrap();
    assert_eq!(loss[0], inf);
    assert_eq!(d[0], 1.0);
    assert!(loss[1].is_nan() && d[1].is_nan());
    assert_eq!(d[2], -0.5);
    // Poisson: NaN target gives NaN.
    let o = PoissonNll {
        reduction: Reduction::None,
        ..PoissonNll::default()
    };
    let (_, d) = gpu
        .poisson_nll_with_grad(&[0.0, 1.0], &[nan, 1.0], &o)
        .unwrap();
    assert!(d[0].is_nan());
    assert_eq!(d[1], std::f32::consts::E - 1.0);
    // The encoder level: the same bits as the blocking call; buffer checks.
    let mut rng = Rng(56);
    let n = 5000;
    let (x, y, var) = (
        rng.vec(n, -2.0, 2.0),
        rng.vec(n, -2.0, 2.0),
        rng.vec(n, 0.1, 2.0),
    );
    let o = GaussianNll::default();
    let (loss, dx, dv) = gpu.gaussian_nll_with_grad(&x, &y, &var, &o).unwrap();
    let op = LossGradOp::gaussian_nll(gpu, n, false, &o).unwrap();
    assert_eq!(op.grad_lens(), &[n, n]);
    assert_eq!(op.inputs().len(), 3);
    let b = |v: &[f32]| storage_buffer(gpu, bytemuck::cast_slice(v));
    let (xb, yb, vb) = (b(&x), b(&y), b(&var));
    let lb = b(&[0.0]);
    let (gx, gv) = (b(&vec![0.0; n]), b(&vec![0.0; n]));
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    op.record(&mut encoder, &[&xb, &yb, &vb], &lb, &[&gx, &gv])
        .unwrap();
    gpu.queue().submit([encoder.finish()]);
    assert_eq!(bits(&gpu.read_f32(&lb, 4).unwrap()), bits(&loss));
    assert_eq!(bits(&gpu.read_f32(&gx, n as u64 * 4).unwrap()), bits(&dx));
    assert_eq!(bits(&gpu.read_f32(&gv, n as u64 * 4).unwrap()), bits(&dv));
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    for bad in [
        op.record(&mut encoder, &[&xb, &yb, &vb], &lb, &[&gx]),
        op.record(&mut encoder, &[&xb, &yb, &vb], &lb, &[&gx, &gx]),
        op.record(&mut encoder, &[&xb, &yb, &vb], &lb, &[&gx, &xb]),
        op.record(&mut encoder, &[&xb, &yb, &vb], &lb, &[&lb, &gv]),
    ] {
        assert!(matches!(bad, Err(Error::Buffer(_))), "{bad:?}");
    }
    assert!(matches!(
        gpu.gaussian_nll_with_grad(&x, &y, &[-1.0], &o),
        Err(Error::Value(_))
    ));
    assert!(matches!(
        gpu.poisson_nll_with_grad(&x, &y[..3], &PoissonNll::default()),
        Err(Error::InputLength { .. })
    ));
}

/// The GPU's pairwise sums add in the CPU mirror's order, bit for bit: with log-probabilities
/// of 0, log_softmax's backward is `g_j − Σg`, one exact product and one subtraction after the
/// row sum, so any difference in the order of the sum's additions shows in the bits.
#[test]
fn pairwise_sums_follow_the_mirrors_order_bit_for_bit() {
    let gpu = gpu();
    let mut rng = Rng(57);
    for cols in [1usize, 63, 64, 65, 1000, 4097] {
        let rows = 40;
        // Values of comparable magnitudes and both signs, with full mantissas: almost every
        // addition rounds, so a different association changes the bits.
        let g: Vec<f32> = (0..rows * cols)
            .map(|_| rng.uniform(-1.0, 1.0) * 10f32.powf(rng.uniform(0.0, 2.0)))
            .collect();
        let zeros = vec![0.0f32; rows * cols];
        let got = gpu.log_softmax_backward(&zeros, &g, rows, cols).unwrap();
        let want = logdomain::reference::gradients::log_softmax_backward(&zeros, &g, rows, cols);
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "cols {cols}"
        );
    }
}
