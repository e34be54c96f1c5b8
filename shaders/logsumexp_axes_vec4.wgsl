// The N-d entry points of logsumexp_axes.wgsl with four neighbouring positions per invocation,
// read as one 16-byte word per reduced entry: on software adapters each lane's load is an
// instruction of its own, so a word brings four entries for one. Follows logsumexp_axes.wgsl in
// a module whose input is logsumexp_vec4.wgsl's. The host uses them where the innermost kept
// dimension has input stride 1 and a multiple of 4 positions, every other input stride is a
// multiple of 4, the input is f32 and starts on a 16-byte word of its window.
//
// Each of the four positions keeps its own state chain with `range_state`'s blocks and binary
// counter, so its bits are those of `axes_thread` and `axes_partial`.

// Four states, one per position of a word (four variables, not an array: an array indexed by a
// loop variable lives in memory on CPU adapters, a gather and a scatter per access).
struct Quad {
    a: LseState,
    b: LseState,
    c: LseState,
    d: LseState,
}

fn quad_identity() -> Quad {
    return Quad(lse_identity(), lse_identity(), lse_identity(), lse_identity());
}

fn quad_push(q: Quad, w: vec4<u32>) -> Quad {
    return Quad(lse_push(q.a, w.x), lse_push(q.b, w.y), lse_push(q.c, w.z), lse_push(q.d, w.w));
}

// A word of four positions as walked: entries masked (mask bits bit, bit + step, ...) as −inf.
fn walk_word(w: vec4<u32>, bit: u32) -> vec4<u32> {
    if (!MASKED) {
        return w;
    }
    let step = axes.kept_mask[0].x;
    return vec4<u32>(walk_bits(w.x, bit), walk_bits(w.y, bit + step),
        walk_bits(w.z, bit + 2u * step), walk_bits(w.w, bit + 3u * step));
}

fn quad_combine(x: Quad, y: Quad) -> Quad {
    return Quad(lse_combine(x.a, y.a), lse_combine(x.b, y.b), lse_combine(x.c, y.c),
        lse_combine(x.d, y.d));
}

// Words loaded at once down a column: on a CPU adapter each step down a column is a cache (and
// often a TLB) miss of its own, so eight are put in flight before any is used.
const AHEAD: u32 = 8u;

// The states of entries j0 .. stop (at most BLOCK) of positions 4q .. 4q + 3 (input word
// `word`), pushed in order. One reduced dimension, `sw` words apart: AHEAD words loaded at a time
// (past `stop`, the last word again). Several: a word at a time, each placed by `red_offsets`.
// (Two loops rather than a branch per load: a CPU adapter runs both sides of a branch.)
fn block_state4(word: u32, bit: u32, j0: u32, stop: u32) -> Quad {
    var st = quad_identity();
    if (MASKED || axes.red_dims != 1u) {
        for (var j = j0; j < stop; j++) {
            let o = red_offsets(j);
            st = quad_push(st, walk_word(input[word + (o.x >> 2u)], bit + o.z));
        }
        return st;
    }
    let sw = axes.red_in[0].x >> 2u;
    let last = stop - 1u;
    for (var j = j0; j < stop; j += AHEAD) {
        let w0 = input[word + j * sw];
        let w1 = input[word + min(j + 1u, last) * sw];
        let w2 = input[word + min(j + 2u, last) * sw];
        let w3 = input[word + min(j + 3u, last) * sw];
        let w4 = input[word + min(j + 4u, last) * sw];
        let w5 = input[word + min(j + 5u, last) * sw];
        let w6 = input[word + min(j + 6u, last) * sw];
        let w7 = input[word + min(j + 7u, last) * sw];
        st = quad_push(st, w0);
        if (j + 1u < stop) {
            st = quad_push(st, w1);
        }
        if (j + 2u < stop) {
            st = quad_push(st, w2);
        }
        if (j + 3u < stop) {
            st = quad_push(st, w3);
        }
        if (j + 4u < stop) {
            st = quad_push(st, w4);
        }
        if (j + 5u < stop) {
            st = quad_push(st, w5);
        }
        if (j + 6u < stop) {
            st = quad_push(st, w6);
        }
        if (j + 7u < stop) {
            st = quad_push(st, w7);
        }
    }
    return st;
}

// The states of reduced entries first .. end of positions 4q .. 4q + 3, whose entry (0, ...) is
// input word `word`: each position's own chain of `range_state`'s blocks and binary counter.
fn axes_range_state4(word: u32, bit: u32, first: u32, end: u32) -> Quad {
    if (end <= first || end - first <= BLOCK) {
        // One block: its states are the range's, as in `range_state`.
        if (end <= first) {
            return quad_identity();
        }
        return block_state4(word, bit, first, end);
    }
    var stack: array<Quad, STACK4>;
    var depth = 0u;
    var blocks = 0u;
    for (var j0 = first; j0 < end; j0 += BLOCK) {
        var st = block_state4(word, bit, j0, min(j0 + BLOCK, end));
        blocks += 1u;
        for (var c = blocks; (c & 1u) == 0u; c = c >> 1u) {
            depth -= 1u;
            st = quad_combine(stack[depth], st);
        }
        stack[depth] = st;
        depth += 1u;
    }
    var total = quad_identity();
    for (var d = depth; d > 0u; d--) {
        total = quad_combine(stack[d - 1u], total);
    }
    return total;
}

