//! Geometry shared by every family: what a planner knows of a device ([`Caps`]), binding
//! windows, group counts and 2-D grids, and the device limits and driver caps, each defined
//! once.

use super::device::Gpu;
use super::passes::CHUNK;
use crate::error::Error;

/// How the input's entries are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InputFormat {
    /// IEEE binary32, 4 bytes an entry.
    #[default]
    F32,
    /// IEEE binary16 (`half::f16`), 2 bytes an entry, two to a 4-byte word (the first entry in
    /// the low half). Decoded exactly to f32 from the bits (subnormals, infinities and NaN
    /// included) by integer arithmetic, so every adapter reads it — `Features::SHADER_F16` is
    /// not needed; everything after the load is the f32 kernel.
    F16,
}

impl InputFormat {
    /// Bytes an entry.
    pub fn bytes(self) -> u64 {
        match self {
            InputFormat::F32 => 4,
            InputFormat::F16 => 2,
        }
    }
}

/// How the output's entries are stored: f32, or (softmax and log_softmax only) f16 rounded to
/// nearest even from the f32 result — the same two formats as the input's.
pub type OutputFormat = InputFormat;

/// What the planner needs to know of a device.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caps {
    pub max_binding: u64,
    pub storage_align: u64,
    pub max_wg: u32,
    pub subgroup: bool,
    pub subgroup_min: u32,
    pub subgroup_max: u32,
    pub cpu: bool,
    /// Workgroup memory an entry point may use (`max_compute_workgroup_storage_size`).
    pub workgroup_bytes: u64,
    /// The most work one dispatch may carry, in [`WORK_UNIT`]s: [`GL_DISPATCH_WORK`] on GL,
    /// unbounded elsewhere. See [`Caps::per_dispatch`].
    pub dispatch_work: u64,
}

/// The cost of one entry of a row op or an element-wise loss pass (a load, an `exp`, a store),
/// in the units of [`Caps::dispatch_work`]; one unit is about one multiply-add of the mixture
/// kernels. On llvmpipe (Mesa 22.3, 2 cores, release build) log-sum-exp reads 1.46 G entries/s
/// and log_softmax 0.6 G/s (4096 × 4096), the mixture score does 1.7 G multiply-adds/s.
pub(crate) const WORK_UNIT: u64 = 2;

/// The work budget of one dispatch on GL: 2^26 units, some 40 ms on llvmpipe on 2 idle cores
/// (docs/gl-context.md). wgpu-hal's GL backend holds the context lock for a whole
/// `Queue::submit` (llvmpipe runs each dispatch to completion inside it) and any other thread
/// that waits 6 s for that lock panics; the blocking calls submit one dispatch at a time on GL,
/// so this bounds how long they hold it, with a wide margin for a loaded machine.
pub(crate) const GL_DISPATCH_WORK: u64 = 1 << 26;

impl Caps {
    /// How many items of `work` units each one dispatch may take (at least one).
    pub fn per_dispatch(&self, work: u64) -> u64 {
        (self.dispatch_work / work.max(1)).max(1)
    }

    pub fn of(gpu: &Gpu) -> Caps {
        let l = &gpu.limits;
        Caps {
            max_binding: l.max_storage_buffer_binding_size.min(l.max_buffer_size),
            storage_align: u64::from(l.min_storage_buffer_offset_alignment).max(4),
            max_wg: l
                .max_compute_invocations_per_workgroup
                .min(l.max_compute_workgroup_size_x),
            subgroup: gpu.has_subgroups(),
            subgroup_min: gpu.info().subgroup_sizes.0.max(1),
            subgroup_max: gpu.info().subgroup_sizes.1.max(1),
            cpu: gpu.info().device_type == wgpu::DeviceType::Cpu,
            workgroup_bytes: u64::from(l.max_compute_workgroup_storage_size),
            dispatch_work: if gpu.bounded_submits() {
                GL_DISPATCH_WORK
            } else {
                u64::MAX
            },
        }
    }
}

/// A byte range of a caller's buffer, bound as one storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub offset: u64,
    pub size: u64,
}

