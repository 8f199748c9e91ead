// y[t, row0 + n] = (add ? y[t, row0 + n] : 0) + sum_k W[n, k] * x[t, k] for the rows n < rows
// of one weight chunk and t < Step.T: the decode matvec of GPU adapters for weight types whose
// rows split into 16-byte block groups (kernels/rowdot.py `wide`).
//
// matvec.wgsl reads a block with a type's own unaligned loads (a Q4_0 block is 18 bytes: six
// u32 loads and funnel shifts). Here the body is rowdot's generated one: a group of G blocks
// (G * block bytes a multiple of 16) is loaded as aligned vec4<u32>, every field at a constant
// offset. A row group of TPR invocations shares R rows; invocation l takes the block groups
// l, l + TPR, ... (the row group reads consecutive 16-byte words), and the TPR partial sums of
// each row are added by subgroup shuffles (the row group lies in one subgroup) or through
// workgroup memory. TPR and R are chosen per product shape (kernels/linear.py).
//
// NORM = 1: x is the f32 residual stream and the product's RMSNorm is done here
// (xnorm_on.wgsl): each workgroup sums the squares of its token's row and keeps the normed row in
// workgroup memory, where xv reads it (one dispatch less per norm; the normed x is never rounded
// to f16).
//
// Grid: x, y flatten the workgroups of WG / TPR row groups; z = the token (a batched decode
// pass: each row computed exactly as alone). Rows past the chunk's last are read (bounds checks
// clamp them) but never written.
//!include rowdot_common

const TPR: u32 = {{TPR}}u;        // invocations per row group
const NG: u32 = {{NG}}u;          // block groups per row
var<workgroup> red: array<f32, {{R}} * WG>;  // row sums (no shuffles), the norm's sum of squares

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = wid.z;
    if (t >= S.T) { return; }  // uniform per workgroup
    let rg = lid / TPR;
    let l = lid % TPR;
    let n0 = ((wid.x + wid.y * nwg.x) * (WG / TPR) + rg) * R;
    let vb = (n0 / R) * ROWV;
    let xr0 = t * XROW;
    if (NORM != 0u) { norm_row(xr0, lid); }
    let ng = select(0u, NG, n0 < P.rows);  // a row group past the chunk loads nothing
{{ACCS}}
    for (var gi = l; gi < ng; gi += TPR) {
{{BODY}}
    }
{{REDUCE}}
}
