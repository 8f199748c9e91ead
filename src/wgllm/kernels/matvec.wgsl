// y[t, row0 + n] = (add ? y[t, row0 + n] : 0) + sum_k W[n, k] * x[t, k]
// for t < step.T and the rows n < rows of one weight chunk: the decode (T = 1)
// matrix-vector product, memory bound.
//
// Layout: W (binding 0, see quant.wgsl) raw rows of row_bytes; X [T_max, K] as
// vec4 of {{XT}}; Y [T_max, N] {{YT}}.
// Work split: a workgroup of ROWS x TPR invocations owns ROWS rows; the TPR
// invocations of a row walk its "units" (UNIT consecutive elements: a block or a
// slice of one, see the udot_* functions) with stride TPR, so neighbouring
// invocations read neighbouring bytes of the row (coalesced), then the row is
// reduced in workgroup memory. Grid: x, y flatten the row groups, z = token.
//!include step
//!include quant

struct Params { K: u32, N: u32, row0: u32, rows: u32, row_bytes: u32, add: u32, _p0: u32, _p1: u32 }

@group(0) @binding(1) var<storage, read> X: array<vec4<{{XT}}>>;
@group(0) @binding(2) var<storage, read_write> Y: array<{{YT}}>;
@group(0) @binding(3) var<uniform> P: Params;
@group(0) @binding(4) var<uniform> S: Step;

const TPR: u32 = 32u;          // invocations per row
const ROWS: u32 = {{ROWS}};    // rows per workgroup
const UNIT: u32 = {{UNIT}};    // elements per unit of this weight type
const WG: u32 = TPR * ROWS;

var<workgroup> red: array<f32, WG>;

fn xv(i: u32) -> vec4<f32> {
    return vec4<f32>(X[i]);
}

// Each udot_* returns sum_e W[row, e] * x[e] over the unit u of the row at byte
// rb; xi = vec4 index of x[t, UNIT * u].

// F32, UNIT 8: 32 bytes.
fn udot_f32(rb: u32, u: u32, xi: u32) -> f32 {
    let w = (rb >> 2u) + u * 8u;
    let a = bitcast<vec4<f32>>(vec4<u32>(W[w], W[w + 1u], W[w + 2u], W[w + 3u]));
    let b = bitcast<vec4<f32>>(vec4<u32>(W[w + 4u], W[w + 5u], W[w + 6u], W[w + 7u]));
    return dot(a, xv(xi)) + dot(b, xv(xi + 1u));
}

// F16, UNIT 16: 32 bytes.
fn udot_f16(rb: u32, u: u32, xi: u32) -> f32 {
    let w = (rb >> 2u) + u * 8u;
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) {
        let h = vec4<f32>(halves2(W[w + 2u * j]), halves2(W[w + 2u * j + 1u]));
        s += dot(h, xv(xi + j));
    }
    return s;
}

// Q8_0, UNIT 32 (one block): d f16 | qs[32] int8, qs read as 8 words by funnel shifts.
fn udot_q8_0(rb: u32, u: u32, xi: u32) -> f32 {
    let base = rb + u * 34u;
    let q = base + 2u;
    let i0 = q >> 2u;
    let sh = (q & 2u) * 8u;
    var prev = W[i0];
    var s = 0.0;
    for (var j = 0u; j < 8u; j++) {
        let next = W[i0 + j + 1u];
        s += dot(i8x4((prev >> sh) | ((next << 1u) << (31u - sh))), xv(xi + j));
        prev = next;
    }
    return s * whf(base);
}

// Q4_0 / Q4_1 quants: word j of qs holds elements 4j..4j+3 (low nibbles) and 16+4j.. (high).
fn q4_words_dot(q: u32, xi: u32, off: f32) -> vec2<f32> {
    let i0 = q >> 2u;
    let sh = (q & 2u) * 8u;
    var prev = W[i0];
    var s = 0.0;
    var sx = 0.0;
    for (var j = 0u; j < 4u; j++) {
        let next = W[i0 + j + 1u];
        let w = (prev >> sh) | ((next << 1u) << (31u - sh));
        let xa = xv(xi + j);
        let xb = xv(xi + 4u + j);
        s += dot(vec4<f32>(nibs4(w, 0u)) - off, xa) + dot(vec4<f32>(nibs4(w, 4u)) - off, xb);
        sx += dot(xa + xb, vec4<f32>(1.0));
        prev = next;
    }
    return vec2<f32>(s, sx);
}

// Q4_0, UNIT 32: d * sum (q - 8) x
fn udot_q4_0(rb: u32, u: u32, xi: u32) -> f32 {
    let base = rb + u * 18u;
    return whf(base) * q4_words_dot(base + 2u, xi, 8.0).x;
}

