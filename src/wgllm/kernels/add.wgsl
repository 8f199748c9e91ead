// Residual add: a[t, :] += b[t, :] for t < Step.T.
// a: [T_max, N] f32 (the residual stream), b: [T_max, N] {{B}}.
// Workgroup (x, t): elements x*WG.. of row t.
//!include step

const N: u32 = {{N}}u;
const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<{{B}}>;
@group(0) @binding(2) var<uniform> sp: Step;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.y;
    let i = gid.x;
    if (t >= sp.T || i >= N) { return; }
    a[t * N + i] += f32(b[t * N + i]);
}
