//! The planners of the likelihood module that every family lowering to it shares: one pass
//! description ([`LlPass`]), windows of element-wise passes over rows, and the pairwise
//! reduction levels.

use super::geometry::{
    Caps, ClassRows, InputFormat, MAX_GROUPS, WORK_UNIT, Window, batches, u32_of, usable_binding,
    window_of,
};
use super::pipelines::{Module, PipelineKey};
use super::program::{Bind, Pass, Src};
use super::shaders::{LlParams, PARTIAL_BYTES};
use crate::codes::FINISH_PARTIAL;
use crate::error::Error;

/// Values per chunk and partials per reduction step (`CHUNK` in the WGSL).
pub(crate) const CHUNK: u64 = 64;
pub(crate) const LL_WG: u32 = 64;

#[derive(Clone, Debug)]
pub(crate) struct LlPass {
    pub key: PipelineKey,
    pub params: LlParams,
    pub groups: u64,
    /// Bindings 1 (a), 2 (b), 3 (c), 4 (out).
    pub bind: [Bind; 4],
    /// Binding 5: a window of the op's aux buffer bound as uniform, or the dummy.
    pub uniform: Option<Window>,
    /// Binding 6 of the wide layout (pipelines of `Module::LikelihoodWide` only).
    pub extra: Option<Bind>,
}

impl From<LlPass> for Pass {
    /// Bindings 1–4 as given, 5 the uniform window of the aux buffer (or the dummy), 6 on the
    /// wide layout.
    fn from(p: LlPass) -> Pass {
        let mut bind = p.bind.to_vec();
        bind.push(Bind::window(Src::Aux, p.uniform));
        if p.key.module == Module::LikelihoodWide {
            bind.push(Bind::whole(p.extra.map_or(Src::Dummy, |b| b.src)));
        }
        Pass {
            key: p.key,
            params: bytemuck::bytes_of(&p.params).to_vec(),
            groups: p.groups,
            bind,
        }
    }
}

/// A key of the likelihood module ([`PipelineKey::likelihood`]).
pub(crate) fn key(entry: &'static str, op: u32, reduce: u32) -> PipelineKey {
    PipelineKey::likelihood(entry, op, reduce)
}

/// `key` for a pass whose binding a holds entries of `format` (the `IN_F16` override).
pub(crate) fn key_reading(
    entry: &'static str,
    op: u32,
    reduce: u32,
    format: InputFormat,
) -> PipelineKey {
    PipelineKey {
        in_f16: format == InputFormat::F16,
        ..key(entry, op, reduce)
    }
}

/// Bytes a buffer of `n` entries of `format` needs: whole 4-byte words, as it is bound.
pub(crate) fn input_bytes(n: u64, format: InputFormat) -> u64 {
    (n * format.bytes()).next_multiple_of(4)
}
pub(crate) fn limit(what: &str, bytes: u64, caps: &Caps) -> Result<(), Error> {
    if bytes > caps.max_binding {
        return Err(Error::Limit(format!(
            "{what} needs {bytes} bytes in one storage binding; max_storage_buffer_binding_size is {}",
            caps.max_binding
        )));
    }
    Ok(())
}

/// The usable binding of a likelihood pass: at least a chunk past the alignment slack.
pub(crate) fn usable(caps: &Caps) -> Result<u64, Error> {
    usable_binding(caps, CHUNK * 4)
}

pub(crate) fn groups_for(invocations: u64) -> Result<u64, Error> {
    let g = invocations.div_ceil(u64::from(LL_WG));
    if g > MAX_GROUPS {
        return Err(Error::Limit(format!(
            "{invocations} invocations in one dispatch"
        )));
    }
    Ok(g)
}

/// The dispatches of an element-wise pass over a contiguous `rows × cols` matrix held, from
/// byte 0, in every buffer of `per_element` (windowed alike); `fixed` binds the others (a, b, c,
/// out order: `per_element` fills the slots marked `None` in `fixed`). Windows hold whole rows,
/// or, for rows longer than a binding, column ranges that start on a chunk boundary, so the
/// chunks — and the partial sums — do not depend on the binding size.
pub(crate) fn elementwise_passes(
    key: PipelineKey,
    base: LlParams,
    rows: u64,
    cols: u64,
    slots: [Option<Bind>; 4],
    per_element: [Src; 4],
    caps: &Caps,
) -> Result<Vec<LlPass>, Error> {
    elementwise_passes_at(key, base, rows, cols, cols, 0, slots, per_element, caps)
}

