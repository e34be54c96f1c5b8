// The linear module's operands as 16-byte words (follows linear.wgsl): f32 entries, dims a
// multiple of 4, so a row is dims / 4 words and each lane's load brings four entries. On CPU
// adapters a lane's load is an instruction of its own, so this form issues a quarter of the
// loads of linear_words.wgsl for the same products.

@group(0) @binding(1) var<storage, read> hidden: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> weight: array<vec4<u32>>;

fn hrow(i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(hidden[i + params.h_off]);
}

fn wrow(i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(weight[i + params.w_off]);
}

// h_t · w_v for the tokens t0 .. t0 + 7 and one vocabulary row v: per word q in order, each
// row's sum gets dot(h_q, w_q).
fn dots_hw(t0: u32, v: u32) -> Tile {
    let q4 = params.dims / 4u;
    let hb = row_starts(t0, params.t_last, q4);
    let wb = min(v, params.v_last) * q4;
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    for (var q = 0u; q < q4; q++) {
        let w = wrow(wb + q);
        lo += vec4<f32>(dot(hrow(hb.lo.x + q), w), dot(hrow(hb.lo.y + q), w),
            dot(hrow(hb.lo.z + q), w), dot(hrow(hb.lo.w + q), w));
        hi += vec4<f32>(dot(hrow(hb.hi.x + q), w), dot(hrow(hb.hi.y + q), w),
            dot(hrow(hb.hi.z + q), w), dot(hrow(hb.hi.w + q), w));
    }
    return Tile(lo, hi);
}

// The same dot products for one token t and the vocabulary rows v0 .. v0 + 7.
fn dots_wh(v0: u32, t: u32) -> Tile {
    let q4 = params.dims / 4u;
    let wb = row_starts(v0, params.v_last, q4);
    let hb = min(t, params.t_last) * q4;
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    for (var q = 0u; q < q4; q++) {
        let h = hrow(hb + q);
        lo += vec4<f32>(dot(h, wrow(wb.lo.x + q)), dot(h, wrow(wb.lo.y + q)),
            dot(h, wrow(wb.lo.z + q)), dot(h, wrow(wb.lo.w + q)));
        hi += vec4<f32>(dot(h, wrow(wb.hi.x + q)), dot(h, wrow(wb.hi.y + q)),
            dot(h, wrow(wb.hi.z + q)), dot(h, wrow(wb.hi.w + q)));
    }
    return Tile(lo, hi);
}

// Adds the four entries of `a` to row `row`'s word q of binding 7 (rows of dims entries).
fn add_word(row: u32, q: u32, a: vec4<f32>, first: bool, s: f32) {
    let o = params.out_off + row * params.dims + 4u * q;
    add_out(o, a.x, first, s);
    add_out(o + 1u, a.y, first, s);
    add_out(o + 2u, a.z, first, s);
    add_out(o + 3u, a.w, first, s);
}

// Words of dims a lane owns in the gradient products (1, 2 or 4: the host's choice, dims / 4 /
// LW rounded down): each entry of the block's gradient, read from workgroup memory once, serves
// QL words of the walked row.
override QL: u32 = 1u;

// The tile's eight rows' running sums for one word of dims.
struct Acc8 {
    a0: vec4<f32>,
    a1: vec4<f32>,
    a2: vec4<f32>,
    a3: vec4<f32>,
    a4: vec4<f32>,
    a5: vec4<f32>,
    a6: vec4<f32>,
    a7: vec4<f32>,
}

fn acc8_zero() -> Acc8 {
    let z = vec4<f32>(0.0);
    return Acc8(z, z, z, z, z, z, z, z);
}

// The gradient entries of the tile's eight rows at walked row j of the block.
fn g8(j: u32) -> Tile {
    return Tile(
        vec4<f32>(sh_a[j], sh_a[LB + j], sh_a[2u * LB + j], sh_a[3u * LB + j]),
        vec4<f32>(sh_a[4u * LB + j], sh_a[5u * LB + j], sh_a[6u * LB + j], sh_a[7u * LB + j]),
    );
}

fn acc8(a: Acc8, g: Tile, w: vec4<f32>) -> Acc8 {
    return Acc8(
        a.a0 + g.lo.x * w,
        a.a1 + g.lo.y * w,
        a.a2 + g.lo.z * w,
        a.a3 + g.lo.w * w,
        a.a4 + g.hi.x * w,
        a.a5 + g.hi.y * w,
        a.a6 + g.hi.z * w,
        a.a7 + g.hi.w * w,
    );
}

