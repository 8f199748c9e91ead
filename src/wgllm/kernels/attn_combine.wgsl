// Second pass of split attention: merge the splits of each (row t, head h).
// part: [T_max, HQ, S, HD] unnormalised accumulators, part_ml: [T_max, HQ, S] (m, l)
// in log2 units; out[t, h, :] = sum_s 2^(m_s - M) acc_s / sum_s 2^(m_s - M) l_s.
// One workgroup per (t, h); rows t >= Step.T do nothing.
//!include attn_common

const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read> part_ml: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<{{ACT}}>;
@group(0) @binding(3) var<uniform> sp: Step;

var<workgroup> wt: array<f32, S>;   // weight of each split, normalised

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    let t = g / HQ;
    if (t >= sp.T) { return; }
    let ns = n_splits(tile_keys(t / QT * QT));
    let base = g * S;   // (t * HQ + h) * S
    // every thread finds M and the denominator (ns <= S reads, cheap)
    var m = NEG;
    for (var s = 0u; s < ns; s++) { m = max(m, part_ml[base + s].x); }
    var den = 0.0;
    for (var s = 0u; s < ns; s++) { den += part_ml[base + s].y * ex(part_ml[base + s].x, m); }
    for (var s = lid; s < ns; s += WG) { wt[s] = ex(part_ml[base + s].x, m) / den; }
    workgroupBarrier();
    for (var d = lid; d < HD; d += WG) {
        var v = 0.0;
        for (var s = 0u; s < ns; s++) { v += wt[s] * part[(base + s) * HD + d]; }
        out[g * HD + d] = {{ACT}}(v);
    }
}
