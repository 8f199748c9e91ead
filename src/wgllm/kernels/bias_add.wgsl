// Bias add broadcast over rows: y[t, i] += b[i] for t < Step.T (e.g. Qwen2's q/k/v biases).
// y: [T_max, N] {{ACT}}, b: [N] f32. Workgroup (x, t): elements x*WG.. of row t.
//!include step

const N: u32 = {{N}}u;
const WG: u32 = {{WG}}u;  // ops.ELEMENTWISE_WG

@group(0) @binding(0) var<storage, read_write> y: array<{{ACT}}>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<{{UNI}}> sp: Step;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.y;
    let i = gid.x;
    if (t >= sp.T || i >= N) { return; }
    y[t * N + i] = {{ACT}}(f32(y[t * N + i]) + b[i]);
}
