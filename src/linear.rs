//! Fused linear cross-entropy: the loss of a classifier head, `−log_softmax(h_i · Wᵀ + b)[t_i]`
//! over tokens, and its gradients, without the `tokens × vocab` logits.
//!
//! A language model's vocabulary makes the logits the largest buffer of training and scoring
//! (16.8 GB in 16-bit floats at 32k tokens × 256k classes). The kernels (`shaders/linear.wgsl`)
//! compute each logit as a dot product inside a tile of 8 tokens × 256 vocabulary rows and fold
//! it at once into the token's log-sum-exp state (the library's (max, sum) monoid); the backward
//! recomputes logit tiles from the stored log-sum-exp (as Apple's Cut Cross-Entropy does) and
//! accumulates `d_weight` over the tokens, each entry owned by one workgroup and summed in a fixed
//! order: no float atomics, the same bits every run. `d_hidden` is summed over the vocabulary in
//! the forward's own walk, relative to a running maximum as flash attention sums its output (with
//! label smoothing, in a recomputing walk of its own).
//!
//! What the op allocates besides the caller's buffers: a state of 8 words per token, the
//! reduction's partial sums (3 words per token) and `vocab + 1` words — proportional to
//! `tokens + vocab`, never to `tokens × vocab` ([`LinearCrossEntropyOp::scratch_bytes`]).
//! [`LinearCrossEntropyOp::logits`] is the materialised path's matrix product (the same dot
//! products), for comparisons.
//!
//! Mirror: [`crate::reference::linear`] (the materialised formula in f64).

use crate::codes::{
    FINISH_WEIGHT, MODE_LCE_BIAS, MODE_LCE_DENSE, MODE_LCE_FILTER, MODE_LCE_FIRST, MODE_LCE_GIVEN,
    MODE_LCE_MEAN, MODE_LCE_NONE, MODE_LCE_SMOOTH, MODE_LCE_SOFTCAP, MODE_LCE_WEIGHTED,
};
use crate::engine::blocking::Values;
use crate::engine::device::Gpu;
use crate::engine::geometry::{
    Caps, InputFormat, LANE_BUDGET, MAX_GROUPS, Window, batches, check_len, u32_of,
};
use crate::engine::op::{Io, Op};
use crate::engine::passes::{grow_scratch, input_bytes, limit, reduce_passes_from};
use crate::engine::pipelines::{Module, PipelineKey};
use crate::engine::program::{Bind, Pass, Program, Src, Step};
use crate::engine::shaders::{
    LINEAR_LANES, LINEAR_STATE_WORDS, LINEAR_TILE, LinParams, PARTIAL_BYTES,
};
use crate::error::Error;
pub use crate::likelihood::{CrossEntropy, Reduction};
use crate::likelihood::{Loss, check_categorical, finish_of, targets_i32};
pub use crate::reference::linear::{LinearCrossEntropy, Shape};

const LT: u64 = LINEAR_TILE;
const LW: u64 = LINEAR_LANES as u64;
const SW: u64 = LINEAR_STATE_WORDS;
/// Walked rows a lane takes at once, and the rows of a workgroup's block (`RL`, `LB`).
const RL: u64 = 4;
const LB: u64 = RL * LW;

/// What a [`LinearCrossEntropyOp`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearKind {
    /// The loss (per token for `Reduction::None`, else one value) and each token's lse.
    Forward,
    /// The loss, the lse, `d_hidden`, `d_weight` and (with a bias) `d_bias`.
    WithGrad,
    /// The materialised logits `h · Wᵀ + b` (soft-capped), `tokens × vocab`, for comparisons.
    Logits,
    /// The materialised path's gradient products from a given `dloss/dlogits` (`tokens ×
    /// vocab`): `d_hidden = dz · W`, `d_weight = dzᵀ · h`, `d_bias = Σ_t dz`, for comparisons.
    DenseGrads,
    /// The plain cross-entropy of given logits (`tokens × vocab`) with the fused op's options,
    /// the z-loss and the soft cap included: the loss and each token's lse.
    GivenLogits,
    /// [`LinearKind::GivenLogits`] and `dloss/dlogits` (`tokens × vocab`).
    GivenLogitsWithGrad,
}

/// The encoder-level fused linear cross-entropy, prepared for one shape and one set of options.
///
/// Inputs ([`Op::input_names`]): hidden (`tokens × dims`, f32 or f16), weight (`vocab × dims`,
/// the same format, row-major as `torch.nn.Linear` stores it), targets (`tokens` i32; a value
/// outside `[0, vocab)` other than `ignore_index` gives NaN here, [`Gpu::linear_cross_entropy`]
/// rejects it), the bias (`vocab` f32) if the op was made with one, and for
/// [`LinearKind::DenseGrads`] dloss/dlogits (`tokens × vocab` f32). Outputs
/// ([`Op::output_names`]): the loss, then each token's lse, then for [`LinearKind::WithGrad`]
/// `d_hidden`, `d_weight` and `d_bias`; the logits for [`LinearKind::Logits`]; `d_hidden`,
/// `d_weight` and `d_bias` for [`LinearKind::DenseGrads`]. Recording never submits, writes
/// through the queue or reads back.
pub struct LinearCrossEntropyOp {
    kind: LinearKind,
    shape: Shape,
    bias: bool,
    inputs: Vec<(&'static str, u64)>,
    outputs: Vec<(&'static str, u64)>,
    scratch_bytes: u64,
    program: Program,
}

/// The loss and its gradients from [`Gpu::linear_cross_entropy_with_grad`]; for
/// `Reduction::None` the gradients are those of the sum of the tokens' losses.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearCrossEntropyGrads {
    /// One value, or one per token for `Reduction::None`.
    pub loss: Vec<f32>,
    /// `tokens × dims`.
    pub d_hidden: Vec<f32>,
    /// `vocab × dims`.
    pub d_weight: Vec<f32>,
    /// `vocab` values where a bias was given.
    pub d_bias: Option<Vec<f32>>,
    /// Each token's log-sum-exp over the (soft-capped) logits.
    pub lse: Vec<f32>,
}

/// The loss of [`Gpu::logit_cross_entropy_with_grad`] and its gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct LogitCrossEntropyGrads {
    /// One value, or one per token for `Reduction::None`.
    pub loss: Vec<f32>,
    /// dloss/dlogits, `tokens × vocab` (of the sum of the tokens' losses for
    /// `Reduction::None`; 0 for ignored tokens).
    pub d_logits: Vec<f32>,
    /// Each token's log-sum-exp over its (soft-capped) logits.
    pub lse: Vec<f32>,
}

