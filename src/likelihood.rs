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
    MODE_NLL, MODE_SHARED_C, MODE_WEIGHTED, OP_BCE, OP_GAUSSIAN, OP_LN, OP_POISSON, OP_SMOOTH,
};
use crate::engine::geometry::{
    Caps, MAX_GROUPS, WORK_UNIT, Window, fold_groups, usable_binding, window, window_of,
};
use crate::error::Error;
use crate::gpu::{Dispatch, Family, GlLock, Gpu, PassRecord, PipelineKey, Values};
use crate::logsumexp::{InputFormat, RowFn, RowOp, RowsLayout, Strategy};
use crate::shaders::{LlParams, PARTIAL_BYTES};

/// How per-sample values are reduced over the batch, as PyTorch's `reduction` argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// One value per sample (per element for the element-wise losses).
    None,
    /// The sum over the batch: one value.
    Sum,
    /// The mean over the batch: one value. Cross-entropy and NLL divide by the summed class
    /// weights of the non-ignored targets (NaN when every target is ignored), the element-wise
    /// losses by the number of elements (NaN for an empty batch).
    #[default]
    Mean,
}

/// Options of `F.cross_entropy` / `F.nll_loss` with class-index targets (PyTorch's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropy {
    /// A weight per class (`classes` values, finite), or `None` for 1.
    pub weight: Option<Vec<f32>>,
    /// Targets equal to this contribute nothing, to the loss nor to the mean's denominator.
    pub ignore_index: i64,
    /// In `[0, 1]`: the target distribution is `(1 − ε)·onehot + ε/C`. Must be 0 for NLL.
    pub label_smoothing: f32,
    /// The reduction over rows.
    pub reduction: Reduction,
}

impl Default for CrossEntropy {
    fn default() -> Self {
        CrossEntropy {
            weight: None,
            ignore_index: -100,
            label_smoothing: 0.0,
            reduction: Reduction::Mean,
        }
    }
}

/// Options of `F.gaussian_nll_loss` (PyTorch's defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GaussianNll {
    /// Add the constant `0.5·ln(2π)` per element.
    pub full: bool,
    /// Variances are clamped to at least `eps` (finite, ≥ 0).
    pub eps: f32,
    /// The reduction over elements.
    pub reduction: Reduction,
}

impl Default for GaussianNll {
    fn default() -> Self {
        GaussianNll {
            full: false,
            eps: 1e-6,
            reduction: Reduction::Mean,
        }
    }
}

/// Options of `F.binary_cross_entropy_with_logits` (PyTorch's defaults).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bce {
    /// A weight of the positive class per column (`cols` values, broadcast over rows as
    /// PyTorch broadcasts over the last dimension), or `None` for 1.
    pub pos_weight: Option<Vec<f32>>,
    /// The reduction over elements.
    pub reduction: Reduction,
}

/// Options of `F.poisson_nll_loss` (PyTorch's defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoissonNll {
    /// Inputs are log-rates (`e^x − y·x`) rather than rates (`x − y·ln(x + eps)`).
    pub log_input: bool,
    /// Add the Stirling approximation of `ln(y!)` where `y > 1`.
    pub full: bool,
    /// Added to rates before the log when `log_input` is false.
    pub eps: f32,
    /// The reduction over elements.
    pub reduction: Reduction,
}

impl Default for PoissonNll {
    fn default() -> Self {
        PoissonNll {
            log_input: true,
            full: false,
            eps: 1e-8,
            reduction: Reduction::Mean,
        }
    }
}

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

/// Values per chunk and partials per reduction step (`CHUNK` in the WGSL).
pub(crate) const CHUNK: u64 = 64;
pub(crate) const LL_WG: u32 = 64;

/// A buffer a pass binds: one of the caller's, or one the op owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Src {
    Input(usize),
    Output,
    Aux,
    Scratch(usize),
    Dummy,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Bind {
    pub src: Src,
    /// `None` binds the whole buffer.
    pub window: Option<Window>,
}

