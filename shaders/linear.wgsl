// Fused linear cross-entropy: the loss of a classifier head, h_i · Wᵀ + b followed by
// cross-entropy, without the tokens × vocabulary logits. Follows common.wgsl.
//
// A workgroup owns a tile of LT rows of one operand (tokens, or vocabulary rows for the weight
// gradient) whose loads are the same for every lane, and its LW lanes walk the other operand's
// rows; each logit is a dot product over `dims` in one fixed order (`dots_hw` and `dots_wh` do
// the same operations on the same operands, so a logit has the same bits in every kernel). No
// buffer ever holds more than one row of logits per token: the forward folds each logit into
// the token's log-sum-exp state (the monoid of common.wgsl) as soon as it is computed, and the
// backward recomputes logits tile by tile from the stored log-sum-exp (d_weight always; d_hidden
// with label smoothing — otherwise `lce_forward_hidden` sums it in the forward's walk).
//
// Work is split over dispatches along the walked operand (a vocabulary or token chunk per
// dispatch): the host bounds each chunk so that no invocation runs more than 16,000 loop
// iterations (Mesa's 65,535-iteration limit) and, on GL, so that a dispatch carries bounded work.
// A token's state, and every gradient entry, is carried across those dispatches in a buffer of
// its own size and merged in chunk order: the results do not depend on the chunking's timing.
// Mirror: src/reference/linear.rs (the materialised formula in f64).

override OP: u32 = 0u;
// Every entry point runs LW lanes (the host sets WG to LW; the workgroup arrays are sized by it).
override WG: u32 = 64u;
// Binding 1 and 2 hold IEEE binary16 entries, two to a word (the first in the low half).
override IN_F16: bool = false;

// Rows of the tile whose loads are shared by the lanes, and the lanes of a workgroup (WG).
const LT: u32 = 8u;
const LW: u32 = 64u;
// Rows of the walked operand a lane takes at once (four adjacent rows: each load of the tile's
// rows serves four dot products), and the rows of a block of the workgroup's walk.
const RL: u32 = 4u;
const LB: u32 = 256u;
// Words of a token's state: [m, s, flags, target logit, smoothing sum (s, w, flags) — then the
// gradient's coefficients A, B —, lse].
const SW: u32 = 8u;

// Bits of `LinParams.mode`.
const MODE_LCE_BIAS: u32 = 1u;
const MODE_LCE_WEIGHTED: u32 = 2u;
const MODE_LCE_SMOOTH: u32 = 4u;
const MODE_LCE_SOFTCAP: u32 = 8u;
const MODE_LCE_MEAN: u32 = 16u;
const MODE_LCE_NONE: u32 = 32u;
const MODE_LCE_FIRST: u32 = 64u;
// The materialised path's gradient products: binding 5 holds dloss/dlogits (tokens × vocab),
// read in place of the recomputed entries.
const MODE_LCE_DENSE: u32 = 128u;
// Gradient filtering (Cut Cross-Entropy's): a block's gradient products are skipped where no
// entry of it matters (every p below FILTER_P, no target among its rows). Never with label
// smoothing, whose entries are never negligible.
const MODE_LCE_FILTER: u32 = 256u;
const FILTER_P: f32 = 5.9604645e-8;
// The logits are given: binding 1 holds them (tokens × vocab, `dims` = vocab) and no product is
// formed (`given_quad` replaces `dots_hw4`); binding 2 is not read. The plain cross-entropy
// with the z-loss and the soft cap.
const MODE_LCE_GIVEN: u32 = 512u;