// Q4_1, UNIT 32: sum (d q + m) x = d sum q x + m sum x
fn udot_q4_1(rb: u32, u: u32, xi: u32) -> f32 {
    let base = rb + u * 20u;
    let r = q4_words_dot(base + 4u, xi, 0.0);
    return whf(base) * r.x + whf(base + 2u) * r.y;
}

// Q4_K, UNIT 64: sub-blocks 2g (low nibbles) and 2g+1 (high nibbles) of qs[32g .. 32g+32).
fn udot_q4_k(rb: u32, u: u32, xi: u32) -> f32 {
    let base = rb + (u >> 2u) * 144u;   // 144-byte super-blocks keep rows word aligned
    let g = u & 3u;
    let w0 = (base + 16u + 32u * g) >> 2u;
    var s = vec2<f32>(0.0);
    var sx = vec2<f32>(0.0);
    for (var j = 0u; j < 8u; j++) {
        let w = W[w0 + j];
        let xa = xv(xi + j);
        let xb = xv(xi + 8u + j);
        s += vec2<f32>(dot(vec4<f32>(nibs4(w, 0u)), xa), dot(vec4<f32>(nibs4(w, 4u)), xb));
        sx += vec2<f32>(dot(xa, vec4<f32>(1.0)), dot(xb, vec4<f32>(1.0)));
    }
    let sm0 = q4k_scale_min(base, 2u * g);
    let sm1 = q4k_scale_min(base, 2u * g + 1u);
    let d = whf(base);
    let dmin = whf(base + 2u);
    return d * (sm0.x * s.x + sm1.x * s.y) - dmin * (sm0.y * sx.x + sm1.y * sx.y);
}

// Q6_K, UNIT 64: with c4 = u % 4 = 2h + c, the unit is the 64 elements
// 128h + 32k + 16c + i (k = 0..3, i = 0..15): ql bytes A = 64h + 16c + i (k = 0 low
// nibble, k = 2 high), B = A + 32 (k = 1, 3), qh byte 32h + 16c + i (bits 2k), scale
// 8h + 2k + c. Whole words are unpacked at once (4 elements per byte lane).
fn udot_q6_k(rb: u32, u: u32, xi: u32) -> f32 {
    let base = rb + (u >> 2u) * 210u;
    let c4 = u & 3u;
    let h = c4 >> 1u;
    let c = c4 & 1u;
    let a0 = base + 64u * h + 16u * c;
    let h0 = base + 128u + 32u * h + 16u * c;
    let xs = xi - 16u * c4 + 32u * h + 4u * c;   // x vec4 index of element 128h + 16c
    var s = vec4<f32>(0.0);                      // per k
    for (var j = 0u; j < 4u; j++) {
        let wa = wword(a0 + 4u * j);
        let wb = wword(a0 + 32u + 4u * j);
        let wc = wword(h0 + 4u * j);
        let q0 = (wa & 0x0f0f0f0fu) | ((wc & 0x03030303u) << 4u);
        let q1 = (wb & 0x0f0f0f0fu) | (((wc >> 2u) & 0x03030303u) << 4u);
        let q2 = ((wa >> 4u) & 0x0f0f0f0fu) | (((wc >> 4u) & 0x03030303u) << 4u);
        let q3 = ((wb >> 4u) & 0x0f0f0f0fu) | (((wc >> 6u) & 0x03030303u) << 4u);
        s += vec4<f32>(dot(vec4<f32>(bytes4(q0)) - 32.0, xv(xs + j)),
                       dot(vec4<f32>(bytes4(q1)) - 32.0, xv(xs + 8u + j)),
                       dot(vec4<f32>(bytes4(q2)) - 32.0, xv(xs + 16u + j)),
                       dot(vec4<f32>(bytes4(q3)) - 32.0, xv(xs + 24u + j)));
    }
    let sb = base + 192u + 8u * h + c;
    let sc = vec4<f32>(i8x4(wbyte(sb) | (wbyte(sb + 2u) << 8u) | (wbyte(sb + 4u) << 16u) | (wbyte(sb + 6u) << 24u)));
    return whf(base + 208u) * dot(sc, s);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = wid.z;
    if (t >= S.T) { return; }  // uniform per workgroup
    let r = lid / TPR;
    let l = lid % TPR;
    let n = (wid.x + wid.y * nwg.x) * ROWS + r;
    var acc = 0.0;
    if (n < P.rows) {
        let rb = n * P.row_bytes;
        let xi = t * (P.K / 4u);
        let units = P.K / UNIT;
        for (var u = l; u < units; u += TPR) {
            acc += udot_{{QT}}(rb, u, xi + u * (UNIT / 4u));
        }
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var s = TPR / 2u; s > 0u; s >>= 1u) {
        if (l < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    if (l == 0u && n < P.rows) {
        let o = t * P.N + P.row0 + n;
        var v = red[lid];
        if (P.add != 0u) { v += f32(Y[o]); }
        Y[o] = {{YT}}(v);
    }
}
