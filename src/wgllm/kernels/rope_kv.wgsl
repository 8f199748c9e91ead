// Rotary position embedding of q and k in place in qkv, and the KV-cache append.
// qkv: [T_max, (HQ + 2 HKV) * HD] ACT, per row [q heads | k heads | v heads].
// k_cache, v_cache: [slots, N_CTX, HKV, HD] ACT.
// For t < Step.T at position p (Step.pos + t, or Step.rows[t].y in a batched pass): rotate the first 2*RP dims of each
// q and k head (pairs (2i, 2i+1), or (i, i+RP) when NEOX), then store k and v of
// row t at position p of its slot's cache (Step.slot, or Step.rows[t].x). The rotated dims are scaled by MSCALE (1 but for longrope).
// One invocation per (row t = workgroup_id.y, head, pair j of the head).
//
// Angles: theta = p * inv_freq_i is reduced exactly modulo one turn in integer
// arithmetic: freq[i] holds frac(inv_freq_i / 2pi) as a 64-bit fixed-point
// fraction (hi, lo), so p * freq mod 1 is exact and only the final conversion
// to an angle in [-pi, pi) rounds (abs error ~1e-7 rad at any p < 2^32).
//!include step_rows

const HD: u32 = {{HD}}u;
const HQ: u32 = {{HQ}}u;
const HKV: u32 = {{HKV}}u;
const RP: u32 = {{RP}}u;          // rotated pairs per head (rope_dim / 2)
const NEOX: bool = {{NEOX}};
const N_CTX: u32 = {{N_CTX}}u;
const MSCALE: f32 = {{MSCALE}};   // rotated dims are scaled by this (longrope's attention factor)
const HALF: u32 = HD / 2u;
const NH: u32 = HQ + 2u * HKV;   // heads per qkv row
const ROW: u32 = NH * HD;
const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> qkv: array<{{ACT}}>;
@group(0) @binding(1) var<storage, read_write> k_cache: array<{{ACT}}>;
@group(0) @binding(2) var<storage, read_write> v_cache: array<{{ACT}}>;
@group(0) @binding(3) var<storage, read> freq: array<vec2<u32>>;  // [RP] (hi, lo) turns/position
@group(0) @binding(4) var<{{UNI}}> sp: Step;

// High 32 bits of the 64-bit product a * b.
fn mul_hi(a: u32, b: u32) -> u32 {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let m1 = a0 * b1;
    let m2 = a1 * b0;
    let mid = ((a0 * b0) >> 16u) + (m1 & 0xffffu) + (m2 & 0xffffu);
    return a1 * b1 + (m1 >> 16u) + (m2 >> 16u) + (mid >> 16u);
}

// The angle p * freq (turns) reduced to [-pi, pi).
fn angle(p: u32, f: vec2<u32>) -> f32 {
    let lo = p * f.y;                     // low word of the fraction (wraps)
    let hi = p * f.x + mul_hi(p, f.y);    // high word: integer turns fall off the top
    let turns = f32(bitcast<i32>(hi)) * 0x1p-32f + f32(lo) * 0x1p-64f;  // in [-0.5, 0.5)
    return turns * 6.283185307179586;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.y;
    let idx = gid.x;                      // head * HALF + j
    if (t >= sp.T || idx >= NH * HALF) { return; }
    let head = idx / HALF;
    let j = idx % HALF;
    let p = row_pos(t);
    let slot = row_slot(t);
    // the pair's dims within the head; dims past the rotated ones pass through as (2j, 2j+1)
    var d0 = 2u * j;
    var d1 = 2u * j + 1u;
    if (NEOX && j < RP) {
        d0 = j;
        d1 = j + RP;
    }
    let base = t * ROW + head * HD;
    var a = f32(qkv[base + d0]);
    var b = f32(qkv[base + d1]);
    if (head < HQ + HKV && j < RP) {      // q or k head, rotated pair
        let th = angle(p, freq[j]);
        let c = cos(th) * MSCALE;
        let s = sin(th) * MSCALE;
        let ra = a * c - b * s;
        let rb = a * s + b * c;
        qkv[base + d0] = {{ACT}}(ra);
        qkv[base + d1] = {{ACT}}(rb);
        a = ra;
        b = rb;
    }
    if (head >= HQ && p < N_CTX) {        // k or v head: append to the cache
        let kvh = (head - HQ) % HKV;
        let c0 = ((slot * N_CTX + p) * HKV + kvh) * HD;
        if (head < HQ + HKV) {
            k_cache[c0 + d0] = {{ACT}}(a);
            k_cache[c0 + d1] = {{ACT}}(b);
        } else {
            v_cache[c0 + d0] = {{ACT}}(a);
            v_cache[c0 + d1] = {{ACT}}(b);
        }
    }
}
