// The RMSNorm fused into the decode matvec late (matvec.wgsl, NORM = 2): x is a row of the f32
// residual stream and the product reads x * NW (xnormed); each row group sums the squares of the
// x of every unit it walks (the whole row, once) and its row sums are scaled by 1 / rms(x) at the
// end. No pass over the row before the loop and no workgroup memory: the norm costs a multiply
// and a square per x element, where an rmsnorm dispatch of its own cost ~8 us on an H100.
// Needs X (vec4 of f32).
@group(0) @binding(5) var<storage, read> NW: array<vec4<f32>>;
var<private> nbase: u32;

fn xnormed(i: u32) -> vec4<f32> {
    return vec4<f32>(X[i]) * NW[i - nbase];
}

// The first x vec4 of the token's row (xr); nothing is shared, so no barrier.
fn norm_row(xr: u32, lid: u32) {
    nbase = xr;
}
