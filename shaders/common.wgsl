// Shared log-domain helpers. Prepended to every kernel family's module.
//
// WGSL lets an implementation assume that no inf or NaN occurs, has no -inf literal, may flush
// denormals and may reassociate float arithmetic. So special values are recognised from their bit
// patterns, special outputs are written as bit patterns (outputs are `array<u32>`), `exp` is only
// ever evaluated on clamped, finite, non-positive arguments, and `log1p` does not depend on a
// cancellation that a reassociating compiler could remove.

const F32_NAN: u32 = 0x7fc00000u;
const F32_POS_INF: u32 = 0x7f800000u;
const F32_NEG_INF: u32 = 0xff800000u;
const F32_ABS_MASK: u32 = 0x7fffffffu;
// What `RowOp::record_sentinel_fill` writes: a NaN payload that no kernel produces.
const SENTINEL: u32 = 0x7fa5a5a5u;

const LOG2E: f32 = 1.4426950408889634;
// ln 2 split so that k * LN2_HI is exact for |k| < 256 (LN2_HI has 16 significant bits).
const LN2_HI: f32 = 0.693145751953125;
const LN2_LO: f32 = 1.4286068203094173e-06;
const SQRT_HALF: f32 = 0.7071067811865476;
const SQRT_TWO_MINUS_ONE: f32 = 0.41421356237309503;
// exp(-104) is below the smallest f32 subnormal: arguments are clamped here, so a huge or
// overflowed (-inf) difference never reaches `exp`.
const EXP_ARG_MIN: f32 = -104.0;

// binary16 bits (the low 16 bits of h) as the binary32 bits of the same value: exact for every
// input, subnormals, infinities and NaN (payload kept) included, without branches. Normal
// numbers re-bias the exponent (127 - 15 = 112) in integer arithmetic; a subnormal m 2^-24 is
// the integer m times 2^-24, exact in f32 and a normal f32, so no denormal is ever formed and
// nothing can be flushed; no adapter feature is needed.
fn f16_to_f32_bits(h: u32) -> u32 {
    let sign = (h & 0x8000u) << 16u;
    let mag = h & 0x7fffu;
    let normal = (mag << 13u) + 0x38000000u;
    let subnormal = bitcast<u32>(f32(mag) * 5.9604644775390625e-8);
    let special = (mag << 13u) | 0x7f800000u;
    var bits = select(normal, subnormal, mag < 0x400u);
    bits = select(bits, special, mag >= 0x7c00u);
    return sign | bits;
}

// Entry i of an array of binary16 values packed two to a word (the first in the low half), as
// f32 bits, given the word that holds it (word i / 2).
fn f16_entry_bits(w: u32, i: u32) -> u32 {
    return f16_to_f32_bits((w >> ((i & 1u) << 4u)) & 0xffffu);
}

// f32 bits as the binary16 bits of the nearest f16 (ties to even), in integer arithmetic only:
// overflow (|x| >= 65520) gives infinity, NaN a quiet NaN (sign and the payload's top bits kept),
// results below 2^-14 subnormals or zero.
fn f32_to_f16_bits(b: u32) -> u32 {
    let sign = (b >> 16u) & 0x8000u;
    let mag = b & F32_ABS_MASK;
    if (mag > F32_POS_INF) {
        return sign | 0x7e00u | ((mag >> 13u) & 0x3ffu);
    }
    if (mag >= 0x477ff000u) {
        return sign | 0x7c00u;
    }
    if (mag >= 0x38800000u) {
        // Normal: re-bias the exponent (127 - 15), round the 13 dropped bits to even.
        let r = mag - 0x38000000u;
        return sign | ((r + 0xfffu + ((r >> 13u) & 1u)) >> 13u);
    }
    if (mag < 0x33000000u) {
        // Below 2^-25 (half the smallest subnormal, which ties to even zero too).
        return sign;
    }
    // Subnormal: the 24-bit significand shifted to units of 2^-24, rounded to even.
    let m = (mag & 0x7fffffu) | 0x800000u;
    let shift = 126u - (mag >> 23u);
    let q = m >> shift;
    let rem = m & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    let up = rem > half || (rem == half && (q & 1u) == 1u);
    return sign | (q + select(0u, 1u, up));
}

