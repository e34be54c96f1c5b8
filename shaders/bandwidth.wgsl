// The bandwidth yardstick of the benches: a plain read of every word of binding a, reduced per
// invocation by wrapping u32 addition (exact, so any order gives the same total), with nothing
// else to do — what a kernel that reads its input once at full speed costs on this adapter.
// Needs likelihood.wgsl's bindings. Host: src/bandwidth.rs; CPU mirror: src/reference/bandwidth.rs.
//
// params.rows: words to read; params.slots: invocations. Invocation t adds words t, t + slots,
// t + 2 slots, ... (neighbouring invocations read neighbouring words) and writes out[t].
// OP 1 and 2 are the copy yardstick: each word read is written to out at its own index instead
// (a read and a write of every word, what an op that writes as much as it reads costs at the
// least). OP 1 walks the words as the read does (coalesced on GPUs); OP 2 gives each invocation a
// run of consecutive words, which software adapters, storing lane by lane, write twice as fast
// (31 against 65 ms for 4096 x 4096 words on lavapipe). OP 3 is the read in runs, the software
// adapters' read: with the grid stride an 8-lane SIMD step of a CPU reads 32 bytes of a region a
// megabyte from the last, in runs the lanes are 8 sequential streams.
const PROBE_COPY: u32 = 1u;
const PROBE_COPY_RUNS: u32 = 2u;
const PROBE_READ_RUNS: u32 = 3u;

@compute @workgroup_size(WG)
fn read_probe(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = ll_linear(wid, nwg, lid);
    let total = params.slots;
    if (t >= total) {
        return;
    }
    if (OP == PROBE_COPY_RUNS || OP == PROBE_READ_RUNS) {
        let per = (params.rows + total - 1u) / total;
        let end = min((t + 1u) * per, params.rows);
        var sum = 0u;
        for (var i = t * per; i < end; i++) {
            if (OP == PROBE_READ_RUNS) {
                sum += a[i];
            } else {
                out[i] = a[i];
            }
        }
        if (OP == PROBE_READ_RUNS) {
            out[t] = sum;
        }
        return;
    }
    var acc = 0u;
    for (var i = t; i < params.rows; i += total) {
        let w = a[i];
        if (OP == PROBE_COPY) {
            out[i] = w;
        } else {
            acc += w;
        }
    }
    if (OP != PROBE_COPY) {
        out[t] = acc;
    }
}
