// GGUF weights in their raw ggml block layout, read from an array<u32>.
//
// A kernel that includes this file binds the weight bytes at binding 0 as `W`
// and sets {{QT}} to the kernel suffix of a type in kernels/qtypes.py (f32 f16
// bf16 q8_0 q4_0 q4_1 q5_0 q5_1 iq4_nl q2_k q3_k q4_k q5_k q6_k iq4_xs). A weight
// matrix is rows of `row_bytes` bytes laid end to end (row n starts at byte
// n*row_bytes); blocks are NOT 4-byte aligned in general (18, 22, 34, 110,
// 210-byte blocks), but every block size is even, so every f16 field sits at an
// even byte offset and never straddles a word, and every multi-byte field is read
// with wword / whalf, which take any even offset. Everything here works without
// the shader-f16 feature.
//
// dq8(rb, k) dequantizes the 8 consecutive elements k..k+7 (k % 8 == 0) of the
// row starting at byte rb. It reproduces gguf.quants.dequantize bit for bit:
// f16 fields are decoded exactly (subnormals too, see half_f32), and in every
// type each product of the formula is EXACT in f32 (an f16 has 11 significant
// bits, a 2..8-bit quant or 4/6-bit scale at most 8, an IQ4 table value 7, and
// 11+8+6 < 24), so the only rounding is the final add/subtract of Q4_1 / Q5_1 /
// Q2_K / Q4_K / Q5_K: a fused multiply-add and a separate multiply+add give the
// same bits, and so does any reassociation of the products. The formulas below
// still follow the numpy order literally.

@group(0) @binding(0) var<storage, read> W: array<u32>;

// --- raw reads (b: byte offset into W) ----------------------------------------

