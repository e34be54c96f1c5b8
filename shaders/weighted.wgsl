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
    return signed_term(xb, weight_bits(i, col), c[params.c2_off + 2u * row]);
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
    let res = weighted_result(c[params.c2_off + 2u * r], load_partial(r));
    out[params.out_off + r] = res.x;
    out[params.out_off + params.rows + r] = res.y;
}
