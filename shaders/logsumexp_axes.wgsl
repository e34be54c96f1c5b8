// The log-sum-exp family over any axes of an N-d strided array, read where it lies (no
// transpose). Follows logsumexp.wgsl, its input file (logsumexp_words.wgsl, or logsumexp_vec4.wgsl
// for the *_vec4 entry points) and logsumexp_out.wgsl. Mirror: `reference::logsumexp::
// reduce_axes`. Host: `AxisOp` in src/logsumexp.rs.
//
// The host folds the array (`engine::geometry::Folded`): kept dimensions, whose row-major
// positions are the results, and reduced dimensions, whose row-major order is the order a
// result's entries are walked in. Each invocation owns one position (or, in the vec4 forms, four
// neighbouring positions along an innermost kept dimension of stride 1, read as one 16-byte word
// per reduced step), so neighbouring invocations read neighbouring entries wherever the innermost
// kept dimension is contiguous. A result's entries are walked in segments of `seg_len` (at most
// LANE_MAX); each segment's state is `range_state`'s (blocks of BLOCK entries, a binary counter),
// and the segments' states combine left to right, so the bits depend only on the values, their
// walk order and `seg_len`, not on the strides.
//
// Params (logsumexp.wgsl) as these entry points read them:
//   rows        positions in this dispatch, from row_base (a multiple of 4 for the vec4 forms);
//   cols        entries a position reduces;
//   in_offset   entry (0, ..., 0) of the input, in entries from the window's start (wrapping:
//               the window may start past it);
//   out_offset  the same for the output;
//   seg_len, segs, seg_base, seg_total: the segment length, the segments of this dispatch and
//               the first of them, and all segments of a position;
//   final_base  where the positions' final states start in `states` (softmax, log_softmax).
// Partial states: states[position * seg_total + segment].
//
// With MASKED (JAX's and NumPy's `where=`), binding 5 holds a mask, one bit an entry (32 a word,
// entry g at bit g % 32 of word g / 32), addressed by its own strides (0 where it broadcasts): a
// masked entry is read as −inf, and its softmax / log_softmax written as 0 / −inf, so a fully
// masked result gives −inf, all 0, all −inf (the masked family's semantics, src/masked.rs).
//
// OP_LSE_WEIGHTED is SciPy's `logsumexp(a, axis, b=b, return_sign=True)`: binding 5 then holds
// b, one f32 an entry at the mask's strides (0 where it broadcasts). The first walk reads x where
// b ≠ 0 and −inf elsewhere, for the max m; a second walk sums the signed terms b·e^(x − m)
// (`signed_term`, the sum monoid of common.wgsl) in the same blocks and segments; the logs go to
// the output, the signs params.state_base entries after them (`weighted_result`). OP_LSE_PARTS
// writes a result's parts (m, log1p(s)) the same way: m at the output, log1p(s) after.
//
// The backward ops (`AxisOptions::backward`): the input is the forward's input x (logsumexp) or
// output (softmax p, log_softmax y); binding 5 holds the upstream gradient g at the mask's
// strides (for logsumexp g per result, then the forward's lse per result params.state_base
// entries later); the output is dx, one value an entry (`lse_backward_bits` and its neighbours
// in common.wgsl). softmax and log_softmax need a sum per result (Σ g p, Σ g): a walk with the
// sum monoid in the same blocks and segments.
override MASKED: bool = false;
const OP_LSE_WEIGHTED: u32 = 4u;
const OP_LSE_BWD_ND: u32 = 5u;
const OP_SM_BWD_ND: u32 = 6u;
const OP_LSM_BWD_ND: u32 = 7u;

fn is_backward() -> bool {
    return OP == OP_LSE_BWD_ND || OP == OP_SM_BWD_ND || OP == OP_LSM_BWD_ND;
}

const AXES_MAX: u32 = 8u;
const STACK4: u32 = 16u;

// Mirrors `shaders::AxesParams`: the folded dimensions, innermost first (dimension 0 is the
// innermost kept, respectively reduced, dimension), extents and strides in entries.
struct AxesParams {
    kept_dims: u32,
    red_dims: u32,
    pad0: u32,
    pad1: u32,
    kept_n: array<vec4<u32>, 2>,
    kept_in: array<vec4<u32>, 2>,
    kept_out: array<vec4<u32>, 2>,
    kept_mask: array<vec4<u32>, 2>,
    red_n: array<vec4<u32>, 2>,
    red_in: array<vec4<u32>, 2>,
    red_out: array<vec4<u32>, 2>,
    red_mask: array<vec4<u32>, 2>,
}

