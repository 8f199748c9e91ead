"""Decode matvec (T = 1) of every runnable type on one GPU, per byte against Q4_0.

    python bench/diag/matvec_types.py [--shape 4096x14336] [--types Q4_0,Q5_0,...] [--variants]

For each type and shape: time per call (bench_linear's timing: GPU timestamps,
weights cycled past the L2) and the weight bandwidth (bytes / time), with the
ratio to Q4_0's bandwidth on the same shape. --variants adds diagnostic kernel
variants of Q4_0 (x read from one fixed 128-byte line; row pairs / unroll) to see
what bounds the kernel. --x f16 times f16 activations.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as Q

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import bench_linear as B  # noqa: E402

from wgllm.gpu.device import Device  # noqa: E402
from wgllm.gpu.discovery import choose_adapter  # noqa: E402
from wgllm.kernels import linear as L  # noqa: E402
from wgllm.kernels import ops, qtypes, registry  # noqa: E402


def time_type(dev, qtype, K, N, rng, iters, x_type):
    raw = L.random_weight_bytes(rng, qtype, N, K)
    copies = min(B.MAX_COPIES, max(1, -(-B.COLD_BYTES // raw.nbytes)))
    weights = [L.upload_weight(dev, [raw], qtype, K, "bench w") for _ in range(copies)]
    np_x = np.float16 if x_type == "f16" else np.float32
    x = dev.upload(rng.standard_normal((1, K)).astype(np_x), "bench x")
    y = dev.buffer(N * 4, "bench y")
    step = ops.step_buffer(dev, "bench step")
    ops.write_step(dev, step, 1, 0)
    per_w = [L.linear(dev, w, x, y, 1, step, x_type=x_type, y_type=x_type) for w in weights]
    dispatches = [d for i in range(iters) for d in per_w[i % copies]]
    dt = B.timed(dev, dispatches) / iters
    for w in weights:
        for buf, _, _ in w.chunks:
            dev.release(buf)
    for b in (x, y, step):
        dev.release(b)
    return dt, raw.nbytes


_ORIG_LOAD = registry.load_source


def _no_lookup(s):
    return s.replace("return vec4<f32>(kvt[w & 15u], kvt[(w >> 8u) & 15u], kvt[(w >> 16u) & 15u], kvt[(w >> 24u) & 15u]);",
                     "return mq(w & 0x0f0f0f0fu, SH_LO, 0xffu) - TWO23;")


VARIANTS = [  # (name, matvec.wgsl edit, types)
    ("no-lookup", _no_lookup, ("IQ4_NL", "IQ4_XS")),
]


def with_source(dev, edit):
    """Run later dispatches with matvec.wgsl edited by `edit` (None: the original)."""

    def load(name):
        src = _ORIG_LOAD(name)
        return edit(src) if (edit and name == "matvec") else src

    registry.load_source = load if edit else _ORIG_LOAD
    dev._pipelines.clear()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", action="append")
    ap.add_argument("--types", default=",".join(n for n, t in qtypes.TYPES.items() if t.runnable))
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--variants", action="store_true")
    ap.add_argument("--x", default="f32")
    ap.add_argument("--rounds", type=int, default=0,
                    help="instead: this many interleaved rounds of every type x matvec tiling (G4P2U1, G4P1U1, "
                         "G4P2U2, G4P1U2) on the first shape; prints min and median GB/s")
    args = ap.parse_args()
    info = choose_adapter(None)
    has_ts = "timestamp-query" in info.adapter.features
    dev = Device(B._TimestampAdapter(info.adapter) if has_ts else info.adapter)
    dev.timestamps = has_ts
    dev._sync = dev.buffer(4, "bench sync")
    print(f"adapter: {info.summary}; timing: {'GPU timestamps' if has_ts else 'wall clock'}; x {args.x}")
    rng = np.random.default_rng(0)
    shapes = args.shape or ["4096x14336", "14336x4096"]
    if args.rounds:
        return rounds(dev, rng, shapes[0], args)
    rows = []
    for shape in shapes:
        K, N = (int(v) for v in shape.split("x"))
        base = None
        for name in ["Q4_0"] + [t for t in args.types.split(",") if t != "Q4_0"]:
            qt = Q[name]
            if K % qtypes.qtype(name).block:
                continue
            dt, nb = time_type(dev, qt, K, N, rng, args.iters, args.x)
            gbs = nb / dt / 1e9
            base = base or gbs
            rows.append((shape, name, dt * 1e6, gbs, gbs / base))
            print(f"{shape:11s} {name:7s} {dt * 1e6:8.1f} us {gbs:7.1f} GB/s  x{gbs / base:.2f} of Q4_0", flush=True)
        if args.variants and shape == shapes[0]:
            for vname, edit, names in VARIANTS:
                with_source(dev, edit)
                for name in names:
                    dt, nb = time_type(dev, Q[name], K, N, rng, args.iters, args.x)
                    print(f"{shape:11s} {name:7s} {vname:14s} {dt * 1e6:8.1f} us {nb / dt / 1e9:7.1f} GB/s", flush=True)
            with_source(dev, None)
            for g, p, u in ((4, 1, 1), (4, 2, 2)):
                L.MATVEC_GROUPS, L.MATVEC_PAIRS, L.MATVEC_UNROLL = g, p, u
                dev._pipelines.clear()
                for name in ("Q4_0", "BF16", "Q5_0", "Q5_1", "IQ4_NL", "Q2_K", "Q3_K", "Q5_K", "IQ4_XS"):
                    dt, nb = time_type(dev, Q[name], K, N, rng, args.iters, args.x)
                    print(f"{shape:11s} {name:7s} G{g}P{p}U{u}         {dt * 1e6:8.1f} us {nb / dt / 1e9:7.1f} GB/s",
                          flush=True)
            L.MATVEC_GROUPS, L.MATVEC_PAIRS, L.MATVEC_UNROLL = 4, None, 1
            dev._pipelines.clear()
    print("\nshape       type      us/call    GB/s   per byte vs Q4_0")
    for shape, name, us, gbs, r in rows:
        print(f"{shape:11s} {name:7s} {us:9.1f} {gbs:8.1f}   {r:5.2f}")


def rounds(dev, rng, shape, args):
    K, N = (int(v) for v in shape.split("x"))
    configs = [(4, 2, 1), (4, 1, 1), (4, 2, 2), (4, 1, 2)]
    names = [t for t in args.types.split(",") if K % qtypes.qtype(t).block == 0]
    res = {}
    for r in range(args.rounds):
        for g, p, u in configs:
            L.MATVEC_GROUPS, L.MATVEC_PAIRS, L.MATVEC_UNROLL = g, p, u
            dev._pipelines.clear()
            for name in names:
                dt, nb = time_type(dev, Q[name], K, N, rng, args.iters, args.x)
                res.setdefault((name, (g, p, u)), []).append(nb / dt / 1e9)
        print(f"round {r} done", flush=True)
    base = max(res[("Q4_0", configs[0])])
    print(f"{shape} x {args.x}: GB/s max / median over {args.rounds} rounds (ratio: max over Q4_0 G4P2U1 max)")
    print("type    " + "".join(f"   G{g}P{p}U{u}            " for g, p, u in configs))
    for name in names:
        cells = []
        for c in configs:
            v = sorted(res[(name, c)])
            cells.append(f"{v[-1]:7.0f} {v[len(v) // 2]:6.0f} ({v[-1] / base:4.2f})")
        print(f"{name:7s} " + "  ".join(cells))


if __name__ == "__main__":
    main()
