//! The one recorder: every op lowers its work to a [`Program`] of steps, each step one
//! compute pass of dispatches (or another program run on buffers of this one), and records it
//! into a caller's encoder, times it, or hands it to the blocking runner.

use super::device::{GlLock, Gpu};
use super::geometry::{Window, fold_groups};
use super::pipelines::{Layout, PipelineKey};
use crate::error::Error;

/// A buffer a pass binds: one of the caller's, or one the program owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Src {
    Input(usize),
    Output,
    /// The program's own data (weights, parameters, per-row values), bound as storage or as
    /// a uniform window.
    Aux,
    Scratch(usize),
    /// The layout's unused-binding buffer.
    Dummy,
}

/// One binding of a pass: a buffer and, optionally, a window of it.
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

    pub fn dummy() -> Bind {
        Bind::whole(Src::Dummy)
    }

    /// A window of `src`, or the dummy where there is no window.
    pub fn window(src: Src, window: Option<Window>) -> Bind {
        match window {
            Some(w) => Bind {
                src,
                window: Some(w),
            },
            None => Bind::dummy(),
        }
    }
}

/// One dispatch as a planner describes it: the pipeline, the bytes of its parameter block
/// (binding 0), its workgroup count, and bindings 1, 2, … of its module's layout.
#[derive(Clone, Debug)]
pub(crate) struct Pass {
    pub key: PipelineKey,
    pub params: Vec<u8>,
    pub groups: u64,
    pub bind: Vec<Bind>,
}

pub(crate) enum Step {
    /// Dispatches in one compute pass.
    Passes(Vec<Pass>),
    /// Another program, its inputs and output bound to buffers of this one.
    Sub(Box<Program>, Vec<Src>, Src),
}

impl Step {
    /// A step of likelihood-module passes.
    pub fn ll(passes: Vec<super::passes::LlPass>) -> Step {
        Step::Passes(passes.into_iter().map(Pass::from).collect())
    }
}

/// What a sequence of passes needs (pipelines, parameter blocks, the op's own buffers, the
/// sizes of the caller's buffers) and the machinery to record it. Declared `pub` for the sealed
/// [`super::op::Op`] trait; the module is private, so no user can name it.
pub struct Program {
    steps: Vec<Step>,
    pipelines: Vec<Vec<wgpu::ComputePipeline>>,
    params: Option<wgpu::Buffer>,
    param_stride: u64,
    aux: Option<wgpu::Buffer>,
    scratch: Vec<Option<wgpu::Buffer>>,
    /// Bytes each caller input must have.
    input_bytes: Vec<u64>,
    /// Bytes the output must have.
    output_bytes: u64,
    device: wgpu::Device,
    layouts: [Option<wgpu::BindGroupLayout>; Layout::COUNT],
    dummies: [wgpu::Buffer; 3],
    dummy_uniform: wgpu::Buffer,
    max_groups_per_dim: u32,
    gl: GlLock,
}

impl Drop for Program {
    fn drop(&mut self) {
        // Destroying a buffer is a GL call on GL: under the crate's lock. Sub-programs take it
        // themselves.
        let _gl = self.gl.guard();
        drop((
            self.params.take(),
            self.aux.take(),
            std::mem::take(&mut self.scratch),
        ));
    }
}

