// RMSNorm over rows, the CPU-adapter (lavapipe) variant of rmsnorm.wgsl: one
// invocation per row walks it twice with vec4 loads (no workgroup reduction:
// on a software adapter the barriers of a tree cost more than the sums).
// y[r, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * w[:]
// x: [T_max, D] {{IN}}, w: [D] f32, y: [T_max, D] {{OUT}} (or [1, D] when last_only).
// D % 4 == 0. Rows t >= Step.T do nothing; last_only != 0: row Step.T - 1 into y[0, :].
// ADD: y[r, :] += the normed row instead (a post-norm added to the residual stream).
//!include step
struct Params { D: u32, last_only: u32, eps: f32, _pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<vec4<{{IN}}>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<{{OUT}}>>;
@group(0) @binding(3) var<{{UNI}}> p: Params;
@group(0) @binding(4) var<{{UNI}}> sp: Step;

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let last = p.last_only != 0u;
    if (gid.x >= select(sp.T, 1u, last)) { return; }
    let dv = p.D / 4u;
    let base = select(gid.x, sp.T - 1u, last) * dv;  // input row
    let obase = select(gid.x, 0u, last) * dv;        // output row
    var ss = vec4<f32>(0.0);
    for (var i = 0u; i < dv; i++) {
        let v = vec4<f32>(x[base + i]);
        ss += v * v;
    }
    let scale = inverseSqrt(dot(ss, vec4<f32>(1.0)) / f32(p.D) + p.eps);
    for (var i = 0u; i < dv; i++) {
        var v = vec4<f32>(x[base + i]) * scale * w[i];
        if ({{ADD}}) { v += vec4<f32>(y[obase + i]); }
        y[obase + i] = vec4<{{OUT}}>(v);
    }
}
