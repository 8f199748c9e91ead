// y[t, row0 + n] = (add ? y[t, row0 + n] : 0) + sum_k W[n, k] * x[t, k]
// for t < step.T and the rows n < rows of one weight chunk: the decode (T = 1)
// matrix-vector product, memory bound.
//
// Layout: W (binding 0, see quant.wgsl) raw rows of row_bytes; X [T_max, K] as
// vec4 of {{XT}}; Y [T_max, N] {{YT}}.
// Work split: a workgroup is RG row groups of TPR = 32 invocations; each group
// owns NR = 2 * PAIRS rows. Its 32 invocations walk the rows' "units" (UNIT
// consecutive elements: a block or a slice of one, see the udot_* functions) with
// stride 32, so neighbouring invocations read neighbouring bytes of a row
// (coalesced); each udot_* call handles a pair of rows, so each x value loaded
// serves both, and UNROLL units are in flight per iteration. One barrier, then
// lane i of the group sums the 32 partial dots of row i.
// Grid: x, y flatten the row groups, z = token.
//
// Quants become floats with the 2^23 trick: bitcast<f32>(0x4b000000 | q) is
// exactly 2^23 + q for an integer q < 2^23, so one OR and one subtraction (also
// removing the type's zero point) replace an int-to-float conversion.
//!include step
//!include quant

struct Params { K: u32, N: u32, row0: u32, rows: u32, row_bytes: u32, add: u32, _p0: u32, _p1: u32 }

@group(0) @binding(1) var<storage, read> X: array<vec4<{{XT}}>>;
@group(0) @binding(2) var<storage, read_write> Y: array<{{YT}}>;
@group(0) @binding(3) var<uniform> P: Params;
@group(0) @binding(4) var<uniform> S: Step;

const TPR: u32 = 32u;          // invocations per row group
const PAIRS: u32 = {{PAIRS}};  // row pairs per row group (1 or 2)
const NR: u32 = 2u * PAIRS;    // rows per row group
const RG: u32 = {{RG}};        // row groups per workgroup
const UNROLL: u32 = {{UNROLL}};  // units per invocation per loop iteration (1 or 2)
const UNIT: u32 = {{UNIT}};    // elements per unit of this weight type
const WG: u32 = TPR * RG;

const MAGIC: u32 = 0x4b000000u;
const TWO23: f32 = 8388608.0;
const SH_LO = vec4<u32>(0u, 8u, 16u, 24u);
const SH_HI = vec4<u32>(4u, 12u, 20u, 28u);

var<workgroup> red: array<f32, NR * WG>;   // partial sums [invocation][row of its group]

fn xv(i: u32) -> vec4<f32> {
    return vec4<f32>(X[i]);
}

// 2^23 + the 4 nibbles (sh = SH_LO: low nibbles, SH_HI: high) / bytes (SH_LO, mask 0xff) of w.
fn mq(w: u32, sh: vec4<u32>, mask: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(((vec4<u32>(w) >> sh) & vec4<u32>(mask)) | vec4<u32>(MAGIC));
}

fn w4f(i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(vec4<u32>(W[i], W[i + 1u], W[i + 2u], W[i + 3u]));
}

// Each udot_* returns, for rows at bytes ra and rb, sum_e W[row, e] * x[e] over
// unit u; xi = vec4 index of x[t, UNIT * u].

// F32, UNIT 8: 32 bytes per row.
fn udot_f32(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let x0 = xv(xi);
    let x1 = xv(xi + 1u);
    let a = (ra >> 2u) + u * 8u;
    let b = (rb >> 2u) + u * 8u;
    return vec2<f32>(dot(w4f(a), x0) + dot(w4f(a + 4u), x1), dot(w4f(b), x0) + dot(w4f(b + 4u), x1));
}

// F16, UNIT 16: 32 bytes per row. (unpack2x16float: subnormal halves may flush
// to zero on some GPUs, a relative change below 1e-4 of one weight.)
fn udot_f16(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let a = (ra >> 2u) + u * 8u;
    let b = (rb >> 2u) + u * 8u;
    var s = vec2<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let x = xv(xi + j);
        let wa = vec4<f32>(unpack2x16float(W[a + 2u * j]), unpack2x16float(W[a + 2u * j + 1u]));
        let wb = vec4<f32>(unpack2x16float(W[b + 2u * j]), unpack2x16float(W[b + 2u * j + 1u]));
        s += vec2<f32>(dot(wa, x), dot(wb, x));
    }
    return s;
}