impl Program {
    /// Builds pipelines and buffers. `aux` is the op's own read-only data (weights, parameters)
    /// followed by `aux_extra` bytes of space kernels write; `scratch` the sizes of the scratch
    /// buffers (`Src::Scratch(i)`; 0 for none).
    pub(crate) fn new(
        gpu: &Gpu,
        steps: Vec<Step>,
        aux: Option<(Vec<u8>, u64)>,
        scratch: &[u64],
        input_bytes: Vec<u64>,
        output_bytes: u64,
    ) -> Result<Program, Error> {
        let mut pipelines = Vec::new();
        let mut blocks: Vec<&[u8]> = Vec::new();
        let mut layouts: [Option<wgpu::BindGroupLayout>; Layout::COUNT] = Default::default();
        for step in &steps {
            let mut ps = Vec::new();
            if let Step::Passes(passes) = step {
                for p in passes {
                    ps.push(gpu.pipeline(p.key)?);
                    let l = p.key.module.layout();
                    if layouts[l as usize].is_none() {
                        layouts[l as usize] = Some(gpu.layout(l)?.0.clone());
                    }
                    blocks.push(&p.params);
                }
            }
            pipelines.push(ps);
        }
        let largest = blocks.iter().map(|b| b.len() as u64).max().unwrap_or(4);
        let param_stride = largest
            .next_multiple_of(u64::from(gpu.limits.min_uniform_buffer_offset_alignment).max(4));
        let params = (!blocks.is_empty()).then(|| {
            let mut bytes = vec![0u8; blocks.len() * param_stride as usize];
            for (i, p) in blocks.iter().enumerate() {
                let at = i * param_stride as usize;
                bytes[at..at + p.len()].copy_from_slice(p);
            }
            gpu.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("logdomain params"),
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
                    label: Some("logdomain aux"),
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
                    label: Some("logdomain scratch"),
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
            layouts,
            dummies: gpu.dummies.clone(),
            dummy_uniform: gpu.dummy_uniform.clone(),
            max_groups_per_dim: gpu.limits.max_compute_workgroups_per_dimension.max(1),
            gl: gpu.gl_lock(),
        })
    }

