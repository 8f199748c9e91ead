// Causal multi-head attention over the KV cache, flash style (online softmax).
// qkv: [T_max, (HQ + 2 HKV) * HD] ACT (q heads first, already rotated),
// k_cache, v_cache: [n_ctx, HKV, HD] ACT, out: [T_max, HQ * HD] ACT.
// Row t < Step.T (position Step.pos + t) attends cache positions 0..Step.pos+t.
//
// Workgroup (split s, tile y, head block z): a tile is QT consecutive token rows
// times HB query heads of one kv head (GQA: they share every K/V row read), so
// QP = HB*QT padded to a power of two query rows. The tile's keys [0, L) are cut
// into n_splits(L) contiguous splits at run time; the workgroup walks its split in
// blocks of WG keys:
//   scores  thread j: dot(q_r, k_{kb+j}) for every row r (K read once per block)
//   softmax R = WG/QP threads per row: block max and sum, tree-combined; the
//           running (m, l) of each row is rescaled (flash attention)
//   values  thread i owns accumulator elements (row, dim) i, i+WG, ...
// With SPLIT the unnormalised (acc, m, l) go to part/part_ml and attn_combine
// merges the splits; otherwise out = acc / l directly.
// Scores are in log2 units (q pre-scaled by log2(e)/sqrt(HD)) so exp2 is used.
//!include attn_common

const HB: u32 = {{HB}}u;            // query heads per tile (divides G)
const NHB: u32 = G / HB;            // head blocks per kv head
const QP: u32 = {{QP}}u;            // tile rows, padded to a power of two
const QN: u32 = HB * QT;            // real tile rows
const WG: u32 = 64u;                // threads, and keys per block
const R: u32 = WG / QP;             // threads per row in the softmax step
const NACC: u32 = (QP * HD + WG - 1u) / WG;  // accumulator elements per thread
const ROW: u32 = (HQ + 2u * HKV) * HD;
const SPLIT: bool = {{SPLIT}};
const QSCALE: f32 = {{QSCALE}};     // log2(e) / sqrt(HD)

@group(0) @binding(0) var<storage, read> qkv: array<{{ACT}}>;
@group(0) @binding(1) var<storage, read> k_cache: array<{{ACT}}>;
@group(0) @binding(2) var<storage, read> v_cache: array<{{ACT}}>;
@group(0) @binding(3) var<storage, read_write> out: array<{{ACT}}>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>;          // [T_max, HQ, S, HD]
@group(0) @binding(5) var<storage, read_write> part_ml: array<vec2<f32>>; // [T_max, HQ, S] (m, l)
@group(0) @binding(6) var<uniform> sp: Step;

var<workgroup> qs: array<f32, QP * HD>;   // the tile's queries, scaled
var<workgroup> sc: array<f32, QP * WG>;   // block scores, then probabilities
var<workgroup> red_m: array<f32, WG>;     // softmax tree: max
var<workgroup> red_l: array<f32, WG>;     // softmax tree: sum
var<workgroup> m_run: array<f32, QP>;     // running max per row
var<workgroup> l_run: array<f32, QP>;     // running sum per row
var<workgroup> alpha: array<f32, QP>;     // rescale of the accumulators this block

