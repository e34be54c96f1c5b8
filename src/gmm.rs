//! Gaussian mixtures on the GPU: `log p(x)` per point (scikit-learn's
//! `GaussianMixture.score_samples`) and the log-posteriors of the components
//! (`predict_proba` in log space), in scikit-learn's parameterisation.
//!
//! A kernel (`shaders/gmm.wgsl`) writes the `n × k` log-joint `ln w_k + ln N(x | μ_k, Σ_k)`,
//! its quadratic form taken as `Σ_j (Σ_i (x_i − μ_i) P_ij)²` — the difference first, never the
//! expanded `Σx²τ − 2Σxμτ + Σμ²τ` that cancels in f32 far from the origin — and then the
//! log-sum-exp family reduces each row ([`crate::RowFn::Logsumexp`] or
//! [`crate::RowFn::LogSoftmax`]). CPU mirror: [`crate::reference::gmm`].

use crate::codes::{
    FINISH_SECOND, FINISH_SUM, MODE_FUSED_ARGMAX, MODE_FUSED_RESP, MODE_FUSED_SCORE,
    MODE_GMM_CENTERED, MODE_GMM_CROSS, MODE_GMM_GRAD, MODE_TRIANGULAR, OP_GMM_DIAG, OP_GMM_DIAG_U,
    OP_GMM_FULL, OP_GMM_FULL_U, OP_GMM_SPHERICAL, OP_GMM_SPHERICAL_U, OP_ONEHOT, OP_RESP, OP_SUM_G,
};
use crate::engine::blocking::Values;
use crate::engine::device::Gpu;
use crate::engine::geometry::{
    Caps, LANE_BUDGET, MAX_GROUPS, Window, batches, u32_of, window as window_of,
    window_of as entries_window,
};
use crate::engine::op::Op;
use crate::engine::passes::{
    CHUNK, LL_WG, LlPass, elementwise_passes, elementwise_passes_at, groups_for, grow_scratch,
    input_bytes, key, key_reading, limit, reduce_passes, reduce_passes_from, usable,
};
use crate::engine::pipelines::PipelineKey;
use crate::engine::program::{Bind, Program, Src, Step};
use crate::engine::shaders::GMM_UNIFORM_BYTES;
use crate::engine::shaders::{LlParams, PARTIAL_BYTES};
use crate::error::Error;
use crate::logsumexp::{InputFormat, RowFn, RowOp, RowsLayout, Strategy};
pub use crate::reference::gmm::{Covariance, Gmm, GmmReduction};

/// What a [`GmmOp`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GmmOutput {
    /// `log p(x)` per point: `n` values (`score_samples`).
    ScoreSamples,
    /// `log p(k | x)`: `n × k` values (`predict_proba` in log space).
    LogResponsibilities,
    /// The most probable component of each point, the first of equals (`predict`: the argmax
    /// of the log-joint): `n` values, each a `u32` in an f32 slot ([`f32::to_bits`] reads it),
    /// `u32::MAX` for a point with a non-finite coordinate. Only where one invocation holds
    /// every component of a point (`Error::Unsupported` otherwise;
    /// [`Gpu::gmm_predict`] then takes the argmax of the log-responsibilities).
    Labels,
    /// The log-joint `ln w_k + ln N(x | μ_k, Σ_k)`: `n × k` values (scikit-learn's
    /// `_estimate_weighted_log_prob`).
    LogJoint,
}

/// Points per invocation of `gmm_score_tiled`, and the most dimensions it takes (the WGSL's
/// GMM_SCORE_TILE and GMM_TILE_DIMS).
const GMM_SCORE_TILE: u64 = 4;
const GMM_TILE_DIMS: u64 = 16;
/// Most components the fused responsibilities kernel holds (`GMM_FUSED_K`).
const GMM_FUSED_K: u64 = 64;

/// The `OP` of covariance kind `op` with its parameters in the uniform binding.
fn uniform_op(op: u32) -> u32 {
    match op {
        OP_GMM_DIAG => OP_GMM_DIAG_U,
        OP_GMM_SPHERICAL => OP_GMM_SPHERICAL_U,
        _ => OP_GMM_FULL_U,
    }
}

/// The validated parameters as the kernel reads them, and the mode bits.
struct Packed {
    consts: Vec<f32>,
    means: Vec<f32>,
    prec: Vec<f32>,
    /// Precision words per component (dims, 1 or dims²).
    prec_per: usize,
    /// The kernel's `OP` with the parameters in binding b: `OP_GMM_DIAG`, `_SPHERICAL` or
    /// `_FULL` (see `uniform_op`).
    op: u32,
    mode: u32,
    /// Loop iterations per component in the kernel.
    per_component: u64,
}

impl Packed {
    /// On software adapters, which end an invocation's loops after 65,535 iterations in all,
    /// an error where one component's loops (and a point's load) exceed the kernels' budget.
    fn check_lanes(&self, caps: &Caps, dims: usize) -> Result<(), Error> {
        if caps.cpu && self.per_component + dims as u64 > LANE_BUDGET {
            return Err(Error::Limit(format!(
                "{dims} dimensions need {} loop iterations per component in one invocation; \
                 software adapters end loops after 65,535",
                self.per_component
            )));
        }
        Ok(())
    }

    /// The parameter words of components [c0, c1): constants, means, precisions.
    fn group(&self, c0: usize, c1: usize, d: usize) -> Vec<f32> {
        let mut w = self.consts[c0..c1].to_vec();
        w.extend_from_slice(&self.means[c0 * d..c1 * d]);
        w.extend_from_slice(&self.prec[c0 * self.prec_per..c1 * self.prec_per]);
        w
    }
}

fn pack(gmm: &Gmm, dims: usize) -> Result<Packed, Error> {
    let k = gmm.weights.len();
    if k == 0 {
        return Err(Error::Value(
            "a mixture needs at least one component".into(),
        ));
    }
    if dims == 0 {
        return Err(Error::Shape("points need at least one dimension".into()));
    }
    let d = dims;
    let bad = |what: &str, i: usize, v: f32, rule: &str| {
        Err(Error::Value(format!("{what}[{i}] is {v}; {rule}")))
    };
    for (i, &w) in gmm.weights.iter().enumerate() {
        if !(w.is_finite() && w >= 0.0) {
            return bad("weights", i, w, "weights must be finite and ≥ 0");
        }
    }
    let sum: f64 = gmm.weights.iter().map(|&w| f64::from(w)).sum();
    if (sum - 1.0).abs() > 1e-4 {
        return Err(Error::Value(format!(
            "the weights sum to {sum}; they must sum to 1 within 1e-4"
        )));
    }
    let expect = |what: &'static str, v: &[f32], n: usize| {
        if v.len() != n {
            Err(Error::InputLength {
                what,
                expected: n,
                actual: v.len(),
            })
        } else {
            Ok(())
        }
    };
    expect("means (k × dims)", &gmm.means, k * d)?;
    if let Some(i) = gmm.means.iter().position(|m| !m.is_finite()) {
        return bad("means", i, gmm.means[i], "means must be finite");
    }
    if let Covariance::Tied(p) = &gmm.covariance {
        expect("precisions_cholesky (dims × dims, tied)", p, d * d)?;
    }
    // A tied factor is evaluated as every component's own.
    let untied = gmm.covariance.untied(k);
    let mut log_det = vec![0f64; k];
    let (prec, op, mode, per_component): (Vec<f32>, u32, u32, u64) = match untied.as_ref() {
        Covariance::Diag(var) | Covariance::Spherical(var) => {
            let spherical = matches!(untied.as_ref(), Covariance::Spherical(_));
            let per = if spherical { 1 } else { d };
            expect(
                if spherical {
                    "variances (k)"
                } else {
                    "variances (k × dims)"
                },
                var,
                k * per,
            )?;
            let mut prec = Vec::with_capacity(var.len());
            for (i, &v) in var.iter().enumerate() {
                if !(v.is_finite() && v > 0.0) {
                    return bad("variances", i, v, "variances must be finite and > 0");
                }
                let pc = 1.0 / f64::from(v).sqrt();
                log_det[i / per] += pc.ln() * if spherical { d as f64 } else { 1.0 };
                prec.push(pc as f32);
            }
            (
                prec,
                if spherical {
                    OP_GMM_SPHERICAL
                } else {
                    OP_GMM_DIAG
                },
                0,
                d as u64,
            )
        }
        Covariance::Full(p) | Covariance::Tied(p) => {
            expect("precisions_cholesky (k × dims × dims)", p, k * d * d)?;
            if let Some(i) = p.iter().position(|v| !v.is_finite()) {
                return bad("precisions_cholesky", i, p[i], "entries must be finite");
            }
            let mut triangular = true;
            for c in 0..k {
                for i in 0..d {
                    let diag = p[c * d * d + i * d + i];
                    if diag <= 0.0 {
                        return bad(
                            "precisions_cholesky",
                            c * d * d + i * d + i,
                            diag,
                            "the diagonal of each Cholesky factor must be > 0",
                        );
                    }
                    log_det[c] += f64::from(diag).ln();
                    for j in 0..i {
                        triangular &= p[c * d * d + i * d + j] == 0.0;
                    }
                }
            }
            // Upper-triangular factors (scikit-learn's) are packed row by row: half the words
            // and half the work.
            let packed_p: Vec<f32> = if triangular {
                let mut v = Vec::with_capacity(k * d * (d + 1) / 2);
                for c in 0..k {
                    for i in 0..d {
                        v.extend_from_slice(&p[c * d * d + i * d + i..c * d * d + (i + 1) * d]);
                    }
                }
                v
            } else {
                p.clone()
            };
            let per = if triangular {
                (d * (d + 1) / 2) as u64
            } else {
                (d * d) as u64
            };
            (
                packed_p,
                OP_GMM_FULL,
                if triangular { MODE_TRIANGULAR } else { 0 },
                per + d as u64,
            )
        }
    };
    let consts = crate::reference::gmm::component_constants(&gmm.weights, &log_det, d);
    let prec_per = prec.len() / k;
    Ok(Packed {
        consts,
        means: gmm.means.clone(),
        prec,
        prec_per,
        op,
        mode,
        per_component,
    })
}