impl Bind {
    pub fn whole(src: Src) -> Bind {
        Bind { src, window: None }
    }
    fn dummy() -> Bind {
        Bind::whole(Src::Dummy)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct LlPass {
    pub key: PipelineKey,
    pub params: LlParams,
    pub groups: u64,
    /// Bindings 1 (a), 2 (b), 3 (c), 4 (out).
    pub bind: [Bind; 4],
    /// Binding 5: a window of the op's aux buffer bound as uniform, or the dummy.
    pub uniform: Option<Window>,
    /// Binding 6 of the wide layout (pipelines of `Family::LikelihoodWide` only).
    pub extra: Option<Bind>,
}

pub(crate) enum Step {
    /// Dispatches of the likelihood module, in one compute pass.
    Ll(Vec<LlPass>),
    /// A log-sum-exp family op from one buffer to another.
    Rows(Box<RowOp>, Src, Src),
}

/// What a pass sequence needs, and the machinery to record it: shared by [`LossOp`] and
/// [`crate::GmmOp`].
pub(crate) struct Program {
    pub steps: Vec<Step>,
    pipelines: Vec<Vec<wgpu::ComputePipeline>>,
    params: Option<wgpu::Buffer>,
    param_stride: u64,
    pub aux: Option<wgpu::Buffer>,
    pub scratch: Vec<Option<wgpu::Buffer>>,
    /// Bytes each caller input must have.
    pub input_bytes: Vec<u64>,
    /// Bytes the output must have.
    pub output_bytes: u64,
    device: wgpu::Device,
    layout: wgpu::BindGroupLayout,
    wide_layout: Option<wgpu::BindGroupLayout>,
    dummies: [wgpu::Buffer; 3],
    dummy_uniform: wgpu::Buffer,
    max_groups_per_dim: u32,
    gl: GlLock,
}

impl Drop for Program {
    fn drop(&mut self) {
        // Destroying a buffer is a GL call on GL: under the crate's lock. The steps' row ops
        // take it themselves.
        let _gl = self.gl.guard();
        drop((
            self.params.take(),
            self.aux.take(),
            std::mem::take(&mut self.scratch),
        ));
    }
}

pub(crate) fn key(entry: &'static str, op: u32, reduce: u32) -> PipelineKey {
    PipelineKey {
        family: Family::Likelihood,
        entry,
        op,
        wg: LL_WG,
        reduce,
        dims: 0,
        in_f16: false,
        out_f16: false,
        vec: 0,
        lanes: 0,
    }
}

/// `key` for a pass whose binding a holds entries of `format` (the `IN_F16` override).
pub(crate) fn key_reading(
    entry: &'static str,
    op: u32,
    reduce: u32,
    format: InputFormat,
) -> PipelineKey {
    PipelineKey {
        in_f16: format == InputFormat::F16,
        ..key(entry, op, reduce)
    }
}

/// Bytes a buffer of `n` entries of `format` needs: whole 4-byte words, as it is bound.
pub(crate) fn input_bytes(n: u64, format: InputFormat) -> u64 {
    (n * format.bytes()).next_multiple_of(4)
}

impl Program {
    /// Builds pipelines and buffers. `aux` is the op's own read-only data (weights, parameters)
    /// followed by `aux_extra` bytes of space kernels write; `scratch` the sizes of the scratch
    /// buffers (`Src::Scratch(i)`; 0 for none).
    pub fn new(
        gpu: &Gpu,
        steps: Vec<Step>,
        aux: Option<(Vec<u8>, u64)>,
        scratch: &[u64],
        input_bytes: Vec<u64>,
        output_bytes: u64,
    ) -> Result<Program, Error> {
        let mut pipelines = Vec::new();
        let mut all = Vec::new();
        for step in &steps {
            let mut ps = Vec::new();
            if let Step::Ll(passes) = step {
                for p in passes {
                    ps.push(gpu.pipeline(p.key)?);
                    all.push(p.params);
                }
            }
            pipelines.push(ps);
        }
        let param_stride = (std::mem::size_of::<LlParams>() as u64)
            .next_multiple_of(u64::from(gpu.limits.min_uniform_buffer_offset_alignment).max(4));
        let params = (!all.is_empty()).then(|| {
            let mut bytes = vec![0u8; all.len() * param_stride as usize];
            for (i, p) in all.iter().enumerate() {
                let at = i * param_stride as usize;
                bytes[at..at + std::mem::size_of::<LlParams>()]
                    .copy_from_slice(bytemuck::bytes_of(p));
            }
            gpu.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("logdomain likelihood params"),
                contents: &bytes,
                usage: wgpu::BufferUsages::UNIFORM,
            })
        });
        let max_buffer = gpu.limits.max_buffer_size;
        let aux = match aux {
            Some((mut data, extra)) => {
                let size = (data.len() as u64 + extra).max(16).next_multiple_of(4);
                if size > max_buffer {
                    return Err(Error::Limit(format!(
                        "{size} bytes of weights and per-row values exceed max_buffer_size"
                    )));
                }
                data.resize(size as usize, 0);
                Some(gpu.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("logdomain likelihood aux"),
                    contents: &data,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
                }))
            }
            None => None,
        };
        let mut made: Vec<Option<wgpu::Buffer>> = vec![None; scratch.len()];
        for (slot, &bytes) in made.iter_mut().zip(scratch) {
            if bytes > 0 {
                if bytes > max_buffer {
                    return Err(Error::Limit(format!(
                        "{bytes} bytes of scratch exceed max_buffer_size ({max_buffer})"
                    )));
                }
                *slot = Some(gpu.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("logdomain likelihood scratch"),
                    size: bytes.next_multiple_of(4),
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                }));
            }
        }
        Ok(Program {
            steps,
            pipelines,
            params,
            param_stride,
            aux,
            scratch: made,
            input_bytes,
            output_bytes,
            device: gpu.device.clone(),
            layout: gpu.ll_layout.clone(),
            wide_layout: gpu.ll_wide_layout.clone(),
            dummies: gpu.dummies.clone(),
            dummy_uniform: gpu.dummy_uniform.clone(),
            max_groups_per_dim: gpu.limits.max_compute_workgroups_per_dimension.max(1),
            gl: gpu.gl_lock(),
        })
    }

    /// Buffers the program owns (parameters, aux, scratch), all made by `new`.
    pub fn owned_buffers(&self) -> usize {
        usize::from(self.params.is_some())
            + usize::from(self.aux.is_some())
            + self.scratch.iter().filter(|b| b.is_some()).count()
    }

    /// Checks the caller's buffers, then returns the GPU time of the compute passes of one run,
    /// from timestamps (see `LossOp::kernel_time`).
    pub fn kernel_time(
        &self,
        gpu: &Gpu,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
    ) -> Result<Option<std::time::Duration>, Error> {
        self.check(inputs, output)?;
        gpu.time_passes(self.steps.len() as u32, |queries| {
            self.pass_records(inputs, output, Some(queries))
        })
    }

    /// Checks the caller's buffers, then records every step (the ops' `record`).
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.check(inputs, output)?;
        self.encode(encoder, inputs, output, None)
    }

    /// Checks the caller's buffers: usage, sizes, and that the output is none of the inputs.
    pub fn check(&self, inputs: &[&wgpu::Buffer], output: &wgpu::Buffer) -> Result<(), Error> {
        if inputs.len() != self.input_bytes.len() {
            return Err(Error::Buffer(format!(
                "this op takes {} input buffers, got {}",
                self.input_bytes.len(),
                inputs.len()
            )));
        }
        let need = |b: &wgpu::Buffer, what: String, end: u64| -> Result<(), Error> {
            if !b.usage().contains(wgpu::BufferUsages::STORAGE) {
                return Err(Error::Buffer(format!(
                    "the {what} buffer needs BufferUsages::STORAGE"
                )));
            }
            if b.size() < end {
                return Err(Error::Buffer(format!(
                    "the {what} buffer has {} bytes; this op needs {end}",
                    b.size()
                )));
            }
            Ok(())
        };
        for (i, (b, &end)) in inputs.iter().zip(&self.input_bytes).enumerate() {
            need(b, format!("input {i}"), end)?;
            if *b == output {
                return Err(Error::Buffer(format!(
                    "input {i} and the output must be different buffers"
                )));
            }
        }
        need(output, "output".into(), self.output_bytes)
    }

    fn buffer<'a>(
        &'a self,
        src: Src,
        slot: usize,
        inputs: &[&'a wgpu::Buffer],
        output: &'a wgpu::Buffer,
    ) -> &'a wgpu::Buffer {
        let dummy = &self.dummies[if slot == 3 { 1 } else { 0 }];
        match src {
            Src::Input(i) => inputs[i],
            Src::Output => output,
            Src::Aux => self.aux.as_ref().unwrap_or(dummy),
            Src::Scratch(i) => self
                .scratch
                .get(i)
                .and_then(|b| b.as_ref())
                .unwrap_or(dummy),
            Src::Dummy => dummy,
        }
    }

    /// Records every step; the buffers were checked by the caller. With `timestamps`, step i
    /// writes the GPU time at the start and end of its compute pass into queries 2i and 2i + 1.
    pub fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
        timestamps: Option<&wgpu::QuerySet>,
    ) -> Result<(), Error> {
        for p in self.pass_records(inputs, output, timestamps)? {
            p.record(encoder);
        }
        Ok(())
    }

    /// The compute passes of every step (see [`Program::encode`]); the buffers were checked by
    /// the caller.
    pub fn pass_records<'q>(
        &self,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
        timestamps: Option<&'q wgpu::QuerySet>,
    ) -> Result<Vec<PassRecord<'q>>, Error> {
        let mut records = Vec::new();
        let mut slot = 0u64;
        for (i, (step, pipelines)) in self.steps.iter().zip(&self.pipelines).enumerate() {
            let first = 2 * i as u32;
            match step {
                Step::Rows(op, from, to) => {
                    let (input, out) = (
                        self.buffer(*from, 0, inputs, output),
                        self.buffer(*to, 3, inputs, output),
                    );
                    let q = timestamps
                        .filter(|_| op.dispatches() > 0)
                        .map(|q| (q, first));
                    records.extend(op.op_pass(input, out, q)?);
                }
                Step::Ll(passes) => {
                    let Some(params) = &self.params else {
                        continue;
                    };
                    let dispatches: Vec<Dispatch> = passes
                        .iter()
                        .zip(pipelines)
                        .enumerate()
                        .map(|(i, (p, pipeline))| {
                            let mut entries = vec![wgpu::BindGroupEntry {
                                binding: 0,
                                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                    buffer: params,
                                    offset: (slot + i as u64) * self.param_stride,
                                    size: wgpu::BufferSize::new(
                                        std::mem::size_of::<LlParams>() as u64
                                    ),
                                }),
                            }];
                            for (j, b) in p.bind.iter().enumerate() {
                                let buffer = self.buffer(b.src, j, inputs, output);
                                let resource = match b.window {
                                    Some(w) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                        buffer,
                                        offset: w.offset,
                                        size: wgpu::BufferSize::new(w.size),
                                    }),
                                    None => buffer.as_entire_binding(),
                                };
                                entries.push(wgpu::BindGroupEntry {
                                    binding: j as u32 + 1,
                                    resource,
                                });
                            }
                            let uniform = match (p.uniform, &self.aux) {
                                (Some(w), Some(aux)) => {
                                    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                        buffer: aux,
                                        offset: w.offset,
                                        size: wgpu::BufferSize::new(w.size),
                                    })
                                }
                                _ => self.dummy_uniform.as_entire_binding(),
                            };
                            entries.push(wgpu::BindGroupEntry {
                                binding: 5,
                                resource: uniform,
                            });
                            let mut layout = &self.layout;
                            if p.key.family == Family::LikelihoodWide {
                                let b = p.extra.unwrap_or(Bind::dummy());
                                entries.push(wgpu::BindGroupEntry {
                                    binding: 6,
                                    resource: self
                                        .buffer(b.src, 3, inputs, output)
                                        .as_entire_binding(),
                                });
                                // Program::new built this pass's pipeline, so the layout exists.
                                layout = self.wide_layout.as_ref().unwrap_or(&self.layout);
                            }
                            Dispatch {
                                pipeline: pipeline.clone(),
                                group: self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                                    label: Some(p.key.entry),
                                    layout,
                                    entries: &entries,
                                }),
                                size: fold_groups(p.groups, self.max_groups_per_dim),
                            }
                        })
                        .collect();
                    slot += passes.len() as u64;
                    records.push(PassRecord {
                        label: "logdomain likelihood",
                        dispatches,
                        timestamps: timestamps.map(|q| (q, first)),
                    });
                }
            }
        }
        Ok(records)
    }
}