struct LinParams {
    tokens: u32,
    dims: u32,
    vocab: u32,
    // The first tile of this dispatch (tiles of LT tokens, or of LT vocabulary rows).
    tile_base: u32,
    // The walked operand's chunk of this dispatch: [begin, end).
    begin: u32,
    end: u32,
    mode: u32,
    ignore: i32,
    cap: f32,
    inv_cap: f32,
    // 1 − label_smoothing, label_smoothing / vocab, the summed class weights (vocab without).
    one_minus_eps: f32,
    eps_over_c: f32,
    w_sum: f32,
    z_loss: f32,
    // Word offset of the output (the loss, logits or a partial) in binding 7: added, wrapping,
    // to an entry's index in the whole output, so a window that starts past the output's first
    // row takes the negated start.
    out_off: u32,
    // Tiles in this dispatch.
    tiles: u32,
    // Offsets added (wrapping) to an index of the whole hidden states or weight, in the
    // binding's elements, for the window this dispatch binds.
    h_off: u32,
    w_off: u32,
    // The same for the materialised dloss/dlogits of MODE_LCE_DENSE (binding 5).
    c_off: u32,
    // The last token and vocabulary row the windows hold: rows past them are clamped to them.
    t_last: u32,
    v_last: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> params: LinParams;
// Bindings 1 (hidden) and 2 (weight) and their readers (`dots_hw`, `dots_wh`, `hidden_block`,
// `weight_block`) are in linear_words.wgsl (4-byte words: any dims, f16) or linear_vec4.wgsl
// (16-byte words: f32, dims a multiple of 4).
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> targets: array<i32>;
// Class weights (vocab), or with MODE_LCE_DENSE the materialised dloss/dlogits.
@group(0) @binding(5) var<storage, read> class_weight: array<f32>;
// Per-token states (SW words each), then the mean's denominator, then d_bias (vocab words).
@group(0) @binding(6) var<storage, read_write> state: array<u32>;
@group(0) @binding(7) var<storage, read_write> out: array<u32>;

// The gradient entries of a block (LT rows of LB) in the backward; the lanes' states in the
// forward's merge (sh_a, sh_b: max and sum; sh_c: the state's flags | the smoothing sum's << 8;
// sh_d: the smoothing sum). 14 KiB in all.
var<workgroup> sh_a: array<f32, 2048>;
var<workgroup> sh_b: array<f32, 512>;
var<workgroup> sh_c: array<u32, 512>;
var<workgroup> sh_d: array<f32, 512>;

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

fn has(bit: u32) -> bool {
    return (params.mode & bit) != 0u;
}

// Eight dot products at once: lo holds rows 0–3 of the tile, hi rows 4–7.
struct Tile {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// Four tiles: the walked rows w0 .. w0 + 3 of a lane.
struct Quad {
    a: Tile,
    b: Tile,
    c: Tile,
    d: Tile,
}

fn quad_at(q: Quad, c: u32) -> Tile {
    if (c == 0u) {
        return q.a;
    }
    if (c == 1u) {
        return q.b;
    }
    if (c == 2u) {
        return q.c;
    }
    return q.d;
}

fn zero_quad() -> Quad {
    let z = Tile(vec4<f32>(0.0), vec4<f32>(0.0));
    return Quad(z, z, z, z);
}

fn tile_at(t: Tile, r: u32) -> f32 {
    if (r < 4u) {
        return t.lo[r];
    }
    return t.hi[r - 4u];
}

// First words of rows r0 .. r0 + 7 of a matrix of rows of `len` words, rows past `last`
// clamped to it.
fn row_starts(r0: u32, last: u32, len: u32) -> Tile4 {
    return Tile4(
        vec4<u32>(min(r0, last), min(r0 + 1u, last), min(r0 + 2u, last), min(r0 + 3u, last)) * len,
        vec4<u32>(min(r0 + 4u, last), min(r0 + 5u, last), min(r0 + 6u, last),
            min(r0 + 7u, last)) * len,
    );
}

struct Tile4 {
    lo: vec4<u32>,
    hi: vec4<u32>,
}

// Adds `a` to the running sum at `o` of binding 7 rescaled by `s` (or writes `a` where
// `first`): `lce_forward_hidden` rescales its sums as its running maximum grows, the other
// kernels pass 1 (x · 1 is x: the same bits as a plain sum).
fn add_out(o: u32, a: f32, first: bool, s: f32) {
    let old = select(bitcast<f32>(out[o]) * s, 0.0, first);
    out[o] = bitcast<u32>(old + a);
}

fn ones() -> Tile {
    return Tile(vec4<f32>(1.0), vec4<f32>(1.0));
}

// tanh(x) = sign(x) (1 − e^−2|x|) / (1 + e^−2|x|), about 2 ulp absolute near 0, 1 ulp
// relative elsewhere; ±1 for ±inf, NaN kept.
fn ld_tanh(x: f32) -> f32 {
    let e = ld_exp_neg(-2.0 * abs(x));
    return sign(x) * ((1.0 - e) / (1.0 + e));
}

// The logit as the softmax sees it, from the dot product `acc` of vocabulary row v: plus the
// bias, then soft-capped (cap · tanh(z / cap)). Bits: infinities and NaN pass as they came.
fn logit_bits(acc: f32, v: u32) -> u32 {
    var zb = bitcast<u32>(acc);
    if (has(MODE_LCE_BIAS)) {
        zb = xadd(zb, bitcast<u32>(bias[v]));
    }
    if (has(MODE_LCE_SOFTCAP)) {
        if (is_nan_bits(zb)) {
            return F32_NAN;
        }
        if (is_inf_bits(zb)) {
            return bitcast<u32>(params.cap) | (zb & 0x80000000u);
        }
        return bitcast<u32>(params.cap * ld_tanh(bitcast<f32>(zb) * params.inv_cap));
    }
    return zb;
}

// The logits (before the bias) of tokens t0 .. t0 + 7 at rows v0 .. v0 + 3: the products, or
// with MODE_LCE_GIVEN the given entries.
fn logits_hw4(t0: u32, v0: u32) -> Quad {
    if (has(MODE_LCE_GIVEN)) {
        return given_quad(t0, v0);
    }
    return dots_hw4(t0, v0);
}

fn class_w(v: u32) -> f32 {
    if (has(MODE_LCE_WEIGHTED)) {
        return class_weight[v];
    }
    return 1.0;
}

fn load_lse(t: u32) -> LseState {
    let at = t * SW;
    return LseState(bitcast<f32>(state[at]), bitcast<f32>(state[at + 1u]), state[at + 2u]);
}

fn load_sum(t: u32) -> SumState {
    let at = t * SW + 4u;
    return SumState(bitcast<f32>(state[at]), bitcast<f32>(state[at + 1u]), state[at + 2u]);
}

// ---------------------------------------------------------------------------------------------
// Forward: each token's (max, sum) state over the vocabulary, its target's logit and, with label
// smoothing, Σ_c w_c z_c. One dispatch per vocabulary chunk [begin, end), walked in blocks of
// LB rows, four adjacent rows a lane; then the workgroup merges its lanes' states per token
// (eight groups of eight lanes, each in lane order, then the groups in order) and merges the
// result after the state the earlier chunks left.
//
// The tile's eight tokens are written out (Folded8's f0 … f7, col(quad, 0u) …) rather than
// looped over: on software adapters an array indexed in a loop that the compiler keeps lives in
// memory, each access a loop over the lanes.

struct Folded {
    st: LseState,
    ss: SumState,
}

fn folded() -> Folded {
    return Folded(lse_identity(), sum_identity());
}

// Token r's logits (before the bias) against a lane's four rows.
fn col(q: Quad, r: u32) -> vec4<f32> {
    return vec4<f32>(tile_at(q.a, r), tile_at(q.b, r), tile_at(q.c, r), tile_at(q.d, r));
}

// The target of token t, or −1 past the tokens (no row matches it).
fn target_at(t: u32) -> i32 {
    return select(-1, targets[min(t, params.tokens - 1u)], t < params.tokens);
}

// Folds logit zb (bits, as the softmax sees it) of row v into token t's state; keeps the
// target's logit.
fn push_entry(f: Folded, zb: u32, v: u32, t: u32, y: i32) -> Folded {
    var ss = f.ss;
    if (has(MODE_LCE_SMOOTH)) {
        ss = sum_push(ss, xmul(zb, bitcast<u32>(class_w(v))), 0.0);
    }
    if (i32(v) == y) {
        state[t * SW + 3u] = zb;
    }
    return Folded(lse_push(f.st, zb), ss);
}

// Folds the first n (≤ RL) of a lane's rows v0 .. into token t's state.
fn fold(f: Folded, z4: vec4<f32>, v0: u32, n: u32, t: u32, y: i32) -> Folded {
    var g = f;
    for (var c = 0u; c < n; c++) {
        g = push_entry(g, logit_bits(z4[c], v0 + c), v0 + c, t, y);
    }
    return g;
}

// Token r's lane state into the merge arrays.
fn put(r: u32, f: Folded, lid: u32) {
    let at = r * LW + lid;
    sh_a[at] = f.st.m;
    sh_b[at] = f.st.s;
    sh_c[at] = f.st.flags | (f.ss.flags << 8u);
    sh_d[at] = f.ss.s;
}

@compute @workgroup_size(LW)
fn lce_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    if (g >= params.tiles) {
        return;
    }
    let t0 = (params.tile_base + g) * LT;
    let ty = targets8(t0);
    var fs = folded8();
    let step = LB;
    // Lane l walks rows vb + 4l .. vb + 4l + 3 of each block. The walk is uniform: every lane
    // runs every block (rows past the chunk's end are computed clamped and dropped).
    for (var vb = params.begin; vb < params.end; vb += step) {
        let v0 = vb + RL * lid;
        let quad = logits_hw4(t0, v0);
        let n = min(RL, params.end - min(v0, params.end));
        fs.f0 = fold(fs.f0, col(quad, 0u), v0, n, t0, ty.lo.x);
        fs.f1 = fold(fs.f1, col(quad, 1u), v0, n, t0 + 1u, ty.lo.y);
        fs.f2 = fold(fs.f2, col(quad, 2u), v0, n, t0 + 2u, ty.lo.z);
        fs.f3 = fold(fs.f3, col(quad, 3u), v0, n, t0 + 3u, ty.lo.w);
        fs.f4 = fold(fs.f4, col(quad, 4u), v0, n, t0 + 4u, ty.hi.x);
        fs.f5 = fold(fs.f5, col(quad, 5u), v0, n, t0 + 5u, ty.hi.y);
        fs.f6 = fold(fs.f6, col(quad, 6u), v0, n, t0 + 6u, ty.hi.z);
        fs.f7 = fold(fs.f7, col(quad, 7u), v0, n, t0 + 7u, ty.hi.w);
    }
    merge8(t0, fs, lid);
}

// The targets of the tile's eight tokens (−1 past the tokens).
struct Targets8 {
    lo: vec4<i32>,
    hi: vec4<i32>,
}

fn targets8(t0: u32) -> Targets8 {
    return Targets8(
        vec4<i32>(target_at(t0), target_at(t0 + 1u), target_at(t0 + 2u), target_at(t0 + 3u)),
        vec4<i32>(target_at(t0 + 4u), target_at(t0 + 5u), target_at(t0 + 6u),
            target_at(t0 + 7u)),
    );
}

// A lane's states of the tile's eight tokens (fields, not an array: see above).
struct Folded8 {
    f0: Folded,
    f1: Folded,
    f2: Folded,
    f3: Folded,
    f4: Folded,
    f5: Folded,
    f6: Folded,
    f7: Folded,
}

fn folded8() -> Folded8 {
    let f = folded();
    return Folded8(f, f, f, f, f, f, f, f);
}

// Every lane's eight states into the merge arrays, then (after a barrier) `merge_states`.
fn merge8(t0: u32, fs: Folded8, lid: u32) {
    put(0u, fs.f0, lid);
    put(1u, fs.f1, lid);
    put(2u, fs.f2, lid);
    put(3u, fs.f3, lid);
    put(4u, fs.f4, lid);
    put(5u, fs.f5, lid);
    put(6u, fs.f6, lid);
    put(7u, fs.f7, lid);
    workgroupBarrier();
    merge_states(t0, lid);
}

// After `put` and a barrier: lane r < LT merges token t0 + r's lane states (eight groups of
// eight lanes, each in lane order, then the groups in order) after the state the earlier
// chunks left, and stores it.
fn merge_states(t0: u32, lid: u32) {
    let t = t0 + lid;
    if (lid >= LT || t >= params.tokens) {
        return;
    }
    var total = lse_identity();
    var sum = sum_identity();
    for (var q = 0u; q < 8u; q++) {
        var part = lse_identity();
        var psum = sum_identity();
        for (var j = 0u; j < 8u; j++) {
            let at = lid * LW + q * 8u + j;
            part = lse_combine(part, LseState(sh_a[at], sh_b[at], sh_c[at] & 0xffu));
            psum = sum_combine(psum, SumState(sh_d[at], 0.0, sh_c[at] >> 8u));
        }
        total = lse_combine(total, part);
        sum = sum_combine(sum, psum);
    }
    if (!has(MODE_LCE_FIRST)) {
        total = lse_combine(load_lse(t), total);
        sum = sum_combine(load_sum(t), sum);
    }
    let at = t * SW;
    state[at] = bitcast<u32>(total.m);
    state[at + 1u] = bitcast<u32>(total.s);
    state[at + 2u] = total.flags;
    state[at + 4u] = bitcast<u32>(sum.s);
    state[at + 5u] = bitcast<u32>(sum.w);
    state[at + 6u] = sum.flags;
}

// ---------------------------------------------------------------------------------------------
// Per token: lse, the loss (1 − ε) w_y (lse − z_y) + ε/C (W lse − Σ_c w_c z_c) + z_loss w_y lse²
// (ε = label_smoothing, W = Σ_c w_c; PyTorch's cross-entropy plus the z-loss), 0 for an ignored
// token. MODE_LCE_NONE writes the loss at out_off + t; otherwise the partial (loss, w_y) at slot t
// of binding 7 for the reduction levels of the likelihood module. Also leaves lse and the
// gradient's coefficients A = (1 − ε) w_y + ε/C W + 2 z_loss w_y lse and B = (1 − ε) w_y in the
// token's state (dloss/dz_c = A p_c − B [c = y] − ε/C w_c).
@compute @workgroup_size(LW)
fn lce_finish(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = group_index(wid, nwg) * LW + lid;
    if (t >= params.tokens) {
        return;
    }
    let at = t * SW;
    let lse = lse_result_bits(load_lse(t));
    let y = targets[t];
    var loss = 0u;
    var wy = 0.0;
    var coef_a = 0u;
    var coef_b = 0u;
    if (y != params.ignore) {
        wy = class_w(u32(y));
        let b = params.one_minus_eps * wy;
        loss = xmul(bitcast<u32>(b), xsub(lse, state[at + 3u]));
        var a = b;
        if (has(MODE_LCE_SMOOTH)) {
            let smooth_sum = xsub(xmul(bitcast<u32>(params.w_sum), lse), sum_total_bits(load_sum(t)));
            loss = xadd(loss, xmul(bitcast<u32>(params.eps_over_c), smooth_sum));
            a = a + params.eps_over_c * params.w_sum;
        }
        var ab = bitcast<u32>(a);
        if (params.z_loss != 0.0) {
            let zw = bitcast<u32>(params.z_loss * wy);
            loss = xadd(loss, xmul(zw, xmul(lse, lse)));
            ab = xadd(ab, xmul(bitcast<u32>(2.0 * params.z_loss * wy), lse));
        }
        coef_a = ab;
        coef_b = bitcast<u32>(b);
    }
    state[at + 4u] = coef_a;
    state[at + 5u] = coef_b;
    state[at + 7u] = lse;
    if (has(MODE_LCE_NONE)) {
        out[params.out_off + t] = loss;
        return;
    }
    let p = sum_push(sum_identity(), loss, wy);
    let o = params.out_off + 3u * t;
    out[o] = bitcast<u32>(p.s);
    out[o + 1u] = bitcast<u32>(p.w);
    out[o + 2u] = p.flags;
}

// The factor of every gradient entry: 1, or 1 / Σ w_y for the mean (the reduction levels
// left Σ w_y at word SW · tokens of the state).
fn grad_scale() -> f32 {
    if (has(MODE_LCE_MEAN)) {
        return 1.0 / bitcast<f32>(state[SW * params.tokens]);
    }
    return 1.0;
}

// What a token's gradient entries need, loaded once: lse (bits), the coefficients A and B, the
// target, and whether the token contributes (in range, not ignored).
struct Coef {
    lse: u32,
    a: f32,
    b: f32,
    y: i32,
    live: bool,
}

fn coef(t: u32) -> Coef {
    let tc = min(t, params.tokens - 1u);
    let at = tc * SW;
    let y = targets[tc];
    let live = t < params.tokens && (has(MODE_LCE_DENSE) || y != params.ignore);
    return Coef(state[at + 7u], bitcast<f32>(state[at + 4u]), bitcast<f32>(state[at + 5u]), y, live);
}

// Whether an entry of this invocation's part of the block matters (for MODE_LCE_FILTER).
var<private> kept: bool;

// Whether any lane kept an entry of the block (their flags in sh_d); always without
// MODE_LCE_FILTER. A block not needed is summed over none of its rows (a first block still
// writes its zeros).
fn block_needed() -> bool {
    if (!has(MODE_LCE_FILTER)) {
        return true;
    }
    var need = false;
    for (var l = 0u; l < LW; l++) {
        need = need || sh_d[l] != 0.0;
    }
    return need;
}

// dloss/dz of token t at vocabulary row v from the dot product `acc` (0 for a token that does
// not contribute or a row outside `inside`); with MODE_LCE_DENSE the given dloss/dlogits.
// Sets `kept` where the entry matters to the filter.
fn grad_entry(k: Coef, t: u32, v: u32, acc: f32, inside: bool, scale: f32) -> f32 {
    if (!k.live || !inside) {
        return 0.0;
    }
    if (has(MODE_LCE_DENSE)) {
        return class_weight[t * params.vocab + v + params.c_off];
    }
    let zb = logit_bits(acc, v);
    if (!is_finite_bits(k.lse) || !is_finite_bits(zb)) {
        kept = true;
        return bitcast<f32>(F32_NAN);
    }
    let p = bitcast<f32>(ld_exp(bitcast<f32>(zb) - bitcast<f32>(k.lse)));
    var g = k.a * p - params.eps_over_c * class_w(v);
    if (k.y == i32(v)) {
        g = g - k.b;
        kept = true;
    }
    if (p >= FILTER_P) {
        kept = true;
    }
    if (has(MODE_LCE_SOFTCAP)) {
        let c = bitcast<f32>(zb) * params.inv_cap;
        g = g * (1.0 - c * c);
    }
    return g * scale;
}

// The coefficients of the tile's eight tokens.
struct Coef8 {
    k0: Coef,
    k1: Coef,
    k2: Coef,
    k3: Coef,
    k4: Coef,
    k5: Coef,
    k6: Coef,
    k7: Coef,
}

fn coef8(t0: u32) -> Coef8 {
    return Coef8(coef(t0), coef(t0 + 1u), coef(t0 + 2u), coef(t0 + 3u), coef(t0 + 4u),
        coef(t0 + 5u), coef(t0 + 6u), coef(t0 + 7u));
}

// The eight tokens' gradient entries (`grad_entry`) at row v from their dot products z.
fn grad_tile(ks: Coef8, t0: u32, v: u32, z: Tile, inside: bool, scale: f32) -> Tile {
    return Tile(
        vec4<f32>(grad_entry(ks.k0, t0, v, z.lo.x, inside, scale),
            grad_entry(ks.k1, t0 + 1u, v, z.lo.y, inside, scale),
            grad_entry(ks.k2, t0 + 2u, v, z.lo.z, inside, scale),
            grad_entry(ks.k3, t0 + 3u, v, z.lo.w, inside, scale)),
        vec4<f32>(grad_entry(ks.k4, t0 + 4u, v, z.hi.x, inside, scale),
            grad_entry(ks.k5, t0 + 5u, v, z.hi.y, inside, scale),
            grad_entry(ks.k6, t0 + 6u, v, z.hi.z, inside, scale),
            grad_entry(ks.k7, t0 + 7u, v, z.hi.w, inside, scale)),
    );
}

// ---------------------------------------------------------------------------------------------
// d_hidden (binding 7, tokens × dims) over the vocabulary chunk [begin, end): for each block of
// LB rows (four adjacent rows a lane), the lanes recompute the logits of the tile's LT tokens
// and their gradient entries (into workgroup memory), then each lane owns dims of the tile's
// rows and adds Σ_{v in block} g[t, v] w[v, k] (summed from zero in row order) to the running
// d_hidden.
@compute @workgroup_size(LW)
fn lce_grad_hidden(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    if (g >= params.tiles) {
        return;
    }
    let t0 = (params.tile_base + g) * LT;
    let scale = grad_scale();
    let ks = coef8(t0);
    let step = LB;
    for (var vb = params.begin; vb < params.end; vb += step) {
        let v0 = vb + RL * lid;
        kept = false;
        var quad = zero_quad();
        if (!has(MODE_LCE_DENSE)) {
            quad = dots_hw4(t0, v0);
        }
        for (var c = 0u; c < RL; c++) {
            let v = v0 + c;
            let e = grad_tile(ks, t0, v, quad_at(quad, c), v < params.end, scale);
            let at = RL * lid + c;
            sh_a[at] = e.lo.x;
            sh_a[LB + at] = e.lo.y;
            sh_a[2u * LB + at] = e.lo.z;
            sh_a[3u * LB + at] = e.lo.w;
            sh_a[4u * LB + at] = e.hi.x;
            sh_a[5u * LB + at] = e.hi.y;
            sh_a[6u * LB + at] = e.hi.z;
            sh_a[7u * LB + at] = e.hi.w;
        }
        sh_d[lid] = select(0.0, 1.0, kept);
        workgroupBarrier();
        let n = min(LB, params.end - vb);
        let first = has(MODE_LCE_FIRST) && vb == params.begin;
        hidden_block(t0, vb, select(0u, n, block_needed()), first, lid, ones());
        workgroupBarrier();
    }
}

// ---------------------------------------------------------------------------------------------
// The forward and the d_hidden products in one walk over the vocabulary (without label
// smoothing): the backward's recomputation of the logits for d_hidden is the
// forward's computation. Each block folds the logits into the lanes' states as `lce_forward`
// does (the same states, so the same loss bits), and adds Σ_v e^{z − M} (1 − (z/cap)²) w_v
// to the token's running sum in binding 7, where M is the workgroup's running maximum of the
// token's finite logits — the sum is rescaled by e^{M_old − M} when M grows (flash attention's
// online softmax). At the end of a chunk M is the merged state's maximum, so the next chunk
// starts from it; `lce_hidden_finish` turns the sums into d_hidden once lse is known.

// No finite logit yet.
const NO_MAX: f32 = -3.4028235e38;

// Each lane's maxima of its rows' finite logits in the block for the tile's eight tokens (lo:
// tokens 0–3 at 2 · lane, hi: 4–7 at 2 · lane + 1).
var<workgroup> sh_m: array<vec4<f32>, 128>;

// Token logits z4 of a lane's rows v0 .. v0 + 3 as the softmax sees them (rows past the
// vocabulary read the last row's bias; they are dropped).
fn logits4(z4: vec4<f32>, v0: u32) -> vec4<f32> {
    let last = params.vocab - 1u;
    return vec4<f32>(
        bitcast<f32>(logit_bits(z4.x, min(v0, last))),
        bitcast<f32>(logit_bits(z4.y, min(v0 + 1u, last))),
        bitcast<f32>(logit_bits(z4.z, min(v0 + 2u, last))),
        bitcast<f32>(logit_bits(z4.w, min(v0 + 3u, last))),
    );
}

// Folds the first n of a lane's logits z (as the softmax sees them) into token t's state.
fn fold_logits(f: Folded, z: vec4<f32>, v0: u32, n: u32, t: u32, y: i32) -> Folded {
    var g = f;
    for (var c = 0u; c < n; c++) {
        g = push_entry(g, bitcast<u32>(z[c]), v0 + c, t, y);
    }
    return g;
}

fn finite_or_none(x: f32, inside: bool) -> f32 {
    return select(NO_MAX, x, inside && is_finite_bits(bitcast<u32>(x)));
}

// The maximum of the first n of z's finite entries, or NO_MAX.
fn lane_max(z: vec4<f32>, n: u32) -> f32 {
    return max(max(finite_or_none(z.x, n > 0u), finite_or_none(z.y, n > 1u)),
        max(finite_or_none(z.z, n > 2u), finite_or_none(z.w, n > 3u)));
}

// e^{x − m} (1 − (x/cap)²) for a finite x inside the chunk, else 0.
fn fold_weight(x: f32, inside: bool, m: f32) -> f32 {
    if (!inside || !is_finite_bits(bitcast<u32>(x))) {
        return 0.0;
    }
    var p = ld_exp_neg(x - m);
    if (has(MODE_LCE_SOFTCAP)) {
        let c = x * params.inv_cap;
        p = p * (1.0 - c * c);
    }
    return p;
}

// A lane's four entries of one token's row of the block in sh_a (from `at`).
fn put_weights(at: u32, z: vec4<f32>, n: u32, m: f32) {
    sh_a[at] = fold_weight(z.x, n > 0u, m);
    sh_a[at + 1u] = fold_weight(z.y, n > 1u, m);
    sh_a[at + 2u] = fold_weight(z.z, n > 2u, m);
    sh_a[at + 3u] = fold_weight(z.w, n > 3u, m);
}

// The factor a running sum relative to maximum `was` takes to be relative to `now` (0 when
// nothing was summed yet; exactly 1 when the maximum did not move).
fn rescale1(was: f32, now: f32) -> f32 {
    if (was == NO_MAX) {
        return 0.0;
    }
    return select(ld_exp_neg(was - now), 1.0, was == now);
}

fn rescale(was: vec4<f32>, now: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(rescale1(was.x, now.x), rescale1(was.y, now.y), rescale1(was.z, now.z),
        rescale1(was.w, now.w));
}

// Token t's maximum where this dispatch starts: the state's, or none in the first chunk.
fn start_max(t: u32) -> f32 {
    if (has(MODE_LCE_FIRST)) {
        return NO_MAX;
    }
    let st = load_lse(min(t, params.tokens - 1u));
    return select(NO_MAX, st.m, (st.flags & FLAG_NONEMPTY) != 0u);
}

@compute @workgroup_size(LW)
fn lce_forward_hidden(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    if (g >= params.tiles) {
        return;
    }
    let t0 = (params.tile_base + g) * LT;
    let ty = targets8(t0);
    var fs = folded8();
    var m_lo = vec4<f32>(start_max(t0), start_max(t0 + 1u), start_max(t0 + 2u),
        start_max(t0 + 3u));
    var m_hi = vec4<f32>(start_max(t0 + 4u), start_max(t0 + 5u), start_max(t0 + 6u),
        start_max(t0 + 7u));
    let step = LB;
    for (var vb = params.begin; vb < params.end; vb += step) {
        let v0 = vb + RL * lid;
        let quad = dots_hw4(t0, v0);
        let n = min(RL, params.end - min(v0, params.end));
        let z0 = logits4(col(quad, 0u), v0);
        let z1 = logits4(col(quad, 1u), v0);
        let z2 = logits4(col(quad, 2u), v0);
        let z3 = logits4(col(quad, 3u), v0);
        let z4 = logits4(col(quad, 4u), v0);
        let z5 = logits4(col(quad, 5u), v0);
        let z6 = logits4(col(quad, 6u), v0);
        let z7 = logits4(col(quad, 7u), v0);
        fs.f0 = fold_logits(fs.f0, z0, v0, n, t0, ty.lo.x);
        fs.f1 = fold_logits(fs.f1, z1, v0, n, t0 + 1u, ty.lo.y);
        fs.f2 = fold_logits(fs.f2, z2, v0, n, t0 + 2u, ty.lo.z);
        fs.f3 = fold_logits(fs.f3, z3, v0, n, t0 + 3u, ty.lo.w);
        fs.f4 = fold_logits(fs.f4, z4, v0, n, t0 + 4u, ty.hi.x);
        fs.f5 = fold_logits(fs.f5, z5, v0, n, t0 + 5u, ty.hi.y);
        fs.f6 = fold_logits(fs.f6, z6, v0, n, t0 + 6u, ty.hi.z);
        fs.f7 = fold_logits(fs.f7, z7, v0, n, t0 + 7u, ty.hi.w);
        sh_m[2u * lid] = vec4<f32>(lane_max(z0, n), lane_max(z1, n), lane_max(z2, n),
            lane_max(z3, n));
        sh_m[2u * lid + 1u] = vec4<f32>(lane_max(z4, n), lane_max(z5, n), lane_max(z6, n),
            lane_max(z7, n));
        workgroupBarrier();
        // Every lane forms the same new maxima from the same words.
        var b_lo = m_lo;
        var b_hi = m_hi;
        for (var l = 0u; l < LW; l++) {
            b_lo = max(b_lo, sh_m[2u * l]);
            b_hi = max(b_hi, sh_m[2u * l + 1u]);
        }
        let rs = Tile(rescale(m_lo, b_lo), rescale(m_hi, b_hi));
        m_lo = b_lo;
        m_hi = b_hi;
        let at = RL * lid;
        put_weights(at, z0, n, m_lo.x);
        put_weights(LB + at, z1, n, m_lo.y);
        put_weights(2u * LB + at, z2, n, m_lo.z);
        put_weights(3u * LB + at, z3, n, m_lo.w);
        put_weights(4u * LB + at, z4, n, m_hi.x);
        put_weights(5u * LB + at, z5, n, m_hi.y);
        put_weights(6u * LB + at, z6, n, m_hi.z);
        put_weights(7u * LB + at, z7, n, m_hi.w);
        workgroupBarrier();
        // The next block's writes to sh_m and sh_a follow a barrier that every lane reaches only
        // after these reads.
        let first = has(MODE_LCE_FIRST) && vb == params.begin;
        hidden_block(t0, vb, min(LB, params.end - vb), first, lid, rs);
    }
    // The merge arrays alias the block's entries that the lanes have just read.
    workgroupBarrier();
    merge8(t0, fs, lid);
}

// d_hidden from `lce_forward_hidden`'s sums (binding 7, tokens × dims, the token tiles of this
// dispatch): with U_t = Σ_v e^{z − m_t} (1 − (z/cap)²) w_v relative to the token's maximum m_t,
// d_hidden_t = s (A_t e^{m_t − lse_t} U_t − B_t (1 − (z_y/cap)²) w_y): the first term in the
// first dispatch (MODE_LCE_FIRST), the second in the dispatch whose vocabulary window [begin,
// end) holds the target's row. 0 for a token that does not contribute; NaN where its lse is
// not finite (as `grad_entry`).
@compute @workgroup_size(LW)
fn lce_hidden_finish(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    if (g >= params.tiles) {
        return;
    }
    let t0 = (params.tile_base + g) * LT;
    let scale = grad_scale();
    let d = params.dims;
    let step = LW;
    for (var r = 0u; r < LT; r++) {
        let t = t0 + r;
        if (t >= params.tokens) {
            break;
        }
        let k = coef(t);
        let fa = scale * k.a * ld_exp_neg(load_lse(t).m - bitcast<f32>(k.lse));
        var cy = 1.0;
        if (has(MODE_LCE_SOFTCAP)) {
            let c = bitcast<f32>(state[t * SW + 3u]) * params.inv_cap;
            cy = 1.0 - c * c;
        }
        let fb = scale * k.b * cy;
        let bad = k.live && !is_finite_bits(k.lse);
        let here = k.live && k.y >= i32(params.begin) && k.y < i32(params.end);
        for (var kk = lid; kk < d; kk += step) {
            let o = params.out_off + t * d + kk;
            var x = bitcast<f32>(out[o]);
            if (has(MODE_LCE_FIRST)) {
                x = select(0.0, fa * x, k.live);
                x = select(x, bitcast<f32>(F32_NAN), bad);
            }
            if (here) {
                x = x - fb * weight_entry(u32(k.y), kk);
            }
            out[o] = bitcast<u32>(x);
        }
    }
}

// d_weight (binding 7, vocab × dims) and d_bias (the state's last vocab words) over the token
// chunk [begin, end): the transpose of `lce_grad_hidden`. The tile is LT vocabulary rows; the
// lanes recompute the logits of LB tokens at a time (four a lane), then each lane owns dims of
// the tile's rows and adds Σ_{t in block} g[t, v] h[t, k]; lanes 0–7 add Σ_t g[t, v] to d_bias.
@compute @workgroup_size(LW)
fn lce_grad_weight(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    if (g >= params.tiles) {
        return;
    }
    let v0 = (params.tile_base + g) * LT;
    let scale = grad_scale();
    let step = LB;
    let bias_at = SW * params.tokens + 1u;
    let vocab = params.vocab;
    for (var tb = params.begin; tb < params.end; tb += step) {
        let tq = tb + RL * lid;
        kept = false;
        var quad = zero_quad();
        if (!has(MODE_LCE_DENSE)) {
            quad = dots_wh4(v0, tq);
        }
        for (var c = 0u; c < RL; c++) {
            let t = tq + c;
            var k = coef(t);
            k.live = k.live && t < params.end;
            let z = quad_at(quad, c);
            let at = RL * lid + c;
            sh_a[at] = grad_entry(k, t, v0, z.lo.x, v0 < vocab, scale);
            sh_a[LB + at] = grad_entry(k, t, v0 + 1u, z.lo.y, v0 + 1u < vocab, scale);
            sh_a[2u * LB + at] = grad_entry(k, t, v0 + 2u, z.lo.z, v0 + 2u < vocab, scale);
            sh_a[3u * LB + at] = grad_entry(k, t, v0 + 3u, z.lo.w, v0 + 3u < vocab, scale);
            sh_a[4u * LB + at] = grad_entry(k, t, v0 + 4u, z.hi.x, v0 + 4u < vocab, scale);
            sh_a[5u * LB + at] = grad_entry(k, t, v0 + 5u, z.hi.y, v0 + 5u < vocab, scale);
            sh_a[6u * LB + at] = grad_entry(k, t, v0 + 6u, z.hi.z, v0 + 6u < vocab, scale);
            sh_a[7u * LB + at] = grad_entry(k, t, v0 + 7u, z.hi.w, v0 + 7u < vocab, scale);
        }
        sh_d[lid] = select(0.0, 1.0, kept);
        workgroupBarrier();
        let n = select(0u, min(LB, params.end - tb), block_needed());
        let first = has(MODE_LCE_FIRST) && tb == params.begin;
        weight_block(v0, tb, n, first, lid);
        if (lid < LT && v0 + lid < params.vocab) {
            var s = 0.0;
            for (var j = 0u; j < n; j++) {
                s += sh_a[lid * LB + j];
            }
            let o = bias_at + v0 + lid;
            let old = select(bitcast<f32>(state[o]), 0.0, first);
            state[o] = bitcast<u32>(old + s);
        }
        workgroupBarrier();
    }
}

// dloss/dlogits of given logits (MODE_LCE_GIVEN; binding 7, tokens × vocab) for the token
// tiles of this dispatch and the vocabulary chunk [begin, end): each entry as `grad_entry`
// makes it for the fused backward, written where it lies.
@compute @workgroup_size(LW)
fn lce_logit_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    if (g >= params.tiles) {
        return;
    }
    let t0 = (params.tile_base + g) * LT;
    let scale = grad_scale();
    let ks = coef8(t0);
    let step = LB;
    for (var vb = params.begin; vb < params.end; vb += step) {
        let v0 = vb + RL * lid;
        let quad = given_quad(t0, v0);
        for (var c = 0u; c < RL; c++) {
            let v = v0 + c;
            if (v >= params.end) {
                break;
            }
            let e = grad_tile(ks, t0, v, quad_at(quad, c), true, scale);
            for (var r = 0u; r < LT; r++) {
                put_grad(t0 + r, v, tile_at(e, r));
            }
        }
    }
}

