//! Gradients of the log-sum-exp family on the GPU: the backward of `logsumexp`, `log_softmax`
//! and `softmax` with respect to their input, given the forward's saved output and the
//! gradient of the loss with respect to that output.
//!
//! | forward | backward (input gradient) |
//! |---|---|
//! | `lse_r = logsumexp(x_r)` | `g_r · exp(x_rj − lse_r)` |
//! | `out = log_softmax(x)` | `g_j − exp(out_j) · Σ_k g_k` |
//! | `p = softmax(x)` | `p_j · (g_j − Σ_k g_k p_k)` |
//!
//! Where the forward value is NaN the gradient is NaN; a masked entry (`x = −inf`, a
//! log-probability of −inf, a probability of 0) gets 0. Row sums are the likelihood family's
//! pairwise GPU reduction, so results are deterministic. [`BackwardOp`] is the encoder-level op;
//! [`crate::Gpu::logsumexp_backward`] and the others are blocking conveniences. Kernels:
//! `shaders/gradients.wgsl`; CPU mirror: [`crate::reference::gradients`].

use crate::codes::{
    FINISH_SUM, FINISH_WEIGHT, MODE_IN_PLACE, MODE_MEAN, MODE_WEIGHTED, OP_BCE_D, OP_GAUSS_DV,
    OP_GAUSS_DX, OP_LSE_BWD, OP_LSM_BWD, OP_POISSON_D, OP_SM_BWD, OP_SUM_G, OP_SUM_GP,
};
use crate::engine::device::Gpu;
use crate::engine::geometry::{Caps, ClassRows, Window};
use crate::engine::geometry::{check_len, elems};
use crate::engine::op::{Io, Op};
use crate::engine::passes::{
    CHUNK, LlPass, elementwise_passes, groups_for, grow_scratch, key, limit, reduce_passes,
    reduce_passes_from,
};
use crate::engine::pipelines::{Layout, Module};
use crate::engine::program::{Bind, Program, Src, Step};
use crate::engine::shaders::{LlParams, PARTIAL_BYTES};
use crate::error::Error;
use crate::likelihood::{
    Bce, CrossEntropy, ElementwiseLoss, GaussianNll, InputSpec, Loss, PoissonNll, Reduction,
    binary_cross_entropy_with_logits_spec, categorical_passes, check_categorical,
    check_categorical_inputs, finish_of, gaussian_nll_spec, poisson_nll_spec, smooth_sum_passes,
    targets_i32,
};
use crate::logsumexp::parts_step;
use crate::logsumexp::{InputFormat, RowFn};

/// An encoder-level backward of a log-sum-exp family function, prepared for `rows × cols`.
/// Inputs (f32, from byte 0, `BufferUsages::STORAGE`), as [`BackwardOp::inputs`] lists them:
/// `Logsumexp`: x (rows × cols), lse (rows), grad_out (rows); `LogSoftmax`: log_probs,
/// grad_out (rows × cols each); `Softmax`: probs, grad_out. The output gets the `rows × cols`
/// input gradient. Recording never submits, writes through the queue, or reads back.
///
/// ```no_run
/// use logdomain::{BackwardOp, Gpu, RowFn};
/// let gpu = Gpu::new()?;
/// let op = BackwardOp::new(&gpu, RowFn::LogSoftmax, 1000, 10)?;
/// assert_eq!(op.inputs().len(), 2);
/// assert_eq!(op.output_len(), 10_000);
/// # Ok::<(), logdomain::Error>(())
/// ```
pub struct BackwardOp {
    func: RowFn,
    inputs: Vec<InputSpec>,
    output_len: usize,
    program: Program,
}

