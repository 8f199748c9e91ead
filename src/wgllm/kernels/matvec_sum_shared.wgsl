// matvec's row sums through workgroup memory (any adapter): every invocation stores
// its NR partial dots, one barrier, then lane l < NR of each row group adds the TPR
// partials of row l. Needs TPR, NR, WG (matvec.wgsl).
var<workgroup> red: array<f32, NR * WG>;   // partial sums [invocation][row of its group]

// Where `live` (lane l < NR of its row group, the row exists): the sum over the row group
// of invocation lid of acc[l]; every invocation must call it (a barrier).
fn row_sums(acc: vec4<f32>, lid: u32, l: u32, live: bool) -> f32 {
    for (var i = 0u; i < NR; i++) {
        red[NR * lid + i] = acc[i];
    }
    workgroupBarrier();
    var v = 0.0;
    if (live) {
        let g = lid / TPR * TPR;   // the group's first invocation
        for (var i = 0u; i < TPR; i++) {
            v += red[NR * (g + i) + l];
        }
    }
    return v;
}
