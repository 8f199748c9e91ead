// matvec's row sums by subgroup shuffles (the device has the subgroup feature and
// subgroups of a multiple of TPR invocations, so each row group lies in one subgroup):
// a butterfly over the group's TPR lanes, no workgroup memory and no barrier.
// Needs TPR, NR (matvec.wgsl). Every invocation must call it.

// For lane l < NR of its row group: the sum over the group of acc[l].
fn shuffle_sums(acc: vec4<f32>, l: u32) -> f32 {
    var s = acc;
    if (NR == 2u) {
        var h = acc.xy;
        for (var m = TPR / 2u; m > 0u; m >>= 1u) {
            h += subgroupShuffleXor(h, m);
        }
        s = vec4<f32>(h, 0.0, 0.0);
    } else {
        for (var m = TPR / 2u; m > 0u; m >>= 1u) {
            s += subgroupShuffleXor(s, m);
        }
    }
    return s[min(l, 3u)];
}
