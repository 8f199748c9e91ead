// Embedding lookup from a raw GGUF weight chunk:
//   y[t, :] = dequant(W[ids[step.pos + t], :])   for t < step.T
// for the ids whose row lies in this chunk, rows [row0, row0 + rows); other
// chunks' dispatches write the other tokens.
// W (binding 0, see quant.wgsl): the chunk; ids: array<u32>; Y: [T_max, K] {{YT}}.
// Grid: x covers K/8 (one invocation per 8 elements), z = token t.
//!include step
//!include quant

struct Params { K: u32, row0: u32, rows: u32, row_bytes: u32 }

@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> Y: array<{{YT}}>;
@group(0) @binding(3) var<{{UNI}}> P: Params;
@group(0) @binding(4) var<{{UNI}}> S: Step;

const WG: u32 = {{WG}}u;  // linear.GET_ROWS_WG

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wid.z;
    let k = (wid.x * WG + lid) * 8u;
    if (t >= S.T || k >= P.K) { return; }
    let id = ids[S.pos + t];
    if (id < P.row0 || id - P.row0 >= P.rows) { return; }   // row in another chunk
    let v = dq8((id - P.row0) * P.row_bytes, k);
    let o = t * P.K + k;
    for (var j = 0u; j < 4u; j++) {
        Y[o + j] = {{YT}}(v.a[j]);
        Y[o + 4u + j] = {{YT}}(v.b[j]);
    }
}
