// y[t, row0 + n] = (add ? y[t, row0 + n] : 0) + sum_k W[n, k] * x[t, k]
// for t < step.T and the rows n < rows of one weight chunk: the decode (T = 1)
// matrix-vector product, memory bound.
//
// Layout: W (binding 0, see quant.wgsl) raw rows of row_bytes; X [T_max, K] as
// vec4 of {{XT}} (GLU = 1 / 2: [T_max, 2K], x = silu / gelu(first half) * second half);
// Y [T_max, N] {{YT}}.
// Work split: a workgroup is RG row groups of TPR invocations; each group owns
// NR = 2 * PAIRS rows. Its TPR invocations walk the rows' "units" (UNIT
// consecutive elements: a block or a slice of one, see the udot_* functions) with
// stride TPR, so neighbouring invocations read neighbouring bytes of a row
// (coalesced); each udot_* call handles a pair of rows, so each x value loaded
// serves both, and UNROLL units are in flight per iteration. Then lane i of the
// group gets the sum of the TPR partial dots of row i: by subgroup shuffles where
// the device has them (matvec_shuffle_subgroup.wgsl), else through workgroup memory
// (one barrier; kept inline in main: as a function it was 30% slower for Q2_K on an
// H200, bench/RESULTS.md).
// Grid: x, y flatten the row groups, z = token; with TOKX (a batched decode pass: several
// sequences' rows) x = token and y, z the row groups, so the workgroups of all tokens for
// the same weight rows run together and share its reads through the cache. Each token's
// arithmetic is the same either way (a batched row equals the row decoded alone, bit for bit).
// With TB > 1 (types with a batched tile: Q6_K) a workgroup takes TB tokens of the batched
// pass and unpacks each weight unit once for all of them (matvec_tile_on.wgsl).
//
// NORM = 1: the product's RMSNorm is done here (xnorm_on.wgsl): each workgroup sums the squares
// of its token's f32 row first and keeps the normed row in workgroup memory, where xv reads it.
//
// Quants become floats with the 2^23 trick: bitcast<f32>(0x4b000000 | q) is
// exactly 2^23 + q for an integer q < 2^23, so one OR and one subtraction (also
// removing the type's zero point) replace an int-to-float conversion. The 5-, 3-
// and 2-bit types save the subtraction too (1 + q / 2^n, see `top`), and the
// super-block types interleave their lanes so that x reads coalesce (see below).
//!include step
//!include quant
//!include glu
//!include matvec_shuffle_{{SHUFFLE}}
//!include matvec_tile_{{TILE}}
//!include xnorm_{{NORMV}}

struct Params { K: u32, N: u32, row0: u32, rows: u32, row_bytes: u32, add: u32, eps: f32, _p1: u32 }

@group(0) @binding(1) var<storage, read> X: array<vec4<{{XT}}>>;
@group(0) @binding(2) var<storage, read_write> Y: array<{{YT}}>;
// P is read-only storage, not uniform: lavapipe recompiles (and leaks) a kernel per submission
// when a uniform bounds its loops (see UNIFORM in gpu/device.py).
@group(0) @binding(3) var<storage, read> P: Params;
@group(0) @binding(4) var<{{UNI}}> S: Step;

const TPR: u32 = {{TPR}};      // invocations per row group (16 or 32)
const PAIRS: u32 = {{PAIRS}};  // row pairs per row group (1 or 2)
const NR: u32 = 2u * PAIRS;    // rows per row group
const RG: u32 = {{RG}};        // row groups per workgroup
const UNROLL: u32 = {{UNROLL}};  // units per invocation per loop iteration (1, 2 or 4)
const UNIT: u32 = {{UNIT}};    // elements per unit of this weight type
const WG: u32 = TPR * RG;
const SHUFFLE: u32 = {{SHUFFLE_ON}};  // 1: row sums by subgroup shuffles
const TOKX: u32 = {{TOKX}};    // 1: the token is workgroup_id.x (see the grid above)
const TB: u32 = {{TB}};        // > 1: a batched tile of TB tokens per workgroup (matvec_tile_on.wgsl)

var<workgroup> red: array<f32, NR * WG>;   // partial sums [invocation][row of its group]

const MAGIC: u32 = 0x4b000000u;
const TWO23: f32 = 8388608.0;
const SH_LO = vec4<u32>(0u, 8u, 16u, 24u);
const SH_HI = vec4<u32>(4u, 12u, 20u, 28u);

const GLU: u32 = {{GLU}};      // 1 / 2: X rows are [gate (K) | up (K)] and x = silu / gelu(gate) * up
const NORM: u32 = {{NORM}};    // 1: X is the f32 residual stream, RMS-normed as it is loaded (xnorm_on.wgsl)

fn xv(i: u32) -> vec4<f32> {
    if (GLU != 0u) {
        let g = vec4<f32>(X[i]);
        return glu_act(g) * vec4<f32>(X[i + P.K / 4u]);
    }
    if (NORM != 0u) {
        return xnormed(i);
    }
    return vec4<f32>(X[i]);
}

// All loads of a unit are written out straight (no loops) so that they are all
// in flight before the arithmetic starts.

// 2^23 + the 4 nibbles (sh = SH_LO: low nibbles, SH_HI: high) / bytes (SH_LO, mask 0xff) of w.
fn mq(w: u32, sh: vec4<u32>, mask: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(((vec4<u32>(w) >> sh) & vec4<u32>(mask)) | vec4<u32>(MAGIC));
}

// The 4 words at word index i.
fn w4(i: u32) -> vec4<u32> {
    return vec4<u32>(W[i], W[i + 1u], W[i + 2u], W[i + 3u]);
}

// The 4 (little-endian) u32 at even byte offset q: funnel shifts of 5 words.
// ((hi << 1) << (31 - sh)) is hi << (32 - sh) without an out-of-range shift when sh == 0.
fn fun4(q: u32) -> vec4<u32> {
    let i = q >> 2u;
    let sh = vec4<u32>((q & 2u) * 8u);
    let w = w4(i);
    let nx = vec4<u32>(w.yzw, W[i + 4u]);
    return (w >> sh) | ((nx << vec4<u32>(1u)) << (vec4<u32>(31u) - sh));
}

fn hsum(v: vec4<f32>) -> f32 {
    return dot(v, vec4<f32>(1.0));
}

// Each udot_* returns, for rows at bytes ra and rb, sum_e W[row, e] * x[e] over
// unit u; xi = vec4 index of x[t, UNIT * u].

// F32, UNIT 8: 32 bytes per row.
fn udot_f32(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let x0 = xv(xi);
    let x1 = xv(xi + 1u);
    let a = (ra >> 2u) + u * 8u;
    let b = (rb >> 2u) + u * 8u;
    return vec2<f32>(dot(bitcast<vec4<f32>>(w4(a)), x0) + dot(bitcast<vec4<f32>>(w4(a + 4u)), x1),
                     dot(bitcast<vec4<f32>>(w4(b)), x0) + dot(bitcast<vec4<f32>>(w4(b + 4u)), x1));
}

