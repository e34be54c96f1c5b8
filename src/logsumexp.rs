//! The log-sum-exp family on the GPU: row-wise `logsumexp`, `softmax` and `log_softmax`.
//!
//! [`RowOp`] is the encoder-level op: prepared once for a [`RowsLayout`] (pipelines compiled,
//! parameter and scratch buffers made), then recorded into any number of caller-owned
//! `wgpu::CommandEncoder`s over caller-owned buffers, with no submit and no readback. The blocking
//! conveniences [`crate::Gpu::logsumexp`], [`crate::Gpu::softmax`] and
//! [`crate::Gpu::log_softmax`] sit on top of it.
//!
//! The kernel strategy is chosen from the shape and the adapter (see [`Strategy`]); every
//! strategy computes the same monoid (`shaders/common.wgsl`, mirrored in
//! [`crate::reference::logsumexp`]) and meets the same accuracy contract.

use crate::engine::blocking::Values;
use crate::engine::device::Gpu;
pub use crate::engine::geometry::{
    Axes, InputFormat, MAX_DIMS, NdLayout, OutputFormat, contiguous_strides, reduced_shape,
};
use crate::engine::geometry::{
    Caps, LANE_MAX, MAX_GROUPS, WG_MAX, WORK_UNIT, Window, batches, shape_err, u32_of,
    usable_binding, window, window_of,
};
use crate::engine::op::Op;
use crate::engine::pipelines::{Module, PipelineKey};
use crate::engine::program::{Bind, Pass, Program, Src, Step};
use crate::engine::shaders::{AxesParams, Params, SENTINEL_BITS, SENTINEL_F16_BITS, STATE_BYTES};
use crate::error::Error;
use crate::reference::logsumexp::LseState;
pub use crate::reference::logsumexp::RowFn;

/// The kernel's `OP` for `func`.
fn op_code(func: RowFn) -> u32 {
    match func {
        RowFn::Logsumexp => crate::codes::OP_LOGSUMEXP,
        RowFn::Softmax => crate::codes::OP_SOFTMAX,
        RowFn::LogSoftmax => crate::codes::OP_LOG_SOFTMAX,
        RowFn::LogsumexpParts => crate::codes::OP_LSE_PARTS,
    }
}

/// How rows are mapped onto the device. `Auto` picks by row length, row count and what the
/// adapter has; the others are for benchmarks and tests (every strategy gives results within
/// the same accuracy contract).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Choose from the shape and the adapter.
    #[default]
    Auto,
    /// One invocation per row: very short rows.
    ThreadPerRow,
    /// One subgroup per row, no workgroup barrier (needs `Features::SUBGROUP`).
    SubgroupPerRow,
    /// One workgroup per row, a fan-in-8 tree in workgroup memory: long rows.
    WorkgroupPerRow,
    /// Rows split into segments, one per workgroup, whose partial states a second pass combines:
    /// few long rows, or a row larger than one storage binding (GPUs).
    SplitRow,
    /// As `SplitRow` with one segment per invocation and no workgroup barrier (software adapters,
    /// where barriers are dear).
    SplitRowThreads,
    /// Rows read as 16-byte vec4 words by a power-of-two number of lanes of one subgroup each
    /// (up to the subgroup's size: short rows put several rows in a subgroup), no workgroup
    /// barrier (needs `Features::SUBGROUP`). Each lane loads its words before using any, and a
    /// row of up to 64 entries a lane is read once, also by softmax and log_softmax. For f32
    /// rows that start on 16 bytes and have a multiple of 4 entries (offset and stride too);
    /// other layouts run `SubgroupPerRow` (see [`RowOp::strategy`]). GPUs.
    SubgroupVec4,
    /// One workgroup per row, read as vec4 words; a row of up to 64 entries an invocation is
    /// read once, also by softmax and log_softmax. Same layouts as `SubgroupVec4`; others run
    /// `WorkgroupPerRow`. GPUs.
    WorkgroupVec4,
    /// One invocation per row, read (and, for softmax / log_softmax into rows that start on 16
    /// bytes, written) as vec4 words, a word at a time into four state chains. Software
    /// adapters, where each lane's load or store is an instruction of its own. Same layouts as
    /// `SubgroupVec4`, and also f16 inputs whose rows are whole 16-byte words (a multiple of 8
    /// entries, `input_stride` too, `input_offset` a multiple of 16 bytes; the same bits as the
    /// f32 kernel on the same values); others run `ThreadPerRow`.
    ThreadVec4,
}

/// Where a batch of rows lives in the caller's buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowsLayout {
    /// Number of rows (`0` is allowed and records nothing).
    pub rows: usize,
    /// Entries per row (`0` is allowed: logsumexp of an empty row is −inf).
    pub cols: usize,
    /// Byte offset of the first row in the input buffer (a multiple of the entry's size; any
    /// alignment beyond that is handled internally).
    pub input_offset: u64,
    /// Entries from one input row's start to the next (at least `cols`), e.g. the padded row
    /// pitch of a texture copy.
    pub input_stride: usize,
    /// How the input's entries are stored (f32 or f16).
    pub input_format: InputFormat,
    /// Byte offset of the first output value (a multiple of 4).
    pub output_offset: u64,
    /// Entries between output rows of softmax / log_softmax (at least `cols`; even for f16
    /// outputs of more than one row, so that every row starts on a 4-byte word); logsumexp
    /// writes `rows` consecutive values and ignores it.
    pub output_stride: usize,
    /// How the output's entries are stored: f32, or f16 for softmax and log_softmax (two to a
    /// word, the first in the low half; an entry that shares a word with a row's last entry but
    /// lies past it is left as it was).
    pub output_format: OutputFormat,
}