@group(0) @binding(4) var<uniform> axes: AxesParams;
@group(0) @binding(5) var<storage, read> where_bits: array<u32>;

// Whether mask bit `bit` is set (the entry takes part).
fn present(bit: u32) -> bool {
    return ((where_bits[bit >> 5u] >> (bit & 31u)) & 1u) != 0u;
}

// An entry's f32 bits as the walk reads them: −inf where masked, or where its weight is 0.
fn walk_bits(xb: u32, bit: u32) -> u32 {
    if (MASKED && !present(bit)) {
        return F32_NEG_INF;
    }
    if (OP == OP_LSE_WEIGHTED && (where_bits[bit] & F32_ABS_MASK) == 0u) {
        return F32_NEG_INF;
    }
    return xb;
}

// The softmax / log_softmax output of a masked entry.
fn masked_out_bits() -> u32 {
    return select(F32_NEG_INF, 0u, OP == OP_SOFTMAX);
}

// Peels a dimension (of extent n and strides (input, output)) off the row-major index *rest,
// adding its offsets to *off. Straight-line code, no loop: llvmpipe and lavapipe count every loop
// iteration of an invocation against 65,535, and this runs once per entry.
fn peel(rest: ptr<function, u32>, off: ptr<function, vec3<u32>>, n: u32, input: u32,
    output: u32, bit: u32) {
    let i = *rest % n;
    *rest = *rest / n;
    *off += i * vec3<u32>(input, output, bit);
}

// (input, output, mask bit) offsets of kept position p, from entry (0, ..., 0).
fn kept_offsets(p: u32) -> vec3<u32> {
    var rest = p;
    var off = vec3<u32>(0u, 0u, 0u);
    for (var d = 0u; d < axes.kept_dims; d++) {
        let q = d >> 2u;
        let c = d & 3u;
        peel(&rest, &off, axes.kept_n[q][c], axes.kept_in[q][c], axes.kept_out[q][c],
            axes.kept_mask[q][c]);
    }
    return off;
}

// (input, output, mask bit) offsets of reduced index j, from its position's entry.
fn red_offsets(j: u32) -> vec3<u32> {
    if (axes.red_dims == 1u) {
        return j * vec3<u32>(axes.red_in[0].x, axes.red_out[0].x, axes.red_mask[0].x);
    }
    var rest = j;
    var off = vec3<u32>(0u, 0u, 0u);
    let n0 = axes.red_n[0];
    let i0 = axes.red_in[0];
    let o0 = axes.red_out[0];
    let b0 = axes.red_mask[0];
    peel(&rest, &off, n0.x, i0.x, o0.x, b0.x);
    peel(&rest, &off, n0.y, i0.y, o0.y, b0.y);
    if (axes.red_dims > 2u) {
        peel(&rest, &off, n0.z, i0.z, o0.z, b0.z);
    }
    if (axes.red_dims > 3u) {
        peel(&rest, &off, n0.w, i0.w, o0.w, b0.w);
    }
    if (axes.red_dims > 4u) {
        let n1 = axes.red_n[1];
        let i1 = axes.red_in[1];
        let o1 = axes.red_out[1];
        let b1 = axes.red_mask[1];
        peel(&rest, &off, n1.x, i1.x, o1.x, b1.x);
        if (axes.red_dims > 5u) {
            peel(&rest, &off, n1.y, i1.y, o1.y, b1.y);
        }
        if (axes.red_dims > 6u) {
            peel(&rest, &off, n1.z, i1.z, o1.z, b1.z);
        }
        if (axes.red_dims > 7u) {
            peel(&rest, &off, n1.w, i1.w, o1.w, b1.w);
        }
    }
    return off;
}

// The entry of reduced index j of the position at (input entry, mask bit) `at`, as walked.
fn walk_entry(at: vec2<u32>, j: u32) -> u32 {
    let o = red_offsets(j);
    return walk_bits(load_x(at.x + o.x), at.y + o.z);
}

