// The log-sum-exp family, one subgroup per row: no workgroup barrier at all. Needs common.wgsl
// and logsumexp.wgsl before it, and a device with Features::SUBGROUP. Rows are assigned to
// subgroups by subgroup_id, so any subgroup size works; the butterfly of the commutative
// `lse_combine` leaves the identical state in every lane.

@compute @workgroup_size(WG)
fn row_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) sg_count: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    let total = nwg.x * nwg.y * sg_count;
    for (var row = wg_linear(wid, nwg) * sg_count + sg_id; row < params.rows; row += total) {
        var st = range_state(params.in_offset + row * params.in_stride, lane, params.cols, sg_size);
        for (var o = 1u; o < sg_size; o = o << 1u) {
            let other = LseState(subgroupShuffleXor(st.m, o), subgroupShuffleXor(st.s, o),
                subgroupShuffleXor(st.flags, o));
            st = lse_combine(st, other);
        }
        write_row(st, row, params.cols, lane, sg_size);
    }
}
