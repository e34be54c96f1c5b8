// Masks, as JAX's `where=`: the per-element values of likelihood.wgsl's `elementwise` entry
// point for OP >= OP_MASK_FIRST, around a log-sum-exp family op. Needs common.wgsl and
// likelihood.wgsl. Host: src/masked.rs; mirror: src/reference/masked.rs.
//   OP_MASK_APPLY    a = x, b = mask bits: x where the bit is set, −inf elsewhere (absent,
//                    whatever x holds — NaN and inf included)
//   OP_MASK_SOFTMAX  b = mask bits, out = the row op's softmax: 0 where masked
//   OP_MASK_LSM      b = mask bits, out = the row op's log_softmax: −inf where masked
// The mask is packed 32 entries a word, entry g = row · cols + col of the matrix at bit g % 32 of
// word g / 32 (bound whole in b).

const OP_MASK_FIRST: u32 = 24u;
const OP_MASK_APPLY: u32 = 24u;
const OP_MASK_SOFTMAX: u32 = 25u;
const OP_MASK_LSM: u32 = 26u;

fn mask_bit(row: u32, col: u32) -> bool {
    let g = row * params.cols + col;
    return ((b[g >> 5u] >> (g & 31u)) & 1u) != 0u;
}

// The value of element i (column col of global row `row`); xb = a[a_off + i].
fn mask_bits(xb: u32, i: u32, row: u32, col: u32) -> u32 {
    let keep = mask_bit(row, col);
    if (OP == OP_MASK_APPLY) {
        return select(F32_NEG_INF, xb, keep);
    }
    if (keep) {
        return out[params.out_off + i];
    }
    return select(F32_NEG_INF, 0u, OP == OP_MASK_SOFTMAX);
}
