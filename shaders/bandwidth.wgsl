// The bandwidth yardstick of the benches: a plain read of every word of binding a, reduced per
// invocation by wrapping u32 addition (exact, so any order gives the same total), with nothing
// else to do — what a kernel that reads its input once at full speed costs on this adapter.
// Needs likelihood.wgsl's bindings. Host: src/bandwidth.rs; CPU mirror: src/reference/bandwidth.rs.
//
// params.rows: words to read; params.slots: invocations. Invocation t adds words t, t + slots,
// t + 2 slots, ... (neighbouring invocations read neighbouring words) and writes out[t].

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
    var acc = 0u;
    for (var i = t; i < params.rows; i += total) {
        acc += a[i];
    }
    out[t] = acc;
}