/// llvmpipe and lavapipe (Mesa's gallivm) end every loop of an invocation once the invocation
/// has run 65,535 loop iterations in all, silently. So no invocation walks more than LANE_MAX
/// entries (read, then written again by softmax / log_softmax), nor more than one grid-stride
/// round: rows per dispatch are capped to fit MAX_GROUPS workgroups.
pub(crate) const LANE_MAX: u64 = 16_384;
/// The bytes of a storage binding a window can use: windows start on the storage alignment
/// below their first entry, so up to `storage_align − 4` bytes of a binding go before it. A
/// device whose binding cannot hold `least` bytes past that slack is refused.
pub(crate) fn usable_binding(caps: &Caps, least: u64) -> Result<u64, Error> {
    let slack = caps.storage_align - 4;
    if caps.max_binding <= slack + least {
        return Err(Error::Limit(format!(
            "max_storage_buffer_binding_size is {}",
            caps.max_binding
        )));
    }
    Ok(caps.max_binding - slack)
}

/// What a mixture kernel lets one invocation walk: [`LANE_MAX`] less a margin for the loops
/// around the component loop.
pub(crate) const LANE_BUDGET: u64 = 16_000;
/// Cap on workgroups per dispatch; kernels loop over the rest (grid-stride), and
/// groups × WG stays below 2^32.
pub(crate) const MAX_GROUPS: u64 = 1 << 22;

/// The largest workgroup any kernel uses (`WG_MAX` in `shaders/logsumexp.wgsl`, checked by
/// a test).
pub(crate) const WG_MAX: u32 = 256;

pub(crate) fn shape_err(what: &str) -> Error {
    Error::Shape(format!("{what} overflows the addressable range"))
}

pub(crate) fn u32_of(v: u64, what: &str) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| shape_err(what))
}

/// A window over `[first, first + bytes)` starting at the alignment boundary below `first`;
/// returns the window and the element offset of `first` inside it.
pub(crate) fn window(first: u64, bytes: u64, align: u64) -> (Window, u32) {
    window_of(first, bytes, align, 4)
}

/// [`window`] for entries of `entry` bytes: the binding from the aligned start, its size rounded
/// up to whole 4-byte words, and the first entry's index in it.
pub(crate) fn window_of(first: u64, bytes: u64, align: u64, entry: u64) -> (Window, u32) {
    let start = first - first % align;
    (
        Window {
            offset: start,
            size: (first - start + bytes).next_multiple_of(4),
        },
        ((first - start) / entry) as u32,
    )
}

/// Splits a workgroup count into a 2-D grid (x ≤ max per dimension); kernels recover the linear
/// index as x + y · num_workgroups.x and loop over anything beyond the cap.
pub(crate) fn fold_groups(groups: u64, max_per_dim: u32) -> (u32, u32) {
    let groups = groups.clamp(
        1,
        MAX_GROUPS.min(u64::from(max_per_dim) * u64::from(max_per_dim)),
    );
    let x = groups.min(u64::from(max_per_dim));
    (x as u32, groups.div_ceil(x) as u32)
}

/// An error unless `v` holds `expected` values.
pub(crate) fn check_len<T>(what: &'static str, v: &[T], expected: usize) -> Result<(), Error> {
    if v.len() != expected {
        return Err(Error::InputLength {
            what,
            expected,
            actual: v.len(),
        });
    }
    Ok(())
}

/// `rows × cols` as a count of entries, within what the chunked reductions index.
pub(crate) fn elems(rows: usize, cols: usize) -> Result<u64, Error> {
    (rows as u64)
        .checked_mul(cols as u64)
        .filter(|&n| n <= u64::from(u32::MAX) * CHUNK)
        .ok_or_else(|| Error::Shape(format!("{rows} × {cols} is too large")))
}

/// `total` items in batches of `per` (at least 1): `(first, count)` of each, in order — the
/// windows of rows, points or segments every planner walks.
pub(crate) fn batches(total: u64, per: u64) -> impl Iterator<Item = (u64, u64)> {
    let per = per.max(1);
    (0..total.div_ceil(per)).map(move |b| {
        let first = b * per;
        (first, per.min(total - first))
    })
}

/// Rows of classes as the categorical losses read them: packed rows of `classes` entries
/// (`inner` = 1), or PyTorch's class axis 1 of (N, C, d1, …, dk) with `inner` = d1 ⋯ dk, where
/// row r = n · inner + p (position p of sample n) has its classes `inner` entries apart from
/// entry n · classes · inner + p.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClassRows {
    pub rows: u64,
    pub classes: u64,
    pub inner: u64,
}

impl ClassRows {
    /// Packed rows: a row-major `rows × classes` matrix.
    pub fn packed(rows: u64, classes: u64) -> ClassRows {
        ClassRows {
            rows,
            classes,
            inner: 1,
        }
    }

    /// The entry of class 0 of row `r`.
    pub fn start(&self, r: u64) -> u64 {
        let inner = self.inner.max(1);
        (r / inner) * self.classes * inner + r % inner
    }

