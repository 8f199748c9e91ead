// matvec's batched tile (TB > 1, a batched decode pass over several sequences' rows): a
// workgroup takes tokens TB * workgroup_id.x .. + TB and RG row groups (y, z flatten them),
// each of one row pair (NR = 2). Each invocation reads and unpacks a unit of its two rows
// once (uw_*) and multiplies it with every token's x (wd_*), each token's partial sums in
// the order of the one-row kernel, then the row sums as there: so every row of the pass is
// bit for bit the row decoded alone, for about 1 / TB of the unpacking. The per-token code is
// written out TB times (kernels/linear.py `_tile_code`: one accumulator per token, in
// registers; a token past the pass's rows is skipped by a branch uniform per workgroup).
// Needs matvec.wgsl's constants, uw_{{QT}} / wd_{{QT}}, and NR == 2 (PAIRS 1).

// Token j of the tile: lane l < 2 of its row group gets row n's sum and writes it.
fn tile_out(acc: vec2<f32>, j: u32, nt: u32, t0: u32, lid: u32, r: u32, l: u32, n: u32) {
    var v = 0.0;
    if (SHUFFLE == 1u) {
        v = shuffle_sums(vec4<f32>(acc, 0.0, 0.0), l);
    } else {
        red[2u * lid] = acc.x;
        red[2u * lid + 1u] = acc.y;
        workgroupBarrier();
        if (l < 2u) {
            for (var i = 0u; i < TPR; i++) {
                v += red[2u * (r * TPR + i) + l];
            }
        }
        workgroupBarrier();
    }
    if (l < 2u && n < P.rows && j < nt) {
        let o = (t0 + j) * P.N + P.row0 + n;
        var y = v;
        if (P.add != 0u) { y += f32(Y[o]); }
        Y[o] = {{YT}}(y);
    }
}

fn tile_main(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) {
    let t0 = wid.x * TB;
    if (t0 >= S.T) { return; }  // uniform per workgroup
    let nt = min(TB, S.T - t0);
    let r = lid / TPR;
    let l = lid % TPR;
    let n0 = ((wid.y + wid.z * nwg.y) * RG + r) * 2u;
    let xrow = (P.K / 4u) * select(1u, 2u, GLU != 0u);   // vec4 per row of X
    let x0 = t0 * xrow;
    {{TILE_VARS}}
    if (n0 < P.rows) {
        let r0 = n0 * P.row_bytes;
        let r1 = min(n0 + 1u, P.rows - 1u) * P.row_bytes;   // past the chunk: a valid row, never written
        let units = P.K / UNIT;
        for (var u = l; u < units; u += TPR) {
            let a = uw_{{QT}}(r0, u);
            let b = uw_{{QT}}(r1, u);
            let xu = x0 + u * (UNIT / 4u);
            {{TILE_DOTS}}
        }
    }
    {{TILE_SUMS}}
}
