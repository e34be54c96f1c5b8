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

use crate::error::Error;
use crate::gpu::Gpu;
use crate::likelihood::{
    Bind, CHUNK, FINISH_SUM, InputSpec, Program, Src, Step, check_len, elementwise_passes, elems,
    key, limit, reduce_passes,
};
use crate::logsumexp::{Caps, RowFn, Window};
use crate::shaders::LlParams;

const OP_SUM_G: u32 = 5;
const OP_SUM_GP: u32 = 6;
const OP_LSE_BWD: u32 = 7;
const OP_LSM_BWD: u32 = 8;
const OP_SM_BWD: u32 = 9;

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
            vec![Step::Ll(passes)],
            aux,
            scratch,
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
