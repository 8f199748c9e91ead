// Where token row t of a pass sits (see step.wgsl): its position and its KV-cache slot, for a
// pass of one sequence and for a batched one alike. The kernel names its Step binding `sp`.
//!include step

fn row_pos(t: u32) -> u32 {
    if (sp.batched != 0u) { return sp.rows[t].y; }
    return sp.pos + t;
}

fn row_slot(t: u32) -> u32 {
    if (sp.batched != 0u) { return sp.rows[t].x; }
    return sp.slot;
}
