//! The log-sum-exp family over any axes of an N-d strided array: [`AxisOp`] and the N-d
//! blocking calls (`Gpu::reduce_axes` and the rest). Kernels: `shaders/logsumexp_axes.wgsl`
//! and `shaders/logsumexp_axes_vec4.wgsl`; CPU mirror: `reference::logsumexp::reduce_axes` and
//! its neighbours; tests: the N-d section of `tests/logsumexp.rs`.

use super::*;
use crate::engine::geometry::check_len;

/// Which kernels an [`AxisOp`] runs. Every choice computes the same monoid; `Strided` and
/// `StridedVec4` give the same bits for the same segment length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AxisKernel {
    /// `Rows` where the folded array is rows (the reduced entries of a result one run of stride
    /// 1, the results along at most one dimension), else `StridedVec4` where the layout allows
    /// it, else `Strided`.
    #[default]
    Auto,
    /// [`RowOp`]'s kernels (`Strategy::Auto`): only where the folded array is rows.
    Rows,
    /// One invocation per result walking its entries where they lie, in segments whose states a
    /// second pass combines where a result has more entries than one invocation may walk.
    Strided,
    /// `Strided` with four neighbouring results per invocation, read as one 16-byte word per
    /// entry: where the innermost kept dimension has stride 1 and a multiple of 4 results, every
    /// other input stride is a multiple of 4 and the f32 input starts on 16 bytes; other layouts
    /// run `Strided`. On CPU adapters, with one reduced dimension and no mask, an invocation
    /// takes eight such groups of four, 32 results apart, so that one step of a SIMD thread reads
    /// 1 KiB of a row; the bits are the same.
    StridedVec4,
}

/// How an [`AxisOp`] writes its output and which kernels it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AxisOptions {
    /// Which kernels (see [`AxisKernel`]).
    pub kernel: AxisKernel,
    /// The output's strides in entries, one per dimension of the input (logsumexp ignores those
    /// of the reduced dimensions); `None` writes the result row-major and contiguous: the kept
    /// dimensions for logsumexp, the whole shape for softmax and log_softmax.
    pub output_strides: Option<Vec<usize>>,
    /// Byte offset of the output (a multiple of 4).
    pub output_offset: u64,
    /// The shape of a `where=` mask (JAX's and NumPy's), which broadcasts against the input's
    /// shape as NumPy broadcasts (trailing dimensions aligned, each 1 or the input's): the op
    /// then takes a second input, the mask packed 32 entries a word in row-major order of this
    /// shape ([`crate::masked::pack_mask`]). A masked entry is absent whatever it holds: its
    /// softmax is 0 and its log_softmax −inf, and a fully masked result gives log-sum-exp −inf
    /// (the masked family's semantics). `None`: no mask.
    pub where_shape: Option<Vec<usize>>,
    /// The shape of SciPy's `b` (`logsumexp(a, axis, b=b, return_sign=True)`), which
    /// broadcasts against the input's shape as `where_shape` does: the op (logsumexp only)
    /// then takes a second input, `b` as f32 in row-major order of this shape, and writes
    /// `log|Σ b·eˣ|` at the output and the signs (+1, −1, 0, or NaN) after them, at
    /// [`AxisOp::signs_offset`]. Entries with `b = 0` are ignored even where `x` is inf or NaN.
    /// Not with a mask (put `b = 0` where masked); `None`: no weights.
    pub b_shape: Option<Vec<usize>>,
    /// Compute the gradient of `func` with respect to its input, as the row family's
    /// `Gpu::{logsumexp_backward, softmax_backward, log_softmax_backward}` do along rows: input
    /// 0 is the forward's input `x` (logsumexp) or its output (softmax's `p`, log_softmax's
    /// `y`) in the op's layout; the second input (`record_masked`) the upstream gradient `g`, f32
    /// row-major of the forward output's shape (the input's; logsumexp's results, followed by
    /// the forward's logsumexp of each result); the output `dx`, one value an entry, laid out as
    /// a softmax output is.
    pub backward: bool,
    /// Entries of a result walked by one invocation before a second pass combines the states
    /// (at most 16,384); 0 lets the op choose from the shape and the adapter. The bits of a
    /// strided result depend on it, so tests that compare bits fix it.
    pub segment_len: usize,
}

/// An encoder-level op of the family over any axes of an N-d strided array ([`NdLayout`]),
/// with SciPy's axis semantics ([`Axes`]): `logsumexp` reduces the axes, `softmax` and
/// `log_softmax` normalise over them. The array is read where it lies: reducing axis 0 of a
/// row-major array walks its columns, neighbouring invocations reading neighbouring entries, with
/// no transpose. Where the folded array is rows it runs [`RowOp`]'s kernels.
///
/// ```no_run
/// use logdomain::{AxisOp, Gpu, NdLayout, RowFn};
/// let gpu = Gpu::new()?;
/// // The log-sum-exp over axis 0 of S = 1000 log-weights for each of N = 64 points.
/// let layout = NdLayout::contiguous(&[1000, 64]);
/// let op = AxisOp::new(&gpu, RowFn::Logsumexp, &layout, 0)?;
/// assert_eq!(op.output_shape(false), [64]);
/// assert_eq!(op.output_shape(true), [1, 64]);
/// # Ok::<(), logdomain::Error>(())
/// ```
pub struct AxisOp {
    func: RowFn,
    /// Whether the op is `func`'s backward ([`AxisOptions::backward`]).
    backward: bool,
    layout: NdLayout,
    mask: Vec<bool>,
    kernel: AxisKernel,
    segment_len: usize,
    sign_off: u64,
    program: Program,
    fill: Program,
}

/// The strides (in bits) of a `where=` mask of `where_shape` broadcast against `shape`.
fn where_strides(shape: &[usize], where_shape: &[usize]) -> Result<Vec<usize>, Error> {
    let (n, m) = (shape.len(), where_shape.len());
    let bad = || {
        Error::Shape(format!(
            "a mask of shape {where_shape:?} does not broadcast to the input's shape {shape:?}"
        ))
    };
    if m > n {
        return Err(bad());
    }
    let dense = contiguous_strides(where_shape);
    (0..n)
        .map(|d| match d.checked_sub(n - m) {
            None => Ok(0),
            Some(k) if where_shape[k] == 1 => Ok(0),
            Some(k) if where_shape[k] == shape[d] => Ok(dense[k]),
            Some(_) => Err(bad()),
        })
        .collect()
}

