//! Log-likelihood reductions on the GPU: cross-entropy and NLL (categorical), Gaussian NLL,
//! binary cross-entropy with logits (Bernoulli), Poisson NLL and `log_prod`, with PyTorch's
//! semantics and reductions.
//!
//! [`LossOp`] is the encoder-level op: prepared once for a shape and options (pipelines
//! compiled, parameter, weight and scratch buffers made), recorded into caller-owned encoders
//! over caller-owned buffers, with no submit and no readback. The blocking calls
//! ([`crate::Gpu::cross_entropy`] and the others) sit on top of it.
//!
//! `Reduction::Sum` and `Reduction::Mean` reduce on the GPU: every value is summed pairwise in
//! chunks of 64, and the chunks' partial sums pairwise again, level after level, in an order
//! fixed by the shape, so the same input gives the same bits on a device.
//! Kernels: `shaders/likelihood.wgsl`; CPU mirror: [`crate::reference::likelihood`].

use crate::codes::{
    FINISH_MEAN_COUNT, FINISH_MEAN_WEIGHT, FINISH_PARTIAL, FINISH_SUM, MODE_FULL, MODE_LOG_INPUT,
    MODE_NLL, MODE_SHARED_C, MODE_SOFT, MODE_WEIGHTED, OP_BCE, OP_GAUSSIAN, OP_LN, OP_POISSON,
    OP_SMOOTH,
};
use crate::engine::blocking::Values;
use crate::engine::device::Gpu;
use crate::engine::geometry::InputFormat;
use crate::engine::geometry::{
    Caps, ClassRows, WORK_UNIT, Window, check_len, elems, window, window_of,
};
use crate::engine::op::Op;
use crate::engine::passes::{
    CHUNK, LlPass, elementwise_class_passes, elementwise_passes, groups_for, grow_scratch,
    input_bytes, key, key_reading, limit, reduce_passes, usable,
};
use crate::engine::program::{Bind, Program, Src, Step};
use crate::engine::shaders::{LlParams, PARTIAL_BYTES};
use crate::error::Error;
use crate::logsumexp::{AxisOp, AxisOptions, NdArray, NdLayout, RowFn, parts_step};
pub use crate::reference::likelihood::{Bce, CrossEntropy, GaussianNll, PoissonNll, Reduction};

/// Which function a [`LossOp`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loss {
    /// `F.cross_entropy` from logits; inputs: logits (f32, rows × classes), targets (i32).
    CrossEntropy,
    /// `F.nll_loss` from log-probabilities; inputs: log-probabilities, targets (i32).
    NllLoss,
    /// `F.gaussian_nll_loss`; inputs: input, target, var (n values, or 1 shared).
    GaussianNll,
    /// `F.binary_cross_entropy_with_logits`; inputs: logits, targets (rows × cols).
    BinaryCrossEntropyWithLogits,
    /// `F.poisson_nll_loss`; inputs: input, target.
    PoissonNll,
    /// Σ ln p along each row; input: p (rows × cols); one value per row.
    LogProd,
}

/// The `categorical` dispatches over the rows of classes `cr` describes (Input(0)) with targets
/// (Input(1)): windows of whole rows. `partials` is where REDUCE 1 writes the rows' (loss,
/// weight) partials (bound whole), or `None` for REDUCE 0 (the losses into the output); `aux`
/// binds the op's aux buffer as c. `base` holds the options; the geometry is filled in. The
/// logits are entries of `format`.
pub(crate) fn categorical_passes(
    cr: ClassRows,
    base: LlParams,
    partials: Option<Src>,
    aux: bool,
    format: InputFormat,
    caps: &Caps,
) -> Result<Vec<LlPass>, Error> {
    let entry = format.bytes();
    let usable = usable(caps)?;
    let u = |v: u64, what: &str| crate::engine::geometry::u32_of(v, what);
    let c = cr.classes;
    if c * entry > usable {
        return Err(Error::Limit(format!(
            "a row of {c} classes is larger than a storage binding ({} bytes)",
            caps.max_binding
        )));
    }
    // Probability targets are summed before; the rows' sums are read from the aux buffer.
    let soft = base.mode & MODE_SOFT != 0;
    let mut passes = Vec::new();
    // The targets' and the losses' windows hold k words too.
    let k_cap = (usable / 4).min(caps.per_dispatch((c + 1) * WORK_UNIT));
    for (r0, k) in cr.batches(usable / entry, k_cap)? {
        let (first, len) = if c == 0 { (0, 0) } else { cr.span(r0, k, 0, c) };
        let (lw, loff) = window_of(
            first * entry,
            (len * entry).max(4),
            caps.storage_align,
            entry,
        );
        let (tw, toff) = window(r0 * 4, k * 4, caps.storage_align);
        let (out, out_off) = match partials {
            Some(src) => (Bind::whole(src), 0),
            None => {
                let (ow, ooff) = window(r0 * 4, k * 4, caps.storage_align);
                (
                    Bind {
                        src: Src::Output,
                        window: Some(ow),
                    },
                    ooff,
                )
            }
        };
        let logits = if c == 0 {
            Bind::dummy()
        } else {
            Bind {
                src: Src::Input(0),
                window: Some(lw),
            }
        };
        passes.push(LlPass {
            key: key_reading("categorical", 0, u32::from(partials.is_some()), format),
            params: LlParams {
                rows: k as u32,
                cols: u(c, "classes")?,
                row0: u(r0, "rows")?,
                inner: if cr.inner > 1 {
                    u(cr.inner, "positions")?
                } else {
                    0
                },
                a_off: loff,
                b_off: toff,
                c_off: 0,
                out_off,
                ..base
            },
            groups: groups_for(k)?,
            uniform: None,
            extra: None,
            bind: [
                logits,
                if soft {
                    Bind::dummy()
                } else {
                    Bind {
                        src: Src::Input(1),
                        window: Some(tw),
                    }
                },
                if aux {
                    Bind::whole(Src::Aux)
                } else {
                    Bind::dummy()
                },
                out,
            ],
        });
    }
    Ok(passes)
}

