// RMSNorm over rows: y[r, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * w[:]
// x: [T_max, D] {{IN}}, w: [D] f32, y: [T_max, D] {{OUT}} (or [1, D] when last_only).
// One workgroup per row; rows t >= Step.T do nothing.
// last_only != 0: a single workgroup normalises row Step.T - 1 into y[0, :].
// ADD: y[r, :] += the normed row instead (a post-norm added to the residual stream; OUT f32).
//!include step
struct Params { D: u32, last_only: u32, eps: f32, _pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<{{IN}}>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<{{OUT}}>;
@group(0) @binding(3) var<{{UNI}}> p: Params;
@group(0) @binding(4) var<{{UNI}}> sp: Step;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= sp.T) { return; }  // uniform per workgroup
    let last = p.last_only != 0u;
    let base = select(g, sp.T - 1u, last) * p.D;  // input row
    let obase = select(g, 0u, last) * p.D;        // output row
    // sum of squares: strided per thread, then a tree over the workgroup
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
        var v = f32(x[base + i]) * scale * w[i];
        if ({{ADD}}) { v += f32(y[obase + i]); }
        y[obase + i] = {{OUT}}(v);
    }
}
