// Gaussian mixtures: the log-joint log w_k + log N(x | mu_k, Sigma_k) of every point and
// component, in scikit-learn's parameterisation (precisions' Cholesky factors). Needs
// common.wgsl and likelihood.wgsl before it. The host then takes the row-wise log-sum-exp
// (score_samples) or log_softmax (log responsibilities) of the n x k matrix with `RowOp`.
// Mirror: src/reference/gmm.rs. Host: src/gmm.rs.
//
// OP (OP_GMM_* in src/codes.rs): the covariance kind (diagonal, spherical, full), read from
// binding b (OP_GMM_DIAG.. OP_GMM_FULL) or from the uniform binding (OP_GMM_DIAG_U..
// OP_GMM_FULL_U ): a 16 KiB window per group of components: every lane reads the same address,
// which hardware and software adapters serve as a broadcast; binding b serves mixtures
// whose single component does not fit 16 KiB. A dispatch evaluates the group of len_in
// components starting at component row0, whose parameters are laid out as
//   [len_in constants: ln w_k + ln det(P_k) - dims/2 ln 2 pi | len_in x dims means |
//    precisions' Cholesky factors: len_in x dims (diag), len_in (spherical) or
//    len_in x dims x dims (full, row-major P[i][j]; upper-triangular ones packed, row by row,
//    dims (dims + 1) / 2 words each)]
// at b_off, c_off and c2_off. The quadratic form is sum_j (sum_i (x_i - mu_i) P_ij)^2, the
// difference taken first: the expanded form cancels in f32 when data sit far from the origin.

const OP_GMM_FIRST: u32 = 32u;
const OP_GMM_DIAG: u32 = 32u;
const OP_GMM_SPHERICAL: u32 = 33u;
const OP_GMM_FULL: u32 = 34u;
const OP_GMM_DIAG_U: u32 = 35u;
const OP_GMM_SPHERICAL_U: u32 = 36u;
const OP_GMM_FULL_U: u32 = 37u;
// The covariance kind of OP: 0 diagonal, 1 spherical, 2 full.
const GMM_DIAG: u32 = 0u;
const GMM_SPHERICAL: u32 = 1u;
fn gmm_kind() -> u32 {
    return (OP - OP_GMM_FIRST) % 3u;
}
const GMM_UNIFORM_VEC4S: u32 = 1024u;
// The dimension, when the host specialises the pipeline for it (0: read params.cols). Loops
// with a constant trip count compile to straight-line code.
override GMM_DIMS: u32 = 0u;

fn gmm_dims() -> u32 {
    return select(params.cols, GMM_DIMS, GMM_DIMS != 0u);
}
// Mode bits: the invocation holds every component of its point (one group, one block) and
// writes log p(x) (SCORE) or the k log-responsibilities (RESP, k <= GMM_FUSED_K) itself, through
// the log-sum-exp monoid, instead of the n x k log-joint for a RowOp pass.
const MODE_FUSED_SCORE: u32 = 64u;
const MODE_FUSED_RESP: u32 = 128u;
// ...or the index of the point's most probable component, the first of equals (scikit-learn's
// predict, the argmax of the log-joint), as a u32; NO_LABEL for a point with a non-finite
// coordinate.
const MODE_FUSED_ARGMAX: u32 = 16384u;
const NO_LABEL: u32 = 0xffffffffu;
const GMM_FUSED_K: u32 = 64u;

// f32 bits mapped to u32s in the floats' order (−inf lowest; NaN above +inf), so that the
// argmax compares integers: no float comparison of an infinity.
fn ordered_bits(v: u32) -> u32 {
    return select(v | 0x80000000u, ~v, (v & 0x80000000u) != 0u);
}

// The running argmax of a point's log-joint: the best value's ordered bits and its component.
struct Best {
    key: u32,
    comp: u32,
}

fn best_push(b: Best, v: u32, comp: u32) -> Best {
    let key = ordered_bits(v);
    if (comp == 0u || key > b.key) {
        return Best(key, comp);
    }
    return b;
}

@group(0) @binding(5) var<uniform> gmm_uniform: array<vec4<u32>, GMM_UNIFORM_VEC4S>;

// Parameter word i of the dispatch's component group.
fn gp_bits(i: u32) -> u32 {
    if (OP >= OP_GMM_DIAG_U) {
        return gmm_uniform[i >> 2u][i & 3u];
    }
    return b[i];
}

fn gp(i: u32) -> f32 {
    return bitcast<f32>(gp_bits(i));
}

// Points of up to GMM_DIMS_MAX dimensions are held in registers (a private array), read once
// per invocation; longer ones are read from the buffer each time.
const GMM_DIMS_MAX: u32 = 64u;

// The invocation's point, in a private module-scope array rather than behind a function
// pointer (which GLSL would copy in and out of every call).
var<private> gmm_xs: array<f32, GMM_DIMS_MAX>;

fn gmm_x(p: u32, i: u32) -> f32 {
    if (gmm_dims() <= GMM_DIMS_MAX) {
        return gmm_xs[i];
    }
    return bitcast<f32>(load_a(params.a_off + p * params.cols + i));
}

