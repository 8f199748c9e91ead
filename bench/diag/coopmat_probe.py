"""Probe: does this adapter run WGSL cooperative matrices (tensor cores) through wgpu-native, and how fast?

Usage: python bench/diag/coopmat_probe.py [--m 512 --n 4096 --k 4096] [--reps 20]

Prints the adapter's features and cooperative-matrix configurations, then for each kernel
variant: whether it compiles, its largest error against numpy (float64) on random inputs, and
its time per call (GPU timestamps, median of --reps) as TFLOP/s. Variants:

* f16_direct: Y[M,N] = X[M,K] W[N,K]^T, X and W f16 in storage, one 16x16 tile per subgroup,
  fragments loaded straight from storage (the raw tensor-core rate through naga).
* f16_tiled: a workgroup of 4 subgroups owns 64x64 of Y, X and W staged in workgroup memory
  per 32-wide k step, each subgroup 4 tiles.
* q4_0_tiled: as f16_tiled, W in GGUF Q4_0 blocks, dequantized to f16 into workgroup memory
  (the prefill / batched-decode kernel shape).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import wgpu

# Bindings of the f16 kernels: X [M, K], W [N, K] f16; Y [M, N] f32.
F16_BINDINGS = """
struct P { M: u32, N: u32, K: u32, _p: u32 }
@group(0) @binding(0) var<storage, read> X: array<f16>;
@group(0) @binding(1) var<storage, read> W: array<f16>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
"""

F16_DIRECT = """
enable f16;
enable wgpu_cooperative_matrix;
""" + F16_BINDINGS + """@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wid: vec3<u32>) {
    let m0 = wid.y * 16u;
    let n0 = wid.x * 16u;
    var acc = coop_mat16x16<f32, C>();
    for (var k = 0u; k < p.K; k += 16u) {
        let a = coopLoad<coop_mat16x16<f16, A>>(&X[m0 * p.K + k], p.K);
        let b = coopLoadT<coop_mat16x16<f16, B>>(&W[n0 * p.K + k], p.K);
        acc = coopMultiplyAdd(a, b, acc);
    }
    coopStore(acc, &Y[m0 * p.N + n0], p.N);
}
"""

# The same product without cooperative matrices (--plain: checks this script's host side on any
# adapter, lavapipe included): one invocation per output.
PLAIN = """
enable f16;
""" + F16_BINDINGS + """@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    let n = g.x;
    let m = g.y;
    var acc = 0.0;
    for (var k = 0u; k < p.K; k++) { acc += f32(X[m * p.K + k]) * f32(W[n * p.K + k]); }
    Y[m * p.N + n] = acc;
}
"""

# 64 tokens x 64 rows per workgroup of 128 (4 subgroups of 32); k steps of 32.
TILED_HEAD = """
enable f16;
enable wgpu_cooperative_matrix;
struct P { M: u32, N: u32, K: u32, _p: u32 }
@group(0) @binding(0) var<storage, read> X: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> W: array<{WT}>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
var<workgroup> Xs: array<f16, 2048>;   // [64 tokens][32 k]
var<workgroup> Ws: array<f16, 2048>;   // [64 rows][32 k]
"""

TILED_BODY = """
@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m0 = wid.y * 64u;
    let n0 = wid.x * 64u;
    let sg = lid / 32u;              // subgroup: token tile sg
    var c0 = coop_mat16x16<f32, C>();
    var c1 = coop_mat16x16<f32, C>();
    var c2 = coop_mat16x16<f32, C>();
    var c3 = coop_mat16x16<f32, C>();
    for (var k0 = 0u; k0 < p.K; k0 += 32u) {
        // X: 64 x 32 halves = 512 vec4, 4 per invocation
        for (var i = 0u; i < 4u; i++) {
            let e = lid + 128u * i;      // vec4 index in the tile
            let t = e / 8u;
            let kk = (e % 8u) * 4u;
            let v = X[((m0 + t) * p.K + k0 + kk) / 4u];
            Xs[t * 32u + kk] = v.x; Xs[t * 32u + kk + 1u] = v.y;
            Xs[t * 32u + kk + 2u] = v.z; Xs[t * 32u + kk + 3u] = v.w;
        }
        load_w(n0, k0, lid);
        workgroupBarrier();
        for (var kk = 0u; kk < 32u; kk += 16u) {
            let a = coopLoad<coop_mat16x16<f16, A>>(&Xs[sg * 512u + kk], 32u);
            c0 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&Ws[0u * 512u + kk], 32u), c0);
            c1 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&Ws[1u * 512u + kk], 32u), c1);
            c2 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&Ws[2u * 512u + kk], 32u), c2);
            c3 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&Ws[3u * 512u + kk], 32u), c3);
        }
        workgroupBarrier();
    }
    let o = (m0 + sg * 16u) * p.N + n0;
    coopStore(c0, &Y[o], p.N);
    coopStore(c1, &Y[o + 16u], p.N);
    coopStore(c2, &Y[o + 32u], p.N);
    coopStore(c3, &Y[o + 48u], p.N);
}
"""

LOAD_W_F16 = """
fn load_w(n0: u32, k0: u32, lid: u32) {
    for (var i = 0u; i < 4u; i++) {
        let e = lid + 128u * i;
        let n = e / 8u;
        let kk = (e % 8u) * 4u;
        let v = W[((n0 + n) * p.K + k0 + kk) / 4u];
        Ws[n * 32u + kk] = v.x; Ws[n * 32u + kk + 1u] = v.y;
        Ws[n * 32u + kk + 2u] = v.z; Ws[n * 32u + kk + 3u] = v.w;
    }
}
"""

# Q4_0: a block of 32 is 18 bytes (f16 d, 16 bytes of nibbles: element j = low nibble of
# byte j, element j + 16 = its high nibble). Invocation lid dequantizes half a block: row
# lid / 2, bytes 8 (lid % 2) .. +7 of the k step's block.
LOAD_W_Q4_0 = """
fn byte_at(b: u32) -> u32 { return (W[b / 4u] >> (8u * (b % 4u))) & 0xFFu; }
fn load_w(n0: u32, k0: u32, lid: u32) {
    let n = lid / 2u;
    let h = lid % 2u;
    let rb = (n0 + n) * (p.K / 32u) * 18u + (k0 / 32u) * 18u;
    let d = f16(unpack2x16float(byte_at(rb) | (byte_at(rb + 1u) << 8u)).x);
    for (var j = 0u; j < 8u; j++) {
        let q = byte_at(rb + 2u + 8u * h + j);
        Ws[n * 32u + 8u * h + j] = d * f16(i32(q & 15u) - 8);
        Ws[n * 32u + 16u + 8u * h + j] = d * f16(i32(q >> 4u) - 8);
    }
}
"""


def q4_0_pack(rng, n, k):
    """Random Q4_0 rows [n, k] -> (raw bytes, dequantized float64 [n, k])."""
    nb = k // 32
    d = (rng.standard_normal((n, nb)) * 0.02).astype(np.float16)
    q = rng.integers(0, 16, size=(n, nb, 32), dtype=np.uint8)
    qs = (q[:, :, :16] | (q[:, :, 16:] << 4)).astype(np.uint8)
    blocks = np.concatenate([d.view(np.uint8).reshape(n, nb, 2), qs], axis=2)
    w = d.astype(np.float64)[:, :, None] * (q.astype(np.float64) - 8)
    # as the kernel rounds it: f16(d * f16(q - 8)) -- d * (q - 8) rounded to f16
    w16 = (d.astype(np.float32)[:, :, None] * (q.astype(np.float32) - 8)).astype(np.float16)
    return blocks.reshape(-1).tobytes(), w.reshape(n, k), w16.astype(np.float64).reshape(n, k)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=512)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--k", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--plain", action="store_true", help="only the kernel without cooperative matrices")
    a = ap.parse_args()
    adapter = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
    print("adapter:", adapter.info.get("device"), adapter.info.get("backend_type"))
    feats = sorted(adapter.features)
    print("features:", feats)
    coop = "cooperative-matrix" in adapter.features and not a.plain
    if not coop and not a.plain:
        print("RESULT: no cooperative-matrix feature on this adapter")
        return 0
    try:
        props = adapter._get_cooperative_matrix_properties() if hasattr(adapter, "_get_cooperative_matrix_properties") else None
        print("coop props:", props)
    except Exception as exc:  # noqa: BLE001 - a probe
        print("coop props: n/a", exc)
    want = ["shader-f16", "timestamp-query"] + (["cooperative-matrix"] if coop else [])
    want += [f for f in ("subgroup", "subgroups") if f in adapter.features]
    lim = ("max-storage-buffer-binding-size", "max-buffer-size")
    dev = adapter.request_device_sync(required_features=want, required_limits={k: adapter.limits[k] for k in lim})
    rng = np.random.default_rng(1)
    M, N, K = a.m, a.n, a.k
    x = (rng.standard_normal((M, K))).astype(np.float16)
    wf = (rng.standard_normal((N, K)) * 0.02).astype(np.float16)
    wq_bytes, wq, wq16 = q4_0_pack(rng, N, K)
    # B = W^T as column-major (coopLoadT); f16_direct_rowmajor loads it with coopLoad (the wrong
    # layout if coopLoadT is column-major: a large error says which one naga means)
    variants = [] if coop else [("plain", PLAIN, wf.tobytes(), wf.astype(np.float64), (N // 16, M // 16))]
    variants += [] if not coop else [
        ("f16_direct", F16_DIRECT, wf.tobytes(), wf.astype(np.float64), (N // 16, M // 16)),
        ("f16_direct_rowmajor", F16_DIRECT.replace("coopLoadT<", "coopLoad<"), wf.tobytes(), wf.astype(np.float64),
         (N // 16, M // 16)),
        ("f16_tiled", TILED_HEAD.replace("{WT}", "vec4<f16>") + LOAD_W_F16 + TILED_BODY, wf.tobytes(),
         wf.astype(np.float64), (N // 64, M // 64)),
        ("q4_0_tiled", TILED_HEAD.replace("{WT}", "u32") + LOAD_W_Q4_0 + TILED_BODY, wq_bytes, wq16, (N // 64, M // 64)),
    ]
    U = wgpu.BufferUsage
    xb = dev.create_buffer_with_data(data=x.tobytes(), usage=U.STORAGE)
    yb = dev.create_buffer(size=M * N * 4, usage=U.STORAGE | U.COPY_SRC)
    pb = dev.create_buffer_with_data(data=np.array([M, N, K, 0], np.uint32).tobytes(), usage=U.UNIFORM)
    for name, src, wbytes, wref, grid in variants:
        if 0 in grid:
            print(f"RESULT {name}: skipped (M must be a multiple of {16 if 'direct' in name else 64}, N of 64)")
            continue
        try:
            sm = dev.create_shader_module(code=src)
            pipe = dev.create_compute_pipeline(layout="auto", compute={"module": sm, "entry_point": "main"})
        except Exception as exc:  # noqa: BLE001 - a probe
            print(f"RESULT {name}: does not compile: {str(exc)[:1500]}")
            continue
        wb = dev.create_buffer_with_data(data=wbytes, usage=U.STORAGE)
        bg = dev.create_bind_group(layout=pipe.get_bind_group_layout(0), entries=[
            {"binding": 0, "resource": {"buffer": xb}}, {"binding": 1, "resource": {"buffer": wb}},
            {"binding": 2, "resource": {"buffer": yb}}, {"binding": 3, "resource": {"buffer": pb}}])
        qs = dev.create_query_set(type="timestamp", count=2 * a.reps)
        qb = dev.create_buffer(size=16 * a.reps, usage=U.QUERY_RESOLVE | U.COPY_SRC)
        enc = dev.create_command_encoder()
        for r in range(a.reps):
            cp = enc.begin_compute_pass(timestamp_writes={"query_set": qs, "beginning_of_pass_write_index": 2 * r,
                                                          "end_of_pass_write_index": 2 * r + 1})
            cp.set_pipeline(pipe)
            cp.set_bind_group(0, bg)
            cp.dispatch_workgroups(*grid)
            cp.end()
        enc.resolve_query_set(qs, 0, 2 * a.reps, qb, 0)
        t0 = time.perf_counter()
        dev.queue.submit([enc.finish()])
        y = np.frombuffer(dev.queue.read_buffer(yb), np.float32).reshape(M, N).astype(np.float64)
        wall = time.perf_counter() - t0
        ts = np.frombuffer(dev.queue.read_buffer(qb), np.uint64).reshape(-1, 2)
        us = float(np.median((ts[:, 1] - ts[:, 0]).astype(np.float64))) / 1e3
        ref = x.astype(np.float64) @ wref.T
        err = float(np.max(np.abs(y - ref)) / (np.max(np.abs(ref)) + 1e-30))
        tf = 2 * M * N * K / (us * 1e-6) / 1e12
        print(f"RESULT {name}: M={M} N={N} K={K} rel.max.err={err:.2e} {us:.1f} us/call {tf:.1f} TFLOP/s "
              f"(wall {wall * 1e3:.0f} ms for {a.reps})")
        if name == "q4_0_tiled":
            err_exact = float(np.max(np.abs(y - x.astype(np.float64) @ wq.T)) / (np.max(np.abs(ref)) + 1e-30))
            print(f"  q4_0 against the unrounded weights: rel.max.err={err_exact:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
