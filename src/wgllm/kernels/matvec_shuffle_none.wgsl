// matvec on a device without subgroups (SHUFFLE == 0): the row sums go through workgroup
// memory and this is never called; it only keeps the source valid without the feature.
fn shuffle_sums(acc: vec4<f32>, l: u32) -> f32 {
    return 0.0;
}
