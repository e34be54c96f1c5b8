// The textbook formulas that `logdomain stability` compares with the crate's kernels: the naive
// log Σ exp x and exp x / Σ exp x, and the max-shifted m + log Σ exp(x − m) and
// exp(x − m) / Σ exp(x − m), with the builtin exp and log and plain sequential f32 sums — written
// as they usually are, deliberately without the crate's care (no log1p, no special values from
// bits). No op of the crate uses them. Needs likelihood.wgsl's bindings.
// Host: src/stability.rs.
//
// OP: 0 naive, 1 max-shifted. Rows of `cols` entries (a, from word 0) are cut into `slots`
// segments of `len_in` entries, one invocation per (row, segment); per-row values are combined
// from the segments' partials, so no invocation loops over more than len_in + slots values.

const STAB_SHIFTED: u32 = 1u;

struct StabItem {
    r: u32,
    start: u32,
    end: u32,
    live: bool,
}

fn stab_item(t: u32) -> StabItem {
    let r = t / params.slots;
    let s = t - r * params.slots;
    let start = s * params.len_in;
    return StabItem(r, start, min(start + params.len_in, params.cols), r < params.rows);
}

fn stab_x(r: u32, j: u32) -> f32 {
    return bitcast<f32>(a[r * params.cols + j]);
}

// The row's shift: its max (from the segments' maxima in b) or 0.
fn stab_shift(r: u32) -> f32 {
    if (OP != STAB_SHIFTED) {
        return 0.0;
    }
    var m = bitcast<f32>(b[r * params.slots]);
    for (var s = 1u; s < params.slots; s++) {
        m = max(m, bitcast<f32>(b[r * params.slots + s]));
    }
    return m;
}

// The row's sum of exponentials, from the segments' sums in c.
fn stab_total(r: u32) -> f32 {
    var total = 0.0;
    for (var s = 0u; s < params.slots; s++) {
        total += bitcast<f32>(c[r * params.slots + s]);
    }
    return total;
}

// Each segment's max.
@compute @workgroup_size(WG)
fn stab_max(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = ll_linear(wid, nwg, lid);
    let it = stab_item(t);
    if (!it.live) {
        return;
    }
    var m = stab_x(it.r, it.start);
    for (var j = it.start + 1u; j < it.end; j++) {
        m = max(m, stab_x(it.r, j));
    }
    out[t] = f32b(m);
}

// Each segment's Σ exp(x − shift).
@compute @workgroup_size(WG)
fn stab_sum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = ll_linear(wid, nwg, lid);
    let it = stab_item(t);
    if (!it.live) {
        return;
    }
    let m = stab_shift(it.r);
    var s = 0.0;
    for (var j = it.start; j < it.end; j++) {
        s += exp(stab_x(it.r, j) - m);
    }
    out[t] = f32b(s);
}

// log-sum-exp per row: shift + log(total).
@compute @workgroup_size(WG)
fn stab_lse(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = ll_linear(wid, nwg, lid);
    if (r >= params.rows) {
        return;
    }
    out[r] = f32b(stab_shift(r) + log(stab_total(r)));
}

// softmax per entry: exp(x − shift) / total.
@compute @workgroup_size(WG)
fn stab_softmax(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let it = stab_item(ll_linear(wid, nwg, lid));
    if (!it.live) {
        return;
    }
    let m = stab_shift(it.r);
    let total = stab_total(it.r);
    for (var j = it.start; j < it.end; j++) {
        out[it.r * params.cols + j] = f32b(exp(stab_x(it.r, j) - m) / total);
    }
}