/// The kept and reduced dimensions of `layout` over `mask`, with output and `where=` strides.
fn fold_axes(
    per_result: bool,
    layout: &NdLayout,
    mask: &[bool],
    out_strides: &[usize],
    where_: &[usize],
) -> crate::engine::geometry::Folded {
    let out: Vec<usize> = if per_result {
        out_strides
            .iter()
            .zip(mask)
            .map(|(&s, &r)| if r { 0 } else { s })
            .collect()
    } else {
        out_strides.to_vec()
    };
    crate::engine::geometry::Folded::new(&layout.shape, &layout.strides, &out, where_, mask)
}

/// Contiguous output strides over `shape` (reduced dimensions of an output with one value per
/// result count as 1 entry).
fn default_out_strides(per_result: bool, shape: &[usize], mask: &[bool]) -> Vec<usize> {
    if per_result {
        let kept: Vec<usize> = shape
            .iter()
            .zip(mask)
            .map(|(&n, &r)| if r { 1 } else { n })
            .collect();
        contiguous_strides(&kept)
    } else {
        contiguous_strides(shape)
    }
}

/// The rows a folded array is, if it is rows: (rows, cols, input stride, output stride).
fn as_rows(func: RowFn, f: &crate::engine::geometry::Folded) -> Option<(u64, u64, u64, u64)> {
    let [red] = f.reduced[..] else { return None };
    if red.input != 1 || (!func.reduces() && red.output != 1) || f.kept.len() > 1 {
        return None;
    }
    let cols = red.n;
    let Some(k) = f.kept.first() else {
        return Some((1, cols, cols, cols));
    };
    let out_ok = if func.reduces() {
        k.output == 1
    } else {
        k.output >= cols
    };
    (k.input >= cols && out_ok).then_some((k.n, cols, k.input, k.output))
}

/// Whether the vec4 N-d kernels can read this folded layout.
fn axes_vec4_fits(f: &crate::engine::geometry::Folded, layout: &NdLayout, caps: &Caps) -> bool {
    let Some(inner) = f.kept.last() else {
        return false;
    };
    layout.format == InputFormat::F32
        && inner.input == 1
        && inner.n.is_multiple_of(4)
        && f.kept[..f.kept.len() - 1]
            .iter()
            .all(|d| d.input.is_multiple_of(4))
        && f.reduced
            .iter()
            .all(|d| d.input.is_multiple_of(4) || d.n == 1)
        && layout.offset.is_multiple_of(16)
        && caps.storage_align.is_multiple_of(16)
}

/// What an N-d op's binding 5 holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Extra {
    None,
    /// A `where=` mask, one bit an entry.
    Mask,
    /// SciPy's `b`, one f32 an entry: the weighted log-sum-exp with signs.
    Weights,
    /// The upstream gradient of a backward op (and logsumexp's lse after it).
    Grad,
}

/// The passes of the strided kernels.
struct AxesPlan {
    /// Entries from a weighted op's logs to its signs in the output.
    sign_off: u64,
    passes: Vec<Pass>,
    fills: Vec<Pass>,
    seg_len: u64,
    states: u64,
    input_end: u64,
    output_end: u64,
}

const AXES_WG: u32 = 64;
/// The longest segment the `_oct` kernels walk (`OCT_SEG_MAX` in logsumexp_axes_vec4.wgsl):
/// 15 blocks of 64 entries, the most their four counter levels hold.
const OCT_SEG_MAX: u64 = 960;

