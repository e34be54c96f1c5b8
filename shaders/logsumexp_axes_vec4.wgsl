// The N-d entry points of logsumexp_axes.wgsl with four neighbouring positions per invocation,
// read as one 16-byte word per reduced entry: on software adapters each lane's load is an
// instruction of its own, so a word brings four entries for one. Follows logsumexp_axes.wgsl in
// a module whose input is logsumexp_vec4.wgsl's. The host uses them where the innermost kept
// dimension has input stride 1 and a multiple of 4 positions, every other input stride is a
// multiple of 4, the input is f32 and starts on a 16-byte word of its window.
//
// Each of the four positions keeps its own state chain with `range_state`'s blocks and binary
// counter, so its bits are those of `axes_thread` and `axes_partial`. The `_oct` entry points at
// the end take eight such quads an invocation, for CPU adapters.

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

// A quad's results from its final states: the parts or the log-sum-exps at its output entries.
fn quad_results(st: Quad, out_base: u32) {
    let step = axes.kept_out[0].x;
    if (OP == OP_LSE_PARTS) {
        write_parts(st.a, out_base);
        write_parts(st.b, out_base + step);
        write_parts(st.c, out_base + 2u * step);
        write_parts(st.d, out_base + 3u * step);
    } else {
        out_store(out_base, lse_result_bits(st.a));
        out_store(out_base + step, lse_result_bits(st.b));
        out_store(out_base + 2u * step, lse_result_bits(st.c));
        out_store(out_base + 3u * step, lse_result_bits(st.d));
    }
}

// One quad's states of one segment into `states`, if it is real.
fn quad_store(st: Quad, pos: u32, seg: u32, real: bool) {
    if (real) {
        let slot = pos * params.seg_total + seg;
        store_state(slot, st.a);
        store_state(slot + params.seg_total, st.b);
        store_state(slot + 2u * params.seg_total, st.c);
        store_state(slot + 3u * params.seg_total, st.d);
    }
}

fn quad_load(pos: u32) -> Quad {
    let f = params.final_base + pos;
    return Quad(load_state(f), load_state(f + 1u), load_state(f + 2u), load_state(f + 3u));
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
        if (OP == OP_LSE_PARTS || OP == OP_LOGSUMEXP) {
            quad_results(st, out_base);
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
        quad_store(st, pos, g.y, true);
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
        axes_write4(quad_load(pos), position_at(pos), g.z, g.w);
    }
}

// ---------------------------------------------------------------------------------------------
// Eight quads an invocation, for CPU adapters (the host picks these where the vec4 kernels
// apply, one reduced dimension and no mask, on a CPU adapter).
//
// A CPU adapter runs a subgroup's lanes as one SIMD thread, invocation group after invocation
// group, and each step down a column is a cache and TLB miss of its own. With a quad an
// invocation, a step of 8 lanes reads 128 bytes of a row; here unit u (lane l = u % 8 of group
// g = u / 8) owns quads 64 g + l + 8 k, k = 0 .. 7, so a step reads 8 words a lane, 1 KiB of one
// row, and a column's page is visited once for eight times the bytes. Each quad keeps its own
// chain with `range_state`'s blocks and binary counter, so the bits are the quad kernels'.

struct Oct {
    q0: Quad,
    q1: Quad,
    q2: Quad,
    q3: Quad,
    q4: Quad,
    q5: Quad,
    q6: Quad,
    q7: Quad,
}

fn oct_identity() -> Oct {
    let i = quad_identity();
    return Oct(i, i, i, i, i, i, i, i);
}

fn oct_combine(x: Oct, y: Oct) -> Oct {
    return Oct(quad_combine(x.q0, y.q0), quad_combine(x.q1, y.q1), quad_combine(x.q2, y.q2),
        quad_combine(x.q3, y.q3), quad_combine(x.q4, y.q4), quad_combine(x.q5, y.q5),
        quad_combine(x.q6, y.q6), quad_combine(x.q7, y.q7));
}

// The quads of a unit: where each lies (`position_at` of its first position; a quad past the
// batch reads the last real one's and writes nothing), its first position, and how many are
// real.
struct OctAt {
    at: array<vec3<u32>, 8>,
    pos: array<u32, 8>,
    n: u32,
}

// Units of a batch of `quads` quads: 8 a group of 64 quads, fewer in a last, partial group.
fn oct_units(quads: u32) -> u32 {
    return (quads / 64u) * 8u + min(quads % 64u, 8u);
}