// e^d for d <= 0 (d clamped to EXP_ARG_MIN): Cody-Waite reduction d = k ln2 + r, |r| <= ln2 / 2,
// then a degree-7 Taylor polynomial (truncation < 1e-8 relative) scaled by 2^k built from its
// bits. About 1 ulp for every d whose result is normal; results below 2^-126 flush to 0. WGSL's
// builtin `exp` is only bounded by 3 + 2|d| ulp.
fn ld_exp_neg(d: f32) -> f32 {
    let x = max(d, EXP_ARG_MIN);
    let k = round(x * LOG2E);
    // 2^k for k >= -126; the biased exponent clamps to 0 (the f32 zero) below that.
    return ld_exp_reduced(x, k) * bitcast<f32>(u32(max(i32(k) + 127, 0)) << 23u);
}

// e^(x - k ln 2) for |x - k ln 2| <= ln2 / 2 (k = round(x / ln 2)): Cody-Waite, degree 7.
fn ld_exp_reduced(x: f32, k: f32) -> f32 {
    let r = (x - k * LN2_HI) - k * LN2_LO;
    return 1.0 + r * (1.0 + r * (0.5 + r * (0.16666667 + r * (0.041666668
        + r * (0.008333334 + r * (0.0013888889 + r * 0.0001984127))))));
}

// 2 atanh(f) = ln((1 + f) / (1 - f)) for |f| <= 3 - 2 sqrt 2 (= 0.1716): odd series to f^11.
fn ld_atanh2(f: f32) -> f32 {
    let f2 = f * f;
    return f * (2.0 + f2 * (0.6666667 + f2 * (0.4 + f2 * (0.2857143 + f2 * (0.22222222
        + f2 * 0.18181819)))));
}

// ln y for a finite, positive, normal y: y = 2^e m with m in [sqrt(1/2), sqrt 2).
fn ld_log(y: f32) -> f32 {
    let fr = frexp(y);
    var m = fr.fract;
    var e = fr.exp;
    if (m < SQRT_HALF) {
        m = m * 2.0;
        e = e - 1;
    }
    let ef = f32(e);
    return ef * LN2_HI + (ld_atanh2((m - 1.0) / (m + 1.0)) + ef * LN2_LO);
}

// ln(1 + s) for s >= 0, accurate to a few ulp relative for every s (WGSL has no log1p).
fn ld_log1p(s: f32) -> f32 {
    if (s < SQRT_TWO_MINUS_ONE) {
        return ld_atanh2(s / (2.0 + s));
    }
    return ld_log(1.0 + s);
}

// ---------------------------------------------------------------------------------------------
// The log-sum-exp monoid. A state summarises a set of values:
//   m     the largest finite value (meaningful only with FLAG_NONEMPTY),
//   s     the sum of exp(x - m) over the finite values other than one instance of m,
//   flags FLAG_NONEMPTY (a finite value was seen), FLAG_NAN, FLAG_POS_INF.
// -inf entries are absent. log-sum-exp = m + log1p(s) (Blanchard, Higham & Higham 2021).
// `lse_combine` is associative up to rounding and commutative bit for bit, so every lane of a
// butterfly ends with the same state. The Rust mirror is `reference::logsumexp`.

const FLAG_NONEMPTY: u32 = 1u;
const FLAG_NAN: u32 = 2u;
const FLAG_POS_INF: u32 = 4u;

struct LseState {
    m: f32,
    s: f32,
    flags: u32,
}

fn lse_identity() -> LseState {
    return LseState(0.0, 0.0, 0u);
}

// Adds one value, given as its f32 bit pattern. Branch-free for finite values: both updates are
// computed and selected, which is what SIMD hardware (and software adapters) would do anyway.
fn lse_push(st: LseState, bits: u32) -> LseState {
    let mag = bits & F32_ABS_MASK;
    if (mag >= F32_POS_INF) {
        if (mag > F32_POS_INF) {
            return LseState(st.m, st.s, st.flags | FLAG_NAN);
        }
        if (bits == F32_POS_INF) {
            return LseState(st.m, st.s, st.flags | FLAG_POS_INF);
        }
        return st;
    }
    let x = bitcast<f32>(bits);
    let d = x - st.m;
    let e = ld_exp_neg(-abs(d));
    let first = (st.flags & FLAG_NONEMPTY) == 0u;
    let up = d > 0.0;
    let s = select(st.s + e, (st.s + 1.0) * e, up);
    return LseState(select(st.m, x, up || first), select(s, 0.0, first), st.flags | FLAG_NONEMPTY);
}

