"""lavapipe probe (issue 10): the cost of one dispatch (a trivial kernel, n dispatches in one compute
pass, each reading and writing the same buffer), encoding included.

    python3 bench/diag/lavapipe_dispatch_cost.py
"""
import os, time
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
import numpy as np, wgpu
ad = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
dev = ad.request_device_sync()
Y = dev.create_buffer(size=1 << 16, usage=wgpu.BufferUsage.STORAGE | wgpu.BufferUsage.COPY_SRC)
for wg, groups in ((1, 1), (64, 1), (8, 64)):
    sm = dev.create_shader_module(code=f"@group(0) @binding(0) var<storage, read_write> Y: array<f32>;\n@compute @workgroup_size({wg}) fn main(@builtin(global_invocation_id) g: vec3<u32>) {{ Y[g.x] = Y[g.x] + 1.0; }}")
    p = dev.create_compute_pipeline(layout="auto", compute={"module": sm, "entry_point": "main"})
    bg = dev.create_bind_group(layout=p.get_bind_group_layout(0), entries=[{"binding": 0, "resource": {"buffer": Y}}])
    for n in (1, 250):
        def run():
            e = dev.create_command_encoder(); c = e.begin_compute_pass(); c.set_pipeline(p); c.set_bind_group(0, bg)
            for _ in range(n): c.dispatch_workgroups(groups)
            c.end(); dev.queue.submit([e.finish()]); dev.queue.read_buffer(Y, 0, 4)
        run(); ts = []
        for _ in range(5):
            t = time.perf_counter(); run(); ts.append(time.perf_counter() - t)
        print(f"wg {wg} x {groups} groups, {n} dispatches: {min(ts)*1e3:.2f} ms, {min(ts)*1e6/n:.1f} us each")
