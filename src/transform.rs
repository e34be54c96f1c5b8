//! Log transforms of a caller's data on the GPU, and the mean of logs: for visualising data
//! whose scale is exponential (`log1p` of normalised counts, as in the life sciences; `log10`
//! of densities) and for the log-average `exp(mean(ln(δ + x)))` that real-time renderers
//! expose by; and NumPy's `logaddexp` of two arrays. The data may sit anywhere in the caller's buffer, rows apart by a stride — as a
//! texture copied into a buffer with padded rows is ([`DataLayout::texture_copy`]).
//!
//! [`LogOp`] records into the caller's encoder and owns its buffers (parameters, scratch),
//! made once: recording it every frame allocates no buffer. Kernels: `shaders/transform.wgsl`;
//! CPU mirror: [`crate::reference::transform`].

use crate::codes::{
    FINISH_MEAN_COUNT, OP_LOG_ADDEXP, OP_LOG_DELTA, OP_LOG_LN, OP_LOG_LOG1P, OP_LOG_LOG10,
};
use crate::engine::device::Gpu;
use crate::engine::geometry::Caps;
use crate::engine::geometry::{check_len, elems};
use crate::engine::op::Op;
use crate::engine::passes::{CHUNK, elementwise_passes_at, key, reduce_passes};
use crate::engine::program::{Bind, Program, Src, Step};
use crate::engine::shaders::LlParams;
use crate::error::Error;
pub use crate::reference::transform::LogFn;

/// Where `rows × cols` f32 values sit in a caller's buffer: row `r` starts at byte
/// `offset_bytes + 4·r·row_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataLayout {
    /// Byte offset of the first value (a multiple of 4; any such offset works: the op binds at
    /// the device's `min_storage_buffer_offset_alignment` below it).
    pub offset_bytes: u64,
    pub rows: usize,
    pub cols: usize,
    /// Elements from the start of one row to the next (≥ `cols`).
    pub row_stride: usize,
}

impl DataLayout {
    /// Packed rows from byte 0.
    pub fn contiguous(rows: usize, cols: usize) -> DataLayout {
        DataLayout {
            offset_bytes: 0,
            rows,
            cols,
            row_stride: cols,
        }
    }

    /// A `width × height` single-channel f32 texture (`R32Float`) copied with
    /// `copy_texture_to_buffer` at `bytes_per_row` (a multiple of 256, so rows are padded).
    pub fn texture_copy(width: u32, height: u32, bytes_per_row: u32) -> DataLayout {
        DataLayout {
            offset_bytes: 0,
            rows: height as usize,
            cols: width as usize,
            row_stride: (bytes_per_row / 4) as usize,
        }
    }

    /// Bytes from the start of the buffer to the end of the last value.
    pub fn extent_bytes(&self) -> u64 {
        if self.rows == 0 || self.cols == 0 {
            return self.offset_bytes;
        }
        self.offset_bytes + ((self.rows as u64 - 1) * self.row_stride as u64 + self.cols as u64) * 4
    }

    fn check(&self) -> Result<(), Error> {
        if !self.offset_bytes.is_multiple_of(4) {
            return Err(Error::Buffer(format!(
                "offset_bytes {} is not a multiple of 4 (f32 values)",
                self.offset_bytes
            )));
        }
        if self.row_stride < self.cols {
            return Err(Error::Shape(format!(
                "row_stride {} is shorter than a row of {} values",
                self.row_stride, self.cols
            )));
        }
        elems(self.rows, self.cols).map(drop)
    }
}

/// What a [`LogOp`] computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LogOpKind {
    /// The transform of every value, written in the input's layout.
    Transform(LogFn),
    /// One value: the mean over every value of `ln(δ + x)`.
    MeanLog { delta: f32 },
    /// `ln(e^x1 + e^x2)` of two inputs of the same layout, element by element, written in that
    /// layout: NumPy's `logaddexp`.
    LogAddExp,
}

