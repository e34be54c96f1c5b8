//! The one shape every encoder-level op has: [`Op`]. An op names the buffers it reads and writes,
//! records into a caller's encoder (no submit, no queue write) with or without timestamps, and
//! times itself on resident buffers, all through the one recorder ([`super::program::Program`]).

use super::device::Gpu;
use super::program::Program;
use crate::error::Error;

/// The buffers of one recording, by role: `inputs` in the order [`Op::input_names`] lists
/// them, `outputs` in the order of [`Op::output_names`] (the main output first). Every buffer
/// needs `BufferUsages::STORAGE` and must be created on the op's device; a written buffer is
/// none of the others.
#[derive(Clone, Copy, Debug)]
pub struct Io<'a> {
    /// What the op reads.
    pub inputs: &'a [&'a wgpu::Buffer],
    /// What the op writes.
    pub outputs: &'a [&'a wgpu::Buffer],
}

pub(crate) mod sealed {
    use super::{Error, Io, Program};

    /// How an op lowers to the recorder: its program, and the program's inputs and output from
    /// the caller's buffers.
    pub trait Lowered {
        fn program(&self) -> &Program;

        /// The program's buffers for `io`; by default the inputs as given and one output.
        fn bind<'a>(&self, io: Io<'a>) -> Result<(Vec<&'a wgpu::Buffer>, &'a wgpu::Buffer), Error> {
            match io.outputs {
                [output] => Ok((io.inputs.to_vec(), *output)),
                _ => Err(Error::Buffer(format!(
                    "this op writes 1 buffer, got {}",
                    io.outputs.len()
                ))),
            }
        }
    }
}

/// `Lowered` for op types whose field `program` is their whole recording and which take the
/// default binding (their inputs as given, one output).
macro_rules! lowered {
    ($($op:ty),+ $(,)?) => {
        $(impl $crate::engine::op::sealed::Lowered for $op {
            fn program(&self) -> &$crate::engine::program::Program {
                &self.program
            }
        })+
    };
}
pub(crate) use lowered;

/// An encoder-level op: every op type (`RowOp`, `LossOp`, `GmmOp`, …) implements it, beside
/// its own `record` with named buffers. Generic code (a renderer's frame graph, a benchmark)
/// records and times any op the same way.
///
/// ```no_run
/// use logdomain::{Gpu, Io, Op, RowFn, RowOp, RowsLayout, Strategy};
/// let gpu = Gpu::new()?;
/// let op = RowOp::new(&gpu, RowFn::Softmax, RowsLayout::contiguous(4, 1000), Strategy::Auto)?;
/// assert_eq!(op.input_names().len(), 1);
/// let usage = wgpu::BufferUsages::STORAGE;
/// let make = |size| gpu.device().create_buffer(&wgpu::BufferDescriptor {
///     label: None, size, usage, mapped_at_creation: false });
/// let (x, y) = (make(op.input_bytes_needed()), make(op.output_bytes_needed()));
/// let mut encoder = gpu.device().create_command_encoder(&Default::default());
/// op.record_io(&mut encoder, Io { inputs: &[&x], outputs: &[&y] })?;
/// gpu.queue().submit([encoder.finish()]);
/// # Ok::<(), logdomain::Error>(())
/// ```
pub trait Op: sealed::Lowered {
    /// What each input buffer holds, in the order [`Io::inputs`] takes them.
    fn input_names(&self) -> Vec<&'static str>;

    /// What each written buffer holds, in the order [`Io::outputs`] takes them.
    fn output_names(&self) -> Vec<&'static str> {
        vec!["output"]
    }

    /// Records the op into `encoder`: checks the buffers (count, usage, sizes, aliasing), then
    /// records its compute passes. No submit, queue write or readback.
    fn record_io(&self, encoder: &mut wgpu::CommandEncoder, io: Io<'_>) -> Result<(), Error> {
        let (inputs, output) = self.bind(io)?;
        self.program().record(encoder, &inputs, output)
    }

    /// As [`Op::record_io`], with pass `i` writing the GPU time at its start and end into
    /// queries `first + 2i` and `first + 2i + 1` of `query_set` (a `QueryType::Timestamp` set,
    /// which needs `Features::TIMESTAMP_QUERY`); [`Op::timed_passes`] says how many.
    fn record_io_timed(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        io: Io<'_>,
        query_set: &wgpu::QuerySet,
        first: u32,
    ) -> Result<(), Error> {
        let (inputs, output) = self.bind(io)?;
        self.program()
            .record_timed(encoder, &inputs, output, Some((query_set, first)))
    }

    /// The number of compute passes [`Op::record_io_timed`] writes timestamps for.
    fn timed_passes(&self) -> u32 {
        self.program().timed_pairs()
    }

    /// Runs the op once on resident buffers and returns the GPU time of its compute passes,
    /// from timestamps; `None` where the device lacks `Features::TIMESTAMP_QUERY`. Waits for
    /// the GPU.
    fn time_io(&self, gpu: &Gpu, io: Io<'_>) -> Result<Option<std::time::Duration>, Error> {
        let (inputs, output) = self.bind(io)?;
        self.program().kernel_time(gpu, &inputs, output)
    }
}
