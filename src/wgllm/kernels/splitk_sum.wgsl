// The K-split matmul's sums: y[t, row0 + n] = (add ? y[t, row0 + n] : 0) + sum_z part[z, t, n]
// for t < Step.T, n < rows; part: [S, T_max, rows] f32 (matmul.wgsl with KS > 0), y: [T_max, N]
// {{YT}}. The splits are added in order z = 0, 1, ..: the same sums whatever the grid.
// Grid: x = blocks of WG rows, y = token.
//!include step
struct Params { N: u32, row0: u32, rows: u32, add: u32, S: u32, ZS: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> Y: array<{{YT}}>;
@group(0) @binding(2) var<{{UNI}}> P: Params;
@group(0) @binding(3) var<{{UNI}}> sp: Step;

const WG: u32 = {{WG}}u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    let t = gid.y;
    if (n >= P.rows || t >= sp.T) { return; }
    var v = 0.0;
    for (var z = 0u; z < P.S; z++) { v += part[z * P.ZS + t * P.rows + n]; }
    let o = t * P.N + P.row0 + n;
    if (P.add != 0u) { v += f32(Y[o]); }
    Y[o] = {{YT}}(v);
}