// F16, UNIT 16: 32 bytes per row. (unpack2x16float: subnormal halves may flush
// to zero on some GPUs, a relative change below 1e-4 of one weight.)
fn h8dot(p: vec4<u32>, q: vec4<u32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) -> f32 {
    return dot(vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y)), x0)
         + dot(vec4<f32>(unpack2x16float(p.z), unpack2x16float(p.w)), x1)
         + dot(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), x2)
         + dot(vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)), x3);
}

fn udot_f16(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let a = (ra >> 2u) + u * 8u;
    let b = (rb >> 2u) + u * 8u;
    let pa = w4(a);
    let qa = w4(a + 4u);
    let pb = w4(b);
    let qb = w4(b + 4u);
    let x0 = xv(xi);
    let x1 = xv(xi + 1u);
    let x2 = xv(xi + 2u);
    let x3 = xv(xi + 3u);
    return vec2<f32>(h8dot(pa, qa, x0, x1, x2, x3), h8dot(pb, qb, x0, x1, x2, x3));
}

// Q8_0, UNIT 32 (one block): d f16 | qs[32] int8. Signed bytes: (b ^ 0x80) is b + 128.
fn q8w(w: u32, x: vec4<f32>) -> f32 {
    return dot(mq(w ^ 0x80808080u, SH_LO, 0xffu) - (TWO23 + 128.0), x);
}

fn q8dot(p: vec4<u32>, q: vec4<u32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
         x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) -> f32 {
    return q8w(p.x, x0) + q8w(p.y, x1) + q8w(p.z, x2) + q8w(p.w, x3)
         + q8w(q.x, x4) + q8w(q.y, x5) + q8w(q.z, x6) + q8w(q.w, x7);
}

fn udot_q8_0(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let ba = ra + u * 34u;
    let bb = rb + u * 34u;
    let pa = fun4(ba + 2u);
    let qa = fun4(ba + 18u);
    let pb = fun4(bb + 2u);
    let qb = fun4(bb + 18u);
    let da = whf(ba);
    let db = whf(bb);
    let x0 = xv(xi);
    let x1 = xv(xi + 1u);
    let x2 = xv(xi + 2u);
    let x3 = xv(xi + 3u);
    let x4 = xv(xi + 4u);
    let x5 = xv(xi + 5u);
    let x6 = xv(xi + 6u);
    let x7 = xv(xi + 7u);
    return vec2<f32>(da * q8dot(pa, qa, x0, x1, x2, x3, x4, x5, x6, x7),
                     db * q8dot(pb, qb, x0, x1, x2, x3, x4, x5, x6, x7));
}

// Q4_0 / Q4_1 quants, 4 words: word j holds elements 4j..4j+3 (low nibbles) and
// 16+4j.. (high). Returns sum (q - off) x.
fn q4w(w: u32, xa: vec4<f32>, xb: vec4<f32>, off: f32) -> f32 {
    return dot(mq(w & 0x0f0f0f0fu, SH_LO, 0xffu) - off, xa) + dot(mq((w >> 4u) & 0x0f0f0f0fu, SH_LO, 0xffu) - off, xb);
}

fn q4dot(q: vec4<u32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
         x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>, off: f32) -> f32 {
    return q4w(q.x, x0, x4, off) + q4w(q.y, x1, x5, off) + q4w(q.z, x2, x6, off) + q4w(q.w, x3, x7, off);
}

// Q4_0, UNIT 32, 18-byte blocks: d * sum (q - 8) x
fn udot_q4_0(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let ba = ra + u * 18u;
    let bb = rb + u * 18u;
    let qa = fun4(ba + 2u);
    let qb = fun4(bb + 2u);
    let da = whf(ba);
    let db = whf(bb);
    let x0 = xv(xi);
    let x1 = xv(xi + 1u);
    let x2 = xv(xi + 2u);
    let x3 = xv(xi + 3u);
    let x4 = xv(xi + 4u);
    let x5 = xv(xi + 5u);
    let x6 = xv(xi + 6u);
    let x7 = xv(xi + 7u);
    let off = TWO23 + 8.0;
    return vec2<f32>(da * q4dot(qa, x0, x1, x2, x3, x4, x5, x6, x7, off),
                     db * q4dot(qb, x0, x1, x2, x3, x4, x5, x6, x7, off));
}

// Q4_1, UNIT 32, 20-byte blocks (rows and quants word aligned): sum (d q + m) x = d sum q x + m sum x
fn udot_q4_1(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let ba = ra + u * 20u;
    let bb = rb + u * 20u;
    let qa = w4((ba + 4u) >> 2u);
    let qb = w4((bb + 4u) >> 2u);
    let dma = W[ba >> 2u];
    let dmb = W[bb >> 2u];
    let x0 = xv(xi);
    let x1 = xv(xi + 1u);
    let x2 = xv(xi + 2u);
    let x3 = xv(xi + 3u);
    let x4 = xv(xi + 4u);
    let x5 = xv(xi + 5u);
    let x6 = xv(xi + 6u);
    let x7 = xv(xi + 7u);
    let sx = hsum(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7);
    return vec2<f32>(half_f32(dma & 0xffffu) * q4dot(qa, x0, x1, x2, x3, x4, x5, x6, x7, TWO23) + half_f32(dma >> 16u) * sx,
                     half_f32(dmb & 0xffffu) * q4dot(qb, x0, x1, x2, x3, x4, x5, x6, x7, TWO23) + half_f32(dmb >> 16u) * sx);
}

// Sliced Q4_0 / Q4_1 (qtypes.py `sliced`; linear.MATVEC_SLICED), UNIT 8: unit u is quants word
// v = u % 4 of block u / 4, elements 4v .. 4v + 3 (low nibbles) and 16 + 4v .. (high), so the 4
// lanes of a block read its neighbouring bytes and neighbouring x (a lane per block reads 64
// bytes of x, 16 lines per x load across a subgroup). xi is x's vec4 index of element 8u, so the
// lane's x is at xi - v and xi - v + 4.
fn udot_q4_0s(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let v = u & 3u;
    let ba = ra + (u >> 2u) * 18u;
    let bb = rb + (u >> 2u) * 18u;
    let qa = wword(ba + 2u + 4u * v);
    let qb = wword(bb + 2u + 4u * v);
    let xa = xv(xi - v);
    let xb = xv(xi - v + 4u);
    let off = TWO23 + 8.0;
    return vec2<f32>(whf(ba) * q4w(qa, xa, xb, off), whf(bb) * q4w(qb, xa, xb, off));
}

