// Row softmax with temperature: y[r, :] = softmax(x[r, :] * inv_temp), f32.
// x, y: [rows, N] f32. One workgroup per row: max, sum of exps, normalise.
struct Params { N: u32, rows: u32, inv_temp: f32, _pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<{{UNI}}> p: Params;

const WG: u32 = 256u;
var<workgroup> red: array<f32, WG>;

// Tree reduction of red[] by max (is_max) or sum; every thread gets the result.
fn reduce(lid: u32, v: f32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), is_max);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();  // red is reused by the next reduction
    return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }  // uniform per workgroup
    let base = row * p.N;
    var m = -3.0e38;
    for (var i = lid; i < p.N; i += WG) { m = max(m, x[base + i] * p.inv_temp); }
    m = reduce(lid, m, true);
    var s = 0.0;
    for (var i = lid; i < p.N; i += WG) { s += exp(x[base + i] * p.inv_temp - m); }
    s = reduce(lid, s, false);
    let inv = 1.0 / s;
    for (var i = lid; i < p.N; i += WG) { y[base + i] = exp(x[base + i] * p.inv_temp - m) * inv; }
}
