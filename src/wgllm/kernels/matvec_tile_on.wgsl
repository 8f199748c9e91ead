// matvec's batched tile (TB > 1, a batched decode pass over several sequences' rows): a
// workgroup takes tokens TB * workgroup_id.x .. + TB and RG row groups (y, z flatten them),
// each of one row pair (NR = 2). Each invocation reads and unpacks a unit of its two rows
// once (uw_*) and multiplies it with every token's x (wd_*), each token's partial sums in
// the order of the one-row kernel, then the row sums as there: so every row of the pass is
// bit for bit the row decoded alone, for about 1 / TB of the unpacking.
// Needs matvec.wgsl's constants, uw_{{QT}} / wd_{{QT}}, and NR == 2 (PAIRS 1).

fn tile_main(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) {
    let t0 = wid.x * TB;
    if (t0 >= S.T) { return; }  // uniform per workgroup
    let nt = min(TB, S.T - t0);
    let r = lid / TPR;
    let l = lid % TPR;
    let n0 = ((wid.y + wid.z * nwg.y) * RG + r) * 2u;
    let xrow = (P.K / 4u) * select(1u, 2u, GLU != 0u);   // vec4 per row of X
    var acc: array<vec2<f32>, TB>;   // [token of the tile] partial sums of rows n0, n0 + 1
    if (n0 < P.rows) {
        let r0 = n0 * P.row_bytes;
        let r1 = min(n0 + 1u, P.rows - 1u) * P.row_bytes;   // past the chunk: a valid row, never written
        let units = P.K / UNIT;
        for (var u = l; u < units; u += TPR) {
            let a = uw_{{QT}}(r0, u);
            let b = uw_{{QT}}(r1, u);
            for (var j = 0u; j < TB; j++) {
                if (j < nt) { acc[j] += wd_{{QT}}(a, b, u, (t0 + j) * xrow + u * (UNIT / 4u)); }
            }
        }
    }
    let n = n0 + l;
    let live = l < 2u && n < P.rows;
    for (var j = 0u; j < TB; j++) {
        var v = 0.0;
        if (SHUFFLE == 1u) {
            v = shuffle_sums(vec4<f32>(acc[j], 0.0, 0.0), l);
        } else {
            red[2u * lid] = acc[j].x;
            red[2u * lid + 1u] = acc[j].y;
            workgroupBarrier();
            if (live) {
                for (var i = 0u; i < TPR; i++) {
                    v += red[2u * (r * TPR + i) + l];
                }
            }
            workgroupBarrier();
        }
        if (live && j < nt) {
            let o = (t0 + j) * P.N + P.row0 + n;
            var y = v;
            if (P.add != 0u) { y += f32(Y[o]); }
            Y[o] = {{YT}}(y);
        }
    }
}