/// Loop iterations of one tile of dot products over `dims` (`dots_hw` / `dots_wh`).
fn dot_cost(dims: u64) -> u64 {
    dims / 4 + dims % 4 + 2
}

/// Checks the options against PyTorch's rules and the extras' own.
fn check_options(vocab: usize, o: &LinearCrossEntropy) -> Result<(), Error> {
    check_categorical(Loss::CrossEntropy, vocab, &o.ce)?;
    if !(o.z_loss.is_finite() && o.z_loss >= 0.0) {
        return Err(Error::Value(format!(
            "z_loss is {}; it must be finite and >= 0",
            o.z_loss
        )));
    }
    if let Some(c) = o.softcap
        && !(c.is_finite() && c > 0.0)
    {
        return Err(Error::Value(format!(
            "softcap is {c}; it must be finite and > 0"
        )));
    }
    Ok(())
}

fn check_shape(s: Shape) -> Result<(), Error> {
    if s.tokens == 0 || s.dims == 0 || s.vocab == 0 {
        return Err(Error::Shape(format!(
            "tokens, dims and vocab must be at least 1 (got {} × {} hidden, {} classes)",
            s.tokens, s.dims, s.vocab
        )));
    }
    let big = u64::from(u32::MAX) / 2;
    for (what, n) in [
        ("tokens × dims", s.tokens as u64 * s.dims as u64),
        ("vocab × dims", s.vocab as u64 * s.dims as u64),
        (
            "tokens × state words",
            s.tokens as u64 * SW + s.vocab as u64 + 1,
        ),
    ] {
        if n > big {
            return Err(Error::Shape(format!(
                "{what} ({n}) overflows 32-bit indexing"
            )));
        }
    }
    Ok(())
}

/// The shape the kernels see for given logits: the logits in the hidden states' place, a row of
/// `classes` entries per token.
fn given_shape(rows: usize, classes: usize) -> Result<Shape, Error> {
    if classes == 0 {
        return Err(Error::Shape(
            "the logits have 0 classes; there must be at least 1".into(),
        ));
    }
    Ok(Shape {
        tokens: rows,
        dims: classes,
        vocab: classes,
    })
}

/// A window of the first `bytes` bytes of a caller's buffer (which may be larger than a
/// binding).
fn win(src: Src, bytes: u64) -> Bind {
    Bind {
        src,
        window: Some(Window {
            offset: 0,
            size: bytes.max(4),
        }),
    }
}

/// What the chunks of a tiled kernel walk: the vocabulary (the tiles are of tokens) or the
/// tokens (the tiles are of vocabulary rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    Vocab,
    Tokens,
}

/// Where a tiled kernel writes: nowhere (the state), or rows of the tiled operand (`words`
/// f32 each: d_hidden, d_weight, the logits), in a window of the buffer per dispatch.
#[derive(Clone, Copy, Debug)]
enum Out {
    None,
    Rows(Src, u64),
}

/// Plans the linear module's passes: bindings 1–6 and the windows of the operands.
struct Planner<'a> {
    key: PipelineKey,
    caps: &'a Caps,
    s: Shape,
    /// Bytes an entry of the hidden states and the weight.
    entry: u64,
    /// Bytes an element of their bindings (16 for the vec4 form, 4 otherwise).
    unit: u64,
    bias: Bind,
    targets: Bind,
    class_weight: Bind,
    /// The materialised dloss/dlogits (`MODE_LCE_DENSE`), rows of tokens in binding 5.
    dense: Option<Src>,
    /// The logits are given (`MODE_LCE_GIVEN`): input 0 holds them and there is no weight.
    given: bool,
    state: Bind,
}

/// A window of rows [r0, r1) of a matrix of `len`-entry rows (`entry` bytes an entry) in `src`,
/// aligned for bindings of `unit`-byte elements, and the offset a kernel adds (wrapping) to an
/// element's index in the whole matrix to index the window.
fn rows_window(
    src: Src,
    (r0, r1): (u64, u64),
    len: u64,
    entry: u64,
    unit: u64,
    caps: &Caps,
) -> Result<(Bind, u32), Error> {
    let align = caps.storage_align.max(unit);
    let first = r0 * len * entry;
    let start = first - first % align;
    let end = (r1 * len * entry).next_multiple_of(unit).max(start + unit);
    if end - start > caps.max_binding {
        return Err(Error::Limit(format!(
            "{} bytes of rows in one storage binding; max_storage_buffer_binding_size is {}",
            end - start,
            caps.max_binding
        )));
    }
    let off = u32_of(start / unit, "a window's offset")?;
    Ok((
        Bind {
            src,
            window: Some(Window {
                offset: start,
                size: end - start,
            }),
        },
        off.wrapping_neg(),
    ))
}