    /// Buffers the program owns (parameters, aux, scratch), all made by `new`, sub-programs'
    /// included.
    pub(crate) fn owned_buffers(&self) -> usize {
        let subs: usize = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Sub(p, _, _) => p.owned_buffers(),
                Step::Passes(_) => 0,
            })
            .sum();
        usize::from(self.params.is_some())
            + usize::from(self.aux.is_some())
            + self.scratch.iter().filter(|b| b.is_some()).count()
            + subs
    }

    /// Dispatches one run makes.
    pub(crate) fn dispatches(&self) -> usize {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Sub(p, _, _) => p.dispatches(),
                Step::Passes(passes) => passes.len(),
            })
            .sum()
    }

    /// Pairs of timestamp queries a timed run writes: one per step.
    pub(crate) fn timed_pairs(&self) -> u32 {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Sub(p, _, _) => p.timed_pairs(),
                Step::Passes(_) => 1,
            })
            .sum()
    }

    /// Bytes input `i` must have.
    pub(crate) fn input_bytes(&self, i: usize) -> u64 {
        self.input_bytes.get(i).copied().unwrap_or(0)
    }

    /// Bytes the output must have.
    pub(crate) fn output_bytes(&self) -> u64 {
        self.output_bytes
    }

    /// Checks the caller's buffers, then returns the GPU time of the compute passes of one run,
    /// from timestamps ([`Gpu::time_passes`]).
    pub(crate) fn kernel_time(
        &self,
        gpu: &Gpu,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
    ) -> Result<Option<std::time::Duration>, Error> {
        self.check(inputs, output)?;
        if self.dispatches() == 0 {
            return Ok(gpu.has_timestamps().then_some(std::time::Duration::ZERO));
        }
        gpu.time_passes(self.timed_pairs(), |queries| {
            self.pass_records(inputs, output, Some((queries, 0)))
        })
    }

    /// Checks the caller's buffers, then records every step into `encoder` (the ops' `record`).
    pub(crate) fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.record_timed(encoder, inputs, output, None)
    }

    /// [`Program::record`], with step i writing the GPU time at the start and end of its
    /// compute pass into queries `first + 2i` and `first + 2i + 1` of the query set.
    pub(crate) fn record_timed(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
        timestamps: Option<(&wgpu::QuerySet, u32)>,
    ) -> Result<(), Error> {
        if let Some((set, first)) = timestamps {
            check_queries(set, first, self.timed_pairs())?;
        }
        self.check(inputs, output)?;
        for p in self.pass_records(inputs, output, timestamps)? {
            p.record(encoder);
        }
        Ok(())
    }

    /// Checks the caller's buffers: how many, usage, sizes, and that the output is none of the
    /// inputs.
    pub(crate) fn check(
        &self,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
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
        let one = inputs.len() == 1;
        for (i, (b, &end)) in inputs.iter().zip(&self.input_bytes).enumerate() {
            let what = if one {
                "input".into()
            } else {
                format!("input {i}")
            };
            need(b, what.clone(), end)?;
            if *b == output {
                return Err(Error::Buffer(format!(
                    "the {what} and the output must be different buffers"
                )));
            }
        }
        need(output, "output".into(), self.output_bytes)
    }

    /// The buffer behind `src`, `None` for the dummy or a buffer the program does not have.
    fn buffer<'a>(
        &'a self,
        src: Src,
        inputs: &[&'a wgpu::Buffer],
        output: &'a wgpu::Buffer,
    ) -> Option<&'a wgpu::Buffer> {
        match src {
            Src::Input(i) => inputs.get(i).copied(),
            Src::Output => Some(output),
            Src::Aux => self.aux.as_ref(),
            Src::Scratch(i) => self.scratch.get(i).and_then(|b| b.as_ref()),
            Src::Dummy => None,
        }
    }

    /// The compute passes of every step (see [`Program::record_timed`]); the buffers were
    /// checked by the caller. A step with no dispatches records nothing, except that when
    /// timing a program that dispatches at all it records an empty pass for its timestamps.
    pub(crate) fn pass_records<'q>(
        &self,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
        timestamps: Option<(&'q wgpu::QuerySet, u32)>,
    ) -> Result<Vec<PassRecord<'q>>, Error> {
        let mut records = Vec::new();
        let mut slot = 0u64;
        let mut first = timestamps.map(|(_, f)| f).unwrap_or(0);
        for (step, pipelines) in self.steps.iter().zip(&self.pipelines) {
            match step {
                Step::Sub(program, from, to) => {
                    let sub_inputs: Vec<&wgpu::Buffer> = from
                        .iter()
                        .map(|&s| self.buffer(s, inputs, output).unwrap_or(&self.dummies[0]))
                        .collect();
                    let sub_output = self.buffer(*to, inputs, output).unwrap_or(&self.dummies[1]);
                    program.check(&sub_inputs, sub_output)?;
                    let q = timestamps.map(|(set, _)| (set, first));
                    records.extend(program.pass_records(&sub_inputs, sub_output, q)?);
                    first += 2 * program.timed_pairs();
                }
                Step::Passes(passes) => {
                    let Some(params) = &self.params else {
                        first += 2;
                        continue;
                    };
                    if passes.is_empty() && timestamps.is_none() {
                        first += 2;
                        continue;
                    }
                    let dispatches = passes
                        .iter()
                        .zip(pipelines)
                        .enumerate()
                        .map(|(i, (p, pipeline))| {
                            self.dispatch(p, pipeline, params, slot + i as u64, inputs, output)
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    slot += passes.len() as u64;
                    records.push(PassRecord {
                        label: "logdomain",
                        dispatches,
                        timestamps: timestamps.map(|(set, _)| (set, first)),
                    });
                    first += 2;
                }
            }
        }
        Ok(records)
    }

    /// One dispatch of `p`, its parameters at block `slot`.
    fn dispatch(
        &self,
        p: &Pass,
        pipeline: &wgpu::ComputePipeline,
        params: &wgpu::Buffer,
        slot: u64,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
    ) -> Result<Dispatch, Error> {
        let layout_kind = p.key.module.layout();
        let Some(layout) = &self.layouts[layout_kind as usize] else {
            return Err(Error::Gpu(format!("no layout for {}", p.key.entry)));
        };
        let kinds = layout_kind.bindings();
        if p.bind.len() + 1 != kinds.len() {
            return Err(Error::Gpu(format!(
                "{} binds {} buffers; its layout has {}",
                p.key.entry,
                p.bind.len(),
                kinds.len() - 1
            )));
        }
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: params,
                offset: slot * self.param_stride,
                size: wgpu::BufferSize::new(p.params.len() as u64),
            }),
        }];
        for (j, b) in p.bind.iter().enumerate() {
            let binding = j + 1;
            let dummy = match layout_kind.dummy(binding) {
                Some(d) => &self.dummies[d],
                None => &self.dummy_uniform,
            };
            let resource = match (self.buffer(b.src, inputs, output), b.window) {
                (Some(buffer), Some(w)) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset: w.offset,
                    size: wgpu::BufferSize::new(w.size),
                }),
                (Some(buffer), None) => buffer.as_entire_binding(),
                (None, _) => dummy.as_entire_binding(),
            };
            entries.push(wgpu::BindGroupEntry {
                binding: binding as u32,
                resource,
            });
        }
        Ok(Dispatch {
            pipeline: pipeline.clone(),
            group: self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(p.key.entry),
                layout,
                entries: &entries,
            }),
            size: fold_groups(p.groups, self.max_groups_per_dim),
        })
    }
}

