// The RMSNorm fused into a decode product (matvec.wgsl, matwide.wgsl; NORM = 1): x is a row of
// the f32 residual stream. Before the product's loop each workgroup sums the squares of its
// token's row, then writes the normed row, x * (NW * 1 / rms), into workgroup memory (xsh), and
// the product's x loads read it there (xnormed(i): the normed vec4 i).
// Needs X (vec4 of f32), P.K, P.eps, WG (a power of two), red (>= WG f32), XNK = K / 4.
@group(0) @binding(5) var<storage, read> NW: array<vec4<f32>>;
var<workgroup> xsh: array<vec4<f32>, {{XNK}}>;
var<private> nbase: u32;

fn xnormed(i: u32) -> vec4<f32> {
    return xsh[i - nbase];
}

// Every invocation of the workgroup must call it (barriers).
fn norm_row(xr: u32, lid: u32) {
    var ss = 0.0;
    for (var i = lid; i < {{XNK}}u; i += WG) {
        let v = vec4<f32>(X[xr + i]);
        ss += dot(v, v);
    }
    red[lid] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    let scale = inverseSqrt(red[0] / f32(P.K) + P.eps);
    for (var i = lid; i < {{XNK}}u; i += WG) {
        xsh[i] = vec4<f32>(X[xr + i]) * (NW[i] * scale);
    }
    nbase = xr;
    workgroupBarrier();  // xsh written; red is reused by the row sums
}