/// The dispatches of `gmm_log_joint` over `n` points and the op's aux words they read: the
/// parameters in 16 KiB uniform windows per group of components (or whole, for components too
/// large for one; the kernel then reads them from binding b at word 0), writing the `n × k`
/// log-joint into `dst` from points of `format`, unless `fused` (called with whether one
/// invocation can hold every component) returns a fused mode: then the kernel writes its
/// output to `Src::Output` itself (`gmm_score_tiled` for the fused score where it applies).
/// Returns the passes and the fused mode.
fn joint_passes(
    caps: &Caps,
    packed: &Packed,
    n64: u64,
    dims: usize,
    fused: impl Fn(bool) -> u32,
    dst: Src,
    format: InputFormat,
) -> Result<(Vec<LlPass>, u32, Vec<f32>), Error> {
    let entry = format.bytes();
    let (d, k) = (dims as u64, packed.consts.len() as u64);
    let usable = usable(caps)?;
    if d * 4 > usable || k * 4 > usable {
        return Err(Error::Limit(
            "one point (or its k values) is larger than a storage binding".into(),
        ));
    }
    // Groups of components whose parameters fit one 16 KiB uniform window each; a mixture
    // whose single component does not fit is read from a storage binding instead.
    let words_per = 1 + dims + packed.prec_per;
    let window_words = (GMM_UNIFORM_BYTES / 4) as usize;
    let uniform = words_per <= window_words;
    let per_group = if uniform {
        (window_words / words_per).min(k as usize)
    } else {
        k as usize
    };
    let mut aux: Vec<f32> = Vec::new();
    let mut groups = Vec::new(); // (first component, components, window)
    let mut c0 = 0usize;
    while c0 < k as usize {
        let c1 = (c0 + per_group).min(k as usize);
        let mut words = packed.group(c0, c1, dims);
        let window = if uniform {
            let offset = aux.len() as u64 * 4;
            words.resize(window_words, 0.0);
            Some(Window {
                offset,
                size: GMM_UNIFORM_BYTES,
            })
        } else {
            None
        };
        aux.extend_from_slice(&words);
        groups.push((c0, c1 - c0, window));
        c0 = c1;
    }
    let aux_bytes = aux.len() as u64 * 4;
    if !uniform && aux_bytes > caps.max_binding {
        return Err(Error::Limit(format!(
            "the mixture's parameters ({aux_bytes} bytes) exceed a storage binding"
        )));
    }
    // One group whose components one invocation can walk: the kernel reduces them itself.
    let one_block =
        groups.len() == 1 && (LANE_BUDGET.saturating_sub(d) / packed.per_component) >= k;
    let fused = fused(one_block);
    let out_per_point = if fused == MODE_FUSED_SCORE || fused == MODE_FUSED_ARGMAX {
        1
    } else {
        k
    };
    // Several points per invocation (`gmm_score_tiled`): the fused score of diagonal or spherical
    // mixtures in one uniform window, points of at most GMM_TILE_DIMS dimensions.
    // (Or the log-joint itself, not fused, where one window holds every component: the same
    // values, each point's operations in the same order.)
    let tiled = (fused == MODE_FUSED_SCORE
        || fused == MODE_FUSED_ARGMAX
        || (fused == 0 && groups.len() == 1))
        && uniform
        && packed.op != OP_GMM_FULL
        && (1..=GMM_TILE_DIMS).contains(&d)
        && k * packed.per_component * GMM_SCORE_TILE + GMM_SCORE_TILE * d <= LANE_BUDGET;
    let (entry_point, points_per_group) = if tiled {
        ("gmm_score_tiled", u64::from(LL_WG) * GMM_SCORE_TILE)
    } else {
        ("gmm_log_joint", u64::from(LL_WG))
    };
    let mut passes = Vec::new();
    for &(first, count, window) in &groups {
        let count = count as u64;
        let kb = (LANE_BUDGET.saturating_sub(d) / packed.per_component).clamp(1, count);
        let blocks = count.div_ceil(kb);
        let p_max = (usable / (d * 4))
            .min(usable / (k * 4))
            .min(MAX_GROUPS * u64::from(LL_WG) / blocks)
            .min(caps.per_dispatch(count * packed.per_component + d))
            .max(1);
        for (p0, p) in batches(n64, p_max) {
            let (xw, xoff) =
                entries_window(p0 * d * entry, p * d * entry, caps.storage_align, entry);
            let (ow, ooff) = window_of(
                p0 * out_per_point * 4,
                p * out_per_point * 4,
                caps.storage_align,
            );
            passes.push(LlPass {
                key: PipelineKey {
                    // Points held in registers: loops specialised for the dimension.
                    dims: if dims <= 64 { dims as u32 } else { 0 },
                    ..key_reading(
                        entry_point,
                        if uniform {
                            uniform_op(packed.op)
                        } else {
                            packed.op
                        },
                        0,
                        format,
                    )
                },
                params: LlParams {
                    rows: p as u32,
                    cols: u32_of(d, "dims")?,
                    a_off: xoff,
                    b_off: 0,
                    c_off: count as u32,
                    c2_off: u32_of(count + count * d, "means")?,
                    out_off: ooff,
                    mode: packed.mode | fused,
                    slots: blocks as u32,
                    k: k as u32,
                    kb: kb as u32,
                    row0: first as u32,
                    len_in: count as u32,
                    ..LlParams::default()
                },
                groups: p.div_ceil(points_per_group) * blocks,
                bind: [
                    Bind {
                        src: Src::Input(0),
                        window: Some(xw),
                    },
                    if uniform {
                        Bind::whole(Src::Dummy)
                    } else {
                        Bind::whole(Src::Aux)
                    },
                    Bind::whole(Src::Dummy),
                    Bind {
                        src: if fused != 0 { Src::Output } else { dst },
                        window: Some(ow),
                    },
                ],
                uniform: window,
                extra: None,
            });
        }
    }
    Ok((passes, fused, aux))
}

/// An encoder-level Gaussian-mixture evaluation, prepared for `n` points of `dims` dimensions
/// and one mixture. The input is the row-major `n × dims` points (f32, from byte 0).
///
/// ```no_run
/// use logdomain::{Covariance, Gmm, GmmOp, GmmOutput, Gpu};
/// let gpu = Gpu::new()?;
/// let gmm = Gmm { weights: vec![0.5, 0.5], means: vec![-1.0, 1.0],
///                 covariance: Covariance::Spherical(vec![1.0, 1.0]) };
/// let op = GmmOp::new(&gpu, 1000, 1, &gmm, GmmOutput::ScoreSamples)?;
/// assert_eq!(op.output_len(), 1000);
/// # Ok::<(), logdomain::Error>(())
/// ```
pub struct GmmOp {
    output: GmmOutput,
    output_len: usize,
    k: usize,
    program: Program,
}

impl GmmOp {
    /// The pass sequence, for the crate's blocking runners.
    pub(crate) fn program(&self) -> &Program {
        &self.program
    }