fn gmm_quadratic(p: u32, comp: u32) -> f32 {
    let dims = gmm_dims();
    let mu = params.c_off + comp * dims;
    var q = 0.0;
    if (gmm_kind() == GMM_DIAG) {
        let pc = params.c2_off + comp * dims;
        for (var i = 0u; i < dims; i++) {
            let d = (gmm_x(p, i) - gp(mu + i)) * gp(pc + i);
            q += d * d;
        }
    } else if (gmm_kind() == GMM_SPHERICAL) {
        let pc = gp(params.c2_off + comp);
        for (var i = 0u; i < dims; i++) {
            let d = (gmm_x(p, i) - gp(mu + i)) * pc;
            q += d * d;
        }
    } else {
        // Full: y_j = sum_i (x_i - mu_i) P_ij; an upper-triangular P (scikit-learn's) skips
        // the zeros below the diagonal. The differences are taken once per component.
        var diff: array<f32, GMM_DIMS_MAX>;
        let cached = dims <= GMM_DIMS_MAX;
        if (cached) {
            for (var i = 0u; i < dims; i++) {
                diff[i] = gmm_xs[i] - gp(mu + i);
            }
        }
        let tri = (params.mode & MODE_TRIANGULAR) != 0u;
        if (tri) {
            // Upper-triangular factors are packed row by row: P[i][j], j >= i, at
            // row_start(i) + j - i, with row_start(i + 1) = row_start(i) + dims - i.
            let pm = params.c2_off + comp * (dims * (dims + 1u) / 2u);
            for (var j = 0u; j < dims; j++) {
                var y = 0.0;
                var row_start = pm;
                for (var i = 0u; i <= j; i++) {
                    var d: f32;
                    if (cached) {
                        d = diff[i];
                    } else {
                        d = gmm_x(p, i) - gp(mu + i);
                    }
                    y += d * gp(row_start + j - i);
                    row_start += dims - i;
                }
                q += y * y;
            }
        } else {
            let pm = params.c2_off + comp * dims * dims;
            for (var j = 0u; j < dims; j++) {
                var y = 0.0;
                for (var i = 0u; i < dims; i++) {
                    var d: f32;
                    if (cached) {
                        d = diff[i];
                    } else {
                        d = gmm_x(p, i) - gp(mu + i);
                    }
                    y += d * gp(pm + i * dims + j);
                }
                q += y * y;
            }
        }
    }
    return q;
}

// One invocation per (point, block of kb components of the group): writes log-joint values at
// out_off + p * k + row0 + component. A point with a NaN or infinite coordinate gets NaN. Lanes
// past the last point compute on the last point and store nothing, so that every loop runs in
// uniform control flow.
@compute @workgroup_size(WG)
fn gmm_log_joint(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Workgroup g evaluates component block g % blocks for points (g / blocks) * WG + lane: the
    // block is uniform in the workgroup, so every parameter load is the same address in every
    // lane.
    let g = wid.x + wid.y * nwg.x;
    let blocks = params.slots;
    let point = (g / blocks) * WG + lid;
    let live = point < params.rows;
    let p = min(point, params.rows - 1u);
    let first = (g % blocks) * params.kb;
    let end = min(first + params.kb, params.len_in);
    var finite = true;
    let dims = gmm_dims();
    for (var i = 0u; i < dims; i++) {
        let bits = load_a(params.a_off + p * dims + i);
        finite = finite && is_finite_bits(bits);
        if (i < GMM_DIMS_MAX) {
            gmm_xs[i] = bitcast<f32>(bits);
        }
    }
    let fused = (params.mode & (MODE_FUSED_SCORE | MODE_FUSED_RESP | MODE_FUSED_ARGMAX)) != 0u;
    var st = lse_identity();
    var best = Best(0u, 0u);
    var joint: array<u32, GMM_FUSED_K>;
    for (var comp = first; comp < end; comp++) {
        let q = gmm_quadratic(p, comp);
        let cb = gp_bits(params.b_off + comp);
        var v = F32_NEG_INF;
        if (!finite) {
            v = F32_NAN;
        } else if (cb != F32_NEG_INF && is_finite_bits(f32b(q))) {
            // (A constant of -inf is a component of weight zero.)
            v = f32b(bitcast<f32>(cb) - 0.5 * q);
        }
        if ((params.mode & MODE_FUSED_ARGMAX) != 0u) {
            best = best_push(best, v, comp);
        } else if (fused) {
            st = lse_push(st, v);
            if (comp < GMM_FUSED_K) {
                joint[comp] = v;
            }
        } else if (live) {
            out[params.out_off + p * params.k + params.row0 + comp] = v;
        }
    }
    if (!live) {
        return;
    }
    if ((params.mode & MODE_FUSED_ARGMAX) != 0u) {
        out[params.out_off + p] = select(NO_LABEL, best.comp, finite);
    } else if ((params.mode & MODE_FUSED_SCORE) != 0u) {
        out[params.out_off + p] = lse_result_bits(st);
    } else if ((params.mode & MODE_FUSED_RESP) != 0u) {
        let l1p = ld_log1p(st.s);
        for (var comp = 0u; comp < params.k; comp++) {
            out[params.out_off + p * params.k + comp] = log_softmax_bits(st, l1p, joint[comp]);
        }
    }
}

// score_samples (or the labels, or, not fused, the log-joint) of GMM_SCORE_TILE points per
// invocation, for diagonal and spherical mixtures of at most GMM_TILE_DIMS dimensions whose
// parameters sit in one uniform window (OP_GMM_DIAG_U or OP_GMM_SPHERICAL_U) and whose
// components one invocation walks (one block): each parameter is loaded
// once for the tile's points instead of once per point (software adapters load uniform data lane
// by lane; half of gmm_log_joint's time there). Point t of workgroup g's tile is
// (g * GMM_SCORE_TILE + t) * WG + lane, so lanes read neighbouring points. Per point, the same
// operations in the same order as gmm_log_joint's fused score.
const GMM_SCORE_TILE: u32 = 4u;
const GMM_TILE_DIMS: u32 = 16u;