impl BackwardOp {
    /// Prepares the backward of `func` (`Logsumexp`, `LogSoftmax` or `Softmax`).
    pub fn new(gpu: &Gpu, func: RowFn, rows: usize, cols: usize) -> Result<BackwardOp, Error> {
        let caps = Caps::of(gpu);
        let n = elems(rows, cols)?;
        let (r, c) = (rows as u64, cols as u64);
        limit("per-row values of the backward", r * 4, &caps)?;
        let per_row = |src| Bind {
            src,
            window: Some(Window {
                offset: 0,
                size: (r * 4).max(4),
            }),
        };
        let apply = |op, b: Option<Bind>, c_bind: Bind| {
            elementwise_passes(
                key("elementwise", op, 0),
                LlParams::default(),
                r,
                c,
                [None, b, Some(c_bind), None],
                [Src::Input(0), Src::Input(1), Src::Dummy, Src::Output],
                &caps,
            )
        };
        let (passes, scratch, aux, inputs) = match func {
            RowFn::Logsumexp => (
                apply(
                    OP_LSE_BWD,
                    Some(per_row(Src::Input(2))),
                    per_row(Src::Input(1)),
                )?,
                [0, 0],
                None,
                vec![
                    InputSpec::new("x (f32, rows × cols)", n * 4),
                    InputSpec::new("lse (f32, rows)", r * 4),
                    InputSpec::new("grad_out (f32, rows)", r * 4),
                ],
            ),
            RowFn::LogSoftmax | RowFn::Softmax => {
                let softmax = func == RowFn::Softmax;
                // Row sums of g (or g·p) into the op's own buffer, then the element values.
                let (sum_op, apply_op) = if softmax {
                    (OP_SUM_GP, OP_SM_BWD)
                } else {
                    (OP_SUM_G, OP_LSM_BWD)
                };
                let mut passes = elementwise_passes(
                    key("elementwise", sum_op, 1),
                    LlParams::default(),
                    r,
                    c,
                    [
                        None,
                        if softmax {
                            None
                        } else {
                            Some(Bind::whole(Src::Dummy))
                        },
                        Some(Bind::whole(Src::Dummy)),
                        Some(Bind::whole(Src::Scratch(0))),
                    ],
                    if softmax {
                        [Src::Input(0), Src::Input(1), Src::Dummy, Src::Dummy]
                    } else {
                        [Src::Input(1), Src::Dummy, Src::Dummy, Src::Dummy]
                    },
                    &caps,
                )?;
                let mut scratch = [0, 0];
                if r > 0 && c > 0 {
                    let (more, need) =
                        reduce_passes(r, c.div_ceil(CHUNK), FINISH_SUM, 0.0, Src::Aux, 0, &caps)?;
                    passes.extend(more);
                    scratch = need;
                }
                passes.extend(apply(apply_op, None, Bind::whole(Src::Aux))?);
                let name = if softmax {
                    "probs (f32, rows × cols)"
                } else {
                    "log_probs (f32, rows × cols)"
                };
                (
                    passes,
                    scratch,
                    Some((Vec::new(), r * 4)),
                    vec![
                        InputSpec::new(name, n * 4),
                        InputSpec::new("grad_out (f32, rows × cols)", n * 4),
                    ],
                )
            }
            RowFn::LogsumexpParts => {
                return Err(Error::Unsupported(
                    "LogsumexpParts has no backward; use Logsumexp".into(),
                ));
            }
        };
        let program = Program::new(
            gpu,
            vec![Step::ll(passes)],
            aux,
            &scratch,
            inputs.iter().map(|i| i.bytes).collect(),
            n * 4,
        )?;
        Ok(BackwardOp {
            func,
            inputs,
            output_len: n as usize,
            program,
        })
    }

    /// The forward function whose backward this is.
    pub fn function(&self) -> RowFn {
        self.func
    }

    /// The input buffers `record` takes, in order.
    pub fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }

    /// Number of f32 values written to the output (`rows × cols`).
    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// Records the backward: reads `inputs` and writes the input gradient at the start of
    /// `output`.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.program.record(encoder, inputs, output)
    }

    /// Runs the backward once on resident buffers and returns the GPU time of its compute
    /// passes, from timestamps; `None` without `Features::TIMESTAMP_QUERY`. Waits for the GPU.
    pub fn kernel_time(
        &self,
        gpu: &Gpu,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
    ) -> Result<Option<std::time::Duration>, Error> {
        self.program.kernel_time(gpu, inputs, output)
    }
}

impl Gpu {
    /// The gradient of `logsumexp` with respect to `x` (`rows × cols`): `grad_out_r ·
    /// softmax(x_r)`, from the forward's saved `lse` (`rows`) and `grad_out` (`rows`).
    ///
    /// ```no_run
    /// let gpu = logdomain::Gpu::new()?;
    /// let x = [0.0f32, 0.0];
    /// let lse = gpu.logsumexp(&x, 1, 2)?;
    /// let g = gpu.logsumexp_backward(&x, &lse, &[1.0], 1, 2)?;
    /// assert!((g[0] - 0.5).abs() < 1e-6);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn logsumexp_backward(
        &self,
        x: &[f32],
        lse: &[f32],
        grad_out: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        check_len("x", x, elems(rows, cols)? as usize)?;
        check_len("lse", lse, rows)?;
        check_len("grad_out", grad_out, rows)?;
        let op = BackwardOp::new(self, RowFn::Logsumexp, rows, cols)?;
        self.run_program(
            &op.program,
            &[
                bytemuck::cast_slice(x),
                bytemuck::cast_slice(lse),
                bytemuck::cast_slice(grad_out),
            ],
            op.output_len,
        )
    }

    /// The gradient of `log_softmax` with respect to its input: `g − exp(out) · Σ g` per row,
    /// from the forward's output `log_probs` and `grad_out` (both `rows × cols`).
    pub fn log_softmax_backward(
        &self,
        log_probs: &[f32],
        grad_out: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        self.row_backward(RowFn::LogSoftmax, log_probs, grad_out, rows, cols)
    }

    /// The gradient of `softmax` with respect to its input: `p ⊙ (g − Σ g p)` per row, from
    /// the forward's output `probs` and `grad_out` (both `rows × cols`).
    pub fn softmax_backward(
        &self,
        probs: &[f32],
        grad_out: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        self.row_backward(RowFn::Softmax, probs, grad_out, rows, cols)
    }

    fn row_backward(
        &self,
        func: RowFn,
        out: &[f32],
        grad_out: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        let n = elems(rows, cols)? as usize;
        check_len("forward output", out, n)?;
        check_len("grad_out", grad_out, n)?;
        let op = BackwardOp::new(self, func, rows, cols)?;
        self.run_program(
            &op.program,
            &[bytemuck::cast_slice(out), bytemuck::cast_slice(grad_out)],
            op.output_len,
        )
    }
}

