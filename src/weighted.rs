//! Weighted log-sum-exp with signs, as `scipy.special.logsumexp(a, b=..., return_sign=True)`
//! along rows: `log|Σ_j b_j·e^(x_j)|` and its sign (+1, −1, or 0 for a zero sum, whose log is
//! −inf). Entries with `b = 0` are ignored even when `x` is inf or NaN (SciPy's rule); negative
//! weights may cancel. The row max m (over entries with `b ≠ 0`) comes from the log-sum-exp
//! family's parts; the positive and negative terms `b·e^(x − m)` are summed pairwise in one pass
//! (two sums), so the result is `m + log|P − N|`: as accurate as the cancellation `P − N`
//! allows, about `depth·u·(P + N)/|P − N|` relative. Kernels: `shaders/weighted.wgsl`; CPU
//! mirror: [`crate::reference::weighted`].

use crate::codes::{FINISH_PARTIAL, MODE_WEIGHTED, OP_W_SUBST, OP_W_TERMS};
use crate::engine::device::Gpu;
use crate::engine::geometry::InputFormat;
use crate::engine::geometry::{Caps, u32_of};
use crate::engine::geometry::{check_len, elems};
use crate::engine::op::Op;
use crate::engine::passes::{
    CHUNK, LlPass, elementwise_passes, groups_for, grow_scratch, key, limit, reduce_passes_from,
};
use crate::engine::program::{Bind, Program, Src, Step};
use crate::engine::shaders::{LlParams, PARTIAL_BYTES};
use crate::error::Error;
use crate::logsumexp::parts_step;

/// An encoder-level weighted log-sum-exp with signs over `rows × cols`, the weights one per
/// element or one per column. The output gets `rows` logs then `rows` signs.
///
/// ```no_run
/// use logdomain::{Gpu, WeightedLseOp};
/// let gpu = Gpu::new()?;
/// let op = WeightedLseOp::new(&gpu, 100, 10, true)?; // weights per column
/// assert_eq!(op.output_len(), 200);
/// # Ok::<(), logdomain::Error>(())
/// ```
pub struct WeightedLseOp {
    rows: usize,
    program: Program,
}

impl WeightedLseOp {
    /// Prepares the op; `per_column` weights are `cols` values, otherwise `rows × cols`.
    pub fn new(
        gpu: &Gpu,
        rows: usize,
        cols: usize,
        per_column: bool,
    ) -> Result<WeightedLseOp, Error> {
        if cols == 0 {
            return Err(Error::Shape(
                "rows of zero columns (their weighted log-sum-exp is −inf, sign 0)".into(),
            ));
        }
        let caps = Caps::of(gpu);
        let n = elems(rows, cols)?;
        let (r, c) = (rows as u64, cols as u64);
        limit("per-row values", r * 8, &caps)?;
        let weights = if per_column {
            limit("weights", c * 4, &caps)?;
            Some(Bind::whole(Src::Input(1)))
        } else {
            None
        };
        let base = LlParams {
            mode: if per_column { MODE_WEIGHTED } else { 0 },
            ..LlParams::default()
        };
        let dummy = Some(Bind::whole(Src::Dummy));
        let mut steps = Vec::new();
        let chunks = c.div_ceil(CHUNK);
        let mut scratch = [n * 4, r * chunks * PARTIAL_BYTES, r * PARTIAL_BYTES];
        if r > 0 {
            steps.push(Step::ll(elementwise_passes(
                key("elementwise", OP_W_SUBST, 0),
                base,
                r,
                c,
                [None, weights, dummy, None],
                [Src::Input(0), Src::Input(1), Src::Dummy, Src::Scratch(0)],
                &caps,
            )?));
            // m per row into the aux words [0, 2 rows).
            steps.push(parts_step(
                gpu,
                Src::Scratch(0),
                rows,
                cols,
                0,
                InputFormat::F32,
            )?);
            let mut passes = elementwise_passes(
                key("elementwise", OP_W_TERMS, 1),
                base,
                r,
                c,
                [
                    None,
                    weights,
                    Some(Bind::whole(Src::Aux)),
                    Some(Bind::whole(Src::Scratch(1))),
                ],
                [Src::Input(0), Src::Input(1), Src::Dummy, Src::Dummy],
                &caps,
            )?;
            let (more, need) = reduce_passes_from(
                Src::Scratch(1),
                r,
                chunks,
                FINISH_PARTIAL,
                0.0,
                Src::Scratch(2),
                0,
                &caps,
            )?;
            passes.extend(more);
            grow_scratch(&mut scratch, need);
            passes.push(LlPass {
                key: key("wlse_finish", 0, 0),
                params: LlParams {
                    rows: u32_of(r, "rows")?,
                    ..LlParams::default()
                },
                groups: groups_for(r)?,
                bind: [
                    Bind::whole(Src::Scratch(2)),
                    Bind::whole(Src::Dummy),
                    Bind::whole(Src::Aux),
                    Bind {
                        src: Src::Output,
                        window: Some(crate::engine::geometry::Window {
                            offset: 0,
                            size: r * 8,
                        }),
                    },
                ],
                uniform: None,
                extra: None,
            });
            steps.push(Step::ll(passes));
        }
        let program = Program::new(
            gpu,
            steps,
            Some((Vec::new(), r * 8)),
            &scratch,
            vec![n * 4, if per_column { c * 4 } else { n * 4 }],
            r * 8,
        )?;
        Ok(WeightedLseOp { rows, program })
    }