/// The rows' label-smoothing sums Σ_c w_c (−log_softmax_c) from the logits (Input(0), entries
/// of `format`, laid out as `cr` says) and the parts at aux word `parts_off` (side by side for
/// packed rows, in two blocks on a class axis: `parts_at` in the WGSL), into aux words
/// `smooth_off..+rows`: per-chunk partials in scratch 0, then the pairwise levels. With
/// `MODE_SOFT` in `base.mode` the sums of probability targets' terms Σ_c (−log_softmax_c)·t'_c·w_c
/// instead, the targets Input(1) laid out as the logits (f32), `base.eps` and `base.smoothing`
/// the label smoothing's factors. Returns the passes and the scratch they need.
pub(crate) fn smooth_sum_passes(
    cr: ClassRows,
    base: LlParams,
    parts_off: u64,
    smooth_off: u64,
    format: InputFormat,
    caps: &Caps,
) -> Result<(Vec<LlPass>, [u64; 2]), Error> {
    let u = |v: u64, what: &str| crate::engine::geometry::u32_of(v, what);
    let (rows, classes) = (cr.rows, cr.classes);
    let soft = base.mode & MODE_SOFT != 0;
    let base = LlParams {
        b_off: if soft { 0 } else { u(parts_off, "rows")? },
        c_off: 0,
        c2_off: u(parts_off, "rows")?,
        len_in: u(rows, "rows")?,
        ..base
    };
    let weighted = base.mode & MODE_WEIGHTED != 0;
    let key = key_reading("elementwise", OP_SMOOTH, 1, format);
    let slots = [
        None,
        (!soft).then_some(Bind::whole(Src::Aux)),
        Some(if weighted || soft {
            Bind::whole(Src::Aux)
        } else {
            Bind::dummy()
        }),
        Some(Bind::whole(Src::Scratch(0))),
    ];
    let per_element = [Src::Input(0), Src::Input(1), Src::Dummy, Src::Dummy];
    let mut passes = if cr.inner > 1 {
        elementwise_class_passes(key, base, cr, slots, per_element, caps)?
    } else {
        elementwise_passes(key, base, rows, classes, slots, per_element, caps)?
    };
    let (reduce, need) = reduce_passes(
        rows,
        classes.div_ceil(CHUNK),
        FINISH_SUM,
        0.0,
        Src::Aux,
        u(smooth_off, "rows")?,
        caps,
    )?;
    passes.extend(reduce);
    Ok((passes, need))
}

/// PyTorch's class axis of a categorical input of `shape` ((C,), (N, C) or (N, C, d1, …, dk)):
/// its rows of classes, row n·(d1⋯dk) + p the classes of position p of sample n.
pub(crate) fn class_axis(shape: &[usize]) -> Result<ClassRows, Error> {
    let too_large = || Error::Shape(format!("an input of shape {shape:?} is too large"));
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let (n, classes, inner) = match dims.as_slice() {
        [] => {
            return Err(Error::Shape(
                "a categorical input needs at least one dimension (the classes)".into(),
            ));
        }
        [c] => (1, *c, 1),
        [n, c, rest @ ..] => {
            let inner = rest
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .ok_or_else(too_large)?;
            (*n, *c, inner)
        }
    };
    Ok(ClassRows {
        rows: n.checked_mul(inner).ok_or_else(too_large)?,
        classes,
        inner,
    })
}

/// The shape of the per-sample losses (and of class-index targets) of a categorical input of
/// `shape`: the shape without the class axis.
pub(crate) fn sample_shape(shape: &[usize]) -> Vec<usize> {
    match shape {
        [] | [_] => Vec::new(),
        [n, _, rest @ ..] => std::iter::once(*n).chain(rest.iter().copied()).collect(),
    }
}

/// A categorical loss's result: the losses in the shape without the class axis
/// (`Reduction::None`), or one value of shape `[]`.
fn loss_array(shape: &[usize], options: &CrossEntropy, values: Vec<f32>) -> NdArray {
    let shape = if options.reduction == Reduction::None {
        sample_shape(shape)
    } else {
        Vec::new()
    };
    NdArray { shape, values }
}

/// The log-sum-exp parts of every row of a class axis (`cr.inner` > 1) into aux words
/// `parts_off..`: the N-d op over axis 1 of (N, C, inner), every row's hi, then every row's lo.
fn class_axis_parts_step(
    gpu: &Gpu,
    cr: ClassRows,
    parts_off: u64,
    format: InputFormat,
) -> Result<Step, Error> {
    let dim = |v: u64| usize::try_from(v).map_err(|_| Error::Shape(format!("{v} is too large")));
    let layout = NdLayout {
        format,
        ..NdLayout::contiguous(&[dim(cr.rows / cr.inner)?, dim(cr.classes)?, dim(cr.inner)?])
    };
    let options = AxisOptions {
        output_offset: parts_off * 4,
        ..AxisOptions::default()
    };
    let op = AxisOp::with_options(gpu, RowFn::LogsumexpParts, &layout, 1, &options)?;
    // The kernel reads a row's lo `len_in` = rows words after its hi.
    if op.signs_offset() as u64 != cr.rows {
        return Err(Error::Unsupported(format!(
            "the parts of {} rows came {} words apart",
            cr.rows,
            op.signs_offset()
        )));
    }
    Ok(op.into_step(Src::Input(0), Src::Aux))
}

pub(crate) fn finish_of(reduction: Reduction, weighted_mean: bool) -> u32 {
    match reduction {
        Reduction::None => FINISH_PARTIAL,
        Reduction::Sum => FINISH_SUM,
        Reduction::Mean if weighted_mean => FINISH_MEAN_WEIGHT,
        Reduction::Mean => FINISH_MEAN_COUNT,
    }
}

/// One input of a [`LossOp`]: what it is and how many bytes it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSpec {
    /// What the buffer holds, e.g. `"logits (f32, rows × classes)"`.
    pub name: &'static str,
    /// The buffer's minimum size in bytes (the data start at byte 0).
    pub bytes: u64,
}

impl InputSpec {
    pub(crate) fn new(name: &'static str, bytes: u64) -> InputSpec {
        InputSpec { name, bytes }
    }
}

