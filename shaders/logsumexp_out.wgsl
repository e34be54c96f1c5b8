// The output of the log-sum-exp family as 4-byte words (any alignment): binding 2 and the
// accessors logsumexp.wgsl writes through. Follows the input's file in its modules.

@group(0) @binding(2) var<storage, read_write> output: array<u32>;

fn out_load(i: u32) -> u32 {
    return output[i];
}

fn out_store(i: u32, bits: u32) {
    output[i] = bits;
}

// Words i .. i + 3 (a vec4 kernel's word of four entries), one store each.
fn out_store_word(i: u32, w: vec4<u32>) {
    output[i] = w.x;
    output[i + 1u] = w.y;
    output[i + 2u] = w.z;
    output[i + 3u] = w.w;
}