    /// The first entry and the number of entries from class `c0` of row `r0` to class `c1 − 1`
    /// of row `r0 + k − 1` (k ≥ 1, c1 > c0).
    pub fn span(&self, r0: u64, k: u64, c0: u64, c1: u64) -> (u64, u64) {
        let inner = self.inner.max(1);
        let first = self.start(r0) + c0 * inner;
        (first, self.start(r0 + k - 1) + (c1 - 1) * inner + 1 - first)
    }

    /// Batches `(first row, rows)` of whole rows, at most `k_cap` rows each, whose spans hold at
    /// most `max_entries` entries: runs of whole samples where a sample fits, else runs of
    /// positions inside one sample. A row whose classes span more than `max_entries` entries is
    /// an [`Error::Limit`].
    pub fn batches(&self, max_entries: u64, k_cap: u64) -> Result<Vec<(u64, u64)>, Error> {
        let (c, inner) = (self.classes.max(1), self.inner.max(1));
        let row_span = (c - 1) * inner + 1;
        if row_span > max_entries {
            return Err(Error::Limit(format!(
                "the {} classes of a row span {row_span} entries, more than a storage binding \
                 holds",
                self.classes
            )));
        }
        let k_cap = k_cap.max(1);
        if inner == 1 {
            return Ok(batches(self.rows, (max_entries / c).min(k_cap)).collect());
        }
        let samples = max_entries / (c * inner);
        if samples >= 1 && k_cap >= inner {
            let per = samples.min(k_cap / inner) * inner;
            return Ok(batches(self.rows, per).collect());
        }
        let per = inner.min(k_cap).min(max_entries - (row_span - 1));
        let mut out = Vec::new();
        for n in 0..self.rows.div_ceil(inner) {
            let in_sample = inner.min(self.rows - n * inner);
            out.extend(batches(in_sample, per).map(|(p, k)| (n * inner + p, k)));
        }
        Ok(out)
    }
}

/// The most dimensions an [`NdLayout`] may have.
pub const MAX_DIMS: usize = 8;

/// Where an N-d strided array lives in a buffer: its shape, the strides of its dimensions in
/// entries (row-major contiguous strides for [`NdLayout::contiguous`]; any non-negative strides
/// otherwise, 0 included, as NumPy's broadcast views have), the byte offset of entry
/// `(0, …, 0)`, and how the entries are stored. At most [`MAX_DIMS`] dimensions; 0 dimensions
/// is a scalar.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NdLayout {
    /// Extent of each dimension (0 is allowed: an empty array).
    pub shape: Vec<usize>,
    /// Entries from one index of a dimension to the next, one per dimension.
    pub strides: Vec<usize>,
    /// Byte offset of the first entry (a multiple of the entry's size).
    pub offset: u64,
    /// How the entries are stored (f32 or f16).
    pub format: InputFormat,
}

impl NdLayout {
    /// A dense row-major (C-order) f32 array of `shape` at offset 0.
    pub fn contiguous(shape: &[usize]) -> NdLayout {
        NdLayout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
            format: InputFormat::F32,
        }
    }

    /// Number of entries (the product of the shape; 1 for a scalar).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the dimension count, the strides' count and the offset's alignment, and returns
    /// the byte just past the last entry (the buffer size the array needs; `offset` for an empty
    /// array).
    pub fn end(&self) -> Result<u64, Error> {
        if self.shape.len() > MAX_DIMS {
            return Err(Error::Shape(format!(
                "{} dimensions; at most {MAX_DIMS}",
                self.shape.len()
            )));
        }
        if self.strides.len() != self.shape.len() {
            return Err(Error::Shape(format!(
                "{} strides for {} dimensions",
                self.strides.len(),
                self.shape.len()
            )));
        }
        let eb = self.format.bytes();
        if !self.offset.is_multiple_of(eb) {
            return Err(Error::Buffer(format!(
                "the offset {} is not a multiple of the entry size ({eb} bytes)",
                self.offset
            )));
        }
        if self.is_empty() {
            return Ok(self.offset);
        }
        let mut last = 0u64;
        for (&n, &s) in self.shape.iter().zip(&self.strides) {
            last = (n as u64 - 1)
                .checked_mul(s as u64)
                .and_then(|v| v.checked_add(last))
                .ok_or_else(|| shape_err("the array's span"))?;
        }
        (last + 1)
            .checked_mul(eb)
            .and_then(|b| b.checked_add(self.offset))
            .ok_or_else(|| shape_err("the array's span"))
    }
}