/// An encoder-level loss, prepared for one shape and one set of options.
///
/// Inputs start at byte 0 of their buffers, each buffer with `BufferUsages::STORAGE`; targets of
/// cross-entropy and NLL are `i32`. The output gets [`LossOp::output_len`] f32 values from
/// byte 0. Recording never submits, writes through the queue, or reads back.
///
/// ```no_run
/// use logdomain::{CrossEntropy, Gpu, LossOp, Reduction};
/// use wgpu::util::DeviceExt;
/// let gpu = Gpu::new()?;
/// let logits = [2.0f32, 0.5, -1.0, 0.0, 0.0, 3.0];
/// let targets = [0i32, 2];
/// let op = LossOp::cross_entropy(&gpu, 2, 3, &CrossEntropy::default())?;
/// let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
/// let make = |bytes: &[u8]| gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
///     label: None, contents: bytes, usage });
/// let (x, t) = (make(bytemuck::cast_slice(&logits)), make(bytemuck::cast_slice(&targets)));
/// let out = make(&[0u8; 4]);
/// let mut encoder = gpu.device().create_command_encoder(&Default::default());
/// op.record(&mut encoder, &[&x, &t], &out)?;
/// gpu.queue().submit([encoder.finish()]);
/// let mean = gpu.read_f32(&out, 4)?[0];
/// assert!(mean > 0.0);
/// # Ok::<(), logdomain::Error>(())
/// ```
pub struct LossOp {
    loss: Loss,
    inputs: Vec<InputSpec>,
    output_len: usize,
    program: Program,
}

fn check_finite(what: &str, v: &[f32]) -> Result<(), Error> {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::Value(format!(
            "{what}[{i}] is {}; it must be finite",
            v[i]
        )));
    }
    Ok(())
}

/// Checks the options of cross-entropy / NLL for `classes` classes.
pub(crate) fn check_categorical(loss: Loss, classes: usize, o: &CrossEntropy) -> Result<(), Error> {
    let eps = o.label_smoothing;
    if !(0.0..=1.0).contains(&eps) {
        return Err(Error::Value(format!(
            "label_smoothing is {eps}; it must be in [0, 1]"
        )));
    }
    if loss == Loss::NllLoss && eps != 0.0 {
        return Err(Error::Value(
            "nll_loss takes no label_smoothing (it must be 0)".into(),
        ));
    }
    if let Some(w) = &o.weight {
        check_len("weight", w, classes)?;
        check_finite("weight", w)?;
    }
    Ok(())
}

/// An element-wise loss over a `rows × cols` matrix (rows = 1 for flat ones), described
/// before it is built: [`LossOp`] builds its forward, the gradient ops its forward and backward.
pub(crate) struct ElementwiseLoss {
    pub loss: Loss,
    /// The forward's `OP`.
    pub op: u32,
    pub rows: u64,
    pub cols: u64,
    /// The options' parameters (mode, eps).
    pub base: LlParams,
    /// What binding c holds when it is not per element.
    pub c: Option<Bind>,
    /// Binding c holds one value per element (Input(2), windowed like a and b).
    pub per_element_c: bool,
    /// The op's aux data (pos_weight).
    pub aux: Option<Vec<u8>>,
    pub reduction: Reduction,
    /// The per-element inputs (a, b, and c when per element).
    pub inputs: Vec<InputSpec>,
}

impl ElementwiseLoss {
    /// The slots of a pass over this loss's inputs: the per-element inputs in a, b (and c),
    /// what binding c holds otherwise, and `out`.
    pub fn slots(&self, out: Option<Bind>) -> [Option<Bind>; 4] {
        [
            None,
            if self.inputs.len() > 1 {
                None
            } else {
                Some(Bind::dummy())
            },
            if self.per_element_c {
                None
            } else {
                self.c.or(Some(Bind::dummy()))
            },
            out,
        ]
    }

    /// The forward's passes, the scratch they need and the number of values written.
    pub fn forward_passes(&self, caps: &Caps) -> Result<(Vec<LlPass>, [u64; 2], usize), Error> {
        let (rows, cols) = (self.rows, self.cols);
        let n = rows * cols;
        let reduce = self.reduction != Reduction::None;
        let per_row_sum = self.loss == Loss::LogProd;
        let out_slot = if reduce || per_row_sum {
            Some(Bind::whole(Src::Scratch(0)))
        } else {
            None
        };
        let mut passes = elementwise_passes(
            key("elementwise", self.op, u32::from(reduce || per_row_sum)),
            self.base,
            rows,
            cols,
            self.slots(out_slot),
            [Src::Input(0), Src::Input(1), Src::Input(2), Src::Output],
            caps,
        )?;
        let mut scratch = [0u64; 2];
        if per_row_sum {
            if rows > 0 {
                let (more, need) = reduce_passes(
                    rows,
                    if cols == 0 { 0 } else { cols.div_ceil(CHUNK) },
                    FINISH_SUM,
                    0.0,
                    Src::Output,
                    0,
                    caps,
                )?;
                limit("log_prod's output", rows * 4, caps)?;
                passes.extend(more);
                scratch = need;
            }
        } else if reduce {
            let (more, need) = reduce_passes(
                1,
                if n == 0 {
                    0
                } else {
                    cols.div_ceil(CHUNK) * rows
                },
                finish_of(self.reduction, false),
                n as f32,
                Src::Output,
                0,
                caps,
            )?;
            passes.extend(more);
            scratch = need;
        }
        let output_len = if per_row_sum {
            rows as usize
        } else if reduce {
            1
        } else {
            n as usize
        };
        Ok((passes, scratch, output_len))
    }
}

impl LossOp {
    /// `F.cross_entropy(logits, targets, weight, ignore_index, label_smoothing, reduction)` for
    /// a `rows × classes` matrix of logits and `rows` class-index targets. Inputs: logits (f32),
    /// targets (i32). A target outside `[0, classes)` other than `ignore_index` gives NaN here
    /// ([`crate::Gpu::cross_entropy`] rejects it, naming the row).
    pub fn cross_entropy(
        gpu: &Gpu,
        rows: usize,
        classes: usize,
        options: &CrossEntropy,
    ) -> Result<LossOp, Error> {
        Self::categorical(
            gpu,
            Loss::CrossEntropy,
            ClassRows::packed(rows as u64, classes as u64),
            options,
            InputFormat::F32,
            false,
        )
    }