// The state of reduced entries first .. end of the position whose entry (0, ...) is input entry
// at.x (mask bit at.y): `range_state`'s blocks and binary counter over the walk order.
fn axes_range_state(at: vec2<u32>, first: u32, end: u32) -> LseState {
    if (end <= first || end - first <= BLOCK) {
        var st = lse_identity();
        for (var j = first; j < end; j++) {
            st = lse_push(st, walk_entry(at, j));
        }
        return st;
    }
    var stack: array<LseState, STACK>;
    var depth = 0u;
    var blocks = 0u;
    for (var j0 = first; j0 < end; j0 += BLOCK) {
        var st = lse_identity();
        let stop = min(j0 + BLOCK, end);
        for (var j = j0; j < stop; j++) {
            st = lse_push(st, walk_entry(at, j));
        }
        blocks += 1u;
        for (var c = blocks; (c & 1u) == 0u; c = c >> 1u) {
            depth -= 1u;
            st = lse_combine(stack[depth], st);
        }
        stack[depth] = st;
        depth += 1u;
    }
    var total = lse_identity();
    for (var d = depth; d > 0u; d--) {
        total = lse_combine(stack[d - 1u], total);
    }
    return total;
}

// The max of a weighted walk's state as bits (NaN, +inf, or −inf for no entry with b ≠ 0), as
// the row family's parts give it.
fn max_bits(st: LseState) -> u32 {
    if ((st.flags & (FLAG_NAN | FLAG_POS_INF)) != 0u || (st.flags & FLAG_NONEMPTY) == 0u) {
        return lse_result_bits(st);
    }
    return bitcast<u32>(st.m);
}

// The term a sum walk adds for reduced index j of the position at (input entry, second-input
// entry) `at`: the weighted op's signed term b·e^(x − hib), or a backward's g p (softmax) or g
// (log_softmax) as a sum of one value.
fn term_at(at: vec2<u32>, hib: u32, j: u32) -> SumState {
    let o = red_offsets(j);
    let second = where_bits[at.y + o.z];
    if (OP == OP_LSE_WEIGHTED) {
        return signed_term(load_x(at.x + o.x), second, hib);
    }
    var v = second;
    if (OP == OP_SM_BWD_ND) {
        v = xmul(load_x(at.x + o.x), second);
    }
    return sum_push(sum_identity(), v, 0.0);
}

// The sum of the terms (`term_at`) of reduced entries first .. end: `axes_range_state`'s
// blocks and binary counter, with the sum monoid.
fn axes_term_state(at: vec2<u32>, hib: u32, first: u32, end: u32) -> SumState {
    if (end <= first || end - first <= BLOCK) {
        var st = sum_identity();
        for (var j = first; j < end; j++) {
            st = sum_combine(st, term_at(at, hib, j));
        }
        return st;
    }
    var stack: array<SumState, STACK>;
    var depth = 0u;
    var blocks = 0u;
    for (var j0 = first; j0 < end; j0 += BLOCK) {
        var st = sum_identity();
        let stop = min(j0 + BLOCK, end);
        for (var j = j0; j < stop; j++) {
            st = sum_combine(st, term_at(at, hib, j));
        }
        blocks += 1u;
        for (var c = blocks; (c & 1u) == 0u; c = c >> 1u) {
            depth -= 1u;
            st = sum_combine(stack[depth], st);
        }
        stack[depth] = st;
        depth += 1u;
    }
    var total = sum_identity();
    for (var d = depth; d > 0u; d--) {
        total = sum_combine(stack[d - 1u], total);
    }
    return total;
}

// Writes a weighted result: the log at output entry `at`, the sign params.state_base after it.
fn write_weighted(hib: u32, sum: SumState, at: u32) {
    let res = weighted_result(hib, sum);
    out_store(at, res.x);
    out_store(at + params.state_base, res.y);
}

// Writes dx at entries first .. end of the position at (input, output, g) `at`, from its sum's
// total (bits; unused by logsumexp's backward).
fn axes_grad_write(at: vec3<u32>, sum: u32, first: u32, end: u32) {
    for (var j = first; j < end; j++) {
        let o = red_offsets(j);
        let xb = load_x(at.x + o.x);
        let gb = where_bits[at.z + o.z];
        var bits: u32;
        if (OP == OP_LSE_BWD_ND) {
            bits = lse_backward_bits(xb, gb, where_bits[at.z + o.z + params.state_base]);
        } else if (OP == OP_SM_BWD_ND) {
            bits = softmax_backward_bits(xb, gb, sum);
        } else {
            bits = log_softmax_backward_bits(xb, gb, sum);
        }
        out_store(at.y + o.y, bits);
    }
}