    /// Prepares the evaluation; invalid parameters (weights negative or not summing to 1
    /// within 1e−4, non-positive variances, wrong lengths, non-finite values) are errors.
    pub fn new(
        gpu: &Gpu,
        n: usize,
        dims: usize,
        gmm: &Gmm,
        output: GmmOutput,
    ) -> Result<GmmOp, Error> {
        Self::with_format(gpu, n, dims, gmm, output, InputFormat::F32)
    }

    /// [`GmmOp::new`] for f16 points: the input holds `n × dims` IEEE binary16 values
    /// (`half::f16`, two to a 4-byte word, the first in the low half; the buffer at least
    /// `⌈n·dims / 2⌉` words), decoded exactly on the GPU — half the bytes read, the arithmetic
    /// and the f32 results those of the f32 op on the same values. Needs no adapter feature.
    pub fn new_f16(
        gpu: &Gpu,
        n: usize,
        dims: usize,
        gmm: &Gmm,
        output: GmmOutput,
    ) -> Result<GmmOp, Error> {
        Self::with_format(gpu, n, dims, gmm, output, InputFormat::F16)
    }

    fn with_format(
        gpu: &Gpu,
        n: usize,
        dims: usize,
        gmm: &Gmm,
        output: GmmOutput,
        format: InputFormat,
    ) -> Result<GmmOp, Error> {
        let caps = Caps::of(gpu);
        let packed = pack(gmm, dims)?;
        let (n64, d, k) = (n as u64, dims as u64, packed.consts.len() as u64);
        packed.check_lanes(&caps, dims)?;
        let joint_bytes = n64
            .checked_mul(k * 4)
            .ok_or_else(|| Error::Shape("n × k overflows".into()))?;
        let fused_ok = |one_block: bool| match output {
            GmmOutput::ScoreSamples if one_block => MODE_FUSED_SCORE,
            GmmOutput::LogResponsibilities if one_block && k <= GMM_FUSED_K => MODE_FUSED_RESP,
            GmmOutput::Labels if one_block => MODE_FUSED_ARGMAX,
            _ => 0,
        };
        // The log-joint is written where the others' row pass would read it.
        let joint = output == GmmOutput::LogJoint;
        let dst = if joint { Src::Output } else { Src::Scratch(0) };
        let (passes, fused, aux) = joint_passes(&caps, &packed, n64, dims, fused_ok, dst, format)?;
        let func = match output {
            GmmOutput::ScoreSamples | GmmOutput::LogJoint => RowFn::Logsumexp,
            GmmOutput::LogResponsibilities => RowFn::LogSoftmax,
            GmmOutput::Labels if fused == 0 && n > 0 => {
                return Err(Error::Unsupported(format!(
                    "labels need every component of a point in one invocation; {k} components \
                     of {dims} dimensions are more than one holds"
                )));
            }
            GmmOutput::Labels => RowFn::Logsumexp,
        };
        let mut steps = vec![Step::ll(passes)];
        if n > 0 && fused == 0 && !joint {
            let rows = RowOp::new(
                gpu,
                func,
                RowsLayout::contiguous(n, k as usize),
                Strategy::Auto,
            )?;
            steps.push(rows.into_step(Src::Scratch(0), Src::Output));
        }
        let output_len = match output {
            GmmOutput::ScoreSamples | GmmOutput::Labels => n,
            GmmOutput::LogResponsibilities | GmmOutput::LogJoint => n * k as usize,
        };
        let program = Program::new(
            gpu,
            steps,
            Some((bytemuck::cast_slice(&aux).to_vec(), 0)),
            &[if fused != 0 || joint { 0 } else { joint_bytes }, 0],
            vec![input_bytes(n64 * d, format)],
            output_len as u64 * 4,
        )?;
        Ok(GmmOp {
            output,
            output_len,
            k: k as usize,
            program,
        })
    }

    /// What the op writes.
    pub fn output(&self) -> GmmOutput {
        self.output
    }

    /// Number of components.
    pub fn components(&self) -> usize {
        self.k
    }

    /// Number of f32 values written to the output.
    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// How many buffers the op owns (parameters, the mixture's words, scratch), all made when
    /// it was built: recording allocates no buffer.
    pub fn owned_buffers(&self) -> usize {
        self.program.owned_buffers()
    }

    /// Records the evaluation: reads the points (f32, `n × dims`, from byte 0 of `points`) and
    /// writes [`GmmOp::output_len`] values at the start of `output`.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        points: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.program.record(encoder, &[points], output)
    }

    /// Runs the evaluation once on resident buffers and returns the GPU time of its compute
    /// passes, from timestamp queries (`None` without `Features::TIMESTAMP_QUERY`). Waits.
    pub fn kernel_time(
        &self,
        gpu: &Gpu,
        points: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Option<std::time::Duration>, Error> {
        self.program.kernel_time(gpu, &[points], output)
    }
}

/// Checks that `len` points' coordinates make `n × dims`.
/// An error naming the first point with a non-finite coordinate.
pub(crate) fn check_finite_points(points: &[f32], dims: usize) -> Result<(), Error> {
    match points.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::Value(format!(
            "point {} (dimension {}) is {}; the points must be finite",
            i / dims.max(1),
            i % dims.max(1),
            points[i]
        ))),
        None => Ok(()),
    }
}

/// The index of each row's largest value (`k` a row), the first of equals.
pub(crate) fn argmax_rows(values: &[f32], k: usize) -> Vec<u32> {
    values
        .chunks(k.max(1))
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0u32, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv { (i as u32, v) } else { (bi, bv) }
                })
                .0
        })
        .collect()
}

pub(crate) fn check_points(len: usize, n: usize, dims: usize) -> Result<(), Error> {
    let expected = n
        .checked_mul(dims)
        .ok_or_else(|| Error::Shape(format!("{n} × {dims} overflows")))?;
    if len != expected {
        return Err(Error::InputLength {
            what: "points",
            expected,
            actual: len,
        });
    }
    Ok(())
}

impl Gpu {
    fn run_gmm(
        &self,
        points: Values<'_>,
        n: usize,
        dims: usize,
        gmm: &Gmm,
        output: GmmOutput,
    ) -> Result<Vec<f32>, Error> {
        let len = match points {
            Values::F32(v) => v.len(),
            Values::F16(v) => v.len(),
        };
        check_points(len, n, dims)?;
        // Points beyond one storage binding's worth (the points, or their n × k log-joint) go
        // in batches of whole points, each point's value unchanged.
        let caps = Caps::of(self);
        let k = gmm.weights.len().max(1) as u64;
        let entry = match points {
            Values::F32(_) => 4,
            Values::F16(_) => 2,
        };
        let per = (caps.max_binding / (k * 4))
            .min(caps.max_binding / (dims.max(1) as u64 * entry))
            .max(64)
            / 64
            * 64;
        let per = usize::try_from(per).unwrap_or(usize::MAX);
        if n <= per {
            let (_, format, bytes) = points.upload();
            let op = GmmOp::with_format(self, n, dims, gmm, output, format)?;
            return self.run_program(&op.program, &[&bytes], op.output_len);
        }
        let per_point = match output {
            GmmOutput::LogResponsibilities | GmmOutput::LogJoint => k as usize,
            GmmOutput::ScoreSamples | GmmOutput::Labels => 1,
        };
        let mut all = Vec::with_capacity(n * per_point);
        for first in (0..n).step_by(per) {
            let count = per.min(n - first);
            let batch = match points {
                Values::F32(v) => Values::F32(&v[first * dims..(first + count) * dims]),
                Values::F16(v) => Values::F16(&v[first * dims..(first + count) * dims]),
            };
            all.extend(self.run_gmm(batch, count, dims, gmm, output)?);
        }
        Ok(all)
    }