fn lse_combine(a: LseState, b: LseState) -> LseState {
    let flags = a.flags | b.flags;
    if ((a.flags & FLAG_NONEMPTY) == 0u) {
        return LseState(b.m, b.s, flags);
    }
    if ((b.flags & FLAG_NONEMPTY) == 0u) {
        return LseState(a.m, a.s, flags);
    }
    if (a.m > b.m) {
        return LseState(a.m, a.s + ld_exp_neg(b.m - a.m) * (1.0 + b.s), flags);
    }
    if (b.m > a.m) {
        return LseState(b.m, b.s + ld_exp_neg(a.m - b.m) * (1.0 + a.s), flags);
    }
    return LseState(a.m, (a.s + b.s) + 1.0, flags);
}

// log-sum-exp of the summarised set, as f32 bits (SciPy >= 1.15 semantics).
fn lse_result_bits(st: LseState) -> u32 {
    if ((st.flags & FLAG_NAN) != 0u) {
        return F32_NAN;
    }
    if ((st.flags & FLAG_POS_INF) != 0u) {
        return F32_POS_INF;
    }
    if ((st.flags & FLAG_NONEMPTY) == 0u) {
        return F32_NEG_INF;
    }
    // In IEEE arithmetic m + log1p(s) is never -0 (a -0 max gives -0 + 0 = +0); a compiler
    // that assumes no signed zeros may fold the sum to m when it can prove s = 0 (a row of one
    // entry, specialised), so the sign of zero is set here.
    let r = bitcast<u32>(st.m + ld_log1p(st.s));
    return select(r, 0u, r == 0x80000000u);
}

// log_softmax of one entry (bits) of the row summarised by st; l1p = ld_log1p(st.s).
fn log_softmax_bits(st: LseState, l1p: f32, bits: u32) -> u32 {
    if ((st.flags & FLAG_NAN) != 0u) {
        return F32_NAN;
    }
    if ((st.flags & FLAG_POS_INF) != 0u) {
        return select(F32_NEG_INF, F32_NAN, bits == F32_POS_INF);
    }
    if ((st.flags & FLAG_NONEMPTY) == 0u) {
        return F32_NAN;
    }
    if (bits == F32_NEG_INF) {
        return F32_NEG_INF;
    }
    return bitcast<u32>((bitcast<f32>(bits) - st.m) - l1p);
}

// softmax of one entry (bits) of the row summarised by st; denom = 1 + st.s.
fn softmax_bits(st: LseState, denom: f32, bits: u32) -> u32 {
    if ((st.flags & (FLAG_NAN | FLAG_POS_INF)) != 0u || (st.flags & FLAG_NONEMPTY) == 0u) {
        return F32_NAN;
    }
    if (bits == F32_NEG_INF) {
        return 0u;
    }
    return bitcast<u32>(ld_exp_neg(bitcast<f32>(bits) - st.m) / denom);
}

// =============================================================================================
// Bit-pattern arithmetic and the sum monoid: the likelihood module's, and the weighted
// log-sum-exp's in both the likelihood module (weighted.wgsl) and the N-d log-sum-exp
// (logsumexp_axes.wgsl). Mirror: src/reference/likelihood.rs.

const F32_MIN_NORMAL_BITS: u32 = 0x00800000u;
// ---------------------------------------------------------------------------------------------
// IEEE arithmetic on bit patterns, for the operands that may be infinite or NaN.

fn is_nan_bits(v: u32) -> bool {
    return (v & F32_ABS_MASK) > F32_POS_INF;
}

fn is_finite_bits(v: u32) -> bool {
    return (v & F32_ABS_MASK) < F32_POS_INF;
}

fn is_inf_bits(v: u32) -> bool {
    return (v & F32_ABS_MASK) == F32_POS_INF;
}

fn neg_bits(v: u32) -> u32 {
    return v ^ 0x80000000u;
}

fn xmul(x: u32, y: u32) -> u32 {
    if (is_nan_bits(x) || is_nan_bits(y)) {
        return F32_NAN;
    }
    if (is_inf_bits(x) || is_inf_bits(y)) {
        if ((x & F32_ABS_MASK) == 0u || (y & F32_ABS_MASK) == 0u) {
            return F32_NAN;
        }
        return F32_POS_INF | ((x ^ y) & 0x80000000u);
    }
    return bitcast<u32>(bitcast<f32>(x) * bitcast<f32>(y));
}

