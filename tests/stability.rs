//! The textbook formulas of the stability study (`Gpu::textbook`) on whatever adapter
//! `Gpu::new()` finds: they agree with the same formulas on the CPU where those are benign, and
//! fail where the study says they do (so the study measures the formulas, not a bug).

mod common;

use common::*;
use logdomain::stability::Textbook;
use logdomain::{Error, RowFn};

/// Σ exp in f64 of a row, shifted by m.
fn sum_exp(row: &[f32], m: f64) -> f64 {
    row.iter().map(|&v| (f64::from(v) - m).exp()).sum()
}

#[test]
fn textbook_formulas_agree_with_f64_on_benign_rows() {
    let gpu = gpu();
    let mut rng = Rng(81);
    // Rows longer than a segment (4096) too, so the segment partials are combined.
    for (rows, cols) in [(3, 7), (40, 1000), (2, 10_000)] {
        let x = rng.vec(rows * cols, -5.0, 5.0);
        for formula in [Textbook::Naive, Textbook::MaxShifted] {
            let lse = gpu
                .textbook(formula, RowFn::Logsumexp, &x, rows, cols)
                .unwrap();
            let sm = gpu
                .textbook(formula, RowFn::Softmax, &x, rows, cols)
                .unwrap();
            for (r, row) in x.chunks(cols).enumerate() {
                let want = sum_exp(row, 0.0).ln();
                // Sequential f32 sums of `cols` terms, each exp within a few ulp: n·u relative
                // in the sum, so n·u absolute in its log (plus the log's own rounding).
                let bound = (cols as f64 + 8.0) * U * (1.0 + want.abs());
                assert!(
                    (f64::from(lse[r]) - want).abs() <= bound,
                    "{formula:?} {rows}x{cols} row {r}: {} vs {want}",
                    lse[r]
                );
                for (j, &v) in row.iter().enumerate() {
                    let p = (f64::from(v) - want).exp();
                    let got = f64::from(sm[r * cols + j]);
                    assert!(
                        (got - p).abs() <= (cols as f64 + 8.0) * U * p,
                        "{formula:?} softmax [{r}, {j}]: {got} vs {p}"
                    );
                }
            }
        }
    }
}

#[test]
fn textbook_formulas_fail_where_the_study_says() {
    let gpu = gpu();
    // One dominant entry: both textbook formulas round 1 + 999·e⁻⁴⁰ to 1 and return 0; the
    // crate's log1p keeps 4.2e−15.
    let mut row = vec![-40f32; 1000];
    row[0] = 0.0;
    for formula in [Textbook::Naive, Textbook::MaxShifted] {
        let v = gpu
            .textbook(formula, RowFn::Logsumexp, &row, 1, 1000)
            .unwrap();
        assert_eq!(v[0], 0.0, "{formula:?}");
    }
    let ours = gpu.logsumexp(&row, 1, 1000).unwrap()[0];
    let truth = (999.0 * (-40f64).exp()).ln_1p();
    assert!(
        (f64::from(ours) - truth).abs() <= 4.0 * U * truth,
        "{ours} vs {truth}"
    );
    // A large offset: the naive formula overflows, the shifted one does not.
    let offset: Vec<f32> = (0..100).map(|i| 1e4 + i as f32 * 0.01).collect();
    let naive = gpu
        .textbook(Textbook::Naive, RowFn::Logsumexp, &offset, 1, 100)
        .unwrap();
    assert!(!naive[0].is_finite(), "{}", naive[0]);
    let shifted = gpu
        .textbook(Textbook::MaxShifted, RowFn::Logsumexp, &offset, 1, 100)
        .unwrap();
    assert!((shifted[0] - 1e4).abs() < 6.0, "{}", shifted[0]);
    assert!(matches!(
        gpu.textbook(Textbook::Naive, RowFn::LogSoftmax, &offset, 1, 100),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        gpu.textbook(Textbook::Naive, RowFn::Softmax, &offset, 2, 100),
        Err(Error::InputLength { .. })
    ));
}