    /// `log p(x)` of each of `n` points (row-major `n × dims`) under the mixture: scikit-learn's
    /// `GaussianMixture.score_samples`.
    ///
    /// ```no_run
    /// use logdomain::{Covariance, Gmm, Gpu};
    /// let gpu = Gpu::new()?;
    /// let gmm = Gmm { weights: vec![1.0], means: vec![0.0],
    ///                 covariance: Covariance::Diag(vec![1.0]) };
    /// let lp = gpu.gmm_score_samples(&[0.0], 1, 1, &gmm)?;
    /// assert!((lp[0] + 0.9189385).abs() < 1e-6);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn gmm_score_samples(
        &self,
        points: &[f32],
        n: usize,
        dims: usize,
        gmm: &Gmm,
    ) -> Result<Vec<f32>, Error> {
        self.run_gmm(Values::F32(points), n, dims, gmm, GmmOutput::ScoreSamples)
    }

    /// [`Gpu::gmm_score_samples`] of f16 points (`half::f16`), read as f16 on the GPU (half
    /// the bytes); bit for bit the f32 evaluation of the same values converted to f32.
    ///
    /// ```no_run
    /// use half::f16;
    /// use logdomain::{Covariance, Gmm, Gpu};
    /// let gpu = Gpu::new()?;
    /// let gmm = Gmm { weights: vec![1.0], means: vec![0.0],
    ///                 covariance: Covariance::Diag(vec![1.0]) };
    /// let lp = gpu.gmm_score_samples_f16(&[f16::ZERO], 1, 1, &gmm)?;
    /// assert!((lp[0] + 0.9189385).abs() < 1e-6);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn gmm_score_samples_f16(
        &self,
        points: &[half::f16],
        n: usize,
        dims: usize,
        gmm: &Gmm,
    ) -> Result<Vec<f32>, Error> {
        self.run_gmm(Values::F16(points), n, dims, gmm, GmmOutput::ScoreSamples)
    }

    /// `log p(k | x)` for each point and component: `n × k` values, row-major
    /// (`predict_proba` in log space).
    pub fn gmm_log_responsibilities(
        &self,
        points: &[f32],
        n: usize,
        dims: usize,
        gmm: &Gmm,
    ) -> Result<Vec<f32>, Error> {
        self.run_gmm(
            Values::F32(points),
            n,
            dims,
            gmm,
            GmmOutput::LogResponsibilities,
        )
    }

    /// `ln w_k + ln N(x | μ_k, Σ_k)` for each point and component: `n × k` values, row-major
    /// (scikit-learn's `_estimate_weighted_log_prob`).
    pub fn gmm_log_joint(
        &self,
        points: &[f32],
        n: usize,
        dims: usize,
        gmm: &Gmm,
    ) -> Result<Vec<f32>, Error> {
        self.run_gmm(Values::F32(points), n, dims, gmm, GmmOutput::LogJoint)
    }

    /// The most probable component of each of `n` points (scikit-learn's `predict`: the argmax
    /// of the log-joint `ln w_k + ln N(x | μ_k, Σ_k)`, the first of equals), from one GPU pass
    /// that reads back `n` labels; where a point's components do not fit one invocation, the
    /// argmax of the log-responsibilities on the host. Points must be finite.
    ///
    /// ```no_run
    /// use logdomain::{Covariance, Gmm, Gpu};
    /// let gpu = Gpu::new()?;
    /// let gmm = Gmm { weights: vec![0.5, 0.5], means: vec![0.0, 10.0],
    ///                 covariance: Covariance::Spherical(vec![1.0, 1.0]) };
    /// assert_eq!(gpu.gmm_predict(&[1.0, 9.0, 4.0], 3, 1, &gmm)?, [0, 1, 0]);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn gmm_predict(
        &self,
        points: &[f32],
        n: usize,
        dims: usize,
        gmm: &Gmm,
    ) -> Result<Vec<u32>, Error> {
        check_points(points.len(), n, dims)?;
        check_finite_points(points, dims)?;
        match self.run_gmm(Values::F32(points), n, dims, gmm, GmmOutput::Labels) {
            Ok(v) => Ok(v.iter().map(|x| x.to_bits()).collect()),
            Err(Error::Unsupported(_)) => {
                let r = self.gmm_log_responsibilities(points, n, dims, gmm)?;
                Ok(argmax_rows(&r, gmm.weights.len()))
            }
            Err(e) => Err(e),
        }
    }

    /// [`Gpu::gmm_log_responsibilities`] of f16 points.
    pub fn gmm_log_responsibilities_f16(
        &self,
        points: &[half::f16],
        n: usize,
        dims: usize,
        gmm: &Gmm,
    ) -> Result<Vec<f32>, Error> {
        self.run_gmm(
            Values::F16(points),
            n,
            dims,
            gmm,
            GmmOutput::LogResponsibilities,
        )
    }
}

/// The gradient of the total log-likelihood `Σᵢ log p(xᵢ)` of a diagonal mixture.
#[derive(Clone, Debug, PartialEq)]
pub struct GmmGradients {
    /// `Σᵢ log p(xᵢ)`.
    pub log_likelihood: f32,
    /// `∂/∂w_k = Σᵢ rᵢₖ / w_k` (`k` values; the weights as free parameters).
    pub weights: Vec<f32>,
    /// `∂/∂μ_kj = Σᵢ rᵢₖ (x_ij − μ_kj) / σ²_kj` (`k × dims`).
    pub means: Vec<f32>,
    /// `∂/∂σ²_kj = Σᵢ rᵢₖ ((x_ij − μ_kj)² / σ²_kj − 1) / (2 σ²_kj)` (`k × dims`).
    pub variances: Vec<f32>,
}

/// The sufficient statistics of one EM step for a diagonal mixture, summed over the points.
#[derive(Clone, Debug, PartialEq)]
pub struct GmmSufficientStats {
    /// `Σᵢ log p(xᵢ)` under the mixture the responsibilities come from.
    pub log_likelihood: f32,
    /// `N_k = Σᵢ rᵢₖ` (`k` values).
    pub resp_sums: Vec<f32>,
    /// `Σᵢ rᵢₖ xᵢ` (`k × dims`).
    pub sum_x: Vec<f32>,
    /// `Σᵢ rᵢₖ xᵢ²`, element-wise (`k × dims`).
    pub sum_x2: Vec<f32>,
}

/// The scatter of the points about each component's mean, summed with the responsibilities
/// ([`GmmReduction::CenteredStats`] and [`GmmReduction::CenteredScatter`]).
#[derive(Clone, Debug, PartialEq)]
pub struct GmmCenteredStats {
    /// `Σᵢ log p(xᵢ)` under the mixture.
    pub log_likelihood: f32,
    /// `N_k = Σᵢ rᵢₖ` (`k` values).
    pub resp_sums: Vec<f32>,
    /// `Σᵢ rᵢₖ (xᵢ − μ_k)` (`k × dims`).
    pub sum_dev: Vec<f32>,
    /// `Σᵢ rᵢₖ (xᵢ − μ_k)²`, element-wise (`k × dims`).
    pub sum_dev2: Vec<f32>,
    /// `Σᵢ rᵢₖ (x_ia − μ_ka)(x_ib − μ_kb)` for the pairs `a < b` in row-major order of the
    /// upper triangle (`k × dims (dims − 1) / 2`; empty for [`GmmReduction::CenteredStats`]).
    pub cross: Vec<f32>,
}

/// A [`GmmReduceOp`]'s packed output `[log-likelihood | first (k × dims) | per component (k)
/// | pairs (k × P) | second (k × dims)]` (P = dims (dims − 1) / 2 for
/// [`GmmReduction::CenteredScatter`], else 0), split.
struct Sums {
    log_likelihood: f32,
    per_component: Vec<f32>,
    first: Vec<f32>,
    pairs: Vec<f32>,
    second: Vec<f32>,
}

/// Pairs `a < b` of `dims` dimensions: the off-diagonal entries of a covariance's triangle.
pub(crate) fn dim_pairs(dims: usize) -> usize {
    dims * dims.saturating_sub(1) / 2
}

/// Off-diagonal pairs a [`GmmReduction`] sums per component.
fn pairs_of(kind: GmmReduction, dims: usize) -> usize {
    if kind == GmmReduction::CenteredScatter {
        dim_pairs(dims)
    } else {
        0
    }
}

fn unpack(values: &[f32], k: usize, dims: usize, pairs: usize) -> Result<Sums, Error> {
    let kd = k * dims;
    let kp = k * pairs;
    if values.len() != 1 + k + 2 * kd + kp {
        return Err(Error::InputLength {
            what: "packed mixture sums (1 + k + 2 k dims + k pairs)",
            expected: 1 + k + 2 * kd + kp,
            actual: values.len(),
        });
    }
    let at = 1 + kd + k;
    Ok(Sums {
        log_likelihood: values[0],
        per_component: values[1 + kd..at].to_vec(),
        first: values[1..1 + kd].to_vec(),
        pairs: values[at..at + kp].to_vec(),
        second: values[at + kp..].to_vec(),
    })
}

