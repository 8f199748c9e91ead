// Causal attention over the KV cache, the CPU-adapter (lavapipe) variant of
// attention.wgsl: one invocation per (token row t, query head h), no workgroup
// memory, no barriers (a software adapter runs invocations as SIMD lanes, and
// barriers and workgroup reductions cost more there than they save).
// qkv: [T_max, (HQ + 2 HKV) * HD] ACT (q already rotated), k_cache, v_cache:
// [slots, N_CTX, HKV, HD] ACT, out: [T_max, HQ * HD] ACT. Row t < Step.T sits at
// position Step.pos + t of slot Step.slot (a batched pass: Step.rows[t]) and attends its
// slot's positions 0 .. that one (the last WINDOW).
// The query row and the output accumulator live in registers (HD / VEC vectors,
// an unrolled constant loop); keys go one at a time with the online softmax
// (running max m and sum l, scores in log2 units).
//!include step_rows

const HD: u32 = {{HD}}u;
const HQ: u32 = {{HQ}}u;
const HKV: u32 = {{HKV}}u;
const G: u32 = HQ / HKV;
const VEC: u32 = {{VEC}}u;
const HDV: u32 = HD / VEC;
const ROWV: u32 = (HQ + 2u * HKV) * HDV;
const KVROWV: u32 = HKV * HDV;
const QSCALE: f32 = {{QSCALE}};     // log2(e) * the score scale (default 1 / sqrt(HD))
const SOFTCAP: f32 = {{SOFTCAP}};   // score soft cap in log2 units (0: none)
const WINDOW: u32 = {{WINDOW}}u;    // sliding window (0: none)
const WG: u32 = {{WG}}u;
const N_CTX: u32 = {{N_CTX}}u;      // positions per KV-cache slot

alias VA = vec{{VEC}}<{{ACT}}>;
alias VF = vec{{VEC}}<f32>;

@group(0) @binding(0) var<storage, read> qkv: array<VA>;
@group(0) @binding(1) var<storage, read> k_cache: array<VA>;
@group(0) @binding(2) var<storage, read> v_cache: array<VA>;
@group(0) @binding(3) var<storage, read_write> out: array<VA>;
@group(0) @binding(4) var<{{UNI}}> sp: Step;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;              // row: token t = r / HQ, head h = r % HQ
    let t = r / HQ;
    if (t >= sp.T) { return; }
    let h = r % HQ;
    let kvo = (h / G) * HDV;
    var q: array<VF, HDV>;
    var acc: array<VF, HDV>;
    for (var c = 0u; c < HDV; c++) {
        q[c] = VF(qkv[t * ROWV + h * HDV + c]) * QSCALE;
        acc[c] = VF();
    }
    var m = -3.0e38;
    var l = 0.0;
    let keys = row_pos(t) + 1u;
    let cb = row_slot(t) * N_CTX * KVROWV;
    let first = select(0u, keys - WINDOW, WINDOW > 0u && keys > WINDOW);
    for (var j = first; j < keys; j++) {
        let kb = cb + j * KVROWV + kvo;
        var s = 0.0;
        for (var c = 0u; c < HDV; c++) { s += dot(q[c], VF(k_cache[kb + c])); }
        if (SOFTCAP > 0.0) { s = SOFTCAP * tanh(s / SOFTCAP); }
        let mn = max(m, s);
        let a = exp2(m - mn);
        let p = exp2(s - mn);
        l = l * a + p;
        m = mn;
        for (var c = 0u; c < HDV; c++) { acc[c] = acc[c] * a + p * VF(v_cache[kb + c]); }
    }
    let inv = 1.0 / l;
    for (var c = 0u; c < HDV; c++) { out[(t * HQ + h) * HDV + c] = VA(acc[c] * inv); }
}