fn udot_q4_1s(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let v = u & 3u;
    let ia = (ra + (u >> 2u) * 20u) >> 2u;
    let ib = (rb + (u >> 2u) * 20u) >> 2u;
    let qa = W[ia + 1u + v];
    let qb = W[ib + 1u + v];
    let dma = W[ia];
    let dmb = W[ib];
    let xa = xv(xi - v);
    let xb = xv(xi - v + 4u);
    let sx = hsum(xa + xb);
    return vec2<f32>(half_f32(dma & 0xffffu) * q4w(qa, xa, xb, TWO23) + half_f32(dma >> 16u) * sx,
                     half_f32(dmb & 0xffffu) * q4w(qb, xa, xb, TWO23) + half_f32(dmb >> 16u) * sx);
}

// Q4_K, UNIT 64: sub-blocks 2g (low nibbles) and 2g+1 (high nibbles) of
// qs[32g .. 32g+32); 144-byte super-blocks keep rows word aligned.
// Returns (sum q x over sub-block 2g, over 2g+1).
fn q4k_lo(w: u32) -> vec4<f32> {
    return mq(w & 0x0f0f0f0fu, SH_LO, 0xffu) - TWO23;
}

fn q4k_hi(w: u32) -> vec4<f32> {
    return mq((w >> 4u) & 0x0f0f0f0fu, SH_LO, 0xffu) - TWO23;
}

fn q4k_dots(p: vec4<u32>, q: vec4<u32>, xi: u32) -> vec2<f32> {
    let lo = dot(q4k_lo(p.x), xv(xi)) + dot(q4k_lo(p.y), xv(xi + 1u))
           + dot(q4k_lo(p.z), xv(xi + 2u)) + dot(q4k_lo(p.w), xv(xi + 3u))
           + dot(q4k_lo(q.x), xv(xi + 4u)) + dot(q4k_lo(q.y), xv(xi + 5u))
           + dot(q4k_lo(q.z), xv(xi + 6u)) + dot(q4k_lo(q.w), xv(xi + 7u));
    let hi = dot(q4k_hi(p.x), xv(xi + 8u)) + dot(q4k_hi(p.y), xv(xi + 9u))
           + dot(q4k_hi(p.z), xv(xi + 10u)) + dot(q4k_hi(p.w), xv(xi + 11u))
           + dot(q4k_hi(q.x), xv(xi + 12u)) + dot(q4k_hi(q.y), xv(xi + 13u))
           + dot(q4k_hi(q.z), xv(xi + 14u)) + dot(q4k_hi(q.w), xv(xi + 15u));
    return vec2<f32>(lo, hi);
}

// Scales and mins of sub-blocks 2g, 2g+1 from the 12 scale bytes (words s.x, s.y,
// s.z = bytes 0-3, 4-7, 8-11), branch free (see q4k_scale_min in quant.wgsl):
// sub-block j < 4: sc = b[j] & 63, mn = b[j+4] & 63; j >= 4, i = j - 4:
// sc = (b[8+i] & 15) | (b[i] >> 6) << 4, mn = (b[8+i] >> 4) | (b[4+i] >> 6) << 4.
fn q4k_finish(base: u32, g: u32, s: vec2<f32>, sx: vec2<f32>) -> f32 {
    let sw = w4((base + 4u) >> 2u).xyz;
    let sh = vec2<u32>(16u * (g & 1u), 16u * (g & 1u) + 8u);   // byte (2g or 2g+1) % 4, in bits
    let b0 = (vec2<u32>(sw.x) >> sh) & vec2<u32>(0xffu);
    let b1 = (vec2<u32>(sw.y) >> sh) & vec2<u32>(0xffu);
    let b2 = (vec2<u32>(sw.z) >> sh) & vec2<u32>(0xffu);
    let low = g < 2u;
    let sc = select((b2 & vec2<u32>(15u)) | ((b0 >> vec2<u32>(6u)) << vec2<u32>(4u)), b0 & vec2<u32>(63u), low);
    let mn = select((b2 >> vec2<u32>(4u)) | ((b1 >> vec2<u32>(6u)) << vec2<u32>(4u)), b1 & vec2<u32>(63u), low);
    let dm = W[base >> 2u];
    return half_f32(dm & 0xffffu) * dot(vec2<f32>(sc), s) - half_f32(dm >> 16u) * dot(vec2<f32>(mn), sx);
}

fn udot_q4_k(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let g = u & 3u;
    let ba = ra + (u >> 2u) * 144u;
    let bb = rb + (u >> 2u) * 144u;
    let ia = (ba + 16u + 32u * g) >> 2u;
    let ib = (bb + 16u + 32u * g) >> 2u;
    let pa = w4(ia);
    let qa = w4(ia + 4u);
    let pb = w4(ib);
    let qb = w4(ib + 4u);
    let sx = vec2<f32>(hsum(xv(xi) + xv(xi + 1u) + xv(xi + 2u) + xv(xi + 3u) + xv(xi + 4u) + xv(xi + 5u) + xv(xi + 6u) + xv(xi + 7u)),
                       hsum(xv(xi + 8u) + xv(xi + 9u) + xv(xi + 10u) + xv(xi + 11u) + xv(xi + 12u) + xv(xi + 13u) + xv(xi + 14u) + xv(xi + 15u)));
    return vec2<f32>(q4k_finish(ba, g, q4k_dots(pa, qa, xi), sx), q4k_finish(bb, g, q4k_dots(pb, qb, xi), sx));
}

// --- a type with a batched tile (qtypes.py `tile`, matvec_tile_on.wgsl): a unit is uw_* (one
// row's weights of unit u, read and unpacked) and wd_* (two rows' unpacked weights times one
// token's x), so that a tile of tokens unpacks each unit once and every token's arithmetic is
// the one-row kernel's: udot_*(ra, rb, u, xi) is wd_*(uw_*(ra, u), uw_*(rb, u), u, xi).
// (Built so for Q4_0, Q4_1, Q8_0 and Q4_K too, their tiles were slower on an H200 than a
// workgroup per token, bench/RESULTS.md; Q6_K's one-row kernel got 10% faster this way.)

// Q6_K, UNIT 64: with c4 = u % 4 = 2h + c, the unit is the 64 elements
// 128h + 32k + 16c + i (k = 0..3, i = 0..15): ql bytes A = 64h + 16c + i (k = 0 low
// nibble, k = 2 high), A + 32 (k = 1, 3), qh byte 32h + 16c + i (bits 2k), scale
// 8h + 2k + c. Whole words are unpacked at once (4 elements per byte lane):
// w[4j + k] = q - 32 of word j's lanes for k; sum = d sc . (sum over j of dots for k).
struct UK6 { w: array<vec4<f32>, 16>, sc: vec4<f32>, d: f32 }

