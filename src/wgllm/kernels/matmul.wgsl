// y[t, row0 + n] = (add ? y[t, row0 + n] : 0) + sum_k W[n, k] * x[t, k]
// for t < step.T and the rows n < rows of one weight chunk: the prefill
// (T > 1) tiled matrix-matrix product.
//
// Layout: W (binding 0, see quant.wgsl) raw rows of row_bytes; X [T_max, K] as
// vec4 of {{XT}}; Y [T_max, N] {{YT}}.
// Tiling: a workgroup of 256 invocations owns a tile of BN = 64 rows x BT = 64
// tokens and walks K in steps of BK = 32. Per step each invocation dequantizes 8
// weights (row lid % 64, elements 8 * (lid / 64) ..) and loads 8 activations
// into workgroup memory, so every weight block is read and dequantized once per
// 64 tokens; then each invocation accumulates a 4 rows x 4 tokens micro-tile.
// Workgroup memory: Ws [BK][BN] + Xs [BK][BT] f32 = 16 KiB.
// Grid: x = row tiles, y = token tiles (tiles past step.T exit at once).
//!include step
//!include quant

struct Params { K: u32, N: u32, row0: u32, rows: u32, row_bytes: u32, add: u32, _p0: u32, _p1: u32 }

@group(0) @binding(1) var<storage, read> X: array<vec4<{{XT}}>>;
@group(0) @binding(2) var<storage, read_write> Y: array<{{YT}}>;
@group(0) @binding(3) var<uniform> P: Params;
@group(0) @binding(4) var<uniform> S: Step;

const BN: u32 = 64u;
const BT: u32 = 64u;
const BK: u32 = 32u;

var<workgroup> Ws: array<vec4<f32>, 512>;   // [k][n / 4], BK * BN / 4
var<workgroup> Xs: array<vec4<f32>, 512>;   // [k][t / 4], BK * BT / 4

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let T = S.T;
    let t0 = wid.y * BT;
    if (t0 >= T) { return; }  // uniform per workgroup
    let n0 = wid.x * BN;

    // Loader roles: row / token `ln` of the tile, 8-element slice `lc` of the K step.
    let ln = lid % 64u;
    let lc = lid / 64u;
    let rb = min(n0 + ln, P.rows - 1u) * P.row_bytes;   // rows past the chunk: a valid row, never written
    let xok = t0 + ln < T;
    let xi = select(0u, (t0 + ln) * (P.K / 4u) + 2u * lc, xok);
    // Compute role: rows n0 + 4 tn .. +3, tokens t0 + 4 tt .. +3.
    let tn = lid % 16u;
    let tt = lid / 16u;

    var acc: array<vec4<f32>, 4>;   // acc[i][j]: token 4 tt + i, row 4 tn + j
    for (var k0 = 0u; k0 < P.K; k0 += BK) {
        let v = dq8(rb, k0 + 8u * lc);
        var xa = vec4<f32>(0.0);
        var xb = vec4<f32>(0.0);
        if (xok) {
            xa = vec4<f32>(X[xi + k0 / 4u]);
            xb = vec4<f32>(X[xi + k0 / 4u + 1u]);
        }
        for (var j = 0u; j < 4u; j++) {
            let kk = 8u * lc + j;
            Ws[kk * 16u + ln / 4u][ln % 4u] = v.a[j];
            Ws[(kk + 4u) * 16u + ln / 4u][ln % 4u] = v.b[j];
            Xs[kk * 16u + ln / 4u][ln % 4u] = xa[j];
            Xs[(kk + 4u) * 16u + ln / 4u][ln % 4u] = xb[j];
        }
        workgroupBarrier();
        for (var k = 0u; k < BK; k++) {
            let w = Ws[k * 16u + tn];
            let x = Xs[k * 16u + tt];
            acc[0] += w * x.x;
            acc[1] += w * x.y;
            acc[2] += w * x.z;
            acc[3] += w * x.w;
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let t = t0 + 4u * tt + i;
        if (t >= T) { break; }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + 4u * tn + j;
            if (n >= P.rows) { break; }
            let o = t * P.N + P.row0 + n;
            var y = acc[i][j];
            if (P.add != 0u) { y += f32(Y[o]); }
            Y[o] = {{YT}}(y);
        }
    }
}