// Tile row r -> (query head offset in the block, token row offset).
fn row_head(r: u32) -> u32 { return r / QT; }
fn row_t(r: u32) -> u32 { return r % QT; }

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let s = wid.x;
    let t0 = wid.y * QT;
    let kvh = wid.z / NHB;
    let h0 = kvh * G + (wid.z % NHB) * HB;
    if (t0 >= sp.T) { return; }
    let L = tile_keys(t0);
    let ns = n_splits(L);
    if (s >= ns) { return; }
    let chunk = (L + ns - 1u) / ns;
    let k0 = min(s * chunk, L);
    let k1 = min(k0 + chunk, L);

    // queries of the tile -> workgroup memory (padding rows zero)
    for (var e = lid; e < QP * HD; e += WG) {
        let r = e / HD;
        let t = t0 + row_t(r);
        var v = 0.0;
        if (r < QN && t < sp.T) {
            v = f32(qkv[t * ROW + (h0 + row_head(r)) * HD + e % HD]) * QSCALE;
        }
        qs[e] = v;
    }
    if (lid < QP) {
        m_run[lid] = NEG;
        l_run[lid] = 0.0;
    }
    var acc: array<f32, NACC>;
    let row = lid / R;   // softmax step: this thread's row and lane
    let lane = lid % R;
    workgroupBarrier();

    for (var kb = k0; kb < k1; kb += WG) {
        // scores of key kb + lid against every row
        let key = kb + lid;
        var sdot: array<f32, QP>;
        if (key < k1) {
            let kbase = key * KVROW + kvh * HD;
            for (var d = 0u; d < HD; d++) {
                let kv = f32(k_cache[kbase + d]);
                for (var r = 0u; r < QP; r++) { sdot[r] += qs[r * HD + d] * kv; }
            }
        }
        for (var r = 0u; r < QP; r++) {
            let t = t0 + row_t(r);
            let ok = key < k1 && r < QN && t < sp.T && key <= sp.pos + t;
            sc[r * WG + lid] = select(NEG, sdot[r], ok);
        }
        workgroupBarrier();

        // block max and sum of each row: R lanes, then a tree of (m, l) pairs
        var bm = NEG;
        for (var j = lane; j < WG; j += R) { bm = max(bm, sc[row * WG + j]); }
        var bl = 0.0;
        for (var j = lane; j < WG; j += R) { bl += ex(sc[row * WG + j], bm); }
        red_m[lid] = bm;
        red_l[lid] = bl;
        workgroupBarrier();
        for (var w = R / 2u; w > 0u; w >>= 1u) {
            if (lane < w) {
                let ma = red_m[lid];
                let mb = red_m[lid + w];
                let m = max(ma, mb);
                red_l[lid] = red_l[lid] * ex(ma, m) + red_l[lid + w] * ex(mb, m);
                red_m[lid] = m;
            }
            workgroupBarrier();
        }
        if (lane == 0u) {  // fold the block into the running (m, l) of the row
            let mo = m_run[row];
            let m = max(mo, red_m[lid]);
            let a = ex(mo, m);
            alpha[row] = a;
            l_run[row] = l_run[row] * a + red_l[lid] * ex(red_m[lid], m);
            m_run[row] = m;
        }
        workgroupBarrier();
        for (var j = lane; j < WG; j += R) {
            sc[row * WG + j] = ex(sc[row * WG + j], m_run[row]);
        }
        workgroupBarrier();

        // acc = acc * alpha + P V over the block's keys
        let nk = min(WG, k1 - kb);
        for (var i = 0u; i < NACC; i++) {
            let e = lid + i * WG;
            if (e < QN * HD) {
                let r = e / HD;
                let vbase = kb * KVROW + kvh * HD + e % HD;
                var a = acc[i] * alpha[r];
                for (var j = 0u; j < nk; j++) {
                    a += sc[r * WG + j] * f32(v_cache[vbase + j * KVROW]);
                }
                acc[i] = a;
            }
        }
        workgroupBarrier();
    }

    // results of the tile's rows
    for (var i = 0u; i < NACC; i++) {
        let e = lid + i * WG;
        let r = e / HD;
        let t = t0 + row_t(r);
        if (e < QN * HD && t < sp.T) {
            let h = h0 + row_head(r);
            if (SPLIT) {
                part[((t * HQ + h) * S + s) * HD + e % HD] = acc[i];
            } else {
                out[(t * HQ + h) * HD + e % HD] = {{ACT}}(acc[i] / l_run[r]);
            }
        }
    }
    if (SPLIT && lid < QN) {
        let t = t0 + row_t(lid);
        if (t < sp.T) {
            part_ml[(t * HQ + h0 + row_head(lid)) * S + s] = vec2<f32>(m_run[lid], l_run[lid]);
        }
    }
}