fn q6_unpack(wa: u32, wb: u32, wc: u32) -> array<vec4<f32>, 4> {
    let z = TWO23 + 32.0;
    let q0 = (wa & 0x0f0f0f0fu) | ((wc & 0x03030303u) << 4u);
    let q1 = (wb & 0x0f0f0f0fu) | (((wc >> 2u) & 0x03030303u) << 4u);
    let q2 = ((wa >> 4u) & 0x0f0f0f0fu) | (((wc >> 4u) & 0x03030303u) << 4u);
    let q3 = ((wb >> 4u) & 0x0f0f0f0fu) | (((wc >> 6u) & 0x03030303u) << 4u);
    return array<vec4<f32>, 4>(mq(q0, SH_LO, 0xffu) - z, mq(q1, SH_LO, 0xffu) - z,
                               mq(q2, SH_LO, 0xffu) - z, mq(q3, SH_LO, 0xffu) - z);
}

fn uw_q6_k(r: u32, u: u32) -> UK6 {
    let c4 = u & 3u;
    let h = c4 >> 1u;
    let c = c4 & 1u;
    let base = r + (u >> 2u) * 210u;
    let a = fun4(base + 64u * h + 16u * c);
    let b = fun4(base + 64u * h + 16u * c + 32u);
    let hb = fun4(base + 128u + 32u * h + 16u * c);
    let sb = base + 192u + 8u * h + c;
    let sc = i8x4(wbyte(sb) | (wbyte(sb + 2u) << 8u) | (wbyte(sb + 4u) << 16u) | (wbyte(sb + 6u) << 24u));
    let w0 = q6_unpack(a.x, b.x, hb.x);
    let w1 = q6_unpack(a.y, b.y, hb.y);
    let w2 = q6_unpack(a.z, b.z, hb.z);
    let w3 = q6_unpack(a.w, b.w, hb.w);
    return UK6(array<vec4<f32>, 16>(w0[0], w0[1], w0[2], w0[3], w1[0], w1[1], w1[2], w1[3],
                                    w2[0], w2[1], w2[2], w2[3], w3[0], w3[1], w3[2], w3[3]),
               sc, whf(base + 208u));
}

// Word j's dots for k = 0..3 (its weights w0..w3, x of elements 128h + 32k + 16c + 4j ..).
fn q6d(w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>,
       x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(dot(w0, x0), dot(w1, x1), dot(w2, x2), dot(w3, x3));
}

// x[4k + j]: the x of word j for k.
fn q6_sum(a: UK6, x: array<vec4<f32>, 16>) -> f32 {
    let s = q6d(a.w[0], a.w[1], a.w[2], a.w[3], x[0], x[4], x[8], x[12])
          + q6d(a.w[4], a.w[5], a.w[6], a.w[7], x[1], x[5], x[9], x[13])
          + q6d(a.w[8], a.w[9], a.w[10], a.w[11], x[2], x[6], x[10], x[14])
          + q6d(a.w[12], a.w[13], a.w[14], a.w[15], x[3], x[7], x[11], x[15]);
    return a.d * dot(a.sc, s);
}

fn wd_q6_k(a: UK6, b: UK6, u: u32, xi: u32) -> vec2<f32> {
    let c4 = u & 3u;
    let xs = xi - 16u * c4 + 32u * (c4 >> 1u) + 4u * (c4 & 1u);   // x vec4 index of element 128h + 16c
    let x = array<vec4<f32>, 16>(xv(xs), xv(xs + 1u), xv(xs + 2u), xv(xs + 3u),
                                 xv(xs + 8u), xv(xs + 9u), xv(xs + 10u), xv(xs + 11u),
                                 xv(xs + 16u), xv(xs + 17u), xv(xs + 18u), xv(xs + 19u),
                                 xv(xs + 24u), xv(xs + 25u), xv(xs + 26u), xv(xs + 27u));
    return vec2<f32>(q6_sum(a, x), q6_sum(b, x));
}

fn udot_q6_k(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    return wd_q6_k(uw_q6_k(ra, u), uw_q6_k(rb, u), u, xi);
}

// BF16, UNIT 16: 32 bytes per row. Word i holds elements 2i (low half: << 16) and
// 2i + 1 (high half: masked), each the top 16 bits of an f32.
fn bf8dot(p: vec4<u32>, q: vec4<u32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) -> f32 {
    let m = vec4<u32>(0xffff0000u);
    let s = vec4<u32>(16u);
    return dot(bitcast<vec4<f32>>(p << s), vec4<f32>(x0.xz, x1.xz)) + dot(bitcast<vec4<f32>>(p & m), vec4<f32>(x0.yw, x1.yw))
         + dot(bitcast<vec4<f32>>(q << s), vec4<f32>(x2.xz, x3.xz)) + dot(bitcast<vec4<f32>>(q & m), vec4<f32>(x2.yw, x3.yw));
}

fn udot_bf16(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let a = (ra >> 2u) + u * 8u;
    let b = (rb >> 2u) + u * 8u;
    let pa = w4(a);
    let qa = w4(a + 4u);
    let pb = w4(b);
    let qb = w4(b + 4u);
    let x0 = xv(xi);
    let x1 = xv(xi + 1u);
    let x2 = xv(xi + 2u);
    let x3 = xv(xi + 3u);
    return vec2<f32>(bf8dot(pa, qa, x0, x1, x2, x3), bf8dot(pb, qb, x0, x1, x2, x3));
}

// --- the 5-, 3- and 2-bit types: quants as 1 + q / 2^n ---
// top(w, l, r, m) moves the n-bit field at bit b of each byte lane j of w (bits
// 8j + b ..) to the top n bits of the mantissa of 1.0 (mask m): exactly 1 + q / 2^n,
// with one shift and one and-or per element and no subtraction (l, r: each lane's
// left or right shift, constants at every call). A dot of such values with x is
// X + S / 2^n (S = sum q x, X = sum x over the same elements, computed once for both
// rows), so S = 2^n (dot - X): the products are exact, and the subtraction costs a
// few bits of f32 (|X| and |S| / 2^n are of a size), not the 23 of 2^23 + q.
const ONE: u32 = 0x3f800000u;

fn top(w: u32, l: vec4<u32>, r: vec4<u32>, m: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>((((vec4<u32>(w) << l) >> r) & vec4<u32>(m)) | vec4<u32>(ONE));
}

const M5: u32 = 0x007c0000u;   // 5 bits at bit 0 of each byte -> mantissa bits 18..22
const L5 = vec4<u32>(18u, 10u, 2u, 0u);
const R5 = vec4<u32>(0u, 0u, 0u, 6u);
const M2: u32 = 0x00600000u;   // 2 bits at bit 2s -> 21..22
const L20 = vec4<u32>(21u, 13u, 5u, 0u);
const R20 = vec4<u32>(0u, 0u, 0u, 3u);
const L22 = vec4<u32>(19u, 11u, 3u, 0u);
const R22 = vec4<u32>(0u, 0u, 0u, 5u);
const L24 = vec4<u32>(17u, 9u, 1u, 0u);
const R24 = vec4<u32>(0u, 0u, 0u, 7u);
const L26 = vec4<u32>(15u, 7u, 0u, 0u);
const R26 = vec4<u32>(0u, 0u, 1u, 9u);