impl GmmGradients {
    /// From the output of a [`GmmReduceOp`] built for [`GmmReduction::Gradients`].
    pub fn from_packed(values: &[f32], k: usize, dims: usize) -> Result<GmmGradients, Error> {
        let s = unpack(values, k, dims, 0)?;
        Ok(GmmGradients {
            log_likelihood: s.log_likelihood,
            weights: s.per_component,
            means: s.first,
            variances: s.second,
        })
    }
}

impl GmmSufficientStats {
    /// From the output of a [`GmmReduceOp`] built for [`GmmReduction::SufficientStats`].
    pub fn from_packed(values: &[f32], k: usize, dims: usize) -> Result<GmmSufficientStats, Error> {
        let s = unpack(values, k, dims, 0)?;
        Ok(GmmSufficientStats {
            log_likelihood: s.log_likelihood,
            resp_sums: s.per_component,
            sum_x: s.first,
            sum_x2: s.second,
        })
    }
}

impl GmmCenteredStats {
    /// From the output of a [`GmmReduceOp`] built for [`GmmReduction::CenteredStats`]
    /// (`scatter = false`) or [`GmmReduction::CenteredScatter`] (`scatter = true`).
    pub fn from_packed(
        values: &[f32],
        k: usize,
        dims: usize,
        scatter: bool,
    ) -> Result<GmmCenteredStats, Error> {
        let kind = if scatter {
            GmmReduction::CenteredScatter
        } else {
            GmmReduction::CenteredStats
        };
        let s = unpack(values, k, dims, pairs_of(kind, dims))?;
        Ok(GmmCenteredStats {
            log_likelihood: s.log_likelihood,
            resp_sums: s.per_component,
            sum_dev: s.first,
            sum_dev2: s.second,
            cross: s.pairs,
        })
    }
}

/// Points per workgroup, most components and workgroup memory of `gmm_estep_tiled`
/// (ESTEP_POINTS, ESTEP_K and `estep_r` in shaders/gmm.wgsl).
const ESTEP_POINTS: u64 = 256;
const ESTEP_K: u64 = 16;
const ESTEP_BYTES: u64 = 2048 * 16;

/// The total log-likelihood into output word 0: the pairwise sum of the `n` values of log p(x)
/// at byte `offset` of `src` (partials in scratch 0 and 1, whose sizes it returns).
fn log_likelihood_passes(
    passes: &mut Vec<LlPass>,
    src: Src,
    offset: u64,
    n64: u64,
    caps: &Caps,
) -> Result<[u64; 2], Error> {
    passes.extend(elementwise_passes_at(
        key("gmm_elementwise", OP_SUM_G, 1),
        LlParams::default(),
        1,
        n64,
        n64,
        offset,
        [
            None,
            Some(Bind::whole(Src::Dummy)),
            Some(Bind::whole(Src::Dummy)),
            Some(Bind::whole(Src::Scratch(0))),
        ],
        [src, Src::Dummy, Src::Dummy, Src::Dummy],
        caps,
    )?);
    let (more, need) = reduce_passes(
        1,
        n64.div_ceil(CHUNK),
        FINISH_SUM,
        0.0,
        Src::Output,
        0,
        caps,
    )?;
    passes.extend(more);
    Ok(need)
}

/// The pairwise reductions of a reduce program's chunk partials (scratch 4, `q_rows` rows of
/// `chunks`) into the packed output: every row's first sums from word `base`, the `kd` rows'
/// second sums after them.
#[allow(clippy::too_many_arguments)]
fn moment_reductions(
    passes: &mut Vec<LlPass>,
    need: &mut [u64; 2],
    q_rows: u64,
    kd: u64,
    chunks: u64,
    base: u64,
    caps: &Caps,
) -> Result<(), Error> {
    for (rows, finish, at) in [
        (q_rows, FINISH_SUM, base),
        (kd, FINISH_SECOND, base + q_rows),
    ] {
        let (more, more_need) = reduce_passes_from(
            Src::Scratch(4),
            rows,
            chunks,
            finish,
            0.0,
            Src::Output,
            u32_of(at, "outputs")?,
            caps,
        )?;
        passes.extend(more);
        grow_scratch(need, more_need);
    }
    Ok(())
}

/// The E-step of [`GmmReduction::CenteredStats`] in one pass over the points
/// (`gmm_estep_tiled`): the log-joint, log p(x), the responsibilities and the chunk sums of
/// 256 points, without the `n × k` matrix; then the pairwise sum of log p(x) and the chunk
/// sums' reduction, as the general program does. For diagonal and spherical mixtures of at most
/// 16 components and 16 dimensions whose parameters fit one uniform window, on devices with
/// 32 KiB of workgroup memory; `None` elsewhere (the general program).
fn estep_program(
    gpu: &Gpu,
    caps: &Caps,
    packed: &Packed,
    n64: u64,
    dims: usize,
) -> Result<Option<Program>, Error> {
    let (d, k) = (dims as u64, packed.consts.len() as u64);
    let window_words = (GMM_UNIFORM_BYTES / 4) as usize;
    let words = 4 + packed.consts.len() * (1 + 2 * dims.next_multiple_of(4));
    if packed.op == OP_GMM_FULL
        || !(1..=GMM_TILE_DIMS).contains(&d)
        || k > ESTEP_K
        || words > window_words
        || u64::from(LL_WG) * GMM_SCORE_TILE != ESTEP_POINTS
        || caps.workgroup_bytes < ESTEP_BYTES
        || n64 == 0
    {
        return Ok(None);
    }
    let usable = usable(caps)?;
    let chunks = n64.div_ceil(ESTEP_POINTS);
    let q_rows = k * (d + 1);
    // The chunk sums, then log p(x) of every point (the log-likelihood's terms).
    let lp_at = (q_rows * chunks * PARTIAL_BYTES).next_multiple_of(caps.storage_align);
    let scratch = lp_at + n64 * 4;
    if n64 * d * 4 > usable || scratch > usable {
        return Ok(None);
    }
    // [constants | means | precisions], each part from a multiple of 4 words and a component's
    // means (and diagonal precisions) 4 ceil(dims / 4) words apart, zero-padded.
    let (ku, stride) = (k as usize, dims.next_multiple_of(4));
    let c_off = ku.next_multiple_of(4);
    let c2_off = c_off + ku * stride;
    let mut aux = vec![0.0f32; window_words];
    aux[..ku].copy_from_slice(&packed.consts);
    for c in 0..ku {
        aux[c_off + c * stride..][..dims].copy_from_slice(&packed.means[c * dims..][..dims]);
        if packed.prec_per == 1 {
            aux[c2_off + c] = packed.prec[c];
        } else {
            aux[c2_off + c * stride..][..dims].copy_from_slice(&packed.prec[c * dims..][..dims]);
        }
    }
    // Whole chunks per dispatch, within the dispatch budget (all of them off GL).
    let per_point = k * (packed.per_component + 3 * d) + d;
    let per = (caps.per_dispatch(per_point) / ESTEP_POINTS).clamp(1, MAX_GROUPS) * ESTEP_POINTS;
    let mut passes = Vec::new();
    for (p0, p) in batches(n64, per) {
        passes.push(LlPass {
            key: PipelineKey {
                dims: dims as u32,
                ..key("gmm_estep_tiled", uniform_op(packed.op), 0)
            },
            params: LlParams {
                rows: u32_of(p, "points")?,
                cols: dims as u32,
                a_off: u32_of(p0 * d, "points")?,
                c_off: c_off as u32,
                c2_off: c2_off as u32,
                out_off: u32_of(lp_at / 4 + p0, "points")?,
                mode: packed.mode | MODE_GMM_CENTERED,
                slots: u32_of(chunks, "chunks")?,
                k: k as u32,
                len_in: k as u32,
                col0: u32_of(p0 / ESTEP_POINTS, "chunks")?,
                ..LlParams::default()
            },
            groups: p.div_ceil(ESTEP_POINTS),
            bind: [
                Bind {
                    src: Src::Input(0),
                    window: Some(Window {
                        offset: 0,
                        size: n64 * d * 4,
                    }),
                },
                Bind::whole(Src::Dummy),
                Bind::whole(Src::Dummy),
                Bind::whole(Src::Scratch(4)),
            ],
            uniform: Some(Window {
                offset: 0,
                size: GMM_UNIFORM_BYTES,
            }),
            extra: None,
        });
    }
    let mut need = log_likelihood_passes(&mut passes, Src::Scratch(4), lp_at, n64, caps)?;
    let kd = k * d;
    moment_reductions(&mut passes, &mut need, q_rows, kd, chunks, 1, caps)?;
    Program::new(
        gpu,
        vec![Step::ll(passes)],
        Some((bytemuck::cast_slice(&aux).to_vec(), 0)),
        &[need[0], need[1], 4, 4, scratch, 4],
        vec![n64 * d * 4],
        (1 + q_rows + kd) * 4,
    )
    .map(Some)
}