pub(crate) fn limit(what: &str, bytes: u64, caps: &Caps) -> Result<(), Error> {
    if bytes > caps.max_binding {
        return Err(Error::Limit(format!(
            "{what} needs {bytes} bytes in one storage binding; max_storage_buffer_binding_size is {}",
            caps.max_binding
        )));
    }
    Ok(())
}

/// The usable binding of a likelihood pass: at least a chunk past the alignment slack.
pub(crate) fn usable(caps: &Caps) -> Result<u64, Error> {
    usable_binding(caps, CHUNK * 4)
}

pub(crate) fn groups_for(invocations: u64) -> Result<u64, Error> {
    let g = invocations.div_ceil(u64::from(LL_WG));
    if g > MAX_GROUPS {
        return Err(Error::Limit(format!(
            "{invocations} invocations in one dispatch"
        )));
    }
    Ok(g)
}

/// The dispatches of an element-wise pass over a contiguous `rows × cols` matrix held, from
/// byte 0, in every buffer of `per_element` (windowed alike); `fixed` binds the others (a, b, c,
/// out order: `per_element` fills the slots marked `None` in `fixed`). Windows hold whole rows,
/// or, for rows longer than a binding, column ranges that start on a chunk boundary, so the
/// chunks — and the partial sums — do not depend on the binding size.
pub(crate) fn elementwise_passes(
    key: PipelineKey,
    base: LlParams,
    rows: u64,
    cols: u64,
    slots: [Option<Bind>; 4],
    per_element: [Src; 4],
    caps: &Caps,
) -> Result<Vec<LlPass>, Error> {
    elementwise_passes_at(key, base, rows, cols, cols, 0, slots, per_element, caps)
}