// Small integers (< 2^23) to f32 with the 2^23 trick: an or and a subtraction, not a
// conversion instruction (a quarter-rate op on some GPUs).
fn i2f(v: vec4<u32>) -> vec4<f32> {
    return bitcast<vec4<f32>>(v | vec4<u32>(MAGIC)) - TWO23;
}

// Bits of a where k is 0, of b where k is 1 (one and-or: the quants' low bits from a,
// a high bit from b; top ignores the bits above the field).
fn merge(a: u32, b: u32, k: u32) -> u32 {
    return (a & ~k) | (b & k);
}

// Q5_0 / Q5_1: qs words q (nibbles as Q4_0) and qh (bit e: bit 4 of element e). The
// 4 high bits of a word's byte lanes go to bit 4 of each lane with one multiply:
// (h & 15) * 0x02040810 puts copies of the nibble at bits 4, 11, 18, 25 (no overlap,
// no carries), so bit 4 + 8j is bit j of h.
fn q5w(w: u32, h: u32, xa: vec4<f32>, xb: vec4<f32>) -> f32 {
    let k = 0x10101010u;
    return dot(top(merge(w, (h & 15u) * 0x02040810u, k), L5, R5, M5), xa)
         + dot(top(merge(w >> 4u, ((h >> 16u) & 15u) * 0x02040810u, k), L5, R5, M5), xb);
}

// sum (1 + q / 32) x over a block; word j: elements 4j.. (low nibbles, high bits
// bits 4j.. of qh) and 16 + 4j.. (high nibbles, bits 16 + 4j..).
fn q5dot(q: vec4<u32>, h: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
         x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) -> f32 {
    return q5w(q.x, h, x0, x4) + q5w(q.y, h >> 4u, x1, x5) + q5w(q.z, h >> 8u, x2, x6) + q5w(q.w, h >> 12u, x3, x7);
}

// Q5_0's qh and qs[16]: the 5 u32 at even byte offset q .. q + 16, funnel shifts of 6 words.
struct Q5W { h: u32, q: vec4<u32> }

fn q5_0_words(q: u32) -> Q5W {
    let i = q >> 2u;
    let sh = (q & 2u) * 8u;
    let w = w4(i);
    let e = vec2<u32>(W[i + 4u], W[i + 5u]);
    let s = vec4<u32>(sh);
    let f = (w >> s) | ((vec4<u32>(w.yzw, e.x) << vec4<u32>(1u)) << (vec4<u32>(31u) - s));
    return Q5W(f.x, vec4<u32>(f.yzw, (e.x >> sh) | ((e.y << 1u) << (31u - sh))));
}

// Q5_0, UNIT 32, 22-byte blocks (d f16 | qh | qs):
// d sum (q - 16) x = d (32 (dot - X) - 16 X)
fn udot_q5_0(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let ba = ra + u * 22u;
    let bb = rb + u * 22u;
    let a = q5_0_words(ba + 2u);
    let b = q5_0_words(bb + 2u);
    let da = whf(ba);
    let db = whf(bb);
    let x0 = xv(xi);
    let x1 = xv(xi + 1u);
    let x2 = xv(xi + 2u);
    let x3 = xv(xi + 3u);
    let x4 = xv(xi + 4u);
    let x5 = xv(xi + 5u);
    let x6 = xv(xi + 6u);
    let x7 = xv(xi + 7u);
    let sx = hsum(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7);
    let sa = q5dot(a.q, a.h, x0, x1, x2, x3, x4, x5, x6, x7) - sx;
    let sb = q5dot(b.q, b.h, x0, x1, x2, x3, x4, x5, x6, x7) - sx;
    return vec2<f32>(da * (32.0 * sa - 16.0 * sx), db * (32.0 * sb - 16.0 * sx));
}

// Q5_1, UNIT 32, 24-byte blocks (d f16 | m f16 | qh | qs; rows word aligned):
// sum (d q + m) x = d 32 (dot - X) + m X
fn udot_q5_1(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let ia = (ra + u * 24u) >> 2u;
    let ib = (rb + u * 24u) >> 2u;
    let dma = W[ia];
    let ha = W[ia + 1u];
    let qa = w4(ia + 2u);
    let dmb = W[ib];
    let hb = W[ib + 1u];
    let qb = w4(ib + 2u);
    let x0 = xv(xi);
    let x1 = xv(xi + 1u);
    let x2 = xv(xi + 2u);
    let x3 = xv(xi + 3u);
    let x4 = xv(xi + 4u);
    let x5 = xv(xi + 5u);
    let x6 = xv(xi + 6u);
    let x7 = xv(xi + 7u);
    let sx = hsum(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7);
    let sa = q5dot(qa, ha, x0, x1, x2, x3, x4, x5, x6, x7) - sx;
    let sb = q5dot(qb, hb, x0, x1, x2, x3, x4, x5, x6, x7) - sx;
    return vec2<f32>(32.0 * half_f32(dma & 0xffffu) * sa + half_f32(dma >> 16u) * sx,
                     32.0 * half_f32(dmb & 0xffffu) * sb + half_f32(dmb >> 16u) * sx);
}

// IQ4_NL / IQ4_XS: a nibble indexes the IQ4 table (quant.wgsl), copied to workgroup
// memory before the loop (KVT below): 16 words in 16 banks, so lookups never conflict.
var<workgroup> kvt: array<f32, 16>;

// Table values of the low nibbles of the 4 bytes of w.
fn kv4(w: u32) -> vec4<f32> {
    return vec4<f32>(kvt[w & 15u], kvt[(w >> 8u) & 15u], kvt[(w >> 16u) & 15u], kvt[(w >> 24u) & 15u]);
}

// 4 words of nibbles as Q4_0 (word j: elements 4j.. low nibbles, 16 + 4j.. high): sum table[q] x
fn iq4dot(q: vec4<u32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
          x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) -> f32 {
    return dot(kv4(q.x), x0) + dot(kv4(q.x >> 4u), x4) + dot(kv4(q.y), x1) + dot(kv4(q.y >> 4u), x5)
         + dot(kv4(q.z), x2) + dot(kv4(q.z >> 4u), x6) + dot(kv4(q.w), x3) + dot(kv4(q.w >> 4u), x7);
}

