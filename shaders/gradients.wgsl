// Gradients of the log-sum-exp family: the per-element values the `elementwise` entry point of
// likelihood.wgsl computes for OP >= OP_SUM_G (row sums go through its pairwise reduction; the
// backward values are written per element). Needs common.wgsl and likelihood.wgsl.
// Mirror: src/reference/gradients.rs. Host: src/gradients.rs.
//
//   OP_SUM_G    a = g                                  row sums Σ_k g_k
//   OP_SUM_GP   a = p, b = g                           row sums Σ_k g_k p_k
//   OP_LSE_BWD  a = x, b = g (per row), c = lse (per row)   g_r · exp(x_j − lse_r)
//   OP_LSM_BWD  a = log_softmax, b = g, c = Σ g (per row)    g_j − exp(out_j) · Σ g
//   OP_SM_BWD   a = softmax, b = g, c = Σ g p (per row)      p_j · (g_j − Σ g p)
// Where the forward value is NaN the gradient is NaN; a masked entry (x = −inf, log-probability
// −inf, probability 0) gets 0.

const OP_SUM_G: u32 = 5u;
const OP_SUM_GP: u32 = 6u;
const OP_LSE_BWD: u32 = 7u;
const OP_LSM_BWD: u32 = 8u;
const OP_SM_BWD: u32 = 9u;

// The value of element i (column col of row `row`) for the gradient ops; xb = a[a_off + i].
fn gradient_bits(xb: u32, i: u32, row: u32) -> u32 {
    if (OP == OP_SUM_G) {
        return xb;
    }
    if (OP == OP_SUM_GP) {
        return xmul(xb, b[params.b_off + i]);
    }
    if (OP == OP_LSE_BWD) {
        let lse = c[params.c_off + row];
        if (is_nan_bits(lse) || lse == F32_POS_INF || is_nan_bits(xb)) {
            return F32_NAN;
        }
        if (xb == F32_NEG_INF) {
            return 0u;
        }
        if (!is_finite_bits(lse)) {
            return F32_NAN;
        }
        let e = ld_exp(bitcast<f32>(xb) - bitcast<f32>(lse));
        return xmul(b[params.b_off + row], e);
    }
    if (OP == OP_LSM_BWD) {
        if (is_nan_bits(xb)) {
            return F32_NAN;
        }
        if (xb == F32_NEG_INF) {
            return 0u;
        }
        return xsub(b[params.b_off + i], xmul(xexp(xb), c[params.c_off + row]));
    }
    // OP_SM_BWD
    if (is_nan_bits(xb)) {
        return F32_NAN;
    }
    if ((xb & F32_ABS_MASK) == 0u) {
        return 0u;
    }
    return xmul(xb, xsub(b[params.b_off + i], c[params.c_off + row]));
}
