// Second pass of split attention: merge the splits of each (row t, head h).
// part: [T_max, HQ, S, HDV] unnormalised accumulators, part_ml: [T_max, HQ, S]
// (m, l) in log2 units; out[t, h, :] = sum_s 2^(m_s - M) acc_s / sum_s 2^(m_s - M) l_s.
// One workgroup per (t, h); rows t >= Step.T do nothing. Threads first find M
// and the weights (trees over the splits), then thread (column c, split group)
// sums its splits, and the split groups are summed in workgroup memory.
//!include attn_common

const WG: u32 = 128u;
const SG: u32 = WG / HDV;   // split groups; threads lid >= SG * HDV idle in the sums

@group(0) @binding(0) var<storage, read> part: array<VF>;
@group(0) @binding(1) var<storage, read> part_ml: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<VA>;
@group(0) @binding(3) var<{{UNI}}> sp: Step;

var<workgroup> wt: array<f32, S>;   // weight 2^(m_s - M) of each split
var<workgroup> red: array<f32, WG>;
var<workgroup> redv: array<VF, WG>;

// Tree reduction over the workgroup (max or sum); every thread gets the result.
fn reduce(lid: u32, v: f32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w) { red[lid] = select(red[lid] + red[lid + w], max(red[lid], red[lid + w]), is_max); }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;   // t * HQ + h
    let t = g / HQ;
    if (t >= sp.T) { return; }
    let t0 = t / QT * QT;
    let ns = n_splits(tile_keys(t0) - tile_first_key(t0));
    let base = g * S;
    var m = NEG;
    for (var s = lid; s < ns; s += WG) { m = max(m, part_ml[base + s].x); }
    m = reduce(lid, m, true);
    var den = 0.0;
    for (var s = lid; s < ns; s += WG) {
        let ml = part_ml[base + s];
        let w = ex(ml.x, m);
        wt[s] = w;
        den += w * ml.y;
    }
    den = reduce(lid, den, false);   // its barriers also publish wt
    let col = lid % HDV;
    let sg = lid / HDV;
    var a = VF();
    if (sg < SG) {
        // unrolled by 4 so that loads overlap; indices past ns repeat split ns - 1 with weight 0
        for (var s = sg; s < ns; s += 4u * SG) {
            for (var u = 0u; u < 4u; u++) {
                let su = s + u * SG;
                let sc = min(su, ns - 1u);
                a += select(0.0, wt[sc], su < ns) * part[(base + sc) * HDV + col];
            }
        }
    }
    redv[lid] = a;
    workgroupBarrier();
    if (lid < HDV) {
        var tot = VF();
        for (var k = 0u; k < SG; k++) { tot += redv[k * HDV + lid]; }
        out[g * HDV + lid] = VA(tot / den);
    }
}