/// `elementwise_passes` over a strided matrix in the per-element buffers: row r starts at byte
/// `offset + r·pitch·4` (`offset` a multiple of 4, `pitch ≥ cols` elements), as a texture copied
/// into a buffer with padded rows is laid out. The kernel reads the pitch from `LlParams.k`
/// (0: `cols`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn elementwise_passes_at(
    key: PipelineKey,
    base: LlParams,
    rows: u64,
    cols: u64,
    pitch: u64,
    offset: u64,
    slots: [Option<Bind>; 4],
    per_element: [Src; 4],
    caps: &Caps,
) -> Result<Vec<LlPass>, Error> {
    let usable = usable(caps)?;
    let mut out = Vec::new();
    let mut geo = Vec::new(); // (row0, k, col0, col1)
    if rows == 0 || cols == 0 {
        return Ok(out);
    }
    // Whole rows where a row fits one binding and one dispatch's work (`Caps::per_dispatch`).
    if pitch * 4 <= usable && pitch * WORK_UNIT <= caps.dispatch_work {
        let k_max = (usable / (pitch * 4))
            .min(caps.per_dispatch(pitch * WORK_UNIT))
            .max(1);
        let mut r0 = 0;
        while r0 < rows {
            let k = k_max.min(rows - r0);
            geo.push((r0, k, 0, cols));
            r0 += k;
        }
    } else {
        let width = ((usable / 4).min(caps.per_dispatch(WORK_UNIT)) / CHUNK).max(1) * CHUNK;
        for r in 0..rows {
            let mut c0 = 0;
            while c0 < cols {
                let c1 = (c0 + width).min(cols);
                geo.push((r, 1, c0, c1));
                c0 = c1;
            }
        }
    }
    let cols32 = crate::engine::geometry::u32_of(cols, "cols")?;
    // f16 entries (IN_F16) in binding a, which is then the only per-element binding; the
    // geometry (chunks, windows of rows) stays that of f32, so the sums are the same.
    let entry = if key.in_f16 { 2 } else { 4 };
    debug_assert!(!key.in_f16 || slots[1..].iter().all(Option::is_some));
    for (r0, k, c0, c1) in geo {
        let first = offset + (r0 * pitch + c0) * entry;
        let bytes = ((k - 1) * pitch + (c1 - c0)) * entry;
        let (w, off) = window_of(first, bytes, caps.storage_align, entry);
        let mut bind = [Bind::dummy(); 4];
        let mut offs = [0u32; 4];
        for j in 0..4 {
            match slots[j] {
                Some(b) => bind[j] = b,
                None => {
                    bind[j] = Bind {
                        src: per_element[j],
                        window: Some(w),
                    };
                    offs[j] = off;
                }
            }
        }
        let per_row = (c1 - c0).div_ceil(CHUNK);
        let mut params = LlParams {
            rows: k as u32,
            cols: cols32,
            col0: c0 as u32,
            col1: c1 as u32,
            row0: crate::engine::geometry::u32_of(r0, "rows")?,
            slots: crate::engine::geometry::u32_of(cols.div_ceil(CHUNK), "chunks")?,
            k: if pitch == cols {
                base.k
            } else {
                crate::engine::geometry::u32_of(pitch, "row pitch")?
            },
            ..base
        };
        if slots[0].is_none() {
            params.a_off = offs[0];
        }
        if slots[1].is_none() {
            params.b_off = offs[1];
        }
        if slots[2].is_none() {
            params.c_off = offs[2];
        }
        if slots[3].is_none() {
            params.out_off = offs[3];
        }
        out.push(LlPass {
            key,
            params,
            groups: groups_for(k * per_row)?,
            bind,
            uniform: None,
            extra: None,
        });
    }
    Ok(out)
}