    /// Number of f32 values written: `rows` logs, then `rows` signs.
    pub fn output_len(&self) -> usize {
        2 * self.rows
    }

    /// Records the op: reads `x` (f32, `rows × cols`) and the weights `b` (f32), writes the
    /// logs and the signs at the start of `output`. No submit, queue write or readback.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        x: &wgpu::Buffer,
        b: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.program.record(encoder, &[x, b], output)
    }
}

impl Gpu {
    /// `log|Σ_j b_j·e^(x_j)|` and its sign per row of a row-major `rows × cols` matrix, `b` one
    /// weight per element (`rows × cols`) or per column (`cols`): SciPy's
    /// `logsumexp(x, b=b, axis=1, return_sign=True)`.
    ///
    /// ```no_run
    /// let gpu = logdomain::Gpu::new()?;
    /// let (lse, sign) = gpu.logsumexp_weighted(&[1.0, 2.0], &[0.5, -1.0], 1, 2)?;
    /// assert!((lse[0] - 1.7967329).abs() < 1e-5 && sign[0] == -1.0);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn logsumexp_weighted(
        &self,
        x: &[f32],
        b: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<(Vec<f32>, Vec<f32>), Error> {
        let n = elems(rows, cols)? as usize;
        check_len("x", x, n)?;
        let per_column = b.len() == cols && b.len() != n;
        if !per_column && b.len() != n {
            return Err(Error::InputLength {
                what: "b (one weight per element, or per column)",
                expected: n,
                actual: b.len(),
            });
        }
        if cols == 0 {
            return Ok((vec![f32::NEG_INFINITY; rows], vec![0.0; rows]));
        }
        let op = WeightedLseOp::new(self, rows, cols, per_column)?;
        let out = self.run_program(
            &op.program,
            &[bytemuck::cast_slice(x), bytemuck::cast_slice(b)],
            op.output_len(),
        )?;
        let (lse, sign) = out.split_at(rows);
        Ok((lse.to_vec(), sign.to_vec()))
    }
}

crate::engine::op::lowered!(WeightedLseOp);

impl Op for WeightedLseOp {
    fn input_names(&self) -> Vec<&'static str> {
        vec!["x (f32, rows × cols)", "b (f32, rows × cols)"]
    }
}