    /// [`LossOp::cross_entropy`] of f16 logits: input 0 holds `rows × classes` IEEE binary16
    /// values (`half::f16`, two to a 4-byte word, the first in the low half; the buffer at least
    /// [`LossOp::inputs`]`[0].bytes` long, whole words), decoded exactly on the GPU — half the
    /// bytes read, the arithmetic and the result (f32) those of the f32 op on the same values.
    /// Needs no adapter feature.
    pub fn cross_entropy_f16(
        gpu: &Gpu,
        rows: usize,
        classes: usize,
        options: &CrossEntropy,
    ) -> Result<LossOp, Error> {
        Self::categorical(
            gpu,
            Loss::CrossEntropy,
            ClassRows::packed(rows as u64, classes as u64),
            options,
            InputFormat::F16,
            false,
        )
    }

    /// `F.nll_loss(log_probs, targets, weight, ignore_index, reduction)`; `label_smoothing`
    /// must be 0. Inputs: log-probabilities (f32, rows × classes), targets (i32).
    pub fn nll_loss(
        gpu: &Gpu,
        rows: usize,
        classes: usize,
        options: &CrossEntropy,
    ) -> Result<LossOp, Error> {
        Self::categorical(
            gpu,
            Loss::NllLoss,
            ClassRows::packed(rows as u64, classes as u64),
            options,
            InputFormat::F32,
            false,
        )
    }

    /// [`LossOp::nll_loss`] of f16 log-probabilities (laid out as in
    /// [`LossOp::cross_entropy_f16`]).
    pub fn nll_loss_f16(
        gpu: &Gpu,
        rows: usize,
        classes: usize,
        options: &CrossEntropy,
    ) -> Result<LossOp, Error> {
        Self::categorical(
            gpu,
            Loss::NllLoss,
            ClassRows::packed(rows as u64, classes as u64),
            options,
            InputFormat::F16,
            false,
        )
    }