/// Checks that the buffers an op writes are distinct from each other and from those it reads
/// (wgpu rejects a buffer bound for reading and writing in one dispatch).
fn check_distinct(written: &[(&str, &wgpu::Buffer)], read: &[&wgpu::Buffer]) -> Result<(), Error> {
    for (i, (what, w)) in written.iter().enumerate() {
        if read.contains(w) {
            return Err(Error::Buffer(format!(
                "the {what} buffer must not be one of the inputs"
            )));
        }
        if written[..i].iter().any(|(_, o)| o == w) {
            return Err(Error::Buffer(format!(
                "the {what} buffer is also given for another output"
            )));
        }
    }
    Ok(())
}

/// The fused forward and backward of `F.cross_entropy` (class-index targets, every option), at
/// the encoder level: one recording writes the loss, exactly as [`crate::LossOp::cross_entropy`]
/// computes it, and the gradient of the reduced loss with respect to the logits (for
/// `Reduction::None`, of the sum of the per-row losses):
///
/// `∂/∂x_j = s · ((1 − ε) w_t (p_j − [j = t]) + ε/C (Σ_c w_c · p_j − w_j))`,
///
/// `p = softmax(x)`, `s = 1/Σ w_t` for a mean and 1 otherwise. Each row of logits is read twice:
/// once for its log-sum-exp, once for the gradient (which also sums the label-smoothing term).
/// Ignored rows get a zero gradient, rows whose loss is NaN a NaN one, and −inf logits 0.
///
/// [`CrossEntropyGradOp::in_place`] writes the gradient over the logits buffer, so training on
/// a large vocabulary needs no second `rows × classes` buffer.
///
/// ```no_run
/// use logdomain::{CrossEntropy, CrossEntropyGradOp, Gpu};
/// use wgpu::util::DeviceExt;
/// let gpu = Gpu::new()?;
/// let op = CrossEntropyGradOp::in_place(&gpu, 2, 3, &CrossEntropy::default())?;
/// let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
/// let make = |bytes: &[u8]| gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
///     label: None, contents: bytes, usage });
/// let logits = make(bytemuck::cast_slice(&[2.0f32, 0.5, -1.0, 0.0, 0.0, 3.0]));
/// let targets = make(bytemuck::cast_slice(&[0i32, 2]));
/// let loss = make(&[0u8; 4]);
/// let mut encoder = gpu.device().create_command_encoder(&Default::default());
/// op.record(&mut encoder, &logits, &targets, &loss, None)?;
/// gpu.queue().submit([encoder.finish()]);
/// let grad = gpu.read_f32(&logits, 24)?; // the logits are now the gradient
/// assert!(grad[0] < 0.0 && grad[1] > 0.0);
/// # Ok::<(), logdomain::Error>(())
/// ```
pub struct CrossEntropyGradOp {
    in_place: bool,
    inputs: Vec<InputSpec>,
    loss_len: usize,
    grad_len: usize,
    program: Program,
}

impl CrossEntropyGradOp {
    /// Prepares the op for `rows × classes` logits, writing the gradient into its own buffer.
    pub fn new(
        gpu: &Gpu,
        rows: usize,
        classes: usize,
        options: &CrossEntropy,
    ) -> Result<CrossEntropyGradOp, Error> {
        Self::build(gpu, rows, classes, options, false)
    }

    /// Prepares the op to write the gradient over the logits.
    pub fn in_place(
        gpu: &Gpu,
        rows: usize,
        classes: usize,
        options: &CrossEntropy,
    ) -> Result<CrossEntropyGradOp, Error> {
        Self::build(gpu, rows, classes, options, true)
    }