@compute @workgroup_size(WG)
fn gmm_score_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = wid.x + wid.y * nwg.x;
    let dims = gmm_dims();
    // Coordinate i of the tile's points as one vec4 (component t: point t), so that each
    // parameter meets the four points in one vector operation.
    var xs: array<vec4<f32>, GMM_TILE_DIMS>;
    var finite = vec4<bool>(true);
    // The tile's four points (the last point again past the end), a coordinate at a time into
    // whole vec4s: no dynamically indexed vector component.
    let last = params.rows - 1u;
    let p0 = params.a_off + min((g * GMM_SCORE_TILE) * WG + lid, last) * dims;
    let p1 = params.a_off + min((g * GMM_SCORE_TILE + 1u) * WG + lid, last) * dims;
    let p2 = params.a_off + min((g * GMM_SCORE_TILE + 2u) * WG + lid, last) * dims;
    let p3 = params.a_off + min((g * GMM_SCORE_TILE + 3u) * WG + lid, last) * dims;
    for (var i = 0u; i < dims; i++) {
        let bits = vec4<u32>(load_a(p0 + i), load_a(p1 + i), load_a(p2 + i), load_a(p3 + i));
        finite = finite & ((bits & vec4<u32>(F32_ABS_MASK)) < vec4<u32>(F32_POS_INF));
        xs[i] = bitcast<vec4<f32>>(bits);
    }
    var st0 = lse_identity();
    var st1 = lse_identity();
    var st2 = lse_identity();
    var st3 = lse_identity();
    var b0 = Best(0u, 0u);
    var b1 = Best(0u, 0u);
    var b2 = Best(0u, 0u);
    var b3 = Best(0u, 0u);
    for (var comp = 0u; comp < params.len_in; comp++) {
        let mu = params.c_off + comp * dims;
        var q = vec4<f32>(0.0);
        if (gmm_kind() == GMM_DIAG) {
            let pc = params.c2_off + comp * dims;
            for (var i = 0u; i < dims; i++) {
                let d = (xs[i] - gp(mu + i)) * gp(pc + i);
                q += d * d;
            }
        } else {
            let w = gp(params.c2_off + comp);
            for (var i = 0u; i < dims; i++) {
                let d = (xs[i] - gp(mu + i)) * w;
                q += d * d;
            }
        }
        let cb = gp_bits(params.b_off + comp);
        if ((params.mode & (MODE_FUSED_SCORE | MODE_FUSED_ARGMAX)) == 0u) {
            // Not fused: the four points' log-joints, at out_off + point * k + row0 + comp.
            joint_store(g * GMM_SCORE_TILE * WG + lid, comp, tile_joint(finite[0], cb, q[0]));
            joint_store((g * GMM_SCORE_TILE + 1u) * WG + lid, comp,
                tile_joint(finite[1], cb, q[1]));
            joint_store((g * GMM_SCORE_TILE + 2u) * WG + lid, comp,
                tile_joint(finite[2], cb, q[2]));
            joint_store((g * GMM_SCORE_TILE + 3u) * WG + lid, comp,
                tile_joint(finite[3], cb, q[3]));
        } else if ((params.mode & MODE_FUSED_ARGMAX) != 0u) {
            b0 = best_push(b0, tile_joint(finite[0], cb, q[0]), comp);
            b1 = best_push(b1, tile_joint(finite[1], cb, q[1]), comp);
            b2 = best_push(b2, tile_joint(finite[2], cb, q[2]), comp);
            b3 = best_push(b3, tile_joint(finite[3], cb, q[3]), comp);
        } else {
            st0 = lse_push(st0, tile_joint(finite[0], cb, q[0]));
            st1 = lse_push(st1, tile_joint(finite[1], cb, q[1]));
            st2 = lse_push(st2, tile_joint(finite[2], cb, q[2]));
            st3 = lse_push(st3, tile_joint(finite[3], cb, q[3]));
        }
    }
    let first = g * GMM_SCORE_TILE * WG + lid;
    if ((params.mode & (MODE_FUSED_SCORE | MODE_FUSED_ARGMAX)) == 0u) {
        return;
    }
    if ((params.mode & MODE_FUSED_ARGMAX) != 0u) {
        label_store(first, b0, finite[0]);
        label_store(first + WG, b1, finite[1]);
        label_store(first + 2u * WG, b2, finite[2]);
        label_store(first + 3u * WG, b3, finite[3]);
        return;
    }
    tile_store(first, st0);
    tile_store(first + WG, st1);
    tile_store(first + 2u * WG, st2);
    tile_store(first + 3u * WG, st3);
}

fn joint_store(point: u32, comp: u32, v: u32) {
    if (point < params.rows) {
        out[params.out_off + point * params.k + params.row0 + comp] = v;
    }
}

fn label_store(point: u32, b: Best, finite: bool) {
    if (point < params.rows) {
        out[params.out_off + point] = select(NO_LABEL, b.comp, finite);
    }
}

// The log-joint of a point (finite coordinates or not) with a component of constant cb, given
// the quadratic form q: as gmm_log_joint.
fn tile_joint(finite: bool, cb: u32, q: f32) -> u32 {
    if (!finite) {
        return F32_NAN;
    }
    if (cb != F32_NEG_INF && is_finite_bits(f32b(q))) {
        return f32b(bitcast<f32>(cb) - 0.5 * q);
    }
    return F32_NEG_INF;
}

fn tile_store(point: u32, st: LseState) {
    if (point < params.rows) {
        out[params.out_off + point] = lse_result_bits(st);
    }
}