/// An encoder-level log transform or mean of logs over a caller's buffer.
///
/// ```no_run
/// use logdomain::{DataLayout, Gpu, LogOp};
/// let gpu = Gpu::new()?;
/// // The log-average luminance of a 640 × 480 R32Float texture copied at 2,560 bytes a row.
/// let op = LogOp::mean_log(&gpu, 1e-4, DataLayout::texture_copy(640, 480, 2560))?;
/// assert_eq!(op.output_len(), 1);
/// # Ok::<(), logdomain::Error>(())
/// ```
pub struct LogOp {
    kind: LogOpKind,
    layout: DataLayout,
    output_len: usize,
    program: Program,
}

impl LogOp {
    /// `f` of every value; the output gets the same layout as the input.
    pub fn transform(gpu: &Gpu, f: LogFn, layout: DataLayout) -> Result<LogOp, Error> {
        let op = match f {
            LogFn::Ln => OP_LOG_LN,
            LogFn::Log10 => OP_LOG_LOG10,
            LogFn::Log1p => OP_LOG_LOG1P,
        };
        Self::build(gpu, LogOpKind::Transform(f), op, 0.0, layout)
    }

    /// `ln(e^x1 + e^x2)` of every pair of values of two inputs with the same layout (NumPy's
    /// `logaddexp`, its special values included: NaN if either is NaN, +inf if either is +inf,
    /// −inf only if both are); the output gets the same layout. Computed as the log-sum-exp
    /// of the pair, `max + log1p(exp(min − max))`. Record it through [`Op::record_io`] with
    /// the inputs `[x1, x2]`.
    pub fn logaddexp(gpu: &Gpu, layout: DataLayout) -> Result<LogOp, Error> {
        Self::build(gpu, LogOpKind::LogAddExp, OP_LOG_ADDEXP, 0.0, layout)
    }

    /// The mean of `ln(δ + x)` over every value (the log of the geometric mean of `δ + x`): one
    /// f32 at byte 0 of the output. `δ` (finite, ≥ 0) keeps zeros from sending it to −inf.
    pub fn mean_log(gpu: &Gpu, delta: f32, layout: DataLayout) -> Result<LogOp, Error> {
        if !(delta.is_finite() && delta >= 0.0) {
            return Err(Error::Value(format!(
                "delta is {delta}; it must be finite and ≥ 0"
            )));
        }
        Self::build(
            gpu,
            LogOpKind::MeanLog { delta },
            OP_LOG_DELTA,
            delta,
            layout,
        )
    }

    fn build(
        gpu: &Gpu,
        kind: LogOpKind,
        op: u32,
        delta: f32,
        layout: DataLayout,
    ) -> Result<LogOp, Error> {
        layout.check()?;
        let caps = Caps::of(gpu);
        let (rows, cols) = (layout.rows as u64, layout.cols as u64);
        let n = rows * cols;
        let reduce = matches!(kind, LogOpKind::MeanLog { .. });
        let pair = kind == LogOpKind::LogAddExp;
        let base = LlParams {
            eps: delta,
            ..LlParams::default()
        };
        let mut passes = elementwise_passes_at(
            key("elementwise", op, u32::from(reduce)),
            base,
            rows,
            cols,
            layout.row_stride as u64,
            layout.offset_bytes,
            [
                None,
                if pair {
                    None
                } else {
                    Some(Bind::whole(Src::Dummy))
                },
                Some(Bind::whole(Src::Dummy)),
                if reduce {
                    Some(Bind::whole(Src::Scratch(0)))
                } else {
                    None
                },
            ],
            [Src::Input(0), Src::Input(1), Src::Dummy, Src::Output],
            &caps,
        )?;
        let mut scratch = [0u64; 2];
        if reduce {
            let chunks = if n == 0 {
                0
            } else {
                cols.div_ceil(CHUNK) * rows
            };
            let (more, need) = reduce_passes(
                1,
                chunks,
                FINISH_MEAN_COUNT,
                n as f32,
                Src::Output,
                0,
                &caps,
            )?;
            passes.extend(more);
            scratch = need;
        }
        let (output_len, output_bytes) = if reduce {
            (1, 4)
        } else {
            (n as usize, layout.extent_bytes())
        };
        let program = Program::new(
            gpu,
            vec![Step::ll(passes)],
            None,
            &scratch,
            vec![layout.extent_bytes(); if pair { 2 } else { 1 }],
            output_bytes,
        )?;
        Ok(LogOp {
            kind,
            layout,
            output_len,
            program,
        })
    }

