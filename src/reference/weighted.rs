//! CPU mirror of `shaders/weighted.wgsl`: the weighted log-sum-exp with signs in f32, the row max
//! from the log-sum-exp mirror's state, the positive and negative terms summed in the kernels'
//! pairwise order.

use super::likelihood::{CHUNK, SumState, pairwise, reduce_levels};
use super::logsumexp::{ld_exp_neg, row_state};

/// `(log|Σ b·eˣ|, sign)` per row; `b` per element (`rows × cols`) or per column (`cols`).
pub fn logsumexp_weighted(x: &[f32], b: &[f32], rows: usize, cols: usize) -> (Vec<f32>, Vec<f32>) {
    let per_column = b.len() == cols && b.len() != rows * cols;
    let w = |r: usize, c: usize| if per_column { b[c] } else { b[r * cols + c] };
    let (mut lse, mut sign) = (Vec::new(), Vec::new());
    for r in 0..rows {
        let row: Vec<f32> = (0..cols)
            .map(|c| {
                if w(r, c) == 0.0 {
                    f32::NEG_INFINITY
                } else {
                    x[r * cols + c]
                }
            })
            .collect();
        let st = row_state(&row);
        let hi = super::logsumexp::lse_result(st);
        let m = if hi.is_finite() { st.m } else { hi };
        let terms: Vec<SumState> = (0..cols)
            .map(|c| signed_term(x[r * cols + c], w(r, c), m))
            .collect();
        let partials: Vec<SumState> = terms.chunks(CHUNK).map(|c| pairwise(c.to_vec())).collect();
        let (l, s) = weighted_result(m, reduce_levels(partials));
        lse.push(l);
        sign.push(s);
    }
    (lse, sign)
}

/// The term `b·e^(x − m)` of an entry of a row whose max over its nonzero-weighted entries is `m`
/// (NaN, +inf, or −inf for none): the positive part in `s`, the negative part's magnitude in `w`,
/// an infinite or NaN term as a flag; nothing for `b = 0`. Mirrors `signed_term` in
/// `shaders/common.wgsl`.
pub fn signed_term(xv: f32, wb: f32, m: f32) -> SumState {
    if wb == 0.0 || !(m.is_finite() || m == f32::INFINITY) {
        return SumState::default();
    }
    let t = if xv == f32::INFINITY {
        f32::INFINITY
    } else if m == f32::INFINITY || !xv.is_finite() {
        0.0
    } else {
        ld_exp_neg(xv - m)
    };
    let v = if wb.is_infinite() && t == 0.0 {
        f32::NAN
    } else {
        wb * t
    };
    let mut st = SumState::default();
    if v.is_nan() {
        st.flags = super::likelihood::SUM_NAN;
    } else if v == f32::INFINITY {
        st.flags = super::likelihood::SUM_POS_INF;
    } else if v == f32::NEG_INFINITY {
        st.flags = super::likelihood::SUM_NEG_INF;
    } else {
        st.s = v.max(0.0);
        st.w = (-v).max(0.0);
    }
    st
}

/// `(log|P − N|, sign)` from the row max `m` (as for [`signed_term`]) and the terms' sums.
/// Mirrors `weighted_result` in `shaders/common.wgsl`.
pub fn weighted_result(m: f32, st: SumState) -> (f32, f32) {
    let (pos, neg) = (
        st.flags & super::likelihood::SUM_POS_INF != 0,
        st.flags & super::likelihood::SUM_NEG_INF != 0,
    );
    if m.is_nan() || st.flags & super::likelihood::SUM_NAN != 0 || (pos && neg) {
        (f32::NAN, f32::NAN)
    } else if pos || neg {
        (f32::INFINITY, if pos { 1.0 } else { -1.0 })
    } else if !m.is_finite() {
        (f32::NEG_INFINITY, 0.0)
    } else {
        // Sums of 2^64 or more are held times 2^-64: both on one scale, 64 ln 2 back in the log.
        use super::likelihood::{LN_TWO_POW_64, SUM_BIG_S, SUM_BIG_W, TWO_POW_M64};
        let (bs, bw) = (st.flags & SUM_BIG_S != 0, st.flags & SUM_BIG_W != 0);
        let (mut s, mut w, mut shift) = (st.s, st.w, 0.0);
        if bs || bw {
            if !bs {
                s *= TWO_POW_M64;
            }
            if !bw {
                w *= TWO_POW_M64;
            }
            shift = LN_TWO_POW_64;
        }
        let d = s - w;
        if d == 0.0 {
            (f32::NEG_INFINITY, 0.0)
        } else {
            (m + (super::likelihood::xlog(d.abs()) + shift), d.signum())
        }
    }
}