fn xadd(x: u32, y: u32) -> u32 {
    if (is_nan_bits(x) || is_nan_bits(y)) {
        return F32_NAN;
    }
    if (is_inf_bits(x)) {
        if (is_inf_bits(y) && x != y) {
            return F32_NAN;
        }
        return x;
    }
    if (is_inf_bits(y)) {
        return y;
    }
    return bitcast<u32>(bitcast<f32>(x) + bitcast<f32>(y));
}

fn xsub(x: u32, y: u32) -> u32 {
    return xadd(x, neg_bits(y));
}

fn xdiv(x: u32, y: u32) -> u32 {
    if (is_nan_bits(x) || is_nan_bits(y)) {
        return F32_NAN;
    }
    let sign = (x ^ y) & 0x80000000u;
    let y_zero = (y & F32_ABS_MASK) == 0u;
    if (is_inf_bits(x)) {
        if (is_inf_bits(y)) {
            return F32_NAN;
        }
        return F32_POS_INF | sign;
    }
    if (is_inf_bits(y)) {
        return sign;
    }
    if (y_zero) {
        if ((x & F32_ABS_MASK) == 0u) {
            return F32_NAN;
        }
        return F32_POS_INF | sign;
    }
    return bitcast<u32>(bitcast<f32>(x) / bitcast<f32>(y));
}

// ln of a value given as bits: NaN for NaN and negatives, -inf for zero, +inf for +inf;
// subnormals are read from their bits (exact, whatever the device does with denormals).
fn xlog(v: u32) -> u32 {
    if (is_nan_bits(v)) {
        return F32_NAN;
    }
    if ((v & F32_ABS_MASK) == 0u) {
        return F32_NEG_INF;
    }
    if ((v & 0x80000000u) != 0u) {
        return F32_NAN;
    }
    if (v == F32_POS_INF) {
        return F32_POS_INF;
    }
    if (v < F32_MIN_NORMAL_BITS) {
        // v = mantissa * 2^-149, the mantissa an integer below 2^23 (exact in f32).
        return bitcast<u32>(ld_log(f32(v)) - 149.0 * LN2_HI - 149.0 * LN2_LO);
    }
    return bitcast<u32>(ld_log(bitcast<f32>(v)));
}

fn f32b(x: f32) -> u32 {
    return bitcast<u32>(x);
}

// ---------------------------------------------------------------------------------------------
// The sum monoid.

const SUM_NAN: u32 = 1u;
const SUM_POS_INF: u32 = 2u;
const SUM_NEG_INF: u32 = 4u;
// s (w) holds the sum times 2^-64.
const SUM_BIG_S: u32 = 8u;
const SUM_BIG_W: u32 = 16u;
// 2^64 and 2^-64: scaling by them is exact (down to the normal range).
const TWO_POW_64: f32 = 18446744073709551616.0;
const TWO_POW_M64: f32 = 5.421010862427522e-20;
// 64 ln 2, the log of 2^64.
const LN_TWO_POW_64: f32 = 44.3614195558365;

struct SumState {
    s: f32,
    w: f32,
    flags: u32,
}

fn sum_identity() -> SumState {
    return SumState(0.0, 0.0, 0u);
}

// Adds a value (bits) with weight w (finite).
fn sum_push(st: SumState, vb: u32, w: f32) -> SumState {
    if (is_finite_bits(vb)) {
        return SumState(st.s + bitcast<f32>(vb), st.w + w, st.flags);
    }
    var f = SUM_NAN;
    if (vb == F32_POS_INF) {
        f = SUM_POS_INF;
    } else if (vb == F32_NEG_INF) {
        f = SUM_NEG_INF;
    }
    return SumState(st.s, st.w + w, st.flags | f);
}

// x + y of two sums, each scaled by 2^-64 where `xb` / `yb`; the result is scaled (and `big`
// set) once either is scaled or reaches 2^64, so it stays far below f32's range: a scaled sum of
// 2^32 values is below 2^96.
struct Scaled {
    v: f32,
    big: bool,
}

