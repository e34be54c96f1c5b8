//! Masks (JAX's `where=`) for logsumexp, softmax and log_softmax on whatever adapter
//! `Gpu::new()` finds: semantics at masked entries and fully masked rows, unmasked entries bit
//! for bit the unmasked op's on the input with masked entries at −inf (and so within its f64
//! bounds), the encoder level with a packed mask, and errors.

mod common;

use common::*;
use logdomain::masked::pack_mask;
use logdomain::{Error, Gpu, MaskedRowOp, RowFn, SENTINEL_BITS};
use wgpu::util::DeviceExt;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn semantics_of_masked_entries_and_rows() {
    let gpu = gpu();
    let (nan, inf, ninf) = (f32::NAN, f32::INFINITY, f32::NEG_INFINITY);
    #[rustfmt::skip]
    let x = [
        0.0, nan, 0.0, inf,     // NaN and +inf masked: absent
        1.0, 2.0, 3.0, 4.0,     // every entry masked
        nan, 1.0, 2.0, 0.0,     // an unmasked NaN: NaN, but masked entries stay 0 / −inf
        ninf, ninf, 5.0, 1.0,   // unmasked −inf entries are absent as usual
    ];
    #[rustfmt::skip]
    let w = [
        true, false, true, false,
        false, false, false, false,
        true, true, false, true,
        true, true, false, true,
    ];
    let lse = gpu.logsumexp_masked(&x, &w, 4, 4).unwrap();
    assert!((lse[0] - 2f32.ln()).abs() < 1e-6, "{}", lse[0]);
    assert_eq!(lse[1], ninf);
    assert!(lse[2].is_nan() && lse[2].to_bits() != SENTINEL_BITS);
    assert_eq!(lse[3], 1.0);
    let sm = gpu.softmax_masked(&x, &w, 4, 4).unwrap();
    assert_eq!(&sm[..4], &[0.5, 0.0, 0.5, 0.0]);
    assert_eq!(&sm[4..8], &[0.0; 4]);
    assert!(sm[8].is_nan() && sm[9].is_nan() && sm[11].is_nan());
    assert_eq!(sm[10], 0.0);
    assert_eq!(&sm[12..], &[0.0, 0.0, 0.0, 1.0]);
    let lsm = gpu.log_softmax_masked(&x, &w, 4, 4).unwrap();
    assert_eq!(lsm[1], ninf);
    assert_eq!(lsm[3], ninf);
    assert_eq!(&lsm[4..8], &[ninf; 4]);
    assert!(lsm[8].is_nan() && lsm[9].is_nan() && lsm[11].is_nan());
    assert_eq!(lsm[10], ninf);
    assert_eq!(&lsm[12..], &[ninf, ninf, ninf, 0.0]);
    // The CPU mirror gives the same values.
    for (func, got) in [
        (RowFn::Logsumexp, &lse),
        (RowFn::Softmax, &sm),
        (RowFn::LogSoftmax, &lsm),
    ] {
        let want = logdomain::reference::masked::masked(func, &x, &w, 4, 4);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-6 || g == w,
                "{func:?}: {got:?} vs {want:?}"
            );
        }
    }
}

#[test]
fn unmasked_entries_are_the_unmasked_ops_on_the_substituted_input() {
    let gpu = gpu();
    let mut rng = Rng(111);
    for (rows, cols) in [(7, 13), (300, 1000), (2, 70_001)] {
        let x = rng.vec(rows * cols, -20.0, 20.0);
        let w: Vec<bool> = (0..rows * cols)
            .map(|i| i % cols != 0 && rng.uniform(0.0, 1.0) < 0.7)
            .collect();
        let xm: Vec<f32> = x
            .iter()
            .zip(&w)
            .map(|(&v, &k)| if k { v } else { f32::NEG_INFINITY })
            .collect();
        let what = format!("{rows}x{cols}");
        let lse = gpu.logsumexp_masked(&x, &w, rows, cols).unwrap();
        assert_eq!(
            bits(&lse),
            bits(&gpu.logsumexp(&xm, rows, cols).unwrap()),
            "{what}"
        );
        check_lse(&lse, &xm, rows, cols, &what);
        let sm = gpu.softmax_masked(&x, &w, rows, cols).unwrap();
        assert_eq!(
            bits(&sm),
            bits(&gpu.softmax(&xm, rows, cols).unwrap()),
            "{what}"
        );
        check_softmax(&sm, &xm, rows, cols, &what);
        let lsm = gpu.log_softmax_masked(&x, &w, rows, cols).unwrap();
        assert_eq!(
            bits(&lsm),
            bits(&gpu.log_softmax(&xm, rows, cols).unwrap()),
            "{what}"
        );
        check_log_softmax(&lsm, &xm, rows, cols, &what);
    }
}

#[test]
fn encoder_level_with_a_packed_mask_and_errors() {
    let (device, queue) = own_device(|_| {});
    let gpu = Gpu::from_device(device, queue);
    gpu.fill_outputs_with_sentinel(true);
    let mut rng = Rng(112);
    let (rows, cols) = (33, 70);
    let x = rng.vec(rows * cols, -5.0, 5.0);
    let w: Vec<bool> = (0..rows * cols).map(|i| i % 3 != 1).collect();
    let packed = pack_mask(&w);
    assert_eq!(packed.len(), (rows * cols).div_ceil(32));
    assert_eq!(packed[0] & 0b111, 0b101);
    let make = |bytes: &[u8]| {
        gpu.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            })
    };
    let (xb, mb) = (
        make(bytemuck::cast_slice(&x)),
        make(bytemuck::cast_slice(&packed)),
    );
    let out = make(bytemuck::cast_slice(&vec![SENTINEL_BITS; rows * cols]));
    let op = MaskedRowOp::new(&gpu, RowFn::LogSoftmax, rows, cols).unwrap();
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    op.record(&mut encoder, &xb, &mb, &out).unwrap();
    gpu.queue().submit([encoder.finish()]);
    let got = gpu.read_f32(&out, (rows * cols * 4) as u64).unwrap();
    assert_eq!(
        bits(&got),
        bits(&gpu.log_softmax_masked(&x, &w, rows, cols).unwrap())
    );
    assert!(matches!(
        gpu.softmax_masked(&x, &w[1..], rows, cols),
        Err(Error::InputLength { what: "where_", .. })
    ));
    assert!(matches!(
        MaskedRowOp::new(&gpu, RowFn::LogsumexpParts, 2, 2),
        Err(Error::Unsupported(_))
    ));
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    let small = make(&[0u8; 4]);
    assert!(matches!(
        op.record(&mut encoder, &xb, &small, &out),
        Err(Error::Buffer(_))
    ));
}