/// `elementwise_passes` over a strided matrix in the per-element buffers: row r starts at byte
/// `offset + r·pitch·4` (`offset` a multiple of 4, `pitch ≥ cols` elements), as a texture copied
/// into a buffer with padded rows is laid out. The kernel reads the pitch from `LlParams.k`
/// (0: `cols`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn elementwise_passes_at(
    key: PipelineKey,
    base: LlParams,
    rows: u64,
    cols: u64,
    pitch: u64,
    offset: u64,
    slots: [Option<Bind>; 4],
    per_element: [Src; 4],
    caps: &Caps,
) -> Result<Vec<LlPass>, Error> {
    let usable = usable(caps)?;
    let mut geo = Vec::new(); // (row0, k, col0, col1)
    if rows == 0 || cols == 0 {
        return Ok(Vec::new());
    }
    // Whole rows where a row fits one binding and one dispatch's work (`Caps::per_dispatch`).
    if pitch * 4 <= usable && pitch * WORK_UNIT <= caps.dispatch_work {
        let k_max = (usable / (pitch * 4))
            .min(caps.per_dispatch(pitch * WORK_UNIT))
            .max(1);
        for (r0, k) in batches(rows, k_max) {
            geo.push((r0, k, 0, cols));
        }
    } else {
        let width = ((usable / 4).min(caps.per_dispatch(WORK_UNIT)) / CHUNK).max(1) * CHUNK;
        for r in 0..rows {
            let mut c0 = 0;
            while c0 < cols {
                let c1 = (c0 + width).min(cols);
                geo.push((r, 1, c0, c1));
                c0 = c1;
            }
        }
    }
    let k_param = if pitch == cols {
        base.k
    } else {
        u32_of(pitch, "row pitch")?
    };
    let entry = if key.in_f16 { 2 } else { 4 };
    let span = |r0: u64, k: u64, c0: u64, c1: u64| {
        (
            offset + (r0 * pitch + c0) * entry,
            ((k - 1) * pitch + (c1 - c0)) * entry,
        )
    };
    geo_passes(
        key,
        LlParams { k: k_param, ..base },
        cols,
        &geo,
        span,
        slots,
        per_element,
        caps,
    )
}

/// `elementwise_passes` over categorical rows on a class axis ([`ClassRows`]; the kernel reads
/// `LlParams.inner`): batches of whole rows whose classes fit one binding.
pub(crate) fn elementwise_class_passes(
    key: PipelineKey,
    base: LlParams,
    cr: ClassRows,
    slots: [Option<Bind>; 4],
    per_element: [Src; 4],
    caps: &Caps,
) -> Result<Vec<LlPass>, Error> {
    if cr.rows == 0 || cr.classes == 0 {
        return Ok(Vec::new());
    }
    let entry = if key.in_f16 { 2 } else { 4 };
    let geo: Vec<_> = cr
        .batches(
            usable(caps)? / entry,
            caps.per_dispatch(cr.classes * WORK_UNIT),
        )?
        .into_iter()
        .map(|(r0, k)| (r0, k, 0, cr.classes))
        .collect();
    let span = |r0: u64, k: u64, c0: u64, c1: u64| {
        let (first, len) = cr.span(r0, k, c0, c1);
        (first * entry, len * entry)
    };
    let base = LlParams {
        inner: u32_of(cr.inner, "positions")?,
        ..base
    };
    geo_passes(key, base, cr.classes, &geo, span, slots, per_element, caps)
}

/// The elementwise passes of `geo` (first row, rows, first column, end column): each binds
/// the per-element buffers to the window `span` gives (first byte, bytes) and the others as
/// `slots` says.
#[allow(clippy::too_many_arguments)]
fn geo_passes(
    key: PipelineKey,
    base: LlParams,
    cols: u64,
    geo: &[(u64, u64, u64, u64)],
    span: impl Fn(u64, u64, u64, u64) -> (u64, u64),
    slots: [Option<Bind>; 4],
    per_element: [Src; 4],
    caps: &Caps,
) -> Result<Vec<LlPass>, Error> {
    let mut out = Vec::new();
    let cols32 = u32_of(cols, "cols")?;
    // f16 entries (IN_F16) in binding a, which is then the only per-element binding; the
    // geometry (chunks, windows of rows) stays that of f32, so the sums are the same.
    let entry = if key.in_f16 { 2 } else { 4 };
    debug_assert!(!key.in_f16 || slots[1..].iter().all(Option::is_some));
    for &(r0, k, c0, c1) in geo {
        let (first, bytes) = span(r0, k, c0, c1);
        let (w, off) = window_of(first, bytes, caps.storage_align, entry);
        let mut bind = [Bind::dummy(); 4];
        let mut offs = [0u32; 4];
        for j in 0..4 {
            match slots[j] {
                Some(b) => bind[j] = b,
                None => {
                    bind[j] = Bind {
                        src: per_element[j],
                        window: Some(w),
                    };
                    offs[j] = off;
                }
            }
        }
        let per_row = (c1 - c0).div_ceil(CHUNK);
        let mut params = LlParams {
            rows: k as u32,
            cols: cols32,
            col0: c0 as u32,
            col1: c1 as u32,
            row0: u32_of(r0, "rows")?,
            slots: u32_of(cols.div_ceil(CHUNK), "chunks")?,
            ..base
        };
        if slots[0].is_none() {
            params.a_off = offs[0];
        }
        if slots[1].is_none() {
            params.b_off = offs[1];
        }
        if slots[2].is_none() {
            params.c_off = offs[2];
        }
        if slots[3].is_none() {
            params.out_off = offs[3];
        }
        out.push(LlPass {
            key,
            params,
            groups: groups_for(k * per_row)?,
            bind,
            uniform: None,
            extra: None,
        });
    }
    Ok(out)
}