/// The general program's moment passes: from the responsibilities in scratch 5 (`n × k`) and
/// the points, the chunk sums of every sum row of `kind` into scratch 4 (`chunks` partials a
/// row), per group of components whose words fit a 16 KiB uniform window (appended to `aux`).
/// Returns the number of sum rows.
#[allow(clippy::too_many_arguments)]
fn moment_passes(
    passes: &mut Vec<LlPass>,
    aux: &mut Vec<f32>,
    gmm: &Gmm,
    var: Option<&Vec<f32>>,
    kind: GmmReduction,
    mode: u32,
    n64: u64,
    dims: usize,
    caps: &Caps,
) -> Result<u64, Error> {
    let (d, k) = (dims as u64, gmm.weights.len() as u64);
    let pairs = pairs_of(kind, dims) as u64;
    let chunks = n64.div_ceil(CHUNK);
    let window_words = (GMM_UNIFORM_BYTES / 4) as usize;
    let per = 1 + 2 * dims;
    if per > window_words {
        return Err(Error::Limit(format!(
            "{dims} dimensions: one component's weight, means and variances exceed a 16 KiB \
             uniform window"
        )));
    }
    let q_rows = k * (d + 1 + pairs);
    limit(
        "the mixture's partial sums",
        q_rows * chunks * PARTIAL_BYTES,
        caps,
    )?;
    let per_group = (window_words / per).min(k as usize);
    aux.resize(aux.len().next_multiple_of(window_words), 0.0);
    let mut c0 = 0usize;
    while c0 < k as usize && n64 > 0 {
        let c1 = (c0 + per_group).min(k as usize);
        let g = c1 - c0;
        let mut words: Vec<f32> = gmm.weights[c0..c1].to_vec();
        words.extend_from_slice(&gmm.means[c0 * dims..c1 * dims]);
        match var {
            Some(var) => words.extend(
                var[c0 * dims..c1 * dims]
                    .iter()
                    .map(|&v| (1.0 / f64::from(v)) as f32),
            ),
            // The inverse variances are read by the gradients alone.
            None => words.resize(words.len() + g * dims, 1.0),
        }
        words.resize(window_words, 0.0);
        let offset = aux.len() as u64 * 4;
        aux.extend_from_slice(&words);
        // The centered statistics and scatter take the tiled kernels (registers, each
        // point read once per component and tile, no per-term pairwise counter); the other
        // sums one row per invocation.
        let blocks = d.div_ceil(SCATTER_BLOCK);
        // (entry, the group's rows, the multiply-adds of one row per point)
        let (entry, group_rows, span) = match kind {
            GmmReduction::CenteredStats => (
                "gmm_moments_tiled",
                g as u64 * d.div_ceil(MOMENT_TILE),
                2 * MOMENT_TILE,
            ),
            GmmReduction::CenteredScatter => (
                "gmm_scatter_tiled",
                g as u64 * (blocks * (blocks + 1) / 2),
                SCATTER_BLOCK * SCATTER_BLOCK,
            ),
            _ => ("gmm_moments", g as u64 * (d + 1 + pairs), 2),
        };
        // Rows per dispatch within the dispatch budget (all of them off GL).
        let per_dispatch = caps.per_dispatch(n64 * span);
        let mut q0 = 0;
        while q0 < group_rows {
            let q1 = (q0 + per_dispatch).min(group_rows);
            passes.push(LlPass {
                key: key(entry, OP_GMM_DIAG, 0),
                params: LlParams {
                    rows: u32_of(n64, "points")?,
                    cols: u32_of(d, "dims")?,
                    slots: u32_of(chunks, "chunks")?,
                    len_in: g as u32,
                    row0: c0 as u32,
                    col0: u32_of(q0, "sum rows")?,
                    col1: u32_of(q1, "sum rows")?,
                    k: k as u32,
                    mode,
                    ..LlParams::default()
                },
                groups: groups_for((q1 - q0) * chunks)?,
                bind: [
                    Bind {
                        src: Src::Input(0),
                        window: Some(Window {
                            offset: 0,
                            size: (n64 * d * 4).max(4),
                        }),
                    },
                    Bind::whole(Src::Scratch(5)),
                    Bind::whole(Src::Dummy),
                    Bind::whole(Src::Scratch(4)),
                ],
                uniform: Some(Window {
                    offset,
                    size: GMM_UNIFORM_BYTES,
                }),
                extra: None,
            });
            q0 = q1;
        }
        c0 = c1;
    }
    Ok(q_rows)
}

/// Dimensions per invocation of `gmm_moments_tiled` (`TILE` in shaders/gmm.wgsl).
const MOMENT_TILE: u64 = 8;
/// Dimensions per block of `gmm_scatter_tiled` (`BLOCK` in shaders/gmm.wgsl).
const SCATTER_BLOCK: u64 = 4;

/// Sums over the points of a diagonal Gaussian mixture, reduced on the GPU: the gradient of the
/// total log-likelihood, or the sufficient statistics of an EM step — one recording, no
/// per-point readback. The output is packed as
/// `[log-likelihood | means part (k × dims) | per-component part (k) | variances part (k × dims)]`
/// ([`GmmGradients::from_packed`], [`GmmSufficientStats::from_packed`] split it).
///
/// The log-joint `n × k` matrix and its row log-sum-exp are computed as in [`GmmOp`], then the
/// responsibilities `rᵢₖ = exp(Lᵢₖ − log p(xᵢ))` once each; one invocation per (sum, chunk of
/// 64 points) forms the terms and sums them pairwise, and the chunk sums are reduced level by
/// level (deterministic).
///
/// ```no_run
/// use logdomain::{Covariance, Gmm, GmmReduceOp, GmmReduction, Gpu};
/// let gpu = Gpu::new()?;
/// let gmm = Gmm { weights: vec![0.5, 0.5], means: vec![-1.0, 1.0],
///                 covariance: Covariance::Diag(vec![1.0, 1.0]) };
/// let op = GmmReduceOp::new(&gpu, 1000, 1, &gmm, GmmReduction::SufficientStats)?;
/// assert_eq!(op.output_len(), 1 + 2 + 2 * 2);
/// # Ok::<(), logdomain::Error>(())
/// ```
pub struct GmmReduceOp {
    kind: GmmReduction,
    k: usize,
    dims: usize,
    output_len: usize,
    one_pass: bool,
    program: Program,
}

impl GmmReduceOp {
    /// The pass sequence, for the crate's blocking runners.
    pub(crate) fn program(&self) -> &Program {
        &self.program
    }

