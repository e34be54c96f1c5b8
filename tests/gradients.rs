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
