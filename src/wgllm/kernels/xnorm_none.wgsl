// norm_w / norm_row (see xnorm_on.wgsl) where x is not normed as it is loaded (NORM = 0): never called.
fn norm_w(i: u32) -> vec4<f32> {
    return vec4<f32>(1.0);
}

fn norm_row(xr: u32, lid: u32) {}
