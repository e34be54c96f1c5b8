// Fused linear cross-entropy: the loss of a classifier head, h_i · Wᵀ + b followed by
// cross-entropy, without the tokens × vocabulary logits. Follows common.wgsl.
//
// A workgroup owns a tile of LT rows of one operand (tokens, or vocabulary rows for the weight
// gradient) whose loads are the same for every lane, and its LW lanes walk the other operand's
// rows; each logit is a dot product over `dims` in one fixed order (`dots_hw` and `dots_wh` do
// the same operations on the same operands, so a logit has the same bits in every kernel). No
// buffer ever holds more than one row of logits per token: the forward folds each logit into
// the token's log-sum-exp state (the monoid of common.wgsl) as soon as it is computed, and the
// backward recomputes logits tile by tile from the stored log-sum-exp.
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
    // Word offset of the output (the loss, logits or a partial) in binding 7.
    out_off: u32,
    // Tiles in this dispatch.
    tiles: u32,
}

@group(0) @binding(0) var<uniform> params: LinParams;
@group(0) @binding(1) var<storage, read> hidden: array<u32>;
@group(0) @binding(2) var<storage, read> weight: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> targets: array<i32>;
// Class weights (vocab), or with MODE_LCE_DENSE the materialised dloss/dlogits.
@group(0) @binding(5) var<storage, read> class_weight: array<f32>;
// Per-token states (SW words each), then the mean's denominator, then d_bias (vocab words).
@group(0) @binding(6) var<storage, read_write> state: array<u32>;
@group(0) @binding(7) var<storage, read_write> out: array<u32>;

var<workgroup> sh_a: array<f32, 512>;
var<workgroup> sh_b: array<f32, 512>;
var<workgroup> sh_c: array<u32, 512>;
var<workgroup> sh_d: array<f32, 512>;
var<workgroup> sh_e: array<u32, 512>;

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

fn has(bit: u32) -> bool {
    return (params.mode & bit) != 0u;
}

fn entry_of(word: u32, i: u32) -> f32 {
    if (IN_F16) {
        return bitcast<f32>(f16_entry_bits(word, i & 1u));
    }
    return bitcast<f32>(word);
}

fn hid(i: u32) -> f32 {
    if (IN_F16) {
        return entry_of(hidden[i >> 1u], i);
    }
    return bitcast<f32>(hidden[i]);
}

fn wt(i: u32) -> f32 {
    if (IN_F16) {
        return entry_of(weight[i >> 1u], i);
    }
    return bitcast<f32>(weight[i]);
}

fn hid4(b: vec4<u32>, k: u32) -> vec4<f32> {
    return vec4<f32>(hid(b.x + k), hid(b.y + k), hid(b.z + k), hid(b.w + k));
}

fn wt4(b: vec4<u32>, k: u32) -> vec4<f32> {
    return vec4<f32>(wt(b.x + k), wt(b.y + k), wt(b.z + k), wt(b.w + k));
}