// ---------------------------------------------------------------------------------------------
// Reductions over the points for gradients and EM, from the responsibilities
// r_ik = exp(L_ik - log p(x_i)) (n x k, binding b; the `elementwise` pass OP_RESP of
// gradients.wgsl computes them once). Sums over the points are kept per row q:
//   q = comp * dims + j (j < dims)    s: sum_i r x_ij                  w: sum_i r x_ij^2
//              (MODE_GMM_CENTERED)    s: sum_i r (x_ij - mu_j)         w: sum_i r (x_ij - mu_j)^2
//                   (MODE_GMM_GRAD)   s: sum_i r (x_ij - mu) / var      w: sum_i r ((x_ij - mu)^2 / var - 1) / (2 var)
//   q = k * dims + comp               s: sum_i r                       (gradients: sum_i r / w_comp)
//   q = k * (dims + 1) + comp * P + p (MODE_GMM_CROSS, P = dims (dims - 1) / 2, p the p-th pair
//                                      a < b in row-major order of the upper triangle)
//                                     s: sum_i r (x_ia - mu_a) (x_ib - mu_b)
// that is, with MODE_GMM_GRAD, d log L / d mu, d log L / d var and d log L / d w; with
// MODE_GMM_CENTERED (and MODE_GMM_CROSS) the scatter of the points about each component's
// current mean, from which EM's M-step takes the new means and covariances without the
// cancellation of sum r x^2 - N mu^2.
// One invocation sums one row over a chunk of CHUNK points pairwise and writes the partial at
// slot q * slots + chunk; `reduce` finishes them. A dispatch takes the group's local rows
// [col0, col1) (its invocations in row order, `slots` a row), so that the host can split a
// group's rows across dispatches of bounded work; this and the tiled kernels below alike. A
// dispatch covers the group of len_in
// components starting at row0, whose words in the uniform window are
//   [len_in weights | len_in x dims means | len_in x dims inverse variances].
const MODE_GMM_GRAD: u32 = 256u;
const MODE_GMM_CENTERED: u32 = 512u;
const MODE_GMM_CROSS: u32 = 1024u;

@compute @workgroup_size(WG)
fn gmm_moments(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = params.len_in;
    let dims = params.cols;
    let chunks = params.slots;
    let t = ll_linear(wid, nwg, lid) + params.col0 * chunks;
    var pairs = 0u;
    if ((params.mode & MODE_GMM_CROSS) != 0u) {
        pairs = dims * (dims - 1u) / 2u;
    }
    if (t >= min(g * (dims + 1u + pairs), params.col1) * chunks) {
        return;
    }
    let lq = t / chunks;
    let ch = t - lq * chunks;
    // 0: a dimension's row, 1: the component's row, 2: a pair's row.
    var kind = 0u;
    var comp: u32;
    var j = 0u;
    var j2 = 0u;
    var q: u32;
    if (lq < g * dims) {
        comp = lq / dims;
        j = lq - comp * dims;
        q = (params.row0 + comp) * dims + j;
    } else if (lq < g * (dims + 1u)) {
        kind = 1u;
        comp = lq - g * dims;
        q = params.k * dims + params.row0 + comp;
    } else {
        kind = 2u;
        let lc = lq - g * (dims + 1u);
        comp = lc / pairs;
        let p = lc - comp * pairs;
        q = params.k * (dims + 1u) + (params.row0 + comp) * pairs + p;
        // The pairs a < b of dims are the triangle a <= b' of dims - 1, with b = b' + 1.
        let ab = upper_entry(p, dims - 1u);
        j = ab.x;
        j2 = ab.y + 1u;
    }
    let grad = (params.mode & MODE_GMM_GRAD) != 0u;
    let centered = (params.mode & MODE_GMM_CENTERED) != 0u;
    let wk = gmm_uniform_word(comp);
    let mu = gmm_uniform_word(g + comp * dims + j);
    let mu2 = gmm_uniform_word(g + comp * dims + j2);
    let tau = gmm_uniform_word(g + g * dims + comp * dims + j);
    let start = ch * CHUNK;
    let end = min(start + CHUNK, params.rows);
    pairwise_reset();
    for (var i = start; i < end; i++) {
        let rb = b[i * params.k + params.row0 + comp];
        var xb = f32b(0.0);
        var x2b = f32b(0.0);
        if (kind != 1u) {
            xb = a[params.a_off + i * dims + j];
        }
        if (kind == 2u) {
            x2b = a[params.a_off + i * dims + j2];
        }
        var s: u32;
        var w = 0u;
        if (is_finite_bits(rb) && is_finite_bits(xb) && is_finite_bits(x2b)) {
            // The common case without the special-value arithmetic.
            let r = bitcast<f32>(rb);
            let x = bitcast<f32>(xb);
            if (kind == 1u) {
                s = f32b(select(r, r / bitcast<f32>(wk), grad));
            } else if (kind == 2u) {
                s = f32b(r * (x - bitcast<f32>(mu)) * (bitcast<f32>(x2b) - bitcast<f32>(mu2)));
            } else if (grad) {
                let dev = x - bitcast<f32>(mu);
                let rd = r * dev * bitcast<f32>(tau);
                s = f32b(rd);
                w = f32b(0.5 * (rd * dev - r) * bitcast<f32>(tau));
            } else if (centered) {
                let rd = r * (x - bitcast<f32>(mu));
                s = f32b(rd);
                w = f32b(rd * (x - bitcast<f32>(mu)));
            } else {
                let rx = r * x;
                s = f32b(rx);
                w = f32b(rx * x);
            }
        } else {
            let r = rb;
            if (kind == 1u) {
                s = select(r, xdiv(r, wk), grad);
            } else if (kind == 2u) {
                s = xmul(xmul(r, xsub(xb, mu)), xsub(x2b, mu2));
            } else if (grad) {
                let dev = xsub(xb, mu);
                let rd = xmul(xmul(r, dev), tau);
                s = rd;
                w = xmul(f32b(0.5), xmul(xsub(xmul(rd, dev), r), tau));
            } else if (centered) {
                let dev = xsub(xb, mu);
                s = xmul(r, dev);
                w = xmul(s, dev);
            } else {
                s = xmul(r, xb);
                w = xmul(s, xb);
            }
        }
        var st = sum_push(sum_identity(), s, 0.0);
        if (is_finite_bits(w)) {
            st.w = bitcast<f32>(w);
        } else {
            st.flags |= SUM_NAN;
        }
        pairwise_push(st);
    }
    let st = pairwise_total();
    let at = 3u * (q * chunks + ch);
    out[at] = f32b(st.s);
    out[at + 1u] = f32b(st.w);
    out[at + 2u] = st.flags;
}