// IQ4_NL, UNIT 32, 18-byte blocks (d f16 | qs): d * sum table[q] x
fn udot_iq4_nl(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let ba = ra + u * 18u;
    let bb = rb + u * 18u;
    let qa = fun4(ba + 2u);
    let qb = fun4(bb + 2u);
    let da = whf(ba);
    let db = whf(bb);
    let x0 = xv(xi);
    let x1 = xv(xi + 1u);
    let x2 = xv(xi + 2u);
    let x3 = xv(xi + 3u);
    let x4 = xv(xi + 4u);
    let x5 = xv(xi + 5u);
    let x6 = xv(xi + 6u);
    let x7 = xv(xi + 7u);
    return vec2<f32>(da * iq4dot(qa, x0, x1, x2, x3, x4, x5, x6, x7), db * iq4dot(qb, x0, x1, x2, x3, x4, x5, x6, x7));
}

// --- super-block types, UNIT 64, interleaved: lane v = u % 4 of a 256-element
// super-block takes 8 elements (IQ4_XS: 4 + 4) of each of its 8 runs of 32, so the 4
// lanes of a super-block read neighbouring x (4 lanes per 128-byte line of x, not 1:
// measured 1.3x faster than 64 consecutive elements per lane). xs = x vec4 index of
// super-block element 8v; run m's x is at xs + 8m, xs + 8m + 1.

// The 2 u32 at even byte offset q (funnel shifts of 3 words).
fn fun2(q: u32) -> vec2<u32> {
    let i = q >> 2u;
    let sh = vec2<u32>((q & 2u) * 8u);
    let w = vec2<u32>(W[i], W[i + 1u]);
    let nx = vec2<u32>(w.y, W[i + 2u]);
    return (w >> sh) | ((nx << vec2<u32>(1u)) << (vec2<u32>(31u) - sh));
}

fn xsum2(xs: u32) -> f32 {
    return hsum(xv(xs) + xv(xs + 1u));
}

// X of the 8 runs of lane v (both rows use them).
struct X8 { a: vec4<f32>, b: vec4<f32> }

fn xsum8(xs: u32) -> X8 {
    return X8(vec4<f32>(xsum2(xs), xsum2(xs + 8u), xsum2(xs + 16u), xsum2(xs + 24u)),
              vec4<f32>(xsum2(xs + 32u), xsum2(xs + 40u), xsum2(xs + 48u), xsum2(xs + 56u)));
}

// One run of 8 elements (byte lanes of a: elements 0..3, of b: 4..7): sum (1 + q / 2^n) x.
fn trun(a: u32, b: u32, l: vec4<u32>, r: vec4<u32>, m: u32, xs: u32) -> f32 {
    return dot(top(a, l, r, m), xv(xs)) + dot(top(b, l, r, m), xv(xs + 1u));
}

// Q2_K, 84-byte super-blocks (scales[16] | qs[64] | d f16 | dmin f16; rows word
// aligned). Run m = 4g + s of lane v: elements 128g + 32s + 8v + c (c = 0..7), bits
// 2s of qs bytes 32g + 8v + c (words 4 + 8g + 2v, +1); scale byte 2m + v / 2 (low
// nibble scale, high nibble min).  sum_m d sc_m 4 (dot_m - X_m) - dmin mn_m X_m
fn q2_row(i: u32, v: u32, xs: u32, x: X8) -> f32 {
    let a = vec2<u32>(W[i + 4u + 2u * v], W[i + 5u + 2u * v]);
    let b = vec2<u32>(W[i + 12u + 2u * v], W[i + 13u + 2u * v]);
    let sw = w4(i);
    let dm = W[i + 20u];
    let o = 8u * (v >> 1u);
    let so = vec4<u32>(o, o + 16u, o, o + 16u);
    let b0 = (vec4<u32>(sw.xx, sw.yy) >> so) & vec4<u32>(0xffu);
    let b1 = (vec4<u32>(sw.zz, sw.ww) >> so) & vec4<u32>(0xffu);
    let s0 = vec4<f32>(trun(a.x, a.y, L20, R20, M2, xs), trun(a.x, a.y, L22, R22, M2, xs + 8u),
                       trun(a.x, a.y, L24, R24, M2, xs + 16u), trun(a.x, a.y, L26, R26, M2, xs + 24u)) - x.a;
    let s1 = vec4<f32>(trun(b.x, b.y, L20, R20, M2, xs + 32u), trun(b.x, b.y, L22, R22, M2, xs + 40u),
                       trun(b.x, b.y, L24, R24, M2, xs + 48u), trun(b.x, b.y, L26, R26, M2, xs + 56u)) - x.b;
    let f = vec4<u32>(15u);
    let n = vec4<u32>(4u);
    let dd = unpack2x16float(dm);   // d, dmin (subnormals may flush, as in udot_f16)
    return 4.0 * dd.x * (dot(i2f(b0 & f), s0) + dot(i2f(b1 & f), s1)) - dd.y * (dot(i2f(b0 >> n), x.a) + dot(i2f(b1 >> n), x.b));
}

fn udot_q2_k(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let v = u & 3u;
    let xs = xi - 14u * v;
    let x = xsum8(xs);
    let ia = (ra + (u >> 2u) * 84u) >> 2u;
    let ib = (rb + (u >> 2u) * 84u) >> 2u;
    return vec2<f32>(q2_row(ia, v, xs, x), q2_row(ib, v, xs, x));
}

// Exact unpacking (Q3_K): (w & m) | MAGIC is the float 2^23 + n, n < 2^23 the masked
// bits read as an integer, so (2^23 + n) f - 2^23 f + z with f = 2^-p (p: the field's
// lowest bit) is the field's value plus z, exactly (an exact product, then the sum of two
// integers below 2^24): one and-or per element on the integer pipe and a multiply-add on
// the float pipe, where `top` takes two integer ops, and the quant's zero point (z) and
// 8 (dot - X) - 4 X come for free. Fields are read where they sit; only those reaching
// above bit 22 need a shift (one per word). Measured on an H200: Q3_K 1-2% faster than with
// `top` at the same tiling; the same for Q2_K was 3% slower (bench/RESULTS.md).
fn ex(w: vec4<u32>, m: vec4<u32>, f: vec4<f32>, z: vec4<f32>) -> vec4<f32> {
    return bitcast<vec4<f32>>((w & m) | vec4<u32>(MAGIC)) * f + (z - TWO23 * f);
}

// 2^-p of 3-bit fields at bit 8c of byte lanes c = 0..3 (lane 3 read from w >> 16).
const F8 = vec4<f32>(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0 / 256.0);

// Q3_K, 110-byte super-blocks (hmask[32] | qs[64] | scales[12] | d f16; a block may
// start at 2 mod 4, so every field is read with funnel shifts). Run m = 4g + s of lane
// v: elements 128g + 32s + 8v + c, q = bits 2s.. of qs bytes 32g + 8v + c | bit 4g + s
// of hmask bytes 8v + c << 2, x = q - 4. Scale 8g + 2s + v / 2 (6 bits, minus 32): low
// nibble g of scales[2s + v / 2] (the same 4 bytes for g = 0, 1), high bits
// 2 (2g + s / 2) of scales[8 + 2 (s % 2) + v / 2].
// q - 4 of the 3-bit fields at bit 8c of the byte lanes of m (see ex).
fn q3_quants(m: u32) -> vec4<f32> {
    return ex(vec4<u32>(m, m, m, m >> 16u), vec4<u32>(7u, 0x700u, 0x70000u, 0x700u), F8, vec4<f32>(-4.0));
}

