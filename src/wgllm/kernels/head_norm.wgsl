// Per-head RMSNorm of the q and k heads of qkv, in place (qk-norm: Qwen3, Gemma 3):
// for token t < Step.T and head j < HQ + HKV (q heads, then k heads),
//   qkv[t, j, :] = qkv[t, j, :] / sqrt(mean(qkv[t, j, :]^2) + eps) * w[j < HQ ? 0 : 1][:]
// qkv: [T_max, (HQ + 2 HKV) * HD] {{ACT}} as vec4, w: [2, HD] f32 (q_norm | k_norm).
// One invocation per (token, head) row walks it twice (rows are short: HD <= 256).
//!include step

const HD4: u32 = {{HD}}u / 4u;
const HQ: u32 = {{HQ}}u;
const NH: u32 = {{HQ}}u + {{HKV}}u;          // normed heads per token
const ROWV: u32 = ({{HQ}}u + 2u * {{HKV}}u) * HD4;
const EPS: f32 = {{EPS}};
const WG: u32 = {{WG}}u;

@group(0) @binding(0) var<storage, read_write> qkv: array<vec4<{{ACT}}>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(2) var<{{UNI}}> sp: Step;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * WG;
    let t = r / NH;
    if (t >= sp.T) { return; }
    let j = r % NH;
    let base = t * ROWV + j * HD4;
    let wb = select(HD4, 0u, j < HQ);
    var ss = vec4<f32>(0.0);
    for (var i = 0u; i < HD4; i++) {
        let v = vec4<f32>(qkv[base + i]);
        ss += v * v;
    }
    let scale = inverseSqrt(dot(ss, vec4<f32>(1.0)) / f32(4u * HD4) + EPS);
    for (var i = 0u; i < HD4; i++) {
        qkv[base + i] = vec4<{{ACT}}>(vec4<f32>(qkv[base + i]) * scale * w[wb + i]);
    }
}