// Eight dot products at once: lo holds rows 0–3 of the tile, hi rows 4–7.
struct Tile {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn tile_at(t: Tile, r: u32) -> f32 {
    if (r < 4u) {
        return t.lo[r];
    }
    return t.hi[r - 4u];
}

// First entries of rows r0 .. r0 + 7 of a `rows × dims` matrix, rows past the last clamped to it.
fn row_starts(r0: u32, rows: u32) -> Tile4 {
    let last = rows - 1u;
    let d = params.dims;
    return Tile4(
        vec4<u32>(min(r0, last), min(r0 + 1u, last), min(r0 + 2u, last), min(r0 + 3u, last)) * d,
        vec4<u32>(min(r0 + 4u, last), min(r0 + 5u, last), min(r0 + 6u, last), min(r0 + 7u, last)) * d,
    );
}

struct Tile4 {
    lo: vec4<u32>,
    hi: vec4<u32>,
}

// h_t · w_v for the tokens t0 .. t0 + 7 and one vocabulary row v: per entry k in order, each
// row's sum gets h·w.
fn dots_hw(t0: u32, v: u32) -> Tile {
    let hb = row_starts(t0, params.tokens);
    let wb = min(v, params.vocab - 1u) * params.dims;
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    let d4 = params.dims & ~3u;
    for (var k = 0u; k < d4; k += 4u) {
        let w0 = wt(wb + k);
        lo += hid4(hb.lo, k) * w0;
        hi += hid4(hb.hi, k) * w0;
        let w1 = wt(wb + k + 1u);
        lo += hid4(hb.lo, k + 1u) * w1;
        hi += hid4(hb.hi, k + 1u) * w1;
        let w2 = wt(wb + k + 2u);
        lo += hid4(hb.lo, k + 2u) * w2;
        hi += hid4(hb.hi, k + 2u) * w2;
        let w3 = wt(wb + k + 3u);
        lo += hid4(hb.lo, k + 3u) * w3;
        hi += hid4(hb.hi, k + 3u) * w3;
    }
    for (var k = d4; k < params.dims; k++) {
        let w = wt(wb + k);
        lo += hid4(hb.lo, k) * w;
        hi += hid4(hb.hi, k) * w;
    }
    return Tile(lo, hi);
}

// The same dot products for one token t and the vocabulary rows v0 .. v0 + 7.
fn dots_wh(v0: u32, t: u32) -> Tile {
    let wb = row_starts(v0, params.vocab);
    let hb = min(t, params.tokens - 1u) * params.dims;
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    let d4 = params.dims & ~3u;
    for (var k = 0u; k < d4; k += 4u) {
        let h0 = hid(hb + k);
        lo += wt4(wb.lo, k) * h0;
        hi += wt4(wb.hi, k) * h0;
        let h1 = hid(hb + k + 1u);
        lo += wt4(wb.lo, k + 1u) * h1;
        hi += wt4(wb.hi, k + 1u) * h1;
        let h2 = hid(hb + k + 2u);
        lo += wt4(wb.lo, k + 2u) * h2;
        hi += wt4(wb.hi, k + 2u) * h2;
        let h3 = hid(hb + k + 3u);
        lo += wt4(wb.lo, k + 3u) * h3;
        hi += wt4(wb.hi, k + 3u) * h3;
    }
    for (var k = d4; k < params.dims; k++) {
        let h = hid(hb + k);
        lo += wt4(wb.lo, k) * h;
        hi += wt4(wb.hi, k) * h;
    }
    return Tile(lo, hi);
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
// smoothing, Σ_c w_c z_c. One dispatch per vocabulary chunk [begin, end); lane l walks the
// chunk's rows l, l + LW, …; then the workgroup merges its lanes' states per token (eight groups
// of eight lanes, each in lane order, then the groups in order) and merges the result after the
// state the earlier chunks left.
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
    var st: array<LseState, LT>;
    var ss: array<SumState, LT>;
    for (var r = 0u; r < LT; r++) {
        st[r] = lse_identity();
        ss[r] = sum_identity();
    }
    let step = LW;
    for (var v = params.begin + lid; v < params.end; v += step) {
        let tile = dots_hw(t0, v);
        let cw = bitcast<u32>(class_w(v));
        for (var r = 0u; r < LT; r++) {
            let zb = logit_bits(tile_at(tile, r), v);
            st[r] = lse_push(st[r], zb);
            if (has(MODE_LCE_SMOOTH)) {
                ss[r] = sum_push(ss[r], xmul(zb, cw), 0.0);
            }
            let t = t0 + r;
            if (t < params.tokens && targets[t] == i32(v)) {
                state[t * SW + 3u] = zb;
            }
        }
    }
    for (var r = 0u; r < LT; r++) {
        let at = r * LW + lid;
        sh_a[at] = st[r].m;
        sh_b[at] = st[r].s;
        sh_c[at] = st[r].flags;
        sh_d[at] = ss[r].s;
        sh_e[at] = ss[r].flags;
    }
    workgroupBarrier();
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
            part = lse_combine(part, LseState(sh_a[at], sh_b[at], sh_c[at]));
            psum = sum_combine(psum, SumState(sh_d[at], 0.0, sh_e[at]));
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

// dloss/dz at token t, vocabulary row v, from the logit's bits (before the cap: `zb` after it,
// `acc` the dot product): 0 for an ignored token. t and v are in range.
fn grad_entry(t: u32, v: u32, acc: f32, scale: f32) -> f32 {
    let y = targets[t];
    if (y == params.ignore) {
        return 0.0;
    }
    let at = t * SW;
    let zb = logit_bits(acc, v);
    let lse = state[at + 7u];
    if (!is_finite_bits(lse) || !is_finite_bits(zb)) {
        return bitcast<f32>(F32_NAN);
    }
    let p = bitcast<f32>(ld_exp(bitcast<f32>(zb) - bitcast<f32>(lse)));
    var g = bitcast<f32>(state[at + 4u]) * p - params.eps_over_c * class_w(v);
    if (y == i32(v)) {
        g = g - bitcast<f32>(state[at + 5u]);
    }
    if (has(MODE_LCE_SOFTCAP)) {
        let c = bitcast<f32>(zb) * params.inv_cap;
        g = g * (1.0 - c * c);
    }
    return g * scale;
}

// ---------------------------------------------------------------------------------------------
// d_hidden (binding 7, tokens × dims) over the vocabulary chunk [begin, end): for each block of
// LW rows, the lanes recompute the logits of the tile's LT tokens and their gradient entries
// (into workgroup memory), then each lane owns dims k = lid, lid + LW, … and adds
// Σ_{v in block} g[t, v] w[v, k] (summed from zero in row order) to the running d_hidden.
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
    let d = params.dims;
    let step = LW;
    for (var vb = params.begin; vb < params.end; vb += step) {
        let v = vb + lid;
        let dense = has(MODE_LCE_DENSE);
        var tile = Tile(vec4<f32>(0.0), vec4<f32>(0.0));
        if (!dense) {
            tile = dots_hw(t0, v);
        }
        for (var r = 0u; r < LT; r++) {
            var ge = 0.0;
            if (t0 + r < params.tokens && v < params.end) {
                if (dense) {
                    ge = class_weight[(t0 + r) * params.vocab + v];
                } else {
                    ge = grad_entry(t0 + r, v, tile_at(tile, r), scale);
                }
            }
            sh_a[r * LW + lid] = ge;
        }
        workgroupBarrier();
        let n = min(LW, params.end - vb);
        let first = has(MODE_LCE_FIRST) && vb == params.begin;
        for (var k = lid; k < d; k += step) {
            var lo = vec4<f32>(0.0);
            var hi = vec4<f32>(0.0);
            for (var j = 0u; j < n; j++) {
                let w = wt((vb + j) * d + k);
                lo += vec4<f32>(sh_a[j], sh_a[LW + j], sh_a[2u * LW + j], sh_a[3u * LW + j]) * w;
                hi += vec4<f32>(sh_a[4u * LW + j], sh_a[5u * LW + j], sh_a[6u * LW + j], sh_a[7u * LW + j]) * w;
            }
            for (var r = 0u; r < LT; r++) {
                let t = t0 + r;
                if (t < params.tokens) {
                    let o = params.out_off + t * d + k;
                    let old = select(bitcast<f32>(out[o]), 0.0, first);
                    out[o] = bitcast<u32>(old + tile_at(Tile(lo, hi), r));
                }
            }
        }
        workgroupBarrier();
    }
}

// d_weight (binding 7, vocab × dims) and d_bias (the state's last vocab words) over the token
// chunk [begin, end): the transpose of `lce_grad_hidden`. The tile is LT vocabulary rows; the
// lanes recompute the logits of LW tokens at a time, then each lane owns dims of the tile's rows
// and adds Σ_{t in block} g[t, v] h[t, k]; lanes 0–7 add Σ_t g[t, v] to d_bias.
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
    let d = params.dims;
    let step = LW;
    let bias_at = SW * params.tokens + 1u;
    for (var tb = params.begin; tb < params.end; tb += step) {
        let t = tb + lid;
        let dense = has(MODE_LCE_DENSE);
        var tile = Tile(vec4<f32>(0.0), vec4<f32>(0.0));
        if (!dense) {
            tile = dots_wh(v0, t);
        }
        for (var r = 0u; r < LT; r++) {
            var ge = 0.0;
            if (t < params.end && v0 + r < params.vocab) {
                if (dense) {
                    ge = class_weight[t * params.vocab + v0 + r];
                } else {
                    ge = grad_entry(t, v0 + r, tile_at(tile, r), scale);
                }
            }
            sh_a[r * LW + lid] = ge;
        }
        workgroupBarrier();
        let n = min(LW, params.end - tb);
        let first = has(MODE_LCE_FIRST) && tb == params.begin;
        for (var k = lid; k < d; k += step) {
            var lo = vec4<f32>(0.0);
            var hi = vec4<f32>(0.0);
            for (var j = 0u; j < n; j++) {
                let h = hid((tb + j) * d + k);
                lo += vec4<f32>(sh_a[j], sh_a[LW + j], sh_a[2u * LW + j], sh_a[3u * LW + j]) * h;
                hi += vec4<f32>(sh_a[4u * LW + j], sh_a[5u * LW + j], sh_a[6u * LW + j], sh_a[7u * LW + j]) * h;
            }
            for (var r = 0u; r < LT; r++) {
                let v = v0 + r;
                if (v < params.vocab) {
                    let o = params.out_off + v * d + k;
                    let old = select(bitcast<f32>(out[o]), 0.0, first);
                    out[o] = bitcast<u32>(old + tile_at(Tile(lo, hi), r));
                }
            }
        }
        if (lid < LT && v0 + lid < params.vocab) {
            var s = 0.0;
            for (var j = 0u; j < n; j++) {
                s += sh_a[lid * LW + j];
            }
            let o = bias_at + v0 + lid;
            let old = select(bitcast<f32>(state[o]), 0.0, first);
            state[o] = bitcast<u32>(old + s);
        }
        workgroupBarrier();
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
    let step = LW;
    for (var v = params.begin + lid; v < params.end; v += step) {
        let tile = dots_hw(t0, v);
        for (var r = 0u; r < LT; r++) {
            let t = t0 + r;
            if (t < params.tokens) {
                out[params.out_off + t * params.vocab + v] = logit_bits(tile_at(tile, r), v);
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
