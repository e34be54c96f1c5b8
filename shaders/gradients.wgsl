// Gradients: the backward of the log-sum-exp family, of the element-wise losses, and the fused
// cross-entropy forward and backward. Needs common.wgsl and likelihood.wgsl (their bindings,
// x-ops and sum monoid). Mirror: src/reference/gradients.rs. Host: src/gradients.rs.
//
// Per-element values of the `elementwise` entry point of likelihood.wgsl, for OP >= OP_SUM_G
// (row sums go through its pairwise reduction):
//   OP_SUM_G      a = g                                  row sums Σ_k g_k
//   OP_SUM_GP     a = p, b = g                           row sums Σ_k g_k p_k
//   OP_LSE_BWD    a = x, b = g (per row), c = lse (per row)   g_r · exp(x_j − lse_r)
//   OP_LSM_BWD    a = log_softmax, b = g, c = Σ g (per row)    g_j − exp(out_j) · Σ g
//   OP_SM_BWD     a = softmax, b = g, c = Σ g p (per row)      p_j · (g_j − Σ g p)
//   OP_GAUSS_DX   a = input, b = target, c = var           s · (x − y) / v
//   OP_GAUSS_DV   a = input, b = target, c = var           s · ½ (1 − (x − y)²/v) / v
//   OP_BCE_D      a = logits, b = targets, c = pos_weight  s · ((1 − y) σ(x) − pw · y · σ(−x))
//   OP_POISSON_D  a = input, b = target                    s · (e^x − y)  or  s · (1 − y / (x + eps))
//   OP_RESP       a = log-joint (n × k), c = log p(x) (per row)  exp(L − log p): responsibilities
// with s = params.count (1, or 1/n for a mean) and v = max(var, eps) (no gradient through the
// clamp, as PyTorch). Where the forward value is NaN the gradient is NaN; a masked entry of the
// log-sum-exp family (x = −inf, log-probability −inf, probability 0) gets 0.

const OP_SUM_G: u32 = 5u;
const OP_SUM_GP: u32 = 6u;
const OP_LSE_BWD: u32 = 7u;
const OP_LSM_BWD: u32 = 8u;
const OP_SM_BWD: u32 = 9u;
const OP_GAUSS_DX: u32 = 10u;
const OP_GAUSS_DV: u32 = 11u;
const OP_BCE_D: u32 = 12u;
const OP_POISSON_D: u32 = 13u;
const OP_RESP: u32 = 14u;
const OP_ONEHOT: u32 = 15u;

// Bits of LlParams.mode for the fused cross-entropy.
const MODE_IN_PLACE: u32 = 2048u;
const MODE_MEAN: u32 = 4096u;

const NO_SLOT: u32 = 0xffffffffu;

// The smoothing sums' partials of `ce_grad_smooth` (the likelihood family's wide layout).
@group(0) @binding(6) var<storage, read_write> partials_out: array<u32>;

// e^y − 1 for y <= 0, accurate where it is small: a series below ln 2 / 2 in magnitude, e^y − 1
// beyond (exact subtraction: e^y is in [0, 0.71) there).
fn ld_expm1_neg(y: f32) -> f32 {
    if (y < -0.34657359) {
        return ld_exp_neg(y) - 1.0;
    }
    var p = 1.0 + y * (1.0 / 10.0);
    p = 1.0 + y * (1.0 / 9.0) * p;
    p = 1.0 + y * (1.0 / 8.0) * p;
    p = 1.0 + y * (1.0 / 7.0) * p;
    p = 1.0 + y * (1.0 / 6.0) * p;
    p = 1.0 + y * (1.0 / 5.0) * p;
    p = 1.0 + y * (1.0 / 4.0) * p;
    p = 1.0 + y * (1.0 / 3.0) * p;
    p = 1.0 + y * 0.5 * p;
    return y * p;
}

// The logistic function at a finite x and at −x: (σ(x), σ(−x)), each without cancellation.
fn sigmoid_pair(x: f32) -> vec2<f32> {
    let e = ld_exp_neg(-abs(x));
    let big = 1.0 / (1.0 + e);
    let small = e / (1.0 + e);
    if (x >= 0.0) {
        return vec2<f32>(big, small);
    }
    return vec2<f32>(small, big);
}

// The gradient of F.gaussian_nll_loss with respect to the input (dvar false) or the variance.
fn gaussian_grad_bits(xb: u32, yb: u32, vb: u32, dvar: bool) -> u32 {
    if (is_nan_bits(gaussian_bits(xb, yb, vb))) {
        return F32_NAN;
    }
    var v = vb;
    if (is_finite_bits(v)) {
        v = f32b(max(bitcast<f32>(v), params.eps));
    }
    let d = xsub(xb, yb);
    let dx = xdiv(d, v);
    if (!dvar) {
        return dx;
    }
    return xmul(f32b(0.5), xdiv(xsub(f32b(1.0), xmul(d, dx)), v));
}

