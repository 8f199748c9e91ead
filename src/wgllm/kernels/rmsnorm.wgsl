// RMSNorm over rows: y[r, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * w[:]
// x: [T_max, D] {{IN}}, w: [D] f32, y: [T_max, D] {{OUT}} (or [1, D] when last_only).
// Workgroup (s, r): every workgroup of row r sums the whole row's squares (the same sum, in
// the same order, in each), then writes columns [s * C, (s + 1) * C) of it: several
// workgroups per row, so a decode token's one row is not one workgroup's serial loads.
// Loads go U at a time (independent), not one per loop step: latency, not bandwidth, is what
// a row of a few thousand costs. Rows t >= Step.T do nothing.
// last_only != 0: row Step.T - 1 into y[0, :]. ADD: y[r, :] += the normed row instead (a
// post-norm added to the residual stream; OUT f32).
//!include step
//!include rmsnorm_sum_{{SUM}}
struct Params { D: u32, last_only: u32, eps: f32, C: u32 }

@group(0) @binding(0) var<storage, read> x: array<{{IN}}>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<{{OUT}}>;
@group(0) @binding(3) var<{{UNI}}> p: Params;
@group(0) @binding(4) var<{{UNI}}> sp: Step;

const WG: u32 = {{WG}}u;
const U: u32 = 4u;  // loads in flight per invocation

fn sq(i: u32, base: u32) -> f32 {
    if (i >= p.D) { return 0.0; }
    let v = f32(x[base + i]);
    return v * v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.y;
    if (g >= sp.T) { return; }  // uniform per workgroup
    let last = p.last_only != 0u;
    let base = select(g, sp.T - 1u, last) * p.D;  // input row
    let obase = select(g, 0u, last) * p.D;        // output row
    // sum of squares: invocation lid takes i = lid + k * WG, in increasing k (one accumulator)
    var ss = 0.0;
    for (var i = lid; i < p.D; i += U * WG) {
        let a = sq(i, base);
        let b = sq(i + WG, base);
        let c = sq(i + 2u * WG, base);
        let d = sq(i + 3u * WG, base);
        ss += a; ss += b; ss += c; ss += d;
    }
    let scale = inverseSqrt(row_total(ss, lid) / f32(p.D) + p.eps);
    let end = min(p.D, (wid.x + 1u) * p.C);
    for (var i = wid.x * p.C + lid; i < end; i += WG) {
        var v = f32(x[base + i]) * scale * w[i];
        if ({{ADD}}) { v += f32(y[obase + i]); }
        y[obase + i] = {{OUT}}(v);
    }
}
