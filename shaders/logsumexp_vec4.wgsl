// The log-sum-exp family with the input read as 16-byte vec4 words: each load brings four
// entries, so an invocation keeps several loads in flight — what GPUs need to reach their memory
// bandwidth — and a row that fits in the invocations' registers is read from memory once, also
// by softmax and log_softmax. Follows logsumexp.wgsl in its modules (in place of
// logsumexp_words.wgsl). f32 entries; the host uses these entry points only where each row
// starts on a vec4 word and has a multiple of 4 entries (in_offset, in_stride and cols multiples
// of 4, the window a multiple of 16 bytes).
//
//   row_thread_vec4     one invocation per row, a word at a time (no tile; VEC unused);
//   row_workgroup_vec4  one workgroup per row (logsumexp_vec4_subgroup.wgsl has the subgroup
//                       form, several rows per subgroup for short rows);
//   VEC                 vec4 words per invocation per tile (at most VEC_MAX): a tile of a row is
//                       VEC words per invocation, loaded before any is used; rows longer than one
//                       tile are walked tile by tile (and read again to write their entries).

@group(0) @binding(1) var<storage, read> input: array<vec4<u32>>;

override VEC: u32 = 1u;
const VEC_MAX: u32 = 16u;

// Entry i of the bound input as f32 bits (the scalar accessor logsumexp.wgsl's functions use).
fn load_x(i: u32) -> u32 {
    if (IN_F16) {
        return f16_entry_bits(input[i >> 3u][(i >> 1u) & 3u], i);
    }
    return input[i >> 2u][i & 3u];
}

// Loads the words first + k * step (k < VEC, those below end) of the row whose word 0 is input
// word `base` into `tile`, all before any is used.
fn load_tile(tile: ptr<function, array<vec4<u32>, VEC_MAX>>, base: u32, first: u32, end: u32,
    step: u32) {
    for (var k = 0u; k < VEC; k++) {
        let q = first + k * step;
        if (q < end) {
            (*tile)[k] = input[base + q];
        }
    }
}

// Loads a tile (`load_tile`), then returns its state. Each component (entries 4q, 4q + 1, ...)
// is pushed into its own state, four independent chains, combined as (0 + 1) + (2 + 3).
fn tile_state(tile: ptr<function, array<vec4<u32>, VEC_MAX>>, base: u32, first: u32, end: u32,
    step: u32) -> LseState {
    load_tile(tile, base, first, end, step);
    var s0 = lse_identity();
    var s1 = lse_identity();
    var s2 = lse_identity();
    var s3 = lse_identity();
    for (var k = 0u; k < VEC; k++) {
        if (first + k * step < end) {
            let w = (*tile)[k];
            s0 = lse_push(s0, w.x);
            s1 = lse_push(s1, w.y);
            s2 = lse_push(s2, w.z);
            s3 = lse_push(s3, w.w);
        }
    }
    return lse_combine(lse_combine(s0, s1), lse_combine(s2, s3));
}

// Words a row has: cols / 4, a constant where the host specialises the pipeline for the row
// length (ROW_COLS, as for row_thread), so that the walk over the tiles has a constant trip
// count too and compilers unroll it (the host does so for rows of at most 16 tiles).
fn row_words() -> u32 {
    return select(params.cols, ROW_COLS, ROW_COLS != 0u) / 4u;
}

// The state of a row's words first, first + step, ... (< end, end = the row's `words` or 0 for
// no row): tile 0 (kept in `tile`), then the later tiles combined in order.
fn row_state_vec4(tile: ptr<function, array<vec4<u32>, VEC_MAX>>, base: u32, first: u32,
    end: u32, step: u32, words: u32) -> LseState {
    var st = tile_state(tile, base, first, end, step);
    var later: array<vec4<u32>, VEC_MAX>;
    for (var t0 = VEC * step; t0 < words; t0 += VEC * step) {
        st = lse_combine(st, tile_state(&later, base, t0 + first, end, step));
    }
    return st;
}

// Writes one word's four entries at output entry `at`.
fn write_word(st: LseState, denom: f32, l1p: f32, w: vec4<u32>, at: u32) {
    out_store_word(at, vec4<u32>(op_bits(st, denom, l1p, w.x), op_bits(st, denom, l1p, w.y),
        op_bits(st, denom, l1p, w.z), op_bits(st, denom, l1p, w.w)));
}

// Writes a row's output from its final state: the reduced value(s) (by the invocation with
// first == 0), or the softmax / log_softmax entries of its words first, first + step, ... —
// from `tile` when the row is one tile, else read again tile by tile.
fn write_row_vec4(st: LseState, tile: ptr<function, array<vec4<u32>, VEC_MAX>>, row: u32,
    base: u32, first: u32, end: u32, step: u32) {
    if (OP == OP_LOGSUMEXP || OP == OP_LSE_PARTS) {
        if (first == 0u) {
            write_reduced(st, row);
        }
        return;
    }
    let denom = 1.0 + st.s;
    let l1p = ld_log1p(st.s);
    let out_base = params.out_offset + row * params.out_stride;
    if (end <= VEC * step) {
        for (var k = 0u; k < VEC; k++) {
            let q = first + k * step;
            if (q < end) {
                write_word(st, denom, l1p, (*tile)[k], out_base + 4u * q);
            }
        }
        return;
    }
    for (var q0 = first; q0 < end; q0 += VEC * step) {
        load_tile(tile, base, q0, end, step);
        for (var k = 0u; k < VEC; k++) {
            let q = q0 + k * step;
            if (q < end) {
                write_word(st, denom, l1p, (*tile)[k], out_base + 4u * q);
            }
        }
    }
}

