"""Probe (issue 13): the decode matvec of aligned block groups (matwide.wgsl, kernels/rowdot.py
`wide`) at several tilings, against matvec, per product shape of the 8B.

matwide takes rowdot's generated body (a group of G blocks whose bytes are a multiple of 16,
every field at a constant offset in the loaded vec4s) and runs it GPU-style: a row group of TPR
invocations shares R rows, invocation l takes block groups l, l + TPR, ... (so the row group
reads consecutive 16-byte words: coalesced), then the TPR partial sums of each row are added by
subgroup shuffles. matvec reads a Q4_0 block with six u32 loads and funnel shifts (18-byte
blocks); here 8 blocks are 9 vec4 loads. The engine picks one tiling per shape
(linear.wide_tiling); this probe times others beside it.

    python3 bench/diag/wide_probe.py [--types Q4_0,Q4_1,Q8_0,Q4_K] [--shapes 14336x4096,...]
        [--configs TPR/R/WG[/lazy],...] [--precision f16|f32] [--rounds 3] [--glu] [--isolated]

Needs rows of whole 16-byte groups (K a multiple of 256 for Q4_0); row sums by shuffles where
the subgroup is a multiple of TPR, else through workgroup memory. Each configuration is checked once against
float64 numpy ("WRONG" past 1e-5 of the largest output) and timed as bench_linear times
(GPU timestamps over many calls, weight copies cycled past the L2), interleaved rounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import bench_linear as B  # noqa: E402

from wgllm.gpu.device import Device  # noqa: E402
from wgllm.gpu.discovery import choose_adapter  # noqa: E402
from wgllm.kernels import linear as L  # noqa: E402
from wgllm.kernels import ops, qtypes  # noqa: E402


def run_with(dev, w, xb, yb, step, f16: bool, tiling, wg: int = 128, glu: bool = False, lazy: bool = False):
    """linear's decode dispatches for w with matwide at `tiling` (TPR, R) and workgroup wg, or
    with matvec (tiling None). A type without qtypes' `wide` (Q4_K) is read by matwide here too."""
    saved = L.MATWIDE_TILING, L.MATWIDE_WG, L.MATWIDE_MAX_ROWS, qtypes.TYPES[w.qtype.name], L.MATWIDE_LAZY, L.MATWIDE
    L.MATWIDE_TILING, L.MATWIDE_WG, L.MATWIDE_LAZY, L.MATWIDE = tiling, wg, lazy, True
    L.MATWIDE_MAX_ROWS = 1 << 30 if tiling else -1
    qtypes.TYPES[w.qtype.name] = dataclasses.replace(saved[3], wide=True)
    try:
        act = "f16" if f16 else "f32"
        return L.linear(dev, w, xb, yb, 1, step, x_type=act, y_type="f32", glu=glu)
    finally:
        (L.MATWIDE_TILING, L.MATWIDE_WG, L.MATWIDE_MAX_ROWS, qtypes.TYPES[w.qtype.name], L.MATWIDE_LAZY,
         L.MATWIDE) = saved