    /// `F.cross_entropy` (`Loss::CrossEntropy`) or `F.nll_loss` (`Loss::NllLoss`) on
    /// PyTorch's layouts: an input of `shape` (C,) (one sample), (N, C) or (N, C, d1, …, dk)
    /// with the classes on axis 1, row-major, entries of `format`, read where they lie (no
    /// transpose: invocations own neighbouring positions and walk the classes `d1 ⋯ dk` entries
    /// apart); targets (i32) of the shape without the class axis, row-major. The output holds
    /// one loss per target (`Reduction::None`) or one value. (N, C) is [`LossOp::cross_entropy`]
    /// exactly. A target outside `[0, C)` other than `ignore_index` gives NaN here
    /// ([`crate::Gpu::cross_entropy_nd`] rejects it).
    ///
    /// ```no_run
    /// use logdomain::{CrossEntropy, Gpu, InputFormat, Loss, LossOp};
    /// let gpu = Gpu::new()?;
    /// // A batch of 8 images of 64 × 64 pixels, 21 classes a pixel.
    /// let op = LossOp::categorical_nd(
    ///     &gpu, Loss::CrossEntropy, &[8, 21, 64, 64], InputFormat::F32, &CrossEntropy::default())?;
    /// assert_eq!(op.inputs()[1].bytes, 8 * 64 * 64 * 4);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn categorical_nd(
        gpu: &Gpu,
        loss: Loss,
        shape: &[usize],
        format: InputFormat,
        options: &CrossEntropy,
    ) -> Result<LossOp, Error> {
        if !matches!(loss, Loss::CrossEntropy | Loss::NllLoss) {
            return Err(Error::Unsupported(format!(
                "categorical_nd computes CrossEntropy and NllLoss, not {loss:?}"
            )));
        }
        let cr = class_axis(shape)?;
        Self::categorical(gpu, loss, cr, options, format, false)
    }

    /// `F.cross_entropy` with class-probability targets (PyTorch's "probabilities for each
    /// class"): logits and targets both f32 of `shape` ((C,), (N, C) or (N, C, d1, …, dk),
    /// classes on axis 1, read where they lie). Per sample `−Σ_c w_c·t'_c·log_softmax(x)_c` with
    /// `t' = t·(1 − label_smoothing) + label_smoothing / C`, PyTorch's product order; `Mean`
    /// divides by the number of samples N·d1⋯dk (not by the weights); `ignore_index` does not
    /// apply. Inputs: logits, targets.
    ///
    /// ```no_run
    /// use logdomain::{CrossEntropy, Gpu, LossOp};
    /// let gpu = Gpu::new()?;
    /// let op = LossOp::cross_entropy_probs(&gpu, &[8, 21, 64, 64], &CrossEntropy::default())?;
    /// assert_eq!(op.inputs()[1].bytes, op.inputs()[0].bytes);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn cross_entropy_probs(
        gpu: &Gpu,
        shape: &[usize],
        options: &CrossEntropy,
    ) -> Result<LossOp, Error> {
        let cr = class_axis(shape)?;
        Self::categorical(gpu, Loss::CrossEntropy, cr, options, InputFormat::F32, true)
    }

    /// The categorical losses: class-index targets, or (`soft`, cross-entropy of f32 logits)
    /// class-probability targets laid out as the logits.
    fn categorical(
        gpu: &Gpu,
        loss: Loss,
        cr: ClassRows,
        o: &CrossEntropy,
        format: InputFormat,
        soft: bool,
    ) -> Result<LossOp, Error> {
        let caps = Caps::of(gpu);
        let (rows, classes) = (cr.rows as usize, cr.classes as usize);
        let n = elems(rows, classes)?;
        let (r, c) = (cr.rows, cr.classes);
        let eps = o.label_smoothing;
        check_categorical(loss, classes, o)?;
        let weighted = o.weight.is_some();
        let smoothing = eps > 0.0;
        let nll = loss == Loss::NllLoss;
        // aux words: [weights (classes) | parts (2 per row) | smoothing or probability-target
        // sums (1 per row)]
        let parts_off = if weighted { c } else { 0 };
        let smooth_off = parts_off + 2 * r;
        let aux_words = smooth_off + r;
        let mut data: Vec<u8> = Vec::new();
        if let Some(w) = &o.weight {
            data.extend_from_slice(bytemuck::cast_slice(w));
        }
        limit("class weights and per-row values", aux_words * 4, &caps)?;
        let u = |v: u64, what: &str| crate::engine::geometry::u32_of(v, what);
        let mut steps = Vec::new();
        let mut scratch = [0u64; 2];
        let ignore = i32::try_from(o.ignore_index).unwrap_or(i32::MIN);
        let mode = if weighted { MODE_WEIGHTED } else { 0 }
            | if nll { MODE_NLL } else { 0 }
            | if soft { MODE_SOFT } else { 0 };
        if rows > 0 && classes > 0 && !nll {
            steps.push(if cr.inner > 1 {
                class_axis_parts_step(gpu, cr, parts_off, format)?
            } else {
                parts_step(gpu, Src::Input(0), rows, classes, parts_off, format)?
            });
        }
        // 1 - label_smoothing and label_smoothing / C, rounded once from f64 as PyTorch's
        // scalar arithmetic does.
        let (keep, per_class) = (
            (1.0 - f64::from(eps)) as f32,
            (f64::from(eps) / c.max(1) as f64) as f32,
        );
        if (smoothing || soft) && rows > 0 && classes > 0 {
            let base = LlParams {
                mode,
                eps: keep,
                smoothing: per_class,
                ..LlParams::default()
            };
            let (passes, need) = smooth_sum_passes(cr, base, parts_off, smooth_off, format, &caps)?;
            grow_scratch(&mut scratch, need);
            steps.push(Step::ll(passes));
        }
        // The per-row losses: windows of whole rows of logits.
        let reduce = o.reduction != Reduction::None;
        let base = LlParams {
            c2_off: u(parts_off, "rows")?,
            mode,
            eps: keep,
            smoothing: per_class,
            ignore,
            len_in: u(r, "rows")?,
            ..LlParams::default()
        };
        let mut passes = categorical_passes(
            cr,
            base,
            reduce.then_some(Src::Scratch(0)),
            weighted || !nll,
            format,
            &caps,
        )?;
        if reduce {
            limit("per-row partial sums", r * PARTIAL_BYTES, &caps)?;
            // Class indices: a mean by the targets' summed weights; probabilities: by N.
            let (more, need) = reduce_passes(
                1,
                r,
                finish_of(o.reduction, !soft),
                r as f32,
                Src::Output,
                0,
                &caps,
            )?;
            passes.extend(more);
            grow_scratch(&mut scratch, need);
        }
        steps.push(Step::ll(passes));
        let output_len = if reduce { 1 } else { rows };
        let f16 = format == InputFormat::F16;
        let inputs = if soft {
            vec![
                InputSpec::new("logits (f32, the shape)", n * 4),
                InputSpec::new("target probabilities (f32, the shape)", n * 4),
            ]
        } else if cr.inner > 1 {
            vec![
                InputSpec {
                    name: match (nll, f16) {
                        (true, false) => "log-probabilities (f32, N × C × d1 × … × dk)",
                        (true, true) => "log-probabilities (f16, N × C × d1 × … × dk)",
                        (false, false) => "logits (f32, N × C × d1 × … × dk)",
                        (false, true) => "logits (f16, N × C × d1 × … × dk)",
                    },
                    bytes: input_bytes(n, format),
                },
                InputSpec::new("targets (i32, N × d1 × … × dk)", r * 4),
            ]
        } else {
            vec![
                InputSpec {
                    name: match (nll, f16) {
                        (true, false) => "log-probabilities (f32, rows × classes)",
                        (true, true) => "log-probabilities (f16, rows × classes)",
                        (false, false) => "logits (f32, rows × classes)",
                        (false, true) => "logits (f16, rows × classes)",
                    },
                    bytes: input_bytes(n, format),
                },
                InputSpec::new("targets (i32, rows)", r * 4),
            ]
        };
        let program = Program::new(
            gpu,
            steps,
            Some((data, (aux_words - parts_off) * 4)),
            &scratch,
            inputs.iter().map(|i| i.bytes).collect(),
            output_len as u64 * 4,
        )?;
        Ok(LossOp {
            loss,
            inputs,
            output_len,
            program,
        })
    }

    fn elementwise(gpu: &Gpu, spec: ElementwiseLoss) -> Result<LossOp, Error> {
        let (passes, scratch, output_len) = spec.forward_passes(&Caps::of(gpu))?;
        let program = Program::new(
            gpu,
            vec![Step::ll(passes)],
            spec.aux.map(|d| (d, 0)),
            &scratch,
            spec.inputs.iter().map(|i| i.bytes).collect(),
            output_len as u64 * 4,
        )?;
        Ok(LossOp {
            loss: spec.loss,
            inputs: spec.inputs,
            output_len,
            program,
        })
    }

    /// `F.gaussian_nll_loss(input, target, var, full, eps, reduction)` over `n` elements, with
    /// `var` holding `n` variances or one shared (`shared_var`). Inputs: input, target, var.
    /// A negative variance gives NaN here ([`crate::Gpu::gaussian_nll`] rejects it).
    pub fn gaussian_nll(
        gpu: &Gpu,
        n: usize,
        shared_var: bool,
        options: &GaussianNll,
    ) -> Result<LossOp, Error> {
        Self::elementwise(gpu, gaussian_nll_spec(n, shared_var, options)?)
    }

    /// `F.binary_cross_entropy_with_logits(logits, targets, pos_weight, reduction)` over a
    /// `rows × cols` matrix, `pos_weight` one per column. Inputs: logits, targets.
    pub fn binary_cross_entropy_with_logits(
        gpu: &Gpu,
        rows: usize,
        cols: usize,
        options: &Bce,
    ) -> Result<LossOp, Error> {
        Self::elementwise(
            gpu,
            binary_cross_entropy_with_logits_spec(rows, cols, options)?,
        )
    }

    /// `F.poisson_nll_loss(input, target, log_input, full, eps, reduction)` over `n` elements.
    /// Inputs: input, target.
    pub fn poisson_nll(gpu: &Gpu, n: usize, options: &PoissonNll) -> Result<LossOp, Error> {
        Self::elementwise(gpu, poisson_nll_spec(n, options)?)
    }

    /// `Σ_j ln p_rj` for each row of a `rows × cols` matrix of probabilities: the log of a
    /// product that would underflow in f32. `ln 0 = −inf`; a negative p gives NaN. Input: p.
    pub fn log_prod(gpu: &Gpu, rows: usize, cols: usize) -> Result<LossOp, Error> {
        let total = elems(rows, cols)?;
        Self::elementwise(
            gpu,
            ElementwiseLoss {
                loss: Loss::LogProd,
                op: OP_LN,
                rows: rows as u64,
                cols: cols as u64,
                base: LlParams::default(),
                c: None,
                per_element_c: false,
                aux: None,
                reduction: Reduction::None,
                inputs: vec![InputSpec::new("p (f32, rows × cols)", total * 4)],
            },
        )
    }

    /// The function computed.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// The input buffers `record` takes, in order.
    pub fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }

    /// Number of f32 values written to the output.
    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// Records the op: reads `inputs` (as [`LossOp::inputs`] lists them) and writes
    /// [`LossOp::output_len`] f32 values at the start of `output`.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.program.record(encoder, inputs, output)
    }

    /// Runs the op once on resident buffers and returns the GPU time of its compute passes
    /// (summed), from timestamp queries; `None` where the device lacks
    /// `Features::TIMESTAMP_QUERY`. Waits for the GPU.
    pub fn kernel_time(
        &self,
        gpu: &Gpu,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
    ) -> Result<Option<std::time::Duration>, Error> {
        self.program.kernel_time(gpu, inputs, output)
    }
}