    /// Prepares the sums for `n` points of `dims` dimensions under a mixture (gradients need
    /// diagonal covariances, else `Error::Unsupported`, and every weight > 0).
    pub fn new(
        gpu: &Gpu,
        n: usize,
        dims: usize,
        gmm: &Gmm,
        kind: GmmReduction,
    ) -> Result<GmmReduceOp, Error> {
        let grad = kind == GmmReduction::Gradients;
        let var: Option<&Vec<f32>> = match &gmm.covariance {
            Covariance::Diag(var) => Some(var),
            _ if grad => {
                return Err(Error::Unsupported(
                    "gradients are for diagonal covariances".into(),
                ));
            }
            _ => None,
        };
        let packed = pack(gmm, dims)?;
        let mode = match kind {
            GmmReduction::Gradients => MODE_GMM_GRAD,
            GmmReduction::SufficientStats => 0,
            GmmReduction::CenteredStats => MODE_GMM_CENTERED,
            GmmReduction::CenteredScatter => MODE_GMM_CENTERED | MODE_GMM_CROSS,
        };
        if grad && let Some(i) = gmm.weights.iter().position(|&w| w <= 0.0) {
            return Err(Error::Value(format!(
                "weights[{i}] is 0; the gradient with respect to the weights needs them > 0"
            )));
        }
        let caps = Caps::of(gpu);
        let (n64, d, k) = (n as u64, dims as u64, gmm.weights.len() as u64);
        packed.check_lanes(&caps, dims)?;
        if kind == GmmReduction::CenteredStats
            && let Some(program) = estep_program(gpu, &caps, &packed, n64, dims)?
        {
            return Ok(GmmReduceOp {
                kind,
                k: k as usize,
                dims,
                output_len: (1 + k * (2 * d + 1)) as usize,
                one_pass: true,
                program,
            });
        }
        let joint_bytes = n64
            .checked_mul(k * 4)
            .ok_or_else(|| Error::Shape("n × k overflows".into()))?;
        limit("the n × k log-joint", joint_bytes, &caps)?;
        limit("the points", n64 * d * 4, &caps)?;
        let (joint, _, mut aux) = joint_passes(
            &caps,
            &packed,
            n64,
            dims,
            |_| 0,
            Src::Scratch(2),
            InputFormat::F32,
        )?;
        let mut steps = vec![Step::ll(joint)];
        if n > 0 {
            let rows = RowOp::new(
                gpu,
                RowFn::Logsumexp,
                RowsLayout::contiguous(n, k as usize),
                Strategy::Auto,
            )?;
            steps.push(rows.into_step(Src::Scratch(2), Src::Scratch(3)));
        }
        // The responsibilities r = exp(L − log p(x)), once per point and component.
        let mut passes = elementwise_passes(
            key("gmm_elementwise", OP_RESP, 0),
            LlParams::default(),
            n64,
            k,
            [
                None,
                Some(Bind::whole(Src::Dummy)),
                Some(Bind::whole(Src::Scratch(3))),
                None,
            ],
            [Src::Scratch(2), Src::Dummy, Src::Dummy, Src::Scratch(5)],
            &caps,
        )?;
        let chunks = n64.div_ceil(CHUNK);
        let mut need = log_likelihood_passes(&mut passes, Src::Scratch(3), 0, n64, &caps)?;
        let q_rows = moment_passes(
            &mut passes,
            &mut aux,
            gmm,
            var,
            kind,
            mode,
            n64,
            dims,
            &caps,
        )?;
        let kd = k * d;
        moment_reductions(&mut passes, &mut need, q_rows, kd, chunks, 1, &caps)?;
        steps.push(Step::ll(passes));
        let output_len = (1 + q_rows + kd) as usize;
        let program = Program::new(
            gpu,
            steps,
            Some((bytemuck::cast_slice(&aux).to_vec(), 0)),
            &[
                need[0],
                need[1],
                joint_bytes,
                n64 * 4,
                q_rows * chunks * PARTIAL_BYTES,
                joint_bytes,
            ],
            vec![n64 * d * 4],
            output_len as u64 * 4,
        )?;
        Ok(GmmReduceOp {
            kind,
            k: k as usize,
            dims,
            output_len,
            one_pass: false,
            program,
        })
    }

    /// Whether the sums come from one pass over the points that writes no `n × k` matrix
    /// (`gmm_estep_tiled`): [`GmmReduction::CenteredStats`] of diagonal and spherical mixtures
    /// of at most 16 components and 16 dimensions, on devices with 32 KiB of workgroup memory.
    /// Its sums are ordered as [`crate::reference::gmm::moments_one_pass`] orders them.
    pub fn one_pass(&self) -> bool {
        self.one_pass
    }

    /// What the op sums.
    pub fn kind(&self) -> GmmReduction {
        self.kind
    }

    /// Number of components.
    pub fn components(&self) -> usize {
        self.k
    }

    /// Dimensions of a point.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Number of f32 values written to the output: `1 + k + 2 k dims`, plus
    /// `k dims (dims − 1) / 2` for [`GmmReduction::CenteredScatter`].
    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// Records the sums: reads the points (f32, `n × dims`, from byte 0 of `points`) and writes
    /// [`GmmReduceOp::output_len`] packed values at the start of `output`.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        points: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.program.record(encoder, &[points], output)
    }

    /// Runs the op once on resident buffers and returns the GPU time of its compute passes
    /// (`None` without `Features::TIMESTAMP_QUERY`). Waits.
    pub fn kernel_time(
        &self,
        gpu: &Gpu,
        points: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Option<std::time::Duration>, Error> {
        self.program.kernel_time(gpu, &[points], output)
    }
}

/// One Lloyd iteration of k-means on the GPU, prepared for `n ≥ 1` points of `dims` dimensions
/// and `k` centres: each point's nearest centre (the first of equals) and, per centre, its
/// points' count, deviations `Σ (x − c)` and squared deviations `Σ (x − c)²` — the centre moves
/// to `c + Σ (x − c) / N`. The output is packed as
/// `[labels (n, u32 bits) | Σ (x − c) (k × dims) | N (k) | Σ (x − c)² (k × dims)]`
/// ([`KMeansStep::from_packed`]).
///
/// The labels are [`GmmOutput::Labels`] of the mixture of equal weights and unit spherical
/// variances centred on the centres (its log-joint `const − ‖x − c‖²/2` is largest at the
/// nearest centre), written by the fused joint kernel; an element-wise pass turns them into
/// one-hot responsibilities (`n × k`), and the sums are [`GmmReduction::CenteredStats`]'s
/// general-program sums of those (64-point chunks summed in order, then pairwise), so they are
/// deterministic. CPU mirror: [`crate::reference::gmm::kmeans_step`]. Where one invocation
/// cannot hold every centre of a point the op is `Error::Unsupported`.
///
/// ```no_run
/// use logdomain::{Gpu, KMeansStepOp};
/// let gpu = Gpu::new()?;
/// let op = KMeansStepOp::new(&gpu, 1000, 2, &[0.0, 0.0, 5.0, 5.0])?;
/// assert_eq!(op.output_len(), 1000 + 2 * 2 + 2 + 2 * 2);
/// # Ok::<(), logdomain::Error>(())
/// ```
pub struct KMeansStepOp {
    n: usize,
    k: usize,
    dims: usize,
    output_len: usize,
    program: Program,
}

/// What a [`KMeansStepOp`] computes, unpacked.
#[derive(Clone, Debug, PartialEq)]
pub struct KMeansStep {
    /// Each point's nearest centre, the first of equals; `u32::MAX` for a point with a
    /// non-finite coordinate (which then makes its dimensions' sums NaN).
    pub labels: Vec<u32>,
    /// `Σ (x − c)` over each centre's points (`k × dims`).
    pub deviation_sums: Vec<f32>,
    /// Each centre's number of points (an f32 sum of ones: exact below 2²⁴ points).
    pub counts: Vec<f32>,
    /// `Σ (x − c)²` over each centre's points (`k × dims`).
    pub squared_sums: Vec<f32>,
}

impl KMeansStep {
    /// From the output of a [`KMeansStepOp`] for `n` points, `k` centres of `dims` dimensions.
    pub fn from_packed(
        values: &[f32],
        n: usize,
        k: usize,
        dims: usize,
    ) -> Result<KMeansStep, Error> {
        let kd = k * dims;
        let expected = n + 2 * kd + k;
        if values.len() != expected {
            return Err(Error::InputLength {
                what: "packed k-means step (n + k + 2 k × dims)",
                expected,
                actual: values.len(),
            });
        }
        let (labels, rest) = values.split_at(n);
        let (first, rest) = rest.split_at(kd);
        let (counts, second) = rest.split_at(k);
        Ok(KMeansStep {
            labels: labels.iter().map(|v| v.to_bits()).collect(),
            deviation_sums: first.to_vec(),
            counts: counts.to_vec(),
            squared_sums: second.to_vec(),
        })
    }
}

impl KMeansStepOp {
    /// The pass sequence, for the crate's blocking runners.
    pub(crate) fn program(&self) -> &Program {
        &self.program
    }

