// Log-likelihood reductions: per-element losses (Gaussian, Bernoulli from logits, Poisson, ln for
// log_prod, the label-smoothing term of cross-entropy), the categorical loss per row, and the
// deterministic pairwise sum that reduces them on the GPU. Needs common.wgsl before it.
// Mirror: src/reference/likelihood.rs. Host: src/likelihood.rs. The module also holds
// gmm.wgsl and gradients.wgsl, which use its bindings.
//
// Entry points are specialised by override constants (OP values in blocks by file: 0-4 here,
// 5-15 gradients.wgsl, 16-23 transform.wgsl, 24-27 masked.wgsl, 28-31 weighted.wgsl; every OP,
// MODE and FINISH code of the module is in src/codes.rs, checked against this WGSL):
//   OP      which per-element value `elementwise` computes (OP_* below);
//   REDUCE  0: write one value per element (per row for `categorical`);
//           1: write one partial sum per chunk of CHUNK elements (per row for `categorical`);
//   WG      the workgroup size.
//
// Partial sums are SumState triples (s, w, flags): s the sum of the finite values, w the sum of
// the weights that a weighted mean divides by, flags the special values seen and the scale of s
// and of w. A sum that reaches 2^64 is carried scaled by 2^-64 from then on (SUM_BIG_S, SUM_BIG_W),
// so that a sum of finite values cannot overflow midway: the true value of a sum, a mean or a
// weighted mean is what comes out, infinite only if it exceeds f32 itself. A chunk is summed
// pairwise (a binary counter over its values), and `reduce` sums CHUNK partials at a time the
// same way, level after level: the rounding error of a sum of N values grows with log2 N, and
// the order depends only on the shape, so the same input gives the same bits on a device.
//
// Special values are handled from their bit patterns by the x-ops below, which follow IEEE 754
// (as PyTorch's formulas evaluate on the CPU) without relying on the compiler keeping inf or NaN.

override OP: u32 = 0u;
override REDUCE: u32 = 0u;
override WG: u32 = 64u;
// Binding a holds IEEE binary16 entries, two to a word (the first in the low half), read by
// `load_a` (offsets into a then count f16 entries). Set only for passes whose sole per-element
// input is a: the logits of the categorical losses' passes, the points of gmm_log_joint.
override IN_F16: bool = false;

const OP_GAUSSIAN: u32 = 0u;
const OP_BCE: u32 = 1u;
const OP_POISSON: u32 = 2u;
const OP_LN: u32 = 3u;
const OP_SMOOTH: u32 = 4u;

// Bits of LlParams.mode.
const MODE_FULL: u32 = 1u;
const MODE_LOG_INPUT: u32 = 2u;
const MODE_SHARED_C: u32 = 4u;
const MODE_WEIGHTED: u32 = 8u;
const MODE_NLL: u32 = 16u;
const MODE_TRIANGULAR: u32 = 32u;
// Cross-entropy with class-probability targets: OP_SMOOTH sums w_c t'_c (-log_softmax_c) (b the
// targets, c the class weights and the parts at c2_off), `categorical` writes those row sums.
const MODE_SOFT: u32 = 8192u;

// What the last level of `reduce` writes (LlParams.finish).
const FINISH_PARTIAL: u32 = 0u;
const FINISH_SUM: u32 = 1u;
const FINISH_MEAN_WEIGHT: u32 = 2u;
const FINISH_MEAN_COUNT: u32 = 3u;
// The summed weights alone (the denominator of a weighted mean), whatever the values were.
const FINISH_WEIGHT: u32 = 4u;
// The second sum (w) of states that carry two sums, NaN if a NaN was flagged.
const FINISH_SECOND: u32 = 5u;

const CHUNK: u32 = 64u;
const HALF_LN_TWO_PI: f32 = 0.9189385332046728;
const TWO_PI: f32 = 6.283185307179586;

// Mirrors `shaders::LlParams` (src/shaders.rs). Element offsets count u32 inside bound windows.
struct LlParams {
    rows: u32,
    cols: u32,
    col0: u32,
    col1: u32,
    row0: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    out_off: u32,
    mode: u32,
    eps: f32,
    smoothing: f32,
    ignore: i32,
    len_in: u32,
    finish: u32,
    count: f32,
    slots: u32,
    k: u32,
    kb: u32,
    c2_off: u32,
    // The categorical losses' class axis: 0 for rows of `cols` classes; otherwise PyTorch's
    // axis 1 of (N, C, d1, ..., dk), the classes `inner` = d1 ... dk entries apart (`class_entry`).
    inner: u32,
}

