// The log-sum-exp family: row-wise logsumexp, softmax and log_softmax of a row-major matrix.
// Needs common.wgsl before it. Mirror: src/reference/logsumexp.rs. Host: src/logsumexp.rs.
//
// Every entry point is specialised by two override constants:
//   OP  0 = logsumexp (one value per row), 1 = softmax, 2 = log_softmax (one value per entry),
//       3 = logsumexp parts (m, log1p(s)) (two values per row);
//   WG  the workgroup size (a power of two, at most WG_MAX).
// Strategies, chosen by the host from the shape and the adapter:
//   row_thread     one invocation per row (short rows);
//   row_workgroup  one workgroup per row, fan-in-8 tree in workgroup memory (long rows);
//   row_subgroup   one subgroup per row, no barrier at all (logsumexp_subgroup.wgsl);
//   split_partial / split_combine / split_apply: a row split into segments whose partial states
//                  are combined in a second pass (few rows, or a row longer than one binding);
//                  split_partial_thread / split_apply_thread do a segment per invocation instead
//                  of per workgroup (software adapters).
// Inputs are read as u32 bit patterns and outputs written as bit patterns (see common.wgsl).

override OP: u32 = 0u;
override WG: u32 = 64u;
// The input holds IEEE binary16 entries, two to a word (the first in the low half), decoded
// exactly by `load_x`; outputs stay f32. Offsets and strides then count f16 entries.
override IN_F16: bool = false;
// The output holds binary16 entries (softmax and log_softmax only), two to a word, rounded to
// nearest even from the f32 result. Rows start on whole words (even out_offset and out_stride,
// even segment lengths: the host checks), and each invocation writes whole words — a pair of
// entries — so no two invocations share a word; a word's entry past the row's end is kept.
override OUT_F16: bool = false;
// SENTINEL as f16 (a NaN payload no kernel writes): `fill_sentinel`'s value for f16 outputs.
const SENTINEL_F16: u32 = 0x7d5au;
// The row length, when the host specialises a thread-per-row pipeline for short rows (0: read
// params.cols): the loops over a row then have a constant trip count, which compilers unroll.
override ROW_COLS: u32 = 0u;
const WG_MAX: u32 = 256u;
const OP_LOGSUMEXP: u32 = 0u;
const OP_SOFTMAX: u32 = 1u;
// log_softmax: what the entry points do when OP is neither of the others.
const OP_LOG_SOFTMAX: u32 = 2u;
// Two values per row, (m, log1p(s)): `RowFn::LogsumexpParts`.
const OP_LSE_PARTS: u32 = 3u;

