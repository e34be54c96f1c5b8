//! The textbook formulas of log-sum-exp and softmax, on the GPU, for the numerical-stability
//! study (`logdomain stability`): what the crate's kernels are compared with. No op of the crate
//! uses them; they are public so that anyone can reproduce the study.
//!
//! * [`Textbook::Naive`]: `log Σ exp x` and `exp x / Σ exp x`;
//! * [`Textbook::MaxShifted`]: `m + log Σ exp(x − m)` and `exp(x − m) / Σ exp(x − m)`, `m` the
//!   row's max;
//!
//! both with the builtin `exp` and `log` and plain sequential f32 sums (per segment of at most
//! 4096 entries, then over the segments). The crate's own kernels ([`crate::Gpu::logsumexp`],
//! [`crate::Gpu::softmax`]) add `log1p`, an accurate `exp`, special values from bits and
//! pairwise/tree combination. Kernels: `shaders/stability.wgsl`.

use crate::engine::device::Gpu;
use crate::engine::geometry::{Caps, u32_of};
use crate::engine::geometry::{check_len, elems};
use crate::engine::passes::{LlPass, groups_for, key, limit};
use crate::engine::program::{Bind, Program, Src, Step};
use crate::engine::shaders::LlParams;
use crate::error::Error;
use crate::logsumexp::RowFn;

/// A textbook formula.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Textbook {
    /// `log Σ exp x`, `exp x / Σ exp x`.
    Naive,
    /// `m + log Σ exp(x − m)`, `exp(x − m) / Σ exp(x − m)`.
    MaxShifted,
}

const SEGMENT: u64 = 4096;

impl Gpu {
    /// The textbook `func` (`RowFn::Logsumexp` or `RowFn::Softmax`) of each row of a row-major
    /// `rows × cols` matrix (at most one storage binding), by `formula`.
    ///
    /// ```no_run
    /// use logdomain::{Gpu, RowFn, stability::Textbook};
    /// let gpu = Gpu::new()?;
    /// // The naive formula loses the answer that log1p keeps (4.25e−18):
    /// let lse = gpu.textbook(Textbook::Naive, RowFn::Logsumexp, &[0.0, -40.0], 1, 2)?;
    /// assert_eq!(lse[0], 0.0);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn textbook(
        &self,
        formula: Textbook,
        func: RowFn,
        x: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        if !matches!(func, RowFn::Logsumexp | RowFn::Softmax) {
            return Err(Error::Unsupported(
                "the textbook formulas are for logsumexp and softmax".into(),
            ));
        }
        let n = elems(rows, cols)?;
        check_len("x", x, n as usize)?;
        let caps = Caps::of(self);
        limit("the study's input", n * 4, &caps)?;
        let (r, c) = (rows as u64, cols as u64);
        let seg = SEGMENT.min(c.max(1));
        let slots = c.div_ceil(seg);
        let op = u32::from(formula == Textbook::MaxShifted);
        let base = LlParams {
            rows: u32_of(r, "rows")?,
            cols: u32_of(c, "cols")?,
            slots: u32_of(slots, "segments")?,
            len_in: seg as u32,
            ..LlParams::default()
        };
        let pass = |entry: &'static str, groups: u64, bind: [Bind; 4]| -> Result<LlPass, Error> {
            Ok(LlPass {
                key: key(entry, op, 0),
                params: base,
                groups: groups_for(groups)?,
                bind,
                uniform: None,
                extra: None,
            })
        };
        let x_bind = Bind::whole(Src::Input(0));
        let d = Bind::whole(Src::Dummy);
        let mut passes = Vec::new();
        if r > 0 && c > 0 {
            if formula == Textbook::MaxShifted {
                passes.push(pass(
                    "stab_max",
                    r * slots,
                    [x_bind, d, d, Bind::whole(Src::Scratch(0))],
                )?);
            }
            passes.push(pass(
                "stab_sum",
                r * slots,
                [
                    x_bind,
                    Bind::whole(Src::Scratch(0)),
                    d,
                    Bind::whole(Src::Scratch(1)),
                ],
            )?);
            let (entry, groups) = if func == RowFn::Logsumexp {
                ("stab_lse", r)
            } else {
                ("stab_softmax", r * slots)
            };
            passes.push(pass(
                entry,
                groups,
                [
                    x_bind,
                    Bind::whole(Src::Scratch(0)),
                    Bind::whole(Src::Scratch(1)),
                    Bind::whole(Src::Output),
                ],
            )?);
        }
        let out_len = func.output_len(rows, cols);
        let program = Program::new(
            self,
            vec![Step::ll(passes)],
            None,
            &[r * slots * 4, r * slots * 4],
            vec![n * 4],
            out_len as u64 * 4,
        )?;
        self.run_program(&program, &[bytemuck::cast_slice(x)], out_len)
    }
}
