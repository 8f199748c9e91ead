// SwiGLU gate: h[t, i] = silu(gate[t, i]) * up[t, i], silu(g) = g / (1 + e^-g).
// gu: [T_max, 2F] ACT, per row [gate (F) | up (F)]; h: [T_max, F] ACT.
// Workgroup (x, t): elements x*WG.. of row t; rows t >= Step.T do nothing.
//!include step

const F: u32 = {{F}}u;
const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> gu: array<{{ACT}}>;
@group(0) @binding(1) var<storage, read_write> h: array<{{ACT}}>;
@group(0) @binding(2) var<uniform> sp: Step;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.y;
    let i = gid.x;
    if (t >= sp.T || i >= F) { return; }
    let g = f32(gu[t * 2u * F + i]);
    let u = f32(gu[t * 2u * F + F + i]);
    h[t * F + i] = {{ACT}}(g / (1.0 + exp(-g)) * u);
}
