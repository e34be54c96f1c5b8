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
pub(crate) fn check_len(what: &'static str, v: &[f32], expected: usize) -> Result<(), Error> {
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
    fn groups_fold_into_two_dimensions() {
        assert_eq!(fold_groups(70_000, 65_535), (65_535, 2));
        assert_eq!(fold_groups(0, 65_535), (1, 1));
        assert_eq!(fold_groups(10, 65_535), (10, 1));
    }
}
