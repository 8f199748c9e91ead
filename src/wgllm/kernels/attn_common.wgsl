// Shared by attention.wgsl and attn_combine.wgsl: shapes, the tiling of query
// rows and the split of the keys (both passes must agree on them).
//!include step_rows

const HD: u32 = {{HD}}u;            // head dim
const HQ: u32 = {{HQ}}u;            // query heads
const HKV: u32 = {{HKV}}u;          // kv heads
const G: u32 = HQ / HKV;            // query heads per kv head
const QT: u32 = {{QT}}u;            // token rows per tile
const S: u32 = {{S}}u;              // key splits (capacity)
const MINK: u32 = {{MINK}}u;         // fewest keys per split (the decode block size)
const VEC: u32 = {{VEC}}u;          // elements per vector load (4, or 2 when HD % 4 != 0)
const HDV: u32 = HD / VEC;          // vectors per head
const NEG: f32 = -3.0e38;           // "minus infinity" (scores of masked keys)
const WINDOW: u32 = {{WINDOW}}u;    // sliding window: a row sees its last WINDOW positions (0: all)

alias VA = vec{{VEC}}<{{ACT}}>;     // a vector of stored activations
alias VF = vec{{VEC}}<f32>;         // the same in f32

// 2^(a - m) with a masked (NEG) value giving 0, also when m is NEG too.
fn ex(a: f32, m: f32) -> f32 {
    return select(exp2(a - m), 0.0, a <= -1.0e38);
}

const N_CTX: u32 = {{N_CTX}}u;      // positions per KV-cache slot

// First cache vector of row t's slot (row_pos, row_slot: step_rows.wgsl; a batched pass has
// QT == 1): k_cache, v_cache are [slots, N_CTX, HKV, HD].
fn slot_base(t: u32) -> u32 {
    return row_slot(t) * N_CTX * HKV * HDV;
}

// Keys visible to the tile of token rows starting at t0: those of its last row.
fn tile_keys(t0: u32) -> u32 {
    if (sp.batched != 0u) { return row_pos(t0) + 1u; }
    return sp.pos + min(t0 + QT, sp.T);
}

// First key visible to the tile of token rows starting at t0: that of its first row.
fn tile_first_key(t0: u32) -> u32 {
    let p = row_pos(t0) + 1u;
    return select(0u, p - WINDOW, WINDOW > 0u && p > WINDOW);
}

// Whether the row at position qp sees key k (causal, and within the window).
fn visible(k: u32, qp: u32) -> bool {
    return k <= qp && (WINDOW == 0u || k + WINDOW > qp);
}

// Splits used for `keys` keys: at most S, and at least MINK keys each.
fn n_splits(keys: u32) -> u32 {
    return clamp((keys + MINK - 1u) / MINK, 1u, S);
}