/// Reduction levels over `rows` independent sums of `len` partials in scratch 0: CHUNK partials
/// at a time, ping-ponging between the scratch buffers, until the last level writes each row's
/// result (`finish`) into `dst` at word `dst_off` (bound whole). Returns the passes and the
/// bytes scratch buffers 0 and 1 need.
pub(crate) fn reduce_passes(
    rows: u64,
    len: u64,
    finish: u32,
    count: f32,
    dst: Src,
    dst_off: u32,
    caps: &Caps,
) -> Result<(Vec<LlPass>, [u64; 2]), Error> {
    let (passes, mut need) = reduce_passes_from(
        Src::Scratch(0),
        rows,
        len,
        finish,
        count,
        dst,
        dst_off,
        caps,
    )?;
    need[0] = need[0].max(rows * len * PARTIAL_BYTES);
    Ok((passes, need))
}

/// Grows the scratch sizes `scratch[0]` and `scratch[1]` to what a reduction `need`s.
pub(crate) fn grow_scratch(scratch: &mut [u64], need: [u64; 2]) {
    scratch[0] = scratch[0].max(need[0]);
    scratch[1] = scratch[1].max(need[1]);
}

/// `reduce_passes` with the first level's partials in `src` (which the levels never write:
/// they ping-pong through scratch 1 and 0), for partials read more than once.
#[allow(clippy::too_many_arguments)]
pub(crate) fn reduce_passes_from(
    src: Src,
    rows: u64,
    len: u64,
    finish: u32,
    count: f32,
    dst: Src,
    dst_off: u32,
    caps: &Caps,
) -> Result<(Vec<LlPass>, [u64; 2]), Error> {
    let mut passes = Vec::new();
    let mut need = [0u64, 0];
    let mut from = src;
    let mut len_in = len;
    loop {
        let len_out = len_in.div_ceil(CHUNK).max(1);
        let last = len_out == 1;
        let a = if len_in == 0 {
            Bind::dummy()
        } else {
            limit("partial sums", rows * len_in * PARTIAL_BYTES, caps)?;
            Bind::whole(from)
        };
        let (out, finish_here) = if last {
            let out = if matches!(dst, Src::Output | Src::Input(_)) {
                // A window: the caller's buffer may be larger than a binding.
                Bind {
                    src: dst,
                    window: Some(Window {
                        offset: 0,
                        size: (u64::from(dst_off) + rows) * 4,
                    }),
                }
            } else {
                Bind::whole(dst)
            };
            (out, finish)
        } else {
            let to = if from == Src::Scratch(1) { 0 } else { 1 };
            need[to] = need[to].max(rows * len_out * PARTIAL_BYTES);
            (Bind::whole(Src::Scratch(to)), FINISH_PARTIAL)
        };
        passes.push(LlPass {
            key: key("reduce", 0, 0),
            params: LlParams {
                rows: crate::engine::geometry::u32_of(rows, "rows")?,
                len_in: crate::engine::geometry::u32_of(len_in, "partials")?,
                slots: len_out as u32,
                finish: finish_here,
                count,
                out_off: if last { dst_off } else { 0 },
                ..LlParams::default()
            },
            groups: groups_for(rows * len_out)?,
            uniform: None,
            extra: None,
            bind: [a, Bind::dummy(), Bind::dummy(), out],
        });
        if last {
            break;
        }
        from = if from == Src::Scratch(1) {
            Src::Scratch(0)
        } else {
            Src::Scratch(1)
        };
        len_in = len_out;
    }
    Ok((passes, need))
}