fn scaled_add(x: f32, xb: bool, y: f32, yb: bool) -> Scaled {
    if (!xb && !yb && abs(x) < TWO_POW_64 && abs(y) < TWO_POW_64) {
        return Scaled(x + y, false);
    }
    let xs = select(x * TWO_POW_M64, x, xb);
    let ys = select(y * TWO_POW_M64, y, yb);
    return Scaled(xs + ys, true);
}

fn sum_combine(x: SumState, y: SumState) -> SumState {
    let s = scaled_add(x.s, (x.flags & SUM_BIG_S) != 0u, y.s, (y.flags & SUM_BIG_S) != 0u);
    let w = scaled_add(x.w, (x.flags & SUM_BIG_W) != 0u, y.w, (y.flags & SUM_BIG_W) != 0u);
    let flags = (x.flags | y.flags) & ~(SUM_BIG_S | SUM_BIG_W);
    return SumState(s.v, w.v, flags | select(0u, SUM_BIG_S, s.big) | select(0u, SUM_BIG_W, w.big));
}

// The term b·e^(x − m) of an entry (its bits xb, its weight's wb) of a row whose max over the
// nonzero-weighted entries is hib (bits; NaN, +inf, or −inf for none): the positive part in s,
// the negative part's magnitude in w, an infinite or NaN term as a flag; nothing for b = 0.
fn signed_term(xb: u32, wb: u32, hib: u32) -> SumState {
    var st = sum_identity();
    if ((wb & F32_ABS_MASK) == 0u) {
        return st;
    }
    if (!is_finite_bits(hib) && hib != F32_POS_INF) {
        // NaN or an empty row: the finish decides from the parts alone.
        return st;
    }
    var t: u32;
    if (xb == F32_POS_INF) {
        t = F32_POS_INF;
    } else if (hib == F32_POS_INF || !is_finite_bits(xb)) {
        // Finite or −inf entries beside a +inf one weigh nothing.
        t = 0u;
    } else {
        t = f32b(ld_exp_neg(bitcast<f32>(xb) - bitcast<f32>(hib)));
    }
    let v = xmul(wb, t);
    if (is_nan_bits(v)) {
        st.flags = SUM_NAN;
    } else if (v == F32_POS_INF) {
        st.flags = SUM_POS_INF;
    } else if (v == F32_NEG_INF) {
        st.flags = SUM_NEG_INF;
    } else {
        let f = bitcast<f32>(v);
        st.s = max(f, 0.0);
        st.w = max(-f, 0.0);
    }
    return st;
}

// (log|P − N|, sign) as bits, from the row max hib (as for `signed_term`) and the terms' sums.
fn weighted_result(hib: u32, st: SumState) -> vec2<u32> {
    var lse = F32_NAN;
    var sign = F32_NAN;
    let pos = (st.flags & SUM_POS_INF) != 0u;
    let neg = (st.flags & SUM_NEG_INF) != 0u;
    if (is_nan_bits(hib) || (st.flags & SUM_NAN) != 0u || (pos && neg)) {
        // NaN.
    } else if (pos || neg) {
        lse = F32_POS_INF;
        sign = select(f32b(-1.0), f32b(1.0), pos);
    } else if (hib == F32_NEG_INF || hib == F32_POS_INF) {
        // No entry with a nonzero weight (or, for +inf, only zero-weighted ones): empty.
        lse = F32_NEG_INF;
        sign = 0u;
    } else {
        // Sums of 2^64 or more are held times 2^-64 (`sum_combine`): both on one scale, and
        // 64 ln 2 back in the log.
        let bs = (st.flags & SUM_BIG_S) != 0u;
        let bw = (st.flags & SUM_BIG_W) != 0u;
        var s = st.s;
        var w = st.w;
        var shift = 0.0;
        if (bs || bw) {
            s = select(s * TWO_POW_M64, s, bs);
            w = select(w * TWO_POW_M64, w, bw);
            shift = LN_TWO_POW_64;
        }
        let d = s - w;
        if (d == 0.0) {
            lse = F32_NEG_INF;
            sign = 0u;
        } else {
            lse = f32b(bitcast<f32>(hib) + (bitcast<f32>(xlog(f32b(abs(d)))) + shift));
            sign = select(f32b(-1.0), f32b(1.0), d > 0.0);
        }
    }
    return vec2<u32>(lse, sign);
}

// ln(f32::MAX): e^x overflows above it.
const EXP_ARG_MAX: f32 = 88.72284;