// Entry p of the upper triangle (diagonal included) of an n x n matrix, rows in order: its
// (row, column), row <= column < n.
fn upper_entry(p: u32, n: u32) -> vec2<u32> {
    var rest = p;
    var row = 0u;
    loop {
        let len = n - row;
        if (rest < len) {
            break;
        }
        rest -= len;
        row += 1u;
    }
    return vec2<u32>(row, row + rest);
}

fn gmm_uniform_word(i: u32) -> u32 {
    return gmm_uniform[i >> 2u][i & 3u];
}

// Stores a tiled kernel's chunk sums (bits) for row q at chunk ch: NaN with SUM_NAN where
// either is not finite.
fn moment_store(q: u32, ch: u32, sb: u32, wb: u32) {
    let ok = is_finite_bits(sb) && is_finite_bits(wb);
    let at = 3u * (q * params.slots + ch);
    out[at] = select(F32_NAN, sb, ok);
    out[at + 1u] = select(F32_NAN, wb, ok);
    out[at + 2u] = select(SUM_NAN, 0u, ok);
}

// The E-step's two element-wise passes, OP_RESP (r = exp(L - log p(x)), written) and OP_SUM_G
// (sum of log p(x), reduced pairwise), exactly as likelihood.wgsl's `elementwise` entry point
// computes them (the same indexing, values and sums): an entry point of their own because the
// generic one, which holds every element-wise op, takes 50-65 ms to compile on lavapipe. And
// k-means' one-hot responsibilities, OP_ONEHOT: entry (i, col) of the n x k matrix is 1 where
// point i's label (word i of binding c) is col, else 0; binding a is not read.
@compute @workgroup_size(WG)
fn gmm_elementwise(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let span = elem_span(ll_linear(wid, nwg, lid));
    if (!span.live) {
        return;
    }
    pairwise_reset();
    for (var col = span.start; col < span.end; col++) {
        let i = span.base + col;
        var v = 0u;
        if (OP == OP_ONEHOT) {
            let label = c[params.c_off + params.row0 + span.r];
            v = select(0u, 0x3f800000u, label == col); // 1.0 at the label's column
        } else {
            v = load_a(params.a_off + i);
            if (OP == OP_RESP) {
                v = xexp(xsub(v, c[params.c_off + params.row0 + span.r]));
            }
        }
        elem_emit(i, v);
    }
    elem_finish(span);
}

// MODE_GMM_CENTERED's rows without the pairwise counter per term: one invocation takes one
// component, a tile of up to TILE dimensions and a chunk of CHUNK points, reads each point's
// responsibility once and its TILE coordinates once, and keeps the 2 x TILE sums (and, for the
// first tile, sum r) in registers, added in point order; the chunk sums are then reduced
// pairwise by `reduce` as gmm_moments' are (same rows q, same partial slots). Any non-finite
// term makes its row's partial NaN. Dispatch: len_in x ceil(dims / TILE) x slots invocations.
const TILE: u32 = 8u;

@compute @workgroup_size(WG)
fn gmm_moments_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = params.len_in;
    let dims = params.cols;
    let chunks = params.slots;
    let t = ll_linear(wid, nwg, lid) + params.col0 * chunks;
    let tiles = (dims + TILE - 1u) / TILE;
    if (t >= min(g * tiles, params.col1) * chunks) {
        return;
    }
    let lq = t / chunks;
    let ch = t - lq * chunks;
    let comp = lq / tiles;
    let j0 = (lq - comp * tiles) * TILE;
    let width = min(TILE, dims - j0);
    var mu: array<f32, 8>;
    var s1: array<f32, 8>;
    var s2: array<f32, 8>;
    for (var u = 0u; u < TILE; u++) {
        mu[u] = bitcast<f32>(gmm_uniform_word(g + comp * dims + j0 + min(u, width - 1u)));
        s1[u] = 0.0;
        s2[u] = 0.0;
    }
    var n_sum = 0.0;
    let start = ch * CHUNK;
    let end = min(start + CHUNK, params.rows);
    for (var i = start; i < end; i++) {
        let r = bitcast<f32>(b[i * params.k + params.row0 + comp]);
        n_sum += r;
        let base = params.a_off + i * dims + j0;
        for (var u = 0u; u < TILE; u++) {
            if (u < width) {
                let rd = r * (bitcast<f32>(a[base + u]) - mu[u]);
                s1[u] += rd;
                s2[u] += rd * (bitcast<f32>(a[base + u]) - mu[u]);
            }
        }
    }
    for (var u = 0u; u < width; u++) {
        moment_store((params.row0 + comp) * dims + j0 + u, ch, f32b(s1[u]), f32b(s2[u]));
    }
    if (j0 == 0u) {
        moment_store(params.k * dims + params.row0 + comp, ch, f32b(n_sum), 0u);
    }
}

// MODE_GMM_CROSS's rows (the full scatter about the means) the same way: one invocation takes
// one component, a pair of blocks (A <= B) of up to BLOCK dimensions each and a chunk of points,
// and keeps the BLOCK x BLOCK sums r (x_a - mu_a) (x_b - mu_b) in registers, added in point
// order. It writes the pairs a < b of its block pair, the diagonal rows (sum r (x_a - mu_a) and
// sum r (x_a - mu_a)^2) when A = B, and sum r when A = B = 0; rows and slots as gmm_moments.
// Dispatch: len_in x T (T + 1) / 2 x slots invocations, T = ceil(dims / BLOCK).
const BLOCK: u32 = 4u;

