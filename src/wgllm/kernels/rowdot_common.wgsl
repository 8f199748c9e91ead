// The declarations and helpers that rowdot.wgsl (the CPU-adapter kernel of `linear`) and
// matwide.wgsl (the GPU decode matvec of aligned types) share: bindings, tiling constants,
// x loads (f32 / f16, the GLU input), the unpacking helpers the generated bodies of
// kernels/rowdot.py call, and `put` (the output, with the residual add).
//!include step

struct Params { K: u32, N: u32, row0: u32, rows: u32, row_bytes: u32, add: u32, eps: f32, _p1: u32 }

@group(0) @binding(0) var<storage, read> W: array<vec4<u32>>;
@group(0) @binding(1) var<{{XSPACE}}> X: array<vec4<{{XW}}>{{XLEN}}>;   // f16 x: 8 halves per vec4<u32>
@group(0) @binding(2) var<storage, read_write> Y: array<{{YT}}>;
@group(0) @binding(3) var<storage, read> P: Params;
@group(0) @binding(4) var<{{UNI}}> S: Step;

const WG: u32 = {{WG}}u;
const R: u32 = {{R}}u;            // rows per invocation
const RN: u32 = {{RN}}u;          // output rows per invocation (R, or R / 2 with GLUO)
const GLU: u32 = {{GLU}}u;
const GLUO: u32 = {{GLUO}}u;      // 1 / 2: the fused GLU output, y = act(gate row) * up row (see glu_out)
const XROW: u32 = {{XROW}}u;      // vec4 of X per token row (K / XE, or 2 K / XE with GLU)
const HALFX: u32 = {{HALFX}}u;    // K / XE: offset of the "up" half with GLU (XE: x elements per vec4)
const ROWV: u32 = {{ROWV}}u;      // vec4 of W per invocation's first RN rows (RN * row_bytes / 16)
const NORM: u32 = {{NORM}}u;      // 1: x is the residual stream, RMS-normed as it is loaded (matwide only)
//!include xnorm_{{NORMV}}

// The GLU product act(gate) * up: code 1 silu, 2 GELU (tanh form, written as the equal
// g * sigmoid(2 sqrt(2/pi) (g + 0.044715 g^3)), which cannot overflow).
fn act_mul(code: u32, g: vec4<f32>, u: vec4<f32>) -> vec4<f32> {
    if (code == 2u) {
        return g / (1.0 + exp(-1.5957691216057308 * (g + 0.044715 * g * g * g))) * u;
    }
    return g / (1.0 + exp(-g)) * u;
}

// The GLU input: x = act(gate) * up as the down projection loads it.
fn silu_mul(g: vec4<f32>, u: vec4<f32>) -> vec4<f32> {
    return act_mul(GLU, g, u);
}

// The fused GLU output: one y element from its gate and up rows' dot products.
fn glu_out(g: f32, u: f32) -> f32 {
    return act_mul(GLUO, vec4<f32>(g), vec4<f32>(u)).x;
}

// f32 x: the 4 elements of vec4 i (GLU: act(gate) * up).
fn xv(i: u32) -> vec4<f32> {
    if (GLU != 0u) {
        return silu_mul(vec4<f32>(X[i]), vec4<f32>(X[i + HALFX]));
    }
    if (NORM != 0u) {
        return xnormed(i);
    }
    return vec4<f32>(X[i]);
}

// f16 x, as vec4<u32>: elements 0..3 (hi = false) or 4..7 (hi = true) of a loaded vec4 of 8 halves.
fn xh(v: vec4<u32>, hi: bool) -> vec4<f32> {
    return select(vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)),
                  vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w)), hi);
}

fn half(h: u32) -> f32 {
    return unpack2x16float(h).x;
}

fn nib_lo(w: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(15u)));
}

fn nib_hi(w: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>((vec4<u32>(w) >> vec4<u32>(4u, 12u, 20u, 28u)) & vec4<u32>(15u)));
}

// Q5_0 / Q5_1: 4 quants of 5 bits, the nibbles at bit sl (0 or 4) of w's 4 bytes, each with its
// fifth bit, bits b .. b + 3 of the block's qh (sl, b constants: the shifts fold).
fn q5(w: u32, sl: u32, qh: u32, b: u32) -> vec4<f32> {
    let n = (vec4<u32>(w) >> (vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>(sl))) & vec4<u32>(15u);
    let h = ((vec4<u32>(qh) >> (vec4<u32>(b) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u)) << vec4<u32>(4u);
    return vec4<f32>(vec4<i32>(n | h));
}

// Q6_K: 4 quants of 6 bits, from the nibbles at bit sl (0 or 4) of ql word wl's 4 bytes and
// the 2 bits at bit sh of qh word wh's 4 bytes (sl, sh constants: the shifts fold).
fn q6(wl: u32, wh: u32, sl: u32, sh: u32) -> vec4<f32> {
    let b = vec4<u32>(0u, 8u, 16u, 24u);
    let n = (vec4<u32>(wl) >> (b + vec4<u32>(sl))) & vec4<u32>(15u);
    let h = ((vec4<u32>(wh) >> (b + vec4<u32>(sh))) & vec4<u32>(3u)) << vec4<u32>(4u);
    return vec4<f32>(vec4<i32>(n | h));
}

// Signed byte i (a constant) of w.
fn i8b(w: u32, i: u32) -> f32 {
    return f32((bitcast<i32>(w) << (24u - 8u * i)) >> 24u);
}

// The q-th of a, b, c, d (q < 4; selects, no branch: q differs between lanes).
fn sel4(q: u32, a: u32, b: u32, c: u32, d: u32) -> u32 {
    return select(select(a, b, q == 1u), select(c, d, q == 3u), q >= 2u);
}

fn i8x4(w: u32) -> vec4<f32> {
    return vec4<f32>((vec4<i32>(bitcast<i32>(w)) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

fn h4(a: u32, b: u32) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(a), unpack2x16float(b));
}

fn put(t: u32, n: u32, v: f32) {
    let o = t * P.N + P.row0 + n;
    var y = v;
    if (P.add != 0u) { y += f32(Y[o]); }
    Y[o] = {{YT}}(y);
}

