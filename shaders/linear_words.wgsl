// The linear module's operands as 4-byte words (follows linear.wgsl): any dims, f32 or f16
// entries (IN_F16: two to a word, the first in the low half).

@group(0) @binding(1) var<storage, read> hidden: array<u32>;
@group(0) @binding(2) var<storage, read> weight: array<u32>;

fn entry_of(word: u32, i: u32) -> f32 {
    if (IN_F16) {
        return bitcast<f32>(f16_entry_bits(word, i & 1u));
    }
    return bitcast<f32>(word);
}

fn hid(i: u32) -> f32 {
    if (IN_F16) {
        return entry_of(hidden[(i >> 1u) + params.h_off], i);
    }
    return bitcast<f32>(hidden[i + params.h_off]);
}

fn wt(i: u32) -> f32 {
    if (IN_F16) {
        return entry_of(weight[(i >> 1u) + params.w_off], i);
    }
    return bitcast<f32>(weight[i + params.w_off]);
}

fn hid4(b: vec4<u32>, k: u32) -> vec4<f32> {
    return vec4<f32>(hid(b.x + k), hid(b.y + k), hid(b.z + k), hid(b.w + k));
}

fn wt4(b: vec4<u32>, k: u32) -> vec4<f32> {
    return vec4<f32>(wt(b.x + k), wt(b.y + k), wt(b.z + k), wt(b.w + k));
}

// h_t · w_v for the tokens t0 .. t0 + 7 and one vocabulary row v: per entry k in order, each
// row's sum gets h·w.
fn dots_hw(t0: u32, v: u32) -> Tile {
    let hb = row_starts(t0, params.t_last, params.dims);
    let wb = min(v, params.v_last) * params.dims;
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
    let wb = row_starts(v0, params.v_last, params.dims);
    let hb = min(t, params.t_last) * params.dims;
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

// The gradient entries of the tile's tokens t0 .. t0 + 7 against the walked vocabulary rows
// vb .. vb + n − 1 are in sh_a (row r of the tile at r · LW); each lane owns dims k = lid,
// lid + LW, … and adds Σ_j g[r, j] w[vb + j, k], summed from zero in j order, to d_hidden
// (each row's running sum rescaled by its factor in `rs`).
fn hidden_block(t0: u32, vb: u32, n: u32, first: bool, lid: u32, rs: Tile) {
    let d = params.dims;
    let step = LW;
    for (var k = lid; k < d; k += step) {
        var lo = vec4<f32>(0.0);
        var hi = vec4<f32>(0.0);
        for (var j = 0u; j < n; j++) {
            let w = wt((vb + j) * d + k);
            lo += vec4<f32>(sh_a[j], sh_a[LB + j], sh_a[2u * LB + j], sh_a[3u * LB + j]) * w;
            hi += vec4<f32>(sh_a[4u * LB + j], sh_a[5u * LB + j], sh_a[6u * LB + j], sh_a[7u * LB + j]) * w;
        }
        for (var r = 0u; r < LT; r++) {
            if (t0 + r < params.tokens) {
                let o = params.out_off + (t0 + r) * d + k;
                add_out(o, tile_at(Tile(lo, hi), r), first, tile_at(rs, r));
            }
        }
    }
}

// The transpose: the tile's vocabulary rows v0 .. v0 + 7 against the walked tokens tb .. tb +
// n − 1; adds Σ_j g[r, j] h[tb + j, k] to d_weight.
fn weight_block(v0: u32, tb: u32, n: u32, first: bool, lid: u32) {
    let d = params.dims;
    let step = LW;
    for (var k = lid; k < d; k += step) {
        var lo = vec4<f32>(0.0);
        var hi = vec4<f32>(0.0);
        for (var j = 0u; j < n; j++) {
            let h = hid((tb + j) * d + k);
            lo += vec4<f32>(sh_a[j], sh_a[LB + j], sh_a[2u * LB + j], sh_a[3u * LB + j]) * h;
            hi += vec4<f32>(sh_a[4u * LB + j], sh_a[5u * LB + j], sh_a[6u * LB + j], sh_a[7u * LB + j]) * h;
        }
        for (var r = 0u; r < LT; r++) {
            if (v0 + r < params.vocab) {
                add_out(params.out_off + (v0 + r) * d + k, tile_at(Tile(lo, hi), r), first, 1.0);
            }
        }
    }
}

// Rows v0 .. v0 + 3 (clamped to v_last) against the tokens t0 .. t0 + 7.
fn dots_hw4(t0: u32, v0: u32) -> Quad {
    return Quad(dots_hw(t0, v0), dots_hw(t0, v0 + 1u), dots_hw(t0, v0 + 2u), dots_hw(t0, v0 + 3u));
}

// Tokens t0 .. t0 + 3 (clamped) against the vocabulary rows v0 .. v0 + 7.
fn dots_wh4(v0: u32, t0: u32) -> Quad {
    return Quad(dots_wh(v0, t0), dots_wh(v0, t0 + 1u), dots_wh(v0, t0 + 2u), dots_wh(v0, t0 + 3u));
}

// The given logits (MODE_LCE_GIVEN: binding 1 holds tokens × vocab, vocab = dims) of tokens
// t0 .. t0 + 7 at row v, clamped as `dots_hw`'s operands.
fn given_tile(t0: u32, v: u32) -> Tile {
    let hb = row_starts(t0, params.t_last, params.dims);
    let k = min(v, params.v_last);
    return Tile(hid4(hb.lo, k), hid4(hb.hi, k));
}

// Rows v0 .. v0 + 3 of the given logits, as `dots_hw4` lays out its products.
fn given_quad(t0: u32, v0: u32) -> Quad {
    return Quad(given_tile(t0, v0), given_tile(t0, v0 + 1u), given_tile(t0, v0 + 2u),
        given_tile(t0, v0 + 3u));
}

// Entry k of weight row v.
fn weight_entry(v: u32, k: u32) -> f32 {
    return wt(v * params.dims + k);
}