/// Checks that queries `first .. first + 2·pairs` exist in a timestamp query set.
pub(crate) fn check_queries(set: &wgpu::QuerySet, first: u32, pairs: u32) -> Result<(), Error> {
    if !matches!(set.ty(), wgpu::QueryType::Timestamp) {
        return Err(Error::Buffer(
            "timing needs a QueryType::Timestamp query set".into(),
        ));
    }
    let end = u64::from(first) + 2 * u64::from(pairs);
    if end > u64::from(set.count()) {
        return Err(Error::Buffer(format!(
            "queries {first}..{end} are past the query set's {}",
            set.count()
        )));
    }
    Ok(())
}

/// One compute dispatch, bound and sized: what the crate's recorders produce.
pub(crate) struct Dispatch {
    pub pipeline: wgpu::ComputePipeline,
    pub group: wgpu::BindGroup,
    /// Workgroups in x and y (`fold_groups`).
    pub size: (u32, u32),
}

/// The dispatches of one compute pass, and the timestamp queries (first, first + 1) that its
/// beginning and end write.
pub(crate) struct PassRecord<'a> {
    pub label: &'static str,
    pub dispatches: Vec<Dispatch>,
    pub timestamps: Option<(&'a wgpu::QuerySet, u32)>,
}

impl PassRecord<'_> {
    /// Records the pass into `encoder`: one compute pass, every dispatch in order.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        self.record_range(encoder, 0..self.dispatches.len());
    }

    /// Records dispatches `range` as one compute pass, with the beginning timestamp only if the
    /// range starts the pass and the end timestamp only if it ends it.
    fn record_range(&self, encoder: &mut wgpu::CommandEncoder, range: std::ops::Range<usize>) {
        let n = self.dispatches.len();
        let (begins, ends) = (range.start == 0, range.end == n);
        // wgpu rejects timestamp writes with neither index: a middle range writes none.
        let timestamp_writes =
            self.timestamps
                .filter(|_| begins || ends)
                .map(|(query_set, first)| wgpu::ComputePassTimestampWrites {
                    query_set,
                    beginning_of_pass_write_index: begins.then_some(first),
                    end_of_pass_write_index: ends.then_some(first + 1),
                });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(self.label),
            timestamp_writes,
        });
        for d in &self.dispatches[range] {
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.group, &[]);
            pass.dispatch_workgroups(d.size.0, d.size.1, 1);
        }
    }
}

impl Gpu {
    /// Submits one command buffer and waits for the device, under [`Gpu::gl_guard`].
    pub(super) fn submit_and_wait(&self, commands: wgpu::CommandBuffer) -> Result<(), Error> {
        let _gl = self.gl_guard();
        self.queue.submit([commands]);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(e.to_string()))
    }

    /// The blocking calls' way to run recorded passes. Elsewhere than on GL, records them into
    /// `encoder` (submitted later with the readback). On GL ([`Gpu::bounded_submits`]): submits
    /// what `encoder` holds, then each dispatch in a command buffer of its own, waiting for
    /// each; `encoder` is left empty for what follows.
    pub(crate) fn submit_passes(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        passes: &[PassRecord<'_>],
    ) -> Result<(), Error> {
        if !self.bounded_submits() {
            for p in passes {
                p.record(encoder);
            }
            return Ok(());
        }
        let fresh = || self.device.create_command_encoder(&Default::default());
        self.submit_and_wait(std::mem::replace(encoder, fresh()).finish())?;
        for p in passes {
            // An empty pass still writes its timestamps.
            let n = p.dispatches.len();
            for i in 0..n.max(1) {
                let mut e = fresh();
                p.record_range(&mut e, i.min(n)..(i + 1).min(n));
                self.submit_and_wait(e.finish())?;
            }
        }
        Ok(())
    }
}