// e^x for a finite x: ld_exp_neg below zero, the same reduction above, +inf past ln(f32::MAX).
fn ld_exp(x: f32) -> u32 {
    if (x <= 0.0) {
        return bitcast<u32>(ld_exp_neg(x));
    }
    if (x > EXP_ARG_MAX) {
        return F32_POS_INF;
    }
    let k = round(x * LOG2E);
    let p = ld_exp_reduced(x, k);
    // 2^k as 2^(k - 1) * 2, so k = 128 stays representable.
    let scale = bitcast<f32>(u32(i32(k) + 126) << 23u);
    let v = p * scale * 2.0;
    if (v > 3.4028235e38) {
        return F32_POS_INF;
    }
    return bitcast<u32>(v);
}

fn xexp(v: u32) -> u32 {
    if (is_nan_bits(v)) {
        return F32_NAN;
    }
    if (v == F32_POS_INF) {
        return F32_POS_INF;
    }
    if (v == F32_NEG_INF) {
        return 0u;
    }
    return ld_exp(bitcast<f32>(v));
}

// v · 2^(64 e) as bits, e in {-1, 0, 1}, for a finite v: ±inf where it exceeds f32 (|v| ≥ 2^64
// with e = 1; below that the product is exact), and a value below the normal range as the
// device rounds it.
fn scale_bits(v: f32, e: i32) -> u32 {
    if (e == 0) {
        return f32b(v);
    }
    if (e < 0) {
        return f32b(v * TWO_POW_M64);
    }
    if (abs(v) >= TWO_POW_64) {
        return F32_POS_INF | (f32b(v) & 0x80000000u);
    }
    return f32b(v * TWO_POW_64);
}

fn big_s(st: SumState) -> i32 {
    return select(0, 1, (st.flags & SUM_BIG_S) != 0u);
}

fn big_w(st: SumState) -> i32 {
    return select(0, 1, (st.flags & SUM_BIG_W) != 0u);
}

// The total as bits: NaN if a NaN or both infinities were seen, else the infinity seen, else s.
fn sum_total_bits(st: SumState) -> u32 {
    if ((st.flags & SUM_NAN) != 0u || (st.flags & (SUM_POS_INF | SUM_NEG_INF)) == (SUM_POS_INF | SUM_NEG_INF)) {
        return F32_NAN;
    }
    if ((st.flags & SUM_POS_INF) != 0u) {
        return F32_POS_INF;
    }
    if ((st.flags & SUM_NEG_INF) != 0u) {
        return F32_NEG_INF;
    }
    return scale_bits(st.s, big_s(st));
}

// The backward of the log-sum-exp family at one entry (bits in, bits out), shared by the row ops
// (gradients.wgsl) and the N-d ones (logsumexp_axes.wgsl). Mirror: src/reference/gradients.rs.
// logsumexp: g · exp(x − lse); NaN where lse is NaN or +inf or x is NaN, 0 at x = −inf.
fn lse_backward_bits(xb: u32, gb: u32, lse: u32) -> u32 {
    if (is_nan_bits(lse) || lse == F32_POS_INF || is_nan_bits(xb)) {
        return F32_NAN;
    }
    if (xb == F32_NEG_INF) {
        return 0u;
    }
    if (!is_finite_bits(lse)) {
        return F32_NAN;
    }
    return xmul(gb, ld_exp(bitcast<f32>(xb) - bitcast<f32>(lse)));
}

// log_softmax (its output y): g − exp(y) · Σ g; NaN at NaN outputs, 0 at −inf ones.
fn log_softmax_backward_bits(yb: u32, gb: u32, sum_g: u32) -> u32 {
    if (is_nan_bits(yb)) {
        return F32_NAN;
    }
    if (yb == F32_NEG_INF) {
        return 0u;
    }
    return xsub(gb, xmul(xexp(yb), sum_g));
}

// softmax (its output p): p · (g − Σ g p); NaN at NaN probabilities, 0 at zero ones.
fn softmax_backward_bits(pb: u32, gb: u32, sum_gp: u32) -> u32 {
    if (is_nan_bits(pb)) {
        return F32_NAN;
    }
    if ((pb & F32_ABS_MASK) == 0u) {
        return 0u;
    }
    return xmul(pb, xsub(gb, sum_gp));
}
