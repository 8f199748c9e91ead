"""lavapipe probe (issue 10): the cost of a 16-byte load per SIMD lane from a storage buffer against
a textureLoad of an rgba32uint texture (256 straight-line loads per invocation, a lane per row).

    python3 bench/diag/lavapipe_texture_loads.py
"""
import os, time, sys
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
import numpy as np, wgpu
ad = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
dev = ad.request_device_sync(required_limits={"max-texture-dimension-2d": 16384})
WIDTH, HEIGHT = 4096, 1024   # rgba32uint texels of 16 bytes: 64 MB
tex = dev.create_texture(size=(WIDTH, HEIGHT, 1), format=wgpu.TextureFormat.rgba32uint, usage=wgpu.TextureUsage.TEXTURE_BINDING | wgpu.TextureUsage.COPY_DST)
data = np.arange(WIDTH * HEIGHT * 4, dtype=np.uint32)
dev.queue.write_texture({"texture": tex}, data, {"bytes_per_row": WIDTH * 16, "rows_per_image": HEIGHT}, (WIDTH, HEIGHT, 1))
SB = dev.create_buffer_with_data(data=data, usage=wgpu.BufferUsage.STORAGE)
Y = dev.create_buffer(size=1 << 20, usage=wgpu.BufferUsage.STORAGE | wgpu.BufferUsage.COPY_SRC)
WG, ITERS, NWG = 8, 256, 2048
N = WIDTH * HEIGHT
def kern(kind, addr):
    red = "s += dot(vec4<f32>(v & vec4<u32>(255u)), vec4<f32>(1.0));"
    if kind == "tex":
        load = f"textureLoad(T, vec2<u32>(({addr}) % {WIDTH}u, ({addr}) / {WIDTH}u), 0)"
        decl = "@group(0) @binding(0) var T: texture_2d<u32>;"
    elif kind == "tex2":  # row-major 2D: lane's row = y, i = x
        load = f"textureLoad(T, vec2<u32>(i, (g * {WG}u + l) % {HEIGHT}u), 0)"
        decl = "@group(0) @binding(0) var T: texture_2d<u32>;"
    else:
        load = f"W[{addr}]"
        decl = "@group(0) @binding(0) var<storage, read> W: array<vec4<u32>>;"
    body = "\n    ".join("{ let i = %du; let v = %s; %s }" % (i, load, red) for i in range(ITERS))
    return f"""{decl}
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size({WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wid: vec3<u32>) {{
    var s = 0.0;
    let g = wid.x;
    {body}
    Y[gid.x] = s;
}}"""
strided = f"((g * {WG}u + l) * {ITERS}u + i) % {N}u"
for kind in ("storage", "tex", "tex2"):
    sm = dev.create_shader_module(code=kern(kind, strided))
    p = dev.create_compute_pipeline(layout="auto", compute={"module": sm, "entry_point": "main"})
    res = tex.create_view() if kind.startswith("tex") else {"buffer": SB}
    bg = dev.create_bind_group(layout=p.get_bind_group_layout(0), entries=[{"binding": 0, "resource": res}, {"binding": 1, "resource": {"buffer": Y}}])
    def run():
        e = dev.create_command_encoder(); c = e.begin_compute_pass(); c.set_pipeline(p); c.set_bind_group(0, bg); c.dispatch_workgroups(NWG); c.end()
        dev.queue.submit([e.finish()]); dev.queue.read_buffer(Y, 0, 4)
    run(); ts = []
    for _ in range(3):
        t = time.perf_counter(); run(); ts.append(time.perf_counter() - t)
    print(f"{kind:8s} {min(ts)*1e3:7.2f} ms  {min(ts)*1e9/(NWG*WG*ITERS):6.2f} ns/lane-load(16B)")