impl Planner<'_> {
    /// Rows of `bytes` bytes that fit one binding past the alignment slack.
    fn rows_per_binding(&self, bytes: u64, what: &str) -> Result<u64, Error> {
        let usable = self
            .caps
            .max_binding
            .saturating_sub(self.caps.storage_align.max(self.unit));
        let rows = usable / bytes.max(1);
        if rows == 0 {
            return Err(Error::Limit(format!(
                "one row of {what} ({bytes} bytes) exceeds max_storage_buffer_binding_size ({})",
                self.caps.max_binding
            )));
        }
        Ok(rows)
    }

    /// Bindings 1–7 of one pass: `reads` are the hidden states', the weight's and binding 5's.
    fn pass(
        &self,
        entry: &'static str,
        p: LinParams,
        groups: u64,
        reads: [Bind; 3],
        out: Bind,
    ) -> Pass {
        let [hidden, weight, class_weight] = reads;
        Pass {
            key: PipelineKey { entry, ..self.key },
            params: bytemuck::bytes_of(&p).to_vec(),
            groups,
            bind: vec![
                hidden,
                weight,
                self.bias,
                self.targets,
                class_weight,
                self.state,
                out,
            ],
        }
    }

    /// A pass that reads neither the hidden states nor the weight (their first element bound).
    fn single(&self, entry: &'static str, p: LinParams, groups: u64, out: Bind) -> Pass {
        let first = |src| Bind {
            src,
            window: Some(Window {
                offset: 0,
                size: self.unit,
            }),
        };
        self.pass(
            entry,
            p,
            groups,
            [
                first(Src::Input(0)),
                first(Src::Input(if self.given { 0 } else { 1 })),
                self.class_weight,
            ],
            out,
        )
    }

    /// The passes of one tiled kernel: the walked operand in chunks of at most `chunk` rows
    /// (fewer where a chunk's rows would not fit a binding), chunk after chunk, and for each
    /// the tiles in batches that keep a dispatch's work under the device's budget and its rows
    /// within a binding. Each dispatch binds windows of exactly the rows it reads and writes.
    fn tiled(
        &self,
        entry: &'static str,
        base: LinParams,
        walk: Walk,
        chunk: u64,
        work_per_item: u64,
        out: Out,
    ) -> Result<Vec<Pass>, Error> {
        let Shape {
            tokens: n,
            dims: d,
            vocab: v,
        } = self.s;
        let (n, d, v) = (n as u64, d as u64, v as u64);
        let row = d * self.entry;
        let (tiled_rows, walked_rows) = match walk {
            Walk::Vocab => (n, v),
            Walk::Tokens => (v, n),
        };
        // The token range also bounds the dense dloss/dlogits rows (vocab entries each).
        let dense_row = if self.dense.is_some() { v * 4 } else { 0 };
        let mut walk_rows = self.rows_per_binding(row, "the walked operand")?;
        let mut tile_rows = self.rows_per_binding(row, "the tiled operand")?;
        if let Out::Rows(_, words) = out {
            tile_rows = tile_rows.min(self.rows_per_binding(words * 4, "the output")?);
        }
        if dense_row > 0 {
            let r = self.rows_per_binding(dense_row, "dloss/dlogits")?;
            match walk {
                Walk::Vocab => tile_rows = tile_rows.min(r),
                Walk::Tokens => walk_rows = walk_rows.min(r),
            }
        }
        let max_tiles = tile_rows / LT;
        if max_tiles == 0 {
            return Err(Error::Limit(format!(
                "{LT} rows of {row} bytes exceed max_storage_buffer_binding_size ({})",
                self.caps.max_binding
            )));
        }
        let chunk = if walk_rows < chunk { walk_rows } else { chunk };
        let tiles = tiled_rows.div_ceil(LT);
        let mut passes = Vec::new();
        for (i, (begin, len)) in batches(walked_rows, chunk).enumerate() {
            let end = begin + len;
            let per = self
                .caps
                .per_dispatch(work_per_item * len)
                .min(MAX_GROUPS)
                .min(max_tiles);
            for (tile_base, count) in batches(tiles, per) {
                let rows = (tile_base * LT, ((tile_base + count) * LT).min(tiled_rows));
                let (token_rows, vocab_rows) = match walk {
                    Walk::Vocab => (rows, (begin, end)),
                    Walk::Tokens => ((begin, end), rows),
                };
                let (hidden, h_off) = rows_window(
                    Src::Input(0),
                    token_rows,
                    d,
                    self.entry,
                    self.unit,
                    self.caps,
                )?;
                let (weight, w_off) = if self.given {
                    // Not read: the first element of the logits.
                    let first = Window {
                        offset: 0,
                        size: self.unit,
                    };
                    let b = Bind {
                        src: Src::Input(0),
                        window: Some(first),
                    };
                    (b, 0)
                } else {
                    rows_window(
                        Src::Input(1),
                        vocab_rows,
                        d,
                        self.entry,
                        self.unit,
                        self.caps,
                    )?
                };
                let mut p = base;
                p.tile_base = u32_of(tile_base, "tiles")?;
                p.tiles = u32_of(count, "tiles")?;
                p.begin = u32_of(begin, "chunk")?;
                p.end = u32_of(end, "chunk")?;
                p.h_off = h_off;
                p.w_off = w_off;
                p.t_last = u32_of(token_rows.1 - 1, "tokens")?;
                p.v_last = u32_of(vocab_rows.1 - 1, "vocab")?;
                if i == 0 {
                    p.mode |= MODE_LCE_FIRST;
                }
                let class_weight = match self.dense {
                    Some(src) => {
                        let (b, off) = rows_window(src, token_rows, v, 4, 4, self.caps)?;
                        p.c_off = off;
                        b
                    }
                    None => self.class_weight,
                };
                let out = match out {
                    Out::None => Bind::dummy(),
                    Out::Rows(src, words) => {
                        let (b, off) = rows_window(src, rows, words, 4, 4, self.caps)?;
                        p.out_off = off;
                        b
                    }
                };
                passes.push(self.pass(entry, p, count, [hidden, weight, class_weight], out));
            }
        }
        Ok(passes)
    }
}

impl LinearCrossEntropyOp {
    /// The forward op: the loss and each token's lse. `bias`: whether the op reads a bias.
    pub fn new(
        gpu: &Gpu,
        shape: Shape,
        bias: bool,
        options: &LinearCrossEntropy,
        format: InputFormat,
    ) -> Result<LinearCrossEntropyOp, Error> {
        Self::build(gpu, LinearKind::Forward, shape, bias, options, format)
    }

    /// The forward and backward op: the loss, the lse and the gradients.
    pub fn with_grad(
        gpu: &Gpu,
        shape: Shape,
        bias: bool,
        options: &LinearCrossEntropy,
        format: InputFormat,
    ) -> Result<LinearCrossEntropyOp, Error> {
        Self::build(gpu, LinearKind::WithGrad, shape, bias, options, format)
    }

    /// The materialised logits `h · Wᵀ + b` (soft-capped by `softcap`), `tokens × vocab` f32 —
    /// the matrix product a materialised cross-entropy starts with, with the fused kernels' dot
    /// products; inputs as the forward op's (the targets are not read but bound).
    pub fn logits(
        gpu: &Gpu,
        shape: Shape,
        bias: bool,
        softcap: Option<f32>,
        format: InputFormat,
    ) -> Result<LinearCrossEntropyOp, Error> {
        let o = LinearCrossEntropy {
            softcap,
            ..LinearCrossEntropy::default()
        };
        Self::build(gpu, LinearKind::Logits, shape, bias, &o, format)
    }

    /// The materialised path's gradient products (the second half of an unfused backward, with
    /// the fused kernels' accumulation order): inputs hidden, weight, targets (bound, not read),
    /// the bias if `bias` (not read), then `dloss/dlogits` (f32, `tokens × vocab`); outputs
    /// `d_hidden`, `d_weight` and, with `bias`, `d_bias`.
    pub fn dense_grads(gpu: &Gpu, shape: Shape, bias: bool) -> Result<LinearCrossEntropyOp, Error> {
        Self::build(
            gpu,
            LinearKind::DenseGrads,
            shape,
            bias,
            &LinearCrossEntropy::default(),
            InputFormat::F32,
        )
    }

    /// The plain cross-entropy of given logits (`rows × classes`, f32 or f16, row-major) with
    /// the fused op's options — PyTorch's, the z-loss and the soft cap — and the same per-entry
    /// arithmetic: inputs the logits and the targets (`rows` i32); outputs the loss, each row's
    /// lse and, `with_grad`, dloss/dlogits (`rows × classes` f32). `grad_filter` has no effect
    /// (every entry of the gradient is written).
    pub fn given_logits(
        gpu: &Gpu,
        rows: usize,
        classes: usize,
        options: &LinearCrossEntropy,
        format: InputFormat,
        with_grad: bool,
    ) -> Result<LinearCrossEntropyOp, Error> {
        let kind = if with_grad {
            LinearKind::GivenLogitsWithGrad
        } else {
            LinearKind::GivenLogits
        };
        let shape = given_shape(rows, classes)?;
        Self::build(gpu, kind, shape, false, options, format)
    }