    fn build(
        gpu: &Gpu,
        rows: usize,
        classes: usize,
        o: &CrossEntropy,
        in_place: bool,
    ) -> Result<CrossEntropyGradOp, Error> {
        check_categorical(Loss::CrossEntropy, classes, o)?;
        let caps = Caps::of(gpu);
        let n = elems(rows, classes)?;
        let (r, c) = (rows as u64, classes as u64);
        let u = |v: u64, what: &str| crate::engine::geometry::u32_of(v, what);
        let eps = o.label_smoothing;
        let smoothing = eps > 0.0;
        let weighted = o.weight.is_some();
        let reduce = o.reduction != Reduction::None;
        let mean = o.reduction == Reduction::Mean;
        // aux words: [weights (classes) | parts (2 per row) | smoothing sums (1 per row) | D]
        let parts_off = if weighted { c } else { 0 };
        let smooth_off = parts_off + 2 * r;
        let d_off = smooth_off + r;
        let aux_words = d_off + 1;
        limit("class weights and per-row values", aux_words * 4, &caps)?;
        limit("targets", r * 4, &caps)?;
        let data: Vec<u8> = o
            .weight
            .as_ref()
            .map(|w| bytemuck::cast_slice(w).to_vec())
            .unwrap_or_default();
        let weight_sum = match &o.weight {
            Some(w) => w.iter().map(|&v| f64::from(v)).sum::<f64>() as f32,
            None => classes as f32,
        };
        let ignore = i32::try_from(o.ignore_index).unwrap_or(i32::MIN);
        let mode = if weighted { MODE_WEIGHTED } else { 0 };
        let keep = (1.0 - f64::from(eps)) as f32;
        let share = (f64::from(eps) / c.max(1) as f64) as f32;
        let base = LlParams {
            c2_off: u(parts_off, "rows")?,
            mode,
            eps: keep,
            smoothing: share,
            ignore,
            len_in: u(r, "rows")?,
            ..LlParams::default()
        };
        // The smoothing sums come out of the gradient pass where the device has the wide
        // layout; otherwise from a pass of their own (a third read of the logits).
        let wide = smoothing && gpu.layout(Layout::LikelihoodWide).is_ok();
        let targets = Bind {
            src: Src::Input(1),
            window: Some(Window {
                offset: 0,
                size: (r * 4).max(4),
            }),
        };
        let grad_src = Src::Input(2);
        let mut steps = Vec::new();
        let mut scratch = [0u64; 3];
        if r > 0 && c > 0 {
            steps.push(parts_step(
                gpu,
                Src::Input(0),
                rows,
                classes,
                parts_off,
                InputFormat::F32,
            )?);
        }
        let mut passes = Vec::new();
        // 1. The rows' losses from the gathered target logits (before the gradient may
        //    overwrite them): straight into the output, or staged as (w_t · nll_t, w_t).
        let staged = reduce || smoothing;
        passes.extend(categorical_passes(
            ClassRows::packed(r, c),
            LlParams {
                smoothing: 0.0,
                ..base
            },
            staged.then_some(Src::Scratch(2)),
            true,
            InputFormat::F32,
            &caps,
        )?);
        if staged {
            limit("per-row partial sums", r * PARTIAL_BYTES, &caps)?;
            scratch[2] = r * PARTIAL_BYTES;
        }
        // 2. D, the summed weights of the targets, for a mean.
        if mean {
            let (more, need) = reduce_passes_from(
                Src::Scratch(2),
                1,
                r,
                FINISH_WEIGHT,
                0.0,
                Src::Aux,
                u(d_off, "rows")?,
                &caps,
            )?;
            passes.extend(more);
            grow_scratch(&mut scratch, need);
        }
        if !smoothing && reduce {
            let (more, need) = reduce_passes_from(
                Src::Scratch(2),
                1,
                r,
                finish_of(o.reduction, true),
                0.0,
                Src::Output,
                0,
                &caps,
            )?;
            passes.extend(more);
            grow_scratch(&mut scratch, need);
        }
        if smoothing && !wide && r > 0 && c > 0 {
            let (more, need) = smooth_sum_passes(
                ClassRows::packed(r, c),
                LlParams {
                    mode,
                    ..LlParams::default()
                },
                parts_off,
                smooth_off,
                InputFormat::F32,
                &caps,
            )?;
            passes.extend(more);
            grow_scratch(&mut scratch, need);
        }
        // 3. The gradient (the second read of the logits).
        let entry = if wide { "ce_grad_smooth" } else { "ce_grad" };
        let mut grad_key = key(entry, 0, 0);
        if wide {
            grad_key.module = Module::LikelihoodWide;
        }
        let mut grad_passes = elementwise_passes(
            grad_key,
            LlParams {
                mode: mode
                    | if in_place { MODE_IN_PLACE } else { 0 }
                    | if mean { MODE_MEAN } else { 0 },
                c_off: 0,
                kb: u(d_off, "rows")?,
                count: weight_sum,
                ..base
            },
            r,
            c,
            [
                if in_place {
                    Some(Bind::whole(Src::Dummy))
                } else {
                    None
                },
                Some(targets),
                Some(Bind::whole(Src::Aux)),
                None,
            ],
            [Src::Input(0), Src::Dummy, Src::Dummy, grad_src],
            &caps,
        )?;
        if wide {
            let slots = c.div_ceil(CHUNK);
            limit("smoothing partial sums", r * slots * PARTIAL_BYTES, &caps)?;
            for p in &mut grad_passes {
                p.extra = Some(Bind::whole(Src::Scratch(0)));
            }
            scratch[0] = scratch[0].max(r * slots * PARTIAL_BYTES);
        }
        passes.extend(grad_passes);
        // 4. With label smoothing: the rows' smoothing sums, then the losses.
        if smoothing {
            if wide && r > 0 && c > 0 {
                let (more, need) = reduce_passes(
                    r,
                    c.div_ceil(CHUNK),
                    FINISH_SUM,
                    0.0,
                    Src::Aux,
                    u(smooth_off, "rows")?,
                    &caps,
                )?;
                passes.extend(more);
                grow_scratch(&mut scratch, need);
            }
            if r > 0 {
                passes.push(LlPass {
                    key: key("ce_combine", 0, u32::from(reduce)),
                    params: LlParams {
                        rows: u(r, "rows")?,
                        cols: u(c, "classes")?,
                        c2_off: u(smooth_off, "rows")?,
                        ..base
                    },
                    groups: groups_for(r)?,
                    bind: [
                        Bind::whole(Src::Scratch(2)),
                        targets,
                        Bind::whole(Src::Aux),
                        if reduce {
                            Bind::whole(Src::Scratch(0))
                        } else {
                            Bind {
                                src: Src::Output,
                                window: Some(Window {
                                    offset: 0,
                                    size: r * 4,
                                }),
                            }
                        },
                    ],
                    uniform: None,
                    extra: None,
                });
                scratch[0] = scratch[0].max(r * PARTIAL_BYTES);
            }
            if reduce {
                let (more, need) = reduce_passes(
                    1,
                    r,
                    finish_of(o.reduction, true),
                    0.0,
                    Src::Output,
                    0,
                    &caps,
                )?;
                passes.extend(more);
                grow_scratch(&mut scratch, need);
            }
        }
        steps.push(Step::ll(passes));
        let loss_len = if reduce { 1 } else { rows };
        let program = Program::new(
            gpu,
            steps,
            Some((data, (aux_words - parts_off) * 4)),
            &scratch,
            vec![n * 4, r * 4, n * 4],
            loss_len as u64 * 4,
        )?;
        Ok(CrossEntropyGradOp {
            in_place,
            inputs: vec![
                InputSpec::new("logits (f32, rows × classes)", n * 4),
                InputSpec::new("targets (i32, rows)", r * 4),
            ],
            loss_len,
            grad_len: n as usize,
            program,
        })
    }

