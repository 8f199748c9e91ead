// rmsnorm's workgroup sum by subgroups (the device has the subgroup feature): each subgroup's
// sum by subgroupAdd, then every invocation adds the WG / SG subgroup sums (one barrier).
// Subgroups are the SG consecutive invocations lid / SG (what the device's subgroup probe
// measured, ops.subgroup_size). Needs WG (rmsnorm.wgsl). Every invocation must call it.
const SG: u32 = {{SG}}u;
var<workgroup> partial: array<f32, WG / SG>;

fn row_total(v: f32, lid: u32) -> f32 {
    let s = subgroupAdd(v);
    if (lid % SG == 0u) { partial[lid / SG] = s; }
    workgroupBarrier();
    var t = 0.0;
    for (var k = 0u; k < WG / SG; k++) { t += partial[k]; }
    return t;
}