    fn build(
        gpu: &Gpu,
        kind: LinearKind,
        s: Shape,
        bias: bool,
        o: &LinearCrossEntropy,
        format: InputFormat,
    ) -> Result<LinearCrossEntropyOp, Error> {
        check_shape(s)?;
        check_options(s.vocab, o)?;
        let caps = Caps::of(gpu);
        let (n, d, v) = (s.tokens as u64, s.dims as u64, s.vocab as u64);
        let hidden_bytes = input_bytes(n * d, format);
        let weight_bytes = input_bytes(v * d, format);
        let f16 = format == InputFormat::F16;
        let given = matches!(
            kind,
            LinearKind::GivenLogits | LinearKind::GivenLogitsWithGrad
        );
        let mut inputs = if given {
            vec![
                (
                    if f16 {
                        "logits (f16, tokens × vocab)"
                    } else {
                        "logits (f32, tokens × vocab)"
                    },
                    hidden_bytes,
                ),
                ("targets (i32, tokens)", n * 4),
            ]
        } else {
            vec![
                (
                    if f16 {
                        "hidden (f16, tokens × dims)"
                    } else {
                        "hidden (f32, tokens × dims)"
                    },
                    hidden_bytes,
                ),
                (
                    if f16 {
                        "weight (f16, vocab × dims)"
                    } else {
                        "weight (f32, vocab × dims)"
                    },
                    weight_bytes,
                ),
                ("targets (i32, tokens)", n * 4),
            ]
        };
        if bias {
            inputs.push(("bias (f32, vocab)", v * 4));
        }
        // 16-byte words where the rows are whole words of f32 entries.
        let vec4 = !f16 && d.is_multiple_of(4);
        let key = PipelineKey {
            // The shared rows' loads spread over subgroups where every subgroup has 8 lanes.
            module: match (vec4, caps.subgroup && caps.subgroup_min >= LT as u32) {
                (true, true) => Module::LinearVec4Subgroup,
                (true, false) => Module::LinearVec4,
                (false, _) => Module::Linear,
            },
            entry: "",
            op: 0,
            wg: LINEAR_LANES,
            reduce: 0,
            dims: 0,
            in_f16: f16,
            out_f16: false,
            // Words of dims a lane in the gradient products: a lane's share of the row's words,
            // at most 4.
            vec: if vec4 {
                match d / 4 / LW {
                    0 | 1 => 1,
                    2 | 3 => 2,
                    _ => 4,
                }
            } else {
                0
            },
            lanes: 0,
        };
        let mut mode = 0;
        if bias {
            mode |= MODE_LCE_BIAS;
        }
        if o.ce.weight.is_some() {
            mode |= MODE_LCE_WEIGHTED;
        }
        let eps = f64::from(o.ce.label_smoothing);
        if eps > 0.0 {
            mode |= MODE_LCE_SMOOTH;
        }
        if o.softcap.is_some() {
            mode |= MODE_LCE_SOFTCAP;
        }
        if o.grad_filter && eps == 0.0 && !given {
            mode |= MODE_LCE_FILTER;
        }
        if given {
            mode |= MODE_LCE_GIVEN;
        }
        match o.ce.reduction {
            Reduction::None => mode |= MODE_LCE_NONE,
            Reduction::Mean => mode |= MODE_LCE_MEAN,
            Reduction::Sum => {}
        }
        let cap = o.softcap.unwrap_or(1.0);
        let w_sum: f64 = match &o.ce.weight {
            Some(w) => w.iter().map(|&x| f64::from(x)).sum(),
            None => v as f64,
        };
        let base = LinParams {
            tokens: u32_of(n, "tokens")?,
            dims: u32_of(d, "dims")?,
            vocab: u32_of(v, "vocab")?,
            mode,
            ignore: i32::try_from(o.ce.ignore_index).unwrap_or(i32::MIN),
            cap,
            inv_cap: (1.0 / f64::from(cap)) as f32,
            // Rounded once from f64, as PyTorch's scalar arithmetic does.
            one_minus_eps: (1.0 - eps) as f32,
            eps_over_c: (eps / v as f64) as f32,
            w_sum: w_sum as f32,
            z_loss: o.z_loss,
            ..LinParams::default()
        };
        let class_weight = if o.ce.weight.is_some() {
            Bind::whole(Src::Aux)
        } else {
            Bind::dummy()
        };
        let mut plan = Planner {
            key,
            caps: &caps,
            s,
            entry: format.bytes(),
            unit: if vec4 { 16 } else { 4 },
            bias: if bias {
                win(Src::Input(3), v * 4)
            } else {
                Bind::dummy()
            },
            targets: win(Src::Input(if given { 1 } else { 2 }), n * 4),
            class_weight,
            dense: None,
            given,
            state: Bind::whole(Src::Scratch(2)),
        };
        let aux =
            o.ce.weight
                .as_ref()
                .map(|w| (bytemuck::cast_slice::<f32, u8>(w).to_vec(), 0));
        // Blocks of LB walked rows a lane may take in one dispatch (LANE_BUDGET loop iterations
        // in all): a block costs a lane one walk over dims for its four rows, then their LT
        // entries each.
        // The given logits cost a lane one load per token and row instead of a walk over dims.
        let dot = if given { LT * RL } else { dot_cost(d) };
        let tile_work = if given { LT * RL } else { LT * d };
        let forward_block = dot + RL * (LT + 2) + 2;
        let forward_chunk = (LANE_BUDGET / forward_block).max(1) * LB;
        let mut steps = Vec::new();
        let mut scratch = vec![0u64; 4];
        let mut outputs: Vec<(&'static str, u64)> = Vec::new();
        let mut input_sizes: Vec<u64> = inputs.iter().map(|i| i.1).collect();
        if kind == LinearKind::Logits {
            let bytes = n * v * 4;
            let passes = plan.tiled(
                "lce_logits",
                base,
                Walk::Vocab,
                forward_chunk,
                LT * d,
                Out::Rows(Src::Output, v),
            )?;
            steps.push(Step::Passes(passes));
            outputs.push(("logits (f32, tokens × vocab)", bytes));
            let program = Program::new(gpu, steps, aux, &[], input_sizes, bytes)?;
            return Ok(LinearCrossEntropyOp {
                kind,
                shape: s,
                bias,
                inputs,
                outputs,
                scratch_bytes: 0,
                program,
            });
        }
        // A block of the gradient kernels costs a lane the forward's, then its dims (d / LW of
        // them) times the block's LB rows, the bias's sum over the block and the filter's look
        // at the lanes' flags.
        let block = forward_block + d.div_ceil(LW) * (LB + LT + 2) + LB + LW;
        let grad_chunk = (LANE_BUDGET / block).max(1) * LB;
        let state_bytes = (SW * n + 1 + v) * 4;
        limit("the per-token states", state_bytes, &caps)?;
        scratch[2] = state_bytes;
        if kind == LinearKind::DenseGrads {
            let dz_slot = inputs.len();
            inputs.push(("dloss/dlogits (f32, tokens × vocab)", n * v * 4));
            input_sizes.push(n * v * 4);
            plan.dense = Some(Src::Input(dz_slot));
            plan.class_weight = Bind::dummy();
            let base = LinParams {
                mode: MODE_LCE_DENSE,
                ..base
            };
            outputs.push(("d_hidden (f32, tokens × dims)", n * d * 4));
            outputs.push(("d_weight (f32, vocab × dims)", v * d * 4));
            let dw_slot = dz_slot + 1;
            let mut passes = plan.tiled(
                "lce_grad_hidden",
                base,
                Walk::Vocab,
                grad_chunk,
                2 * LT * d,
                Out::Rows(Src::Output, d),
            )?;
            passes.extend(plan.tiled(
                "lce_grad_weight",
                base,
                Walk::Tokens,
                grad_chunk,
                2 * LT * d,
                Out::Rows(Src::Input(dw_slot), d),
            )?);
            if bias {
                outputs.push(("d_bias (f32, vocab)", v * 4));
                passes.push(plan.single(
                    "lce_copy_bias",
                    LinParams {
                        tiles: u32_of(v.div_ceil(LW), "vocab")?,
                        ..base
                    },
                    v.div_ceil(LW),
                    win(Src::Input(dw_slot + 1), v * 4),
                ));
            }
            steps.push(Step::Passes(passes));
            input_sizes.extend(outputs[1..].iter().map(|o| o.1));
            let program = Program::new(gpu, steps, aux, &scratch, input_sizes, n * d * 4)?;
            return Ok(LinearCrossEntropyOp {
                kind,
                shape: s,
                bias,
                inputs,
                outputs,
                scratch_bytes: scratch.iter().sum(),
                program,
            });
        }
        // Input slots of the written buffers, after the caller's inputs.
        let lse_slot = inputs.len();
        let (dh_slot, dw_slot) = (lse_slot + 1, lse_slot + 2);
        // Without label smoothing the backward's d_hidden walk is the forward's
        // (`lce_forward_hidden`): four matrix products' work instead of five. Filtering then
        // applies to d_weight's products alone.
        let fold = kind == LinearKind::WithGrad && mode & MODE_LCE_SMOOTH == 0;
        let mut passes = if fold {
            plan.tiled(
                "lce_forward_hidden",
                base,
                Walk::Vocab,
                (LANE_BUDGET / (block + 2 * LW)).max(1) * LB,
                2 * LT * d,
                Out::Rows(Src::Input(dh_slot), d),
            )?
        } else {
            plan.tiled(
                "lce_forward",
                base,
                Walk::Vocab,
                forward_chunk,
                tile_work,
                Out::None,
            )?
        };
        let none = o.ce.reduction == Reduction::None;
        let loss_len = if none { n } else { 1 };
        // The loss's partial sums (scratch 3), reduced by the likelihood module's levels.
        let finish_out = if none {
            win(Src::Output, n * 4)
        } else {
            scratch[3] = n * PARTIAL_BYTES;
            Bind::whole(Src::Scratch(3))
        };
        passes.push(plan.single(
            "lce_finish",
            LinParams {
                tiles: u32_of(n.div_ceil(LW), "tokens")?,
                ..base
            },
            n.div_ceil(LW),
            finish_out,
        ));
        steps.push(Step::Passes(passes));
        if !none {
            let (levels, need) = reduce_passes_from(
                Src::Scratch(3),
                1,
                n,
                finish_of(o.ce.reduction, true),
                0.0,
                Src::Output,
                0,
                &caps,
            )?;
            grow_scratch(&mut scratch, need);
            steps.push(Step::ll(levels));
        }
        outputs.push(("loss (f32)", loss_len * 4));
        outputs.push(("lse (f32, tokens)", n * 4));
        let copy = |entry, out_slot: usize, words: u64| -> Result<Pass, Error> {
            Ok(plan.single(
                entry,
                LinParams {
                    tiles: u32_of(words.div_ceil(LW), "tokens")?,
                    ..base
                },
                words.div_ceil(LW),
                win(Src::Input(out_slot), words * 4),
            ))
        };
        let mut tail = vec![copy("lce_copy_lse", lse_slot, n)?];
        let with_grad = matches!(kind, LinearKind::WithGrad | LinearKind::GivenLogitsWithGrad);
        if with_grad && o.ce.reduction == Reduction::Mean {
            // Σ w_y into the state's word SW · tokens, the gradient's denominator.
            let (levels, need) = reduce_passes_from(
                Src::Scratch(3),
                1,
                n,
                FINISH_WEIGHT,
                0.0,
                Src::Scratch(2),
                u32_of(SW * n, "tokens")?,
                &caps,
            )?;
            grow_scratch(&mut scratch, need);
            steps.push(Step::ll(levels));
        }
        if kind == LinearKind::GivenLogitsWithGrad {
            outputs.push(("dloss/dlogits (f32, tokens × vocab)", n * v * 4));
            let grads = plan.tiled(
                "lce_logit_grad",
                base,
                Walk::Vocab,
                forward_chunk,
                tile_work,
                Out::Rows(Src::Input(lse_slot + 1), v),
            )?;
            steps.push(Step::Passes(grads));
        }
        if kind == LinearKind::WithGrad {
            outputs.push(("d_hidden (f32, tokens × dims)", n * d * 4));
            outputs.push(("d_weight (f32, vocab × dims)", v * d * 4));
            let mut grads = if fold {
                // One dispatch per window of the weight (the target rows' terms); a tile's
                // work is its rows of d_hidden, whatever the window's length.
                plan.tiled(
                    "lce_hidden_finish",
                    base,
                    Walk::Vocab,
                    v,
                    (LT * d).div_ceil(v),
                    Out::Rows(Src::Input(dh_slot), d),
                )?
            } else {
                plan.tiled(
                    "lce_grad_hidden",
                    base,
                    Walk::Vocab,
                    grad_chunk,
                    2 * LT * d,
                    Out::Rows(Src::Input(dh_slot), d),
                )?
            };
            grads.extend(plan.tiled(
                "lce_grad_weight",
                base,
                Walk::Tokens,
                grad_chunk,
                2 * LT * d,
                Out::Rows(Src::Input(dw_slot), d),
            )?);
            steps.push(Step::Passes(grads));
            if bias {
                outputs.push(("d_bias (f32, vocab)", v * 4));
                tail.push(copy("lce_copy_bias", dw_slot + 1, v)?);
            }
        }
        steps.push(Step::Passes(tail));
        let scratch_bytes = scratch.iter().sum();
        input_sizes.extend(outputs[1..].iter().map(|o| o.1));
        let program = Program::new(gpu, steps, aux, &scratch, input_sizes, loss_len * 4)?;
        Ok(LinearCrossEntropyOp {
            kind,
            shape: s,
            bias,
            inputs,
            outputs,
            scratch_bytes,
            program,
        })
    }

    /// Bytes of the buffers the op made for itself besides its parameters and class weights:
    /// the per-token states, the partial sums and the reduction levels. Proportional to
    /// `tokens + vocab`: no buffer of `tokens × vocab` entries exists at any time (the logits op
    /// excepted, whose output is that matrix).
    pub fn scratch_bytes(&self) -> u64 {
        self.scratch_bytes
    }

    /// What the op records.
    pub fn kind(&self) -> LinearKind {
        self.kind
    }

    /// Whether the op reads a bias (its last input).
    pub fn has_bias(&self) -> bool {
        self.bias
    }

    /// The shape the op was made for.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Bytes each input buffer needs, in [`Op::input_names`]' order.
    pub fn input_bytes_needed(&self) -> Vec<u64> {
        self.inputs.iter().map(|i| i.1).collect()
    }

    /// Bytes each output buffer needs, in [`Op::output_names`]' order.
    pub fn output_bytes_needed(&self) -> Vec<u64> {
        self.outputs.iter().map(|o| o.1).collect()
    }

    /// Records the op into `encoder` (see [`Op::record_io`]).
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder, io: Io<'_>) -> Result<(), Error> {
        self.record_io(encoder, io)
    }
}

