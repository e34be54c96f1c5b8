// The input of the log-sum-exp family as 4-byte words (any alignment, f32 or f16 entries): the
// binding logsumexp.wgsl reads through `load_x`. Follows logsumexp.wgsl in its modules.

@group(0) @binding(1) var<storage, read> input: array<u32>;

// Entry i of the bound input as f32 bits.
fn load_x(i: u32) -> u32 {
    if (IN_F16) {
        return f16_entry_bits(input[i >> 1u], i);
    }
    return input[i];
}