// Writes token t's gradient entry at row v of binding 7 (rows of vocab words), tokens past the
// last dropped.
fn put_grad(t: u32, v: u32, g: f32) {
    if (t < params.tokens) {
        out[params.out_off + t * params.vocab + v] = bitcast<u32>(g);
    }
}

// Copies d_bias from the state into binding 7 (vocab words at out_off).
@compute @workgroup_size(LW)
fn lce_copy_bias(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let v = group_index(wid, nwg) * LW + lid;
    if (v >= params.vocab) {
        return;
    }
    out[params.out_off + v] = state[SW * params.tokens + 1u + v];
}

// The materialised path's first half, for comparison: logits (tokens × vocab, row-major, at
// out_off) = h · Wᵀ + b, soft-capped, for the token tiles of this dispatch and the vocabulary
// chunk [begin, end), with the same dot products as the fused kernels.
@compute @workgroup_size(LW)
fn lce_logits(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    if (g >= params.tiles) {
        return;
    }
    let t0 = (params.tile_base + g) * LT;
    let step = LB;
    for (var vb = params.begin; vb < params.end; vb += step) {
        let v0 = vb + RL * lid;
        let quad = dots_hw4(t0, v0);
        for (var c = 0u; c < RL; c++) {
            let v = v0 + c;
            if (v >= params.end) {
                break;
            }
            let tile = quad_at(quad, c);
            for (var r = 0u; r < LT; r++) {
                let t = t0 + r;
                if (t < params.tokens) {
                    out[params.out_off + t * params.vocab + v] = logit_bits(tile_at(tile, r), v);
                }
            }
        }
    }
}

// Copies each token's lse from the state into binding 7 (tokens words at out_off).
@compute @workgroup_size(LW)
fn lce_copy_lse(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = group_index(wid, nwg) * LW + lid;
    if (t >= params.tokens) {
        return;
    }
    out[params.out_off + t] = state[t * SW + 7u];
}