#[allow(clippy::too_many_arguments)]
fn plan_axes(
    func: RowFn,
    f: &crate::engine::geometry::Folded,
    layout: &NdLayout,
    output_offset: u64,
    vec4: bool,
    extra: Extra,
    seg_request: u64,
    caps: &Caps,
) -> Result<AxesPlan, Error> {
    use crate::engine::geometry::{box_span, index_box};
    let backward = extra == Extra::Grad;
    // One output value per result (else one per entry, softmax's or a backward's).
    let lse = func.reduces() && !backward;
    let (masked, weighted) = (extra == Extra::Mask, extra == Extra::Weights);
    // logsumexp's backward is element-wise: no walk, no sum.
    let no_sum = backward && func == RowFn::Logsumexp;
    let (positions, extent) = (f.positions(), f.extent());
    let eb = layout.format.bytes();
    let usable = usable_binding(caps, 64)?;
    let quad = if vec4 { 4 } else { 1 };
    let wg = pow2_at_most(AXES_WG, caps.max_wg);
    // Outermost first, as the boxes index them.
    let kept_n: Vec<u64> = f.kept.iter().map(|d| d.n).collect();
    let red_n: Vec<u64> = f.reduced.iter().map(|d| d.n).collect();
    // Segments: on CPU adapters short ones (a result's entries are walked down memory, and
    // neighbouring invocations share a segment, so that the invocations a core runs one after
    // another read the same pages: axis 0 of 4096 × 4096 on lavapipe takes 50 ms in segments of
    // 512 against 70 in one of 4096); on GPUs enough items to fill the device. Never more
    // partial states than half a binding holds, never longer than one invocation may walk.
    let units = (positions / quad).max(1);
    let most = (caps.max_binding / STATE_BYTES / 2 / positions.max(1)).max(1);
    let mut seg_len = if seg_request > 0 {
        seg_request
    } else {
        let wanted = if caps.cpu {
            extent.div_ceil(512)
        } else {
            32_768u64.div_ceil(units).min(extent.div_ceil(256))
        };
        let segs = wanted.min(most).max(extent.div_ceil(LANE_MAX)).max(1);
        extent.div_ceil(segs).max(1)
    };
    if seg_len > LANE_MAX {
        return Err(Error::Limit(format!(
            "a segment of {seg_len} entries is more than one invocation may walk ({LANE_MAX})"
        )));
    }
    // On CPU adapters eight quads an invocation (`axes_*_oct`): a step of a SIMD thread then
    // reads 1 KiB of a row rather than 128 bytes (one reduced dimension, no mask, segments
    // that the kernels' four counter levels hold).
    let oct = vec4 && caps.cpu && !masked && f.reduced.len() == 1 && seg_len <= OCT_SEG_MAX;
    // Invocations for k positions: a quad each, or `oct_units` in the WGSL.
    let invocations = |k: u64| {
        let quads = k / quad;
        if oct {
            (quads / 64) * 8 + (quads % 64).min(8)
        } else {
            quads
        }
    };
    // Entry ranges (lo, hi) of a batch of positions and reduced entries, input and output.
    let spans = |p0: u64, k: u64, r0: u64, r1: u64| -> (u64, u64, u64, u64) {
        let kb = index_box(&kept_n, p0, p0 + k - 1);
        let (klo, khi) = box_span(&kb, f.kept.iter().map(|d| d.input));
        let (kolo, kohi) = box_span(&kb, f.kept.iter().map(|d| d.output));
        if r1 <= r0 {
            return (klo, khi, kolo, kohi);
        }
        let rb = index_box(&red_n, r0, r1 - 1);
        let (rlo, rhi) = box_span(&rb, f.reduced.iter().map(|d| d.input));
        let (rolo, rohi) = if lse {
            (0, 0)
        } else {
            box_span(&rb, f.reduced.iter().map(|d| d.output))
        };
        (klo + rlo, khi + rhi, kolo + rolo, kohi + rohi)
    };
    // A weighted op writes its signs this many entries after its logs, a parts op its log1p(s)
    // after its maxima: past the first values' span.
    let sign_off = if (weighted || func == RowFn::LogsumexpParts) && positions > 0 {
        spans(0, positions, 0, 0).3 + 1
    } else {
        0
    };
    let in_end = |hi: u64| layout.offset + (hi + 1) * eb;
    let out_end = |hi: u64| output_offset + (hi + 1) * 4;
    loop {
        let segs = extent.div_ceil(seg_len).max(1);
        let split = segs > 1;
        // Batches (first position, positions, first segment, segments) whose windows fit.
        let fits = |p0: u64, k: u64, s0: u64, ns: u64| {
            let r1 = ((s0 + ns) * seg_len).min(extent);
            let (lo, hi, olo, ohi) = spans(p0, k, s0 * seg_len, r1);
            let reads = extent > 0;
            (!reads || (hi - lo + 1) * eb + caps.storage_align <= usable)
                && (ohi + sign_off - olo + 1) * 4 + caps.storage_align <= usable
        };
        // A weighted op walks its entries twice.
        let walks = if weighted { 2 } else { 1 };
        let item_work =
            (seg_len.min(extent) * quad * walks * if oct { 8 } else { 1 } + 1) * WORK_UNIT;
        let per = caps.per_dispatch(item_work).min(MAX_GROUPS * u64::from(wg));
        let mut batches_ok = Vec::new();
        let mut failed = false;
        let mut p0 = 0;
        while p0 < positions && !failed {
            let mut k = (positions - p0).min(per * quad);
            k -= k % quad;
            let mut ns = segs;
            loop {
                let items = invocations(k) * ns;
                if items <= per && fits(p0, k, 0, ns) {
                    break;
                }
                if k > quad {
                    k = (k / 2).max(quad);
                    k -= k % quad;
                } else if ns > 1 {
                    ns = ns.div_ceil(2);
                } else {
                    failed = true;
                    break;
                }
            }
            if failed {
                break;
            }
            let mut s0 = 0;
            while s0 < segs {
                let n = ns.min(segs - s0);
                if !fits(p0, k, s0, n) {
                    failed = true;
                    break;
                }
                batches_ok.push((p0, k, s0, n));
                s0 += n;
            }
            p0 += k;
        }
        if failed {
            if seg_len == 1 {
                return Err(Error::Limit(format!(
                    "one result's entries of this layout do not fit a storage binding ({} bytes)",
                    caps.max_binding
                )));
            }
            seg_len = seg_len.div_ceil(2);
            continue;
        }
        // The passes.
        let mut passes = Vec::new();
        let mut fills = Vec::new();
        let mut combines = Vec::new();
        let mut applies = Vec::new();
        let mut finishes = Vec::new();
        let mut input_end = 0u64;
        let mut output_end = 0u64;
        let final_base = positions * segs;
        let states = if split {
            final_base + if lse && !weighted { 0 } else { positions }
        } else {
            0
        };
        if states * STATE_BYTES > caps.max_binding {
            return Err(Error::Limit(format!(
                "{positions} results × {segs} segments of partial states exceed a storage \
                 binding ({} bytes)",
                caps.max_binding
            )));
        }
        let in_window = |lo: u64, hi: u64| -> Result<(Option<Window>, u32), Error> {
            if extent == 0 {
                return Ok((None, 0));
            }
            let first = layout.offset + lo * eb;
            let (w, idx) = window_of(first, (hi - lo + 1) * eb, caps.storage_align, eb);
            Ok((Some(w), (idx as u64).wrapping_sub(lo) as u32))
        };
        let out_window = |lo: u64, hi: u64| -> (Window, u32) {
            let first = output_offset + lo * 4;
            let (w, idx) = window_of(first, (hi - lo + 1) * 4, caps.storage_align, 4);
            (w, (idx as u64).wrapping_sub(lo) as u32)
        };
        let vec4_module = if vec4 {
            Module::LogsumexpAxesVec4
        } else {
            Module::LogsumexpAxes
        };
        let key = |entry: &'static str, module: Module| PipelineKey {
            module,
            entry,
            op: match (weighted, backward, func) {
                (true, _, _) => crate::codes::OP_LSE_WEIGHTED,
                (_, true, RowFn::Logsumexp) => crate::codes::OP_LSE_BWD_ND,
                (_, true, RowFn::Softmax) => crate::codes::OP_SM_BWD_ND,
                (_, true, _) => crate::codes::OP_LSM_BWD_ND,
                _ => op_code(func),
            },
            wg,
            reduce: u32::from(masked),
            dims: 0,
            in_f16: layout.format == InputFormat::F16,
            out_f16: false,
            vec: 0,
            lanes: 0,
        };
        let binds = |input: Option<Window>, output: Option<Window>| {
            vec![
                Bind::window(Src::Input(0), input),
                Bind::window(Src::Output, output),
                Bind::whole(Src::Scratch(0)),
                Bind::whole(Src::Aux),
                if extra == Extra::None {
                    Bind::dummy()
                } else {
                    Bind::whole(Src::Input(1))
                },
            ]
        };
        let common = Params {
            cols: u32_of(extent, "entries a result reduces")?,
            seg_len: u32_of(seg_len, "segment")?,
            seg_total: u32_of(segs, "segments")?,
            final_base: u32_of(final_base, "states")?,
            // The signs' (parts') offset in the output, or lse's after g in a backward's input.
            state_base: u32_of(
                if no_sum { positions } else { sign_off },
                "the second values' offset",
            )?,
            ..Params::default()
        };
        let pass = |entry, module, p: Params, groups, input, output| Pass {
            key: key(entry, module),
            params: bytemuck::bytes_of(&p).to_vec(),
            groups,
            bind: binds(input, output),
        };
        for &(p0, k, s0, ns) in &batches_ok {
            let r1 = ((s0 + ns) * seg_len).min(extent);
            let (lo, hi, olo, ohi) = spans(p0, k, s0 * seg_len, r1);
            let (input, in_offset) = in_window(lo, hi)?;
            if extent > 0 {
                input_end = input_end.max(in_end(hi).next_multiple_of(4));
            }
            let geo = Params {
                rows: k as u32,
                row_base: u32_of(p0, "positions")?,
                segs: ns as u32,
                seg_base: s0 as u32,
                in_offset,
                ..common
            };
            let items = invocations(k) * ns;
            let groups = items.div_ceil(u64::from(wg));
            let fill_items = k * if lse { 1 } else { ns };
            if !split {
                let (output, out_offset) = out_window(olo, ohi + sign_off);
                output_end = output_end.max(out_end(ohi + sign_off));
                let entry = match (oct, vec4) {
                    (true, _) => "axes_thread_oct",
                    (_, true) => "axes_thread_vec4",
                    _ => "axes_thread",
                };
                passes.push(pass(
                    entry,
                    vec4_module,
                    Params { out_offset, ..geo },
                    groups,
                    input,
                    Some(output),
                ));
                fills.push(pass(
                    "axes_fill",
                    Module::LogsumexpAxes,
                    Params {
                        out_offset,
                        segs: if lse { 1 } else { ns as u32 },
                        ..geo
                    },
                    fill_items.div_ceil(u64::from(wg)),
                    None,
                    Some(output),
                ));
                continue;
            }
            let entry = match (oct, vec4) {
                (true, _) => "axes_partial_oct",
                (_, true) => "axes_partial_vec4",
                _ => "axes_partial",
            };
            if !no_sum {
                passes.push(pass(entry, vec4_module, geo, groups, input, None));
            }
            if weighted {
                applies.push(pass("axes_terms", vec4_module, geo, groups, input, None));
            }
            if !lse {
                let (output, out_offset) = out_window(olo, ohi);
                output_end = output_end.max(out_end(ohi));
                let p = Params { out_offset, ..geo };
                let apply = match (oct, vec4) {
                    (true, _) => "axes_apply_oct",
                    (_, true) => "axes_apply_vec4",
                    _ => "axes_apply",
                };
                applies.push(pass(apply, vec4_module, p, groups, input, Some(output)));
                fills.push(pass(
                    "axes_fill",
                    Module::LogsumexpAxes,
                    p,
                    (k * ns).div_ceil(u64::from(wg)),
                    None,
                    Some(output),
                ));
            }
        }
        if split && !no_sum {
            // One combine per batch of positions (the batches' first segments).
            let per = caps
                .per_dispatch(segs * WORK_UNIT)
                .min(MAX_GROUPS * u64::from(wg));
            let mut p0 = 0;
            while p0 < positions {
                let mut k = (positions - p0).min(per);
                if lse {
                    while k > 1 && {
                        let (_, _, olo, ohi) = spans(p0, k, 0, 0);
                        (ohi + sign_off - olo + 1) * 4 + caps.storage_align > usable
                    } {
                        k = k.div_ceil(2);
                    }
                }
                let geo = Params {
                    rows: k as u32,
                    row_base: u32_of(p0, "positions")?,
                    segs: 1,
                    ..common
                };
                let output = if lse {
                    let (_, _, olo, ohi) = spans(p0, k, 0, 0);
                    let (w, out_offset) = out_window(olo, ohi + sign_off);
                    output_end = output_end.max(out_end(ohi + sign_off));
                    fills.push(pass(
                        "axes_fill",
                        Module::LogsumexpAxes,
                        Params { out_offset, ..geo },
                        k.div_ceil(u64::from(wg)),
                        None,
                        Some(w),
                    ));
                    Some((w, out_offset))
                } else {
                    None
                };
                // A weighted op's combine stores the maxima; its finish writes.
                let (combine_out, finish_out) = if weighted {
                    (None, output)
                } else {
                    (output, None)
                };
                combines.push(pass(
                    "axes_combine",
                    Module::LogsumexpAxes,
                    Params {
                        out_offset: combine_out.map_or(0, |o| o.1),
                        ..geo
                    },
                    k.div_ceil(u64::from(wg)),
                    None,
                    combine_out.map(|o| o.0),
                ));
                if let Some((w, out_offset)) = finish_out {
                    finishes.push(pass(
                        "axes_weighted_finish",
                        Module::LogsumexpAxes,
                        Params { out_offset, ..geo },
                        k.div_ceil(u64::from(wg)),
                        None,
                        Some(w),
                    ));
                }
                p0 += k;
            }
        }
        passes.extend(combines);
        passes.extend(applies);
        passes.extend(finishes);
        return Ok(AxesPlan {
            sign_off,
            passes,
            fills,
            seg_len,
            states,
            input_end,
            output_end,
        });
    }
}