// Writes entries first .. end of four positions (input entry in_base, output entry out_base of
// the first; the others the innermost kept dimension's output stride apart) from their final
// states: softmax (OP 1) or log_softmax (OP 2).
fn axes_write4(st: Quad, at: vec3<u32>, first: u32, end: u32) {
    let in_base = at.x;
    let out_base = at.y;
    let step = axes.kept_out[0].x;
    let denom = vec4<f32>(1.0 + st.a.s, 1.0 + st.b.s, 1.0 + st.c.s, 1.0 + st.d.s);
    let l1p = vec4<f32>(ld_log1p(st.a.s), ld_log1p(st.b.s), ld_log1p(st.c.s), ld_log1p(st.d.s));
    let word = in_base >> 2u;
    if (MASKED || axes.red_dims != 1u) {
        let bstep = axes.kept_mask[0].x;
        for (var j = first; j < end; j++) {
            let o = red_offsets(j);
            let w = input[word + (o.x >> 2u)];
            let o4 = out_base + o.y;
            write_quad(st, denom, l1p, w, o4, step);
            if (MASKED) {
                let b = at.z + o.z;
                if (!present(b)) {
                    out_store(o4, masked_out_bits());
                }
                if (!present(b + bstep)) {
                    out_store(o4 + step, masked_out_bits());
                }
                if (!present(b + 2u * bstep)) {
                    out_store(o4 + 2u * step, masked_out_bits());
                }
                if (!present(b + 3u * bstep)) {
                    out_store(o4 + 3u * step, masked_out_bits());
                }
            }
        }
        return;
    }
    let sw = axes.red_in[0].x >> 2u;
    let so = axes.red_out[0].x;
    let last = end - 1u;
    for (var j = first; j < end; j += 4u) {
        let w0 = input[word + j * sw];
        let w1 = input[word + min(j + 1u, last) * sw];
        let w2 = input[word + min(j + 2u, last) * sw];
        let w3 = input[word + min(j + 3u, last) * sw];
        write_quad(st, denom, l1p, w0, out_base + j * so, step);
        if (j + 1u < end) {
            write_quad(st, denom, l1p, w1, out_base + (j + 1u) * so, step);
        }
        if (j + 2u < end) {
            write_quad(st, denom, l1p, w2, out_base + (j + 2u) * so, step);
        }
        if (j + 3u < end) {
            write_quad(st, denom, l1p, w3, out_base + (j + 3u) * so, step);
        }
    }
}

// The softmax / log_softmax entries of one word at output entry `at` (its four positions `step`
// apart).
fn write_quad(st: Quad, denom: vec4<f32>, l1p: vec4<f32>, w: vec4<u32>, at: u32, step: u32) {
    out_store(at, op_bits(st.a, denom.x, l1p.x, w.x));
    out_store(at + step, op_bits(st.b, denom.y, l1p.y, w.y));
    out_store(at + 2u * step, op_bits(st.c, denom.z, l1p.z, w.z));
    out_store(at + 3u * step, op_bits(st.d, denom.w, l1p.w, w.w));
}

// One invocation per four positions, all of their entries.
@compute @workgroup_size(WG)
fn axes_thread_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    for (var q = wg_linear(wid, nwg) * WG + lid; 4u * q < params.rows; q += total) {
        let at = position_at(params.row_base + 4u * q);
        let out_base = at.y;
        let st = axes_range_state4(at.x >> 2u, at.z, 0u, params.cols);
        if (OP == OP_LSE_PARTS) {
            let step = axes.kept_out[0].x;
            write_parts(st.a, out_base);
            write_parts(st.b, out_base + step);
            write_parts(st.c, out_base + 2u * step);
            write_parts(st.d, out_base + 3u * step);
        } else if (OP == OP_LOGSUMEXP) {
            let step = axes.kept_out[0].x;
            out_store(out_base, lse_result_bits(st.a));
            out_store(out_base + step, lse_result_bits(st.b));
            out_store(out_base + 2u * step, lse_result_bits(st.c));
            out_store(out_base + 3u * step, lse_result_bits(st.d));
        } else {
            axes_write4(st, at, 0u, params.cols);
        }
    }
}

// One invocation per (four positions, segment): the segment's four states into `states`.
@compute @workgroup_size(WG)
fn axes_partial_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    let quads = params.rows / 4u;
    for (var item = wg_linear(wid, nwg) * WG + lid; item < quads * params.segs; item += total) {
        let g = axes_segment(item, quads);
        let pos = params.row_base + 4u * g.x;
        let at = position_at(pos);
        let st = axes_range_state4(at.x >> 2u, at.z, g.z, g.w);
        let slot = pos * params.seg_total + g.y;
        store_state(slot, st.a);
        store_state(slot + params.seg_total, st.b);
        store_state(slot + 2u * params.seg_total, st.c);
        store_state(slot + 3u * params.seg_total, st.d);
    }
}

// One invocation per (four positions, segment): the segment's softmax / log_softmax entries from
// the positions' final states.
@compute @workgroup_size(WG)
fn axes_apply_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    let quads = params.rows / 4u;
    for (var item = wg_linear(wid, nwg) * WG + lid; item < quads * params.segs; item += total) {
        let g = axes_segment(item, quads);
        let pos = params.row_base + 4u * g.x;
        let f = params.final_base + pos;
        let st = Quad(load_state(f), load_state(f + 1u), load_state(f + 2u), load_state(f + 3u));
        axes_write4(st, position_at(pos), g.z, g.w);
    }
}