impl RowsLayout {
    /// A dense row-major `rows × cols` matrix at offset 0, written densely at offset 0.
    pub fn contiguous(rows: usize, cols: usize) -> Self {
        RowsLayout {
            rows,
            cols,
            input_offset: 0,
            input_stride: cols,
            input_format: InputFormat::F32,
            output_offset: 0,
            output_stride: cols,
            output_format: InputFormat::F32,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct RowPass {
    pub entry: &'static str,
    pub wg: u32,
    pub params: Params,
    pub groups: u64,
    pub input: Option<Window>,
    pub output: Option<Window>,
    /// (`VEC`, `LANES`, vec4 stores) of a vec4 entry point: the last is whether its output
    /// window is bound as vec4 words (`shaders/logsumexp_out_vec4.wgsl`).
    pub vec4: Option<(u32, u32, bool)>,
}

#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub strategy: Strategy,
    pub passes: Vec<RowPass>,
    pub fills: Vec<RowPass>,
    pub state_count: u64,
    pub input_end: u64,
    pub output_end: u64,
}

/// Rows up to this long get thread-per-row pipelines specialised for their length (the
/// `ROW_COLS` override): rows of one block of the scalar walk (`BLOCK` in
/// `shaders/logsumexp.wgsl`).
const ROW_COLS_MAX: usize = 64;
/// The same for `row_thread_vec4`: rows of one block of its walk, 64 words (`BLOCK` words of four
/// f32 entries, or `BLOCK / 2` of eight f16 ones). Its loops then have constant trip counts:
/// 65,536 × 256 on lavapipe 20.2 -> 17.8 ms (logsumexp), on llvmpipe through GL 29.9 -> 15.9 ms.
/// Longer rows gain nothing from it (their blocks' walk is a loop either way).
const VEC4_ROW_COLS_MAX: usize = 256;
const FILL_WG: u32 = 64;
fn mul(a: u64, b: u64) -> Result<u64, Error> {
    a.checked_mul(b).ok_or_else(|| shape_err("rows × stride"))
}

/// The vec4 pipelines are specialised for the row length (the `ROW_COLS` override: constant trip
/// counts, which compilers unroll) where a row is at most this many tiles.
const VEC4_TILES_MAX: usize = 16;
/// Vec4 words an invocation holds at most (`VEC_MAX` in `shaders/logsumexp_vec4.wgsl`).
const VEC_MAX: u64 = 16;
/// Vec4 words an invocation loads at once when its part of the row is not kept (a reduction, or
/// a row longer than `VEC_MAX` words an invocation).
const VEC_STREAM: u64 = 4;

/// Whether the vec4 entry points can read this layout: f32 entries in and out, every row
/// starting on a 16-byte word of its window and a whole number of words long.
fn vec4_fits(l: &RowsLayout, caps: &Caps) -> bool {
    l.input_format == InputFormat::F32
        && l.output_format == InputFormat::F32
        && l.cols > 0
        && l.cols.is_multiple_of(4)
        && (l.rows <= 1 || l.input_stride.is_multiple_of(4))
        && l.input_offset.is_multiple_of(16)
        && caps.storage_align.is_multiple_of(16)
}

/// Whether `ThreadVec4` can read this layout's f16 entries as 16-byte words of eight: rows of a
/// multiple of 8 entries that start on 16 bytes (`input_stride` a multiple of 8, `input_offset`
/// of 16), f32 output.
fn vec4_f16_fits(l: &RowsLayout, caps: &Caps) -> bool {
    l.input_format == InputFormat::F16
        && l.output_format == InputFormat::F32
        && l.cols > 0
        && l.cols.is_multiple_of(8)
        && (l.rows <= 1 || l.input_stride.is_multiple_of(8))
        && l.input_offset.is_multiple_of(16)
        && caps.storage_align.is_multiple_of(16)
}

/// Whether a vec4 kernel can also store vec4 words: softmax and log_softmax (which write whole
/// rows) where each output row starts on 16 bytes (`output_offset` a multiple of 16,
/// `output_stride` of 4; `vec4_fits` has the rest). The output window is then whole 16-byte
/// words.
fn vec4_out_fits(func: RowFn, l: &RowsLayout) -> bool {
    !func.reduces()
        && l.output_offset.is_multiple_of(16)
        && (l.rows <= 1 || l.output_stride.is_multiple_of(4))
}

/// The scalar strategy a vec4 strategy runs as where the layout does not allow vec4 reads.
fn scalar_form(strategy: Strategy) -> Strategy {
    match strategy {
        Strategy::SubgroupVec4 => Strategy::SubgroupPerRow,
        Strategy::WorkgroupVec4 => Strategy::WorkgroupPerRow,
        Strategy::ThreadVec4 => Strategy::ThreadPerRow,
        s => s,
    }
}

/// (`VEC`, `LANES`) of a vec4 strategy for rows of `cols` entries: the lanes (or invocations)
/// per row, and the words each loads at once — all of its part of the row where softmax and
/// log_softmax can keep it (up to `VEC_MAX`), else `VEC_STREAM` at a time.
fn vec4_geometry(func: RowFn, strategy: Strategy, cols: u64, caps: &Caps) -> (u32, u32) {
    let words = cols / 4;
    let lanes = vec4_lanes(strategy, cols, caps);
    let per_lane = words.div_ceil(lanes);
    let vec = if func.reduces() || per_lane > VEC_MAX {
        per_lane.min(VEC_STREAM)
    } else {
        per_lane
    };
    (vec.max(1) as u32, lanes as u32)
}

/// Lanes (subgroup lanes, or a workgroup's invocations) per row of a vec4 strategy: enough for
/// `VEC_STREAM` words each, at most a subgroup (`SubgroupVec4`), or for a word each, 64 to 256
/// invocations (`WorkgroupVec4`).
fn vec4_lanes(strategy: Strategy, cols: u64, caps: &Caps) -> u64 {
    let words = (cols / 4).max(1).next_power_of_two();
    match strategy {
        // No more lanes than the workgroup has (a subgroup wider than 64 lanes would otherwise
        // leave a workgroup no whole row).
        // VEC_STREAM words a lane (a row of 16 entries to one lane, of 256 to 16 lanes):
        // measured on an H200 against one word a lane, log_softmax at 65,536 × 256 0.070 ->
        // 0.058 ms, logsumexp at 1,048,576 × 16 0.106 -> 0.037 (8 words: 0.063, 0.037;
        // 16: 0.125, 0.037).
        Strategy::SubgroupVec4 => (words / VEC_STREAM)
            .max(1)
            .min(u64::from(caps.subgroup_min))
            .min(u64::from(pow2_at_most(64, caps.max_wg))),
        _ => u64::from(pow2_at_most(words.clamp(64, 256) as u32, caps.max_wg)),
    }
}

/// Workgroup size and per-invocation stride of a one-pass strategy.
fn geometry(strategy: Strategy, cols: u64, caps: &Caps) -> (&'static str, u32, u64) {
    match strategy {
        Strategy::SubgroupVec4 => (
            "row_lanes_vec4",
            pow2_at_most(64, caps.max_wg),
            vec4_lanes(strategy, cols, caps),
        ),
        Strategy::WorkgroupVec4 => {
            let wg = vec4_lanes(strategy, cols, caps);
            ("row_workgroup_vec4", wg as u32, wg)
        }
        Strategy::ThreadPerRow => ("row_thread", pow2_at_most(64, caps.max_wg), 1),
        // Four entries a step (a word).
        Strategy::ThreadVec4 => ("row_thread_vec4", pow2_at_most(64, caps.max_wg), 4),
        Strategy::SubgroupPerRow => (
            "row_subgroup",
            pow2_at_most(64, caps.max_wg),
            u64::from(caps.subgroup_min),
        ),
        _ => {
            let wg = pow2_at_most(if cols >= 2048 { 256 } else { 64 }, caps.max_wg);
            ("row_workgroup", wg, u64::from(wg))
        }
    }
}

/// The strategy `Strategy::Auto` picks. Measured with `examples/strategies.rs`: on software
/// adapters loads, stores and workgroup barriers are the cost (llvmpipe walks the lanes of a
/// non-uniform load one by one), so one invocation per row wins wherever a row fits in one
/// invocation's budget — reading 16-byte words where the layout allows (four entries a load) —
/// except for softmax / log_softmax writes of long rows of other layouts, where a subgroup's
/// adjacent lanes store faster. On GPUs (H200 measurements below and in docs/performance.md), the vec4
/// kernels where the layout allows them (a subgroup's lanes for short and middling rows, a
/// workgroup for long ones), the scalar kernels elsewhere, and few long rows split.
fn auto_strategy(
    func: RowFn,
    cols: u64,
    rows: u64,
    usable: u64,
    (vec4_ok, thread_vec4_ok): (bool, bool),
    caps: &Caps,
) -> Strategy {
    let fits_lanes = |s: Strategy| cols.div_ceil(geometry(s, cols, caps).2) <= LANE_MAX;
    let subgroup_ok = caps.subgroup && fits_lanes(Strategy::SubgroupPerRow);
    // Few long rows are split; on GPUs a workgroup per row reading vec4 words already fills the
    // device with 256 rows (H200: 0.055 ms against SplitRow's 0.105 for logsumexp at
    // 256 × 65,536, 0.092 against 0.160 for log_softmax).
    let rows_in_flight = if caps.cpu {
        8
    } else if vec4_ok {
        256
    } else {
        512
    };
    let split = if caps.cpu {
        Strategy::SplitRowThreads
    } else {
        Strategy::SplitRow
    };
    if cols * 4 > usable || (cols >= 8192 && rows < rows_in_flight) {
        return split;
    }
    if caps.cpu {
        let enough_rows = rows >= 128 || cols <= 1024;
        let thread_ok = fits_lanes(Strategy::ThreadPerRow) && enough_rows;
        // Rows read (and written) a vec4 word at a time where the layout allows: lavapipe,
        // logsumexp 21.0 -> 15.0 ms at 4096², log_softmax 63.5 -> 30.9 (SubgroupPerRow: 50.9);
        // llvmpipe 18.1 -> 11.9 and 57.6 -> 28.4. Not for reductions of rows short enough to be
        // unrolled a word at a time (1,048,576 × 16: 31.4 against 23.1 ms on lavapipe). A word
        // a step takes rows four times as long as a thread's scalar walk: at 256 × 65,536 on
        // lavapipe logsumexp 16.6 ms against SplitRowThreads' 25.1, log_softmax 34.3 against
        // SubgroupPerRow's 60.6.
        let thread_vec4_fits = fits_lanes(Strategy::ThreadVec4) && enough_rows;
        if thread_vec4_fits && thread_vec4_ok && !(func.reduces() && cols <= ROW_COLS_MAX as u64) {
            return Strategy::ThreadVec4;
        }
        if thread_ok && (func.reduces() || cols <= 1024 || !subgroup_ok) {
            return Strategy::ThreadPerRow;
        }
        // Rows too long for one invocation: barrier-free segments, unless subgroups can write.
        if !fits_lanes(Strategy::ThreadPerRow) && (func.reduces() || !subgroup_ok) {
            return split;
        }
    } else if vec4_ok {
        // Measured on an H200 by GPU timestamps (`examples/strategies.rs`, docs/performance.md), every
        // strategy at 4096², 65,536 × 256, 256 × 65,536, 1,048,576 × 16 and 8192 × 32,000:
        // where the layout allows vec4 words, a subgroup's lanes (4 words a lane, several rows
        // a subgroup when rows are short) up to 1024 entries for softmax / log_softmax
        // (log_softmax 0.058 ms at 65,536 × 256 and 0.064 at 1,048,576 × 16; a thread a row
        // 0.41, 0.22) and below 8192 for reductions (logsumexp 0.037 ms at 1,048,576 × 16, a
        // thread a row 0.045; 0.047 at 4096²); beyond, a workgroup a row (log_softmax 0.067 ms
        // at 4096² against the subgroup's 0.074; logsumexp 0.456 at 8192 × 32,000 against 0.472
        // and SubgroupPerRow's 0.628; log_softmax 0.801 against 0.909 and 1.370).
        let vec4_subgroup = caps.subgroup && fits_lanes(Strategy::SubgroupVec4);
        let subgroup_cols = if func.reduces() {
            cols < 8192
        } else {
            cols <= 1024
        };
        if vec4_subgroup && subgroup_cols {
            return Strategy::SubgroupVec4;
        }
        if fits_lanes(Strategy::WorkgroupVec4) {
            return Strategy::WorkgroupVec4;
        }
    } else {
        // Layouts the vec4 kernels cannot read (f16, unaligned rows): the scalar kernels, as
        // measured on the H200 before the vec4 kernels — a thread a row for short rows (up to
        // 512 entries for reductions, 64 for softmax / log_softmax), else a subgroup a row, or
        // for reductions of rows of 8192 entries or more a workgroup, unless there are
        // thousands of rows.
        let thread_max = if func.reduces() { 512 } else { 64 };
        if cols <= thread_max && fits_lanes(Strategy::ThreadPerRow) {
            return Strategy::ThreadPerRow;
        }
        if func.reduces()
            && cols >= 8192
            && !(subgroup_ok && rows >= 4096)
            && fits_lanes(Strategy::WorkgroupPerRow)
        {
            return Strategy::WorkgroupPerRow;
        }
    }
    if subgroup_ok {
        Strategy::SubgroupPerRow
    } else if fits_lanes(Strategy::WorkgroupPerRow) {
        Strategy::WorkgroupPerRow
    } else {
        split
    }
}

fn pow2_at_most(want: u32, max: u32) -> u32 {
    let cap = max.clamp(1, WG_MAX);
    let mut wg = 1;
    while wg * 2 <= want.min(cap) {
        wg *= 2;
    }
    wg
}

pub(crate) fn plan(
    func: RowFn,
    l: &RowsLayout,
    strategy: Strategy,
    caps: &Caps,
) -> Result<Plan, Error> {
    let (rows, cols) = (l.rows as u64, l.cols as u64);
    let lse = func.reduces();
    let red_width = func.reduced_width();
    let eb = l.input_format.bytes();
    if !l.input_offset.is_multiple_of(eb) || !l.output_offset.is_multiple_of(4) {
        return Err(Error::Buffer(format!(
            "offsets must be multiples of the entry size ({eb} bytes in, 4 out; input {}, \
             output {})",
            l.input_offset, l.output_offset
        )));
    }
    if rows > 1 && l.input_stride < l.cols {
        return Err(Error::Shape(format!(
            "input_stride {} < cols {}",
            l.input_stride, l.cols
        )));
    }
    if !lse && rows > 1 && l.output_stride < l.cols {
        return Err(Error::Shape(format!(
            "output_stride {} < cols {}",
            l.output_stride, l.cols
        )));
    }
    let out_f16 = l.output_format == InputFormat::F16;
    if out_f16 && lse {
        return Err(Error::Unsupported(format!(
            "f16 outputs are for softmax and log_softmax; {func:?} writes f32 (a value or two \
             per row: nothing to save)"
        )));
    }
    if out_f16 && rows > 1 && l.output_stride % 2 == 1 {
        return Err(Error::Buffer(format!(
            "an f16 output's rows must start on 4-byte words: output_stride {} is odd",
            l.output_stride
        )));
    }
    let ob = l.output_format.bytes();
    let (in_stride, out_stride) = (
        l.input_stride as u64,
        if lse {
            red_width
        } else {
            l.output_stride as u64
        },
    );
    let out_cols = if lse { red_width } else { cols };
    // Bytes from the first entry of k rows to the end of the last, entries of `eb` bytes.
    let span_of = |k: u64, stride: u64, c: u64, eb: u64| -> Result<u64, Error> {
        if k == 0 || c == 0 {
            Ok(0)
        } else {
            let elems = mul(k - 1, stride)?
                .checked_add(c)
                .ok_or_else(|| shape_err("row span"))?;
            mul(elems, eb)
        }
    };
    let span = |k: u64, stride: u64, c: u64| span_of(k, stride, c, ob);
    let span_in = |k: u64, c: u64| span_of(k, in_stride, c, eb);
    // The input is bound in whole words: an f16 input ends on a 4-byte boundary.
    let input_end = l
        .input_offset
        .checked_add(span_in(rows, cols)?)
        .ok_or_else(|| shape_err("input"))?
        .next_multiple_of(4);
    let output_end = l
        .output_offset
        .checked_add(span(rows, out_stride, out_cols)?)
        .ok_or_else(|| shape_err("output"))?
        .next_multiple_of(4);
    let mut plan = Plan {
        strategy,
        passes: vec![],
        fills: vec![],
        state_count: 0,
        input_end,
        output_end,
    };
    if rows == 0 || out_cols == 0 {
        return Ok(plan);
    }
    let usable = usable_binding(caps, 64)?;
    let vec4_ok = vec4_fits(l, caps);
    let thread_vec4_ok = vec4_ok || vec4_f16_fits(l, caps);
    let strategy = match strategy {
        Strategy::Auto => auto_strategy(func, cols, rows, usable, (vec4_ok, thread_vec4_ok), caps),
        s @ (Strategy::SubgroupPerRow | Strategy::SubgroupVec4) if !caps.subgroup => {
            return Err(Error::Unsupported(format!(
                "Strategy::{s:?} needs a device with Features::SUBGROUP"
            )));
        }
        Strategy::ThreadVec4 if thread_vec4_ok => Strategy::ThreadVec4,
        s if !vec4_ok => scalar_form(s),
        s => s,
    };
    plan.strategy = strategy;
    let fits_row = cols * 4 <= usable;
    let fill = |out: Window, out_offset: u32, k: u64, c: u64| -> Result<RowPass, Error> {
        Ok(RowPass {
            entry: "fill_sentinel",
            wg: FILL_WG,
            params: Params {
                rows: u32_of(k, "rows")?,
                cols: u32_of(c, "cols")?,
                out_offset,
                out_stride: u32_of(out_stride, "output_stride")?,
                ..Params::default()
            },
            // 64 entries per invocation, grid-stride: adjacent lanes write adjacent entries.
            groups: (k * c).div_ceil(u64::from(FILL_WG) * 64),
            input: None,
            output: Some(out),
            vec4: None,
        })
    };
    // Rows per window: the most rows whose input and output spans fit one binding.
    let rows_per_window = |stride: u64, c: u64| {
        if c == 0 {
            rows
        } else {
            (usable - c * 4) / (stride * 4).max(1) + 1
        }
    };

    if !matches!(strategy, Strategy::SplitRow | Strategy::SplitRowThreads) {
        if !fits_row {
            return Err(Error::Limit(format!(
                "one row of {cols} f32 is larger than a storage binding ({} bytes); use Strategy::Auto or a split strategy",
                caps.max_binding
            )));
        }
        let (entry, wg, step) = geometry(strategy, cols, caps);
        if cols.div_ceil(step) > LANE_MAX {
            return Err(Error::Limit(format!(
                "{strategy:?} would take {} steps per invocation along a row, more than {LANE_MAX} \
                 (some drivers, llvmpipe among them, end loops after 65,535 iterations): use \
                 Strategy::Auto",
                cols.div_ceil(step)
            )));
        }
        let per_group = match strategy {
            Strategy::ThreadPerRow | Strategy::ThreadVec4 => u64::from(wg),
            Strategy::SubgroupPerRow => u64::from((wg / caps.subgroup_max).max(1)),
            // wg / LANES rows a workgroup, whatever the subgroup size.
            Strategy::SubgroupVec4 => u64::from(wg) / step,
            _ => 1,
        };
        let vec4 = match strategy {
            Strategy::SubgroupVec4 | Strategy::WorkgroupVec4 => {
                let (vec, lanes) = vec4_geometry(func, strategy, cols, caps);
                Some((vec, lanes, vec4_out_fits(func, l)))
            }
            // A word at a time: VEC unused.
            Strategy::ThreadVec4 => Some((1, 1, vec4_out_fits(func, l))),
            _ => None,
        };
        // A row's work: its entries and the invocations that walk it.
        let row_work = (cols + (u64::from(wg) / per_group).max(1)) * WORK_UNIT;
        let k_max = rows_per_window(in_stride, cols)
            .min(rows_per_window(out_stride, out_cols))
            .min(MAX_GROUPS * per_group)
            .min(caps.per_dispatch(row_work));
        for (r0, k) in batches(rows, k_max) {
            let (input, in_offset) = if cols == 0 {
                (None, 0)
            } else {
                let (w, o) = window_of(
                    l.input_offset + r0 * in_stride * eb,
                    span_in(k, cols)?,
                    caps.storage_align,
                    eb,
                );
                (Some(w), o)
            };
            let (output, out_offset) = window_of(
                l.output_offset + r0 * out_stride * ob,
                span(k, out_stride, out_cols)?,
                caps.storage_align,
                ob,
            );
            plan.passes.push(RowPass {
                entry,
                wg,
                params: Params {
                    rows: k as u32,
                    cols: u32_of(cols, "cols")?,
                    in_offset,
                    in_stride: u32_of(in_stride, "input_stride")?,
                    out_offset,
                    out_stride: u32_of(out_stride, "output_stride")?,
                    ..Params::default()
                },
                groups: k.div_ceil(per_group),
                input,
                output: Some(output),
                vec4,
            });
            plan.fills.push(fill(output, out_offset, k, out_cols)?);
        }
        return Ok(plan);
    }

    // Split rows: segments of seg_len entries; partial states, combined per row, then applied.
    // On software adapters a segment is one invocation's (no barrier), elsewhere a workgroup's.
    let per_thread = strategy == Strategy::SplitRowThreads;
    let (partial, apply, wg) = if per_thread {
        (
            "split_partial_thread",
            "split_apply_thread",
            pow2_at_most(64, caps.max_wg),
        )
    } else {
        (
            "split_partial",
            "split_apply",
            pow2_at_most(256, caps.max_wg),
        )
    };
    let lane_step = if per_thread { 1 } else { u64::from(wg) };
    // Enough segments to keep the device busy, each at least `min_seg` long and no longer than one
    // invocation's budget or one binding.
    let (target_items, min_seg): (u64, u64) = if per_thread {
        (256, 1024)
    } else {
        (2048, u64::from(wg) * 4)
    };
    let mut segs = target_items
        .div_ceil(rows)
        .min(cols.div_ceil(min_seg))
        .max(1);
    segs = segs
        .max((cols * 4).div_ceil(usable))
        .max(cols.div_ceil(LANE_MAX * lane_step));
    // f16 outputs: segments of whole words.
    let seg_len = cols
        .div_ceil(segs)
        .max(1)
        .next_multiple_of(if out_f16 { 2 } else { 1 });
    let segs = cols.div_ceil(seg_len).max(1);
    if segs > LANE_MAX {
        return Err(Error::Limit(format!(
            "a row of {cols} entries needs {segs} segments of one storage binding ({} bytes); at most {LANE_MAX}",
            caps.max_binding
        )));
    }
    let final_base = rows * segs;
    plan.state_count = final_base + if lse { 0 } else { rows };
    if plan.state_count * STATE_BYTES > caps.max_binding {
        return Err(Error::Limit(format!(
            "{rows} rows × {segs} segments of partial states exceed a storage binding ({} bytes)",
            caps.max_binding
        )));
    }
    // (first row, rows, first segment, segments) of each partial / apply dispatch.
    let mut groups_geo = Vec::new();
    if fits_row {
        let k_max = rows_per_window(in_stride, cols)
            .min(rows_per_window(out_stride, cols))
            .min(MAX_GROUPS / segs)
            .min(caps.per_dispatch(segs * (seg_len + lane_step) * WORK_UNIT))
            .max(1);
        for (r0, k) in batches(rows, k_max) {
            groups_geo.push((r0, k, 0, segs));
        }
    } else {
        let per_window = (usable / (seg_len * 4))
            .min(caps.per_dispatch((seg_len + lane_step) * WORK_UNIT))
            .max(1);
        for r in 0..rows {
            for (s0, ns) in batches(segs, per_window) {
                groups_geo.push((r, 1, s0, ns));
            }
        }
    }
    let common = Params {
        cols: u32_of(cols, "cols")?,
        in_stride: u32_of(in_stride, "input_stride")?,
        out_stride: u32_of(out_stride, "output_stride")?,
        seg_len: u32_of(seg_len, "segment")?,
        seg_total: u32_of(segs, "segments")?,
        final_base: u32_of(final_base, "states")?,
        ..Params::default()
    };
    let mut applies = Vec::new();
    for &(r0, k, s0, ns) in &groups_geo {
        let col0 = s0 * seg_len;
        let width = ((s0 + ns) * seg_len).min(cols) - col0;
        let (input, in_offset) = window_of(
            l.input_offset + (r0 * in_stride + col0) * eb,
            span_in(k, width)?,
            caps.storage_align,
            eb,
        );
        let geo = Params {
            rows: k as u32,
            in_offset,
            segs: ns as u32,
            seg_base: s0 as u32,
            state_base: u32_of(r0 * segs + s0, "states")?,
            row_base: u32_of(r0, "rows")?,
            ..common
        };
        let groups = if per_thread {
            (k * ns).div_ceil(u64::from(wg))
        } else {
            k * ns
        };
        plan.passes.push(RowPass {
            entry: partial,
            wg,
            params: geo,
            groups,
            input: Some(input),
            output: None,
            vec4: None,
        });
        if !lse {
            let (output, out_offset) = window_of(
                l.output_offset + (r0 * out_stride + col0) * ob,
                span(k, out_stride, width)?,
                caps.storage_align,
                ob,
            );
            applies.push(RowPass {
                entry: apply,
                wg,
                params: Params { out_offset, ..geo },
                groups,
                input: Some(input),
                output: Some(output),
                vec4: None,
            });
            plan.fills.push(fill(output, out_offset, k, width)?);
        }
    }
    let k_max = if lse { usable / (4 * red_width) } else { rows }
        .min(MAX_GROUPS * 64)
        .min(caps.per_dispatch(segs * WORK_UNIT));
    for (r0, k) in batches(rows, k_max) {
        let (output, out_offset) = if lse {
            let (w, o) = window(
                l.output_offset + r0 * 4 * red_width,
                k * 4 * red_width,
                caps.storage_align,
            );
            plan.fills.push(fill(w, o, k, red_width)?);
            (Some(w), o)
        } else {
            (None, 0)
        };
        plan.passes.push(RowPass {
            entry: "split_combine",
            wg: 64,
            params: Params {
                rows: k as u32,
                out_offset,
                state_base: u32_of(r0 * segs, "states")?,
                row_base: u32_of(r0, "rows")?,
                ..common
            },
            groups: k.div_ceil(64),
            input: None,
            output,
            vec4: None,
        });
    }
    plan.passes.extend(applies);
    Ok(plan)
}

/// An encoder-level op of the family, prepared for one [`RowsLayout`]: pipelines compiled,
/// parameter and scratch buffers made once. Record it into as many encoders as you like; it
/// never submits, writes through the queue, or reads back.
///
/// ```no_run
/// use logdomain::{Gpu, RowFn, RowOp, RowsLayout, Strategy};
/// use wgpu::util::DeviceExt;
/// let gpu = Gpu::new()?;
/// let (rows, cols) = (2, 3);
/// let x = [0.0f32, 1.0, 2.0, 5.0, 5.0, f32::NEG_INFINITY];
/// let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
/// let input = gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
///     label: None, contents: bytemuck::cast_slice(&x), usage });
/// let lse_out = gpu.device().create_buffer(&wgpu::BufferDescriptor {
///     label: None, size: 8, usage, mapped_at_creation: false });
/// let lsm_out = gpu.device().create_buffer(&wgpu::BufferDescriptor {
///     label: None, size: 24, usage, mapped_at_creation: false });
/// let layout = RowsLayout::contiguous(rows, cols);
/// let lse = RowOp::new(&gpu, RowFn::Logsumexp, layout, Strategy::Auto)?;
/// let lsm = RowOp::new(&gpu, RowFn::LogSoftmax, layout, Strategy::Auto)?;
/// let mut encoder = gpu.device().create_command_encoder(&Default::default());
/// lse.record(&mut encoder, &input, &lse_out)?;
/// lsm.record(&mut encoder, &input, &lsm_out)?;
/// gpu.queue().submit([encoder.finish()]);
/// let values = gpu.read_f32(&lse_out, 8)?;
/// assert!((values[1] - (5.0 + 2f32.ln())).abs() < 1e-5);
/// # Ok::<(), logdomain::Error>(())
/// ```
pub struct RowOp {
    func: RowFn,
    layout: RowsLayout,
    strategy: Strategy,
    /// The op's passes: input 0 is the caller's input, the output the caller's output,
    /// scratch 0 the partial states.
    program: Program,
    /// The sentinel fill of the entries the op writes (`record_sentinel_fill`).
    fill: Program,
}

impl RowOp {
    /// Prepares `func` for `layout` on `gpu` with the given strategy (`Strategy::Auto` unless
    /// you are benchmarking or testing one).
    pub fn new(
        gpu: &Gpu,
        func: RowFn,
        layout: RowsLayout,
        strategy: Strategy,
    ) -> Result<RowOp, Error> {
        let caps = Caps::of(gpu);
        let plan = plan(func, &layout, strategy, &caps)?;
        let f16 = (
            layout.input_format == InputFormat::F16,
            layout.output_format == InputFormat::F16,
        );
        // Short rows walked by one invocation: loops of a constant trip count, which compilers
        // unroll (3.4× faster at 1,048,576 × 16 on lavapipe). The `ROW_COLS` value for rows of
        // at most `max` entries, 0 (not specialised) for longer ones.
        let up_to = |max: usize| {
            if layout.cols <= max {
                layout.cols as u32
            } else {
                0
            }
        };
        let (row_cols, vec4_row_cols) = (up_to(ROW_COLS_MAX), up_to(VEC4_ROW_COLS_MAX));
        let key = |p: &RowPass| {
            let cols = match p.vec4 {
                // A thread a row, a word at a time: specialised for rows of one block.
                Some(_) if p.entry == "row_thread_vec4" => vec4_row_cols,
                // The vec4 walks: specialised where a row is at most VEC4_TILES_MAX tiles.
                Some((vec, lanes, _))
                    if (layout.cols / 4).div_ceil(vec as usize * lanes as usize)
                        <= VEC4_TILES_MAX =>
                {
                    layout.cols as u32
                }
                _ if p.entry == "row_thread" => row_cols,
                _ => 0,
            };
            let key = row_key(p.entry, op_code(func), p.wg, f16, cols);
            match p.vec4 {
                Some((vec, lanes, out4)) => vec4_key(key, vec, lanes, out4),
                None => key,
            }
        };
        let lower = |passes: &[RowPass], pipeline_of: &dyn Fn(&RowPass) -> PipelineKey| {
            passes
                .iter()
                .map(|p| Pass {
                    key: pipeline_of(p),
                    params: bytemuck::bytes_of(&p.params).to_vec(),
                    groups: p.groups,
                    bind: vec![
                        Bind::window(Src::Input(0), p.input),
                        Bind::window(Src::Output, p.output),
                        Bind::whole(Src::Scratch(0)),
                    ],
                })
                .collect::<Vec<_>>()
        };
        let reads_input = plan.passes.iter().any(|p| p.input.is_some());
        let input_bytes = if reads_input { plan.input_end } else { 0 };
        let program = Program::new(
            gpu,
            vec![Step::Passes(lower(&plan.passes, &key))],
            None,
            &[plan.state_count * STATE_BYTES],
            vec![input_bytes],
            plan.output_end,
        )?;
        let fill = Program::new(
            gpu,
            vec![Step::Passes(lower(&plan.fills, &key))],
            None,
            &[],
            Vec::new(),
            plan.output_end,
        )?;
        Ok(RowOp {
            func,
            layout,
            strategy: plan.strategy,
            program,
            fill,
        })
    }

    /// The function this op computes.
    pub fn function(&self) -> RowFn {
        self.func
    }

    /// The layout it was prepared for.
    pub fn layout(&self) -> &RowsLayout {
        &self.layout
    }

    /// The strategy in use (`Auto` resolved).
    pub fn strategy(&self) -> Strategy {
        self.strategy
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

    /// Records the op: reads `input` (the layout's rows) and writes `output`. Both buffers need
    /// `BufferUsages::STORAGE`, must be distinct, created on this op's device, and at least
    /// [`RowOp::input_bytes_needed`] / [`RowOp::output_bytes_needed`] bytes long.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.program.record(encoder, &[input], output)
    }

    /// As [`RowOp::record`], and writes the GPU time at the start and the end of the op's compute
    /// pass into queries `first` and `first + 1` of `query_set` (a `QueryType::Timestamp` set,
    /// which needs `Features::TIMESTAMP_QUERY`). An op with nothing to compute (no rows) writes
    /// none.
    pub fn record_timed(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
        query_set: &wgpu::QuerySet,
        first: u32,
    ) -> Result<(), Error> {
        self.program
            .record_timed(encoder, &[input], output, Some((query_set, first)))
    }

    /// Runs the op once on resident buffers and returns the GPU time of its compute pass, from
    /// timestamp queries; `None` where the device lacks `Features::TIMESTAMP_QUERY` (some GL
    /// drivers), in which case time the call on the host. On GL the dispatches are submitted
    /// one at a time (docs/gl-context.md) and the time spans the first to the last. Waits for
    /// the GPU.
    pub fn kernel_time(
        &self,
        gpu: &Gpu,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Option<std::time::Duration>, Error> {
        self.program.kernel_time(gpu, &[input], output)
    }

    /// Records a fill of exactly the output entries this op writes with
    /// [`crate::SENTINEL_BITS`] (a NaN payload no kernel produces), so a test (or a cautious
    /// caller) can see any entry a kernel failed to write. Entries between strided rows are
    /// left alone.
    pub fn record_sentinel_fill(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        output: &wgpu::Buffer,
    ) -> Result<(), Error> {
        self.fill.record(encoder, &[], output)
    }

    /// This op as a step of another program: its input and output bound to `from` and `to`.
    pub(crate) fn into_step(self, from: Src, to: Src) -> Step {
        Step::Sub(Box::new(self.program), vec![from], to)
    }

    /// The op's program (the blocking calls run it).
    pub(crate) fn program(&self) -> &Program {
        &self.program
    }
}

/// A key of the log-sum-exp family; `row_cols` is the `ROW_COLS` override, `(in_f16,
/// out_f16)` the formats of the input and the output.
fn row_key(
    entry: &'static str,
    op: u32,
    wg: u32,
    (in_f16, out_f16): (bool, bool),
    row_cols: u32,
) -> PipelineKey {
    let module = match entry {
        "row_subgroup" => Module::LogsumexpSubgroup,
        "row_workgroup_vec4" | "row_thread_vec4" => Module::LogsumexpVec4,
        "row_lanes_vec4" => Module::LogsumexpVec4Subgroup,
        _ => Module::Logsumexp,
    };
    PipelineKey {
        module,
        entry,
        op,
        wg,
        reduce: 0,
        dims: row_cols,
        in_f16,
        out_f16,
        vec: 0,
        lanes: 0,
    }
}

/// The key of a vec4 entry point of the log-sum-exp family, with its `VEC` and `LANES`;
/// `out4`: its module's output is bound as vec4 words (16-byte stores).
fn vec4_key(key: PipelineKey, vec: u32, lanes: u32, out4: bool) -> PipelineKey {
    let module = match (key.module, out4) {
        (Module::LogsumexpVec4, true) => Module::LogsumexpVec4Out,
        (Module::LogsumexpVec4Subgroup, true) => Module::LogsumexpVec4SubgroupOut,
        (f, _) => f,
    };
    PipelineKey {
        module,
        vec,
        lanes,
        ..key
    }
}

impl Gpu {
    /// Every explicit strategy this device can run (`Strategy::Auto` aside), for benchmarks and
    /// tests that compare them.
    pub fn strategies(&self) -> Vec<Strategy> {
        let mut all = vec![Strategy::ThreadPerRow, Strategy::ThreadVec4];
        if self.has_subgroups() {
            all.push(Strategy::SubgroupPerRow);
        }
        all.push(Strategy::WorkgroupPerRow);
        if self.has_subgroups() {
            all.push(Strategy::SubgroupVec4);
        }
        all.extend([
            Strategy::WorkgroupVec4,
            Strategy::SplitRow,
            Strategy::SplitRowThreads,
        ]);
        all
    }

    /// [`RowOp::kernel_time`]: the GPU time of one run of `op` on resident buffers.
    pub fn kernel_time(
        &self,
        op: &RowOp,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Option<std::time::Duration>, Error> {
        op.kernel_time(self, input, output)
    }

    /// Row-wise log-sum-exp of a row-major `rows × cols` matrix: `rows` values.
    /// SciPy ≥ 1.15 semantics (see the crate documentation).
    pub fn logsumexp(&self, x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>, Error> {
        self.run_rows(RowFn::Logsumexp, x, rows, cols)
    }

    /// Row-wise softmax: `rows * cols` values.
    pub fn softmax(&self, x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>, Error> {
        self.run_rows(RowFn::Softmax, x, rows, cols)
    }

    /// Row-wise log_softmax: `rows * cols` values.
    pub fn log_softmax(&self, x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>, Error> {
        self.run_rows(RowFn::LogSoftmax, x, rows, cols)
    }

    /// [`Gpu::logsumexp`] of f16 entries (`half::f16`), read as f16 on the GPU (half the bytes)
    /// and computed in f32: bit for bit `logsumexp` of the same values converted to f32.
    ///
    /// ```no_run
    /// use half::f16;
    /// let gpu = logdomain::Gpu::new()?;
    /// let x: Vec<f16> = [0.0f32, 1.0, 2.0].iter().map(|&v| f16::from_f32(v)).collect();
    /// let lse = gpu.logsumexp_f16(&x, 1, 3)?;
    /// assert_eq!(lse, gpu.logsumexp(&[0.0, 1.0, 2.0], 1, 3)?);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn logsumexp_f16(
        &self,
        x: &[half::f16],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        self.run_rows_as(RowFn::Logsumexp, Values::F16(x), rows, cols)
    }

    /// [`Gpu::softmax`] of f16 entries (f32 results).
    pub fn softmax_f16(
        &self,
        x: &[half::f16],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        self.run_rows_as(RowFn::Softmax, Values::F16(x), rows, cols)
    }

    /// [`Gpu::log_softmax`] of f16 entries (f32 results).
    pub fn log_softmax_f16(
        &self,
        x: &[half::f16],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        self.run_rows_as(RowFn::LogSoftmax, Values::F16(x), rows, cols)
    }

    /// Row-wise log-sum-exp in two parts, `(m, log1p(s))` per row: `2 * rows` values (see
    /// [`RowFn::LogsumexpParts`]).
    pub fn logsumexp_parts(&self, x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>, Error> {
        self.run_rows(RowFn::LogsumexpParts, x, rows, cols)
    }

    /// Each row's log-sum-exp as a state of the kernels' monoid ([`LseState`]: the max and the
    /// scaled sum of the others), for merging shards: states of column blocks of the same rows,
    /// computed on any number of dispatches, adapters or machines, combine with
    /// [`LseState::combine`] into the rows' log-sum-exp ([`LseState::logsumexp`]). A state is
    /// 12 bytes a row, so any distributed engine can carry it.
    ///
    /// ```no_run
    /// let gpu = logdomain::Gpu::new()?;
    /// let left = gpu.logsumexp_partial(&[0.0, 1.0], 1, 2)?;   // columns 0..2 of a row
    /// let right = gpu.logsumexp_partial(&[2.0, -3.0], 1, 2)?; // columns 2..4, elsewhere
    /// let lse = left[0].combine(right[0]).logsumexp();
    /// assert!((lse - gpu.logsumexp(&[0.0, 1.0, 2.0, -3.0], 1, 4)?[0]).abs() < 1e-6);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn logsumexp_partial(
        &self,
        x: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<LseState>, Error> {
        let parts = self.run_rows(RowFn::LogsumexpParts, x, rows, cols)?;
        Ok(parts
            .chunks(2)
            .map(|p| LseState::from_parts(p[0], p[1]))
            .collect())
    }

    fn run_rows(
        &self,
        func: RowFn,
        x: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        self.run_rows_as(func, Values::F32(x), rows, cols)
    }

    /// [`Gpu::softmax`] written as f16 (each value the f32 result rounded to nearest even):
    /// half the bytes written and read back.
    ///
    /// ```no_run
    /// let gpu = logdomain::Gpu::new()?;
    /// let p = gpu.softmax_to_f16(&[0.0, 0.0, 0.0, 0.0], 1, 4)?;
    /// assert_eq!(p, vec![half::f16::from_f32(0.25); 4]);
    /// # Ok::<(), logdomain::Error>(())
    /// ```
    pub fn softmax_to_f16(
        &self,
        x: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<half::f16>, Error> {
        self.run_rows_to_f16(RowFn::Softmax, Values::F32(x), rows, cols)
    }

    /// [`Gpu::log_softmax`] written as f16 (rounded to nearest even from the f32 result).
    pub fn log_softmax_to_f16(
        &self,
        x: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<half::f16>, Error> {
        self.run_rows_to_f16(RowFn::LogSoftmax, Values::F32(x), rows, cols)
    }

    fn run_rows_to_f16(
        &self,
        func: RowFn,
        x: Values<'_>,
        rows: usize,
        cols: usize,
    ) -> Result<Vec<half::f16>, Error> {
        let words = self.run_rows_in(func, x, OutputFormat::F16, rows, cols)?;
        let mut out: Vec<half::f16> = words
            .iter()
            .flat_map(|w| {
                let b = w.to_bits();
                [b as u16, (b >> 16) as u16]
            })
            .map(half::f16::from_bits)
            .collect();
        out.truncate(func.output_len(rows, cols));
        Ok(out)
    }

    fn run_rows_as(
        &self,
        func: RowFn,
        x: Values<'_>,
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        self.run_rows_in(func, x, OutputFormat::F32, rows, cols)
    }

    /// The blocking path of the family: the output's words (f32 values, or pairs of f16
    /// entries as f32 bit patterns).
    fn run_rows_in(
        &self,
        func: RowFn,
        x: Values<'_>,
        out_format: OutputFormat,
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, Error> {
        let (len, format, bytes) = x.upload();
        let expected = rows
            .checked_mul(cols)
            .ok_or_else(|| Error::Shape(format!("{rows} × {cols} overflows usize")))?;
        if len != expected {
            return Err(Error::InputLength {
                what: "x",
                expected,
                actual: len,
            });
        }
        let out_len = func.output_len(rows, cols);
        if out_len == 0 {
            return Ok(Vec::new());
        }
        let key = [
            func as u64,
            rows as u64,
            cols as u64,
            format as u64,
            out_format as u64,
            0,
        ];
        let op = self.cached_op(key, || {
            let layout = RowsLayout {
                input_format: format,
                output_format: out_format,
                ..RowsLayout::contiguous(rows, cols)
            };
            RowOp::new(self, func, layout, Strategy::Auto)
        })?;
        let words = (out_len as u64 * out_format.bytes()).div_ceil(4) as usize;
        let sentinel = match out_format {
            OutputFormat::F32 => SENTINEL_BITS,
            OutputFormat::F16 => u32::from(SENTINEL_F16_BITS) * 0x1_0001,
        };
        Ok(self
            .run_program_filled(op.program(), &[&bytes], words, &[], sentinel)?
            .0)
    }
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
    Ok(RowOp::new(gpu, RowFn::LogsumexpParts, layout, Strategy::Auto)?.into_step(from, Src::Aux))
}

mod axes;
pub use axes::{AxisKernel, AxisOp, AxisOptions, NdArray};

crate::engine::op::lowered!(RowOp);

impl Op for RowOp {
    fn input_names(&self) -> Vec<&'static str> {
        vec!["x (the layout's rows)"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(max_binding: u64, align: u64, subgroup: bool) -> Caps {
        Caps {
            max_binding,
            storage_align: align,
            max_wg: 256,
            subgroup,
            subgroup_min: 8,
            subgroup_max: 8,
            cpu: true,
            workgroup_bytes: 16384,
            dispatch_work: u64::MAX,
        }
    }

    /// Every element of every row is covered by exactly one window-bounded dispatch, and every
    /// window lies inside the buffer and within the binding limit.
    fn check_cover(func: RowFn, l: RowsLayout, s: Strategy, c: Caps) -> Plan {
        let p = plan(func, &l, s, &c).unwrap();
        for pass in p.passes.iter().chain(&p.fills) {
            for w in [pass.input, pass.output].into_iter().flatten() {
                assert_eq!(w.offset % c.storage_align, 0);
                assert!(w.size <= c.max_binding, "{w:?}");
            }
            if let Some(w) = pass.input {
                assert!(w.offset + w.size <= p.input_end);
            }
            if let Some(w) = pass.output {
                assert!(w.offset + w.size <= p.output_end);
            }
        }
        p
    }

    #[test]
    fn rows_are_chunked_into_windows() {
        let l = RowsLayout {
            input_offset: 20,
            input_stride: 300,
            ..RowsLayout::contiguous(1000, 250)
        };
        let p = check_cover(
            RowFn::Softmax,
            l,
            Strategy::ThreadPerRow,
            caps(64 * 1024, 256, false),
        );
        let rows: u32 = p.passes.iter().map(|x| x.params.rows).sum();
        assert_eq!(rows, 1000);
        assert!(p.passes.len() > 10);
    }

    #[test]
    fn a_row_larger_than_a_binding_is_split_across_windows() {
        let l = RowsLayout::contiguous(3, 100_000);
        let p = check_cover(
            RowFn::LogSoftmax,
            l,
            Strategy::Auto,
            caps(64 * 1024, 256, true),
        );
        assert_eq!(p.strategy, Strategy::SplitRowThreads);
        // Every (row, segment) is covered once, by windows of whole segments.
        let segs = u64::from(p.passes[0].params.seg_total);
        for entry in ["split_partial_thread", "split_apply_thread"] {
            let items: u64 = p
                .passes
                .iter()
                .filter(|x| x.entry == entry)
                .map(|x| u64::from(x.params.rows * x.params.segs))
                .sum();
            assert_eq!(items, 3 * segs, "{entry}");
        }
        assert!(
            plan(
                RowFn::Logsumexp,
                &l,
                Strategy::WorkgroupPerRow,
                &caps(64 * 1024, 256, true)
            )
            .is_err()
        );
    }

    /// `Auto` on a GPU follows the H200 measurements in docs/performance.md; on a CPU adapter it avoids
    /// barriers.
    #[test]
    fn auto_choices() {
        let gpu = Caps {
            cpu: false,
            ..caps(1 << 30, 256, true)
        };
        let gl_gpu = Caps {
            subgroup: false,
            ..gpu
        };
        let cpu_gl = caps(1 << 27, 256, false);
        let pick = |f, rows, cols, c: &Caps| {
            plan(f, &RowsLayout::contiguous(rows, cols), Strategy::Auto, c)
                .unwrap()
                .strategy
        };
        use RowFn::*;
        use Strategy::*;
        // Rows vec4 loads can read.
        assert_eq!(pick(Logsumexp, 65_536, 256, &gpu), SubgroupVec4);
        assert_eq!(pick(Logsumexp, 1 << 20, 16, &gpu), SubgroupVec4);
        assert_eq!(pick(Logsumexp, 4096, 4096, &gpu), SubgroupVec4);
        assert_eq!(pick(Logsumexp, 8192, 32_000, &gpu), WorkgroupVec4);
        assert_eq!(pick(Logsumexp, 1024, 16_384, &gpu), WorkgroupVec4);
        assert_eq!(pick(Logsumexp, 256, 65_536, &gpu), WorkgroupVec4);
        assert_eq!(pick(Logsumexp, 64, 262_144, &gpu), SplitRow);
        assert_eq!(pick(LogSoftmax, 1 << 20, 16, &gpu), SubgroupVec4);
        assert_eq!(pick(LogSoftmax, 65_536, 256, &gpu), SubgroupVec4);
        assert_eq!(pick(Softmax, 4096, 1024, &gpu), SubgroupVec4);
        assert_eq!(pick(Softmax, 4096, 4096, &gpu), WorkgroupVec4);
        assert_eq!(pick(LogSoftmax, 8192, 32_000, &gpu), WorkgroupVec4);
        assert_eq!(pick(LogSoftmax, 256, 65_536, &gpu), WorkgroupVec4);
        assert_eq!(pick(LogSoftmax, 128, 65_536, &gpu), SplitRow);
        assert_eq!(pick(LogSoftmax, 65_536, 256, &gl_gpu), WorkgroupVec4);
        assert_eq!(pick(LogSoftmax, 4096, 4096, &gl_gpu), WorkgroupVec4);
        // Rows it cannot: the scalar strategies.
        assert_eq!(pick(Logsumexp, 65_536, 255, &gpu), ThreadPerRow);
        assert_eq!(pick(LogSoftmax, 65_536, 255, &gpu), SubgroupPerRow);
        assert_eq!(pick(LogSoftmax, 1 << 20, 15, &gpu), ThreadPerRow);
        assert_eq!(pick(Softmax, 4095, 4095, &gpu), SubgroupPerRow);
        assert_eq!(pick(Logsumexp, 4095, 4095, &gpu), SubgroupPerRow);
        assert_eq!(pick(Logsumexp, 1024, 16_383, &gpu), WorkgroupPerRow);
        assert_eq!(pick(Logsumexp, 256, 65_535, &gpu), SplitRow);
        assert_eq!(pick(LogSoftmax, 65_536, 255, &gl_gpu), WorkgroupPerRow);
        assert_eq!(pick(Logsumexp, 4096, 4096, &cpu_gl), ThreadVec4);
        assert_eq!(pick(LogSoftmax, 4096, 4096, &cpu_gl), ThreadVec4);
        assert_eq!(pick(LogSoftmax, 1 << 20, 16, &cpu_gl), ThreadVec4);
        assert_eq!(pick(Logsumexp, 1 << 20, 16, &cpu_gl), ThreadPerRow);
        assert_eq!(pick(Logsumexp, 4095, 4095, &cpu_gl), ThreadPerRow);
        assert_eq!(pick(LogSoftmax, 4095, 4095, &cpu_gl), ThreadPerRow);
        // Rows up to 16,384 words a thread walks, where there are 128 rows or more.
        assert_eq!(pick(LogSoftmax, 256, 65_536, &cpu_gl), ThreadVec4);
        assert_eq!(pick(Logsumexp, 256, 65_536, &cpu_gl), ThreadVec4);
        assert_eq!(pick(LogSoftmax, 256, 65_544, &cpu_gl), SplitRowThreads);
        assert_eq!(pick(Logsumexp, 256, 65_536 + 8, &cpu_gl), SplitRowThreads);
        assert_eq!(pick(LogSoftmax, 64, 65_536, &cpu_gl), SplitRowThreads);
        assert_eq!(pick(Logsumexp, 1, 1 << 20, &cpu_gl), SplitRowThreads);
    }

    /// The vec4 strategies run where rows start on 16-byte words with whole words, and as
    /// their scalar forms elsewhere; a row's part an invocation is kept when softmax can.
    #[test]
    fn vec4_layouts_and_geometry() {
        let c = caps(1 << 30, 256, true);
        let strategy = |f, l: RowsLayout, s| plan(f, &l, s, &c).unwrap().strategy;
        use Strategy::*;
        let f = RowFn::Softmax;
        assert_eq!(
            strategy(f, RowsLayout::contiguous(3, 8), SubgroupVec4),
            SubgroupVec4
        );
        assert_eq!(
            strategy(f, RowsLayout::contiguous(1, 8), WorkgroupVec4),
            WorkgroupVec4
        );
        assert_eq!(
            strategy(f, RowsLayout::contiguous(3, 7), SubgroupVec4),
            SubgroupPerRow
        );
        assert_eq!(
            strategy(f, RowsLayout::contiguous(3, 7), WorkgroupVec4),
            WorkgroupPerRow
        );
        let odd_stride = RowsLayout {
            input_stride: 10,
            output_stride: 10,
            ..RowsLayout::contiguous(3, 8)
        };
        assert_eq!(strategy(f, odd_stride, SubgroupVec4), SubgroupPerRow);
        let odd_offset = RowsLayout {
            input_offset: 8,
            ..RowsLayout::contiguous(3, 8)
        };
        assert_eq!(strategy(f, odd_offset, WorkgroupVec4), WorkgroupPerRow);
        let f16 = RowsLayout {
            input_format: InputFormat::F16,
            ..RowsLayout::contiguous(3, 8)
        };
        assert_eq!(strategy(f, f16, SubgroupVec4), SubgroupPerRow);
        // (VEC, LANES): subgroup size 8 here.
        let g = |f, s, cols| vec4_geometry(f, s, cols, &c);
        assert_eq!(g(RowFn::Softmax, SubgroupVec4, 16), (4, 1));
        assert_eq!(g(RowFn::Softmax, SubgroupVec4, 64), (4, 4));
        assert_eq!(g(RowFn::Softmax, SubgroupVec4, 256), (8, 8));
        assert_eq!(g(RowFn::Logsumexp, SubgroupVec4, 4096), (4, 8));
        assert_eq!(g(RowFn::LogSoftmax, WorkgroupVec4, 4096), (4, 256));
        assert_eq!(g(RowFn::LogSoftmax, WorkgroupVec4, 16_384), (16, 256));
        assert_eq!(g(RowFn::LogSoftmax, WorkgroupVec4, 65_536), (4, 256));
        assert_eq!(g(RowFn::LogSoftmax, WorkgroupVec4, 256), (1, 64));
        // 16-byte stores: softmax / log_softmax rows that start on 16 bytes.
        let out4 = |f, l: RowsLayout| {
            plan(f, &l, SubgroupVec4, &c).unwrap().passes[0]
                .vec4
                .map(|v| v.2)
        };
        let l = RowsLayout::contiguous(3, 8);
        assert_eq!(out4(RowFn::Softmax, l), Some(true));
        assert_eq!(out4(RowFn::LogSoftmax, l), Some(true));
        assert_eq!(out4(RowFn::Logsumexp, l), Some(false));
        assert_eq!(out4(RowFn::LogsumexpParts, l), Some(false));
        let shifted = RowsLayout {
            output_offset: 4,
            ..l
        };
        assert_eq!(out4(RowFn::Softmax, shifted), Some(false));
        let wide = RowsLayout {
            output_stride: 10,
            ..l
        };
        assert_eq!(out4(RowFn::Softmax, wide), Some(false));
        let one_row = RowsLayout {
            output_stride: 10,
            ..RowsLayout::contiguous(1, 8)
        };
        assert_eq!(out4(RowFn::Softmax, one_row), Some(true));
    }

    #[test]
    fn subgroup_strategy_needs_the_feature() {
        let l = RowsLayout::contiguous(4, 64);
        assert!(matches!(
            plan(
                RowFn::Logsumexp,
                &l,
                Strategy::SubgroupPerRow,
                &caps(1 << 27, 256, false)
            ),
            Err(Error::Unsupported(_))
        ));
        // SubgroupVec4 too, whether or not the layout would run its scalar form.
        for l in [l, RowsLayout::contiguous(4, 63)] {
            assert!(matches!(
                plan(
                    RowFn::Logsumexp,
                    &l,
                    Strategy::SubgroupVec4,
                    &caps(1 << 27, 256, false)
                ),
                Err(Error::Unsupported(_))
            ));
        }
        // A subgroup wider than the workgroup: a row's lanes still fit one workgroup.
        let wide = Caps {
            subgroup_min: 128,
            subgroup_max: 128,
            cpu: false,
            ..caps(1 << 27, 256, true)
        };
        let p = plan(
            RowFn::Softmax,
            &RowsLayout::contiguous(4, 4096),
            Strategy::SubgroupVec4,
            &wide,
        )
        .unwrap();
        assert_eq!(p.passes[0].vec4.map(|v| v.1), Some(64));
        assert_eq!(p.passes[0].groups, 4);
    }
}
