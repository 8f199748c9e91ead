// The RMSNorm fused into a decode product's x loads (matvec.wgsl, matwide.wgsl; NORM = 1): x is a
// row of the f32 residual stream and each loaded vec4 i of it is multiplied by the row's 1 / rms
// (nscale, set by norm_row before the loop) and the norm's weights NW [K] f32. nbase: the row's
// first vec4 in X. Needs X (vec4 of f32), P.K, P.eps, WG (a power of two) and red (>= WG f32).
@group(0) @binding(5) var<storage, read> NW: array<vec4<f32>>;
var<private> nscale: f32;
var<private> nbase: u32;

fn norm_w(i: u32) -> vec4<f32> {
    return NW[i - nbase] * nscale;
}

// 1 / sqrt(mean(x^2) + eps) of the row of K / 4 vec4 from vec4 xr: strided over the workgroup,
// then a tree in workgroup memory sums; every invocation of the workgroup must call it.
fn norm_row(xr: u32, lid: u32) {
    var ss = 0.0;
    for (var i = lid; i < P.K / 4u; i += WG) {
        let v = vec4<f32>(X[xr + i]);
        ss += dot(v, v);
    }
    red[lid] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    nscale = inverseSqrt(red[0] / f32(P.K) + P.eps);
    nbase = xr;
    workgroupBarrier();  // red is reused by the row sums
}