fn oct_at(unit: u32, quads: u32) -> OctAt {
    let q0 = (unit / 8u) * 64u + unit % 8u;
    var o: OctAt;
    o.n = min((quads - q0 + 7u) / 8u, 8u);
    let p0 = params.row_base + 4u * q0;
    let last = p0 + 32u * (o.n - 1u);
    // Written out: an array indexed by a loop variable lives in memory on CPU adapters.
    o.pos[0] = p0;
    o.pos[1] = min(p0 + 32u, last);
    o.pos[2] = min(p0 + 64u, last);
    o.pos[3] = min(p0 + 96u, last);
    o.pos[4] = min(p0 + 128u, last);
    o.pos[5] = min(p0 + 160u, last);
    o.pos[6] = min(p0 + 192u, last);
    o.pos[7] = min(p0 + 224u, last);
    o.at[0] = position_at(o.pos[0]);
    o.at[1] = position_at(o.pos[1]);
    o.at[2] = position_at(o.pos[2]);
    o.at[3] = position_at(o.pos[3]);
    o.at[4] = position_at(o.pos[4]);
    o.at[5] = position_at(o.pos[5]);
    o.at[6] = position_at(o.pos[6]);
    o.at[7] = position_at(o.pos[7]);
    return o;
}

// The states of entries j0 .. stop of the unit's quads, pushed in order: a row's eight words
// loaded before any is used.
fn oct_block(o: OctAt, j0: u32, stop: u32) -> Oct {
    let sw = axes.red_in[0].x >> 2u;
    let w0 = o.at[0].x >> 2u;
    let w1 = o.at[1].x >> 2u;
    let w2 = o.at[2].x >> 2u;
    let w3 = o.at[3].x >> 2u;
    let w4 = o.at[4].x >> 2u;
    let w5 = o.at[5].x >> 2u;
    let w6 = o.at[6].x >> 2u;
    let w7 = o.at[7].x >> 2u;
    var st = oct_identity();
    for (var j = j0; j < stop; j++) {
        let r = j * sw;
        let a0 = input[w0 + r];
        let a1 = input[w1 + r];
        let a2 = input[w2 + r];
        let a3 = input[w3 + r];
        let a4 = input[w4 + r];
        let a5 = input[w5 + r];
        let a6 = input[w6 + r];
        let a7 = input[w7 + r];
        st.q0 = quad_push(st.q0, a0);
        st.q1 = quad_push(st.q1, a1);
        st.q2 = quad_push(st.q2, a2);
        st.q3 = quad_push(st.q3, a3);
        st.q4 = quad_push(st.q4, a4);
        st.q5 = quad_push(st.q5, a5);
        st.q6 = quad_push(st.q6, a6);
        st.q7 = quad_push(st.q7, a7);
    }
    return st;
}

// `axes_range_state4` of the unit's eight quads at once, with `range_state`'s binary counter
// over the block states: level k holds the tree of 2^k blocks that bit k of the block count
// stands for. The levels are variables of their own, not an array: an array indexed by a
// variable lives in memory on CPU adapters (a gather or a scatter per lane and value, and its
// zeroing per invocation), which cost a third of the time of a segment of 512 entries on
// lavapipe. Four levels count up to 15 blocks: the host gives these kernels segments of at most
// OCT_SEG_MAX entries (src/logsumexp/axes.rs).
const OCT_SEG_MAX: u32 = 960u;

fn oct_range_state(o: OctAt, first: u32, end: u32) -> Oct {
    if (end <= first || end - first <= BLOCK) {
        if (end <= first) {
            return oct_identity();
        }
        return oct_block(o, first, end);
    }
    var l0 = oct_identity();
    var l1 = oct_identity();
    var l2 = oct_identity();
    var l3 = oct_identity();
    var blocks = 0u;
    for (var j0 = first; j0 < end; j0 += BLOCK) {
        // Block number `blocks` combines with the levels of the count's lowest set bits and
        // takes the first free one.
        var t = oct_block(o, j0, min(j0 + BLOCK, end));
        let c = blocks;
        blocks += 1u;
        if ((c & 1u) == 0u) {
            l0 = t;
            continue;
        }
        t = oct_combine(l0, t);
        if ((c & 2u) == 0u) {
            l1 = t;
            continue;
        }
        t = oct_combine(l1, t);
        if ((c & 4u) == 0u) {
            l2 = t;
            continue;
        }
        t = oct_combine(l2, t);
        l3 = t;
    }
    // Newest (lowest level) first, as `range_state` empties its stack.
    var total = oct_identity();
    if ((blocks & 1u) != 0u) {
        total = oct_combine(l0, total);
    }
    if ((blocks & 2u) != 0u) {
        total = oct_combine(l1, total);
    }
    if ((blocks & 4u) != 0u) {
        total = oct_combine(l2, total);
    }
    if ((blocks & 8u) != 0u) {
        total = oct_combine(l3, total);
    }
    return total;
}

// A quad's divisor and log1p(s) for the softmax / log_softmax entries.
struct QuadFinal {
    st: Quad,
    denom: vec4<f32>,
    l1p: vec4<f32>,
}

fn quad_final(st: Quad) -> QuadFinal {
    return QuadFinal(st, vec4<f32>(1.0 + st.a.s, 1.0 + st.b.s, 1.0 + st.c.s, 1.0 + st.d.s),
        vec4<f32>(ld_log1p(st.a.s), ld_log1p(st.b.s), ld_log1p(st.c.s), ld_log1p(st.d.s)));
}

fn oct_write_quad(f: QuadFinal, w: vec4<u32>, at: u32, real: bool) {
    if (real) {
        write_quad(f.st, f.denom, f.l1p, w, at, axes.kept_out[0].x);
    }
}

