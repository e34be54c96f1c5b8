// The output of the log-sum-exp family as 16-byte vec4 words, so that the vec4 kernels write
// a word of four entries with one store instead of four (on software adapters each store is an
// instruction a lane: log_softmax 33.2 -> 30.9 ms at 4096² on lavapipe; on the H200 level with
// four 4-byte stores). In place of logsumexp_out.wgsl, for softmax and log_softmax where the
// host binds a window of whole 16-byte words whose rows start on one (f32 output, out_offset,
// out_stride and cols multiples of 4). Single words, for the functions that write them, are
// written as one component (a 4-byte store).

@group(0) @binding(2) var<storage, read_write> output: array<vec4<u32>>;

fn out_load(i: u32) -> u32 {
    return output[i >> 2u][i & 3u];
}

fn out_store(i: u32, bits: u32) {
    output[i >> 2u][i & 3u] = bits;
}

// Words i .. i + 3, i a multiple of 4: one 16-byte store.
fn out_store_word(i: u32, w: vec4<u32>) {
    output[i >> 2u] = w;
}
