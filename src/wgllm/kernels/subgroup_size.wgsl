// out[0] = the subgroup size of a 128-invocation workgroup (Device.subgroup_size).
@group(0) @binding(0) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(128)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_size) sgs: u32) {
    if (lid == 0u) { out[0] = sgs; }
}