/// The folded dimensions as the kernels read them: innermost first.
fn axes_params(f: &crate::engine::geometry::Folded) -> Result<AxesParams, Error> {
    let mut a = AxesParams {
        kept_dims: f.kept.len() as u32,
        red_dims: f.reduced.len() as u32,
        ..AxesParams::default()
    };
    for (i, d) in f.kept.iter().rev().enumerate() {
        a.kept_n[i] = u32_of(d.n, "a dimension")?;
        a.kept_in[i] = u32_of(d.input, "a stride")?;
        a.kept_out[i] = u32_of(d.output, "a stride")?;
        a.kept_mask[i] = u32_of(d.mask, "a stride")?;
    }
    for (i, d) in f.reduced.iter().rev().enumerate() {
        a.red_n[i] = u32_of(d.n, "a dimension")?;
        a.red_in[i] = u32_of(d.input, "a stride")?;
        a.red_out[i] = u32_of(d.output, "a stride")?;
        a.red_mask[i] = u32_of(d.mask, "a stride")?;
    }
    Ok(a)
}

impl AxisOp {
    /// Prepares `func` over `axes` of the array `layout` describes, writing the result
    /// contiguously at offset 0 (see [`AxisOptions`] for the rest).
    pub fn new(
        gpu: &Gpu,
        func: RowFn,
        layout: &NdLayout,
        axes: impl Into<Axes>,
    ) -> Result<AxisOp, Error> {
        AxisOp::with_options(gpu, func, layout, axes, &AxisOptions::default())
    }

