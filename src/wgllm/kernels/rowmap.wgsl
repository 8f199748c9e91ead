// An element-wise map over the rows of an f32 matrix, in place:
//   x[r, i] = f(x[r, i]) for r < ROWS (or r < Step.T when PER_TOKEN) and i < D,
// with f "scale" (x * C: Gemma's embedding scale sqrt(dim)) or "softcap"
// (C * tanh(x / C): Gemma 2's final-logit soft cap).
//!include step

const D: u32 = {{D}}u;
const ROWS: u32 = {{ROWS}}u;
const PER_TOKEN: bool = {{PER_TOKEN}};
const C: f32 = {{C}};
const WG: u32 = {{WG}}u;  // ops.ELEMENTWISE_WG

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<{{UNI}}> sp: Step;

fn f(v: f32) -> f32 {
    if ({{SOFTCAP}}) {
        return C * tanh(v / C);
    }
    return v * C;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let r = gid.y;
    if (i >= D || r >= select(ROWS, min(sp.T, ROWS), PER_TOKEN)) { return; }
    x[r * D + i] = f(x[r * D + i]);
}
