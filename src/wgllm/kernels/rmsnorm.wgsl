// RMSNorm over rows: y[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * w[:]
// One workgroup per row t. x: [T, D] {{IN}}, w: [D] f32, y: [T, D] {{OUT}}.
struct Params { D: u32, T: u32, eps: f32, _pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<{{IN}}>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<{{OUT}}>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = wid.x + wid.y * nwg.x;
    if (t >= p.T) { return; }  // uniform per workgroup
    let base = t * p.D;
    var ss = 0.0;
    for (var i = lid; i < p.D; i += WG) {
        let v = f32(x[base + i]);
        ss += v * v;
    }
    partial[lid] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { partial[lid] += partial[lid + s]; }
        workgroupBarrier();
    }
    let scale = inverseSqrt(partial[0] / f32(p.D) + p.eps);
    for (var i = lid; i < p.D; i += WG) {
        y[base + i] = {{OUT}}(f32(x[base + i]) * scale * w[i]);
    }
}