    /// [`AxisOp::new`] with an output layout, a kernel choice and a segment length.
    pub fn with_options(
        gpu: &Gpu,
        func: RowFn,
        layout: &NdLayout,
        axes: impl Into<Axes>,
        options: &AxisOptions,
    ) -> Result<AxisOp, Error> {
        let input_end = layout.end()?;
        let ndim = layout.shape.len();
        let mask = axes.into().mask(ndim)?;
        let backward = options.backward;
        if backward
            && (func == RowFn::LogsumexpParts
                || options.where_shape.is_some()
                || options.b_shape.is_some())
        {
            return Err(Error::Unsupported(
                "backward ops are for logsumexp, softmax and log_softmax, without a mask or b"
                    .into(),
            ));
        }
        // One output value per result (a reduction), or one per entry.
        let per_result = func.reduces() && !backward;
        let out_strides = match &options.output_strides {
            Some(s) if s.len() != ndim => {
                return Err(Error::Shape(format!(
                    "{} output strides for {ndim} dimensions",
                    s.len()
                )));
            }
            Some(s) => s.clone(),
            None => default_out_strides(per_result, &layout.shape, &mask),
        };
        if !options.output_offset.is_multiple_of(4) {
            return Err(Error::Buffer(format!(
                "the output offset {} is not a multiple of 4",
                options.output_offset
            )));
        }
        let (extra, second_shape) = match (&options.where_shape, &options.b_shape) {
            (Some(_), Some(_)) => {
                return Err(Error::Unsupported(
                    "a mask and weights together: put b = 0 where the mask is false".into(),
                ));
            }
            (Some(ws), None) => (Extra::Mask, Some(ws)),
            (None, Some(_)) if func != RowFn::Logsumexp => {
                return Err(Error::Unsupported(format!(
                    "weights (b) are for logsumexp, not {func:?}"
                )));
            }
            (None, Some(bs)) => (Extra::Weights, Some(bs)),
            (None, None) => (Extra::None, None),
        };
        // The backward's g (and, for logsumexp, the forward's lse after it): of the output's
        // shape, softmax's and log_softmax's the input's, logsumexp's the results' with
        // keepdims, so that it broadcasts along the reduced axes.
        let grad_shape: Vec<usize> = if func == RowFn::Logsumexp {
            reduced_shape(&layout.shape, &mask, true)
        } else {
            layout.shape.clone()
        };
        let (extra, second_shape) = if backward {
            (Extra::Grad, Some(&grad_shape))
        } else {
            (extra, second_shape)
        };
        let (where_, where_words) = match second_shape {
            Some(ws) => {
                if ws.len() > MAX_DIMS {
                    return Err(Error::Shape(format!(
                        "a mask or b of {} dimensions; at most {MAX_DIMS}",
                        ws.len()
                    )));
                }
                let n: usize = ws.iter().product();
                let words = match extra {
                    Extra::Mask => n.div_ceil(32),
                    // g, then lse.
                    Extra::Grad if func == RowFn::Logsumexp => 2 * n,
                    _ => n,
                };
                (where_strides(&layout.shape, ws)?, Some(words.max(1)))
            }
            None => (Vec::new(), None),
        };
        let folded = fold_axes(per_result, layout, &mask, &out_strides, &where_);
        let caps = Caps::of(gpu);
        if let Some(words) = where_words
            && words as u64 * 4 > caps.max_binding
        {
            return Err(Error::Limit(format!(
                "a mask or b of {words} words is larger than a storage binding ({} bytes)",
                caps.max_binding
            )));
        }
        // The row kernels write a row's parts side by side; the N-d op writes them in two blocks.
        let rows = if where_words.is_some() || func == RowFn::LogsumexpParts || backward {
            None
        } else {
            as_rows(func, &folded)
        };
        let kernel = match (options.kernel, rows) {
            (AxisKernel::Rows, None) => {
                return Err(Error::Unsupported(
                    "AxisKernel::Rows: this layout and these axes are not rows (one reduced run \
                     of stride 1, the results along at most one dimension, no mask); use \
                     AxisKernel::Auto"
                        .into(),
                ));
            }
            (AxisKernel::Auto | AxisKernel::Rows, Some(_)) => AxisKernel::Rows,
            (AxisKernel::Strided, _) => AxisKernel::Strided,
            // The weighted and backward walks have no vec4 form.
            _ if matches!(extra, Extra::Weights | Extra::Grad) => AxisKernel::Strided,
            _ if axes_vec4_fits(&folded, layout, &caps) => AxisKernel::StridedVec4,
            _ => AxisKernel::Strided,
        };
        if kernel == AxisKernel::Rows {
            let (rows, cols, in_stride, out_stride) = rows.unwrap_or_default();
            let rl = RowsLayout {
                rows: rows as usize,
                cols: cols as usize,
                input_offset: layout.offset,
                input_stride: in_stride as usize,
                input_format: layout.format,
                output_offset: options.output_offset,
                output_stride: out_stride as usize,
                output_format: OutputFormat::F32,
            };
            let op = RowOp::new(gpu, func, rl, Strategy::Auto)?;
            return Ok(AxisOp {
                func,
                backward,
                layout: layout.clone(),
                mask,
                kernel,
                segment_len: cols as usize,
                sign_off: 0,
                program: op.program,
                fill: op.fill,
            });
        }
        let plan = plan_axes(
            func,
            &folded,
            layout,
            options.output_offset,
            kernel == AxisKernel::StridedVec4,
            extra,
            options.segment_len as u64,
            &caps,
        )?;
        let aux = bytemuck::bytes_of(&axes_params(&folded)?).to_vec();
        let input_bytes = if plan.input_end > 0 {
            input_end.next_multiple_of(4).max(plan.input_end)
        } else {
            0
        };
        let mut inputs = vec![input_bytes];
        inputs.extend(where_words.map(|w| w as u64 * 4));
        let program = Program::new(
            gpu,
            vec![Step::Passes(plan.passes)],
            Some((aux.clone(), 0)),
            &[plan.states * STATE_BYTES],
            inputs,
            plan.output_end,
        )?;
        let fill = Program::new(
            gpu,
            vec![Step::Passes(plan.fills)],
            Some((aux, 0)),
            &[],
            Vec::new(),
            plan.output_end,
        )?;
        Ok(AxisOp {
            func,
            backward,
            layout: layout.clone(),
            mask,
            kernel,
            segment_len: plan.seg_len as usize,
            sign_off: plan.sign_off,
            program,
            fill,
        })
    }

    /// The function this op computes.
    pub fn function(&self) -> RowFn {
        self.func
    }

    /// The input's layout.
    pub fn layout(&self) -> &NdLayout {
        &self.layout
    }

    /// Which dimensions are reduced (SciPy's `axis`, resolved).
    pub fn reduced(&self) -> &[bool] {
        &self.mask
    }

    /// The result's shape: the input's for softmax, log_softmax and every backward op; the kept
    /// dimensions for logsumexp, with `keepdims` the reduced ones as 1.
    pub fn output_shape(&self, keepdims: bool) -> Vec<usize> {
        if self.func.reduces() && !self.backward {
            reduced_shape(&self.layout.shape, &self.mask, keepdims)
        } else {
            self.layout.shape.clone()
        }
    }