// `axes_write4` of the unit's eight quads at once: entries first .. end, a row's eight words
// loaded before any is written.
fn oct_write(st: Oct, o: OctAt, first: u32, end: u32) {
    let f0 = quad_final(st.q0);
    let f1 = quad_final(st.q1);
    let f2 = quad_final(st.q2);
    let f3 = quad_final(st.q3);
    let f4 = quad_final(st.q4);
    let f5 = quad_final(st.q5);
    let f6 = quad_final(st.q6);
    let f7 = quad_final(st.q7);
    let sw = axes.red_in[0].x >> 2u;
    let so = axes.red_out[0].x;
    for (var j = first; j < end; j++) {
        let r = j * sw;
        let a0 = input[(o.at[0].x >> 2u) + r];
        let a1 = input[(o.at[1].x >> 2u) + r];
        let a2 = input[(o.at[2].x >> 2u) + r];
        let a3 = input[(o.at[3].x >> 2u) + r];
        let a4 = input[(o.at[4].x >> 2u) + r];
        let a5 = input[(o.at[5].x >> 2u) + r];
        let a6 = input[(o.at[6].x >> 2u) + r];
        let a7 = input[(o.at[7].x >> 2u) + r];
        let q = j * so;
        oct_write_quad(f0, a0, o.at[0].y + q, true);
        oct_write_quad(f1, a1, o.at[1].y + q, o.n > 1u);
        oct_write_quad(f2, a2, o.at[2].y + q, o.n > 2u);
        oct_write_quad(f3, a3, o.at[3].y + q, o.n > 3u);
        oct_write_quad(f4, a4, o.at[4].y + q, o.n > 4u);
        oct_write_quad(f5, a5, o.at[5].y + q, o.n > 5u);
        oct_write_quad(f6, a6, o.at[6].y + q, o.n > 6u);
        oct_write_quad(f7, a7, o.at[7].y + q, o.n > 7u);
    }
}

// `axes_thread_vec4` a unit (eight quads) an invocation.
@compute @workgroup_size(WG)
fn axes_thread_oct(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    let quads = params.rows / 4u;
    for (var u = wg_linear(wid, nwg) * WG + lid; u < oct_units(quads); u += total) {
        let o = oct_at(u, quads);
        let st = oct_range_state(o, 0u, params.cols);
        if (OP == OP_LSE_PARTS || OP == OP_LOGSUMEXP) {
            quad_results(st.q0, o.at[0].y);
            if (o.n > 1u) {
                quad_results(st.q1, o.at[1].y);
            }
            if (o.n > 2u) {
                quad_results(st.q2, o.at[2].y);
            }
            if (o.n > 3u) {
                quad_results(st.q3, o.at[3].y);
            }
            if (o.n > 4u) {
                quad_results(st.q4, o.at[4].y);
            }
            if (o.n > 5u) {
                quad_results(st.q5, o.at[5].y);
            }
            if (o.n > 6u) {
                quad_results(st.q6, o.at[6].y);
            }
            if (o.n > 7u) {
                quad_results(st.q7, o.at[7].y);
            }
        } else {
            oct_write(st, o, 0u, params.cols);
        }
    }
}

// `axes_partial_vec4` a unit an invocation.
@compute @workgroup_size(WG)
fn axes_partial_oct(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    let quads = params.rows / 4u;
    let units = oct_units(quads);
    for (var item = wg_linear(wid, nwg) * WG + lid; item < units * params.segs; item += total) {
        let g = axes_segment(item, units);
        let o = oct_at(g.x, quads);
        let st = oct_range_state(o, g.z, g.w);
        quad_store(st.q0, o.pos[0], g.y, true);
        quad_store(st.q1, o.pos[1], g.y, o.n > 1u);
        quad_store(st.q2, o.pos[2], g.y, o.n > 2u);
        quad_store(st.q3, o.pos[3], g.y, o.n > 3u);
        quad_store(st.q4, o.pos[4], g.y, o.n > 4u);
        quad_store(st.q5, o.pos[5], g.y, o.n > 5u);
        quad_store(st.q6, o.pos[6], g.y, o.n > 6u);
        quad_store(st.q7, o.pos[7], g.y, o.n > 7u);
    }
}

// `axes_apply_vec4` a unit an invocation.
@compute @workgroup_size(WG)
fn axes_apply_oct(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    let quads = params.rows / 4u;
    let units = oct_units(quads);
    for (var item = wg_linear(wid, nwg) * WG + lid; item < units * params.segs; item += total) {
        let g = axes_segment(item, units);
        let o = oct_at(g.x, quads);
        let st = Oct(quad_load(o.pos[0]), quad_load(o.pos[1]), quad_load(o.pos[2]),
            quad_load(o.pos[3]), quad_load(o.pos[4]), quad_load(o.pos[5]), quad_load(o.pos[6]),
            quad_load(o.pos[7]));
        oct_write(st, o, g.z, g.w);
    }
}