    /// Whether the gradient overwrites the logits.
    pub fn is_in_place(&self) -> bool {
        self.in_place
    }

    /// The input buffers `record` takes: logits, targets.
    pub fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }

    /// Number of f32 values written to the loss buffer (1, or `rows` for `Reduction::None`).
    pub fn loss_len(&self) -> usize {
        self.loss_len
    }

    /// Number of f32 values of the gradient (`rows × classes`).
    pub fn grad_len(&self) -> usize {
        self.grad_len
    }

    fn buffers<'a>(
        &self,
        logits: &'a wgpu::Buffer,
        targets: &'a wgpu::Buffer,
        loss: &'a wgpu::Buffer,
        grad: Option<&'a wgpu::Buffer>,
    ) -> Result<[&'a wgpu::Buffer; 3], Error> {
        let grad = match (self.in_place, grad) {
            (true, None) => logits,
            (false, Some(g)) => {
                check_distinct(&[("gradient", g)], &[logits, targets, loss])?;
                g
            }
            (true, Some(_)) => {
                return Err(Error::Buffer(
                    "this op writes the gradient over the logits: pass no gradient buffer".into(),
                ));
            }
            (false, None) => {
                return Err(Error::Buffer(
                    "this op needs a gradient buffer (or build it with CrossEntropyGradOp::in_place)"
                        .into(),
                ));
            }
        };
        if targets == logits {
            return Err(Error::Buffer(
                "the logits and targets must be different buffers".into(),
            ));
        }
        Ok([logits, targets, grad])
    }

    /// Records the op: reads `logits` (f32) and `targets` (i32), writes [`Self::loss_len`]
    /// values at the start of `loss` and the gradient at the start of `grad` (`None` for an
    /// in-place op, whose gradient replaces the logits). No submit, queue write or readback.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        logits: &wgpu::Buffer,
        targets: &wgpu::Buffer,
        loss: &wgpu::Buffer,
        grad: Option<&wgpu::Buffer>,
    ) -> Result<(), Error> {
        let inputs = self.buffers(logits, targets, loss, grad)?;
        self.program.record(encoder, &inputs, loss)
    }

    /// Runs the op once on resident buffers and returns the GPU time of its compute passes,
    /// from timestamps; `None` without `Features::TIMESTAMP_QUERY`. Waits for the GPU.
    pub fn kernel_time(
        &self,
        gpu: &Gpu,
        logits: &wgpu::Buffer,
        targets: &wgpu::Buffer,
        loss: &wgpu::Buffer,
        grad: Option<&wgpu::Buffer>,
    ) -> Result<Option<std::time::Duration>, Error> {
        let inputs = self.buffers(logits, targets, loss, grad)?;
        self.program.kernel_time(gpu, &inputs, loss)
    }
}

