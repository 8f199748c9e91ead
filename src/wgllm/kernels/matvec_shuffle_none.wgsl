// matvec on a device without subgroups (SHUFFLE == 0): the row sums go through workgroup
// memory and this is never called; it only keeps the source valid without the feature.
fn shuffle_sums(acc: vec4<f32>, l: u32) -> f32 {
    return 0.0;
}

// The sum of v over the invocation's row group r (NORM = 2's sum of squares), through workgroup
// memory; every invocation must call it (a barrier). Summed in lane order, as the row sums.
var<workgroup> lane_red: array<f32, WG>;

fn lane_total(v: f32, lid: u32, r: u32) -> f32 {
    lane_red[lid] = v;
    workgroupBarrier();
    var s = 0.0;
    for (var i = 0u; i < TPR; i++) {
        s += lane_red[r * TPR + i];
    }
    return s;
}
