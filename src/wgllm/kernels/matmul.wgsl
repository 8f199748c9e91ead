// y[t, row0 + n] = (add ? y[t, row0 + n] : 0) + sum_k W[n, k] * x[t, k]
// for t < step.T and the rows n < rows of one weight chunk: the prefill
// (T > 1) tiled matrix-matrix product.
//
// Layout: W (binding 0, see quant.wgsl) raw rows of row_bytes; X [T_max, K] as
// vec4 of {{XT}} (GLU = 1 / 2: [T_max, 2K], x = silu / gelu(first half) * second half);
// Y [T_max, N] {{YT}}.
// Tiling: a workgroup of 256 invocations owns a tile of BN = 128 rows x BT = 64
// tokens and walks K in steps of BK = 16. Per step each invocation dequantizes 8
// weights (row lid % 128, elements 8 * (lid / 128) ..) and loads 4 activations
// (token lid % 64, elements 4 * (lid / 64) ..) into workgroup memory, so every
// weight block is read and dequantized once per 64 tokens; the next step's loads
// are issued before this step's arithmetic (register double buffering). Each
// invocation accumulates 8 rows (4 tn .. +3 and 64 + 4 tn .. +3) x 4 tokens
// (4 tt .. +3). Workgroup memory: Ws [BK][BN] + Xs [BK][BT] f32 = 12 KiB.
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

const BN: u32 = {{BN}}u;  // rows per workgroup (linear.MATMUL_ROWS)
const BT: u32 = {{BT}}u;  // tokens per workgroup (linear.MATMUL_TOKENS)
const BK: u32 = {{BK}}u;  // k-slice per step (linear.MATMUL_K)

var<workgroup> Ws: array<vec4<f32>, 512>;   // [k][n / 4], BK * BN / 4
var<workgroup> Xs: array<vec4<f32>, 256>;   // [k][t / 4], BK * BT / 4

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
    let xk = lid / BT;           // its vec4 of the K step
    let xok = t0 + xt < T;
    let xi = select(0u, (t0 + xt) * (P.K / 4u) * select(1u, 2u, GLU != 0u) + xk, xok);
    // Compute role.
    let tn = lid % 16u;
    let tt = lid / 16u;

    var a0 = vec4<f32>(0.0);     // a_i: token 4 tt + i, rows 4 tn .. +3
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0);     // b_i: token 4 tt + i, rows 64 + 4 tn .. +3
    var b1 = vec4<f32>(0.0);
    var b2 = vec4<f32>(0.0);
    var b3 = vec4<f32>(0.0);

    var v = dq8(rb, kb + wk);
    var xv = vec4<f32>(0.0);
    if (xok) { xv = xload(xi + kb / 4u); }
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
        let xo = xk * 64u + xt / 4u;
        let xc = xt % 4u;
        Xs[xo][xc] = xv.x;
        Xs[xo + 16u][xc] = xv.y;
        Xs[xo + 32u][xc] = xv.z;
        Xs[xo + 48u][xc] = xv.w;
        workgroupBarrier();
        if (k0 + BK < ke) {   // prefetch the next step
            v = dq8(rb, k0 + BK + wk);
            if (xok) { xv = xload(xi + (k0 + BK) / 4u); }
        }
        for (var k = 0u; k < BK; k++) {
            let w0 = Ws[k * 32u + tn];
            let w1 = Ws[k * 32u + 16u + tn];
            let x = Xs[k * 16u + tt];
            a0 += w0 * x.x;
            a1 += w0 * x.y;
            a2 += w0 * x.z;
            a3 += w0 * x.w;
            b0 += w1 * x.x;
            b1 += w1 * x.y;
            b2 += w1 * x.z;
            b3 += w1 * x.w;
        }
        workgroupBarrier();
    }

    let t = t0 + 4u * tt;
    let na = n0 + 4u * tn;
    let nb = na + 64u;
    put4(t, na, a0, wid.z);
    put4(t + 1u, na, a1, wid.z);
    put4(t + 2u, na, a2, wid.z);
    put4(t + 3u, na, a3, wid.z);
    put4(t, nb, b0, wid.z);
    put4(t + 1u, nb, b1, wid.z);
    put4(t + 2u, nb, b2, wid.z);
    put4(t + 3u, nb, b3, wid.z);
}