/// An element-wise loss with its gradient, at the encoder level: one recording writes the loss
/// (exactly as the forward [`crate::LossOp`] computes it) and the gradient of the reduced loss
/// (for `Reduction::None`, of the sum) with respect to the input, and for Gaussian NLL also to
/// the variance. A mean's gradient is the per-element derivative times `1/n`.
///
/// | loss | gradients |
/// |---|---|
/// | Gaussian NLL | `(x − y)/v` and `½ (1 − (x − y)²/v)/v`, `v = max(var, eps)` (summed for a shared var) |
/// | BCE with logits | `(1 − y) σ(x) − pw · y · σ(−x)` |
/// | Poisson NLL | `e^x − y` (log input) or `1 − y/(x + eps)` |
///
/// No gradient flows through the variance clamp (as in PyTorch); where the loss is NaN the
/// gradient is NaN.
pub struct LossGradOp {
    loss: Loss,
    inputs: Vec<InputSpec>,
    loss_len: usize,
    grad_lens: Vec<usize>,
    program: Program,
}

impl LossGradOp {
    /// `F.gaussian_nll_loss` with its gradients with respect to the input (`n` values) and the
    /// variance (`n` values, or 1 when `shared_var`). Inputs: input, target, var.
    pub fn gaussian_nll(
        gpu: &Gpu,
        n: usize,
        shared_var: bool,
        options: &GaussianNll,
    ) -> Result<LossGradOp, Error> {
        let spec = gaussian_nll_spec(n, shared_var, options)?;
        Self::build(gpu, spec, &[OP_GAUSS_DX, OP_GAUSS_DV], shared_var)
    }

    /// `F.binary_cross_entropy_with_logits` with its gradient with respect to the logits.
    /// Inputs: logits, targets (`rows × cols`).
    pub fn binary_cross_entropy_with_logits(
        gpu: &Gpu,
        rows: usize,
        cols: usize,
        options: &Bce,
    ) -> Result<LossGradOp, Error> {
        let spec = binary_cross_entropy_with_logits_spec(rows, cols, options)?;
        Self::build(gpu, spec, &[OP_BCE_D], false)
    }

    /// `F.poisson_nll_loss` with its gradient with respect to the input. Inputs: input, target.
    pub fn poisson_nll(gpu: &Gpu, n: usize, options: &PoissonNll) -> Result<LossGradOp, Error> {
        let spec = poisson_nll_spec(n, options)?;
        Self::build(gpu, spec, &[OP_POISSON_D], false)
    }

    fn build(
        gpu: &Gpu,
        spec: ElementwiseLoss,
        ops: &[u32],
        shared_var: bool,
    ) -> Result<LossGradOp, Error> {
        let caps = Caps::of(gpu);
        let (mut passes, forward_scratch, loss_len) = spec.forward_passes(&caps)?;
        let mut scratch = forward_scratch;
        let n = spec.rows * spec.cols;
        let scale = if spec.reduction == Reduction::Mean && n > 0 {
            (1.0 / n as f64) as f32
        } else {
            1.0
        };
        let base = LlParams {
            count: scale,
            ..spec.base
        };
        let first_grad = spec.inputs.len();
        let mut grad_lens = Vec::new();
        let mut bytes: Vec<u64> = spec.inputs.iter().map(|i| i.bytes).collect();
        for (g, &op) in ops.iter().enumerate() {
            let dst = Src::Input(first_grad + g);
            if op == OP_GAUSS_DV && shared_var {
                // One variance: the gradient is the sum of the per-element ones.
                passes.extend(elementwise_passes(
                    key("elementwise", op, 1),
                    base,
                    spec.rows,
                    spec.cols,
                    spec.slots(Some(Bind::whole(Src::Scratch(0)))),
                    [Src::Input(0), Src::Input(1), Src::Input(2), Src::Dummy],
                    &caps,
                )?);
                let chunks = if n == 0 {
                    0
                } else {
                    spec.cols.div_ceil(CHUNK) * spec.rows
                };
                let (more, need) = reduce_passes(1, chunks, FINISH_SUM, 0.0, dst, 0, &caps)?;
                passes.extend(more);
                grow_scratch(&mut scratch, need);
                grad_lens.push(1);
                bytes.push(4);
            } else {
                passes.extend(elementwise_passes(
                    key("elementwise", op, 0),
                    base,
                    spec.rows,
                    spec.cols,
                    spec.slots(None),
                    [Src::Input(0), Src::Input(1), Src::Input(2), dst],
                    &caps,
                )?);
                grad_lens.push(n as usize);
                bytes.push(n * 4);
            }
        }
        let program = Program::new(
            gpu,
            vec![Step::ll(passes)],
            spec.aux.map(|d| (d, 0)),
            &scratch,
            bytes,
            loss_len as u64 * 4,
        )?;
        Ok(LossGradOp {
            loss: spec.loss,
            inputs: spec.inputs,
            loss_len,
            grad_lens,
            program,
        })
    }