/// Reduction levels over `rows` independent sums of `len` partials in scratch 0: CHUNK partials
/// at a time, ping-ponging between the scratch buffers, until the last level writes each row's
/// result (`finish`) into `dst` at word `dst_off` (bound whole). Returns the passes and the
/// bytes scratch buffers 0 and 1 need.
pub(crate) fn reduce_passes(
    rows: u64,
    len: u64,
    finish: u32,
    count: f32,
    dst: Src,
    dst_off: u32,
    caps: &Caps,
) -> Result<(Vec<LlPass>, [u64; 2]), Error> {
    let (passes, mut need) = reduce_passes_from(
        Src::Scratch(0),
        rows,
        len,
        finish,
        count,
        dst,
        dst_off,
        caps,
    )?;
    need[0] = need[0].max(rows * len * PARTIAL_BYTES);
    Ok((passes, need))
}

/// Grows the scratch sizes `scratch[0]` and `scratch[1]` to what a reduction `need`s.
pub(crate) fn grow_scratch(scratch: &mut [u64], need: [u64; 2]) {
    scratch[0] = scratch[0].max(need[0]);
    scratch[1] = scratch[1].max(need[1]);
}

/// `reduce_passes` with the first level's partials in `src` (which the levels never write:
/// they ping-pong through scratch 1 and 0), for partials read more than once.
#[allow(clippy::too_many_arguments)]
pub(crate) fn reduce_passes_from(
    src: Src,
    rows: u64,
    len: u64,
    finish: u32,
    count: f32,
    dst: Src,
    dst_off: u32,
    caps: &Caps,
) -> Result<(Vec<LlPass>, [u64; 2]), Error> {
    let mut passes = Vec::new();
    let mut need = [0u64, 0];
    let mut from = src;
    let mut len_in = len;
    loop {
        let len_out = len_in.div_ceil(CHUNK).max(1);
        let last = len_out == 1;
        let a = if len_in == 0 {
            Bind::dummy()
        } else {
            limit("partial sums", rows * len_in * PARTIAL_BYTES, caps)?;
            Bind::whole(from)
        };
        let (out, finish_here) = if last {
            let out = if matches!(dst, Src::Output | Src::Input(_)) {
                // A window: the caller's buffer may be larger than a binding.
                Bind {
                    src: dst,
                    window: Some(Window {
                        offset: 0,
                        size: (u64::from(dst_off) + rows) * 4,
                    }),
                }
            } else {
                Bind::whole(dst)
            };
            (out, finish)
        } else {
            let to = if from == Src::Scratch(1) { 0 } else { 1 };
            need[to] = need[to].max(rows * len_out * PARTIAL_BYTES);
            (Bind::whole(Src::Scratch(to)), FINISH_PARTIAL)
        };
        passes.push(LlPass {
            key: key("reduce", 0, 0),
            params: LlParams {
                rows: u32_of(rows, "rows")?,
                len_in: u32_of(len_in, "partials")?,
                slots: len_out as u32,
                finish: finish_here,
                count,
                out_off: if last { dst_off } else { 0 },
                ..LlParams::default()
            },
            groups: groups_for(rows * len_out)?,
            uniform: None,
            extra: None,
            bind: [a, Bind::dummy(), Bind::dummy(), out],
        });
        if last {
            break;
        }
        from = if from == Src::Scratch(1) {
            Src::Scratch(0)
        } else {
            Src::Scratch(1)
        };
        len_in = len_out;
    }
    Ok((passes, need))
}