    /// The kernels in use (`Auto` resolved).
    pub fn kernel(&self) -> AxisKernel {
        self.kernel
    }

    /// Entries of a result one invocation walks (see [`AxisOptions::segment_len`]); for `Rows`,
    /// the row length.
    pub fn segment_len(&self) -> usize {
        self.segment_len
    }

    /// Number of compute dispatches one `record` makes.
    pub fn dispatches(&self) -> usize {
        self.program.dispatches()
    }

    /// The input buffer must be at least this many bytes.
    pub fn input_bytes_needed(&self) -> u64 {
        self.program.input_bytes(0)
    }

    /// The output buffer must be at least this many bytes.
    pub fn output_bytes_needed(&self) -> u64 {
        self.program.output_bytes()
    }

    /// Records the op: reads `input`, writes `output` (distinct buffers with
    /// `BufferUsages::STORAGE`, at least [`AxisOp::input_bytes_needed`] and
    /// [`AxisOp::output_bytes_needed`] bytes). An op with a mask takes it through
    /// [`AxisOp::record_masked`].
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.program.record(encoder, &[input], output)
    }

    /// [`AxisOp::record`] of an op made with [`AxisOptions::where_shape`] or
    /// [`AxisOptions::b_shape`]: `mask` holds the packed mask, or `b` ([`AxisOp::mask_bytes_needed`]
    /// bytes at least).
    pub fn record_masked(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        input: &wgpu::Buffer,
        mask: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.program.record(encoder, &[input, mask], output)
    }

    /// The mask's (or `b`'s) buffer must be at least this many bytes (0 without either).
    pub fn mask_bytes_needed(&self) -> u64 {
        self.program.input_bytes(1)
    }

    /// Entries from a weighted op's logs to its signs in the output, or from a parts op's maxima
    /// to its log1p(s) (0 for other ops).
    pub fn signs_offset(&self) -> usize {
        self.sign_off as usize
    }

    /// Records a fill of exactly the output entries this op writes with
    /// [`crate::SENTINEL_BITS`].
    pub fn record_sentinel_fill(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.fill.record(encoder, &[], output)
    }

    /// The GPU time of one run on resident buffers (see [`RowOp::kernel_time`]).
    pub fn kernel_time(
        &self,
        gpu: &Gpu,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Option<std::time::Duration>, Error> {
        self.program.kernel_time(gpu, &[input], output)
    }
}

/// A result of the N-d calls: its shape and its values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct NdArray {
    /// The shape (SciPy's: the kept dimensions, with `keepdims` the reduced ones as 1).
    pub shape: Vec<usize>,
    /// The values, row-major (C order).
    pub values: Vec<f32>,
}

