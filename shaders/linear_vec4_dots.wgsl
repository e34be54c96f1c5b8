// How the dot products of linear_vec4.wgsl read the tile's eight shared rows (portable): every
// lane loads all eight. linear_vec4_dots_subgroup.wgsl spreads the loads over a subgroup.

// Unused here: the row of the eight this lane loads for the others.
fn own_start(b: Tile4) -> u32 {
    return 0u;
}

// Word q of the eight rows starting at words `b` of the weight (`from_weight`) or the hidden
// states.
fn shared8(b: Tile4, own: u32, q: u32, from_weight: bool) -> array<vec4<f32>, 8> {
    if (from_weight) {
        return array<vec4<f32>, 8>(
            wrow(b.lo.x + q), wrow(b.lo.y + q), wrow(b.lo.z + q), wrow(b.lo.w + q),
            wrow(b.hi.x + q), wrow(b.hi.y + q), wrow(b.hi.z + q), wrow(b.hi.w + q),
        );
    }
    return array<vec4<f32>, 8>(
        hrow(b.lo.x + q), hrow(b.lo.y + q), hrow(b.lo.z + q), hrow(b.lo.w + q),
        hrow(b.hi.x + q), hrow(b.hi.y + q), hrow(b.hi.z + q), hrow(b.hi.w + q),
    );
}
