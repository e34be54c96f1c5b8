// The bandwidth yardsticks with 16-byte words: bandwidth.wgsl's read and copy, each invocation
// loading vec4<u32> words, UNROLL of them before it uses any, so that enough bytes are in flight
// for a GPU's memory (one 4-byte load an invocation at a time is not). A module of its own
// (the likelihood layout's bindings 0, 1 and 4, typed as vec4 words). Host: src/bandwidth.rs;
// CPU mirror: src/reference/bandwidth.rs (a wrapping u32 sum is the same in any order).
//
// params.words: vec4 words to read; params.slots: invocations. Invocation t takes words t,
// t + slots, t + 2 slots, ... (neighbouring invocations on neighbouring words), UNROLL of them
// a step. OP 0: the read, reduced by wrapping vec4 addition, out[t] = the invocation's sum.
// OP 1: the copy, each word written to out at its own index.

struct ProbeParams {
    words: u32,
    slots: u32,
}

@group(0) @binding(0) var<uniform> params: ProbeParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<u32>>;

override OP: u32 = 0u;
override WG: u32 = 256u;
const UNROLL: u32 = 4u;
const PROBE_READ: u32 = 0u;

@compute @workgroup_size(WG)
fn read_probe_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = (wid.y * nwg.x + wid.x) * WG + lid;
    let slots = params.slots;
    let n = params.words;
    if (t >= slots) {
        return;
    }
    var acc = vec4<u32>(0u);
    for (var i = t; i < n; i += UNROLL * slots) {
        var w: array<vec4<u32>, UNROLL>;
        for (var k = 0u; k < UNROLL; k++) {
            let j = i + k * slots;
            if (j < n) {
                w[k] = a[j];
            } else {
                w[k] = vec4<u32>(0u);
            }
        }
        for (var k = 0u; k < UNROLL; k++) {
            let j = i + k * slots;
            if (OP == PROBE_READ) {
                acc += w[k];
            } else if (j < n) {
                out[j] = w[k];
            }
        }
    }
    if (OP == PROBE_READ) {
        out[t] = acc;
    }
}

// The same read (OP 0) and copy (OP 1) for software adapters: invocation t takes the run of
// consecutive words [t per, (t + 1) per), per = ceil(words / slots), four loaded before any is
// used. A CPU adapter runs 8 lanes as one SIMD thread: with the grid stride above each of its
// steps is 128 bytes of a new region, here 8 sequential streams the hardware prefetches.
@compute @workgroup_size(WG)
fn read_probe_vec4_runs(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = (wid.y * nwg.x + wid.x) * WG + lid;
    let slots = params.slots;
    let n = params.words;
    if (t >= slots) {
        return;
    }
    let per = (n + slots - 1u) / slots;
    let start = min(t * per, n);
    let end = min((t + 1u) * per, n);
    // Whole steps of four, then the rest one at a time.
    let whole = start + (end - start) / 4u * 4u;
    var acc = vec4<u32>(0u);
    for (var i = start; i < whole; i += 4u) {
        let w0 = a[i];
        let w1 = a[i + 1u];
        let w2 = a[i + 2u];
        let w3 = a[i + 3u];
        if (OP == PROBE_READ) {
            acc += (w0 + w1) + (w2 + w3);
        } else {
            out[i] = w0;
            out[i + 1u] = w1;
            out[i + 2u] = w2;
            out[i + 3u] = w3;
        }
    }
    for (var i = whole; i < end; i++) {
        if (OP == PROBE_READ) {
            acc += a[i];
        } else {
            out[i] = a[i];
        }
    }
    if (OP == PROBE_READ) {
        out[t] = acc;
    }
}