impl Gpu {
    /// `func` over `axes` of a row-major array of `shape` (SciPy's `logsumexp(x, axis,
    /// keepdims)`, `softmax(x, axis)` and `log_softmax(x, axis)`; `keepdims` only shapes a
    /// logsumexp's result).
    ///
    /// ```no_run
    /// use logdomain::{Axes, RowFn};
    /// let gpu = logdomain::Gpu::new()?;
    /// // log-mean-exp over S = 3 samples (axis 0) of 2 log-weights each.
    /// let w = [0.0f32, -1.0, 0.5, -2.0, 1.0, -3.0];
    /// let lse = gpu.reduce_axes(RowFn::Logsumexp, &w, &[3, 2], 0, false)?;
    /// assert_eq!(lse.shape, [2]);
    /// let all = gpu.reduce_axes(RowFn::Logsumexp, &w, &[3, 2], Axes::All, true)?;
    /// assert_eq!(all.shape, [1, 1]);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn reduce_axes(
        &self,
        func: RowFn,
        x: &[f32],
        shape: &[usize],
        axes: impl Into<Axes>,
        keepdims: bool,
    ) -> Result<NdArray, Error> {
        let layout = NdLayout::contiguous(shape);
        self.run_strided(func, Values::F32(x), &layout, axes.into(), keepdims)
    }

    /// [`Gpu::reduce_axes`] of a strided array: `x` holds the entries `layout` addresses
    /// (`layout.offset` counts bytes into `x`; the layout's format is taken as f32).
    pub fn reduce_strided(
        &self,
        func: RowFn,
        x: &[f32],
        layout: &NdLayout,
        axes: impl Into<Axes>,
        keepdims: bool,
    ) -> Result<NdArray, Error> {
        self.run_strided(func, Values::F32(x), layout, axes.into(), keepdims)
    }

    /// [`Gpu::reduce_strided`] of f16 entries (read as f16 on the GPU, computed in f32; the
    /// layout's format is taken as f16).
    pub fn reduce_strided_f16(
        &self,
        func: RowFn,
        x: &[half::f16],
        layout: &NdLayout,
        axes: impl Into<Axes>,
        keepdims: bool,
    ) -> Result<NdArray, Error> {
        self.run_strided(func, Values::F16(x), layout, axes.into(), keepdims)
    }

    /// [`Gpu::reduce_axes`] over the entries where `where_` is true (JAX's and NumPy's
    /// `where=`): `where_` is row-major of `where_shape`, which broadcasts against `shape` as
    /// NumPy broadcasts. A masked entry is absent whatever it holds; a fully masked result is
    /// log-sum-exp −inf, softmax all 0, log_softmax all −inf.
    ///
    /// ```no_run
    /// use logdomain::RowFn;
    /// let gpu = logdomain::Gpu::new()?;
    /// // Attention scores (2 queries × 3 keys), the last key padding for every query.
    /// let x = [0.5f32, 1.0, 9.0, 2.0, 0.0, f32::NAN];
    /// let p = gpu.reduce_axes_masked(RowFn::Softmax, &x, &[2, 3], &[true, true, false], &[3], -1, false)?;
    /// assert_eq!((p.values[2], p.values[5]), (0.0, 0.0));
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn reduce_axes_masked(
        &self,
        func: RowFn,
        x: &[f32],
        shape: &[usize],
        where_: &[bool],
        where_shape: &[usize],
        axes: impl Into<Axes>,
        keepdims: bool,
    ) -> Result<NdArray, Error> {
        check_len("where_", where_, where_shape.iter().product())?;
        let layout = NdLayout::contiguous(shape);
        let mask = crate::engine::geometry::pack_mask(where_);
        self.run_strided_with(
            func,
            Values::F32(x),
            &layout,
            axes.into(),
            keepdims,
            Some((Extra::Mask, where_shape, &mask)),
        )
    }

    /// SciPy's `logsumexp(x, axis, b=b, keepdims, return_sign=True)` of a row-major array of
    /// `shape`: `(log|Σ b·eˣ|, sign)` over `axes`, `b` row-major of `b_shape`, which broadcasts
    /// against `shape` as NumPy broadcasts. Entries with `b = 0` are ignored even where `x` is
    /// inf or NaN; a zero sum gives (−inf, 0). (SciPy without `return_sign` gives NaN where the
    /// sign is −1.)
    ///
    /// ```no_run
    /// use logdomain::Axes;
    /// let gpu = logdomain::Gpu::new()?;
    /// let x = [0.0f32, 1.0, 2.0, 3.0];
    /// let (log, sign) = gpu.reduce_axes_weighted(&x, &[2, 2], &[1.0, -2.0], &[2], 1, false)?;
    /// assert_eq!(sign.values, [-1.0, -1.0]); // e⁰ − 2e¹ < 0
    /// assert!((log.values[0] - (2.0 * 1f32.exp() - 1.0).ln()).abs() < 1e-6);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn reduce_axes_weighted(
        &self,
        x: &[f32],
        shape: &[usize],
        b: &[f32],
        b_shape: &[usize],
        axes: impl Into<Axes>,
        keepdims: bool,
    ) -> Result<(NdArray, NdArray), Error> {
        check_len("b", b, b_shape.iter().product())?;
        let layout = NdLayout::contiguous(shape);
        let both = self.run_strided_with(
            RowFn::Logsumexp,
            Values::F32(x),
            &layout,
            axes.into(),
            keepdims,
            Some((Extra::Weights, b_shape, bytemuck::cast_slice(b))),
        )?;
        let n = both.values.len() / 2;
        let signs = NdArray {
            shape: both.shape.clone(),
            values: both.values[n..].to_vec(),
        };
        let mut logs = both;
        logs.values.truncate(n);
        Ok((logs, signs))
    }

    /// Each result's log-sum-exp over `axes` of a row-major array of `shape` as a state of the
    /// kernels' monoid ([`LseState`]), for merging chunks: states of disjoint pieces of the same
    /// results (say, Dask chunks along a reduced axis), computed anywhere, combine with
    /// [`LseState::combine`] into the results' log-sum-exp. Returns the result's shape (SciPy's,
    /// with `keepdims`) and one state per result, row-major.
    ///
    /// ```no_run
    /// let gpu = logdomain::Gpu::new()?;
    /// let (a, b) = ([0.0f32, 1.0, 2.0, 3.0], [4.0f32, 5.0]); // rows 0..2 and 2..3 of (3, 2)
    /// let (_, top) = gpu.reduce_axes_partial(&a, &[2, 2], 0, false)?;
    /// let (_, bottom) = gpu.reduce_axes_partial(&b, &[1, 2], 0, false)?;
    /// let lse: Vec<f32> = top.iter().zip(&bottom).map(|(t, b)| t.combine(*b).logsumexp()).collect();
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn reduce_axes_partial(
        &self,
        x: &[f32],
        shape: &[usize],
        axes: impl Into<Axes>,
        keepdims: bool,
    ) -> Result<(Vec<usize>, Vec<LseState>), Error> {
        let layout = NdLayout::contiguous(shape);
        let both = self.run_strided(
            RowFn::LogsumexpParts,
            Values::F32(x),
            &layout,
            axes.into(),
            keepdims,
        )?;
        let n = both.values.len() / 2;
        let states = (0..n)
            .map(|i| LseState::from_parts(both.values[i], both.values[n + i]))
            .collect();
        Ok((both.shape, states))
    }

    /// The gradient of [`Gpu::reduce_axes`]'s logsumexp over `axes` with respect to `x`, given
    /// the upstream gradient `g` and the forward's result `lse` (one value each per result,
    /// row-major): `g · exp(x − lse)`, with the row family's `logsumexp_backward` semantics
    /// (NaN where lse is NaN or +inf or x is NaN, 0 at x = −inf). `shape`'s values.
    ///
    /// ```no_run
    /// use logdomain::RowFn;
    /// let gpu = logdomain::Gpu::new()?;
    /// let x = [0.0f32, 1.0, 2.0, 3.0];
    /// let lse = gpu.reduce_axes(RowFn::Logsumexp, &x, &[2, 2], 0, false)?;
    /// let dx = gpu.logsumexp_backward_axes(&x, &[2, 2], &lse.values, &[1.0, 1.0], 0)?;
    /// assert!((dx.values[0] + dx.values[2] - 1.0).abs() < 1e-6); // a softmax down axis 0
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn logsumexp_backward_axes(
        &self,
        x: &[f32],
        shape: &[usize],
        lse: &[f32],
        g: &[f32],
        axes: impl Into<Axes>,
    ) -> Result<NdArray, Error> {
        let axes = axes.into();
        let mask = axes.mask(shape.len())?;
        let n: usize = reduced_shape(shape, &mask, true).iter().product();
        check_len("lse", lse, n)?;
        check_len("g", g, n)?;
        let mut words: Vec<u32> = bytemuck::cast_slice(g).to_vec();
        words.extend_from_slice(bytemuck::cast_slice(lse));
        self.run_backward(RowFn::Logsumexp, x, shape, &words, axes)
    }

    /// The gradient of [`Gpu::reduce_axes`]'s softmax over `axes`, from its output `p` and the
    /// upstream gradient `g` (both of `shape`): `p · (g − Σ g p)`, with the row family's
    /// `softmax_backward` semantics.
    pub fn softmax_backward_axes(
        &self,
        p: &[f32],
        g: &[f32],
        shape: &[usize],
        axes: impl Into<Axes>,
    ) -> Result<NdArray, Error> {
        self.run_backward_of_output(RowFn::Softmax, p, g, shape, axes.into())
    }

    /// The gradient of [`Gpu::reduce_axes`]'s log_softmax over `axes`, from its output `y` and
    /// the upstream gradient `g` (both of `shape`): `g − exp(y) · Σ g`, with the row family's
    /// `log_softmax_backward` semantics.
    pub fn log_softmax_backward_axes(
        &self,
        y: &[f32],
        g: &[f32],
        shape: &[usize],
        axes: impl Into<Axes>,
    ) -> Result<NdArray, Error> {
        self.run_backward_of_output(RowFn::LogSoftmax, y, g, shape, axes.into())
    }

    fn run_backward_of_output(
        &self,
        func: RowFn,
        y: &[f32],
        g: &[f32],
        shape: &[usize],
        axes: Axes,
    ) -> Result<NdArray, Error> {
        check_len("g", g, shape.iter().product())?;
        self.run_backward(func, y, shape, bytemuck::cast_slice(g), axes)
    }

    fn run_backward(
        &self,
        func: RowFn,
        y: &[f32],
        shape: &[usize],
        words: &[u32],
        axes: Axes,
    ) -> Result<NdArray, Error> {
        let layout = NdLayout::contiguous(shape);
        self.run_strided_with(
            func,
            Values::F32(y),
            &layout,
            axes,
            false,
            Some((Extra::Grad, shape, words)),
        )
    }

    fn run_strided(
        &self,
        func: RowFn,
        x: Values<'_>,
        layout: &NdLayout,
        axes: Axes,
        keepdims: bool,
    ) -> Result<NdArray, Error> {
        self.run_strided_with(func, x, layout, axes, keepdims, None)
    }

    /// The blocking path of the N-d calls, with a packed mask or `b` of a shape if any (a
    /// weighted op's values are its logs then its signs).
    fn run_strided_with(
        &self,
        func: RowFn,
        x: Values<'_>,
        layout: &NdLayout,
        axes: Axes,
        keepdims: bool,
        second: Option<(Extra, &[usize], &[u32])>,
    ) -> Result<NdArray, Error> {
        let (len, format, bytes) = x.upload();
        let layout = NdLayout {
            format,
            ..layout.clone()
        };
        let end = layout.end()?;
        if (bytes.len() as u64) < end {
            return Err(Error::InputLength {
                what: "x",
                expected: end.div_ceil(format.bytes()) as usize,
                actual: len,
            });
        }
        let options = match second {
            Some((Extra::Mask, shape, _)) => AxisOptions {
                where_shape: Some(shape.to_vec()),
                ..AxisOptions::default()
            },
            Some((Extra::Weights, shape, _)) => AxisOptions {
                b_shape: Some(shape.to_vec()),
                ..AxisOptions::default()
            },
            Some((Extra::Grad, _, _)) => AxisOptions {
                backward: true,
                ..AxisOptions::default()
            },
            _ => AxisOptions::default(),
        };
        let op = AxisOp::with_options(self, func, &layout, axes, &options)?;
        let shape = op.output_shape(keepdims);
        let n: usize = shape.iter().product();
        if n == 0 {
            return Ok(NdArray {
                shape,
                values: Vec::new(),
            });
        }
        let mut inputs: Vec<&[u8]> = vec![&bytes];
        if let Some((_, _, words)) = second {
            // A binding is never empty: an empty mask, b or g is bound as one zero word.
            inputs.push(if words.is_empty() {
                &[0u8; 4][..]
            } else {
                bytemuck::cast_slice(words)
            });
        }
        let values = if op.signs_offset() > 0 {
            // The logs, then the signs `signs_offset` (= n, the output being contiguous) after.
            self.run_program_filled(op.program(), &inputs, 2 * n, &[], SENTINEL_BITS)?
                .0
        } else {
            self.run_program_filled(op.program(), &inputs, n, &[], SENTINEL_BITS)?
                .0
        };
        Ok(NdArray { shape, values })
    }
}

