// The log-sum-exp family, rows read as vec4 words by LANES lanes of one subgroup each: a
// subgroup of n lanes takes n / LANES rows at a time (short rows fill a subgroup with several
// rows, each load instruction of the subgroup still reading consecutive words), no workgroup
// barrier. Needs common.wgsl, logsumexp.wgsl and logsumexp_vec4.wgsl before it, and a device
// with Features::SUBGROUP; the host sets LANES to a power of two no larger than the device's
// smallest subgroup size, so a row's lanes never straddle two subgroups.

override LANES: u32 = 1u;

@compute @workgroup_size(WG)
fn row_lanes_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) sg_count: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    // (A subgroup can be reported wider than a small workgroup: only WG of its lanes exist.)
    let per_subgroup = min(sg_size, WG) / LANES;
    let total = nwg.x * nwg.y * sg_count * per_subgroup;
    let words = row_words();
    let sub = lane % LANES;
    // r0 is the same in every lane of the subgroup, so the shuffles run in uniform control flow;
    // the lanes of rows past the end walk nothing and write nothing.
    for (var r0 = (wg_linear(wid, nwg) * sg_count + sg_id) * per_subgroup; r0 < params.rows;
        r0 += total) {
        let row = r0 + lane / LANES;
        let live = row < params.rows;
        let end = select(0u, words, live);
        let base = select(0u, (params.in_offset + row * params.in_stride) / 4u, live);
        var tile: array<vec4<u32>, VEC_MAX>;
        var st = row_state_vec4(&tile, base, sub, end, LANES, words);
        for (var o = 1u; o < LANES; o = o << 1u) {
            let other = LseState(subgroupShuffleXor(st.m, o), subgroupShuffleXor(st.s, o),
                subgroupShuffleXor(st.flags, o));
            st = lse_combine(st, other);
        }
        if (live) {
            write_row_vec4(st, &tile, row, base, sub, words, LANES);
        }
    }
}