/// Row-major (C-order) strides of `shape`, in entries.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut s = 1usize;
    for (d, &n) in shape.iter().enumerate().rev() {
        strides[d] = s;
        s = s.saturating_mul(n.max(1));
    }
    strides
}

/// Which axes a reduction runs over, as SciPy's and NumPy's `axis` argument: `All` is
/// `axis=None` (every axis); `List` is an int or a tuple of ints, negative ones counting from
/// the end. An empty list reduces nothing (each entry on its own). Duplicates and axes out of
/// range are an [`Error::Axis`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Axes {
    /// Every axis (`axis=None`, SciPy's default).
    #[default]
    All,
    /// These axes.
    List(Vec<isize>),
}

impl From<isize> for Axes {
    fn from(a: isize) -> Axes {
        Axes::List(vec![a])
    }
}

impl From<Vec<isize>> for Axes {
    fn from(a: Vec<isize>) -> Axes {
        Axes::List(a)
    }
}

impl From<&[isize]> for Axes {
    fn from(a: &[isize]) -> Axes {
        Axes::List(a.to_vec())
    }
}

impl<const N: usize> From<[isize; N]> for Axes {
    fn from(a: [isize; N]) -> Axes {
        Axes::List(a.to_vec())
    }
}

impl<T: Into<Axes>> From<Option<T>> for Axes {
    fn from(a: Option<T>) -> Axes {
        a.map_or(Axes::All, Into::into)
    }
}

impl Axes {
    /// Which of `ndim` dimensions are reduced, as SciPy resolves `axis`.
    pub fn mask(&self, ndim: usize) -> Result<Vec<bool>, Error> {
        let list = match self {
            Axes::All => return Ok(vec![true; ndim]),
            Axes::List(l) => l,
        };
        let mut mask = vec![false; ndim];
        for &a in list {
            let d = if a < 0 { a + ndim as isize } else { a };
            if d < 0 || d >= ndim as isize {
                return Err(Error::Axis(format!(
                    "axis {a} is out of bounds for an array of dimension {ndim}"
                )));
            }
            if std::mem::replace(&mut mask[d as usize], true) {
                return Err(Error::Axis(format!("duplicate value in 'axis': {list:?}")));
            }
        }
        Ok(mask)
    }
}

