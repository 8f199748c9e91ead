// Copy positions between KV-cache slots of one layer's K or V buffer (prefix reuse: a new
// sequence starts from another's cached prefix): buf[dst + i] = buf[src + i] for i < n
// (u32 words; the ranges never overlap: they lie in different slots).
// Grid: x, y flatten the workgroups of WG words each.

struct Params { src: u32, dst: u32, n: u32, _pad: u32 }

@group(0) @binding(0) var<storage, read_write> buf: array<u32>;
@group(0) @binding(1) var<storage, read> P: Params;

const WG: u32 = {{WG}}u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i < P.n) { buf[P.dst + i] = buf[P.src + i]; }
}