// The f32 bits of the four f16 entries of two words (entries 2i, 2i + 1 of word i).
fn f16_quad_bits(p: vec2<u32>) -> vec4<u32> {
    return vec4<u32>(f16_entry_bits(p.x, 0u), f16_entry_bits(p.x, 1u), f16_entry_bits(p.y, 0u),
        f16_entry_bits(p.y, 1u));
}

// The state of words [first, end) of the row whose word 0 is input word `base`, a word at a time
// into four state chains (entry j into chain j mod 4), combined as (0 + 1) + (2 + 3).
fn words_state(base: u32, first: u32, end: u32) -> LseState {
    var s0 = lse_identity();
    var s1 = lse_identity();
    var s2 = lse_identity();
    var s3 = lse_identity();
    for (var q = first; q < end; q++) {
        let w = input[base + q];
        if (IN_F16) {
            let lo = f16_quad_bits(w.xy);
            let hi = f16_quad_bits(w.zw);
            s0 = lse_push(s0, lo.x);
            s1 = lse_push(s1, lo.y);
            s2 = lse_push(s2, lo.z);
            s3 = lse_push(s3, lo.w);
            s0 = lse_push(s0, hi.x);
            s1 = lse_push(s1, hi.y);
            s2 = lse_push(s2, hi.z);
            s3 = lse_push(s3, hi.w);
        } else {
            s0 = lse_push(s0, w.x);
            s1 = lse_push(s1, w.y);
            s2 = lse_push(s2, w.z);
            s3 = lse_push(s3, w.w);
        }
    }
    return lse_combine(lse_combine(s0, s1), lse_combine(s2, s3));
}

// One invocation per row, a vec4 word at a time into four state chains (`words_state`), with no
// tile: software adapters, where each lane's load is an instruction of its own (a 16-byte load
// brings four f32 entries, or eight f16 ones, for one); a tile of words, as the other entry
// points load, measured slower there. Rows of more than 4 × BLOCK entries are walked in blocks
// of 4 × BLOCK entries merged on a binary counter (`stack_push`), as `range_state` walks a
// scalar row, so that rounding grows with the block and log2 of the block count, not with the
// row: a row of 65,536 entries in four chains of 16,384 broke the softmax bound. With f16
// entries (rows of a multiple of 8 that start on 16 bytes) the entries meet the chains and the
// blocks in the same order as the same values in f32: the same bits.
@compute @workgroup_size(WG)
fn row_thread_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total = nwg.x * nwg.y * WG;
    // Entries a 16-byte word holds, and words a block of 4 × BLOCK entries.
    let per_word = select(4u, 8u, IN_F16);
    let block = select(BLOCK, BLOCK / 2u, IN_F16);
    let words = select(params.cols, ROW_COLS, ROW_COLS != 0u) / per_word;
    for (var row = wg_linear(wid, nwg) * WG + lid; row < params.rows; row += total) {
        let base = (params.in_offset + row * params.in_stride) / per_word;
        var st: LseState;
        if (words <= block) {
            st = words_state(base, 0u, words);
        } else {
            var stack: array<LseState, STACK>;
            var depth = 0u;
            var blocks = 0u;
            for (var q0 = 0u; q0 < words; q0 += block) {
                blocks += 1u;
                stack_push(&stack, &depth, blocks, words_state(base, q0, min(q0 + block, words)));
            }
            st = stack_total(&stack, depth);
        }
        if (OP == OP_LOGSUMEXP || OP == OP_LSE_PARTS) {
            write_reduced(st, row);
        } else {
            let denom = 1.0 + st.s;
            let l1p = ld_log1p(st.s);
            let out_base = params.out_offset + row * params.out_stride;
            for (var q = 0u; q < words; q++) {
                let w = input[base + q];
                if (IN_F16) {
                    write_word(st, denom, l1p, f16_quad_bits(w.xy), out_base + 8u * q);
                    write_word(st, denom, l1p, f16_quad_bits(w.zw), out_base + 8u * q + 4u);
                } else {
                    write_word(st, denom, l1p, w, out_base + 4u * q);
                }
            }
        }
    }
}

@compute @workgroup_size(WG)
fn row_workgroup_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let groups = nwg.x * nwg.y;
    let words = row_words();
    for (var row = wg_linear(wid, nwg); row < params.rows; row += groups) {
        let base = (params.in_offset + row * params.in_stride) / 4u;
        var tile: array<vec4<u32>, VEC_MAX>;
        var st = row_state_vec4(&tile, base, lid, words, WG, words);
        st = workgroup_reduce(st, lid);
        write_row_vec4(st, &tile, row, base, lid, words, WG);
    }
}