@compute @workgroup_size(WG)
fn gmm_scatter_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = params.len_in;
    let dims = params.cols;
    let chunks = params.slots;
    let t = ll_linear(wid, nwg, lid) + params.col0 * chunks;
    let blocks = (dims + BLOCK - 1u) / BLOCK;
    let block_pairs = blocks * (blocks + 1u) / 2u;
    if (t >= min(g * block_pairs, params.col1) * chunks) {
        return;
    }
    let lq = t / chunks;
    let ch = t - lq * chunks;
    let comp = lq / block_pairs;
    let blocks_ab = upper_entry(lq - comp * block_pairs, blocks);
    let a0 = blocks_ab.x * BLOCK;
    let b0 = blocks_ab.y * BLOCK;
    let wa = min(BLOCK, dims - a0);
    let wb = min(BLOCK, dims - b0);
    var mua: array<f32, 4>;
    var mub: array<f32, 4>;
    var m: array<f32, 16>;
    var s1: array<f32, 4>;
    for (var u = 0u; u < BLOCK; u++) {
        mua[u] = bitcast<f32>(gmm_uniform_word(g + comp * dims + a0 + min(u, wa - 1u)));
        mub[u] = bitcast<f32>(gmm_uniform_word(g + comp * dims + b0 + min(u, wb - 1u)));
        s1[u] = 0.0;
    }
    for (var u = 0u; u < BLOCK * BLOCK; u++) {
        m[u] = 0.0;
    }
    var n_sum = 0.0;
    let start = ch * CHUNK;
    let end = min(start + CHUNK, params.rows);
    for (var i = start; i < end; i++) {
        let r = bitcast<f32>(b[i * params.k + params.row0 + comp]);
        n_sum += r;
        let base = params.a_off + i * dims;
        var da: array<f32, 4>;
        var db: array<f32, 4>;
        for (var u = 0u; u < BLOCK; u++) {
            da[u] = bitcast<f32>(a[base + a0 + min(u, wa - 1u)]) - mua[u];
            db[u] = bitcast<f32>(a[base + b0 + min(u, wb - 1u)]) - mub[u];
        }
        for (var u = 0u; u < BLOCK; u++) {
            let rd = r * da[u];
            s1[u] += rd;
            for (var v = 0u; v < BLOCK; v++) {
                m[u * BLOCK + v] += rd * db[v];
            }
        }
    }
    let pairs = dims * (dims - 1u) / 2u;
    for (var u = 0u; u < wa; u++) {
        let ia = a0 + u;
        for (var v = 0u; v < wb; v++) {
            let ib = b0 + v;
            if (ib < ia) {
                continue;
            }
            var q: u32;
            var sb = f32b(m[u * BLOCK + v]);
            var wbits = 0u;
            if (ib == ia) {
                q = (params.row0 + comp) * dims + ia;
                wbits = sb;
                sb = f32b(s1[u]);
            } else {
                let p = ia * dims - ia * (ia + 1u) / 2u + (ib - ia - 1u);
                q = params.k * (dims + 1u) + (params.row0 + comp) * pairs + p;
            }
            moment_store(q, ch, sb, wbits);
        }
    }
    if (a0 == 0u && b0 == 0u) {
        moment_store(params.k * dims + params.row0 + comp, ch, f32b(n_sum), 0u);
    }
}

// The whole E-step of a diagonal or spherical mixture in one pass over the points
// (MODE_GMM_CENTERED's rows and log p(x)), without the n x k matrix: a workgroup takes a chunk
// of ESTEP_POINTS points.
// Phase 1: lane lid takes points 4 lid + t (t < 4), their coordinates as one vec4 per dimension
// as gmm_score_tiled holds its four (the same operations per point), and the components four
// at a time. It keeps the log-joints and the points' coordinates in workgroup memory, and
// takes log p(x) through the log-sum-exp monoid in component order, written at out_off + point
// (for the log-likelihood's pairwise sum, and read back by phase 2).
// Phase 2: lanes 0..15 take components 4 cq .. 4 cq + 3 (one vec4) of stream s, the points
// 4 u + s in order: r = exp(L - log p(x)) as OP_RESP computes it (0 past the points), then per
// dimension j the sums r (x_j - mu_j), r (x_j - mu_j)^2 and, per component, r. Software
// adapters load a lane-varying or loop-varying address lane by lane and component by
// component, so the loads set the time there: a lane reads one word of log-joints and four
// of coordinates a point, and its sums and means sit in arrays indexed by constants only
// (the loops over dims unroll: GMM_DIMS).
// Phase 3: the four streams' sums are added in stream order and stored as the chunk's partials
// at chunk col0 + g (moment_store, the rows of gmm_moments_tiled).
// Needs one uniform window holding every component (len_in = k <= ESTEP_K), dims <=
// GMM_TILE_DIMS, WG = 64 and 32 KiB of workgroup memory; the host checks.
const ESTEP_K: u32 = 16u;
const ESTEP_POINTS: u32 = 256u;
// Phases 1 and 2: the log-joints of components 4 q .. 4 q + 3 with point p at
// estep_r[4 p + q], its coordinates 4 m .. 4 m + 3 at estep_r[1024 + 4 p + m]. Phase 3: see
// there.
var<workgroup> estep_r: array<vec4<u32>, 2048>;

// Word i of the workgroup memory as four floats.
fn estep_f(i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(estep_r[i]);
}