// Mirrors `shaders::Params` (src/shaders.rs); offsets and strides count f32 elements inside the
// bound windows.
struct Params {
    rows: u32,
    cols: u32,
    in_offset: u32,
    in_stride: u32,
    out_offset: u32,
    out_stride: u32,
    seg_len: u32,
    segs: u32,
    seg_base: u32,
    seg_total: u32,
    state_base: u32,
    row_base: u32,
    final_base: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

// Mirrors `reference::logsumexp::LseState` as stored between passes.
struct StoredState {
    m: f32,
    s: f32,
    flags: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// Binding 1, `input`, and its reader `load_x(i)` (entry i of the bound input as f32 bits) come
// from the file after this one: logsumexp_words.wgsl (u32 words) or logsumexp_vec4.wgsl (vec4
// words, for 16-byte loads). Every function here reads the input through `load_x`.
// Binding 2, `output`, and its accessors `out_load(i)` / `out_store(i, bits)` (output word i)
// and `out_store_word(i, w)` (words i .. i + 3, i a multiple of 4) come from
// logsumexp_out.wgsl (u32 words) or logsumexp_out_vec4.wgsl (vec4 words, for 16-byte stores).
@group(0) @binding(3) var<storage, read_write> states: array<StoredState>;

var<workgroup> wg_m: array<f32, WG_MAX>;
var<workgroup> wg_s: array<f32, WG_MAX>;
var<workgroup> wg_f: array<u32, WG_MAX>;

// Workgroups past 65,535 fold into a 2-D grid.
fn wg_linear(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

fn load_state(i: u32) -> LseState {
    let v = states[i];
    return LseState(v.m, v.s, v.flags);
}

fn store_state(i: u32, st: LseState) {
    states[i] = StoredState(st.m, st.s, st.flags);
}

// One (row, segment) work item of a split-row dispatch: the row within the dispatch, the segment
// within the dispatch, and the segment's column range [start, end).
struct Segment {
    r: u32,
    sl: u32,
    start: u32,
    end: u32,
}

fn segment(item: u32) -> Segment {
    let r = item / params.segs;
    let sl = item % params.segs;
    let start = (params.seg_base + sl) * params.seg_len;
    return Segment(r, sl, start, min(start + params.seg_len, params.cols));
}

// Element offsets (in the bound windows) of column 0 of dispatch row r: the windows of a split
// dispatch start at column seg_base * seg_len.
fn split_in_base(r: u32) -> u32 {
    return params.in_offset + r * params.in_stride - params.seg_base * params.seg_len;
}

fn split_out_base(r: u32) -> u32 {
    return params.out_offset + r * params.out_stride - params.seg_base * params.seg_len;
}

// Where a segment's partial state, and a dispatch row's final state, live in `states`.
fn partial_slot(g: Segment) -> u32 {
    return params.state_base + g.r * params.seg_total + g.sl;
}

fn final_slot(r: u32) -> u32 {
    return params.final_base + params.row_base + r;
}

// Loops here never run more than 65,535 times: llvmpipe and lavapipe silently stop a loop there.
// Long ranges are walked as an outer loop over blocks of BLOCK steps and an inner loop.
const BLOCK: u32 = 64u;
const STACK: u32 = 32u;

// The state of the entries first, first + step, ... (< end) of the input at base: blocks of
// BLOCK entries pushed in order, blocks merged pairwise by a binary counter, so rounding grows
// with BLOCK + log2(blocks) rather than with the length. Mirrors `reference::range_state`.
fn range_state(base: u32, first: u32, end: u32, step: u32) -> LseState {
    if (end <= first || end - first <= BLOCK * step) {
        // One block: its state is the range's (combining with the empty stack changes no bit),
        // without the stack, whose zeroing and indexing cost more than a short row's entries.
        var st = lse_identity();
        for (var j = first; j < end; j += step) {
            st = lse_push(st, load_x(base + j));
        }
        return st;
    }
    var stack: array<LseState, STACK>;
    var depth = 0u;
    var blocks = 0u;
    for (var j0 = first; j0 < end; j0 += BLOCK * step) {
        var st = lse_identity();
        var j = j0;
        for (var i = 0u; i < BLOCK && j < end; i++) {
            st = lse_push(st, load_x(base + j));
            j += step;
        }
        blocks += 1u;
        stack_push(&stack, &depth, blocks, st);
    }
    return stack_total(&stack, depth);
}

// Pushes block number `blocks` (counting from 1), of state st, onto a binary counter of merged
// blocks: equal-sized runs merge pairwise, so rounding grows with log2 of the block count.
// Mirrors `reference::range_state`.
fn stack_push(stack: ptr<function, array<LseState, STACK>>, depth: ptr<function, u32>,
    blocks: u32, st: LseState) {
    var merged = st;
    for (var c = blocks; (c & 1u) == 0u; c = c >> 1u) {
        *depth -= 1u;
        merged = lse_combine((*stack)[*depth], merged);
    }
    (*stack)[*depth] = merged;
    *depth += 1u;
}

// The state of every block on the counter, the newest last.
fn stack_total(stack: ptr<function, array<LseState, STACK>>, depth: u32) -> LseState {
    var total = lse_identity();
    for (var d = depth; d > 0u; d--) {
        total = lse_combine((*stack)[d - 1u], total);
    }
    return total;
}

// The softmax (OP 1) or log_softmax (OP 2) bits of an entry (its f32 bits) of a row with state
// st; denom = 1 + st.s, l1p = ld_log1p(st.s).
fn op_bits(st: LseState, denom: f32, l1p: f32, bits: u32) -> u32 {
    if (OP == OP_SOFTMAX) {
        return softmax_bits(st, denom, bits);
    }
    return log_softmax_bits(st, l1p, bits);
}

// The softmax (OP 1) or log_softmax (OP 2) bits of input entry j of a row with state st.
fn entry_bits(st: LseState, denom: f32, l1p: f32, j: u32) -> u32 {
    return op_bits(st, denom, l1p, load_x(j));
}

// Writes the entries of [start, end) of one row, given the row's final state: entries
// start + lane, start + lane + step, ... for f32 outputs; for f16 outputs the pairs of entries
// (2q, 2q + 1) for q = start / 2 + lane, start / 2 + lane + step, ... (start even).
fn write_entries(st: LseState, in_base: u32, out_base: u32, start: u32, lane: u32, end: u32,
    step: u32) {
    let denom = 1.0 + st.s;
    let l1p = ld_log1p(st.s);
    if (OUT_F16) {
        for (var q0 = start / 2u + lane; 2u * q0 < end; q0 += BLOCK * step) {
            var q = q0;
            for (var i = 0u; i < BLOCK && 2u * q < end; i++) {
                let j = 2u * q;
                let at = (out_base + j) >> 1u;
                let lo = f32_to_f16_bits(entry_bits(st, denom, l1p, in_base + j));
                var hi = out_load(at) >> 16u;
                if (j + 1u < end) {
                    hi = f32_to_f16_bits(entry_bits(st, denom, l1p, in_base + j + 1u));
                }
                out_store(at, lo | (hi << 16u));
                q += step;
            }
        }
        return;
    }
    for (var j0 = start + lane; j0 < end; j0 += BLOCK * step) {
        var j = j0;
        for (var i = 0u; i < BLOCK && j < end; i++) {
            out_store(out_base + j, entry_bits(st, denom, l1p, in_base + j));
            j += step;
        }
    }
}

// Writes a reduced row's value(s) at output row `row`: its logsumexp, or its parts.
fn write_reduced(st: LseState, row: u32) {
    if (OP == OP_LSE_PARTS) {
        let at = params.out_offset + 2u * row;
        let bits = lse_result_bits(st);
        if ((st.flags & (FLAG_NAN | FLAG_POS_INF)) != 0u || (st.flags & FLAG_NONEMPTY) == 0u) {
            out_store(at, bits);
            out_store(at + 1u, 0u);
        } else {
            out_store(at, bitcast<u32>(st.m));
            out_store(at + 1u, bitcast<u32>(ld_log1p(st.s)));
        }
        return;
    }
    out_store(params.out_offset + row, lse_result_bits(st));
}

// Writes a whole row's output (of cols entries): its logsumexp (by the invocation with
// first == 0), or its softmax / log_softmax entries (every step-th from first).
fn write_row(st: LseState, row: u32, cols: u32, first: u32, step: u32) {
    if (OP == OP_LOGSUMEXP || OP == OP_LSE_PARTS) {
        if (first == 0u) {
            write_reduced(st, row);
        }
        return;
    }
    write_entries(st, params.in_offset + row * params.in_stride,
        params.out_offset + row * params.out_stride, 0u, first, cols, step);
}

// Combines one state per invocation into the workgroup's state, returned to every invocation.
// Fan-in-8 tree in fixed order: log8(WG) + 2 barriers.
fn workgroup_reduce(st: LseState, lid: u32) -> LseState {
    wg_m[lid] = st.m;
    wg_s[lid] = st.s;
    wg_f[lid] = st.flags;
    workgroupBarrier();
    var stride = 1u;
    loop {
        if (stride >= WG) {
            break;
        }
        let span = min(stride * 8u, WG);
        if ((lid & (span - 1u)) == 0u) {
            var acc = LseState(wg_m[lid], wg_s[lid], wg_f[lid]);
            for (var k = lid + stride; k < lid + span; k += stride) {
                acc = lse_combine(acc, LseState(wg_m[k], wg_s[k], wg_f[k]));
            }
            wg_m[lid] = acc.m;
            wg_s[lid] = acc.s;
            wg_f[lid] = acc.flags;
        }
        workgroupBarrier();
        stride = span;
    }
    let total = LseState(wg_m[0], wg_s[0], wg_f[0]);
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn row_thread(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    let cols = select(params.cols, ROW_COLS, ROW_COLS != 0u);
    for (var row = wg_linear(wid, nwg) * WG + lid; row < params.rows; row += total) {
        let st = range_state(params.in_offset + row * params.in_stride, 0u, cols, 1u);
        write_row(st, row, cols, 0u, 1u);
    }
}

@compute @workgroup_size(WG)
fn row_workgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let groups = nwg.x * nwg.y;
    for (var row = wg_linear(wid, nwg); row < params.rows; row += groups) {
        var st = range_state(params.in_offset + row * params.in_stride, lid, params.cols, WG);
        st = workgroup_reduce(st, lid);
        write_row(st, row, params.cols, lid, WG);
    }
}

// Pass 1 of split rows: one workgroup per (row, segment) of this dispatch; writes the segment's
// state to states[state_base + row * seg_total + segment - seg_base].
@compute @workgroup_size(WG)
fn split_partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let groups = nwg.x * nwg.y;
    for (var item = wg_linear(wid, nwg); item < params.rows * params.segs; item += groups) {
        let g = segment(item);
        var st = range_state(split_in_base(g.r), g.start + lid, g.end, WG);
        st = workgroup_reduce(st, lid);
        if (lid == 0u) {
            store_state(partial_slot(g), st);
        }
    }
}

// Pass 2 of split rows: one invocation per row of this dispatch (rows row_base ..) combines the
// row's seg_total states in order, then writes the logsumexp (OP 0) or the row's final state at
// states[final_base + row_base + row].
@compute @workgroup_size(WG)
fn split_combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    for (var row = wg_linear(wid, nwg) * WG + lid; row < params.rows; row += total) {
        let first = params.state_base + row * params.seg_total;
        var st = load_state(first);
        for (var k = 1u; k < params.seg_total; k++) {
            st = lse_combine(st, load_state(first + k));
        }
        if (OP == OP_LOGSUMEXP || OP == OP_LSE_PARTS) {
            write_reduced(st, row);
        } else {
            store_state(final_slot(row), st);
        }
    }
}

// Pass 3 of split rows (softmax, log_softmax): one workgroup per (row, segment) writes the
// segment's entries from the row's final state.
@compute @workgroup_size(WG)
fn split_apply(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let groups = nwg.x * nwg.y;
    for (var item = wg_linear(wid, nwg); item < params.rows * params.segs; item += groups) {
        let g = segment(item);
        let st = load_state(final_slot(g.r));
        write_entries(st, split_in_base(g.r), split_out_base(g.r), g.start, lid, g.end, WG);
    }
}

// Split rows on software adapters, where workgroup barriers are dear: one invocation per
// (row, segment), no barrier. Same states and indices as split_partial / split_apply.
@compute @workgroup_size(WG)
fn split_partial_thread(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    for (var item = wg_linear(wid, nwg) * WG + lid; item < params.rows * params.segs; item += total) {
        let g = segment(item);
        let st = range_state(split_in_base(g.r), g.start, g.end, 1u);
        store_state(partial_slot(g), st);
    }
}

@compute @workgroup_size(WG)
fn split_apply_thread(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    for (var item = wg_linear(wid, nwg) * WG + lid; item < params.rows * params.segs; item += total) {
        let g = segment(item);
        let st = load_state(final_slot(g.r));
        write_entries(st, split_in_base(g.r), split_out_base(g.r), g.start, 0u, g.end, 1u);
    }
}

// Writes SENTINEL over the entries a pass will write (rows x cols at out_offset, out_stride), so
// that an entry a kernel failed to write shows.
@compute @workgroup_size(WG)
fn fill_sentinel(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    if (OUT_F16) {
        // Whole words: each row's pairs of entries, a word's entry past the row's end kept.
        let pairs = (params.cols + 1u) / 2u;
        for (var i = wg_linear(wid, nwg) * WG + lid; i < params.rows * pairs; i += total) {
            let j = 2u * (i % pairs);
            let at = (params.out_offset + (i / pairs) * params.out_stride + j) >> 1u;
            let hi = select(out_load(at) >> 16u, SENTINEL_F16, j + 1u < params.cols);
            out_store(at, SENTINEL_F16 | (hi << 16u));
        }
        return;
    }
    let n = params.rows * params.cols;
    let dense = params.out_stride == params.cols;
    for (var i = wg_linear(wid, nwg) * WG + lid; i < n; i += total) {
        // Integer division is slow on some hardware (and scalarised on CPU adapters): only
        // strided outputs pay for it.
        var at = i;
        if (!dense) {
            at = (i / params.cols) * params.out_stride + i % params.cols;
        }
        out_store(params.out_offset + at, SENTINEL);
    }
}
