// Log transforms of data, the per-element values of likelihood.wgsl's `elementwise` entry
// point for OP >= OP_LOG_FIRST (REDUCE 0 writes them in the input's layout; REDUCE 1 sums them
// for the mean of logs). Needs common.wgsl and likelihood.wgsl. Host: src/transform.rs;
// mirror: src/reference/transform.rs.
//   OP_LOG_LN     ln x        (−inf at 0, NaN below 0; subnormals exact from their bits)
//   OP_LOG_LOG10  log10 x     (ln x · log10 e)
//   OP_LOG_LOG1P  ln(1 + x)   accurate near 0 (−inf at −1, NaN below −1)
//   OP_LOG_DELTA  ln(δ + x)   δ = params.eps: the terms of a log-average (geometric mean)
//   OP_LOG_ADDEXP ln(e^x1 + e^x2), x1 in a, x2 in b: the log-sum-exp monoid over the pair

const OP_LOG_FIRST: u32 = 16u;
const OP_LOG_LN: u32 = 16u;
const OP_LOG_LOG10: u32 = 17u;
const OP_LOG_LOG1P: u32 = 18u;
const OP_LOG_DELTA: u32 = 19u;
const OP_LOG_ADDEXP: u32 = 20u;
const LOG10_E: f32 = 0.4342944819032518;
// (√2 − 1) / (√2 + 1) bounds the series argument of ld_atanh2 from below: ln(1 + x) by the
// series for x in [1/√2 − 1, √2 − 1).
const LOG1P_SERIES_LO: f32 = -0.29289322;

// ln(1 + x) of a value given as bits.
fn xlog1p(v: u32) -> u32 {
    if (is_nan_bits(v)) {
        return F32_NAN;
    }
    if (v == F32_POS_INF) {
        return F32_POS_INF;
    }
    let x = bitcast<f32>(v);
    if (v == F32_NEG_INF || x < -1.0) {
        return F32_NAN;
    }
    if (x == -1.0) {
        return F32_NEG_INF;
    }
    if (x >= LOG1P_SERIES_LO && x < SQRT_TWO_MINUS_ONE) {
        return f32b(ld_atanh2(x / (2.0 + x)));
    }
    // 1 + x is exact for x in [−1, −1/2] and the rounding of 1 + x costs about one ulp of the
    // result elsewhere in this branch.
    return xlog(f32b(1.0 + x));
}

// The value of element i of a (bits xb); b holds a second operand where an op has one.
fn transform_bits(xb: u32, i: u32) -> u32 {
    if (OP == OP_LOG_LN) {
        return xlog(xb);
    }
    if (OP == OP_LOG_LOG10) {
        return xmul(xlog(xb), f32b(LOG10_E));
    }
    if (OP == OP_LOG_LOG1P) {
        return xlog1p(xb);
    }
    if (OP == OP_LOG_ADDEXP) {
        return lse_result_bits(lse_push(lse_push(lse_identity(), xb), b[params.b_off + i]));
    }
    return xlog(xadd(xb, f32b(params.eps)));
}