// log p(x) of a point of the dispatch, at out_off + point (none past the points).
fn estep_lp_store(point: u32, bits: u32) {
    if (point < params.rows) {
        out[params.out_off + point] = bits;
    }
}

// The log-joints of component comp with the four points of xs (-inf bits past the mixture's
// components, which the monoid skips and whose responsibility is 0). The window's words here:
// [constants | means, 4 ceil(dims / 4) a component (zero-padded) | precisions, the same
// (diagonal) or one a component (spherical)] from c_off and c2_off, multiples of 4, so that
// four dimensions' parameters are one vec4 load; the padding adds (0 - 0) 0 = 0 to q.
fn estep_joint(xs: ptr<function, array<vec4<f32>, GMM_TILE_DIMS>>, finite: vec4<bool>,
    comp: u32) -> vec4<u32> {
    if (comp >= params.len_in) {
        return vec4<u32>(F32_NEG_INF);
    }
    let quads = (gmm_dims() + 3u) / 4u;
    let mu = params.c_off / 4u + comp * quads;
    var q = vec4<f32>(0.0);
    if (gmm_kind() == GMM_DIAG) {
        let pc = params.c2_off / 4u + comp * quads;
        for (var m = 0u; m < quads; m++) {
            let mu4 = bitcast<vec4<f32>>(gmm_uniform[mu + m]);
            let pc4 = bitcast<vec4<f32>>(gmm_uniform[pc + m]);
            let d0 = ((*xs)[4u * m] - mu4.x) * pc4.x;
            q += d0 * d0;
            let d1 = ((*xs)[4u * m + 1u] - mu4.y) * pc4.y;
            q += d1 * d1;
            let d2 = ((*xs)[4u * m + 2u] - mu4.z) * pc4.z;
            q += d2 * d2;
            let d3 = ((*xs)[4u * m + 3u] - mu4.w) * pc4.w;
            q += d3 * d3;
        }
    } else {
        let w = gp(params.c2_off + comp);
        for (var m = 0u; m < quads; m++) {
            let mu4 = bitcast<vec4<f32>>(gmm_uniform[mu + m]);
            let d0 = ((*xs)[4u * m] - mu4.x) * w;
            q += d0 * d0;
            let d1 = ((*xs)[4u * m + 1u] - mu4.y) * w;
            q += d1 * d1;
            let d2 = ((*xs)[4u * m + 2u] - mu4.z) * w;
            q += d2 * d2;
            let d3 = ((*xs)[4u * m + 3u] - mu4.w) * w;
            q += d3 * d3;
        }
    }
    let cb = gp_bits(params.b_off + comp);
    return vec4<u32>(
        tile_joint(finite[0], cb, q[0]),
        tile_joint(finite[1], cb, q[1]),
        tile_joint(finite[2], cb, q[2]),
        tile_joint(finite[3], cb, q[3]),
    );
}

// r = exp(L - log p(x)) of four components, as OP_RESP computes it; 0 for a point past the end.
fn estep_resp(l: vec4<u32>, lp: u32, live: bool) -> vec4<u32> {
    let r = vec4<u32>(xexp(xsub(l.x, lp)), xexp(xsub(l.y, lp)), xexp(xsub(l.z, lp)),
        xexp(xsub(l.w, lp)));
    return select(vec4<u32>(0u), r, live);
}

