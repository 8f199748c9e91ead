// Causal multi-head attention over the KV cache, flash style (online softmax).
// qkv: [T_max, (HQ + 2 HKV) * HD] ACT (q heads first, already rotated),
// k_cache, v_cache: [slots, N_CTX, HKV, HD] ACT, out: [T_max, HQ * HD] ACT.
// Row t < Step.T (position row_pos(t), slot Step.slot or in a batched pass its own, see
// attn_common.wgsl) attends its slot's positions 0..row_pos(t) (with a
// sliding WINDOW, the last WINDOW of them; a tile's keys start at its first row's first).
//
// Workgroup (split s, tile y, head block z). A tile is QT consecutive token rows
// times HB query heads of one kv head (GQA: they share every K/V row read): QN
// rows. The tile's keys [0, L) are cut into n_splits(L) contiguous splits at run
// time; the workgroup walks its split in blocks of BK keys, with three roles per
// thread (all loads are VEC-wide vectors):
//   scores  KPT keys per thread, or TPK threads per key each doing a strided part
//           of the dims (partial dots summed in workgroup memory); all rows at
//           once, so each K vector is read once per block
//   softmax R lanes per row: block max and sum, tree-combined; the running (m, l)
//           of each row is updated and the accumulators rescaled (flash attention)
//   values  thread (column c, key group kg): acc[r] += p[r, j] * V[j, c] over the
//           block keys j = kg (mod KG); one warp reads whole V rows
// At the end the KG partial accumulators are summed. With SPLIT the unnormalised
// (acc, m, l) go to part/part_ml and attn_combine merges the splits; otherwise
// out = acc / l directly. Scores are in log2 units (q pre-scaled by
// log2(e)/sqrt(HD)) so exp2 is used.
//!include attn_common

const HB: u32 = {{HB}}u;            // query heads per tile (divides G)
const NHB: u32 = G / HB;            // head blocks per kv head
const QN: u32 = HB * QT;            // rows per tile: row r = head h0 + r / QT, token t0 + r % QT
const WG: u32 = 128u;               // threads
const BK: u32 = {{BK}}u;            // keys per block (a power of two, 32..256)
const TPK: u32 = {{TPK}}u;          // threads per key (scores), consecutive lanes
const KSTEP: u32 = WG / TPK;        // keys covered by the workgroup in one pass of the scores
const KPT: u32 = BK / KSTEP;        // keys per thread (scores); BK * TPK >= WG
const R: u32 = {{R}}u;              // lanes per row (softmax), a power of two, QN * R <= WG
const KG: u32 = WG / HDV;           // key groups (values); threads lid >= KG * HDV idle there
const CPT: u32 = (HDV + TPK - 1u) / TPK;  // vectors per key per thread (scores)
const SCP: u32 = select(1u, QN * BK * TPK, TPK > 1u);  // partial dots (only when TPK > 1)
const JPT: u32 = (BK + KG - 1u) / KG;     // keys per thread (values)
const ROWV: u32 = (HQ + 2u * HKV) * HDV;
const KVROWV: u32 = HKV * HDV;      // cache vectors per position
const SPLIT: bool = {{SPLIT}};
const QSCALE: f32 = {{QSCALE}};     // log2(e) * the score scale (default 1 / sqrt(HD))
const SOFTCAP: f32 = {{SOFTCAP}};   // score soft cap in log2 units (0: none): s = C tanh(s / C)

@group(0) @binding(0) var<storage, read> qkv: array<VA>;
@group(0) @binding(1) var<storage, read> k_cache: array<VA>;
@group(0) @binding(2) var<storage, read> v_cache: array<VA>;
@group(0) @binding(3) var<storage, read_write> out: array<VA>;
@group(0) @binding(4) var<storage, read_write> part: array<VF>;           // [T_max, HQ, S, HDV]
@group(0) @binding(5) var<storage, read_write> part_ml: array<vec2<f32>>; // [T_max, HQ, S] (m, l)
@group(0) @binding(6) var<{{UNI}}> sp: Step;

