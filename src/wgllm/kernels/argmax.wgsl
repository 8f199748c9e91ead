// Greedy sampling: tokens[Step.pos + Step.T] = argmax(logits), lowest index on ties.
// logits: [V] f32 (-inf allowed), tokens: [n_ctx + 1] u32. In a batched pass (see step.wgsl)
// row r < Step.T gets tokens[r] = argmax(logits[r, :]) (logits: [T, V]). A NaN or +inf logit
// (a broken device or model) writes NONE (0xffffffff) instead: the host checks.
// Each thread scans i = lid, lid + WG, ... of its range (increasing, so its first maximum
// wins), then a tree keeps (larger value, or equal value and smaller index).
// STAGE "all": one workgroup per row scans all of it and writes the token.
// STAGE "part": workgroup (g, r) scans logits [g SL, (g + 1) SL) of row r and writes its
// (value bits, index, broken) to part[r, g]; STAGE "final": workgroup r reduces the G parts
// of row r the same way and writes the token. (A row of 128k logits is ~500 serial loads per
// thread in one workgroup, ~4 in G = 128.)
//!include step

const V: u32 = {{V}}u;
const G: u32 = {{G}}u;    // parts per row (1 with STAGE "all")
const SL: u32 = {{SL}}u;  // logits per part
const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;
const STAGE: u32 = {{STAGE_ID}};  // 0 all, 1 part, 2 final

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> tokens: array<u32>;
@group(0) @binding(2) var<{{UNI}}> sp: Step;
@group(0) @binding(3) var<storage, {{PART_ACCESS}}> part: array<u32>;  // [rows, G, 3]

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;
var<workgroup> broken: atomic<u32>;

// NaN or +inf (by bits: fast-math compilers may fold `v != v`); -inf is allowed.
fn non_finite(v: f32) -> bool {
    let b = bitcast<u32>(v);
    return (b & 0x7f800000u) == 0x7f800000u && b != 0xff800000u;
}

// Whether candidate (v, i) beats (bv, bi).
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    return i != NONE && (bi == NONE || v > bv || (v == bv && i < bi));
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let batched = sp.batched != 0u;
    let r = wid.y;
    if (r >= select(1u, sp.T, batched)) { return; }   // uniform per workgroup
    if (lid == 0u) { atomicStore(&broken, 0u); }  // not trusting zero-initialised workgroup memory
    workgroupBarrier();
    var bv = 0.0;
    var bi = NONE;
    var bad = false;
    if (STAGE == 2u) {  // the row's G parts: every thread at most one (G <= WG)
        if (lid < G) {
            let o = (r * G + lid) * 3u;
            bv = bitcast<f32>(part[o]);
            bi = part[o + 1u];
            bad = part[o + 2u] != 0u;
        }
    } else {
        let lo = wid.x * SL;
        let hi = min(V, lo + SL);
        for (var i = lo + lid; i < hi; i += WG) {
            let v = logits[r * V + i];
            bad = bad || non_finite(v);
            if (bi == NONE || v > bv) {
                bv = v;
                bi = i;
            }
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    if (bad) { atomicStore(&broken, 1u); }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s && better(best_v[lid + s], best_i[lid + s], best_v[lid], best_i[lid])) {
            best_v[lid] = best_v[lid + s];
            best_i[lid] = best_i[lid + s];
        }
        workgroupBarrier();
    }
    let any_bad = atomicLoad(&broken);
    if (lid != 0u) { return; }
    if (STAGE == 1u) {
        {{PART_WRITE}}
    } else {
        tokens[select(sp.pos + sp.T, r, batched)] = select(best_i[0], NONE, any_bad != 0u);
    }
}