// Q8_0, UNIT 32 (one block): d f16 | qs[32] int8 = 8 words (funnel shifts).
// Signed bytes: (b ^ 0x80) is b + 128.
fn udot_q8_0(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let ba = ra + u * 34u;
    let bb = rb + u * 34u;
    let ia = (ba + 2u) >> 2u;
    let ib = (bb + 2u) >> 2u;
    let sa = ((ba + 2u) & 2u) * 8u;
    let sb = ((bb + 2u) & 2u) * 8u;
    var pa = W[ia];
    var pb = W[ib];
    var s = vec2<f32>(0.0);
    for (var j = 0u; j < 8u; j++) {
        let x = xv(xi + j);
        let na = W[ia + j + 1u];
        let nb = W[ib + j + 1u];
        let wa = ((pa >> sa) | ((na << 1u) << (31u - sa))) ^ 0x80808080u;
        let wb = ((pb >> sb) | ((nb << 1u) << (31u - sb))) ^ 0x80808080u;
        s += vec2<f32>(dot(mq(wa, SH_LO, 0xffu) - (TWO23 + 128.0), x), dot(mq(wb, SH_LO, 0xffu) - (TWO23 + 128.0), x));
        pa = na;
        pb = nb;
    }
    return s * vec2<f32>(whf(ba), whf(bb));
}

// Q4_0 / Q4_1 quants at even byte offsets qa, qb: word j of qs holds elements
// 4j..4j+3 (low nibbles) and 16+4j.. (high). Returns (sum (q - off) x) per row
// and sum x.
fn q4_dot(qa: u32, qb: u32, xi: u32, off: f32) -> vec3<f32> {
    let ia = qa >> 2u;
    let ib = qb >> 2u;
    let sa = (qa & 2u) * 8u;
    let sb = (qb & 2u) * 8u;
    var pa = W[ia];
    var pb = W[ib];
    var s = vec3<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let xa = xv(xi + j);
        let xb = xv(xi + 4u + j);
        let na = W[ia + j + 1u];
        let nb = W[ib + j + 1u];
        let wa = (pa >> sa) | ((na << 1u) << (31u - sa));
        let wb = (pb >> sb) | ((nb << 1u) << (31u - sb));
        s += vec3<f32>(dot(mq(wa, SH_LO, 0xfu) - off, xa) + dot(mq(wa, SH_HI, 0xfu) - off, xb),
                       dot(mq(wb, SH_LO, 0xfu) - off, xa) + dot(mq(wb, SH_HI, 0xfu) - off, xb),
                       dot(xa + xb, vec4<f32>(1.0)));
        pa = na;
        pb = nb;
    }
    return s;
}

// Q4_0, UNIT 32: d * sum (q - 8) x
fn udot_q4_0(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let ba = ra + u * 18u;
    let bb = rb + u * 18u;
    let s = q4_dot(ba + 2u, bb + 2u, xi, TWO23 + 8.0);
    return vec2<f32>(whf(ba) * s.x, whf(bb) * s.y);
}

// Q4_1, UNIT 32: sum (d q + m) x = d sum q x + m sum x
fn udot_q4_1(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let ba = ra + u * 20u;
    let bb = rb + u * 20u;
    let s = q4_dot(ba + 4u, bb + 4u, xi, TWO23);
    return vec2<f32>(whf(ba) * s.x + whf(ba + 2u) * s.z, whf(bb) * s.y + whf(bb + 2u) * s.z);
}

// Q4_K, UNIT 64: sub-blocks 2g (low nibbles) and 2g+1 (high nibbles) of
// qs[32g .. 32g+32); 144-byte super-blocks keep rows word aligned.
fn q4k_finish(base: u32, g: u32, s: vec2<f32>, sx: vec2<f32>) -> f32 {
    let m0 = q4k_scale_min(base, 2u * g);
    let m1 = q4k_scale_min(base, 2u * g + 1u);
    return whf(base) * (m0.x * s.x + m1.x * s.y) - whf(base + 2u) * (m0.y * sx.x + m1.y * sx.y);
}

fn udot_q4_k(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let g = u & 3u;
    let ba = ra + (u >> 2u) * 144u;
    let bb = rb + (u >> 2u) * 144u;
    let wa0 = (ba + 16u + 32u * g) >> 2u;
    let wb0 = (bb + 16u + 32u * g) >> 2u;
    var s = vec4<f32>(0.0);    // row a lo, row a hi, row b lo, row b hi
    var sx = vec2<f32>(0.0);
    for (var j = 0u; j < 8u; j++) {
        let xa = xv(xi + j);
        let xb = xv(xi + 8u + j);
        let wa = W[wa0 + j];
        let wb = W[wb0 + j];
        s += vec4<f32>(dot(mq(wa, SH_LO, 0xfu) - TWO23, xa), dot(mq(wa, SH_HI, 0xfu) - TWO23, xb),
                       dot(mq(wb, SH_LO, 0xfu) - TWO23, xa), dot(mq(wb, SH_HI, 0xfu) - TWO23, xb));
        sx += vec2<f32>(dot(xa, vec4<f32>(1.0)), dot(xb, vec4<f32>(1.0)));
    }
    return vec2<f32>(q4k_finish(ba, g, s.xy, sx), q4k_finish(bb, g, s.zw, sx));
}

