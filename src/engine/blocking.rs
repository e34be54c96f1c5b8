//! The one blocking runner (upload, sentinel fill where asked, run, read back), the
//! timing path, and the host values of an op's main input.

use super::device::{Gpu, lock};
use super::geometry::InputFormat;
use super::gl_direct::GlBuffer;
use super::host;
use super::program::{PassRecord, Program};
use super::shaders;
use crate::error::Error;

/// Reused buffers of the blocking calls.
#[derive(Default)]
pub(crate) struct Blocking {
    readback: Option<wgpu::Buffer>,
    /// Reused input buffers, extra output buffers and the output buffer.
    inputs: Vec<Option<wgpu::Buffer>>,
    extra: Vec<Option<wgpu::Buffer>>,
    output: Option<wgpu::Buffer>,
    /// The same on GL, written and read by GL calls ([`super::gl_direct`]).
    gl_inputs: Vec<Option<GlBuffer>>,
    gl_extra: Vec<Option<GlBuffer>>,
    gl_output: Option<GlBuffer>,
    /// Timestamp queries and the buffer they resolve into, for `time_passes`.
    timestamps: Option<(wgpu::QuerySet, wgpu::Buffer)>,
}

impl Gpu {
    /// Copies `bytes` bytes of f32 from the start of `buffer` (which needs `COPY_SRC`) to the
    /// host, through a reused staging buffer, and waits.
    pub fn read_f32(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>, Error> {
        let mut blocking = lock(&self.blocking);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.read_back(&mut blocking, &mut encoder, buffer, bytes)
    }

    /// The one blocking runner: uploads host inputs into reused buffers, fills the output
    /// with the sentinel under [`Gpu::fill_outputs_with_sentinel`], runs `program`
    /// ([`Gpu::submit_passes`]) and reads its `out_len` 4-byte words back.
    pub(crate) fn run_program(
        &self,
        program: &Program,
        inputs: &[&[u8]],
        out_len: usize,
    ) -> Result<Vec<f32>, Error> {
        Ok(self.run_program_with(program, inputs, out_len, &[])?.0)
    }

    /// `run_program` for ops with more outputs: `extra[i]` f32 values are written by the
    /// program into its input `inputs.len() + i`, and read back after the main output.
    pub(crate) fn run_program_with(
        &self,
        program: &Program,
        inputs: &[&[u8]],
        out_len: usize,
        extra: &[usize],
    ) -> Result<(Vec<f32>, Vec<Vec<f32>>), Error> {
        self.run_program_filled(program, inputs, out_len, extra, shaders::SENTINEL_BITS)
    }

    /// `run_program_with`, the outputs filled with the word `sentinel` under
    /// [`Gpu::fill_outputs_with_sentinel`] (two f16 sentinels for an f16 output).
    pub(crate) fn run_program_filled(
        &self,
        program: &Program,
        inputs: &[&[u8]],
        out_len: usize,
        extra: &[usize],
        sentinel: u32,
    ) -> Result<(Vec<f32>, Vec<Vec<f32>>), Error> {
        let out_bytes = out_len as u64 * 4;
        if self.gl_direct()
            && inputs
                .iter()
                .map(|b| b.len() as u64)
                .chain(extra.iter().map(|&n| n as u64 * 4))
                .chain([out_bytes])
                .all(|n| self.gl_fits(n))
        {
            return self.run_program_gl(program, inputs, out_len, extra, sentinel);
        }
        let mut blocking = lock(&self.blocking);
        let slots = inputs.len() + extra.len();
        if blocking.inputs.len() < inputs.len() {
            blocking.inputs.resize(inputs.len(), None);
        }
        if blocking.extra.len() < extra.len() {
            blocking.extra.resize(extra.len(), None);
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        // On unified memory the kernels' buffers are mapped: the inputs written and the outputs
        // read in place, one copy each way instead of three (host → staging → buffer, buffer →
        // staging → host), and no staging buffer allocated per call.
        let mapped = self.maps_primary();
        let (in_usage, out_usage) = if mapped {
            (
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::MAP_WRITE,
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::MAP_READ
                    | wgpu::BufferUsages::COPY_DST,
            )
        } else {
            let usage = wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC;
            (usage, usage)
        };
        let mut buffers = Vec::with_capacity(slots);
        for (i, bytes) in inputs.iter().enumerate() {
            let b = self.reuse(
                &mut blocking.inputs[i],
                (bytes.len() as u64).max(4),
                in_usage,
                "logdomain input",
            )?;
            if !bytes.is_empty() {
                if mapped {
                    self.write_mapped(&b, bytes)?;
                } else {
                    self.write_buffer(&b, 0, bytes);
                }
            }
            buffers.push(b);
        }
        let mut encoder = self.device.create_command_encoder(&Default::default());
        // The buffers are reused and hold earlier results. Under `fill_outputs_with_sentinel`
        // (every test suite) the outputs are filled with the sentinel first, so that an entry a
        // kernel failed to write fails the test; otherwise they are left as they are, since
        // every kernel writes every entry of its output (which those tests prove), and a memset
        // of a 64 MiB output would cost a few ms of a 50 ms call.
        let sentinel_fill = self
            .sentinel_fill
            .load(std::sync::atomic::Ordering::Relaxed);
        let fill = |b: &wgpu::Buffer, len: usize| {
            if len > 0 && sentinel_fill {
                let fill = vec![sentinel; len];
                self.write_buffer(b, 0, bytemuck::cast_slice(&fill));
            }
        };
        for (i, &len) in extra.iter().enumerate() {
            let b = self.reuse(
                &mut blocking.extra[i],
                (len as u64 * 4).max(4),
                out_usage,
                "logdomain extra output",
            )?;
            fill(&b, len);
            buffers.push(b);
        }
        let output = self.reuse(
            &mut blocking.output,
            out_bytes.max(4),
            out_usage,
            "logdomain output",
        )?;
        fill(&output, out_len);
        let refs: Vec<&wgpu::Buffer> = buffers.iter().collect();
        self.submit_program(&mut encoder, program, &refs, &output)?;
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(e.to_string()));
        }
        if mapped {
            let encoder = std::mem::replace(
                &mut encoder,
                self.device.create_command_encoder(&Default::default()),
            );
            {
                let _gl = self.gl_guard();
                self.queue.submit([encoder.finish()]);
            }
            let main = self.read_mapped(&output, out_bytes)?;
            let mut more = Vec::with_capacity(extra.len());
            for (b, &len) in buffers[inputs.len()..].iter().zip(extra) {
                more.push(self.read_mapped(b, len as u64 * 4)?);
            }
            return Ok((main, more));
        }
        let main = self.read_back(&mut blocking, &mut encoder, &output, out_bytes)?;
        let mut more = Vec::with_capacity(extra.len());
        for (b, &len) in buffers[inputs.len()..].iter().zip(extra) {
            more.push(self.read_back(&mut blocking, &mut encoder, b, len as u64 * 4)?);
        }
        Ok((main, more))
    }