// Adds the eight rows' sums to binding 7's rows r0 .. r0 + 7 (those below `rows`) at word q,
// each row's running sum rescaled by its factor in `s`.
fn add_acc8(r0: u32, rows: u32, q: u32, a: Acc8, first: bool, s: Tile) {
    if (r0 < rows) { add_word(r0, q, a.a0, first, s.lo.x); }
    if (r0 + 1u < rows) { add_word(r0 + 1u, q, a.a1, first, s.lo.y); }
    if (r0 + 2u < rows) { add_word(r0 + 2u, q, a.a2, first, s.lo.z); }
    if (r0 + 3u < rows) { add_word(r0 + 3u, q, a.a3, first, s.lo.w); }
    if (r0 + 4u < rows) { add_word(r0 + 4u, q, a.a4, first, s.hi.x); }
    if (r0 + 5u < rows) { add_word(r0 + 5u, q, a.a5, first, s.hi.y); }
    if (r0 + 6u < rows) { add_word(r0 + 6u, q, a.a6, first, s.hi.z); }
    if (r0 + 7u < rows) { add_word(r0 + 7u, q, a.a7, first, s.hi.w); }
}

// Σ_j g[r, j] x[j0 + j, q] for the tile's rows r, the QL words q, q + LW, … of each lane, from
// zero in j order, added to binding 7's rows r0 + r (their running sums rescaled by `rs`):
// `hidden_block` walks the weight's rows (x = w), `weight_block` the hidden states' (x = h).
fn block_sums(
    r0: u32,
    rows: u32,
    j0: u32,
    n: u32,
    first: bool,
    lid: u32,
    walk_weight: bool,
    rs: Tile,
) {
    let q4 = params.dims / 4u;
    let step = LW * QL;
    for (var q = lid; q < q4; q += step) {
        let qb = min(q + LW, q4 - 1u);
        let qc = min(q + 2u * LW, q4 - 1u);
        let qd = min(q + 3u * LW, q4 - 1u);
        var s0 = acc8_zero();
        var s1 = acc8_zero();
        var s2 = acc8_zero();
        var s3 = acc8_zero();
        for (var j = 0u; j < n; j++) {
            let g = g8(j);
            let row = (j0 + j) * q4;
            if (walk_weight) {
                s0 = acc8(s0, g, wrow(row + q));
                if (QL > 1u) {
                    s1 = acc8(s1, g, wrow(row + qb));
                }
                if (QL > 2u) {
                    s2 = acc8(s2, g, wrow(row + qc));
                    s3 = acc8(s3, g, wrow(row + qd));
                }
            } else {
                s0 = acc8(s0, g, hrow(row + q));
                if (QL > 1u) {
                    s1 = acc8(s1, g, hrow(row + qb));
                }
                if (QL > 2u) {
                    s2 = acc8(s2, g, hrow(row + qc));
                    s3 = acc8(s3, g, hrow(row + qd));
                }
            }
        }
        add_acc8(r0, rows, q, s0, first, rs);
        if (QL > 1u && q + LW < q4) {
            add_acc8(r0, rows, q + LW, s1, first, rs);
        }
        if (QL > 2u && q + 2u * LW < q4) {
            add_acc8(r0, rows, q + 2u * LW, s2, first, rs);
        }
        if (QL > 2u && q + 3u * LW < q4) {
            add_acc8(r0, rows, q + 3u * LW, s3, first, rs);
        }
    }
}

// As linear_words.wgsl's: the tile's eight d_hidden rows against the walked weight rows.
fn hidden_block(t0: u32, vb: u32, n: u32, first: bool, lid: u32, rs: Tile) {
    block_sums(t0, params.tokens, vb, n, first, lid, true, rs);
}

// The tile's eight d_weight rows against the walked token rows.
fn weight_block(v0: u32, tb: u32, n: u32, first: bool, lid: u32) {
    block_sums(v0, params.vocab, tb, n, first, lid, false, ones());
}

// Entry k of weight row v.
fn weight_entry(v: u32, k: u32) -> f32 {
    return wrow(v * (params.dims / 4u) + k / 4u)[k % 4u];
}

// dot(h, w) of each of the eight words of `h` with `w`, as a tile.
fn dots8(h: array<vec4<f32>, 8>, w: vec4<f32>) -> Tile {
    return Tile(
        vec4<f32>(dot(h[0], w), dot(h[1], w), dot(h[2], w), dot(h[3], w)),
        vec4<f32>(dot(h[4], w), dot(h[5], w), dot(h[6], w), dot(h[7], w)),
    );
}

