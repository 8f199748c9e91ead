// y[t, row0 + n] = (add ? y[t, row0 + n] : 0) + sum_k W[n, k] * x[t, k]
// for t < step.T and the rows n < rows of one weight chunk: the CPU-adapter
// (lavapipe) variant of matvec/matmul, for decode and prefill alike.
//
// A software adapter runs a workgroup's invocations as the lanes of SIMD
// registers, and every storage load is a loop over the lanes (measured on
// lavapipe: ~10 cycles per lane and load, whatever its width). So the cost is
// the number of loads, and this kernel keeps it low: no workgroup memory, no
// barriers; each invocation owns R consecutive rows (R * row_bytes is a
// multiple of 16, so every row's bytes sit at a fixed offset from a vec4 of W)
// and reads them as vec4<u32> only; each x vector it loads serves its R rows,
// and each dequantized weight serves TT tokens. The body is generated in
// Python (kernels/rowdot.py) per weight type and row length: block fields are
// read at constant offsets in the loaded vec4s, and dot products are
// d * sum(q * x) (+ m * sum(x)), so a weight costs about three operations.
//
// Resident rows (PRE non-empty, prefill passes with x uniform, kernels/rowdot.py `resident`):
// the invocation loads and dequantizes its R rows once, before the token loop, and each token
// then costs only its x loads and a multiply-add per weight.
//
// x, when its buffer fits in a uniform binding (decode, short prefill passes), is a uniform
// array: its loads are the same for every lane, and lavapipe makes a uniform load at a
// uniform offset one scalar load and a broadcast, where a storage load loops over the lanes
// (lavapipe: -10% for a Q4_1 [3072 x 576] product of f32 x, -18% for prefill passes' f16
// products; bench/RESULTS.md).
//
// Layout: W (binding 0) raw rows of row_bytes as vec4<u32>; X [T_max, K] as
// vec4 of {{XT}} (GLU = 1 / 2: [T_max, 2K], x = silu / gelu(first half) * second half);
// Y [T_max, N] {{YT}}.  Grid: x, y flatten the row groups of R rows.
// GLUO = 1 / 2 (the fused GLU output of an FFN's [gate | up] product, 2 N rows): an invocation's
// R rows are RN = R / 2 gate rows from n0 and the up rows N further, and it writes
// Y[t, n] = act(gate_n . x_t) * (up_n . x_t) into Y [T_max, N] (params N, rows: the halves').
//!include rowdot_common

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = gid.x + gid.y * nwg.x * WG;
    let n0 = g * RN;
    if (n0 >= P.rows) { return; }
    let vb = g * ROWV;          // first vec4 of the group's rows
    let T = S.T;
{{PRE}}
    for (var t0 = 0u; t0 < T; t0 += {{TT}}u) {
{{BODY}}
    }
}
