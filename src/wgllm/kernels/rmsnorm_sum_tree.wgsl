// rmsnorm's workgroup sum as a tree through workgroup memory (log2(WG) barriers).
// Needs WG (rmsnorm.wgsl). Every invocation must call it.
var<workgroup> partial: array<f32, WG>;

fn row_total(v: f32, lid: u32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { partial[lid] += partial[lid + s]; }
        workgroupBarrier();
    }
    return partial[0];
}