impl crate::engine::op::sealed::Lowered for LinearCrossEntropyOp {
    fn program(&self) -> &Program {
        &self.program
    }

    fn bind<'a>(&self, io: Io<'a>) -> Result<(Vec<&'a wgpu::Buffer>, &'a wgpu::Buffer), Error> {
        if io.inputs.len() != self.inputs.len() || io.outputs.len() != self.outputs.len() {
            return Err(Error::Buffer(format!(
                "this op reads {} buffers ({}) and writes {} ({}); got {} and {}",
                self.inputs.len(),
                self.input_names().join(", "),
                self.outputs.len(),
                self.output_names().join(", "),
                io.inputs.len(),
                io.outputs.len()
            )));
        }
        let mut all = io.inputs.to_vec();
        all.extend_from_slice(&io.outputs[1..]);
        for (i, a) in io.outputs.iter().enumerate() {
            for b in &io.outputs[i + 1..] {
                if a == b {
                    return Err(Error::Buffer(
                        "the outputs must be different buffers".into(),
                    ));
                }
            }
            for b in io.inputs {
                if a == b {
                    return Err(Error::Buffer(
                        "an output and an input must be different buffers".into(),
                    ));
                }
            }
        }
        Ok((all, io.outputs[0]))
    }
}

impl Op for LinearCrossEntropyOp {
    fn input_names(&self) -> Vec<&'static str> {
        self.inputs.iter().map(|i| i.0).collect()
    }

    fn output_names(&self) -> Vec<&'static str> {
        self.outputs.iter().map(|o| o.0).collect()
    }
}