// The gradient of F.binary_cross_entropy_with_logits with respect to the logit.
fn bce_grad_bits(xb: u32, yb: u32, pwb: u32) -> u32 {
    if (is_nan_bits(bce_bits(xb, yb, pwb))) {
        return F32_NAN;
    }
    var s = vec2<u32>(f32b(1.0), 0u);
    if (is_finite_bits(xb)) {
        let p = sigmoid_pair(bitcast<f32>(xb));
        s = vec2<u32>(f32b(p.x), f32b(p.y));
    } else if (xb == F32_NEG_INF) {
        s = vec2<u32>(0u, f32b(1.0));
    }
    return xsub(xmul(xsub(f32b(1.0), yb), s.x), xmul(xmul(pwb, yb), s.y));
}

// The gradient of F.poisson_nll_loss with respect to the input.
fn poisson_grad_bits(xb: u32, yb: u32) -> u32 {
    if (is_nan_bits(poisson_bits(xb, yb))) {
        return F32_NAN;
    }
    if ((params.mode & MODE_LOG_INPUT) != 0u) {
        return xsub(xexp(xb), yb);
    }
    return xsub(f32b(1.0), xdiv(yb, xadd(xb, f32b(params.eps))));
}

// The value of element i (column col of row `row`) for the gradient ops; xb = a[a_off + i].
fn gradient_bits(xb: u32, i: u32, row: u32, col: u32) -> u32 {
    if (OP == OP_SUM_G) {
        return xb;
    }
    if (OP == OP_SUM_GP) {
        return xmul(xb, b[params.b_off + i]);
    }
    if (OP == OP_LSE_BWD) {
        return lse_backward_bits(xb, b[params.b_off + row], c[params.c_off + row]);
    }
    if (OP == OP_LSM_BWD) {
        return log_softmax_backward_bits(xb, b[params.b_off + i], c[params.c_off + row]);
    }
    if (OP == OP_SM_BWD) {
        return softmax_backward_bits(xb, b[params.b_off + i], c[params.c_off + row]);
    }
    if (OP == OP_RESP) {
        return xexp(xsub(xb, c[params.c_off + row]));
    }
    var d: u32;
    if (OP == OP_GAUSS_DX || OP == OP_GAUSS_DV) {
        var vi = params.c_off + i;
        if ((params.mode & MODE_SHARED_C) != 0u) {
            vi = params.c_off;
        }
        d = gaussian_grad_bits(xb, b[params.b_off + i], c[vi], OP == OP_GAUSS_DV);
    } else if (OP == OP_BCE_D) {
        var pw = f32b(1.0);
        if ((params.mode & MODE_WEIGHTED) != 0u) {
            pw = c[params.c_off + col];
        }
        d = bce_grad_bits(xb, b[params.b_off + i], pw);
    } else {
        d = poisson_grad_bits(xb, b[params.b_off + i]);
    }
    return xmul(f32b(params.count), d);
}

