// Test kernel: dequantize rows [first, first + count) of a weight chunk to f32.
// W (binding 0, see quant.wgsl): the chunk's raw rows; Y: [count, K] f32.
// One invocation per 8 elements; the grid is flattened over (x, y).
//!include quant

struct Params { K: u32, row_bytes: u32, first: u32, count: u32 }

@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@group(0) @binding(2) var<{{UNI}}> P: Params;

const WG: u32 = {{WG}}u;  // linear.GET_ROWS_WG

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = (wid.x + wid.y * nwg.x) * WG + lid;   // which group of 8 elements
    let per_row = P.K / 8u;
    if (g >= per_row * P.count) { return; }
    let r = g / per_row;
    let k = (g % per_row) * 8u;
    let v = dq8((P.first + r) * P.row_bytes, k);
    let o = r * P.K + k;
    for (var j = 0u; j < 4u; j++) {
        Y[o + j] = v.a[j];
        Y[o + 4u + j] = v.b[j];
    }
}
