// Weighted log-sum-exp with signs, as scipy.special.logsumexp(a, b=..., return_sign=True) along
// rows: log|Σ b·e^x| and its sign. Per-element values of likelihood.wgsl's `elementwise` entry
// (OP_W_*) and the per-row `wlse_finish`. Needs common.wgsl and likelihood.wgsl.
// Host: src/weighted.rs; mirror: src/reference/weighted.rs.
//   OP_W_SUBST  a = x, b = weights: x where b ≠ 0, −inf where b = 0 (SciPy ignores those
//               entries, even when x is inf or NaN); the row max m then comes from the
//               log-sum-exp family's parts.
//   OP_W_TERMS  a = x, b = weights, c = the rows' parts (m at c2_off + 2 row): b·e^(x − m),
//               positive terms summed in s, negative ones' magnitudes in w (one pairwise pass,
//               two sums), infinite terms as flags.
// Weights are one per element, or one per column with MODE_WEIGHTED (b indexed by column).

const OP_W_FIRST: u32 = 28u;
const OP_W_SUBST: u32 = 28u;
const OP_W_TERMS: u32 = 29u;

fn weight_bits(i: u32, col: u32) -> u32 {
    if ((params.mode & MODE_WEIGHTED) != 0u) {
        return b[col];
    }
    return b[params.b_off + i];
}

// The state of one element: for OP_W_SUBST the substituted value in s's bits is not used; the
// caller writes `weighted_value` instead.
fn weighted_value(xb: u32, i: u32, col: u32) -> u32 {
    let wb = weight_bits(i, col);
    return select(xb, F32_NEG_INF, (wb & F32_ABS_MASK) == 0u);
}

fn weighted_term(xb: u32, i: u32, row: u32, col: u32) -> SumState {
    let wb = weight_bits(i, col);
    var st = sum_identity();
    if ((wb & F32_ABS_MASK) == 0u) {
        return st;
    }
    let hib = c[params.c2_off + 2u * row];
    if (!is_finite_bits(hib) && hib != F32_POS_INF) {
        // NaN or an empty row: the finish decides from the parts alone.
        return st;
    }
    var t: u32;
    if (xb == F32_POS_INF) {
        t = F32_POS_INF;
    } else if (hib == F32_POS_INF || !is_finite_bits(xb)) {
        // Finite or −inf entries beside a +inf one weigh nothing.
        t = 0u;
    } else {
        t = f32b(ld_exp_neg(bitcast<f32>(xb) - bitcast<f32>(hib)));
    }
    let v = xmul(wb, t);
    if (is_nan_bits(v)) {
        st.flags = SUM_NAN;
    } else if (v == F32_POS_INF) {
        st.flags = SUM_POS_INF;
    } else if (v == F32_NEG_INF) {
        st.flags = SUM_NEG_INF;
    } else {
        let f = bitcast<f32>(v);
        st.s = max(f, 0.0);
        st.w = max(-f, 0.0);
    }
    return st;
}

// Per row r: m from the parts (c, at c2_off + 2 r), the terms' sums (a, a triple per row);
// writes log|P − N| at out_off + r and its sign at out_off + rows + r.
@compute @workgroup_size(WG)
fn wlse_finish(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = ll_linear(wid, nwg, lid);
    if (r >= params.rows) {
        return;
    }
    let hib = c[params.c2_off + 2u * r];
    let st = load_partial(r);
    var lse = F32_NAN;
    var sign = F32_NAN;
    let pos = (st.flags & SUM_POS_INF) != 0u;
    let neg = (st.flags & SUM_NEG_INF) != 0u;
    if (is_nan_bits(hib) || (st.flags & SUM_NAN) != 0u || (pos && neg)) {
        // NaN.
    } else if (pos || neg) {
        lse = F32_POS_INF;
        sign = select(f32b(-1.0), f32b(1.0), pos);
    } else if (hib == F32_NEG_INF || hib == F32_POS_INF) {
        // No entry with a nonzero weight (or, for +inf, only zero-weighted ones): empty.
        lse = F32_NEG_INF;
        sign = 0u;
    } else {
        let d = st.s - st.w;
        if (d == 0.0) {
            lse = F32_NEG_INF;
            sign = 0u;
        } else {
            lse = f32b(bitcast<f32>(hib) + bitcast<f32>(xlog(f32b(abs(d)))));
            sign = select(f32b(-1.0), f32b(1.0), d > 0.0);
        }
    }
    out[params.out_off + r] = lse;
    out[params.out_off + params.rows + r] = sign;
}