#[cfg(feature = "ndarray")]
impl Gpu {
    /// `func` over `axes` of an `ndarray` array or view of f32 of any dimension (SciPy's
    /// semantics, as [`Gpu::reduce_axes`]): read where it lies when its entries fill one block
    /// of memory in some order (C or Fortran order, permuted axes), copied to C order first
    /// otherwise (stepped slices, negative strides, broadcasts). The result is C-ordered.
    ///
    /// ```no_run
    /// # #[cfg(feature = "ndarray")] {
    /// use logdomain::RowFn;
    /// let gpu = logdomain::Gpu::new()?;
    /// let w = ndarray::Array2::<f32>::zeros((1000, 64));
    /// let lse = gpu.reduce_array(RowFn::Logsumexp, &w, 0, false)?; // over the 1000 samples
    /// assert_eq!(lse.shape(), [64]);
    /// let t = gpu.reduce_array(RowFn::Logsumexp, &w.t(), 1, false)?; // the transpose, in place
    /// assert_eq!(t, lse);
    /// # }
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn reduce_array<S, D>(
        &self,
        func: RowFn,
        a: &ndarray::ArrayBase<S, D>,
        axes: impl Into<Axes>,
        keepdims: bool,
    ) -> Result<ndarray::ArrayD<f32>, Error>
    where
        S: ndarray::Data<Elem = f32>,
        D: ndarray::Dimension,
    {
        let view = a.view().into_dyn();
        let shape = view.shape().to_vec();
        let axes = axes.into();
        let result = match view.as_slice_memory_order() {
            Some(data) if view.strides().iter().all(|&s| s >= 0) => {
                let layout = NdLayout {
                    strides: view.strides().iter().map(|&s| s as usize).collect(),
                    ..NdLayout::contiguous(&shape)
                };
                self.reduce_strided(func, data, &layout, axes, keepdims)?
            }
            _ => {
                let owned = view.as_standard_layout();
                let data = owned.as_slice().ok_or_else(|| {
                    Error::Shape("the array could not be laid out contiguously".into())
                })?;
                self.reduce_axes(func, data, &shape, axes, keepdims)?
            }
        };
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&result.shape), result.values)
            .map_err(|e| Error::Shape(e.to_string()))
    }
}

impl AxisOp {
    pub(crate) fn program(&self) -> &Program {
        &self.program
    }

    /// This op as a step of another program: its input and output bound to `from` and `to`.
    pub(crate) fn into_step(self, from: Src, to: Src) -> Step {
        Step::Sub(Box::new(self.program), vec![from], to)
    }
}

crate::engine::op::lowered!(AxisOp);

impl Op for AxisOp {
    fn input_names(&self) -> Vec<&'static str> {
        let mut names = vec!["x (the N-d layout's entries)"];
        if self.backward {
            names.push("g (the upstream gradient; logsumexp's lse after it)");
        } else if self.mask_bytes_needed() > 0 {
            names.push("where (the mask, 32 entries a word) or b");
        }
        names
    }
}

#[cfg(test)]
mod tests {
    /// The longest segment the host gives the `_oct` kernels, as their WGSL declares it, and the
    /// most blocks their four counter levels hold.
    #[test]
    fn oct_segment_matches_wgsl() {
        let src = crate::engine::shaders::logsumexp_axes_vec4_module();
        let module = naga::front::wgsl::parse_str(&src).expect("the axes vec4 module parses");
        let constant =
            |name: &str| u64::from(crate::engine::shaders::wgsl_u32_const(&module, name));
        assert_eq!(constant("OCT_SEG_MAX"), super::OCT_SEG_MAX);
        assert_eq!(super::OCT_SEG_MAX, 15 * constant("BLOCK"));
    }
}