/// The shape of a reduction's result: the kept dimensions in order, and with `keepdims` the
/// reduced ones as 1.
pub fn reduced_shape(shape: &[usize], mask: &[bool], keepdims: bool) -> Vec<usize> {
    shape
        .iter()
        .zip(mask)
        .filter_map(|(&n, &r)| match (r, keepdims) {
            (false, _) => Some(n),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

/// One dimension of a folded N-d problem: its extent and its strides in the input, the output
/// and the mask (bits; 0 where there is no mask, or where it is broadcast), in entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dim {
    pub n: u64,
    pub input: u64,
    pub output: u64,
    pub mask: u64,
}

/// An N-d reduction folded: the kept dimensions (row-major order of the results) and the
/// reduced ones (the row-major order in which a result's entries are walked), size-1
/// dimensions dropped and neighbours of the same kind merged where every stride allows it, so
/// that the result of a set of entries does not depend on how the layout was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Folded {
    pub kept: Vec<Dim>,
    pub reduced: Vec<Dim>,
}

impl Folded {
    /// `shape`, its input, output and mask strides (`mask` empty: none) and the reduced
    /// dimensions, folded. An empty reduced set is one dimension of 1 entry.
    pub fn new(
        shape: &[usize],
        input: &[usize],
        output: &[usize],
        mask: &[usize],
        reduced: &[bool],
    ) -> Folded {
        let mut kept_dims: Vec<Dim> = Vec::new();
        let mut red_dims: Vec<Dim> = Vec::new();
        for d in 0..shape.len() {
            let dim = Dim {
                n: shape[d] as u64,
                input: input[d] as u64,
                output: output[d] as u64,
                mask: mask.get(d).map_or(0, |&m| m as u64),
            };
            if dim.n == 1 {
                continue;
            }
            let list = if reduced[d] {
                &mut red_dims
            } else {
                &mut kept_dims
            };
            // Merging with the previous dimension of the same kind keeps the row-major order
            // only if no dimension of the other kind lies between them.
            let adjacent = (0..d)
                .rev()
                .find(|&e| shape[e] != 1)
                .is_some_and(|e| reduced[e] == reduced[d]);
            match list.last_mut() {
                Some(prev)
                    if adjacent
                        && prev.input == dim.n * dim.input
                        && prev.output == dim.n * dim.output
                        && prev.mask == dim.n * dim.mask
                        && dim.n != 0 =>
                {
                    prev.n *= dim.n;
                    prev.input = dim.input;
                    prev.output = dim.output;
                    prev.mask = dim.mask;
                }
                _ => list.push(dim),
            }
        }
        if red_dims.is_empty() {
            red_dims.push(Dim {
                n: 1,
                input: 1,
                output: 1,
                mask: 0,
            });
        }
        Folded {
            kept: kept_dims,
            reduced: red_dims,
        }
    }

    /// Kept positions (results of a reduction).
    pub fn positions(&self) -> u64 {
        self.kept.iter().map(|d| d.n).product()
    }

    /// Entries each position reduces.
    pub fn extent(&self) -> u64 {
        self.reduced.iter().map(|d| d.n).product()
    }
}

/// Packs a mask (true = the entry takes part) 32 entries a word: entry `g` (row-major) at bit
/// `g % 32` of word `g / 32`.
pub fn pack_mask(where_: &[bool]) -> Vec<u32> {
    let mut words = vec![0u32; where_.len().div_ceil(32)];
    for (g, &w) in where_.iter().enumerate() {
        if w {
            words[g / 32] |= 1 << (g % 32);
        }
    }
    words
}

/// The smallest box of multi-indices (inclusive `(lo, hi)` per dimension of extents `n`) that
/// holds the row-major indices `a ..= b`.
pub(crate) fn index_box(n: &[u64], a: u64, b: u64) -> Vec<(u64, u64)> {
    let decode = |mut v: u64| {
        let mut idx = vec![0; n.len()];
        for d in (0..n.len()).rev() {
            idx[d] = v % n[d].max(1);
            v /= n[d].max(1);
        }
        idx
    };
    let (ia, ib) = (decode(a), decode(b));
    let mut out = Vec::with_capacity(n.len());
    let mut split = false;
    for d in 0..n.len() {
        if split {
            out.push((0, n[d].saturating_sub(1)));
        } else {
            out.push((ia[d], ib[d]));
            split = ia[d] != ib[d];
        }
    }
    out
}

/// The lowest and highest entry offsets of a box of multi-indices with these strides.
pub(crate) fn box_span(bx: &[(u64, u64)], strides: impl Iterator<Item = u64>) -> (u64, u64) {
    bx.iter()
        .zip(strides)
        .fold((0, 0), |(lo, hi), (&(a, b), s)| (lo + a * s, hi + b * s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_item_once() {
        assert_eq!(batches(10, 4).collect::<Vec<_>>(), [(0, 4), (4, 4), (8, 2)]);
        assert_eq!(batches(8, 4).collect::<Vec<_>>(), [(0, 4), (4, 4)]);
        assert_eq!(batches(0, 4).count(), 0);
        assert_eq!(batches(3, 0).collect::<Vec<_>>(), [(0, 1), (1, 1), (2, 1)]);
    }

    #[test]
    fn class_rows_batches_cover_every_row_within_the_binding() {
        // (rows, classes, inner), the entries a binding holds, the rows a dispatch takes.
        for (rows, classes, inner, max, cap) in [
            (12, 5, 1, 20, 100),
            (24, 3, 4, 30, 100),
            (24, 3, 4, 30, 2),
            (24, 3, 4, 10, 100),
            (26, 7, 13, 100, 100),
            (26, 7, 13, 85, 5),
            (9, 2, 3, 1000, 1000),
        ] {
            let cr = ClassRows {
                rows,
                classes,
                inner,
            };
            let got = cr.batches(max, cap).unwrap();
            let mut next = 0;
            for &(r0, k) in &got {
                assert_eq!(r0, next, "{cr:?}: rows in order, each once");
                assert!(k >= 1 && k <= cap);
                let (first, len) = cr.span(r0, k, 0, classes);
                assert!(len <= max, "{cr:?}: span {len} > {max}");
                // Every class of every row of the batch lies inside the span.
                for r in r0..r0 + k {
                    for c in 0..classes {
                        let e = cr.start(r) + c * inner;
                        assert!(e >= first && e < first + len);
                    }
                }
                next = r0 + k;
            }
            assert_eq!(next, rows);
        }
        // Entry (n, c, p) of (N, C, inner).
        let cr = ClassRows {
            rows: 6,
            classes: 4,
            inner: 3,
        };
        assert_eq!(cr.start(4), 12 + 1);
        assert_eq!(cr.span(1, 2, 0, 4), (1, 3 * 3 + 2));
        assert!(matches!(cr.batches(9, 100), Err(Error::Limit(_))));
    }

    #[test]
    fn axes_resolve_as_scipy_does() {
        assert_eq!(Axes::All.mask(3).unwrap(), [true; 3]);
        assert_eq!(Axes::from(-1).mask(3).unwrap(), [false, false, true]);
        assert_eq!(Axes::from([0, 2]).mask(3).unwrap(), [true, false, true]);
        assert_eq!(Axes::from(vec![]).mask(2).unwrap(), [false, false]);
        assert_eq!(Axes::from(None::<isize>), Axes::All);
        assert!(matches!(Axes::from(3).mask(3), Err(Error::Axis(_))));
        assert!(matches!(Axes::from(-4).mask(3), Err(Error::Axis(_))));
        assert!(matches!(Axes::from([1, -2]).mask(3), Err(Error::Axis(_))));
        assert!(matches!(Axes::from(0).mask(0), Err(Error::Axis(_))));
        assert_eq!(reduced_shape(&[2, 3, 4], &[true, false, true], false), [3]);
        assert_eq!(
            reduced_shape(&[2, 3, 4], &[true, false, true], true),
            [1, 3, 1]
        );
    }

    #[test]
    fn folding_merges_neighbours_and_drops_unit_dimensions() {
        let dim = |n, input, output| Dim {
            n,
            input,
            output,
            mask: 0,
        };
        // Axis 0 of a contiguous (2, 3, 4): kept (3, 4) merge into 12.
        let f = Folded::new(
            &[2, 3, 4],
            &[12, 4, 1],
            &[0, 4, 1],
            &[],
            &[true, false, false],
        );
        assert_eq!(f.kept, [dim(12, 1, 1)]);
        assert_eq!(f.reduced, [dim(2, 12, 0)]);
        // Axes (0, 2): not neighbours, not merged; a unit dimension between changes nothing.
        let f = Folded::new(
            &[2, 3, 1, 4],
            &[12, 4, 4, 1],
            &[0, 1, 1, 0],
            &[],
            &[true, false, false, true],
        );
        assert_eq!(f.kept, [dim(3, 4, 1)]);
        assert_eq!(f.reduced, [dim(2, 12, 0), dim(4, 1, 0)]);
        // Axes (1, 2) of (2, 3, 1, 4) with the unit dimension kept: 12 entries in a row.
        let f = Folded::new(
            &[2, 3, 1, 4],
            &[12, 4, 4, 1],
            &[1, 0, 0, 0],
            &[],
            &[false, true, false, true],
        );
        assert_eq!(f.reduced, [dim(12, 1, 0)]);
        // Nothing reduced: one entry a position.
        let f = Folded::new(&[5], &[1], &[1], &[], &[false]);
        assert_eq!(f.reduced, [dim(1, 1, 1)]);
        assert_eq!((f.positions(), f.extent()), (5, 1));
        // A mask broadcast along axis 0 of (3, 4): its stride 0 keeps the dimensions apart.
        let f = Folded::new(&[3, 4], &[4, 1], &[4, 1], &[0, 1], &[false, false]);
        assert_eq!(f.kept.len(), 2);
        let f = Folded::new(&[3, 4], &[4, 1], &[4, 1], &[4, 1], &[false, false]);
        assert_eq!(f.kept.len(), 1);
    }

    #[test]
    fn index_boxes_hold_their_ranges() {
        let n = [3, 4, 5];
        for a in 0..60u64 {
            for b in a..60 {
                let bx = index_box(&n, a, b);
                for v in a..=b {
                    let idx = [v / 20, (v / 5) % 4, v % 5];
                    for d in 0..3 {
                        assert!(bx[d].0 <= idx[d] && idx[d] <= bx[d].1, "{a}..={b}: {bx:?}");
                    }
                }
            }
        }
        assert_eq!(index_box(&n, 7, 7), [(0, 0), (1, 1), (2, 2)]);
        assert_eq!(box_span(&[(0, 1), (2, 3)], [10, 1].into_iter()), (2, 13));
    }

    #[test]
    fn groups_fold_into_two_dimensions() {
        assert_eq!(fold_groups(70_000, 65_535), (65_535, 2));
        assert_eq!(fold_groups(0, 65_535), (1, 1));
        assert_eq!(fold_groups(10, 65_535), (10, 1));
    }
}