/// The rows' log-sum-exp parts `(m, log1p s)` of `from` (the logits, entries of `format`) into
/// the op's aux buffer at word `parts_off`, by the log-sum-exp family's row strategies.
pub(crate) fn parts_step(
    gpu: &Gpu,
    from: Src,
    rows: usize,
    classes: usize,
    parts_off: u64,
    format: InputFormat,
) -> Result<Step, Error> {
    let layout = RowsLayout {
        output_offset: parts_off * 4,
        input_format: format,
        ..RowsLayout::contiguous(rows, classes)
    };
    Ok(Step::Rows(
        Box::new(RowOp::new(
            gpu,
            RowFn::LogsumexpParts,
            layout,
            Strategy::Auto,
        )?),
        from,
        Src::Aux,
    ))
}

/// The `categorical` dispatches over `rows` rows of `classes` logits (Input(0)) with targets
/// (Input(1)): windows of whole rows. `partials` is where REDUCE 1 writes the rows' (loss,
/// weight) partials (bound whole), or `None` for REDUCE 0 (the losses into the output); `aux`
/// binds the op's aux buffer as c. `base` holds the options; the geometry is filled in. The
/// logits are entries of `format`.
pub(crate) fn categorical_passes(
    rows: u64,
    classes: u64,
    base: LlParams,
    partials: Option<Src>,
    aux: bool,
    format: InputFormat,
    caps: &Caps,
) -> Result<Vec<LlPass>, Error> {
    let entry = format.bytes();
    let usable = usable(caps)?;
    let u = |v: u64, what: &str| crate::engine::geometry::u32_of(v, what);
    let c = classes;
    if c * 4 > usable {
        return Err(Error::Limit(format!(
            "a row of {classes} classes is larger than a storage binding ({} bytes)",
            caps.max_binding
        )));
    }
    let mut passes = Vec::new();
    let k_max = (usable / (c * 4).max(4))
        .min(usable / 4)
        .min(caps.per_dispatch((c + 1) * WORK_UNIT))
        .max(1);
    let mut r0 = 0;
    while r0 < rows {
        let k = k_max.min(rows - r0);
        let (lw, loff) = window_of(
            r0 * c * entry,
            (k * c * entry).max(4),
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
                Bind {
                    src: Src::Input(1),
                    window: Some(tw),
                },
                if aux {
                    Bind::whole(Src::Aux)
                } else {
                    Bind::dummy()
                },
                out,
            ],
        });
        r0 += k;
    }
    Ok(passes)
}