// Runs 4g .. 4g + 3: sum (q - 4) x; hm = hmask words << 2 >> 4g (bit s + 2 of each byte
// lane: bit 4g + s of hmask), merged at bit 2 of the quants' low bits.
fn q3_g(ql: vec2<u32>, hm: vec2<u32>, xs: u32) -> vec4<f32> {
    let k = 0x04040404u;
    return vec4<f32>(dot(q3_quants(merge(ql.x, hm.x, k)), xv(xs)) + dot(q3_quants(merge(ql.y, hm.y, k)), xv(xs + 1u)),
                     dot(q3_quants(merge(ql.x >> 2u, hm.x >> 1u, k)), xv(xs + 8u))
                   + dot(q3_quants(merge(ql.y >> 2u, hm.y >> 1u, k)), xv(xs + 9u)),
                     dot(q3_quants(merge(ql.x >> 4u, hm.x >> 2u, k)), xv(xs + 16u))
                   + dot(q3_quants(merge(ql.y >> 4u, hm.y >> 2u, k)), xv(xs + 17u)),
                     dot(q3_quants(merge(ql.x >> 6u, hm.x >> 3u, k)), xv(xs + 24u))
                   + dot(q3_quants(merge(ql.y >> 6u, hm.y >> 3u, k)), xv(xs + 25u)));
}

fn q3_row(base: u32, v: u32, xs: u32) -> f32 {
    let qa = fun2(base + 32u + 8u * v);
    let qb = fun2(base + 64u + 8u * v);
    let hm = fun2(base + 8u * v);
    let j = (base + 96u) >> 2u;
    let sh = (base & 2u) * 8u;
    let w = w4(j);
    let sw = (w.xyz >> vec3<u32>(sh)) | ((w.yzw << vec3<u32>(1u)) << (vec3<u32>(31u) - vec3<u32>(sh)));
    let d = unpack2x16float(w.w >> sh).x;   // (subnormals may flush, as in udot_f16)
    let o = 8u * (v >> 1u);
    let so = vec4<u32>(o, o + 16u, o, o + 16u);
    let bl = (vec4<u32>(sw.xx, sw.yy) >> so) & vec4<u32>(0xffu);
    let bh = vec4<u32>(sw.z) >> so;
    let h0 = (bh >> vec4<u32>(0u, 0u, 2u, 2u)) & vec4<u32>(3u);
    let h1 = (bh >> vec4<u32>(4u, 4u, 6u, 6u)) & vec4<u32>(3u);
    let sc0 = i2f((bl & vec4<u32>(15u)) | (h0 << vec4<u32>(4u))) - 32.0;
    let sc1 = i2f((bl >> vec4<u32>(4u)) | (h1 << vec4<u32>(4u))) - 32.0;
    return d * (dot(sc0, q3_g(qa, hm << vec2<u32>(2u), xs)) + dot(sc1, q3_g(qb, hm >> vec2<u32>(2u), xs + 32u)));
}

fn udot_q3_k(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let v = u & 3u;
    let xs = xi - 14u * v;
    return vec2<f32>(q3_row(ra + (u >> 2u) * 110u, v, xs), q3_row(rb + (u >> 2u) * 110u, v, xs));
}

// Q5_K, 176-byte super-blocks (d | dmin | scales[12] | qh[32] | qs[128]; rows word
// aligned). Sub-block s of lane v: elements 32s + 8v + c, low 4 bits nibble s % 2 of qs
// bytes 32 (s / 2) + 8v + c (words 12 + 8 (s / 2) + 2v, +1), bit 4 = bit s of qh bytes
// 8v + c (words 4 + 2v, +1); all 8 scales and mins (Q4_K's packing, see q4k_scale_min).
// Sub-blocks 2p, 2p + 1 from qs words a, h = qh words >> 2p: (dot - X) = S / 32.
fn q5k_pair(a: vec2<u32>, h: vec2<u32>, xs: u32, x: vec2<f32>) -> vec2<f32> {
    let k = 0x10101010u;
    return vec2<f32>(trun(merge(a.x, h.x << 4u, k), merge(a.y, h.y << 4u, k), L5, R5, M5, xs),
                     trun(merge(a.x >> 4u, h.x << 3u, k), merge(a.y >> 4u, h.y << 3u, k), L5, R5, M5, xs + 8u)) - x;
}

fn q5k_row(i: u32, v: u32, xs: u32, x: X8) -> f32 {
    let dm = W[i];
    let sw = vec3<u32>(W[i + 1u], W[i + 2u], W[i + 3u]);
    let h = vec2<u32>(W[i + 4u + 2u * v], W[i + 5u + 2u * v]);
    let a0 = vec2<u32>(W[i + 12u + 2u * v], W[i + 13u + 2u * v]);
    let a1 = vec2<u32>(W[i + 20u + 2u * v], W[i + 21u + 2u * v]);
    let a2 = vec2<u32>(W[i + 28u + 2u * v], W[i + 29u + 2u * v]);
    let a3 = vec2<u32>(W[i + 36u + 2u * v], W[i + 37u + 2u * v]);
    let s0 = vec4<f32>(q5k_pair(a0, h, xs, x.a.xy), q5k_pair(a1, h >> vec2<u32>(2u), xs + 16u, x.a.zw));
    let s1 = vec4<f32>(q5k_pair(a2, h >> vec2<u32>(4u), xs + 32u, x.b.xy), q5k_pair(a3, h >> vec2<u32>(6u), xs + 48u, x.b.zw));
    let b0 = bytes4(sw.x);
    let b1 = bytes4(sw.y);
    let b2 = bytes4(sw.z);
    let c = vec4<u32>(63u);
    let sc1 = (b2 & vec4<u32>(15u)) | ((b0 >> vec4<u32>(6u)) << vec4<u32>(4u));
    let mn1 = (b2 >> vec4<u32>(4u)) | ((b1 >> vec4<u32>(6u)) << vec4<u32>(4u));
    return 32.0 * half_f32(dm & 0xffffu) * (dot(vec4<f32>(b0 & c), s0) + dot(vec4<f32>(sc1), s1))
         - half_f32(dm >> 16u) * (dot(vec4<f32>(b1 & c), x.a) + dot(vec4<f32>(mn1), x.b));
}

fn udot_q5_k(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let v = u & 3u;
    let xs = xi - 14u * v;
    let x = xsum8(xs);
    let ia = (ra + (u >> 2u) * 176u) >> 2u;
    let ib = (rb + (u >> 2u) * 176u) >> 2u;
    return vec2<f32>(q5k_row(ia, v, xs, x), q5k_row(ib, v, xs, x));
}

