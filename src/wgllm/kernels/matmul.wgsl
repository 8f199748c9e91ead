// y[t, row0 + n] = (add ? y[t, row0 + n] : 0) + sum_k W[n, k] * x[t, k]
// for t < step.T and the rows n < rows of one weight chunk: the prefill
// (T > 1) tiled matrix-matrix product.
//
// Layout: W (binding 0, see quant.wgsl) raw rows of row_bytes; X [T_max, K] as
// vec4 of {{XT}} (GLU = 1 / 2: [T_max, 2K], x = silu / gelu(first half) * second half);
// Y [T_max, N] {{YT}}.
// Tiling: a workgroup of 256 invocations owns a tile of BN = 128 rows x BT = 64 or
// 128 tokens and walks K in steps of BK = 16. Per step each invocation dequantizes 8
// weights (row lid % 128, elements 8 * (lid / 128) ..) and loads XL = BT / 64 vec4 of
// activations (token lid % BT, elements 4 * (lid / BT) + 16 / XL * j ..) into workgroup
// memory, so every weight block is read and dequantized once per BT tokens; the next
// step's loads are issued before this step's arithmetic (register double buffering).
// Each invocation accumulates 8 rows (4 tn .. +3 and 64 + 4 tn .. +3) x 4 XL tokens
// (64 g + 4 tt .. +3 for g < XL): 32 or 64 sums, 12 or 16 floats read from workgroup
// memory per k. Workgroup memory: Ws [BK][BN] + Xs [BK][BT] f32 = 12 or 16 KiB.
// Grid: x = row tiles, y = token tiles (tiles past step.T exit at once), z = K split: with
// KS > 0, workgroup z takes k in [z KS, (z + 1) KS) only and writes its partial sums to
// Y + z ZS (an f32 scratch, add = 0), which splitk_sum.wgsl adds up into the real y: a
// product of few tiles (the prefill's wo and down at 128 tokens: 64) then fills the GPU.
//!include step
//!include quant
//!include glu

struct Params { K: u32, N: u32, row0: u32, rows: u32, row_bytes: u32, add: u32, KS: u32, ZS: u32 }

@group(0) @binding(1) var<storage, read> X: array<vec4<{{XT}}>>;
@group(0) @binding(2) var<storage, read_write> Y: array<{{YT}}>;
@group(0) @binding(3) var<{{UNI}}> P: Params;
@group(0) @binding(4) var<{{UNI}}> S: Step;

const BN: u32 = {{BN}}u;  // rows per workgroup (linear.MATMUL_ROWS: 128)
const BT: u32 = {{BT}}u;  // tokens per workgroup (linear.MATMUL_TOKENS: 64 or 128)
const BK: u32 = {{BK}}u;  // k-slice per step (linear.MATMUL_K: 16)
const XL: u32 = BT / 64u;  // activation vec4 per invocation per step, token groups per invocation
const XS: u32 = BT / 4u;   // Xs vec4 per k

var<workgroup> Ws: array<vec4<f32>, 512>;     // [k][n / 4], BK * BN / 4
var<workgroup> Xs: array<vec4<f32>, 4u * BT>;  // [k][t / 4], BK * BT / 4

const GLU: u32 = {{GLU}};      // 1 / 2: X rows are [gate (K) | up (K)] and x = silu / gelu(gate) * up

fn xload(i: u32) -> vec4<f32> {
    if (GLU != 0u) {
        let g = vec4<f32>(X[i]);
        return glu_act(g) * vec4<f32>(X[i + P.K / 4u]);
    }
    return vec4<f32>(X[i]);
}

fn put(t: u32, n: u32, v: f32, z: u32) {
    if (t < S.T && n < P.rows) {
        let o = z * P.ZS + t * P.N + P.row0 + n;
        var y = v;
        if (P.add != 0u) { y += f32(Y[o]); }
        Y[o] = {{YT}}(y);
    }
}

