// Gaussian mixtures: the log-joint log w_k + log N(x | mu_k, Sigma_k) of every point and
// component, in scikit-learn's parameterisation (precisions' Cholesky factors). Needs
// common.wgsl and likelihood.wgsl before it. The host then takes the row-wise log-sum-exp
// (score_samples) or log_softmax (log responsibilities) of the n x k matrix with `RowOp`.
// Mirror: src/reference/gmm.rs. Host: src/gmm.rs.
//
// OP: 0 diagonal, 1 spherical, 2 full covariance. The parameter buffer (binding b) holds
//   [k constants: ln w_k + ln det(P_k) - dims/2 ln 2 pi | k x dims means | precisions' Cholesky
//    factors: k x dims (diag), k (spherical) or k x dims x dims (full, row-major P[i][j])]
// at b_off, c_off and c2_off. The quadratic form is sum_j (sum_i (x_i - mu_i) P_ij)^2, the
// difference taken first: the expanded form cancels in f32 when data sit far from the origin.

const GMM_DIAG: u32 = 0u;
const GMM_SPHERICAL: u32 = 1u;

// Points of up to GMM_DIMS_MAX dimensions are held in registers (a private array), read once
// per invocation; longer ones are read from the buffer each time.
const GMM_DIMS_MAX: u32 = 64u;

fn gmm_x(xs: ptr<function, array<f32, GMM_DIMS_MAX>>, p: u32, i: u32) -> f32 {
    if (params.cols <= GMM_DIMS_MAX) {
        return (*xs)[i];
    }
    return bitcast<f32>(a[params.a_off + p * params.cols + i]);
}

fn gmm_quadratic(xs: ptr<function, array<f32, GMM_DIMS_MAX>>, p: u32, comp: u32) -> f32 {
    let dims = params.cols;
    let mu = params.c_off + comp * dims;
    var q = 0.0;
    if (OP == GMM_DIAG) {
        let pc = params.c2_off + comp * dims;
        for (var i = 0u; i < dims; i++) {
            let d = (gmm_x(xs, p, i) - bitcast<f32>(b[mu + i])) * bitcast<f32>(b[pc + i]);
            q += d * d;
        }
    } else if (OP == GMM_SPHERICAL) {
        let pc = bitcast<f32>(b[params.c2_off + comp]);
        for (var i = 0u; i < dims; i++) {
            let d = (gmm_x(xs, p, i) - bitcast<f32>(b[mu + i])) * pc;
            q += d * d;
        }
    } else {
        // Full: y_j = sum_i (x_i - mu_i) P_ij; an upper-triangular P (scikit-learn's) skips
        // the zeros below the diagonal. The differences are taken once per component.
        var diff: array<f32, GMM_DIMS_MAX>;
        let cached = dims <= GMM_DIMS_MAX;
        if (cached) {
            for (var i = 0u; i < dims; i++) {
                diff[i] = (*xs)[i] - bitcast<f32>(b[mu + i]);
            }
        }
        let pm = params.c2_off + comp * dims * dims;
        let tri = (params.mode & MODE_TRIANGULAR) != 0u;
        for (var j = 0u; j < dims; j++) {
            var y = 0.0;
            var i_end = dims;
            if (tri) {
                i_end = j + 1u;
            }
            for (var i = 0u; i < i_end; i++) {
                var d: f32;
                if (cached) {
                    d = diff[i];
                } else {
                    d = gmm_x(xs, p, i) - bitcast<f32>(b[mu + i]);
                }
                y += d * bitcast<f32>(b[pm + i * dims + j]);
            }
            q += y * y;
        }
    }
    return q;
}

// One invocation per (point, block of kb components): writes log-joint values at
// out_off + p * k + component. A point with a NaN or infinite coordinate gets NaN.
@compute @workgroup_size(WG)
fn gmm_log_joint(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = ll_linear(wid, nwg, lid);
    let blocks = params.slots;
    if (t >= params.rows * blocks) {
        return;
    }
    let p = t / blocks;
    let first = (t - p * blocks) * params.kb;
    let end = min(first + params.kb, params.k);
    var finite = true;
    var xs: array<f32, GMM_DIMS_MAX>;
    for (var i = 0u; i < params.cols; i++) {
        let bits = a[params.a_off + p * params.cols + i];
        finite = finite && is_finite_bits(bits);
        if (i < GMM_DIMS_MAX) {
            xs[i] = bitcast<f32>(bits);
        }
    }
    for (var comp = first; comp < end; comp++) {
        let at = params.out_off + p * params.k + comp;
        let cb = b[params.b_off + comp];
        if (!finite) {
            out[at] = F32_NAN;
        } else if (cb == F32_NEG_INF) {
            // A component of weight zero.
            out[at] = F32_NEG_INF;
        } else {
            let q = gmm_quadratic(&xs, p, comp);
            if (is_finite_bits(f32b(q))) {
                out[at] = f32b(bitcast<f32>(cb) - 0.5 * q);
            } else {
                out[at] = F32_NEG_INF;
            }
        }
    }
}
