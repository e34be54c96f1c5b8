//! CPU mirror of `shaders/bandwidth.wgsl`: the wrapping sum of the words read, and a plain read
//! of host memory at the speed one core manages (the benches' CPU yardstick).

/// Invocation `t`'s partial sum: words `t, t + invocations, …`, added with wrapping.
pub fn read_probe_partial(words: &[u32], t: usize, invocations: usize) -> u32 {
    words
        .iter()
        .skip(t)
        .step_by(invocations.max(1))
        .fold(0u32, |acc, &w| acc.wrapping_add(w))
}

/// `shaders/bandwidth_vec4.wgsl`'s partial of invocation `t`: the vec4 words (4 u32 words
/// each) `t, t + invocations, …` added component by component, with wrapping.
pub fn read_probe_vec4_partial(words: &[u32], t: usize, invocations: usize) -> [u32; 4] {
    words
        .chunks_exact(4)
        .skip(t)
        .step_by(invocations.max(1))
        .fold([0u32; 4], |acc, w| {
            std::array::from_fn(|c| acc[c].wrapping_add(w[c]))
        })
}

/// The software adapters' partial of invocation `t` (`read_probe` OP 3 and
/// `read_probe_vec4_runs`): units (`width` u32 words each: 1, or 4 for the vec4 probe) `t·per`
/// to `(t + 1)·per − 1`, `per = ⌈units / invocations⌉`, added component by component with
/// wrapping.
pub fn read_probe_run_partial(
    words: &[u32],
    width: usize,
    t: usize,
    invocations: usize,
) -> Vec<u32> {
    let units = words.len() / width;
    let per = units.div_ceil(invocations.max(1));
    let end = ((t + 1) * per).min(units);
    let mut acc = vec![0u32; width];
    for u in (t * per).min(end)..end {
        for (c, a) in acc.iter_mut().enumerate() {
            *a = a.wrapping_add(words[u * width + c]);
        }
    }
    acc
}

/// The total of every word with wrapping addition: what the partials of `read_probe` add up
/// to, in any order. Also the CPU read of the benches (the compiler vectorises it).
pub fn read_sum(words: &[u32]) -> u32 {
    words.iter().fold(0u32, |acc, &w| acc.wrapping_add(w))
}