// IQ4_XS, 136-byte super-blocks (d f16 | scales_h u16 | scales_l[4] | qs[128]; rows
// word aligned). Sub-block j (an IQ4_NL block's nibbles in qs[16j .. 16j + 16), scale
// ((scales_l >> 4j) & 15 | ((scales_h >> 2j) & 3) << 4) - 32): lane v takes the nibbles
// of qs word 4j + v, elements 32j + 4v .. (low) and 32j + 16 + 4v .. (high).
fn iq4xs_row(i: u32, v: u32, xs: u32) -> f32 {
    let h = vec2<u32>(W[i], W[i + 1u]);
    let p = vec4<u32>(W[i + 2u + v], W[i + 6u + v], W[i + 10u + v], W[i + 14u + v]);
    let q = vec4<u32>(W[i + 18u + v], W[i + 22u + v], W[i + 26u + v], W[i + 30u + v]);
    let s0 = vec4<f32>(dot(kv4(p.x), xv(xs)) + dot(kv4(p.x >> 4u), xv(xs + 4u)),
                       dot(kv4(p.y), xv(xs + 8u)) + dot(kv4(p.y >> 4u), xv(xs + 12u)),
                       dot(kv4(p.z), xv(xs + 16u)) + dot(kv4(p.z >> 4u), xv(xs + 20u)),
                       dot(kv4(p.w), xv(xs + 24u)) + dot(kv4(p.w >> 4u), xv(xs + 28u)));
    let s1 = vec4<f32>(dot(kv4(q.x), xv(xs + 32u)) + dot(kv4(q.x >> 4u), xv(xs + 36u)),
                       dot(kv4(q.y), xv(xs + 40u)) + dot(kv4(q.y >> 4u), xv(xs + 44u)),
                       dot(kv4(q.z), xv(xs + 48u)) + dot(kv4(q.z >> 4u), xv(xs + 52u)),
                       dot(kv4(q.w), xv(xs + 56u)) + dot(kv4(q.w >> 4u), xv(xs + 60u)));
    let f = vec4<u32>(15u);
    let t = vec4<u32>(3u);
    let hh = h.x >> 16u;
    let sc0 = vec4<i32>(((vec4<u32>(h.y) >> vec4<u32>(0u, 4u, 8u, 12u)) & f) | (((vec4<u32>(hh) >> vec4<u32>(0u, 2u, 4u, 6u)) & t) << vec4<u32>(4u)));
    let sc1 = vec4<i32>(((vec4<u32>(h.y) >> vec4<u32>(16u, 20u, 24u, 28u)) & f) | (((vec4<u32>(hh) >> vec4<u32>(8u, 10u, 12u, 14u)) & t) << vec4<u32>(4u)));
    let z = vec4<i32>(32);
    return half_f32(h.x & 0xffffu) * (dot(vec4<f32>(sc0 - z), s0) + dot(vec4<f32>(sc1 - z), s1));
}

fn udot_iq4_xs(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let v = u & 3u;
    let xs = xi - 15u * v;
    let ia = (ra + (u >> 2u) * 136u) >> 2u;
    let ib = (rb + (u >> 2u) * 136u) >> 2u;
    return vec2<f32>(iq4xs_row(ia, v, xs), iq4xs_row(ib, v, xs));
}

// 1: this type's udot reads kvt, which main fills first (one barrier).
const KVT_f32 = 0u;
const KVT_f16 = 0u;
const KVT_bf16 = 0u;
const KVT_q8_0 = 0u;
const KVT_q4_0 = 0u;
const KVT_q4_1 = 0u;
const KVT_q4_0s = 0u;
const KVT_q4_1s = 0u;
const KVT_q5_0 = 0u;
const KVT_q5_1 = 0u;
const KVT_iq4_nl = 1u;
const KVT_q2_k = 0u;
const KVT_q3_k = 0u;
const KVT_q4_k = 0u;
const KVT_q5_k = 0u;
const KVT_q6_k = 0u;
const KVT_iq4_xs = 1u;
const KVT: u32 = KVT_{{UDOT}};

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    if (KVT == 1u) {
        if (lid < 16u) { kvt[lid] = iq4_value(lid); }
        workgroupBarrier();
    }
    if (TB > 1u) {
        tile_main(wid, nwg, lid);
        return;
    }
    let t = select(wid.z, wid.x, TOKX == 1u);
    if (t >= S.T) { return; }  // uniform per workgroup
    let r = lid / TPR;
    let l = lid % TPR;
    let g = select(wid.x + wid.y * nwg.x, wid.y + wid.z * nwg.y, TOKX == 1u);
    let n0 = (g * RG + r) * NR;
    if (NORM != 0u) { norm_row(t * (P.K / 4u), lid); }
    var acc = vec4<f32>(0.0);   // rows n0 .. n0 + 3 (the last two only when PAIRS == 2)
    if (n0 < P.rows) {
        let last = P.rows - 1u;   // rows past the chunk read a valid row, never written
        let r0 = n0 * P.row_bytes;
        let r1 = min(n0 + 1u, last) * P.row_bytes;
        let r2 = min(n0 + 2u, last) * P.row_bytes;
        let r3 = min(n0 + 3u, last) * P.row_bytes;
        let xi = t * (P.K / 4u) * select(1u, 2u, GLU != 0u);
        let units = P.K / UNIT;
        for (var u = l; u < units; u += TPR * UNROLL) {
            // Units u, u + TPR, ... in one iteration, branch free so that all their loads are
            // in flight together: one past the row's end reads unit u again and counts 0.
            for (var j = 0u; j < UNROLL; j++) {
                let uj = u + j * TPR;
                let ok = uj < units;
                let uc = select(u, uj, ok);
                let xu = xi + uc * (UNIT / 4u);
                var d = vec4<f32>(udot_{{UDOT}}(r0, r1, uc, xu), 0.0, 0.0);
                if (PAIRS == 2u) { d += vec4<f32>(0.0, 0.0, udot_{{UDOT}}(r2, r3, uc, xu)); }
                acc += select(vec4<f32>(0.0), d, ok);
            }
        }
    }
    let n = n0 + l;
    let live = l < NR && n < P.rows;
    var v = 0.0;
    if (SHUFFLE == 1u) {
        v = shuffle_sums(acc, l);
    } else {
        for (var i = 0u; i < NR; i++) {
            red[NR * lid + i] = acc[i];
        }
        workgroupBarrier();
        if (live) {
            for (var i = 0u; i < TPR; i++) {
                v += red[NR * (r * TPR + i) + l];
            }
        }
    }
    if (live) {
        let o = t * P.N + P.row0 + n;
        var y = v;
        if (P.add != 0u) { y += f32(Y[o]); }
        Y[o] = {{YT}}(y);
    }
}