// ---------------------------------------------------------------------------------------------
// Fused cross-entropy backward. The gradient of the loss of row r (target t, class weights w,
// smoothing ε over C classes, S_w = Σ_c w_c) with respect to logit j is
//   (1 − ε) w_t (p_j − [j = t]) + ε/C (S_w p_j − w_j),   p_j = exp((x_j − hi) − lo),
// with (hi, lo) the row's log-sum-exp parts; at j = t, p_t − 1 is expm1(−nll_t) (no
// cancellation when p_t is near 1). A mean divides by D, the summed weights of the targets.
// Ignored rows get 0, rows with an out-of-range target or a non-finite hi NaN, −inf logits 0.
//
// Parameters: the element-wise geometry (rows, cols, col0, col1, row0, slots, a_off, out_off);
// b = the targets (i32) indexed by global row; c = the op's aux words: class weights at c_off,
// parts at c2_off + 2 row, D at kb; eps = 1 − ε, smoothing = ε/C, count = S_w, ignore.
// MODE_IN_PLACE reads the logits from `out` (the gradient overwrites them); each element is read
// and written by one invocation, and x_t only by the invocation that owns column t.
//
// Returns the partial slot of the chunk (its smoothing terms are summed in the private pairwise
// counter when `with_smoothing`), or NO_SLOT for an invocation past the end.
fn ce_grad_run(t: u32, with_smoothing: bool) -> u32 {
    let per_row = (params.col1 - params.col0 + CHUNK - 1u) / CHUNK;
    if (t >= params.rows * per_row) {
        return NO_SLOT;
    }
    let r = t / per_row;
    let j = t - r * per_row;
    let start = params.col0 + j * CHUNK;
    let end = min(start + CHUNK, params.col1);
    let base = r * params.cols - params.col0;
    let row = params.row0 + r;
    let target_ = bitcast<i32>(b[params.b_off + row]);
    let hib = c[params.c2_off + 2u * row];
    let lob = c[params.c2_off + 2u * row + 1u];
    let ignored = target_ == params.ignore;
    let invalid = !ignored && target_out_of_range(target_);
    let weighted = (params.mode & MODE_WEIGHTED) != 0u;
    let tc = u32(target_);
    var wt = 1.0;
    if (weighted && !ignored && !invalid) {
        wt = bitcast<f32>(c[params.c_off + tc]);
    }
    let keep = params.eps;
    let sm = params.smoothing;
    let coef = keep * wt + sm * params.count;
    let hi = bitcast<f32>(hib);
    let lo = bitcast<f32>(lob);
    let bad_row = invalid || !is_finite_bits(hib);
    let mean = (params.mode & MODE_MEAN) != 0u;
    let denom = c[params.kb];
    pairwise_reset();
    for (var col = start; col < end; col++) {
        let i = base + col;
        var xb: u32;
        if ((params.mode & MODE_IN_PLACE) != 0u) {
            xb = out[params.out_off + i];
        } else {
            xb = a[params.a_off + i];
        }
        var wjb = f32b(1.0);
        if (weighted) {
            wjb = c[params.c_off + col];
        }
        if (with_smoothing) {
            pairwise_push(sum_push(sum_identity(), smooth_bits(xb, hib, lob, wjb), 0.0));
        }
        var v = 0u;
        if (ignored || xb == F32_NEG_INF) {
            v = 0u;
        } else if (bad_row) {
            v = F32_NAN;
        } else {
            let x = bitcast<f32>(xb);
            let e = (x - hi) - lo;
            let p = ld_exp_neg(e);
            var g: f32;
            if (col == tc) {
                g = keep * wt * ld_expm1_neg(e) + sm * (params.count * p - wt);
            } else {
                g = coef * p - sm * bitcast<f32>(wjb);
            }
            v = f32b(g);
            if (mean) {
                v = xdiv(v, denom);
            }
        }
        out[params.out_off + i] = v;
    }
    return row * params.slots + start / CHUNK;
}

// The fused cross-entropy gradient without label smoothing (or on a device too small for the
// wide layout, where the smoothing sums come from a separate pass).
@compute @workgroup_size(WG)
fn ce_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    _ = ce_grad_run(ll_linear(wid, nwg, lid), false);
}

// The fused cross-entropy gradient with label smoothing: also the chunk's partial of the
// smoothing sum Σ_c w_c (−log_softmax_c), at its slot of `partials_out`, in the order the
// forward's OP_SMOOTH pass sums them (so the loss is bit for bit `cross_entropy`'s).
@compute @workgroup_size(WG)
fn ce_grad_smooth(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let slot = ce_grad_run(ll_linear(wid, nwg, lid), true);
    if (slot == NO_SLOT) {
        return;
    }
    let st = pairwise_total();
    partials_out[3u * slot] = f32b(st.s);
    partials_out[3u * slot + 1u] = f32b(st.w);
    partials_out[3u * slot + 2u] = st.flags;
}

// The per-row cross-entropy with label smoothing from staged parts: a = the rows' staged
// partials (w_t · nll_t, w_t) from `categorical` without smoothing, b = targets (i32, global
// rows), c = aux with the rows' smoothing sums at c2_off. The same arithmetic as `categorical`,
// so the loss is the forward's bit for bit.
@compute @workgroup_size(WG)
fn ce_combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = ll_linear(wid, nwg, lid);
    if (r >= params.rows) {
        return;
    }
    let row = params.row0 + r;
    let target_ = bitcast<i32>(b[params.b_off + row]);
    var loss = 0u;
    var weight = 0u;
    if (target_ != params.ignore) {
        if (target_out_of_range(target_)) {
            loss = F32_NAN;
            weight = F32_NAN;
        } else {
            let staged = load_partial(row);
            weight = sum_weight_bits(staged);
            loss = xadd(xmul(f32b(params.eps), sum_total_bits(staged)),
                xmul(f32b(params.smoothing), c[params.c2_off + row]));
        }
    }
    write_row_loss(r, row, loss, weight);
}