// Q6_K, UNIT 64: with c4 = u % 4 = 2h + c, the unit is the 64 elements
// 128h + 32k + 16c + i (k = 0..3, i = 0..15): ql bytes A = 64h + 16c + i (k = 0 low
// nibble, k = 2 high), A + 32 (k = 1, 3), qh byte 32h + 16c + i (bits 2k), scale
// 8h + 2k + c. Whole words are unpacked at once (4 elements per byte lane).
fn q6_quants(ql: u32, qh: u32, j: u32) -> array<u32, 4> {
    let wa = wword(ql + 4u * j);
    let wb = wword(ql + 32u + 4u * j);
    let wc = wword(qh + 4u * j);
    return array<u32, 4>((wa & 0x0f0f0f0fu) | ((wc & 0x03030303u) << 4u),
                         (wb & 0x0f0f0f0fu) | (((wc >> 2u) & 0x03030303u) << 4u),
                         ((wa >> 4u) & 0x0f0f0f0fu) | (((wc >> 4u) & 0x03030303u) << 4u),
                         ((wb >> 4u) & 0x0f0f0f0fu) | (((wc >> 6u) & 0x03030303u) << 4u));
}

fn q6_scales(base: u32, h: u32, c: u32) -> vec4<f32> {
    let sb = base + 192u + 8u * h + c;
    return i8x4(wbyte(sb) | (wbyte(sb + 2u) << 8u) | (wbyte(sb + 4u) << 16u) | (wbyte(sb + 6u) << 24u)) * whf(base + 208u);
}

fn udot_q6_k(ra: u32, rb: u32, u: u32, xi: u32) -> vec2<f32> {
    let c4 = u & 3u;
    let h = c4 >> 1u;
    let c = c4 & 1u;
    let ba = ra + (u >> 2u) * 210u;
    let bb = rb + (u >> 2u) * 210u;
    let off = 64u * h + 16u * c;
    let hoff = 128u + 32u * h + 16u * c;
    let xs = xi - 16u * c4 + 32u * h + 4u * c;   // x vec4 index of element 128h + 16c
    var sa = vec4<f32>(0.0);                     // per k
    var sb = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let x0 = xv(xs + j);
        let x1 = xv(xs + 8u + j);
        let x2 = xv(xs + 16u + j);
        let x3 = xv(xs + 24u + j);
        let qa = q6_quants(ba + off, ba + hoff, j);
        let qb = q6_quants(bb + off, bb + hoff, j);
        let z = TWO23 + 32.0;
        sa += vec4<f32>(dot(mq(qa[0], SH_LO, 0xffu) - z, x0), dot(mq(qa[1], SH_LO, 0xffu) - z, x1),
                        dot(mq(qa[2], SH_LO, 0xffu) - z, x2), dot(mq(qa[3], SH_LO, 0xffu) - z, x3));
        sb += vec4<f32>(dot(mq(qb[0], SH_LO, 0xffu) - z, x0), dot(mq(qb[1], SH_LO, 0xffu) - z, x1),
                        dot(mq(qb[2], SH_LO, 0xffu) - z, x2), dot(mq(qb[3], SH_LO, 0xffu) - z, x3));
    }
    return vec2<f32>(dot(q6_scales(ba, h, c), sa), dot(q6_scales(bb, h, c), sb));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = wid.z;
    if (t >= S.T) { return; }  // uniform per workgroup
    let r = lid / TPR;
    let l = lid % TPR;
    let n0 = ((wid.x + wid.y * nwg.x) * RG + r) * NR;
    var acc = vec4<f32>(0.0);   // rows n0 .. n0 + 3 (the last two only when PAIRS == 2)
    if (n0 < P.rows) {
        let last = P.rows - 1u;   // rows past the chunk read a valid row, never written
        let r0 = n0 * P.row_bytes;
        let r1 = min(n0 + 1u, last) * P.row_bytes;
        let r2 = min(n0 + 2u, last) * P.row_bytes;
        let r3 = min(n0 + 3u, last) * P.row_bytes;
        let xi = t * (P.K / 4u);
        let units = P.K / UNIT;
        for (var u = l; u < units; u += TPR * UNROLL) {
            let xu = xi + u * (UNIT / 4u);
            acc += vec4<f32>(udot_{{QT}}(r0, r1, u, xu), 0.0, 0.0);
            if (PAIRS == 2u) { acc += vec4<f32>(0.0, 0.0, udot_{{QT}}(r2, r3, u, xu)); }
            let u2 = u + TPR;
            if (UNROLL == 2u && u2 < units) {
                let xu2 = xi + u2 * (UNIT / 4u);
                acc += vec4<f32>(udot_{{QT}}(r0, r1, u2, xu2), 0.0, 0.0);
                if (PAIRS == 2u) { acc += vec4<f32>(0.0, 0.0, udot_{{QT}}(r2, r3, u2, xu2)); }
            }
        }
    }
    for (var i = 0u; i < NR; i++) {
        red[NR * lid + i] = acc[i];
    }
    workgroupBarrier();
    let n = n0 + l;
    if (l < NR && n < P.rows) {
        var v = 0.0;
        for (var i = 0u; i < TPR; i++) {
            v += red[NR * (r * TPR + i) + l];
        }
        let o = t * P.N + P.row0 + n;
        if (P.add != 0u) { v += f32(Y[o]); }
        Y[o] = {{YT}}(v);
    }
}