    /// What the op computes.
    pub fn kind(&self) -> LogOpKind {
        self.kind
    }

    /// Where the op reads (and, for a transform, writes) the values.
    pub fn layout(&self) -> DataLayout {
        self.layout
    }

    /// Number of f32 values written: every value's transform, or 1.
    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// How many buffers the op owns (parameters and scratch), all made when it was built:
    /// recording allocates no buffer.
    pub fn owned_buffers(&self) -> usize {
        self.program.owned_buffers()
    }

    /// Records the op: reads `input` at the layout, and writes the transform at the same layout
    /// in `output`, or the mean of logs at byte 0 of `output`. No submit, queue write or
    /// readback.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.program.record(encoder, &[input], output)
    }
}

impl Gpu {
    /// `f` of every value of `x`.
    ///
    /// ```no_run
    /// use logdomain::{Gpu, LogFn};
    /// let gpu = Gpu::new()?;
    /// let y = gpu.log_transform(&[1e-10, 0.0, 999.0], LogFn::Log1p)?;
    /// assert_eq!(y[1], 0.0);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn log_transform(&self, x: &[f32], f: LogFn) -> Result<Vec<f32>, Error> {
        let op = LogOp::transform(self, f, DataLayout::contiguous(1, x.len()))?;
        self.run_program(&op.program, &[bytemuck::cast_slice(x)], op.output_len)
    }

    /// NumPy's `logaddexp(x1, x2)`: `ln(e^x1 + e^x2)` element by element, without overflow
    /// (see [`LogOp::logaddexp`]). The inputs have the same length (no broadcasting).
    ///
    /// ```no_run
    /// let gpu = logdomain::Gpu::new()?;
    /// let y = gpu.logaddexp(&[1000.0, f32::NEG_INFINITY, 0.0], &[1000.0, 3.0, f32::INFINITY])?;
    /// assert_eq!(y[1..], [3.0, f32::INFINITY]);
    /// assert!((y[0] - (1000.0 + std::f32::consts::LN_2)).abs() < 1e-3);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn logaddexp(&self, x1: &[f32], x2: &[f32]) -> Result<Vec<f32>, Error> {
        check_len("x2", x2, x1.len())?;
        let op = LogOp::logaddexp(self, DataLayout::contiguous(1, x1.len()))?;
        let inputs: [&[u8]; 2] = [bytemuck::cast_slice(x1), bytemuck::cast_slice(x2)];
        self.run_program(&op.program, &inputs, op.output_len)
    }

    /// The mean of `ln(δ + x)` over `x` (NaN for an empty `x`).
    pub fn mean_log(&self, x: &[f32], delta: f32) -> Result<f32, Error> {
        let op = LogOp::mean_log(self, delta, DataLayout::contiguous(1, x.len()))?;
        let v = self.run_program(&op.program, &[bytemuck::cast_slice(x)], 1)?;
        Ok(v[0])
    }
}

crate::engine::op::lowered!(LogOp);

impl Op for LogOp {
    fn input_names(&self) -> Vec<&'static str> {
        match self.kind {
            LogOpKind::LogAddExp => vec!["x1 (f32)", "x2 (f32)"],
            _ => vec!["x (f32)"],
        }
    }
}