/// The forward of `F.gaussian_nll_loss` (see [`LossOp::gaussian_nll`]).
pub(crate) fn gaussian_nll_spec(
    n: usize,
    shared_var: bool,
    options: &GaussianNll,
) -> Result<ElementwiseLoss, Error> {
    let total = elems(1, n)?;
    if !options.eps.is_finite() || options.eps < 0.0 {
        return Err(Error::Value(format!(
            "eps is {}; it must be finite and ≥ 0",
            options.eps
        )));
    }
    let mode =
        if options.full { MODE_FULL } else { 0 } | if shared_var { MODE_SHARED_C } else { 0 };
    Ok(ElementwiseLoss {
        loss: Loss::GaussianNll,
        op: OP_GAUSSIAN,
        rows: 1,
        cols: total,
        base: LlParams {
            mode,
            eps: options.eps,
            ..LlParams::default()
        },
        c: Some(Bind {
            src: Src::Input(2),
            window: Some(Window { offset: 0, size: 4 }),
        }),
        per_element_c: !shared_var,
        aux: None,
        reduction: options.reduction,
        inputs: vec![
            InputSpec::new("input (f32, n)", total * 4),
            InputSpec::new("target (f32, n)", total * 4),
            InputSpec::new("var (f32, n or 1)", if shared_var { 4 } else { total * 4 }),
        ],
    })
}

/// The forward of `F.binary_cross_entropy_with_logits`.
pub(crate) fn binary_cross_entropy_with_logits_spec(
    rows: usize,
    cols: usize,
    options: &Bce,
) -> Result<ElementwiseLoss, Error> {
    let total = elems(rows, cols)?;
    let mut mode = 0;
    let mut aux = None;
    if let Some(pw) = &options.pos_weight {
        check_len("pos_weight", pw, cols)?;
        check_finite("pos_weight", pw)?;
        mode |= MODE_WEIGHTED;
        aux = Some(bytemuck::cast_slice(pw).to_vec());
    }
    Ok(ElementwiseLoss {
        loss: Loss::BinaryCrossEntropyWithLogits,
        op: OP_BCE,
        rows: rows as u64,
        cols: cols as u64,
        base: LlParams {
            mode,
            ..LlParams::default()
        },
        c: aux.as_ref().map(|_| Bind::whole(Src::Aux)),
        per_element_c: false,
        aux,
        reduction: options.reduction,
        inputs: vec![
            InputSpec::new("logits (f32, rows × cols)", total * 4),
            InputSpec::new("targets (f32, rows × cols)", total * 4),
        ],
    })
}

/// The forward of `F.poisson_nll_loss`.
pub(crate) fn poisson_nll_spec(n: usize, options: &PoissonNll) -> Result<ElementwiseLoss, Error> {
    let total = elems(1, n)?;
    if options.eps.is_nan() {
        return Err(Error::Value("eps is NaN".into()));
    }
    let mode = if options.full { MODE_FULL } else { 0 }
        | if options.log_input { MODE_LOG_INPUT } else { 0 };
    Ok(ElementwiseLoss {
        loss: Loss::PoissonNll,
        op: OP_POISSON,
        rows: 1,
        cols: total,
        base: LlParams {
            mode,
            eps: options.eps,
            ..LlParams::default()
        },
        c: None,
        per_element_c: false,
        aux: None,
        reduction: options.reduction,
        inputs: vec![
            InputSpec::new("input (f32, n)", total * 4),
            InputSpec::new("target (f32, n)", total * 4),
        ],
    })
}

/// Checks the target and variance lengths of Gaussian NLL over `n` inputs, and that no
/// variance is negative (as PyTorch does).
pub(crate) fn check_gaussian_inputs(target: &[f32], var: &[f32], n: usize) -> Result<(), Error> {
    check_len("target", target, n)?;
    if var.len() != n && var.len() != 1 {
        return Err(Error::InputLength {
            what: "var (one per element, or one shared)",
            expected: n,
            actual: var.len(),
        });
    }
    if let Some(i) = var.iter().position(|&v| v < 0.0) {
        return Err(Error::Value(format!(
            "var has a negative entry ({} at index {i})",
            var[i]
        )));
    }
    Ok(())
}

/// Checks the lengths of a blocking categorical call's logits and targets.
pub(crate) fn check_categorical_inputs(
    logits_len: usize,
    rows: usize,
    classes: usize,
    targets: &[i64],
) -> Result<(), Error> {
    let expected = elems(rows, classes)? as usize;
    if logits_len != expected {
        return Err(Error::InputLength {
            what: "logits",
            expected,
            actual: logits_len,
        });
    }
    if targets.len() != rows {
        return Err(Error::InputLength {
            what: "targets",
            expected: rows,
            actual: targets.len(),
        });
    }
    Ok(())
}