    /// `run_program_filled` on GL: the inputs written into and the outputs read out of the
    /// kernels' own buffers by GL calls (`super::gl_direct`), one copy each way.
    fn run_program_gl(
        &self,
        program: &Program,
        inputs: &[&[u8]],
        out_len: usize,
        extra: &[usize],
        sentinel: u32,
    ) -> Result<(Vec<f32>, Vec<Vec<f32>>), Error> {
        let mut blocking = lock(&self.blocking);
        if blocking.gl_inputs.len() < inputs.len() {
            blocking.gl_inputs.resize(inputs.len(), None);
        }
        if blocking.gl_extra.len() < extra.len() {
            blocking.gl_extra.resize(extra.len(), None);
        }
        let sentinel_fill = self
            .sentinel_fill
            .load(std::sync::atomic::Ordering::Relaxed);
        let fill = |b: &GlBuffer, len: usize| {
            if len > 0 && sentinel_fill {
                self.gl_write(b, bytemuck::cast_slice(&vec![sentinel; len]))
            } else {
                Ok(())
            }
        };
        let mut buffers = Vec::with_capacity(inputs.len() + extra.len());
        for (i, bytes) in inputs.iter().enumerate() {
            let b = self.reuse_gl(
                &mut blocking.gl_inputs[i],
                bytes.len() as u64,
                "logdomain input",
            )?;
            self.gl_write(&b, bytes)?;
            buffers.push(b);
        }
        for (i, &len) in extra.iter().enumerate() {
            let b = self.reuse_gl(
                &mut blocking.gl_extra[i],
                len as u64 * 4,
                "logdomain extra output",
            )?;
            fill(&b, len)?;
            buffers.push(b);
        }
        let out_bytes = out_len as u64 * 4;
        let output = self.reuse_gl(&mut blocking.gl_output, out_bytes, "logdomain output")?;
        fill(&output, out_len)?;
        let refs: Vec<&wgpu::Buffer> = buffers.iter().map(|b| &b.buffer).collect();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.submit_program(&mut encoder, program, &refs, &output.buffer)?;
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(e.to_string()));
        }
        {
            let _gl = self.gl_guard();
            self.queue.submit([encoder.finish()]);
        }
        let main = self.gl_read(&output, out_bytes)?;
        let mut more = Vec::with_capacity(extra.len());
        for (b, &len) in buffers[inputs.len()..].iter().zip(extra) {
            more.push(self.gl_read(b, len as u64 * 4)?);
        }
        Ok((main, more))
    }

    /// [`Gpu::reuse`] for [`GlBuffer`]s.
    fn reuse_gl(
        &self,
        slot: &mut Option<GlBuffer>,
        bytes: u64,
        label: &str,
    ) -> Result<GlBuffer, Error> {
        let bytes = bytes.max(4);
        if let Some(b) = slot.as_ref().filter(|b| b.buffer.size() >= bytes) {
            return Ok(b.clone());
        }
        let size = self.grown(bytes, label)?;
        let b = {
            let _gl = self.gl_guard();
            self.new_gl_buffer(size, label)?
        }
        .ok_or_else(|| Error::Gpu(format!("the {label} cannot be a GL buffer")))?;
        self.drop_guarded(slot.replace(b.clone()));
        Ok(b)
    }

    /// Whether a reused buffer for `bytes` bytes can be a [`GlBuffer`] (GL sizes are `i32`).
    fn gl_fits(&self, bytes: u64) -> bool {
        self.grown(bytes.max(4), "")
            .is_ok_and(|size| i32::try_from(size).is_ok())
    }

    /// The size of a reused buffer for `bytes` bytes: the next power of two (at least 256), at
    /// most `max_buffer_size`; an error past it.
    fn grown(&self, bytes: u64, label: &str) -> Result<u64, Error> {
        let max = self.limits.max_buffer_size;
        if bytes > max {
            return Err(Error::Limit(format!(
                "{label} needs {bytes} bytes; max_buffer_size is {max}"
            )));
        }
        Ok(bytes
            .max(256)
            .checked_next_power_of_two()
            .unwrap_or(bytes)
            .min(max))
    }

    /// Runs `program` on resident input buffers into a fresh output of `out_len` values and
    /// reads them back (the fit's E-steps, on points uploaded once).
    pub(crate) fn run_resident(
        &self,
        program: &Program,
        inputs: &[&wgpu::Buffer],
        out_len: usize,
    ) -> Result<Vec<f32>, Error> {
        let output = self.create_buffer(&wgpu::BufferDescriptor {
            label: Some("logdomain resident output"),
            size: (out_len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut blocking = lock(&self.blocking);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.submit_program(&mut encoder, program, inputs, &output)?;
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(e.to_string()));
        }
        let out = self.read_back(&mut blocking, &mut encoder, &output, out_len as u64 * 4);
        self.drop_guarded(output);
        out
    }

    /// Checks the buffers, then runs every pass of `program` ([`Gpu::submit_passes`]).
    fn submit_program(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        program: &Program,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        program.check(inputs, output)?;
        let passes = program.pass_records(inputs, output, None)?;
        self.submit_passes(encoder, &passes)
    }

    /// The one readback path of the crate: submits `encoder` with a copy of the first `bytes`
    /// bytes of `buffer` into the reused staging buffer, waits, and returns them as `T`s.
    fn read_back<T: bytemuck::Pod>(
        &self,
        blocking: &mut Blocking,
        encoder: &mut wgpu::CommandEncoder,
        buffer: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<Vec<T>, Error> {
        let size = std::mem::size_of::<T>() as u64;
        if !bytes.is_multiple_of(size.max(4)) || bytes > buffer.size() {
            return Err(Error::Buffer(format!(
                "cannot read {bytes} bytes of {} from a buffer of {} bytes",
                std::any::type_name::<T>(),
                buffer.size()
            )));
        }
        if !buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
            return Err(Error::Buffer(
                "reading back needs BufferUsages::COPY_SRC".into(),
            ));
        }
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.reuse(
            &mut blocking.readback,
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            "logdomain readback",
        )?;
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let encoder = std::mem::replace(
            encoder,
            self.device.create_command_encoder(&Default::default()),
        );
        // Submit, map, wait, copy out and unmap: GL calls, one section under the crate's lock.
        let _gl = self.gl_guard();
        self.queue.submit([encoder.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(e.to_string()));
        }
        self.mapped_copy(&staging, bytes)
    }

    /// Maps `buffer` (`MAP_WRITE`, idle) and copies `bytes` to its start.
    fn write_mapped(&self, buffer: &wgpu::Buffer, bytes: &[u8]) -> Result<(), Error> {
        let len = bytes.len() as u64;
        let _gl = self.gl_guard();
        self.map_and_wait(buffer, wgpu::MapMode::Write, len)?;
        let copied = buffer
            .get_mapped_range_mut(..len)
            .map(|mut view| view.copy_from_slice(bytes))
            .map_err(|e| Error::Gpu(format!("mapped range: {e}")));
        // Unmapped whatever happened, so that the reused buffer can be mapped again.
        buffer.unmap();
        copied
    }

    /// Waits for the work submitted so far, maps `buffer` (`MAP_READ`) and copies its first
    /// `bytes` bytes out.
    fn read_mapped(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>, Error> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let _gl = self.gl_guard();
        self.mapped_copy(buffer, bytes)
    }

    /// Maps the first `bytes` bytes of `buffer` (`MAP_READ`) once the work submitted so far is
    /// done, copies them out as `T`s and unmaps it whatever happened. Called under the GL guard.
    fn mapped_copy<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<Vec<T>, Error> {
        self.map_and_wait(buffer, wgpu::MapMode::Read, bytes)?;
        let out = buffer
            .get_mapped_range(..bytes)
            .map(|view| host::collect(&view))
            .map_err(|e| Error::Gpu(format!("mapped range: {e}")));
        buffer.unmap();
        out
    }

    /// Maps the first `bytes` bytes of `buffer` and waits until the mapping (and every earlier
    /// submission) is done. Called under the GL guard.
    fn map_and_wait(
        &self,
        buffer: &wgpu::Buffer,
        mode: wgpu::MapMode,
        bytes: u64,
    ) -> Result<(), Error> {
        let (tx, rx) = std::sync::mpsc::channel();
        buffer.map_async(mode, ..bytes, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        rx.recv()
            .map_err(|e| Error::Gpu(e.to_string()))?
            .map_err(|e| Error::Gpu(format!("mapping a buffer: {e}")))
    }

    /// A reused buffer of at least `bytes` bytes, grown to the next power of two.
    fn reuse(
        &self,
        slot: &mut Option<wgpu::Buffer>,
        bytes: u64,
        usage: wgpu::BufferUsages,
        label: &str,
    ) -> Result<wgpu::Buffer, Error> {
        if let Some(b) = slot.as_ref().filter(|b| b.size() >= bytes) {
            return Ok(b.clone());
        }
        let size = self.grown(bytes, label)?;
        let b = self.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        });
        // The old buffer's last reference may go here: destroying it is a GL call.
        self.drop_guarded(slot.replace(b.clone()));
        Ok(b)
    }

    pub(crate) fn has_timestamps(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// The one timing path of the crate: `passes` returns compute passes that write `pairs`
    /// pairs of timestamps (begin and end of a pass, queries 2i and 2i + 1) into the given query
    /// set; this runs them ([`Gpu::submit_passes`]), waits, and returns the summed pass times,
    /// or `None` without `Features::TIMESTAMP_QUERY`. The query set and its resolve buffer are
    /// reused (grown on demand).
    pub(crate) fn time_passes(
        &self,
        pairs: u32,
        passes: impl for<'q> FnOnce(&'q wgpu::QuerySet) -> Result<Vec<PassRecord<'q>>, Error>,
    ) -> Result<Option<std::time::Duration>, Error> {
        if !self.has_timestamps() {
            return Ok(None);
        }
        let count = 2 * pairs.max(1);
        let mut blocking = lock(&self.blocking);
        if blocking
            .timestamps
            .as_ref()
            .is_some_and(|(q, _)| q.count() < count)
        {
            self.drop_guarded(blocking.timestamps.take());
        }
        let (queries, resolved) = blocking
            .timestamps
            .get_or_insert_with(|| {
                let _gl = self.gl_guard();
                let queries = self.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("logdomain timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count,
                });
                let resolved = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("logdomain timestamps"),
                    size: u64::from(count) * 8,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                (queries, resolved)
            })
            .clone();
        let mut encoder = self.device.create_command_encoder(&Default::default());
        let records = passes(&queries)?;
        self.submit_passes(&mut encoder, &records)?;
        drop(records);
        encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
        let ticks: Vec<u64> =
            self.read_back(&mut blocking, &mut encoder, &resolved, u64::from(count) * 8)?;
        let period = f64::from(self.queue.get_timestamp_period());
        let ns: f64 = ticks
            .chunks(2)
            .map(|t| t[1].saturating_sub(t[0]) as f64 * period)
            .sum();
        Ok(Some(std::time::Duration::from_nanos(ns.round() as u64)))
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Values<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
}

impl<'a> Values<'a> {
    /// The number of entries, their format, and the bytes to upload: whole 4-byte words, as
    /// kernels bind them (an odd count of f16 entries is padded with one zero entry, a copy
    /// only then).
    pub fn upload(self) -> (usize, InputFormat, std::borrow::Cow<'a, [u8]>) {
        use std::borrow::Cow;
        match self {
            Values::F32(v) => (
                v.len(),
                InputFormat::F32,
                Cow::Borrowed(bytemuck::cast_slice(v)),
            ),
            Values::F16(v) if v.len().is_multiple_of(2) => (
                v.len(),
                InputFormat::F16,
                Cow::Borrowed(bytemuck::cast_slice(v)),
            ),
            Values::F16(v) => {
                let mut words = v.to_vec();
                words.push(half::f16::ZERO);
                let bytes = bytemuck::cast_slice(&words).to_vec();
                (v.len(), InputFormat::F16, Cow::Owned(bytes))
            }
        }
    }
}