    /// The function computed.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// The input buffers `record` takes, in order.
    pub fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }

    /// Number of f32 values written to the loss buffer.
    pub fn loss_len(&self) -> usize {
        self.loss_len
    }

    /// Number of f32 values of each gradient, in the order `record` takes the buffers
    /// (Gaussian NLL: input, then variance).
    pub fn grad_lens(&self) -> &[usize] {
        &self.grad_lens
    }

    fn buffers<'a>(
        &self,
        inputs: &[&'a wgpu::Buffer],
        loss: &'a wgpu::Buffer,
        grads: &[&'a wgpu::Buffer],
    ) -> Result<Vec<&'a wgpu::Buffer>, Error> {
        if grads.len() != self.grad_lens.len() {
            return Err(Error::Buffer(format!(
                "this op writes {} gradients, got {} buffers",
                self.grad_lens.len(),
                grads.len()
            )));
        }
        let mut read: Vec<&wgpu::Buffer> = inputs.to_vec();
        read.push(loss);
        let written: Vec<(&str, &wgpu::Buffer)> = grads.iter().map(|&g| ("gradient", g)).collect();
        check_distinct(&written, &read)?;
        let mut all = inputs.to_vec();
        all.extend_from_slice(grads);
        Ok(all)
    }

    /// Records the op: reads `inputs` (as [`Self::inputs`] lists them), writes the loss at the
    /// start of `loss` and each gradient at the start of its buffer in `grads`.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &[&wgpu::Buffer],
        loss: &wgpu::Buffer,
        grads: &[&wgpu::Buffer],
    ) -> Result<(), Error> {
        let all = self.buffers(inputs, loss, grads)?;
        self.program.record(encoder, &all, loss)
    }

    /// Runs the op once on resident buffers and returns the GPU time of its compute passes,
    /// from timestamps; `None` without `Features::TIMESTAMP_QUERY`. Waits for the GPU.
    pub fn kernel_time(
        &self,
        gpu: &Gpu,
        inputs: &[&wgpu::Buffer],
        loss: &wgpu::Buffer,
        grads: &[&wgpu::Buffer],
    ) -> Result<Option<std::time::Duration>, Error> {
        let all = self.buffers(inputs, loss, grads)?;
        self.program.kernel_time(gpu, &all, loss)
    }
}