fn wbyte(b: u32) -> u32 {
    return (W[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
}

// The u16 at even byte offset b.
fn whalf(b: u32) -> u32 {
    return (W[b >> 2u] >> ((b & 2u) * 8u)) & 0xffffu;
}

// The u32 (little endian) at even byte offset b: a funnel shift of two words.
// ((hi << 1) << (31 - sh)) is hi << (32 - sh) without an out-of-range shift when sh == 0.
fn wword(b: u32) -> u32 {
    let i = b >> 2u;
    let sh = (b & 2u) * 8u;
    return (W[i] >> sh) | ((W[i + 1u] << 1u) << (31u - sh));
}

// IEEE binary16 bits -> f32, exactly (no reliance on denormal support:
// a subnormal half is m * 2^-24, a normal f32).
fn half_f32(h: u32) -> f32 {
    let mag = h & 0x7fffu;
    let normal = bitcast<f32>((mag << 13u) + 0x38000000u);   // exponent rebias 15 -> 127
    let sub = f32(mag) * 5.9604644775390625e-8;               // mag < 0x400: mantissa * 2^-24
    var v = select(normal, sub, mag < 0x400u);
    v = select(v, bitcast<f32>(0x7f800000u | (mag << 13u)), mag >= 0x7c00u);  // inf / nan
    return select(v, -v, (h & 0x8000u) != 0u);
}

fn whf(b: u32) -> f32 {
    return half_f32(whalf(b));
}

// --- unpacking a word -----------------------------------------------------------

fn bytes4(w: u32) -> vec4<u32> {
    return vec4<u32>(w & 0xffu, (w >> 8u) & 0xffu, (w >> 16u) & 0xffu, w >> 24u);
}

// Low nibbles of the 4 bytes of w (after shifting w right by sh: 0 or 4 picks the nibble).
fn nibs4(w: u32, sh: u32) -> vec4<u32> {
    return bytes4((w >> sh) & 0x0f0f0f0fu);
}

// The 4 bytes of w as signed int8, in f32.
fn i8x4(w: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(bitcast<i32>(w << 24u), bitcast<i32>(w << 16u),
                               bitcast<i32>(w << 8u), bitcast<i32>(w)) >> vec4<u32>(24u));
}

struct D8 { a: vec4<f32>, b: vec4<f32> }   // elements k..k+3, k+4..k+7

// --- per-type dequantization of 8 elements --------------------------------------

// F32: row = K little-endian f32 (rows 4-byte aligned).
fn dq8_f32(rb: u32, k: u32) -> D8 {
    let i = (rb >> 2u) + k;
    return D8(bitcast<vec4<f32>>(vec4<u32>(W[i], W[i + 1u], W[i + 2u], W[i + 3u])),
              bitcast<vec4<f32>>(vec4<u32>(W[i + 4u], W[i + 5u], W[i + 6u], W[i + 7u])));
}

fn halves2(w: u32) -> vec2<f32> {
    return vec2<f32>(half_f32(w & 0xffffu), half_f32(w >> 16u));
}

// F16: row = K f16 (2K bytes; K % 32 == 0 keeps rows word aligned).
fn dq8_f16(rb: u32, k: u32) -> D8 {
    let i = (rb >> 2u) + (k >> 1u);
    return D8(vec4<f32>(halves2(W[i]), halves2(W[i + 1u])),
              vec4<f32>(halves2(W[i + 2u]), halves2(W[i + 3u])));
}

// Q8_0, 34-byte block of 32: d f16 | qs[32] int8.  x = qs * d
fn dq8_q8_0(rb: u32, k: u32) -> D8 {
    let base = rb + (k >> 5u) * 34u;
    let d = whf(base);
    let q = base + 2u + (k & 31u);
    return D8(i8x4(wword(q)) * d, i8x4(wword(q + 4u)) * d);
}

// Q4_0, 18-byte block of 32: d f16 | qs[16]. Element i < 16 is the low nibble of
// qs[i], element 16+i the high nibble.  x = d * (q - 8)
fn dq8_q4_0(rb: u32, k: u32) -> D8 {
    let base = rb + (k >> 5u) * 18u;
    let d = whf(base);
    let e = k & 31u;
    let q = base + 2u + (e & 15u);
    let sh = (e >> 4u) * 4u;
    let lo = vec4<f32>(vec4<i32>(nibs4(wword(q), sh)) - vec4<i32>(8));
    let hi = vec4<f32>(vec4<i32>(nibs4(wword(q + 4u), sh)) - vec4<i32>(8));
    return D8(d * lo, d * hi);
}

// Q4_1, 20-byte block of 32: d f16 | m f16 | qs[16] (nibbles as Q4_0).  x = d * q + m
fn dq8_q4_1(rb: u32, k: u32) -> D8 {
    let base = rb + (k >> 5u) * 20u;
    let d = whf(base);
    let m = whf(base + 2u);
    let e = k & 31u;
    let q = base + 4u + (e & 15u);
    let sh = (e >> 4u) * 4u;
    return D8(d * vec4<f32>(nibs4(wword(q), sh)) + m, d * vec4<f32>(nibs4(wword(q + 4u), sh)) + m);
}

// Q4_K, 144-byte super-block of 256: d f16 | dmin f16 | scales[12] | qs[128].
// Sub-block s (32 elements, s = 0..7) has a 6-bit scale sc and min mn packed in
// scales[] (see q4k_scale_min); its quants are the nibbles (s % 2 == 0: low,
// else high) of qs[32*(s/2) .. 32*(s/2)+32).  x = (d * sc) * q - (dmin * mn)
fn q4k_scale_min(base: u32, s: u32) -> vec2<f32> {
    let sb = base + 4u;  // scales[12]
    if (s < 4u) {
        return vec2<f32>(f32(wbyte(sb + s) & 63u), f32(wbyte(sb + s + 4u) & 63u));
    }
    let sc = (wbyte(sb + s + 4u) & 15u) | ((wbyte(sb + s - 4u) >> 6u) << 4u);
    let mn = (wbyte(sb + s + 4u) >> 4u) | ((wbyte(sb + s) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(mn));
}

fn dq8_q4_k(rb: u32, k: u32) -> D8 {
    let base = rb + (k >> 8u) * 144u;
    let r = k & 255u;
    let s = r >> 5u;
    let scm = q4k_scale_min(base, s);
    let d = whf(base) * scm.x;
    let dm = whf(base + 2u) * scm.y;
    let q = base + 16u + (s >> 1u) * 32u + (r & 31u);
    let sh = (s & 1u) * 4u;
    return D8(d * vec4<f32>(nibs4(wword(q), sh)) - dm, d * vec4<f32>(nibs4(wword(q + 4u), sh)) - dm);
}

// Q6_K, 210-byte super-block of 256: ql[128] | qh[64] | scales[16] int8 | d f16.
// Element e = 128h + 32j + i (h = 0..1, j = 0..3, i = 0..31) has
//   low 4 bits:  nibble (j / 2) of ql[64h + 32(j % 2) + i]
//   high 2 bits: bits 2j..2j+1 of qh[32h + i]
//   scale:       scales[e / 16]
// x = (d * scale) * (q - 32)
fn dq8_q6_k(rb: u32, k: u32) -> D8 {
    let base = rb + (k >> 8u) * 210u;
    let r = k & 255u;
    let h = r >> 7u;
    let j = (r >> 5u) & 3u;
    let i = r & 31u;
    let ql = base + 64u * h + 32u * (j & 1u) + i;
    let qh = base + 128u + 32u * h + i;
    let lsh = (j >> 1u) * 4u;
    let hsh = 2u * j;
    let sc = f32(bitcast<i32>(wbyte(base + 192u + (r >> 4u)) << 24u) >> 24u);
    let d = whf(base + 208u) * sc;
    let q0 = nibs4(wword(ql), lsh) | (((bytes4(wword(qh)) >> vec4<u32>(hsh)) & vec4<u32>(3u)) << vec4<u32>(4u));
    let q1 = nibs4(wword(ql + 4u), lsh) | (((bytes4(wword(qh + 4u)) >> vec4<u32>(hsh)) & vec4<u32>(3u)) << vec4<u32>(4u));
    return D8(d * vec4<f32>(vec4<i32>(q0) - vec4<i32>(32)), d * vec4<f32>(vec4<i32>(q1) - vec4<i32>(32)));
}

// BF16: row = K bf16 (2K bytes; K % 32 == 0 keeps rows word aligned), each the top
// 16 bits of an f32.
fn bf16x2(w: u32) -> vec2<f32> {
    return bitcast<vec2<f32>>(vec2<u32>(w << 16u, w & 0xffff0000u));
}

fn dq8_bf16(rb: u32, k: u32) -> D8 {
    let i = (rb >> 2u) + (k >> 1u);
    return D8(vec4<f32>(bf16x2(W[i]), bf16x2(W[i + 1u])), vec4<f32>(bf16x2(W[i + 2u]), bf16x2(W[i + 3u])));
}

// Bit 4 of lane j = bit j of h (j = 0..3, the 5th bit of Q5_0 / Q5_1 / Q5_K quants).
fn hbit4(h: u32) -> vec4<u32> {
    return ((vec4<u32>(h) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u)) << vec4<u32>(4u);
}

// Q5_0, 22-byte block of 32: d f16 | qh u32 | qs[16]. Element e: low 4 bits as in
// Q4_0 (nibble e / 16 of qs[e % 16]), bit 4 = bit e of qh.  x = d * (q - 16)
fn dq8_q5_0(rb: u32, k: u32) -> D8 {
    let base = rb + (k >> 5u) * 22u;
    let d = whf(base);
    let e = k & 31u;
    let h = wword(base + 2u) >> e;
    let q = base + 6u + (e & 15u);
    let sh = (e >> 4u) * 4u;
    let lo = vec4<f32>(vec4<i32>(nibs4(wword(q), sh) | hbit4(h)) - vec4<i32>(16));
    let hi = vec4<f32>(vec4<i32>(nibs4(wword(q + 4u), sh) | hbit4(h >> 4u)) - vec4<i32>(16));
    return D8(d * lo, d * hi);
}

// Q5_1, 24-byte block of 32: d f16 | m f16 | qh u32 | qs[16] (quants as Q5_0).  x = d * q + m
fn dq8_q5_1(rb: u32, k: u32) -> D8 {
    let base = rb + (k >> 5u) * 24u;
    let d = whf(base);
    let m = whf(base + 2u);
    let e = k & 31u;
    let h = wword(base + 4u) >> e;
    let q = base + 8u + (e & 15u);
    let sh = (e >> 4u) * 4u;
    return D8(d * vec4<f32>(nibs4(wword(q), sh) | hbit4(h)) + m,
              d * vec4<f32>(nibs4(wword(q + 4u), sh) | hbit4(h >> 4u)) + m);
}

// IQ4_NL / IQ4_XS: a 4-bit quant n indexes a table of 16 int8 values, packed 4 to a
// word (little endian): -127 -104 -83 -65 -49 -35 -22 -10 1 13 25 38 53 69 89 113.
const IQ4_PACKED = vec4<u32>(0xbfad9881u, 0xf6eaddcfu, 0x26190d01u, 0x71594535u);

fn iq4_value(n: u32) -> f32 {
    return f32(bitcast<i32>(IQ4_PACKED[n >> 2u] << (24u - 8u * (n & 3u))) >> 24u);
}

fn iq4v(n: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(iq4_value(n.x), iq4_value(n.y), iq4_value(n.z), iq4_value(n.w));
}

// IQ4_NL, 18-byte block of 32: d f16 | qs[16] (nibbles as Q4_0).  x = d * table[q]
fn dq8_iq4_nl(rb: u32, k: u32) -> D8 {
    let base = rb + (k >> 5u) * 18u;
    let d = whf(base);
    let e = k & 31u;
    let q = base + 2u + (e & 15u);
    let sh = (e >> 4u) * 4u;
    return D8(d * iq4v(nibs4(wword(q), sh)), d * iq4v(nibs4(wword(q + 4u), sh)));
}

// IQ4_XS, 136-byte super-block of 256: d f16 | scales_h u16 | scales_l[4] | qs[128].
// Sub-block j (32 elements) has the 6-bit scale ((scales_l[j / 2] >> 4 (j % 2)) & 15)
// | ((scales_h >> 2j) & 3) << 4, minus 32; its quants are an IQ4_NL block's
// nibbles in qs[16j .. 16j + 16).  x = (d * scale) * table[q]
fn dq8_iq4_xs(rb: u32, k: u32) -> D8 {
    let base = rb + (k >> 8u) * 136u;
    let r = k & 255u;
    let j = r >> 5u;
    let e = r & 31u;
    let lo = (wbyte(base + 4u + (j >> 1u)) >> ((j & 1u) * 4u)) & 15u;
    let hi = (whalf(base + 2u) >> (2u * j)) & 3u;
    let dl = whf(base) * f32(i32(lo | (hi << 4u)) - 32);
    let q = base + 8u + 16u * j + (e & 15u);
    let sh = (e >> 4u) * 4u;
    return D8(dl * iq4v(nibs4(wword(q), sh)), dl * iq4v(nibs4(wword(q + 4u), sh)));
}

// Q2_K, 84-byte super-block of 256: scales[16] | qs[64] | d f16 | dmin f16.
// Element e = 128g + 32s + i (g = 0..1, s = 0..3, i = 0..31) is bits 2s..2s+1 of
// qs[32g + i]; scales[e / 16] holds its 4-bit scale (low nibble) and min (high).
// x = (d * sc) * q - (dmin * mn)
fn dq8_q2_k(rb: u32, k: u32) -> D8 {
    let base = rb + (k >> 8u) * 84u;
    let r = k & 255u;
    let s = (r >> 5u) & 3u;
    let q = base + 16u + 32u * (r >> 7u) + (r & 31u);
    let sc = wbyte(base + (r >> 4u));
    let dl = whf(base + 80u) * f32(sc & 15u);
    let ml = whf(base + 82u) * f32(sc >> 4u);
    let sh = vec4<u32>(2u * s);
    return D8(dl * vec4<f32>((bytes4(wword(q)) >> sh) & vec4<u32>(3u)) - ml,
              dl * vec4<f32>((bytes4(wword(q + 4u)) >> sh) & vec4<u32>(3u)) - ml);
}

// Q3_K, 110-byte super-block of 256: hmask[32] | qs[64] | scales[12] | d f16.
// Element e = 128g + 32s + i: low 2 bits are bits 2s..2s+1 of qs[32g + i], and
// 4 is subtracted when bit e / 32 of hmask[i] is clear. Scale j = e / 16 (6 bits,
// minus 32): low 4 bits nibble j / 8 of scales[j % 8], high 2 bits bits
// 2 (j / 4) .. of scales[8 + j % 4].  x = (d * scale) * q
fn dq8_q3_k(rb: u32, k: u32) -> D8 {
    let base = rb + (k >> 8u) * 110u;
    let r = k & 255u;
    let s = (r >> 5u) & 3u;
    let i = r & 31u;
    let j = r >> 4u;
    let sl = (wbyte(base + 96u + (j & 7u)) >> ((j >> 3u) * 4u)) & 15u;
    let sh = (wbyte(base + 104u + (j & 3u)) >> ((j >> 2u) * 2u)) & 3u;
    let dl = whf(base + 108u) * f32(i32(sl | (sh << 4u)) - 32);
    let q = base + 32u + 32u * (r >> 7u) + i;
    let hb = vec4<u32>(r >> 5u);
    let h0 = (bytes4(wword(base + i)) >> hb) & vec4<u32>(1u);
    let h1 = (bytes4(wword(base + i + 4u)) >> hb) & vec4<u32>(1u);
    let l0 = (bytes4(wword(q)) >> vec4<u32>(2u * s)) & vec4<u32>(3u);
    let l1 = (bytes4(wword(q + 4u)) >> vec4<u32>(2u * s)) & vec4<u32>(3u);
    return D8(dl * vec4<f32>(vec4<i32>(l0) - vec4<i32>((h0 ^ vec4<u32>(1u)) << vec4<u32>(2u))),
              dl * vec4<f32>(vec4<i32>(l1) - vec4<i32>((h1 ^ vec4<u32>(1u)) << vec4<u32>(2u))));
}

// Q5_K, 176-byte super-block of 256: d f16 | dmin f16 | scales[12] | qh[32] | qs[128].
// Sub-block s (32 elements) has Q4_K's scale and min and low 4 bits (nibble s % 2
// of qs[32 (s / 2) + i]); bit 4 is bit s of qh[i].  x = (d * sc) * q - (dmin * mn)
fn dq8_q5_k(rb: u32, k: u32) -> D8 {
    let base = rb + (k >> 8u) * 176u;
    let r = k & 255u;
    let s = r >> 5u;
    let i = r & 31u;
    let scm = q4k_scale_min(base, s);
    let d = whf(base) * scm.x;
    let dm = whf(base + 2u) * scm.y;
    let q = base + 48u + (s >> 1u) * 32u + i;
    let sh = (s & 1u) * 4u;
    let hs = vec4<u32>(s);
    let h0 = ((bytes4(wword(base + 16u + i)) >> hs) & vec4<u32>(1u)) << vec4<u32>(4u);
    let h1 = ((bytes4(wword(base + 20u + i)) >> hs) & vec4<u32>(1u)) << vec4<u32>(4u);
    return D8(d * vec4<f32>(nibs4(wword(q), sh) | h0) - dm, d * vec4<f32>(nibs4(wword(q + 4u), sh) | h1) - dm);
}

// The weight type of this specialisation.
fn dq8(rb: u32, k: u32) -> D8 {
    return dq8_{{QT}}(rb, k);
}