// A position's dx, whole (one segment).
fn axes_grad_finish(at: vec3<u32>) {
    var sum = 0u;
    if (OP != OP_LSE_BWD_ND) {
        sum = sum_total_bits(axes_term_state(at.xz, 0u, 0u, params.cols));
    }
    axes_grad_write(at, sum, 0u, params.cols);
}

// A stored backward sum (in a `StoredState`'s fields).
fn load_sum(i: u32) -> SumState {
    let v = states[i];
    return SumState(v.m, v.s, v.flags);
}

fn store_sum(i: u32, st: SumState) {
    states[i] = StoredState(st.s, st.w, st.flags);
}

// Item `item` of a dispatch over `units` positions (or quads of positions) and params.segs
// segments: (unit in the dispatch, segment, first entry, end). Neighbouring items are
// neighbouring units of one segment, so that the invocations a CPU adapter runs one after the
// other walk the same rows of memory (the same pages) rather than each a column of its own.
fn axes_segment(item: u32, units: u32) -> vec4<u32> {
    let p = item % units;
    let s = params.seg_base + item / units;
    let start = s * params.seg_len;
    return vec4<u32>(p, s, start, min(start + params.seg_len, params.cols));
}

// Writes entries first .. end of a position (input entry, output entry, mask bit `at`) from
// its final state: softmax (OP 1) or log_softmax (OP 2).
fn axes_write(st: LseState, at: vec3<u32>, first: u32, end: u32) {
    let denom = 1.0 + st.s;
    let l1p = ld_log1p(st.s);
    for (var j = first; j < end; j++) {
        let off = red_offsets(j);
        var bits = op_bits(st, denom, l1p, load_x(at.x + off.x));
        if (MASKED && !present(at.z + off.z)) {
            bits = masked_out_bits();
        }
        out_store(at.y + off.y, bits);
    }
}

// Where position p's entry (0, ...) is: (input entry, output entry, mask bit) in the windows.
fn position_at(p: u32) -> vec3<u32> {
    return vec3<u32>(params.in_offset, params.out_offset, 0u) + kept_offsets(p);
}

// Writes a result's log-sum-exp parts: m at output entry `at`, log1p(s) params.state_base after
// it; (NaN, 0), (+inf, 0), (−inf, 0) for a NaN, a +inf, or no entry (as `write_reduced`).
fn write_parts(st: LseState, at: u32) {
    if ((st.flags & (FLAG_NAN | FLAG_POS_INF)) != 0u || (st.flags & FLAG_NONEMPTY) == 0u) {
        out_store(at, lse_result_bits(st));
        out_store(at + params.state_base, 0u);
    } else {
        out_store(at, bitcast<u32>(st.m));
        out_store(at + params.state_base, bitcast<u32>(ld_log1p(st.s)));
    }
}

// A position's whole output from its final state.
fn axes_finish(st: LseState, at: vec3<u32>) {
    if (OP == OP_LSE_PARTS) {
        write_parts(st, at.y);
    } else if (OP == OP_LSE_WEIGHTED) {
        let hib = max_bits(st);
        write_weighted(hib, axes_term_state(at.xz, hib, 0u, params.cols), at.y);
    } else if (OP == OP_LOGSUMEXP) {
        out_store(at.y, lse_result_bits(st));
    } else {
        axes_write(st, at, 0u, params.cols);
    }
}

// One invocation per position, all of its entries (one segment).
@compute @workgroup_size(WG)
fn axes_thread(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    for (var p = wg_linear(wid, nwg) * WG + lid; p < params.rows; p += total) {
        let at = position_at(params.row_base + p);
        if (is_backward()) {
            axes_grad_finish(at);
        } else {
            axes_finish(axes_range_state(at.xz, 0u, params.cols), at);
        }
    }
}