/// The rows' label-smoothing sums Σ_c w_c (−log_softmax_c) from the logits (Input(0), entries
/// of `format`) and the parts at aux word `parts_off`, into aux words `smooth_off..+rows`:
/// per-chunk partials in scratch 0, then the pairwise levels. Returns the passes and the
/// scratch they need.
pub(crate) fn smooth_sum_passes(
    rows: u64,
    classes: u64,
    mode: u32,
    parts_off: u64,
    smooth_off: u64,
    format: InputFormat,
    caps: &Caps,
) -> Result<(Vec<LlPass>, [u64; 2]), Error> {
    let u = |v: u64, what: &str| crate::engine::geometry::u32_of(v, what);
    let base = LlParams {
        mode,
        b_off: u(parts_off, "rows")?,
        c_off: 0,
        ..LlParams::default()
    };
    let weighted = mode & MODE_WEIGHTED != 0;
    let mut passes = elementwise_passes(
        key_reading("elementwise", OP_SMOOTH, 1, format),
        base,
        rows,
        classes,
        [
            None,
            Some(Bind::whole(Src::Aux)),
            Some(if weighted {
                Bind::whole(Src::Aux)
            } else {
                Bind::dummy()
            }),
            Some(Bind::whole(Src::Scratch(0))),
        ],
        [Src::Input(0), Src::Dummy, Src::Dummy, Src::Dummy],
        caps,
    )?;
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

pub(crate) fn check_len(what: &'static str, v: &[f32], expected: usize) -> Result<(), Error> {
    if v.len() != expected {
        return Err(Error::InputLength {
            what,
            expected,
            actual: v.len(),
        });
    }
    Ok(())
}

pub(crate) fn elems(rows: usize, cols: usize) -> Result<u64, Error> {
    (rows as u64)
        .checked_mul(cols as u64)
        .filter(|&n| n <= u64::from(u32::MAX) * CHUNK)
        .ok_or_else(|| Error::Shape(format!("{rows} × {cols} is too large")))
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
            rows,
            classes,
            options,
            InputFormat::F32,
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
            rows,
            classes,
            options,
            InputFormat::F16,
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
        Self::categorical(gpu, Loss::NllLoss, rows, classes, options, InputFormat::F32)
    }

    /// [`LossOp::nll_loss`] of f16 log-probabilities (laid out as in
    /// [`LossOp::cross_entropy_f16`]).
    pub fn nll_loss_f16(
        gpu: &Gpu,
        rows: usize,
        classes: usize,
        options: &CrossEntropy,
    ) -> Result<LossOp, Error> {
        Self::categorical(gpu, Loss::NllLoss, rows, classes, options, InputFormat::F16)
    }

    fn categorical(
        gpu: &Gpu,
        loss: Loss,
        rows: usize,
        classes: usize,
        o: &CrossEntropy,
        format: InputFormat,
    ) -> Result<LossOp, Error> {
        let caps = Caps::of(gpu);
        let n = elems(rows, classes)?;
        let (r, c) = (rows as u64, classes as u64);
        let eps = o.label_smoothing;
        check_categorical(loss, classes, o)?;
        let weighted = o.weight.is_some();
        let smoothing = eps > 0.0;
        let nll = loss == Loss::NllLoss;
        // aux words: [weights (classes) | parts (2 per row) | smoothing sums (1 per row)]
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
        let mode = if weighted { MODE_WEIGHTED } else { 0 } | if nll { MODE_NLL } else { 0 };
        if rows > 0 && classes > 0 && !nll {
            steps.push(parts_step(
                gpu,
                Src::Input(0),
                rows,
                classes,
                parts_off,
                format,
            )?);
        }
        if smoothing && rows > 0 && classes > 0 {
            let (passes, need) =
                smooth_sum_passes(r, c, mode, parts_off, smooth_off, format, &caps)?;
            grow_scratch(&mut scratch, need);
            steps.push(Step::Ll(passes));
        }
        // The per-row losses: windows of whole rows of logits.
        let reduce = o.reduction != Reduction::None;
        let base = LlParams {
            c2_off: u(parts_off, "rows")?,
            mode,
            // 1 - label_smoothing and label_smoothing / C, rounded once from f64 as PyTorch's
            // scalar arithmetic does.
            eps: (1.0 - f64::from(eps)) as f32,
            smoothing: (f64::from(eps) / c.max(1) as f64) as f32,
            ignore,
            len_in: u(r, "rows")?,
            ..LlParams::default()
        };
        let mut passes = categorical_passes(
            r,
            c,
            base,
            reduce.then_some(Src::Scratch(0)),
            weighted || !nll,
            format,
            &caps,
        )?;
        if reduce {
            limit("per-row partial sums", r * PARTIAL_BYTES, &caps)?;
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
        steps.push(Step::Ll(passes));
        let output_len = if reduce { 1 } else { rows };
        let f16 = format == InputFormat::F16;
        let inputs = vec![
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
        ];
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
            vec![Step::Ll(passes)],
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
        let op = LossOp::categorical(self, loss, rows, classes, options, format)?;
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