// dot(h, w) of `h` with each of the eight words of `w`.
fn dots8w(h: vec4<f32>, w: array<vec4<f32>, 8>) -> Tile {
    return Tile(
        vec4<f32>(dot(h, w[0]), dot(h, w[1]), dot(h, w[2]), dot(h, w[3])),
        vec4<f32>(dot(h, w[4]), dot(h, w[5]), dot(h, w[6]), dot(h, w[7])),
    );
}

fn add_tile(a: Tile, b: Tile) -> Tile {
    return Tile(a.lo + b.lo, a.hi + b.hi);
}

// Rows v0 .. v0 + 3 (clamped to v_last) against the tokens t0 .. t0 + 7: each word of
// the eight token rows, loaded once, serves four rows. The same sums, in the same order, as
// `dots_hw` for each row.
fn dots_hw4(t0: u32, v0: u32) -> Quad {
    let q4 = params.dims / 4u;
    let hb = row_starts(t0, params.t_last, q4);
    let own = own_start(hb);
    let last = params.v_last;
    let wa = min(v0, last) * q4;
    let wb = min(v0 + 1u, last) * q4;
    let wc = min(v0 + 2u, last) * q4;
    let wd = min(v0 + 3u, last) * q4;
    var acc = zero_quad();
    for (var q = 0u; q < q4; q++) {
        let h = shared8(hb, own, q, false);
        acc.a = add_tile(acc.a, dots8(h, wrow(wa + q)));
        acc.b = add_tile(acc.b, dots8(h, wrow(wb + q)));
        acc.c = add_tile(acc.c, dots8(h, wrow(wc + q)));
        acc.d = add_tile(acc.d, dots8(h, wrow(wd + q)));
    }
    return acc;
}

// Tokens t0 .. t0 + 3 (clamped) against the vocabulary rows v0 .. v0 + 7, as `dots_wh` for each.
fn dots_wh4(v0: u32, t0: u32) -> Quad {
    let q4 = params.dims / 4u;
    let wb = row_starts(v0, params.v_last, q4);
    let own = own_start(wb);
    let last = params.t_last;
    let ha = min(t0, last) * q4;
    let hb = min(t0 + 1u, last) * q4;
    let hc = min(t0 + 2u, last) * q4;
    let hd = min(t0 + 3u, last) * q4;
    var acc = zero_quad();
    for (var q = 0u; q < q4; q++) {
        let w = shared8(wb, own, q, true);
        acc.a = add_tile(acc.a, dots8w(hrow(ha + q), w));
        acc.b = add_tile(acc.b, dots8w(hrow(hb + q), w));
        acc.c = add_tile(acc.c, dots8w(hrow(hc + q), w));
        acc.d = add_tile(acc.d, dots8w(hrow(hd + q), w));
    }
    return acc;
}

// The given logits (MODE_LCE_GIVEN: binding 1 holds tokens × vocab, vocab = dims a multiple of
// 4) of tokens t0 .. t0 + 7 (clamped to t_last) at rows v0 .. v0 + 3 (v0 a multiple of 4), laid
// out as `dots_hw4`'s products: one word a token.
fn given_quad(t0: u32, v0: u32) -> Quad {
    let hb = row_starts(t0, params.t_last, params.dims / 4u);
    let q = min(v0, params.v_last) / 4u;
    let r0 = hrow(hb.lo.x + q);
    let r1 = hrow(hb.lo.y + q);
    let r2 = hrow(hb.lo.z + q);
    let r3 = hrow(hb.lo.w + q);
    let r4 = hrow(hb.hi.x + q);
    let r5 = hrow(hb.hi.y + q);
    let r6 = hrow(hb.hi.z + q);
    let r7 = hrow(hb.hi.w + q);
    return Quad(
        Tile(vec4<f32>(r0.x, r1.x, r2.x, r3.x), vec4<f32>(r4.x, r5.x, r6.x, r7.x)),
        Tile(vec4<f32>(r0.y, r1.y, r2.y, r3.y), vec4<f32>(r4.y, r5.y, r6.y, r7.y)),
        Tile(vec4<f32>(r0.z, r1.z, r2.z, r3.z), vec4<f32>(r4.z, r5.z, r6.z, r7.z)),
        Tile(vec4<f32>(r0.w, r1.w, r2.w, r3.w), vec4<f32>(r4.w, r5.w, r6.w, r7.w)),
    );
}