// One invocation per (position, segment): the segment's state into `states`.
@compute @workgroup_size(WG)
fn axes_partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    for (var item = wg_linear(wid, nwg) * WG + lid; item < params.rows * params.segs; item += total) {
        let g = axes_segment(item, params.rows);
        let pos = params.row_base + g.x;
        if (is_backward()) {
            let st = axes_term_state(position_at(pos).xz, 0u, g.z, g.w);
            store_sum(pos * params.seg_total + g.y, st);
        } else {
            let st = axes_range_state(position_at(pos).xz, g.z, g.w);
            store_state(pos * params.seg_total + g.y, st);
        }
    }
}

// One invocation per position: its segments' states combined in order; the logsumexp written,
// or the final state stored for `axes_apply`.
@compute @workgroup_size(WG)
fn axes_combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    for (var p = wg_linear(wid, nwg) * WG + lid; p < params.rows; p += total) {
        let pos = params.row_base + p;
        let first = pos * params.seg_total;
        if (is_backward()) {
            var sum = load_sum(first);
            for (var k = 1u; k < params.seg_total; k++) {
                sum = sum_combine(sum, load_sum(first + k));
            }
            store_sum(params.final_base + pos, sum);
            continue;
        }
        var st = load_state(first);
        for (var k = 1u; k < params.seg_total; k++) {
            st = lse_combine(st, load_state(first + k));
        }
        if (OP == OP_LOGSUMEXP) {
            out_store(position_at(pos).y, lse_result_bits(st));
        } else if (OP == OP_LSE_PARTS) {
            write_parts(st, position_at(pos).y);
        } else {
            store_state(params.final_base + pos, st);
        }
    }
}

// One invocation per (position, segment): the segment's softmax / log_softmax entries.
@compute @workgroup_size(WG)
fn axes_apply(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    for (var item = wg_linear(wid, nwg) * WG + lid; item < params.rows * params.segs; item += total) {
        let g = axes_segment(item, params.rows);
        let pos = params.row_base + g.x;
        if (is_backward()) {
            var sum = 0u;
            if (OP != OP_LSE_BWD_ND) {
                sum = sum_total_bits(load_sum(params.final_base + pos));
            }
            axes_grad_write(position_at(pos), sum, g.z, g.w);
        } else {
            axes_write(load_state(params.final_base + pos), position_at(pos), g.z, g.w);
        }
    }
}

// One invocation per (position, segment): SENTINEL over the output entries the op writes there
// (logsumexp: the position's value, from segment 0).
@compute @workgroup_size(WG)
fn axes_fill(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    for (var item = wg_linear(wid, nwg) * WG + lid; item < params.rows * params.segs; item += total) {
        let g = axes_segment(item, params.rows);
        let out_base = position_at(params.row_base + g.x).y;
        if (OP == OP_LOGSUMEXP || OP == OP_LSE_WEIGHTED || OP == OP_LSE_PARTS) {
            if (g.y == 0u) {
                out_store(out_base, SENTINEL);
                if (OP != OP_LOGSUMEXP) {
                    out_store(out_base + params.state_base, SENTINEL);
                }
            }
        } else {
            for (var j = g.z; j < g.w; j++) {
                out_store(out_base + red_offsets(j).y, SENTINEL);
            }
        }
    }
}

// Weighted, split: one invocation per (position, segment): the segment's signed terms summed,
// from the position's max (its final state, `axes_combine`), into `states`.
@compute @workgroup_size(WG)
fn axes_terms(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    for (var item = wg_linear(wid, nwg) * WG + lid; item < params.rows * params.segs; item += total) {
        let g = axes_segment(item, params.rows);
        let pos = params.row_base + g.x;
        let hib = max_bits(load_state(params.final_base + pos));
        let st = axes_term_state(position_at(pos).xz, hib, g.z, g.w);
        states[pos * params.seg_total + g.y] = StoredState(st.s, st.w, st.flags);
    }
}

// Weighted, split: one invocation per position: its segments' sums combined in order, then the
// log and the sign written.
@compute @workgroup_size(WG)
fn axes_weighted_finish(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    for (var p = wg_linear(wid, nwg) * WG + lid; p < params.rows; p += total) {
        let pos = params.row_base + p;
        let first = pos * params.seg_total;
        var v = states[first];
        var st = SumState(v.m, v.s, v.flags);
        for (var k = 1u; k < params.seg_total; k++) {
            v = states[first + k];
            st = sum_combine(st, SumState(v.m, v.s, v.flags));
        }
        write_weighted(max_bits(load_state(params.final_base + pos)), st, position_at(pos).y);
    }
}
