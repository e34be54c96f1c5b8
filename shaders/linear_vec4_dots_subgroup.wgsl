// How the dot products of linear_vec4.wgsl read the tile's eight shared rows on devices with
// subgroups of at least 8 lanes (the host's choice): lane k of a subgroup loads row k mod 8's
// word and the others take it by broadcast — one load a lane instead of eight, for the same
// values (so the same bits as linear_vec4_dots.wgsl). On CPU adapters a load whose address is
// the same in every lane costs as much as any other (a loop over the lanes); a broadcast is a
// register shuffle. Called in uniform control flow, every lane of the subgroup active.

// The first word of the row of the eight that this lane loads for its subgroup.
fn own_start(b: Tile4) -> u32 {
    let k = subgroupExclusiveAdd(1u) % 8u;
    let half = select(b.lo, b.hi, k >= 4u);
    return half[k % 4u];
}

fn shared8(b: Tile4, own: u32, q: u32, from_weight: bool) -> array<vec4<f32>, 8> {
    var x: vec4<f32>;
    if (from_weight) {
        x = wrow(own + q);
    } else {
        x = hrow(own + q);
    }
    return array<vec4<f32>, 8>(
        subgroupBroadcast(x, 0u), subgroupBroadcast(x, 1u), subgroupBroadcast(x, 2u),
        subgroupBroadcast(x, 3u), subgroupBroadcast(x, 4u), subgroupBroadcast(x, 5u),
        subgroupBroadcast(x, 6u), subgroupBroadcast(x, 7u),
    );
}