var<workgroup> qs: array<VF, QN * HDV>;        // the tile's queries, scaled
var<workgroup> sc_part: array<f32, SCP>;       // partial dots [row, key, part] when TPK > 1
var<workgroup> sc: array<f32, QN * BK>;        // block scores, then probabilities
var<workgroup> red_m: array<f32, WG>;          // softmax tree: max
var<workgroup> red_l: array<f32, WG>;          // softmax tree: sum
var<workgroup> m_run: array<f32, QN>;          // running max per row
var<workgroup> l_run: array<f32, QN>;          // running sum per row
var<workgroup> alpha: array<f32, QN>;          // rescale of the accumulators this block
var<workgroup> redv: array<VF, WG>;            // final sum over key groups

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let s = wid.x;
    let t0 = wid.y * QT;
    let kvh = wid.z / NHB;
    let h0 = kvh * G + (wid.z % NHB) * HB;
    if (t0 >= sp.T) { return; }
    let L = tile_keys(t0);
    let K0 = tile_first_key(t0);
    let ns = n_splits(L - K0);
    if (s >= ns) { return; }
    let cb = slot_base(t0);   // the tile's KV-cache slot (a batched pass: QT == 1)
    let chunk = (L - K0 + ns - 1u) / ns;
    let k0 = K0 + min(s * chunk, L - K0);
    let k1 = min(k0 + chunk, L);

    // queries of the tile -> workgroup memory (rows past Step.T zero)
    for (var e = lid; e < QN * HDV; e += WG) {
        let r = e / HDV;
        let t = t0 + r % QT;
        var v = VF();
        if (t < sp.T) { v = VF(qkv[t * ROWV + (h0 + r / QT) * HDV + e % HDV]) * QSCALE; }
        qs[e] = v;
    }
    if (lid < QN) {
        m_run[lid] = NEG;
        l_run[lid] = 0.0;
    }
    // initializers matter: naga does not re-zero a bare `var` declared in a loop
    var acc = array<VF, QN>();
    let kj = lid / TPK;        // scores: first key of the block
    let kp = lid % TPK;        //         part of the dims
    let row = lid / R;         // softmax: row
    let lane = lid % R;        //          lane
    let sm_on = row < QN;
    let col = lid % HDV;       // values: column
    let kg = lid / HDV;        //         key group
    let v_on = kg < KG;
    workgroupBarrier();

    for (var kb = k0; kb < k1; kb += BK) {
        // 1. dots of keys kb + kj + k KSTEP with every row; with TPK > 1 each of TPK
        //    threads does a strided part of the dims and the parts are summed in
        //    step 2. Loops have constant trip counts (unrolled: loads in flight
        //    together); keys past k1 read key k1 - 1 (written, finite) and are
        //    masked in step 2.
        for (var k = 0u; k < KPT; k++) {
            let j = kj + k * KSTEP;
            let kbase = cb + min(kb + j, k1 - 1u) * KVROWV + kvh * HDV;
            var pd = array<f32, QN>();
            for (var i = 0u; i < CPT; i++) {
                let c = kp + i * TPK;
                if (HDV % TPK == 0u || c < HDV) {
                    let kv = VF(k_cache[kbase + c]);
                    for (var r = 0u; r < QN; r++) { pd[r] += dot(qs[r * HDV + c], kv); }
                }
            }
            for (var r = 0u; r < QN; r++) {
                if (TPK > 1u) {
                    sc_part[(r * BK + j) * TPK + kp] = pd[r];
                } else {
                    sc[r * BK + j] = pd[r];
                }
            }
        }
        workgroupBarrier();

        // 2. masked scores, the block's max and sum per row, tree-combined over lanes
        var bm = NEG;
        var bl = 0.0;
        if (sm_on) {
            let t = t0 + row % QT;
            let qpos = row_pos(min(t, sp.T - 1u));   // the row's position (rows past Step.T are masked)
            for (var i = 0u; i < BK / R; i++) {
                let j = lane + i * R;
                var d = sc[row * BK + j];
                if (TPK > 1u) {
                    d = 0.0;
                    for (var p = 0u; p < TPK; p++) { d += sc_part[(row * BK + j) * TPK + p]; }
                }
                if (SOFTCAP > 0.0) { d = SOFTCAP * tanh(d / SOFTCAP); }
                let kk = kb + j;
                let v = select(NEG, d, kk < k1 && t < sp.T && visible(kk, qpos));
                sc[row * BK + j] = v;
                bm = max(bm, v);
            }
            for (var i = 0u; i < BK / R; i++) { bl += ex(sc[row * BK + lane + i * R], bm); }
        }
        red_m[lid] = bm;
        red_l[lid] = bl;
        workgroupBarrier();
        for (var w = R / 2u; w > 0u; w >>= 1u) {
            if (sm_on && lane < w) {
                let ma = red_m[lid];
                let mb = red_m[lid + w];
                let m = max(ma, mb);
                red_l[lid] = red_l[lid] * ex(ma, m) + red_l[lid + w] * ex(mb, m);
                red_m[lid] = m;
            }
            workgroupBarrier();
        }
        if (sm_on && lane == 0u) {  // fold the block into the running (m, l) of the row
            let mo = m_run[row];
            let m = max(mo, red_m[lid]);
            let a = ex(mo, m);
            alpha[row] = a;
            l_run[row] = l_run[row] * a + red_l[lid] * ex(red_m[lid], m);
            m_run[row] = m;
        }
        workgroupBarrier();
        if (sm_on) {
            for (var i = 0u; i < BK / R; i++) {
                let e = row * BK + lane + i * R;
                sc[e] = ex(sc[e], m_run[row]);
            }
        }
        workgroupBarrier();

        // 3. acc = acc * alpha + P V over this thread's keys j = kg + i KG of the
        //    block (constant trip count; keys past k1 read key k1 - 1 with weight 0)
        if (v_on) {
            for (var r = 0u; r < QN; r++) { acc[r] *= alpha[r]; }
            let nk = min(BK, k1 - kb);
            for (var i = 0u; i < JPT; i++) {
                let j = kg + i * KG;
                let v = VF(v_cache[cb + (kb + min(j, nk - 1u)) * KVROWV + kvh * HDV + col]);
                let jc = min(j, BK - 1u);
                let on = j < nk;
                for (var r = 0u; r < QN; r++) { acc[r] += select(0.0, sc[r * BK + jc], on) * v; }
            }
        }
        workgroupBarrier();
    }

    // 4. per row: sum the key groups' accumulators, write the result
    for (var r = 0u; r < QN; r++) {
        if (v_on) { redv[kg * HDV + col] = acc[r]; }
        workgroupBarrier();
        let t = t0 + r % QT;
        if (lid < HDV && t < sp.T) {
            var tot = VF();
            for (var g = 0u; g < KG; g++) { tot += redv[g * HDV + lid]; }
            let o = (t * HQ + h0 + r / QT);
            if (SPLIT) {
                part[(o * S + s) * HDV + lid] = tot;
            } else {
                out[o * HDV + lid] = VA(tot / l_run[r]);
            }
        }
        workgroupBarrier();
    }
    if (SPLIT && lid < QN) {
        let t = t0 + lid % QT;
        if (t < sp.T) {
            part_ml[(t * HQ + h0 + lid / QT) * S + s] = vec2<f32>(m_run[lid], l_run[lid]);
        }
    }
}