/// The arguments every blocking call checks.
struct Call<'a> {
    hidden: Values<'a>,
    weight: Values<'a>,
    bias: Option<&'a [f32]>,
    shape: Shape,
    targets: &'a [i64],
    options: &'a LinearCrossEntropy,
}

impl<'a> Call<'a> {
    fn new(
        hidden: Values<'a>,
        weight: Values<'a>,
        bias: Option<&'a [f32]>,
        (tokens, dims, vocab): (usize, usize, usize),
        targets: &'a [i64],
        options: &'a LinearCrossEntropy,
    ) -> Call<'a> {
        let shape = Shape {
            tokens,
            dims,
            vocab,
        };
        Call {
            hidden,
            weight,
            bias,
            shape,
            targets,
            options,
        }
    }
}

impl Gpu {
    /// The loss of a classifier head without its logits: `F.cross_entropy(hidden @ weight.T +
    /// bias, targets, …)` with PyTorch's options (class weights, `ignore_index`,
    /// `label_smoothing`, the reduction), plus the z-loss and the logit soft cap of
    /// [`LinearCrossEntropy`]. `hidden` is row-major `tokens × dims`, `weight` row-major `vocab
    /// × dims` (as `torch.nn.Linear` stores it), `bias` `vocab` values. Returns one loss per
    /// token for `Reduction::None`, else one value. No buffer of `tokens × vocab` entries is
    /// made. A target outside `[0, vocab)` that is not `ignore_index` is an error naming the
    /// token.
    ///
    /// ```no_run
    /// use logdomain::{Gpu, LinearCrossEntropy};
    /// let gpu = Gpu::new()?;
    /// // 2 tokens of 3 dims, a vocabulary of 4 classes.
    /// let hidden = [1.0, 0.0, 0.5, -1.0, 2.0, 0.0];
    /// let weight = [0.1f32; 12];
    /// let loss = gpu.linear_cross_entropy(&hidden, &weight, None, 2, 3, 4, &[0, 3],
    ///     &LinearCrossEntropy::default())?;
    /// assert!((loss[0] - 4f32.ln()).abs() < 1e-6); // equal logits: ln 4
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn linear_cross_entropy(
        &self,
        hidden: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        tokens: usize,
        dims: usize,
        vocab: usize,
        targets: &[i64],
        options: &LinearCrossEntropy,
    ) -> Result<Vec<f32>, Error> {
        let shape = (tokens, dims, vocab);
        let call = Call::new(
            Values::F32(hidden),
            Values::F32(weight),
            bias,
            shape,
            targets,
            options,
        );
        Ok(self.run_linear(call, LinearKind::Forward)?.loss)
    }

