// xnormed / norm_row (see xnorm_on.wgsl) where x is not normed in the product (NORM = 0): never called.
fn xnormed(i: u32) -> vec4<f32> {
    return vec4<f32>(0.0);
}

fn norm_row(xr: u32, lid: u32) {}