impl Gpu {
    /// `F.cross_entropy` and its gradient with respect to the logits, fused (see
    /// [`CrossEntropyGradOp`]): returns the loss exactly as [`Gpu::cross_entropy`] does and
    /// the `rows × classes` gradient.
    ///
    /// ```no_run
    /// use logdomain::{CrossEntropy, Gpu};
    /// let gpu = Gpu::new()?;
    /// let (loss, grad) =
    ///     gpu.cross_entropy_with_grad(&[0.0, 0.0], 1, 2, &[1], &CrossEntropy::default())?;
    /// assert!((loss[0] - 2f32.ln()).abs() < 1e-6);
    /// assert!((grad[0] - 0.5).abs() < 1e-6 && (grad[1] + 0.5).abs() < 1e-6);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn cross_entropy_with_grad(
        &self,
        logits: &[f32],
        rows: usize,
        classes: usize,
        targets: &[i64],
        options: &CrossEntropy,
    ) -> Result<(Vec<f32>, Vec<f32>), Error> {
        check_categorical_inputs(logits.len(), rows, classes, targets)?;
        let op = CrossEntropyGradOp::new(self, rows, classes, options)?;
        let t = targets_i32(targets, classes, options.ignore_index)?;
        let (loss, mut grads) = self.run_program_with(
            &op.program,
            &[bytemuck::cast_slice(logits), bytemuck::cast_slice(&t)],
            op.loss_len,
            &[op.grad_len],
        )?;
        Ok((loss, grads.pop().unwrap_or_default()))
    }

    /// `F.gaussian_nll_loss` with its gradients: `(loss, d_input, d_var)`, `d_var` with one
    /// value per variance given (one when the variance is shared).
    #[allow(clippy::type_complexity)] // the (loss, d_input, d_var) triple is the contract
    pub fn gaussian_nll_with_grad(
        &self,
        input: &[f32],
        target: &[f32],
        var: &[f32],
        options: &GaussianNll,
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>), Error> {
        let n = input.len();
        crate::likelihood::check_gaussian_inputs(target, var, n)?;
        let op = LossGradOp::gaussian_nll(self, n, var.len() == 1 && n != 1, options)?;
        let (loss, mut grads) = self.run_program_with(
            &op.program,
            &[
                bytemuck::cast_slice(input),
                bytemuck::cast_slice(target),
                bytemuck::cast_slice(var),
            ],
            op.loss_len,
            &op.grad_lens,
        )?;
        let d_var = grads.pop().unwrap_or_default();
        let d_input = grads.pop().unwrap_or_default();
        Ok((loss, d_input, d_var))
    }

    /// `F.binary_cross_entropy_with_logits` with its gradient: `(loss, d_logits)`.
    pub fn binary_cross_entropy_with_logits_with_grad(
        &self,
        logits: &[f32],
        targets: &[f32],
        rows: usize,
        cols: usize,
        options: &Bce,
    ) -> Result<(Vec<f32>, Vec<f32>), Error> {
        let n = elems(rows, cols)? as usize;
        check_len("logits", logits, n)?;
        check_len("targets", targets, n)?;
        let op = LossGradOp::binary_cross_entropy_with_logits(self, rows, cols, options)?;
        self.run_with_grad(&op, &[logits, targets])
    }

    /// `F.poisson_nll_loss` with its gradient: `(loss, d_input)`.
    pub fn poisson_nll_with_grad(
        &self,
        input: &[f32],
        target: &[f32],
        options: &PoissonNll,
    ) -> Result<(Vec<f32>, Vec<f32>), Error> {
        check_len("target", target, input.len())?;
        let op = LossGradOp::poisson_nll(self, input.len(), options)?;
        self.run_with_grad(&op, &[input, target])
    }

    fn run_with_grad(
        &self,
        op: &LossGradOp,
        inputs: &[&[f32]],
    ) -> Result<(Vec<f32>, Vec<f32>), Error> {
        let bytes: Vec<&[u8]> = inputs.iter().map(|v| bytemuck::cast_slice(v)).collect();
        let (loss, mut grads) =
            self.run_program_with(&op.program, &bytes, op.loss_len, &op.grad_lens)?;
        Ok((loss, grads.pop().unwrap_or_default()))
    }
}

crate::engine::op::lowered!(BackwardOp);

impl Op for BackwardOp {
    fn input_names(&self) -> Vec<&'static str> {
        self.inputs.iter().map(|s| s.name).collect()
    }

    fn output_names(&self) -> Vec<&'static str> {
        vec!["gradient"]
    }
}

impl crate::engine::op::sealed::Lowered for CrossEntropyGradOp {
    fn program(&self) -> &Program {
        &self.program
    }

    fn bind<'a>(&self, io: Io<'a>) -> Result<(Vec<&'a wgpu::Buffer>, &'a wgpu::Buffer), Error> {
        let (logits, targets, loss, grad) = match (io.inputs, io.outputs) {
            ([l, t], [loss]) => (*l, *t, *loss, None),
            ([l, t], [loss, grad]) => (*l, *t, *loss, Some(*grad)),
            _ => {
                return Err(Error::Buffer(format!(
                    "this op reads logits and targets and writes the loss{}; got {} and {} buffers",
                    if self.in_place {
                        ""
                    } else {
                        " and the gradient"
                    },
                    io.inputs.len(),
                    io.outputs.len()
                )));
            }
        };
        Ok((self.buffers(logits, targets, loss, grad)?.to_vec(), loss))
    }
}

impl Op for CrossEntropyGradOp {
    fn input_names(&self) -> Vec<&'static str> {
        self.inputs.iter().map(|s| s.name).collect()
    }

    fn output_names(&self) -> Vec<&'static str> {
        if self.in_place {
            vec!["loss"]
        } else {
            vec!["loss", "gradient"]
        }
    }
}

impl crate::engine::op::sealed::Lowered for LossGradOp {
    fn program(&self) -> &Program {
        &self.program
    }

    fn bind<'a>(&self, io: Io<'a>) -> Result<(Vec<&'a wgpu::Buffer>, &'a wgpu::Buffer), Error> {
        let Some((&loss, grads)) = io.outputs.split_first() else {
            return Err(Error::Buffer(
                "this op writes the loss and its gradients; got no output".into(),
            ));
        };
        Ok((self.buffers(io.inputs, loss, grads)?, loss))
    }
}

impl Op for LossGradOp {
    fn input_names(&self) -> Vec<&'static str> {
        self.inputs.iter().map(|s| s.name).collect()
    }

    fn output_names(&self) -> Vec<&'static str> {
        std::iter::once("loss")
            .chain(self.grad_lens.iter().map(|_| "gradient"))
            .collect()
    }
}
