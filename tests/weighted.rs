//! Weighted log-sum-exp with signs on whatever adapter `Gpu::new()` finds: SciPy's own values
//! (`scipy.special.logsumexp(a, b=b, return_sign=True)`, SciPy 1.17.1 in f64 on the same f32
//! inputs) for cancelling and special cases, random rows against f64 within a bound set by the
//! cancellation, weights per column, the encoder level and errors.

mod common;

use common::*;
use logdomain::{Error, Gpu, SENTINEL_BITS, WeightedLseOp};
use wgpu::util::DeviceExt;

#[test]
fn scipys_values() {
    let gpu = gpu();
    let (nan, inf) = (f32::NAN, f32::INFINITY);
    // (a, b, SciPy's log, SciPy's sign), generated with
    //   logsumexp(np.float32(a).astype(np.float64), b=np.float32(b).astype(np.float64),
    //             return_sign=True)
    #[allow(clippy::type_complexity)]
    let cases: [(&[f32], &[f32], f64, f64); 11] = [
        (&[0.0, 0.0], &[1.0, -1.0], f64::NEG_INFINITY, 0.0),
        (&[0.0, 1e-6], &[1.0, -1.0], -13.815510060422588, -1.0),
        (
            &[5.0, 5.0000005, -3.0],
            &[2.0, -2.0, 0.5],
            -3.6988491333348374,
            1.0,
        ),
        (&[1.0, 2.0], &[0.5, -1.0], 1.7967329450848046, -1.0),
        (&[nan, 1.0, 2.0], &[0.0, 1.0, 1.0], 2.313261687518223, 1.0),
        (&[inf, 1.0], &[0.0, -1.0], 1.0, -1.0),
        (&[inf, 1.0], &[2.0, -1.0], f64::INFINITY, 1.0),
        (&[inf, 1.0], &[-2.0, 1.0], f64::INFINITY, -1.0),
        (&[inf, inf], &[1.0, -1.0], f64::NAN, f64::NAN),
        (&[1.0, 2.0], &[0.0, 0.0], f64::NEG_INFINITY, 0.0),
        (&[1e4, 1e4 + 1.0], &[1.0, -0.5], 9998.975959551237, -1.0),
    ];
    for (i, (a, b, want, want_sign)) in cases.iter().enumerate() {
        let (lse, sign) = gpu.logsumexp_weighted(a, b, 1, a.len()).unwrap();
        let (g, s) = (f64::from(lse[0]), f64::from(sign[0]));
        if want.is_nan() {
            assert!(g.is_nan() && s.is_nan(), "case {i}: {g} {s}");
            continue;
        }
        assert_eq!(s, *want_sign, "case {i}: sign");
        if want.is_infinite() {
            assert_eq!(g, *want, "case {i}");
            continue;
        }
        // Case 1 cancels to 1e−6 of its terms and case 2 to 4e−3 of them: the bound is the
        // cancellation's, (P + N)/|P − N|·8u, plus the log's rounding.
        let m = a
            .iter()
            .zip(b.iter())
            .filter(|(_, w)| **w != 0.0)
            .map(|(&x, _)| f64::from(x))
            .fold(f64::NEG_INFINITY, f64::max);
        let terms: f64 = a
            .iter()
            .zip(b.iter())
            .filter(|(_, w)| **w != 0.0)
            .map(|(&x, &w)| (f64::from(w) * (f64::from(x) - m).exp()).abs())
            .sum();
        let cond = terms / (want - m).exp();
        let bound = 8.0 * U * cond + 4.0 * U * (1.0 + want.abs());
        assert!(
            (g - want).abs() <= bound,
            "case {i}: got {g}, SciPy {want} ± {bound:e}"
        );
    }
}

