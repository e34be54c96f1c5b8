//! `Gpu::reduce_array` (the `ndarray` feature): arrays and views of any dimension, read where
//! they lie or copied first, with the bits of the slice calls.

mod common;

use common::*;
use logdomain::{Axes, RowFn};
use ndarray::{Array, Array3, IxDyn, s};

#[test]
fn views_of_any_layout_give_the_slice_calls_bits() {
    let gpu = gpu();
    let mut rng = Rng(30);
    let a = Array3::from_shape_vec((4, 6, 8), rng.vec(192, -5.0, 5.0)).unwrap();
    let c = a.as_standard_layout().to_owned();
    let data = c.as_slice().unwrap();
    for func in [RowFn::Logsumexp, RowFn::Softmax, RowFn::LogSoftmax] {
        for axes in [Axes::All, Axes::from(0), Axes::from([0, 2]), Axes::from(-1)] {
            let want = gpu
                .reduce_axes(func, data, &[4, 6, 8], axes.clone(), true)
                .unwrap();
            let got = gpu.reduce_array(func, &a, axes.clone(), true).unwrap();
            assert_eq!(got.shape(), &want.shape[..], "{func:?} {axes:?}");
            assert_eq!(
                got.as_slice().unwrap(),
                &want.values[..],
                "{func:?} {axes:?}"
            );
            // The same array in Fortran order, read in place: the same values within the
            // contract (its walk folds differently), and the same shape.
            let f = a.t().as_standard_layout().to_owned();
            let ft = f.t();
            assert!(ft.as_slice_memory_order().is_some() && ft.as_slice().is_none());
            let got = gpu.reduce_array(func, &ft, axes.clone(), true).unwrap();
            assert_eq!(got.shape(), &want.shape[..]);
            for (g, w) in got.iter().zip(&want.values) {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "{func:?} {axes:?}: {g} {w}"
                );
            }
        }
    }
    // Stepped slices and reversed axes are copied first: the bits of the copy.
    let stepped = a.slice(s![.., ..;2, ..;-1]);
    let copy = stepped.as_standard_layout().to_owned();
    let want = gpu
        .reduce_axes(
            RowFn::Logsumexp,
            copy.as_slice().unwrap(),
            &[4, 3, 8],
            1,
            false,
        )
        .unwrap();
    let got = gpu
        .reduce_array(RowFn::Logsumexp, &stepped, 1, false)
        .unwrap();
    assert_eq!(
        got,
        Array::from_shape_vec(IxDyn(&[4, 8]), want.values).unwrap()
    );
    // A broadcast view.
    let row = ndarray::Array1::from_vec(vec![0.0f32, 1.0, 2.0]);
    let b = row.broadcast((5, 3)).unwrap();
    let got = gpu.reduce_array(RowFn::Logsumexp, &b, 0, false).unwrap();
    for (j, g) in got.iter().enumerate() {
        let want = j as f32 + 5f32.ln();
        assert!((g - want).abs() < 1e-5, "{g} {want}");
    }
    // Errors as the slice calls give them.
    assert!(matches!(
        gpu.reduce_array(RowFn::Logsumexp, &a, 3, false),
        Err(logdomain::Error::Axis(_))
    ));
}