    /// Prepares the step for `n` points of `dims` dimensions and the centres `centres`
    /// (`k × dims`, row-major, finite).
    pub fn new(gpu: &Gpu, n: usize, dims: usize, centres: &[f32]) -> Result<KMeansStepOp, Error> {
        if dims == 0 || centres.is_empty() || !centres.len().is_multiple_of(dims) {
            return Err(Error::Shape(format!(
                "{} centre coordinates are not k × {dims} with k ≥ 1 and dims ≥ 1",
                centres.len()
            )));
        }
        if n == 0 {
            return Err(Error::Shape(
                "a k-means step needs at least one point".into(),
            ));
        }
        let k = centres.len() / dims;
        let gmm = Gmm::about_centres(centres.to_vec(), k);
        let caps = Caps::of(gpu);
        let packed = pack(&gmm, dims)?;
        let (n64, d, k64) = (n as u64, dims as u64, k as u64);
        packed.check_lanes(&caps, dims)?;
        let resp_bytes = n64
            .checked_mul(k64 * 4)
            .ok_or_else(|| Error::Shape("n × k overflows".into()))?;
        limit("the n × k one-hot responsibilities", resp_bytes, &caps)?;
        limit("the points", n64 * d * 4, &caps)?;
        // The labels into output words [0, n).
        let fused = |one_block: bool| if one_block { MODE_FUSED_ARGMAX } else { 0 };
        let (mut passes, fused, mut aux) = joint_passes(
            &caps,
            &packed,
            n64,
            dims,
            fused,
            Src::Output,
            InputFormat::F32,
        )?;
        if fused == 0 {
            return Err(Error::Unsupported(format!(
                "a k-means step needs every centre of a point in one invocation; {k} centres of \
                 {dims} dimensions are more than one holds"
            )));
        }
        passes.extend(elementwise_passes(
            key("gmm_elementwise", OP_ONEHOT, 0),
            LlParams::default(),
            n64,
            k64,
            [
                Some(Bind::whole(Src::Dummy)),
                Some(Bind::whole(Src::Dummy)),
                Some(Bind::whole(Src::Output)),
                None,
            ],
            [Src::Dummy, Src::Dummy, Src::Dummy, Src::Scratch(5)],
            &caps,
        )?);
        let q_rows = moment_passes(
            &mut passes,
            &mut aux,
            &gmm,
            None,
            GmmReduction::CenteredStats,
            MODE_GMM_CENTERED,
            n64,
            dims,
            &caps,
        )?;
        let (chunks, kd) = (n64.div_ceil(CHUNK), k64 * d);
        let mut need = [0u64; 2];
        moment_reductions(&mut passes, &mut need, q_rows, kd, chunks, n64, &caps)?;
        let output_len = n + (q_rows + kd) as usize;
        let program = Program::new(
            gpu,
            vec![Step::ll(passes)],
            Some((bytemuck::cast_slice(&aux).to_vec(), 0)),
            &[
                need[0],
                need[1],
                4,
                4,
                q_rows * chunks * PARTIAL_BYTES,
                resp_bytes,
            ],
            vec![n64 * d * 4],
            output_len as u64 * 4,
        )?;
        Ok(KMeansStepOp {
            n,
            k,
            dims,
            output_len,
            program,
        })
    }

    /// Number of f32 values written to the output.
    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// Unpacks this op's output.
    pub fn unpack(&self, values: &[f32]) -> Result<KMeansStep, Error> {
        KMeansStep::from_packed(values, self.n, self.k, self.dims)
    }

    /// Records the step: reads the points (f32, `n × dims`, from byte 0 of `points`) and writes
    /// [`KMeansStepOp::output_len`] values at the start of `output`.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        points: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.program.record(encoder, &[points], output)
    }
}

impl Gpu {
    fn run_gmm_reduce(
        &self,
        points: &[f32],
        n: usize,
        dims: usize,
        gmm: &Gmm,
        kind: GmmReduction,
    ) -> Result<Vec<f32>, Error> {
        check_points(points.len(), n, dims)?;
        let op = GmmReduceOp::new(self, n, dims, gmm, kind)?;
        self.run_program(&op.program, &[bytemuck::cast_slice(points)], op.output_len)
    }

    /// The total log-likelihood of `n` points (row-major `n × dims`) under a diagonal mixture
    /// and its gradient with respect to the weights, means and variances, reduced on the GPU.
    ///
    /// ```no_run
    /// use logdomain::{Covariance, Gmm, Gpu};
    /// let gpu = Gpu::new()?;
    /// let gmm = Gmm { weights: vec![1.0], means: vec![0.0],
    ///                 covariance: Covariance::Diag(vec![1.0]) };
    /// let g = gpu.gmm_gradients(&[1.0, -1.0], 2, 1, &gmm)?;
    /// assert_eq!(g.means[0], 0.0); // the points balance around the mean
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn gmm_gradients(
        &self,
        points: &[f32],
        n: usize,
        dims: usize,
        gmm: &Gmm,
    ) -> Result<GmmGradients, Error> {
        let v = self.run_gmm_reduce(points, n, dims, gmm, GmmReduction::Gradients)?;
        GmmGradients::from_packed(&v, gmm.weights.len(), dims)
    }

    /// The E-step statistics of `n` points under a diagonal mixture, reduced on the GPU:
    /// `Σᵢ rᵢₖ`, `Σᵢ rᵢₖ xᵢ`, `Σᵢ rᵢₖ xᵢ²` and the total log-likelihood.
    pub fn gmm_sufficient_stats(
        &self,
        points: &[f32],
        n: usize,
        dims: usize,
        gmm: &Gmm,
    ) -> Result<GmmSufficientStats, Error> {
        let v = self.run_gmm_reduce(points, n, dims, gmm, GmmReduction::SufficientStats)?;
        GmmSufficientStats::from_packed(&v, gmm.weights.len(), dims)
    }

    /// The scatter of `n` points about each component's mean, reduced on the GPU:
    /// `Σᵢ rᵢₖ`, `Σᵢ rᵢₖ (xᵢ − μ_k)`, `Σᵢ rᵢₖ (xᵢ − μ_k)²` and, with `scatter`, the
    /// off-diagonal `Σᵢ rᵢₖ (x_ia − μ_ka)(x_ib − μ_kb)`; any covariance type. One EM step of
    /// [`crate::GaussianMixture`] is this call.
    pub fn gmm_centered_stats(
        &self,
        points: &[f32],
        n: usize,
        dims: usize,
        gmm: &Gmm,
        scatter: bool,
    ) -> Result<GmmCenteredStats, Error> {
        let kind = if scatter {
            GmmReduction::CenteredScatter
        } else {
            GmmReduction::CenteredStats
        };
        let v = self.run_gmm_reduce(points, n, dims, gmm, kind)?;
        GmmCenteredStats::from_packed(&v, gmm.weights.len(), dims, scatter)
    }

    /// One Lloyd iteration of k-means over `n` points (row-major `n × dims`) from `centres`
    /// (`k × dims`): the labels and each centre's sums, on the GPU ([`KMeansStepOp`]).
    ///
    /// ```no_run
    /// use logdomain::Gpu;
    /// let gpu = Gpu::new()?;
    /// let step = gpu.kmeans_step(&[0.0, 1.0, 9.0, 11.0], 4, 1, &[0.0, 10.0])?;
    /// assert_eq!(step.labels, vec![0, 0, 1, 1]);
    /// assert_eq!(step.deviation_sums, vec![1.0, 0.0]); // the centres move to 0.5 and 10
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn kmeans_step(
        &self,
        points: &[f32],
        n: usize,
        dims: usize,
        centres: &[f32],
    ) -> Result<KMeansStep, Error> {
        check_points(points.len(), n, dims)?;
        let op = KMeansStepOp::new(self, n, dims, centres)?;
        let v = self.run_program(&op.program, &[bytemuck::cast_slice(points)], op.output_len)?;
        op.unpack(&v)
    }
}

crate::engine::op::lowered!(GmmOp, GmmReduceOp, KMeansStepOp);

impl Op for GmmOp {
    fn input_names(&self) -> Vec<&'static str> {
        vec!["points (f32, n × dims)"]
    }
}

impl Op for GmmReduceOp {
    fn input_names(&self) -> Vec<&'static str> {
        vec!["points (f32, n × dims)"]
    }
}

impl Op for KMeansStepOp {
    fn input_names(&self) -> Vec<&'static str> {
        vec!["points (f32, n × dims)"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mixture kernels' sizes the host plans with, as shaders/gmm.wgsl declares them, and the
    /// one-pass E-step's workgroup memory.
    #[test]
    fn sizes_match_wgsl() {
        let src = crate::engine::shaders::likelihood_module();
        let module = naga::front::wgsl::parse_str(&src).expect("the likelihood module parses");
        let constant =
            |name: &str| u64::from(crate::engine::shaders::wgsl_u32_const(&module, name));
        for (name, host) in [
            ("GMM_SCORE_TILE", GMM_SCORE_TILE),
            ("GMM_TILE_DIMS", GMM_TILE_DIMS),
            ("GMM_FUSED_K", GMM_FUSED_K),
            ("ESTEP_POINTS", ESTEP_POINTS),
            ("ESTEP_K", ESTEP_K),
            ("TILE", MOMENT_TILE),
            ("BLOCK", SCATTER_BLOCK),
        ] {
            assert_eq!(constant(name), host, "{name}");
        }
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).expect("layout");
        let (_, estep_r) = module
            .global_variables
            .iter()
            .find(|(_, v)| v.name.as_deref() == Some("estep_r"))
            .expect("estep_r");
        assert_eq!(estep_r.space, naga::AddressSpace::WorkGroup);
        assert_eq!(u64::from(layouter[estep_r.ty].size), ESTEP_BYTES);
    }
}
