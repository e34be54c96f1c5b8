//! Masks, as JAX's `where=`, for the log-sum-exp family: `logsumexp_masked`,
//! `softmax_masked`, `log_softmax_masked`. A masked entry is absent — whatever it holds, NaN and
//! inf included — its softmax is 0 and its log_softmax −inf; a fully masked row gives
//! log-sum-exp −inf, softmax all 0 and log_softmax all −inf (not NaN: the attention-padding
//! case). An unmasked NaN still makes its row's unmasked entries NaN, as without a mask.
//!
//! [`MaskedRowOp`] is the encoder-level op, with the mask packed 32 entries a `u32` word
//! ([`pack_mask`]). It runs three passes: the masked entries replaced by −inf into the op's own
//! buffer, the row function by the log-sum-exp family's strategies, and (softmax, log_softmax)
//! the masked entries' outputs set — one read of the input and one extra write and read of a
//! `rows × cols` buffer more than the unmasked op. Kernels: `shaders/masked.wgsl`; CPU mirror:
//! [`crate::reference::masked`].

use crate::codes::{OP_MASK_APPLY, OP_MASK_LSM, OP_MASK_SOFTMAX};
use crate::engine::device::Gpu;
use crate::engine::geometry::Caps;
use crate::engine::geometry::{check_len, elems};
use crate::engine::op::Op;
use crate::engine::passes::{elementwise_passes, key, limit};
use crate::engine::program::{Bind, Program, Src, Step};
use crate::engine::shaders::LlParams;
use crate::error::Error;
use crate::logsumexp::{RowFn, RowOp, RowsLayout, Strategy};

pub use crate::engine::geometry::pack_mask;

/// An encoder-level masked log-sum-exp, softmax or log_softmax over `rows × cols`.
///
/// ```no_run
/// use logdomain::{masked::pack_mask, Gpu, MaskedRowOp, RowFn};
/// let gpu = Gpu::new()?;
/// let op = MaskedRowOp::new(&gpu, RowFn::Softmax, 2, 3)?;
/// assert_eq!(op.output_len(), 6);
/// assert_eq!(pack_mask(&[true, false, true]), vec![0b101]);
/// # Ok::<(), logdomain::Error>(())
/// ```
pub struct MaskedRowOp {
    func: RowFn,
    output_len: usize,
    program: Program,
}

impl MaskedRowOp {
    /// Prepares `func` (`Logsumexp`, `Softmax` or `LogSoftmax`) for `rows × cols`.
    pub fn new(gpu: &Gpu, func: RowFn, rows: usize, cols: usize) -> Result<MaskedRowOp, Error> {
        let fix = match func {
            RowFn::Logsumexp => None,
            RowFn::Softmax => Some(OP_MASK_SOFTMAX),
            RowFn::LogSoftmax => Some(OP_MASK_LSM),
            RowFn::LogsumexpParts => {
                return Err(Error::Unsupported(
                    "masks are for logsumexp, softmax and log_softmax".into(),
                ));
            }
        };
        let caps = Caps::of(gpu);
        let n = elems(rows, cols)?;
        let (r, c) = (rows as u64, cols as u64);
        let mask_bytes = n.div_ceil(32) * 4;
        limit("the packed mask", mask_bytes, &caps)?;
        let mask = Some(Bind::whole(Src::Input(1)));
        let dummy = Some(Bind::whole(Src::Dummy));
        let mut steps = vec![Step::ll(elementwise_passes(
            key("elementwise", OP_MASK_APPLY, 0),
            LlParams::default(),
            r,
            c,
            [None, mask, dummy, None],
            [Src::Input(0), Src::Dummy, Src::Dummy, Src::Scratch(0)],
            &caps,
        )?)];
        if n > 0 {
            steps.push(
                RowOp::new(
                    gpu,
                    func,
                    RowsLayout::contiguous(rows, cols),
                    Strategy::Auto,
                )?
                .into_step(Src::Scratch(0), Src::Output),
            );
        }
        if let Some(op) = fix {
            steps.push(Step::ll(elementwise_passes(
                key("elementwise", op, 0),
                LlParams::default(),
                r,
                c,
                [None, mask, dummy, None],
                [Src::Scratch(0), Src::Dummy, Src::Dummy, Src::Output],
                &caps,
            )?));
        }
        let output_len = func.output_len(rows, cols);
        let program = Program::new(
            gpu,
            steps,
            None,
            &[n * 4],
            vec![n * 4, mask_bytes],
            output_len as u64 * 4,
        )?;
        Ok(MaskedRowOp {
            func,
            output_len,
            program,
        })
    }

    /// The row function.
    pub fn function(&self) -> RowFn {
        self.func
    }

    /// Number of f32 values written: `rows` (log-sum-exp) or `rows × cols`.
    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// Records the op: reads `x` (f32, `rows × cols` from byte 0) and `mask` (packed by
    /// [`pack_mask`], from byte 0), writes the output at the start of `output`. No submit, queue
    /// write or readback.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        x: &wgpu::Buffer,
        mask: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.program.record(encoder, &[x, mask], output)
    }
}

impl Gpu {
    fn run_masked(
        &self,
        func: RowFn,
        x: &[f32],
        where_: &[bool],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        let n = elems(rows, cols)? as usize;
        check_len("x", x, n)?;
        if where_.len() != n {
            return Err(Error::InputLength {
                what: "where_",
                expected: n,
                actual: where_.len(),
            });
        }
        let op = MaskedRowOp::new(self, func, rows, cols)?;
        let words = pack_mask(where_);
        self.run_program(
            &op.program,
            &[bytemuck::cast_slice(x), bytemuck::cast_slice(&words)],
            op.output_len,
        )
    }

    /// Row-wise log-sum-exp over the entries where `where_` is true (JAX's `where=`): −inf for
    /// a fully masked row.
    ///
    /// ```no_run
    /// let gpu = logdomain::Gpu::new()?;
    /// let lse = gpu.logsumexp_masked(&[0.0, f32::NAN, 0.0], &[true, false, true], 1, 3)?;
    /// assert!((lse[0] - 2f32.ln()).abs() < 1e-6);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn logsumexp_masked(
        &self,
        x: &[f32],
        where_: &[bool],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        self.run_masked(RowFn::Logsumexp, x, where_, rows, cols)
    }

    /// Row-wise softmax over the entries where `where_` is true: 0 at masked entries, all 0 in
    /// a fully masked row.
    pub fn softmax_masked(
        &self,
        x: &[f32],
        where_: &[bool],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        self.run_masked(RowFn::Softmax, x, where_, rows, cols)
    }

    /// Row-wise log_softmax over the entries where `where_` is true: −inf at masked entries,
    /// all −inf in a fully masked row.
    pub fn log_softmax_masked(
        &self,
        x: &[f32],
        where_: &[bool],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        self.run_masked(RowFn::LogSoftmax, x, where_, rows, cols)
    }
}

crate::engine::op::lowered!(MaskedRowOp);

impl Op for MaskedRowOp {
    fn input_names(&self) -> Vec<&'static str> {
        vec!["x (f32, rows × cols)", "mask (u32 per entry)"]
    }
}