/// Checks class-index targets on the host and converts them to the `i32` the kernels read.
pub(crate) fn targets_i32(
    targets: &[i64],
    classes: usize,
    ignore_index: i64,
) -> Result<Vec<i32>, Error> {
    let ignored = i32::try_from(ignore_index).unwrap_or(i32::MIN);
    targets
        .iter()
        .enumerate()
        .map(|(row, &t)| {
            if t == ignore_index {
                Ok(ignored)
            } else if t < 0 || t as u64 >= classes as u64 {
                Err(Error::Value(format!(
                    "target {t} of row {row} is outside [0, {classes}) and is not ignore_index ({ignore_index})"
                )))
            } else {
                Ok(t as i32)
            }
        })
        .collect()
}

impl Gpu {
    fn run_loss(&self, op: &LossOp, inputs: &[&[u8]]) -> Result<Vec<f32>, Error> {
        self.run_program(&op.program, inputs, op.output_len)
    }

    /// `F.cross_entropy` with class-index targets: `logits` is row-major `rows × classes`,
    /// `targets` has `rows` class indices. Returns `rows` losses (`Reduction::None`) or one
    /// value. A target outside `[0, classes)` that is not `ignore_index` is an error naming the
    /// row.
    ///
    /// ```no_run
    /// use logdomain::{CrossEntropy, Gpu};
    /// let gpu = Gpu::new()?;
    /// let loss = gpu.cross_entropy(&[0.0, 0.0], 1, 2, &[1], &CrossEntropy::default())?;
    /// assert!((loss[0] - 2f32.ln()).abs() < 1e-6);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn cross_entropy(
        &self,
        logits: &[f32],
        rows: usize,
        classes: usize,
        targets: &[i64],
        options: &CrossEntropy,
    ) -> Result<Vec<f32>, Error> {
        let x = Values::F32(logits);
        self.categorical(Loss::CrossEntropy, x, rows, classes, targets, options)
    }

    /// [`Gpu::cross_entropy`] of f16 logits (`half::f16`), read as f16 on the GPU (half the
    /// bytes): the result is bit for bit that of the f32 op on the same values converted to
    /// f32. Needs no adapter feature.
    ///
    /// ```no_run
    /// use half::f16;
    /// use logdomain::{CrossEntropy, Gpu};
    /// let gpu = Gpu::new()?;
    /// let logits = [f16::ZERO, f16::ZERO];
    /// let loss = gpu.cross_entropy_f16(&logits, 1, 2, &[1], &CrossEntropy::default())?;
    /// assert!((loss[0] - 2f32.ln()).abs() < 1e-6);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn cross_entropy_f16(
        &self,
        logits: &[half::f16],
        rows: usize,
        classes: usize,
        targets: &[i64],
        options: &CrossEntropy,
    ) -> Result<Vec<f32>, Error> {
        let x = Values::F16(logits);
        self.categorical(Loss::CrossEntropy, x, rows, classes, targets, options)
    }

    /// `F.nll_loss` on log-probabilities (`rows × classes`); `label_smoothing` must be 0.
    pub fn nll_loss(
        &self,
        log_probs: &[f32],
        rows: usize,
        classes: usize,
        targets: &[i64],
        options: &CrossEntropy,
    ) -> Result<Vec<f32>, Error> {
        let x = Values::F32(log_probs);
        self.categorical(Loss::NllLoss, x, rows, classes, targets, options)
    }

    /// [`Gpu::nll_loss`] of f16 log-probabilities.
    pub fn nll_loss_f16(
        &self,
        log_probs: &[half::f16],
        rows: usize,
        classes: usize,
        targets: &[i64],
        options: &CrossEntropy,
    ) -> Result<Vec<f32>, Error> {
        let x = Values::F16(log_probs);
        self.categorical(Loss::NllLoss, x, rows, classes, targets, options)
    }

    /// `F.cross_entropy` with class-index targets on PyTorch's layouts: `logits` row-major of
    /// `shape` (C,), (N, C) or (N, C, d1, …, dk), the classes on axis 1 (segmentation maps,
    /// sequence models), read where they lie; `targets` row-major of the shape without the
    /// class axis. Returns the losses in that shape (`Reduction::None`), or one value of shape
    /// `[]`. A target outside `[0, C)` that is not `ignore_index` is an error naming it.
    ///
    /// ```no_run
    /// use logdomain::{CrossEntropy, Gpu, Reduction};
    /// let gpu = Gpu::new()?;
    /// // One sample, 2 classes, 3 positions: the classes are 3 entries apart.
    /// let logits = [0.0, 1.0, 2.0, 0.0, 1.0, 2.0];
    /// let none = CrossEntropy { reduction: Reduction::None, ..Default::default() };
    /// let loss = gpu.cross_entropy_nd(&logits, &[1, 2, 3], &[1, 0, 1], &none)?;
    /// assert_eq!(loss.shape, [1, 3]);
    /// assert!(loss.values.iter().all(|&l| (l - 2f32.ln()).abs() < 1e-6));
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn cross_entropy_nd(
        &self,
        logits: &[f32],
        shape: &[usize],
        targets: &[i64],
        options: &CrossEntropy,
    ) -> Result<NdArray, Error> {
        let x = Values::F32(logits);
        self.categorical_nd(Loss::CrossEntropy, x, shape, targets, options)
    }

    /// `F.cross_entropy` with class-probability targets ([`LossOp::cross_entropy_probs`]):
    /// `logits` and `targets` row-major f32 of `shape` ((C,), (N, C) or (N, C, d1, …, dk), the
    /// classes on axis 1). Returns the losses in the shape without the class axis
    /// (`Reduction::None`), or one value of shape `[]` (`Mean` divides by that shape's size).
    ///
    /// ```no_run
    /// use logdomain::{CrossEntropy, Gpu};
    /// let gpu = Gpu::new()?;
    /// // Two classes, half and half: ln 2 whatever the targets' split.
    /// let loss = gpu.cross_entropy_probs(&[0.0, 0.0], &[1, 2], &[0.3, 0.7], &CrossEntropy::default())?;
    /// assert!((loss.values[0] - 2f32.ln()).abs() < 1e-6);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn cross_entropy_probs(
        &self,
        logits: &[f32],
        shape: &[usize],
        targets: &[f32],
        options: &CrossEntropy,
    ) -> Result<NdArray, Error> {
        let cr = class_axis(shape)?;
        let len = elems(cr.rows as usize, cr.classes as usize)? as usize;
        check_len("logits", logits, len)?;
        check_len("targets", targets, len)?;
        let op = LossOp::cross_entropy_probs(self, shape, options)?;
        let values = self.run_loss(
            &op,
            &[bytemuck::cast_slice(logits), bytemuck::cast_slice(targets)],
        )?;
        Ok(loss_array(shape, options, values))
    }

    /// [`Gpu::cross_entropy_nd`] of f16 logits: the f32 op's bits on the same values.
    pub fn cross_entropy_nd_f16(
        &self,
        logits: &[half::f16],
        shape: &[usize],
        targets: &[i64],
        options: &CrossEntropy,
    ) -> Result<NdArray, Error> {
        let x = Values::F16(logits);
        self.categorical_nd(Loss::CrossEntropy, x, shape, targets, options)
    }

    /// `F.nll_loss` on log-probabilities laid out as [`Gpu::cross_entropy_nd`]'s logits;
    /// `label_smoothing` must be 0.
    pub fn nll_loss_nd(
        &self,
        log_probs: &[f32],
        shape: &[usize],
        targets: &[i64],
        options: &CrossEntropy,
    ) -> Result<NdArray, Error> {
        let x = Values::F32(log_probs);
        self.categorical_nd(Loss::NllLoss, x, shape, targets, options)
    }

    /// [`Gpu::nll_loss_nd`] of f16 log-probabilities.
    pub fn nll_loss_nd_f16(
        &self,
        log_probs: &[half::f16],
        shape: &[usize],
        targets: &[i64],
        options: &CrossEntropy,
    ) -> Result<NdArray, Error> {
        let x = Values::F16(log_probs);
        self.categorical_nd(Loss::NllLoss, x, shape, targets, options)
    }

    fn categorical_nd(
        &self,
        loss: Loss,
        x: Values<'_>,
        shape: &[usize],
        targets: &[i64],
        options: &CrossEntropy,
    ) -> Result<NdArray, Error> {
        let (len, format, bytes) = x.upload();
        let cr = class_axis(shape)?;
        let classes = cr.classes as usize;
        check_categorical_inputs(len, cr.rows as usize, classes, targets)?;
        let op = LossOp::categorical_nd(self, loss, shape, format, options)?;
        let t = targets_i32(targets, classes, options.ignore_index)?;
        let values = self.run_loss(&op, &[&bytes, bytemuck::cast_slice(&t)])?;
        Ok(loss_array(shape, options, values))
    }

    fn categorical(
        &self,
        loss: Loss,
        x: Values<'_>,
        rows: usize,
        classes: usize,
        targets: &[i64],
        options: &CrossEntropy,
    ) -> Result<Vec<f32>, Error> {
        let (len, format, bytes) = x.upload();
        check_categorical_inputs(len, rows, classes, targets)?;
        let op = LossOp::categorical(
            self,
            loss,
            ClassRows::packed(rows as u64, classes as u64),
            options,
            format,
            false,
        )?;
        let t = targets_i32(targets, classes, options.ignore_index)?;
        self.run_loss(&op, &[&bytes, bytemuck::cast_slice(&t)])
    }

    /// `F.gaussian_nll_loss(input, target, var)`: `var` has one variance per element or a
    /// single shared one. A negative variance is an error (as in PyTorch); variances are
    /// clamped to at least `eps`.
    pub fn gaussian_nll(
        &self,
        input: &[f32],
        target: &[f32],
        var: &[f32],
        options: &GaussianNll,
    ) -> Result<Vec<f32>, Error> {
        let n = input.len();
        check_gaussian_inputs(target, var, n)?;
        let op = LossOp::gaussian_nll(self, n, var.len() == 1 && n != 1, options)?;
        self.run_loss(
            &op,
            &[
                bytemuck::cast_slice(input),
                bytemuck::cast_slice(target),
                bytemuck::cast_slice(var),
            ],
        )
    }

    /// `F.binary_cross_entropy_with_logits` over a row-major `rows × cols` matrix, with
    /// `pos_weight` (if any) one per column.
    pub fn binary_cross_entropy_with_logits(
        &self,
        logits: &[f32],
        targets: &[f32],
        rows: usize,
        cols: usize,
        options: &Bce,
    ) -> Result<Vec<f32>, Error> {
        let n = elems(rows, cols)? as usize;
        check_len("logits", logits, n)?;
        check_len("targets", targets, n)?;
        let op = LossOp::binary_cross_entropy_with_logits(self, rows, cols, options)?;
        self.run_loss(
            &op,
            &[bytemuck::cast_slice(logits), bytemuck::cast_slice(targets)],
        )
    }

    /// `F.poisson_nll_loss(input, target)`.
    pub fn poisson_nll(
        &self,
        input: &[f32],
        target: &[f32],
        options: &PoissonNll,
    ) -> Result<Vec<f32>, Error> {
        check_len("target", target, input.len())?;
        let op = LossOp::poisson_nll(self, input.len(), options)?;
        self.run_loss(
            &op,
            &[bytemuck::cast_slice(input), bytemuck::cast_slice(target)],
        )
    }

    /// `Σ_j ln p_rj` for each row of a row-major `rows × cols` matrix: the log of a product of
    /// probabilities that would underflow in f32.
    ///
    /// ```no_run
    /// let gpu = logdomain::Gpu::new()?;
    /// let lp = gpu.log_prod(&vec![0.01f32; 10_000], 1, 10_000)?;
    /// assert!((lp[0] + 46051.7).abs() < 0.1);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn log_prod(&self, p: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>, Error> {
        check_len("p", p, elems(rows, cols)? as usize)?;
        let op = LossOp::log_prod(self, rows, cols)?;
        self.run_loss(&op, &[bytemuck::cast_slice(p)])
    }
}

crate::engine::op::lowered!(LossOp);

impl Op for LossOp {
    fn input_names(&self) -> Vec<&'static str> {
        self.inputs.iter().map(|s| s.name).collect()
    }

    fn output_names(&self) -> Vec<&'static str> {
        vec!["loss"]
    }
}