/// Random rows with mixed-sign weights against f64: `|got − want| ≤ (depth + 4)·u·(P + N)/|P −
/// N| + 4u(1 + |want|)`, P and N the positive and negative terms' sums.
#[test]
fn random_rows_within_the_cancellation_bound() {
    let gpu = gpu();
    let mut rng = Rng(121);
    for (rows, cols, per_column) in [(5, 7, false), (300, 1000, false), (40, 3000, true)] {
        let x = rng.vec(rows * cols, -20.0, 20.0);
        let b = rng.vec(if per_column { cols } else { rows * cols }, -1.0, 2.0);
        let (lse, sign) = gpu.logsumexp_weighted(&x, &b, rows, cols).unwrap();
        let (cpu_lse, cpu_sign) =
            logdomain::reference::weighted::logsumexp_weighted(&x, &b, rows, cols);
        let depth = (cols as f64).log2().ceil() + (cols as f64).log(64.0).ceil() + 1.0;
        for r in 0..rows {
            let w = |c: usize| f64::from(if per_column { b[c] } else { b[r * cols + c] });
            let m = (0..cols)
                .map(|c| f64::from(x[r * cols + c]))
                .fold(f64::NEG_INFINITY, f64::max);
            let (mut p, mut n) = (0.0, 0.0);
            for c in 0..cols {
                let t = w(c) * (f64::from(x[r * cols + c]) - m).exp();
                if t > 0.0 { p += t } else { n -= t }
            }
            let want = m + (p - n).abs().ln();
            let bound = (depth + 4.0) * U * (p + n) / (p - n).abs() + 4.0 * U * (1.0 + want.abs());
            let what = format!("{rows}x{cols} row {r}");
            assert!(lse[r].to_bits() != SENTINEL_BITS, "{what}");
            assert_eq!(f64::from(sign[r]), (p - n).signum(), "{what}");
            assert!(
                (f64::from(lse[r]) - want).abs() <= bound,
                "{what}: got {}, want {want} ± {bound:e}",
                lse[r]
            );
            assert_eq!(sign[r], cpu_sign[r], "{what}");
            assert!(
                (f64::from(lse[r]) - f64::from(cpu_lse[r])).abs() <= 2.0 * bound,
                "{what}: CPU mirror {}",
                cpu_lse[r]
            );
        }
    }
}

#[test]
fn encoder_level_and_errors() {
    let (device, queue) = own_device(|_| {});
    let gpu = Gpu::from_device(device, queue);
    gpu.fill_outputs_with_sentinel(true);
    let mut rng = Rng(122);
    let (rows, cols) = (17, 130);
    let x = rng.vec(rows * cols, -5.0, 5.0);
    let b = rng.vec(cols, -1.0, 1.0);
    let make = |bytes: &[u8]| {
        gpu.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            })
    };
    let (xb, bb) = (
        make(bytemuck::cast_slice(&x)),
        make(bytemuck::cast_slice(&b)),
    );
    let out = make(bytemuck::cast_slice(&vec![SENTINEL_BITS; 2 * rows]));
    let op = WeightedLseOp::new(&gpu, rows, cols, true).unwrap();
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    op.record(&mut encoder, &xb, &bb, &out).unwrap();
    gpu.queue().submit([encoder.finish()]);
    let got = gpu.read_f32(&out, (2 * rows * 4) as u64).unwrap();
    let (lse, sign) = gpu.logsumexp_weighted(&x, &b, rows, cols).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got[..rows]), bits(&lse));
    assert_eq!(bits(&got[rows..]), bits(&sign));
    assert!(matches!(
        gpu.logsumexp_weighted(&x, &b[1..], rows, cols),
        Err(Error::InputLength { .. })
    ));
    let (l, s) = gpu.logsumexp_weighted(&[], &[], 3, 0).unwrap();
    assert_eq!((l, s), (vec![f32::NEG_INFINITY; 3], vec![0.0; 3]));
}

/// Sums of 2^64 or more (weights of 1e30) are held scaled by 2^-64 inside the sum monoid: the
/// log comes back with 64 ln 2, also when only one of the two sums is scaled, on the 2-D family
/// and the N-d call.
#[test]
fn huge_weights_keep_their_scale() {
    let gpu = gpu();
    let cases: [([f32; 2], [f32; 2]); 4] = [
        ([0.0, 0.0], [1e30, 1e30]),
        ([0.0, 1.0], [1e30, -1.0]),
        ([2.0, 0.0], [-3e29, 1e20]),
        ([0.0, -5.0], [4e25, -4e25]),
    ];
    for (x, b) in cases {
        let truth: f64 = x
            .iter()
            .zip(&b)
            .map(|(&v, &w)| f64::from(w) * f64::from(v).exp())
            .sum();
        let (l, s) = gpu.logsumexp_weighted(&x, &b, 1, 2).unwrap();
        let (nl, ns) = gpu
            .reduce_axes_weighted(&x, &[2], &b, &[2], 0, false)
            .unwrap();
        for (got, sign, what) in [(l[0], s[0], "2-D"), (nl.values[0], ns.values[0], "N-d")] {
            assert_eq!(f64::from(sign), truth.signum(), "{what} {x:?} {b:?}");
            let want = truth.abs().ln();
            assert!(
                (f64::from(got) - want).abs() <= 1e-5 * want.abs(),
                "{what} {x:?} {b:?}: {got} against {want}"
            );
        }
    }
}