    /// [`Gpu::linear_cross_entropy`] of f16 hidden states and weight (`half::f16`), read as
    /// f16 on the GPU (half the bytes) and accumulated in f32; the bias stays f32.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_cross_entropy_f16(
        &self,
        hidden: &[half::f16],
        weight: &[half::f16],
        bias: Option<&[f32]>,
        tokens: usize,
        dims: usize,
        vocab: usize,
        targets: &[i64],
        options: &LinearCrossEntropy,
    ) -> Result<Vec<f32>, Error> {
        let shape = (tokens, dims, vocab);
        let call = Call::new(
            Values::F16(hidden),
            Values::F16(weight),
            bias,
            shape,
            targets,
            options,
        );
        Ok(self.run_linear(call, LinearKind::Forward)?.loss)
    }

    /// [`Gpu::linear_cross_entropy`] with its gradients: `d_hidden` (`tokens × dims`),
    /// `d_weight` (`vocab × dims`) and, with a bias, `d_bias`, recomputed tile by tile from each
    /// token's stored log-sum-exp (returned too). Deterministic: the same inputs give the same
    /// bits. For `Reduction::None` the gradients are those of the sum of the per-token losses;
    /// ignored tokens contribute nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_cross_entropy_with_grad(
        &self,
        hidden: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        tokens: usize,
        dims: usize,
        vocab: usize,
        targets: &[i64],
        options: &LinearCrossEntropy,
    ) -> Result<LinearCrossEntropyGrads, Error> {
        let shape = (tokens, dims, vocab);
        let call = Call::new(
            Values::F32(hidden),
            Values::F32(weight),
            bias,
            shape,
            targets,
            options,
        );
        self.run_linear(call, LinearKind::WithGrad)
    }

    /// [`Gpu::linear_cross_entropy_with_grad`] of f16 hidden states and weight; the gradients
    /// are f32.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_cross_entropy_with_grad_f16(
        &self,
        hidden: &[half::f16],
        weight: &[half::f16],
        bias: Option<&[f32]>,
        tokens: usize,
        dims: usize,
        vocab: usize,
        targets: &[i64],
        options: &LinearCrossEntropy,
    ) -> Result<LinearCrossEntropyGrads, Error> {
        let shape = (tokens, dims, vocab);
        let call = Call::new(
            Values::F16(hidden),
            Values::F16(weight),
            bias,
            shape,
            targets,
            options,
        );
        self.run_linear(call, LinearKind::WithGrad)
    }

    /// Each token's log-sum-exp over the vocabulary of its (soft-capped) logits, and the loss,
    /// as [`Gpu::linear_cross_entropy`]: `(loss, lse)`.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_cross_entropy_with_lse(
        &self,
        hidden: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        tokens: usize,
        dims: usize,
        vocab: usize,
        targets: &[i64],
        options: &LinearCrossEntropy,
    ) -> Result<(Vec<f32>, Vec<f32>), Error> {
        let shape = (tokens, dims, vocab);
        let call = Call::new(
            Values::F32(hidden),
            Values::F32(weight),
            bias,
            shape,
            targets,
            options,
        );
        let r = self.run_linear(call, LinearKind::Forward)?;
        Ok((r.loss, r.lse))
    }

    /// The materialised logits `hidden · weightᵀ + bias` (soft-capped by `softcap`), row-major
    /// `tokens × vocab`: the first half of the unfused path, with the fused kernels' dot
    /// products. Needs the whole matrix in one storage binding.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_logits(
        &self,
        hidden: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        tokens: usize,
        dims: usize,
        vocab: usize,
        softcap: Option<f32>,
    ) -> Result<Vec<f32>, Error> {
        let s = Shape {
            tokens,
            dims,
            vocab,
        };
        check_shape(s)?;
        check_len("hidden", hidden, tokens * dims)?;
        check_len("weight", weight, vocab * dims)?;
        if let Some(b) = bias {
            check_len("bias", b, vocab)?;
        }
        let op = LinearCrossEntropyOp::logits(self, s, bias.is_some(), softcap, InputFormat::F32)?;
        let zeros = vec![0i32; tokens];
        let mut inputs: Vec<&[u8]> = vec![
            bytemuck::cast_slice(hidden),
            bytemuck::cast_slice(weight),
            bytemuck::cast_slice(&zeros),
        ];
        if let Some(b) = bias {
            inputs.push(bytemuck::cast_slice(b));
        }
        self.run_program(&op.program, &inputs, tokens * vocab)
    }

    /// The materialised path's gradient products from a given `dlogits` (row-major `tokens ×
    /// vocab`, e.g. from [`Gpu::cross_entropy_with_grad`] on [`Gpu::linear_logits`]'s logits):
    /// `d_hidden = dlogits · weight`, `d_weight = dlogitsᵀ · hidden`, `d_bias = Σ_t dlogits`,
    /// with the fused kernels' accumulation order. `loss` and `lse` are left empty. Needs the
    /// whole `dlogits` in one storage binding.
    pub fn linear_grads_from_dlogits(
        &self,
        hidden: &[f32],
        weight: &[f32],
        dlogits: &[f32],
        tokens: usize,
        dims: usize,
        vocab: usize,
    ) -> Result<LinearCrossEntropyGrads, Error> {
        let s = Shape {
            tokens,
            dims,
            vocab,
        };
        check_shape(s)?;
        check_len("hidden", hidden, tokens * dims)?;
        check_len("weight", weight, vocab * dims)?;
        check_len("dlogits", dlogits, tokens * vocab)?;
        let op = LinearCrossEntropyOp::dense_grads(self, s, true)?;
        let zeros = vec![0i32; tokens];
        let unused_bias = vec![0f32; vocab];
        let inputs: Vec<&[u8]> = vec![
            bytemuck::cast_slice(hidden),
            bytemuck::cast_slice(weight),
            bytemuck::cast_slice(&zeros),
            bytemuck::cast_slice(&unused_bias),
            bytemuck::cast_slice(dlogits),
        ];
        let (d_hidden, mut rest) =
            self.run_program_with(&op.program, &inputs, tokens * dims, &[vocab * dims, vocab])?;
        let d_bias = rest.pop();
        Ok(LinearCrossEntropyGrads {
            loss: vec![],
            d_hidden,
            d_weight: rest.pop().unwrap_or_default(),
            d_bias,
            lse: vec![],
        })
    }

    /// PyTorch's `F.cross_entropy(logits, targets, …)` on given `rows × classes` logits with the
    /// options of the fused op ([`LinearCrossEntropy`]): class weights, `ignore_index`,
    /// `label_smoothing`, the reduction, and the **z-loss** (`z_loss · w_y · lse²` per row) and
    /// the **logit soft cap** (`cap · tanh(z / cap)` before the softmax) — the same per-entry
    /// arithmetic as [`Gpu::linear_cross_entropy`], without the matrix product. Returns one
    /// loss per row for `Reduction::None`, else one value.
    ///
    /// ```no_run
    /// use logdomain::{Gpu, LinearCrossEntropy};
    /// let gpu = Gpu::new()?;
    /// let options = LinearCrossEntropy { z_loss: 1e-4, softcap: Some(30.0), ..Default::default() };
    /// let loss = gpu.logit_cross_entropy(&[2.0, 0.5, -1.0, 0.0, 0.0, 0.0], 2, 3, &[0, 2], &options)?;
    /// assert_eq!(loss.len(), 1);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn logit_cross_entropy(
        &self,
        logits: &[f32],
        rows: usize,
        classes: usize,
        targets: &[i64],
        options: &LinearCrossEntropy,
    ) -> Result<Vec<f32>, Error> {
        let x = Values::F32(logits);
        Ok(self
            .run_given(x, rows, classes, targets, options, false)?
            .loss)
    }

    /// [`Gpu::logit_cross_entropy`] of f16 logits, read as f16 on the GPU.
    pub fn logit_cross_entropy_f16(
        &self,
        logits: &[half::f16],
        rows: usize,
        classes: usize,
        targets: &[i64],
        options: &LinearCrossEntropy,
    ) -> Result<Vec<f32>, Error> {
        let x = Values::F16(logits);
        Ok(self
            .run_given(x, rows, classes, targets, options, false)?
            .loss)
    }

    /// [`Gpu::logit_cross_entropy`] with dloss/dlogits and each row's lse. For
    /// `Reduction::None` the gradient is that of the sum of the rows' losses; ignored rows get
    /// zeros.
    pub fn logit_cross_entropy_with_grad(
        &self,
        logits: &[f32],
        rows: usize,
        classes: usize,
        targets: &[i64],
        options: &LinearCrossEntropy,
    ) -> Result<LogitCrossEntropyGrads, Error> {
        let x = Values::F32(logits);
        self.run_given(x, rows, classes, targets, options, true)
    }

    fn run_given(
        &self,
        logits: Values<'_>,
        rows: usize,
        classes: usize,
        targets: &[i64],
        options: &LinearCrossEntropy,
        with_grad: bool,
    ) -> Result<LogitCrossEntropyGrads, Error> {
        let s = given_shape(rows, classes)?;
        check_options(classes, options)?;
        let (len, format, bytes) = logits.upload();
        let expected = rows
            .checked_mul(classes)
            .ok_or_else(|| Error::Shape(format!("{rows} × {classes} overflows")))?;
        if len != expected {
            return Err(Error::InputLength {
                what: "logits",
                expected,
                actual: len,
            });
        }
        check_len("targets", targets, rows)?;
        let t = targets_i32(targets, classes, options.ce.ignore_index)?;
        if rows == 0 {
            let loss = match options.ce.reduction {
                Reduction::None => vec![],
                Reduction::Sum => vec![0.0],
                Reduction::Mean => vec![f32::NAN],
            };
            return Ok(LogitCrossEntropyGrads {
                loss,
                d_logits: vec![],
                lse: vec![],
            });
        }
        let op =
            LinearCrossEntropyOp::given_logits(self, rows, classes, options, format, with_grad)?;
        debug_assert_eq!(op.shape, s);
        let inputs: Vec<&[u8]> = vec![&bytes, bytemuck::cast_slice(&t)];
        let extra: Vec<usize> = op.outputs[1..].iter().map(|o| (o.1 / 4) as usize).collect();
        let loss_len = (op.outputs[0].1 / 4) as usize;
        let (loss, mut rest) = self.run_program_with(&op.program, &inputs, loss_len, &extra)?;
        let mut rest = rest.drain(..);
        let lse = rest.next().unwrap_or_default();
        Ok(LogitCrossEntropyGrads {
            loss,
            d_logits: rest.next().unwrap_or_default(),
            lse,
        })
    }

    fn run_linear(&self, c: Call<'_>, kind: LinearKind) -> Result<LinearCrossEntropyGrads, Error> {
        let s = c.shape;
        let (hlen, format, hbytes) = c.hidden.upload();
        let (wlen, wformat, wbytes) = c.weight.upload();
        debug_assert_eq!(format, wformat);
        check_options(s.vocab, c.options)?;
        if s.dims == 0 || s.vocab == 0 {
            check_shape(s)?;
        }
        let expect = |what: &'static str, actual: usize, rows: usize| {
            let expected = rows
                .checked_mul(s.dims)
                .ok_or_else(|| Error::Shape(format!("{rows} × {} overflows", s.dims)))?;
            if actual != expected {
                return Err(Error::InputLength {
                    what,
                    expected,
                    actual,
                });
            }
            Ok(())
        };
        expect("hidden", hlen, s.tokens)?;
        expect("weight", wlen, s.vocab)?;
        check_len("targets", c.targets, s.tokens)?;
        if let Some(b) = c.bias {
            check_len("bias", b, s.vocab)?;
        }
        let t = targets_i32(c.targets, s.vocab, c.options.ce.ignore_index)?;
        let grads = kind == LinearKind::WithGrad;
        if s.tokens == 0 {
            // No token: PyTorch's empty reductions (the mean is 0/0), zero gradients.
            let loss = match c.options.ce.reduction {
                Reduction::None => vec![],
                Reduction::Sum => vec![0.0],
                Reduction::Mean => vec![f32::NAN],
            };
            return Ok(LinearCrossEntropyGrads {
                loss,
                d_hidden: vec![],
                d_weight: if grads {
                    vec![0.0; s.vocab * s.dims]
                } else {
                    vec![]
                },
                d_bias: (grads && c.bias.is_some()).then(|| vec![0.0; s.vocab]),
                lse: vec![],
            });
        }
        let op = LinearCrossEntropyOp::build(self, kind, s, c.bias.is_some(), c.options, format)?;
        let mut inputs: Vec<&[u8]> = vec![&hbytes, &wbytes, bytemuck::cast_slice(&t)];
        if let Some(b) = c.bias {
            inputs.push(bytemuck::cast_slice(b));
        }
        let extra: Vec<usize> = op.outputs[1..].iter().map(|o| (o.1 / 4) as usize).collect();
        let loss_len = (op.outputs[0].1 / 4) as usize;
        let (loss, mut rest) = self.run_program_with(&op.program, &inputs, loss_len, &extra)?;
        let mut rest = rest.drain(..);
        let lse = rest.next().unwrap_or_default();
        let (d_hidden, d_weight, d_bias) = if grads {
            let dh = rest.next().unwrap_or_default();
            let dw = rest.next().unwrap_or_default();
            (dh, dw, rest.next())
        } else {
            (vec![], vec![], None)
        };
        Ok(LinearCrossEntropyGrads {
            loss,
            d_hidden,
            d_weight,
            d_bias,
            lse,
        })
    }
}
