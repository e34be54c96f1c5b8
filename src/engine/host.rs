//! Host memory for results: the vectors the blocking calls return.
//!
//! A result is copied out of a mapped buffer into a new vector. A vector of tens of MiB comes
//! straight from the kernel of the OS (glibc serves allocations this large with `mmap`), so its
//! first write faults in one 4 KiB page at a time: 16,384 faults, each zeroing its page, for a
//! 64 MiB softmax, which on the 2-core machine take 32 ms of the copy's 33 against 8 ms when the
//! pages are 2 MiB huge pages (docs/performance.md, "Results in huge pages"). So on Linux a
//! result of 4 MiB or more is advised `MADV_HUGEPAGE` before it is written, as NumPy does for its
//! own arrays of 4 MiB or more: with transparent huge pages in their default `madvise` mode the
//! kernel then backs each aligned 2 MiB of it with one huge page. Elsewhere, or where the kernel
//! declines, the advice changes nothing but the speed.

/// Results smaller than this are written into ordinary pages.
#[cfg(target_os = "linux")]
const HUGE_FROM: usize = 4 << 20;

/// The bytes of `bytes` as `T`s in a new vector (huge pages where they pay; see the module
/// docs). `bytes.len()` is a multiple of `size_of::<T>()`; a remainder is dropped.
pub(crate) fn collect<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    let len = bytes.len() / std::mem::size_of::<T>().max(1);
    let mut out: Vec<T> = Vec::with_capacity(len);
    advise_huge(&mut out);
    let whole = &bytes[..len * std::mem::size_of::<T>()];
    match bytemuck::try_cast_slice::<u8, T>(whole) {
        Ok(values) => out.extend_from_slice(values),
        // A mapped range is aligned for every T the crate reads; a misaligned slice still
        // reads, entry by entry.
        Err(_) => out.extend(
            whole
                .chunks_exact(std::mem::size_of::<T>())
                .map(bytemuck::pod_read_unaligned::<T>),
        ),
    }
    out
}

/// Advises the kernel to back the 2 MiB-aligned part of `v`'s spare capacity with huge pages,
/// when that capacity is at least [`HUGE_FROM`] bytes.
#[cfg(target_os = "linux")]
fn advise_huge<T>(v: &mut Vec<T>) {
    // The vector's allocation spans `bytes` bytes from its pointer; it is borrowed mutably.
    let bytes = v.capacity().saturating_mul(std::mem::size_of::<T>());
    advise_range(v.as_mut_ptr() as usize, bytes);
}

/// [`advise_huge`] for the values of a slice not yet written (a zeroed allocation whose pages
/// the kernel of the OS has not yet provided).
#[cfg(target_os = "linux")]
pub(crate) fn advise_huge_slice<T>(v: &mut [T]) {
    advise_range(v.as_mut_ptr() as usize, std::mem::size_of_val(v));
}

/// Advises `MADV_HUGEPAGE` for the 2 MiB-aligned part of the `bytes` bytes from `start`, an
/// allocation the caller borrows mutably, when `bytes` is at least [`HUGE_FROM`].
#[cfg(target_os = "linux")]
fn advise_range(start: usize, bytes: usize) {
    const HUGE: usize = 2 << 20;
    if bytes < HUGE_FROM {
        return;
    }
    let (Some(first), Some(end)) = (
        start.checked_add(HUGE - 1).map(|a| a & !(HUGE - 1)),
        start.checked_add(bytes).map(|e| e & !(HUGE - 1)),
    ) else {
        return;
    };
    if end > first {
        // SAFETY: [first, end) lies within the caller's allocation, which it borrows mutably.
        // `MADV_HUGEPAGE` only changes how the kernel backs the range with physical pages,
        // never its contents or its mapping; its failure (EINVAL where transparent huge pages
        // are not built in) is ignored, as the advice is only a hint.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge<T>(_: &mut Vec<T>) {}

#[cfg(not(target_os = "linux"))]
pub(crate) fn advise_huge_slice<T>(_: &mut [T]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_keeps_every_value_small_and_large() {
        for len in [0usize, 1, 7, 1 << 20, (3 << 20) + 5] {
            let values: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            let back: Vec<f32> = collect(bytemuck::cast_slice(&values));
            assert_eq!(back, values, "len {len}");
        }
    }

    #[test]
    fn collect_reads_misaligned_bytes() {
        let values: Vec<u32> = (0..1000).map(|i| i * 2654435761u32).collect();
        let mut bytes = vec![0u8; 1];
        bytes.extend_from_slice(bytemuck::cast_slice(&values));
        let back: Vec<u32> = collect(&bytes[1..]);
        assert_eq!(back, values);
    }
}