fn put4(t: u32, n: u32, v: vec4<f32>, z: u32) {
    put(t, n, v.x, z);
    put(t, n + 1u, v.y, z);
    put(t, n + 2u, v.z, z);
    put(t, n + 3u, v.w, z);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let T = S.T;
    let t0 = wid.y * BT;
    if (t0 >= T) { return; }  // uniform per workgroup
    let n0 = wid.x * BN;
    let kb = select(0u, wid.z * P.KS, P.KS != 0u);      // this workgroup's k range [kb, ke)
    let ke = select(P.K, min(P.K, kb + P.KS), P.KS != 0u);

    // Loader roles.
    let wn = lid % BN;           // weight row of the tile
    let wk = 8u * (lid / BN);    // its 8 elements of the K step
    let rb = min(n0 + wn, P.rows - 1u) * P.row_bytes;   // rows past the chunk: a valid row, never written
    let xt = lid % BT;           // token of the tile
    let xk = lid / BT;           // its vec4 of the K step (and xk + 4 / XL j)
    let xok = t0 + xt < T;
    let xi = select(0u, (t0 + xt) * (P.K / 4u) * select(1u, 2u, GLU != 0u) + xk, xok);
    // Compute role.
    let tn = lid % 16u;
    let tt = lid / 16u;

    // acc[8 g + i]: token 64 g + 4 tt + i, rows 4 tn .. +3; acc[8 g + 4 + i]: rows 64 + 4 tn .. +3
    var acc: array<vec4<f32>, 8u * XL>;

    var v = dq8(rb, kb + wk);
    var xv: array<vec4<f32>, XL>;
    for (var j = 0u; j < XL; j++) {
        if (xok) { xv[j] = xload(xi + kb / 4u + 4u / XL * j); }
    }
    for (var k0 = kb; k0 < ke; k0 += BK) {
        let wo = wk * 32u + wn / 4u;
        let wc = wn % 4u;
        Ws[wo][wc] = v.a.x;
        Ws[wo + 32u][wc] = v.a.y;
        Ws[wo + 64u][wc] = v.a.z;
        Ws[wo + 96u][wc] = v.a.w;
        Ws[wo + 128u][wc] = v.b.x;
        Ws[wo + 160u][wc] = v.b.y;
        Ws[wo + 192u][wc] = v.b.z;
        Ws[wo + 224u][wc] = v.b.w;
        let xc = xt % 4u;
        for (var j = 0u; j < XL; j++) {
            let xo = (4u * xk + 16u / XL * j) * XS + xt / 4u;
            Xs[xo][xc] = xv[j].x;
            Xs[xo + XS][xc] = xv[j].y;
            Xs[xo + 2u * XS][xc] = xv[j].z;
            Xs[xo + 3u * XS][xc] = xv[j].w;
        }
        workgroupBarrier();
        if (k0 + BK < ke) {   // prefetch the next step
            v = dq8(rb, k0 + BK + wk);
            for (var j = 0u; j < XL; j++) {
                if (xok) { xv[j] = xload(xi + (k0 + BK) / 4u + 4u / XL * j); }
            }
        }
        for (var k = 0u; k < BK; k++) {
            let w0 = Ws[k * 32u + tn];
            let w1 = Ws[k * 32u + 16u + tn];
            for (var g = 0u; g < XL; g++) {
                let x = Xs[k * XS + 16u * g + tt];
                acc[8u * g] += w0 * x.x;
                acc[8u * g + 1u] += w0 * x.y;
                acc[8u * g + 2u] += w0 * x.z;
                acc[8u * g + 3u] += w0 * x.w;
                acc[8u * g + 4u] += w1 * x.x;
                acc[8u * g + 5u] += w1 * x.y;
                acc[8u * g + 6u] += w1 * x.z;
                acc[8u * g + 7u] += w1 * x.w;
            }
        }
        workgroupBarrier();
    }

    let na = n0 + 4u * tn;
    for (var g = 0u; g < XL; g++) {
        let t = t0 + 64u * g + 4u * tt;
        for (var i = 0u; i < 4u; i++) {
            put4(t + i, na, acc[8u * g + i], wid.z);
            put4(t + i, na + 64u, acc[8u * g + 4u + i], wid.z);
        }
    }
}
