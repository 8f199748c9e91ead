// matvec without a batched tile (TB is 1): main never calls this.
fn tile_main(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) {}