def isolated(dev, per_w: list, iters: int) -> float:
    """Median GPU time (s) of one product alone: each call in its own timestamped pass, as the
    engine's chain of dependent kernels sees it (bench_linear's `timed` puts many calls in one
    pass, where a kernel's tail overlaps the next call's start)."""
    import wgpu

    qs = dev.device.create_query_set(type="timestamp", count=2 * iters)
    res = dev.buffer(16 * iters, "probe ts", wgpu.BufferUsage.QUERY_RESOLVE | wgpu.BufferUsage.COPY_SRC)
    enc = dev.device.create_command_encoder()
    for i in range(iters):
        cpass = enc.begin_compute_pass(timestamp_writes={
            "query_set": qs, "beginning_of_pass_write_index": 2 * i, "end_of_pass_write_index": 2 * i + 1})
        for d in per_w[i % len(per_w)]:
            d.encode(cpass)
        cpass.end()
    enc.resolve_query_set(qs, 0, 2 * iters, res, 0)
    dev.queue.submit([enc.finish()])
    ts = np.frombuffer(dev.read(res), np.uint64).astype(np.int64).reshape(iters, 2)
    return float(np.median(ts[:, 1] - ts[:, 0])) * 1e-9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default="Q4_0,Q4_K")
    ap.add_argument("--shapes", default="14336x4096,4096x4096,4096x1024,4096x6144,4096x28672")
    ap.add_argument("--configs", default="32/4/128,32/2/128,32/1/128,16/4/128,16/2/128,8/4/128,32/2/256")
    ap.add_argument("--precision", default="f16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--glu", action="store_true", help="x = silu(gate) * up from a [1, 2K] x (the FFN down product)")
    ap.add_argument("--isolated", action="store_true", help="time each call in its own pass (see isolated)")
    ap.add_argument("--gpu-kernels", action="store_true", help="on a CPU adapter: time matvec, not rowdot")
    a = ap.parse_args()
    info = choose_adapter(None)
    has_ts = "timestamp-query" in info.adapter.features
    dev = Device(B._TimestampAdapter(info.adapter) if has_ts else info.adapter)
    dev.timestamps = has_ts
    dev._sync = dev.buffer(4, "bench sync")
    if a.gpu_kernels:
        dev.kind = "gpu"
    sg = ops.subgroup_size(dev)
    f16 = a.precision == "f16"
    print(f"adapter: {info.summary}; subgroup size {sg}; {a.precision} x; timing: "
          f"{'GPU timestamps' if has_ts else 'wall clock'}", flush=True)
    rng = np.random.default_rng(0)
    configs = [(*(int(v) for v in c.split("/")[:3]), c.endswith("/lazy")) for c in a.configs.split(",")]
    for shape in a.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        for name in a.types.split(","):
            qt = Q[name]
            raw = L.random_weight_bytes(rng, qt, N, K)
            xh = rng.standard_normal((1, 2 * K if a.glu else K)).astype(np.float16 if f16 else np.float32)
            xin = xh[0].astype(np.float64)
            if a.glu:
                xin = xin[:K] / (1 + np.exp(-xin[:K])) * xin[K:]
            ref = dequantize(raw.reshape(N, -1), qt).reshape(N, K).astype(np.float64) @ xin
            copies = min(B.MAX_COPIES, max(1, -(-B.COLD_BYTES // raw.nbytes)))
            ws = [L.upload_weight(dev, [raw], qt, K, "wide w") for _ in range(copies)]
            xb, yb = dev.upload(xh, "wide x"), dev.buffer(N * 4, "wide y")
            step = ops.step_buffer(dev, "wide step")
            ops.write_step(dev, step, 1, 0)
            runs = {"matvec": lambda w: run_with(dev, w, xb, yb, step, f16, None, glu=a.glu)}
            for tpr, R, wg, lazy in configs:
                shuffle = sg >= tpr and sg % tpr == 0
                runs[f"wide t{tpr}/r{R}/wg{wg}{'' if shuffle else '/shared'}{'/lazy' if lazy else ''}"] = (
                    lambda w, c=(tpr, R, wg, lazy): run_with(dev, w, xb, yb, step, f16, c[:2], c[2], glu=a.glu,
                                                             lazy=c[3]))
            res: dict = {}
            for r in range(a.rounds):
                for label, make in runs.items():
                    try:
                        per_w = [make(w) for w in ws]
                    except Exception as e:  # noqa: BLE001 (a probe: report and go on)
                        if r == 0:
                            print(f"{shape} {name} {label}: {type(e).__name__}: {str(e)[:200]}", flush=True)
                        continue
                    if r == 0:
                        dev.run(per_w[0])
                        got = dev.read_array(yb, np.float32, N).astype(np.float64)
                        err = float(np.abs(got - ref).max() / np.abs(ref).max())
                        if not err < 1e-5:
                            print(f"{shape} {name} {label}: WRONG, max rel. error {err:.2e}", flush=True)
                    if a.isolated:
                        res.setdefault(label, []).append(isolated(dev, per_w, a.iters))
                        continue
                    ds = [d for i in range(a.iters) for d in per_w[i % len(per_w)]]
                    res.setdefault(label, []).append(B.timed(dev, ds) / a.iters)
            for label, ts in res.items():
                dt = statistics.median(ts)
                print(f"{shape:>11s} {name:5s} {label:28s} {dt * 1e6:7.1f} us {raw.nbytes / dt / 1e9:7.1f} GB/s",
                      flush=True)
            for w in ws:
                for buf, _, _ in w.chunks:
                    dev.release(buf)
            for b in (xb, yb, step):
                dev.release(b)


if __name__ == "__main__":
    main()