@compute @workgroup_size(WG)
fn gmm_estep_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = wid.x + wid.y * nwg.x;
    // Whole workgroups past the points (a 2-D grid's tail) leave before the barriers together.
    if (g * ESTEP_POINTS >= params.rows) {
        return;
    }
    let dims = gmm_dims();
    let k = params.len_in;
    let chunk0 = g * ESTEP_POINTS;
    let count = min(ESTEP_POINTS, params.rows - chunk0);
    var xs: array<vec4<f32>, GMM_TILE_DIMS>;
    var finite = vec4<bool>(true);
    let last = params.rows - 1u;
    let first = chunk0 + 4u * lid;
    let at = 16u * lid;
    let p0 = params.a_off + min(first, last) * dims;
    let p1 = params.a_off + min(first + 1u, last) * dims;
    let p2 = params.a_off + min(first + 2u, last) * dims;
    let p3 = params.a_off + min(first + 3u, last) * dims;
    for (var i = 0u; i < dims; i++) {
        let bits = vec4<u32>(a[p0 + i], a[p1 + i], a[p2 + i], a[p3 + i]);
        finite = finite & ((bits & vec4<u32>(F32_ABS_MASK)) < vec4<u32>(F32_POS_INF));
        xs[i] = bitcast<vec4<f32>>(bits);
    }
    // The four points' coordinates for phase 2, four dimensions a word (zero past the last).
    let quads = (dims + 3u) / 4u;
    for (var m = 0u; m < quads; m++) {
        let xa = at + 1024u + m;
        estep_r[xa] = bitcast<vec4<u32>>(
            vec4<f32>(xs[4u * m].x, xs[4u * m + 1u].x, xs[4u * m + 2u].x, xs[4u * m + 3u].x));
        estep_r[xa + 4u] = bitcast<vec4<u32>>(
            vec4<f32>(xs[4u * m].y, xs[4u * m + 1u].y, xs[4u * m + 2u].y, xs[4u * m + 3u].y));
        estep_r[xa + 8u] = bitcast<vec4<u32>>(
            vec4<f32>(xs[4u * m].z, xs[4u * m + 1u].z, xs[4u * m + 2u].z, xs[4u * m + 3u].z));
        estep_r[xa + 12u] = bitcast<vec4<u32>>(
            vec4<f32>(xs[4u * m].w, xs[4u * m + 1u].w, xs[4u * m + 2u].w, xs[4u * m + 3u].w));
    }
    var st0 = lse_identity();
    var st1 = lse_identity();
    var st2 = lse_identity();
    var st3 = lse_identity();
    let quads_k = (k + 3u) / 4u;
    for (var cq = 0u; cq < quads_k; cq++) {
        // Rows: components 4 cq + 0..3; columns: the four points.
        let l0 = estep_joint(&xs, finite, 4u * cq);
        let l1 = estep_joint(&xs, finite, 4u * cq + 1u);
        let l2 = estep_joint(&xs, finite, 4u * cq + 2u);
        let l3 = estep_joint(&xs, finite, 4u * cq + 3u);
        st0 = lse_push(lse_push(lse_push(lse_push(st0, l0.x), l1.x), l2.x), l3.x);
        st1 = lse_push(lse_push(lse_push(lse_push(st1, l0.y), l1.y), l2.y), l3.y);
        st2 = lse_push(lse_push(lse_push(lse_push(st2, l0.z), l1.z), l2.z), l3.z);
        st3 = lse_push(lse_push(lse_push(lse_push(st3, l0.w), l1.w), l2.w), l3.w);
        estep_r[at + cq] = vec4<u32>(l0.x, l1.x, l2.x, l3.x);
        estep_r[at + 4u + cq] = vec4<u32>(l0.y, l1.y, l2.y, l3.y);
        estep_r[at + 8u + cq] = vec4<u32>(l0.z, l1.z, l2.z, l3.z);
        estep_r[at + 12u + cq] = vec4<u32>(l0.w, l1.w, l2.w, l3.w);
    }
    let lp = vec4<u32>(
        lse_result_bits(st0),
        lse_result_bits(st1),
        lse_result_bits(st2),
        lse_result_bits(st3),
    );
    estep_lp_store(first, lp.x);
    estep_lp_store(first + 1u, lp.y);
    estep_lp_store(first + 2u, lp.z);
    estep_lp_store(first + 3u, lp.w);
    // log p(x) is read back from `out` by other lanes.
    workgroupBarrier();
    storageBarrier();
    // Phase 2: lanes 0..15, components 4 cq .. 4 cq + 3 (one vec4) of stream s.
    let cq = lid & 3u;
    let s = (lid >> 2u) & 3u;
    var s1: array<vec4<f32>, GMM_TILE_DIMS>;
    var s2: array<vec4<f32>, GMM_TILE_DIMS>;
    var ns = vec4<f32>(0.0);
    if (lid < 16u && cq < quads_k) {
        // Components past the last (in the last quad) take the last's means; not stored.
        let stride = 4u * quads;
        let m0 = params.c_off + min(4u * cq, k - 1u) * stride;
        let m1 = params.c_off + min(4u * cq + 1u, k - 1u) * stride;
        let m2 = params.c_off + min(4u * cq + 2u, k - 1u) * stride;
        let m3 = params.c_off + min(4u * cq + 3u, k - 1u) * stride;
        var mu: array<vec4<f32>, GMM_TILE_DIMS>;
        for (var j = 0u; j < dims; j++) {
            mu[j] = vec4<f32>(gp(m0 + j), gp(m1 + j), gp(m2 + j), gp(m3 + j));
        }
        let quads_p = (count + 3u) / 4u;
        for (var u = 0u; u < quads_p; u++) {
            let p = 4u * u + s;
            let here = p < count;
            let pc = chunk0 + min(p, count - 1u);
            var xq: array<vec4<f32>, 4>;
            for (var m = 0u; m < quads; m++) {
                xq[m] = bitcast<vec4<f32>>(estep_r[1024u + 4u * p + m]);
            }
            let r = bitcast<vec4<f32>>(estep_resp(estep_r[4u * p + cq], out[params.out_off + pc],
                here));
            ns += r;
            for (var j = 0u; j < dims; j++) {
                let x = vec4<f32>(xq[j >> 2u][j & 3u]);
                let dev = select(vec4<f32>(0.0), x - mu[j], here);
                let rd = r * dev;
                s1[j] += rd;
                s2[j] += rd * dev;
            }
        }
    }
    workgroupBarrier();
    // Phase 3: the sums of (quad cq, dimension j, stream s) at estep_r[e], 256 + e (squares),
    // e = (cq * 16 + j) * 4 + s, and Σ r at 512 + cq * 4 + s; lane (cq, j) adds its four streams
    // in order.
    if (lid < 16u && cq < quads_k) {
        for (var j = 0u; j < dims; j++) {
            let e = (cq * 16u + j) * 4u + s;
            estep_r[e] = bitcast<vec4<u32>>(s1[j]);
            estep_r[256u + e] = bitcast<vec4<u32>>(s2[j]);
        }
        estep_r[512u + cq * 4u + s] = bitcast<vec4<u32>>(ns);
    }
    workgroupBarrier();
    let jc = lid & 15u;
    let qc = lid >> 4u;
    if (qc < quads_k && jc < dims) {
        let ch = params.col0 + g;
        let e = (qc * 16u + jc) * 4u;
        let f = ((estep_f(e) + estep_f(e + 1u)) + estep_f(e + 2u)) + estep_f(e + 3u);
        let w = ((estep_f(256u + e) + estep_f(257u + e)) + estep_f(258u + e))
            + estep_f(259u + e);
        let n0 = 512u + qc * 4u;
        let n_sum = ((estep_f(n0) + estep_f(n0 + 1u)) + estep_f(n0 + 2u)) + estep_f(n0 + 3u);
        for (var t = 0u; t < 4u; t++) {
            let c = 4u * qc + t;
            if (c < k) {
                moment_store(c * dims + jc, ch, f32b(f[t]), f32b(w[t]));
                if (jc == 0u) {
                    moment_store(params.k * dims + c, ch, f32b(n_sum[t]), 0u);
                }
            }
        }
    }
}