@group(0) @binding(0) var<uniform> params: LlParams;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read> c: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

// Entry i of binding a as f32 bits (decoded exactly when IN_F16).
fn load_a(i: u32) -> u32 {
    if (IN_F16) {
        return f16_entry_bits(a[i >> 1u], i);
    }
    return a[i];
}

fn ll_linear(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

// Where class `col` of categorical row `row` lies past the window's first entry (that of row
// row0, class col0). Rows of `cols` classes (inner 0) are packed. With the classes on axis 1 of
// (N, C, d1, ..., dk) (inner = d1 ... dk), row r = n inner + p is position p of sample n, whose
// class c is entry n C inner + c inner + p. The difference from (row0, col0) is taken in u32: it is
// below the window's size, whatever the intermediate terms wrap to.
fn class_entry(row: u32, col: u32) -> u32 {
    if (params.inner == 0u) {
        return (row - params.row0) * params.cols + col - params.col0;
    }
    let n = row / params.inner;
    let n0 = params.row0 / params.inner;
    let p = row - n * params.inner;
    let p0 = params.row0 - n0 * params.inner;
    return (n - n0) * params.cols * params.inner + p - p0 + (col - params.col0) * params.inner;
}

// The indices of the (hi, lo) log-sum-exp parts of categorical row `row` stored from word `off`:
// side by side
// (`RowFn::LogsumexpParts` of rows), or, on the class axis, every row's hi then every row's lo
// (the N-d op's parts, `len_in` rows).
fn parts_at(off: u32, row: u32) -> vec2<u32> {
    if (params.inner == 0u) {
        return vec2<u32>(2u * row + off, 2u * row + off + 1u);
    }
    return vec2<u32>(off + row, off + params.len_in + row);
}

// softplus(z) = ln(1 + e^z) = max(z, 0) + log1p(e^-|z|), for finite z.
fn softplus(z: f32) -> f32 {
    return max(z, 0.0) + ld_log1p(ld_exp_neg(-abs(z)));
}

// ---------------------------------------------------------------------------------------------
// Per-element values, as f32 bits.

// F.gaussian_nll_loss: 0.5 (ln v + (x - y)^2 / v) [+ 0.5 ln 2 pi], v = max(var, eps). A negative
// variance is NaN here (the blocking API rejects it first, as PyTorch does).
fn gaussian_bits(xb: u32, yb: u32, vb: u32) -> u32 {
    // The common case, finite operands and a positive normal variance after the clamp, without
    // the special-value arithmetic.
    if (is_finite_bits(xb) && is_finite_bits(yb) && vb < F32_POS_INF) {
        let v = max(bitcast<f32>(vb), params.eps);
        if (v >= 1.17549435e-38) {
            let d = bitcast<f32>(xb) - bitcast<f32>(yb);
            var loss = ld_log(v) + d * d / v;
            if ((params.mode & MODE_FULL) != 0u) {
                loss += 2.0 * HALF_LN_TWO_PI;
            }
            return f32b(0.5 * loss);
        }
    }
    if (is_nan_bits(vb) || ((vb & 0x80000000u) != 0u && (vb & F32_ABS_MASK) != 0u)) {
        return F32_NAN;
    }
    var v = vb & F32_ABS_MASK;
    if (is_finite_bits(v)) {
        v = f32b(max(bitcast<f32>(v), params.eps));
    }
    let d = xsub(xb, yb);
    let q = xdiv(xmul(d, d), v);
    var loss = xadd(xlog(v), q);
    if ((params.mode & MODE_FULL) != 0u) {
        loss = xadd(loss, f32b(2.0 * HALF_LN_TWO_PI));
    }
    return xmul(loss, f32b(0.5));
}

// F.binary_cross_entropy_with_logits: (1 - y) x - lw ln sigmoid(x), lw = 1 + (pw - 1) y.
// For finite operands it is evaluated as (1 - y) softplus(x) + pw y softplus(-x), the same
// function without the cancellation of x against softplus(-x) (PyTorch's form loses the result
// for large negative x and y = 0); otherwise PyTorch's form in IEEE arithmetic.
fn bce_bits(xb: u32, yb: u32, pwb: u32) -> u32 {
    if (is_finite_bits(xb) && is_finite_bits(yb) && is_finite_bits(pwb)) {
        let x = bitcast<f32>(xb);
        let y = bitcast<f32>(yb);
        let pw = bitcast<f32>(pwb);
        return f32b((1.0 - y) * softplus(x) + (pw * y) * softplus(-x));
    }
    let one = f32b(1.0);
    var log_sig = F32_NAN;
    if (is_finite_bits(xb)) {
        log_sig = f32b(-softplus(-bitcast<f32>(xb)));
    } else if (xb == F32_POS_INF) {
        log_sig = 0u;
    } else if (xb == F32_NEG_INF) {
        log_sig = F32_NEG_INF;
    }
    let lw = xadd(one, xmul(xsub(pwb, one), yb));
    return xsub(xmul(xsub(one, yb), xb), xmul(log_sig, lw));
}

// F.poisson_nll_loss: e^x - y x (log_input) or x - y ln(x + eps); with `full`, the Stirling term
// y ln y - y + 0.5 ln(2 pi y) where y > 1.
fn poisson_bits(xb: u32, yb: u32) -> u32 {
    var loss: u32;
    let log_input = (params.mode & MODE_LOG_INPUT) != 0u;
    if (log_input && is_finite_bits(xb) && is_finite_bits(yb) && bitcast<f32>(xb) <= EXP_ARG_MAX
        && (params.mode & MODE_FULL) == 0u) {
        // The common case without the special-value arithmetic.
        let x = bitcast<f32>(xb);
        return f32b(bitcast<f32>(ld_exp(x)) - bitcast<f32>(yb) * x);
    }
    if (log_input) {
        loss = xsub(xexp(xb), xmul(yb, xb));
    } else {
        loss = xsub(xb, xmul(yb, xlog(xadd(xb, f32b(params.eps)))));
    }
    if ((params.mode & MODE_FULL) != 0u && !is_nan_bits(yb) && bitcast<f32>(yb) > 1.0) {
        let stirling = xadd(xsub(xmul(yb, xlog(yb)), yb),
            xmul(f32b(0.5), xlog(xmul(f32b(TWO_PI), yb))));
        loss = xadd(loss, stirling);
    }
    return loss;
}

// The label-smoothing term of one logit: w_c (-log_softmax_c) = w_c ((hi - x_c) + lo), with
// (hi, lo) the row's log-sum-exp parts (`RowFn::LogsumexpParts`); NaN for a row whose parts are
// not finite (a NaN or +inf logit, or every logit -inf).
fn smooth_bits(xb: u32, hi: u32, lo: u32, wb: u32) -> u32 {
    if (!is_finite_bits(hi)) {
        return F32_NAN;
    }
    let nll = xadd(xsub(hi, xb), lo);
    return xmul(wb, nll);
}

// The probability-target term of one logit: (-log_softmax_c) t'_c w_c, PyTorch's order, with
// t' = t (1 - label_smoothing) + label_smoothing / C where label smoothing is on; NaN for a row
// whose parts are not finite, and IEEE's 0 * inf = NaN where a zero target meets a -inf logit.
fn soft_bits(xb: u32, hi: u32, lo: u32, tb: u32, wb: u32) -> u32 {
    if (!is_finite_bits(hi)) {
        return F32_NAN;
    }
    var t = tb;
    if (params.smoothing > 0.0) {
        t = xadd(xmul(tb, f32b(params.eps)), f32b(params.smoothing));
    }
    return xmul(xmul(xadd(xsub(hi, xb), lo), t), wb);
}

// The summed weights as bits.
fn sum_weight_bits(st: SumState) -> u32 {
    return scale_bits(st.w, big_w(st));
}

// Whether the sum saw no special value (its total is s, scaled as flagged).
fn sum_is_finite(st: SumState) -> bool {
    return (st.flags & (SUM_NAN | SUM_POS_INF | SUM_NEG_INF)) == 0u;
}

// The total divided by d (bits of a finite value) and by 2^(64 e): the mean by a count or the
// weighted mean, computed on the scaled sum so that neither overflows midway.
fn sum_ratio_bits(st: SumState, d: f32, e: i32) -> u32 {
    if (!sum_is_finite(st)) {
        return xdiv(sum_total_bits(st), f32b(d));
    }
    let q = xdiv(f32b(st.s), f32b(d));
    if (!is_finite_bits(q)) {
        return q;
    }
    return scale_bits(bitcast<f32>(q), big_s(st) - e);
}

// Pairwise summation of a stream: a binary counter of partial sums. Level i holds the sum of a
// block of 2^i values while bit i of the count is set; a push carries through the set low bits,
// combining the older block first. Eight levels hold up to 255 values (a counter sums CHUNK = 64).
// The levels are separate private variables rather than an array: every index is a constant, so
// compilers keep them in registers (an array indexed by the count lives in memory on llvmpipe),
// and nothing goes behind a function pointer, which GLSL would copy in and out of every call.
// The order of the additions is the stack formulation's, so sums are bit for bit the same as the
// CPU mirror's `pairwise`.
var<private> pw_l0: SumState;
var<private> pw_l1: SumState;
var<private> pw_l2: SumState;
var<private> pw_l3: SumState;
var<private> pw_l4: SumState;
var<private> pw_l5: SumState;
var<private> pw_l6: SumState;
var<private> pw_l7: SumState;
var<private> pw_n: u32;

fn pairwise_reset() {
    pw_n = 0u;
}

fn pairwise_push(st: SumState) {
    let n = pw_n;
    pw_n = n + 1u;
    var carry = st;
    if ((n & 1u) == 0u) {
        pw_l0 = carry;
        return;
    }
    carry = sum_combine(pw_l0, carry);
    if ((n & 2u) == 0u) {
        pw_l1 = carry;
        return;
    }
    carry = sum_combine(pw_l1, carry);
    if ((n & 4u) == 0u) {
        pw_l2 = carry;
        return;
    }
    carry = sum_combine(pw_l2, carry);
    if ((n & 8u) == 0u) {
        pw_l3 = carry;
        return;
    }
    carry = sum_combine(pw_l3, carry);
    if ((n & 16u) == 0u) {
        pw_l4 = carry;
        return;
    }
    carry = sum_combine(pw_l4, carry);
    if ((n & 32u) == 0u) {
        pw_l5 = carry;
        return;
    }
    carry = sum_combine(pw_l5, carry);
    if ((n & 64u) == 0u) {
        pw_l6 = carry;
        return;
    }
    pw_l7 = sum_combine(pw_l6, carry);
}

// The blocks from the most recent (lowest level) to the oldest, each added in front.
fn pairwise_total() -> SumState {
    let n = pw_n;
    var total = sum_identity();
    if ((n & 1u) != 0u) {
        total = sum_combine(pw_l0, total);
    }
    if ((n & 2u) != 0u) {
        total = sum_combine(pw_l1, total);
    }
    if ((n & 4u) != 0u) {
        total = sum_combine(pw_l2, total);
    }
    if ((n & 8u) != 0u) {
        total = sum_combine(pw_l3, total);
    }
    if ((n & 16u) != 0u) {
        total = sum_combine(pw_l4, total);
    }
    if ((n & 32u) != 0u) {
        total = sum_combine(pw_l5, total);
    }
    if ((n & 64u) != 0u) {
        total = sum_combine(pw_l6, total);
    }
    if ((n & 128u) != 0u) {
        total = sum_combine(pw_l7, total);
    }
    return total;
}

fn store_partial(slot: u32, st: SumState) {
    let at = params.out_off + 3u * slot;
    out[at] = f32b(st.s);
    out[at + 1u] = f32b(st.w);
    out[at + 2u] = st.flags;
}

fn load_partial(i: u32) -> SumState {
    let at = params.a_off + 3u * i;
    return SumState(bitcast<f32>(a[at]), bitcast<f32>(a[at + 1u]), a[at + 2u]);
}

// ---------------------------------------------------------------------------------------------
// Entry points.

// One invocation per chunk of CHUNK consecutive elements of one row, over rows x [col0, col1)
// of a rows x cols matrix (rows = 1 for the flat losses). Element (r, col) is at
// r * cols + col - col0 past each window's offset (OP_SMOOTH on a class axis: `class_entry`). REDUCE 0 writes each value at the same place
// in `out`; REDUCE 1 writes the chunk's pairwise sum at partial slot
// (row0 + r) * slots + col / CHUNK.
@compute @workgroup_size(WG)
fn elementwise(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let span = elem_span(ll_linear(wid, nwg, lid));
    if (!span.live) {
        return;
    }
    let r = span.r;
    let start = span.start;
    let end = span.end;
    var base = span.base;
    var step = 1u;
    if (OP == OP_SMOOTH && params.inner != 0u) {
        // The classes on axis 1 (`class_entry`), `inner` entries apart.
        base = class_entry(params.row0 + r, 0u);
        step = params.inner;
    }
    pairwise_reset();
    for (var col = start; col < end; col++) {
        let i = base + col * step;
        let xb = load_a(params.a_off + i);
        var v: u32;
        if (OP == OP_W_TERMS) {
            // Weighted log-sum-exp with signs (weighted.wgsl): two sums at once.
            pairwise_push(weighted_term(xb, i, params.row0 + r, col));
            continue;
        } else if (OP == OP_W_SUBST) {
            v = weighted_value(xb, i, col);
        } else if (OP >= OP_MASK_FIRST) {
            // Masks (masked.wgsl).
            v = mask_bits(xb, i, params.row0 + r, col);
        } else if (OP >= OP_LOG_FIRST) {
            // Log transforms (transform.wgsl).
            v = transform_bits(xb, i);
        } else if (OP == OP_GAUSSIAN) {
            var vi = params.c_off + i;
            if ((params.mode & MODE_SHARED_C) != 0u) {
                vi = params.c_off;
            }
            v = gaussian_bits(xb, b[params.b_off + i], c[vi]);
        } else if (OP == OP_BCE) {
            var pw = f32b(1.0);
            if ((params.mode & MODE_WEIGHTED) != 0u) {
                pw = c[params.c_off + col];
            }
            v = bce_bits(xb, b[params.b_off + i], pw);
        } else if (OP == OP_POISSON) {
            v = poisson_bits(xb, b[params.b_off + i]);
        } else if (OP == OP_LN) {
            v = xlog(xb);
        } else if (OP >= OP_SUM_G) {
            // Gradients (gradients.wgsl).
            v = gradient_bits(xb, i, params.row0 + r, col);
        } else {
            // OP_SMOOTH: b holds the rows' (hi, lo) parts, c the class weights; with MODE_SOFT
            // b holds the targets, c the weights and then the parts at c2_off.
            let row = params.row0 + r;
            var w = f32b(1.0);
            if ((params.mode & MODE_WEIGHTED) != 0u) {
                w = c[params.c_off + col];
            }
            if ((params.mode & MODE_SOFT) != 0u) {
                let at = parts_at(params.c2_off, row);
                v = soft_bits(xb, c[at.x], c[at.y], b[params.b_off + i], w);
            } else {
                let at = parts_at(params.b_off, row);
                v = smooth_bits(xb, b[at.x], b[at.y], w);
            }
        }
        elem_emit(i, v);
    }
    elem_finish(span);
}

// The entries invocation t of an element-wise pass walks: row r's columns start .. end, entry
// base + col (rows `pitch` elements apart: LlParams.k, or 0 for packed rows of `cols`); `live`
// is false past the pass's rows.
struct ElemSpan {
    live: bool,
    r: u32,
    start: u32,
    end: u32,
    base: u32,
}

fn elem_span(t: u32) -> ElemSpan {
    let per_row = (params.col1 - params.col0 + CHUNK - 1u) / CHUNK;
    if (t >= params.rows * per_row) {
        return ElemSpan(false, 0u, 0u, 0u, 0u);
    }
    let r = t / per_row;
    let start = params.col0 + (t - r * per_row) * CHUNK;
    let pitch = select(params.cols, params.k, params.k != 0u);
    return ElemSpan(true, r, start, min(start + CHUNK, params.col1), r * pitch - params.col0);
}

// An element-wise value: written at entry i (REDUCE 0), or pushed into the span's pairwise sum.
fn elem_emit(i: u32, v: u32) {
    if (REDUCE == 0u) {
        out[params.out_off + i] = v;
    } else {
        pairwise_push(sum_push(sum_identity(), v, 0.0));
    }
}

// The span's pairwise sum as its partial (REDUCE 1).
fn elem_finish(span: ElemSpan) {
    if (REDUCE == 1u) {
        store_partial((params.row0 + span.r) * params.slots + span.start / CHUNK,
            pairwise_total());
    }
}

// One level of the reduction: rows independent sums, each of len_in partials (at a_off, row by
// row); invocation (r, j) sums partials [j * CHUNK, (j + 1) * CHUNK) of row r pairwise and
// writes partial slot r * slots + j, or, when `finish` is set (one invocation per row), the
// row's result at out_off + r: the sum, or the mean by the summed weights or by `count`.
@compute @workgroup_size(WG)
fn reduce(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = ll_linear(wid, nwg, lid);
    let per_row = params.slots;
    if (t >= params.rows * per_row) {
        return;
    }
    let r = t / per_row;
    let j = t - r * per_row;
    let start = j * CHUNK;
    let end = min(start + CHUNK, params.len_in);
    pairwise_reset();
    for (var i = start; i < end; i++) {
        pairwise_push(load_partial(r * params.len_in + i));
    }
    let st = pairwise_total();
    if (params.finish == FINISH_PARTIAL) {
        store_partial(r * per_row + j, st);
        return;
    }
    var v = sum_total_bits(st);
    if (params.finish == FINISH_MEAN_WEIGHT) {
        v = sum_ratio_bits(st, st.w, big_w(st));
    } else if (params.finish == FINISH_MEAN_COUNT) {
        v = sum_ratio_bits(st, params.count, 0);
    } else if (params.finish == FINISH_WEIGHT) {
        v = sum_weight_bits(st);
    } else if (params.finish == FINISH_SECOND) {
        v = select(sum_weight_bits(st), F32_NAN, (st.flags & SUM_NAN) != 0u);
    }
    out[params.out_off + r] = v;
}

// A class-index target outside [0, cols) (ignore_index aside: the caller checks that first).
fn target_out_of_range(t: i32) -> bool {
    return t < 0 || u32(t) >= params.cols;
}

// Cross-entropy / NLL per row: a = logits (or log-probabilities) rows (`class_entry`), b = i32
// targets, c = [class weights at c_off | the rows' (hi, lo) parts at c2_off (`parts_at`) | the
// rows' smoothing sums (MODE_SOFT: the probability targets' sums) at c2_off + 2 * rows]. The loss of row r with target t is (1 - eps) w_t (-log_softmax_t) + eps/C
// * smooth_r (eps = 0 skips the smoothing term), weight w_t; an ignored row has loss 0 and
// weight 0; a target outside [0, cols) gives NaN for both (the blocking API rejects it first).
// REDUCE 0 writes the loss at out_off + r; REDUCE 1 the partial (loss, weight) at slot row0 + r.
@compute @workgroup_size(WG)
fn categorical(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = ll_linear(wid, nwg, lid);
    if (r >= params.rows) {
        return;
    }
    let row = params.row0 + r;
    if ((params.mode & MODE_SOFT) != 0u) {
        // Probability targets: the row's summed terms, each row counting 1 in a mean.
        write_row_loss(r, row, c[params.c2_off + 2u * params.len_in + row], f32b(1.0));
        return;
    }
    let target_ = bitcast<i32>(b[params.b_off + r]);
    var loss = 0u;
    var weight = 0u;
    if (target_ != params.ignore) {
        if (target_out_of_range(target_)) {
            loss = F32_NAN;
            weight = F32_NAN;
        } else {
            let t = u32(target_);
            weight = f32b(1.0);
            if ((params.mode & MODE_WEIGHTED) != 0u) {
                weight = c[params.c_off + t];
            }
            let xb = load_a(params.a_off + class_entry(row, t));
            var nll: u32;
            if ((params.mode & MODE_NLL) != 0u) {
                nll = neg_bits(xb);
            } else {
                let at = parts_at(params.c2_off, row);
                let hi = c[at.x];
                let lo = c[at.y];
                if (!is_finite_bits(hi)) {
                    nll = F32_NAN;
                } else {
                    nll = xadd(xsub(hi, xb), lo);
                }
            }
            loss = xmul(weight, nll);
            if (params.smoothing > 0.0) {
                let smooth_sum = c[params.c2_off + 2u * params.len_in + row];
                // eps holds 1 - label_smoothing and smooth label_smoothing / C, rounded on the host.
                loss = xadd(xmul(f32b(params.eps), loss), xmul(f32b(params.smoothing), smooth_sum));
            }
        }
    }
    write_row_loss(r, row, loss, weight);
}

// The categorical entries' output: REDUCE 0 writes the loss of local row r at out_off + r;
// REDUCE 1 the partial (loss, weight) at slot `row`.
fn write_row_loss(r: u32, row: u32, loss: u32, weight: u32) {
    if (REDUCE == 0u) {
        out[params.out_off + r] = loss;
    } else {
        var st = sum_push(sum_identity(), loss, 0.0);
        if (is_finite_bits(weight)) {
            st.w = bitcast<f32>(weight);
        } else {
            st.flags |= SUM_NAN;
        }
        store_partial(row, st);
    }
}
