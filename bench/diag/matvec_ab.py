"""A/B of decode matvec kernels: this tree's matvec.wgsl against another copy of it, per type.

    python bench/diag/matvec_ab.py --old OLD.wgsl [--types Q4_0,Q2_K,...] [--rounds 3]
        [--config NAME[@old|@PATH]:TYPE=PAIRS[/UNROLL[/TPR]],...[,sum=shared][,wg=N]] ...

Each type's weights (random, K x N, cycled past the L2 as in bench_linear) are uploaded
once; then, in interleaved rounds, every configuration times every type (bench_linear's
timing: GPU timestamps); in the first round each configuration's result is checked against
float64 numpy (printed, "WRONG" past 1e-5 of the largest output). Configurations: "old" (OLD.wgsl: e.g. matvec.wgsl as committed,
saved before an edit), "new" (this tree), and each --config: this tree (or OLD.wgsl with @old)
with some types' matvec tiling replaced (row pairs, unrolling, invocations per row group), and
with sum=shared the row sums through workgroup memory even where the device has subgroups,
with wg=N workgroups of N invocations; NAME@PATH takes its matvec.wgsl from PATH.
Prints each type's median
GB/s per configuration and its ratio to Q4_0's median in the same configuration.
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
from wgllm.kernels import ops, qtypes, registry  # noqa: E402

_LOAD = registry.load_source
_TYPES = dict(qtypes.TYPES)
_WG = L.MATVEC_WG


def configure(dev, old_src: str | None, over: dict) -> None:
    """Later dispatches use `old_src` as matvec.wgsl (None: this tree's), and for each type
    in `over` its fields replaced (pairs, unroll, tpr; key "sum": "shared" hides subgroups)."""
    qtypes.TYPES.clear()
    qtypes.TYPES.update(_TYPES)
    registry.load_source = _LOAD if old_src is None else (lambda name: old_src if name == "matvec" else _LOAD(name))
    for n, fields in over.items():
        if n not in ("sum", "wg"):
            qtypes.TYPES[n] = dataclasses.replace(qtypes.TYPES[n], **fields)
    ops._SUBGROUP.pop(dev, None)
    if over.get("sum") == "shared":
        ops._SUBGROUP[dev] = 0
    L.MATVEC_WG = int(over.get("wg", _WG))
    dev._pipelines.clear()


def parse_config(spec: str, old_src: str):
    """NAME[@old|@PATH]:TYPE=PAIRS[/UNROLL[/TPR]],...[,sum=shared][,wg=N] -> (name, source, overrides)."""
    name, _, rest = spec.partition(":")
    src = None
    if "@" in name:  # NAME@old, or NAME@PATH: another matvec.wgsl
        path = name.partition("@")[2]
        src = old_src if path == "old" else open(path).read()
    over: dict = {}
    for item in filter(None, rest.split(",")):
        t, _, val = item.partition("=")
        if t in ("sum", "wg"):
            over[t] = val
            continue
        over[t] = dict(zip(("pairs", "unroll", "tpr"), (int(v) for v in val.split("/"))))
    return name, src, over


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True)
    ap.add_argument("--types", default="Q4_0,Q2_K,Q3_K,Q5_0")
    ap.add_argument("--shape", default="4096x14336")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--config", action="append", default=[])
    ap.add_argument("--gpu-kernels", action="store_true",
                    help="on a CPU adapter, build the GPU kernels anyway (checks configurations on lavapipe)")
    args = ap.parse_args()
    old_src = open(args.old).read()
    info = choose_adapter(None)
    has_ts = "timestamp-query" in info.adapter.features
    dev = Device(B._TimestampAdapter(info.adapter) if has_ts else info.adapter)
    dev.timestamps = has_ts
    if args.gpu_kernels:
        dev.kind = "gpu"
    dev._sync = dev.buffer(4, "bench sync")
    print(f"adapter: {info.summary}; timing: {'GPU timestamps' if has_ts else 'wall clock'}", flush=True)
    K, N = (int(v) for v in args.shape.split("x"))
    rng = np.random.default_rng(0)
    names = args.types.split(",")
    data, refs = {}, {}
    xh = rng.standard_normal((1, K)).astype(np.float32)
    for name in names:
        raw = L.random_weight_bytes(rng, Q[name], N, K)
        refs[name] = dequantize(raw.reshape(N, -1), Q[name]).reshape(N, K).astype(np.float64) @ xh[0].astype(np.float64)
        copies = min(B.MAX_COPIES, max(1, -(-B.COLD_BYTES // raw.nbytes)))
        data[name] = (raw.nbytes, [L.upload_weight(dev, [raw], Q[name], K, "ab w") for _ in range(copies)])
    x = dev.upload(xh, "ab x")
    y = dev.buffer(N * 4, "ab y")
    step = ops.step_buffer(dev, "ab step")
    ops.write_step(dev, step, 1, 0)
    configs = {"old": (old_src, {}), "new": (None, {})}
    for spec in args.config:
        name, src, over = parse_config(spec, old_src)
        configs[name] = (src, over)
    res: dict = {}
    for r in range(args.rounds):
        for cname, (src, over) in configs.items():
            configure(dev, src, over)
            for name in names:
                nbytes, weights = data[name]
                per_w = [L.linear(dev, w, x, y, 1, step) for w in weights]
                if r == 0:  # each configuration's result against float64 numpy, once
                    dev.run(per_w[0])
                    got = dev.read_array(y, np.float32, N).astype(np.float64)
                    err = float(np.abs(got - refs[name]).max() / np.abs(refs[name]).max())
                    print(f"check {cname:8s} {name:6s} max rel. error vs numpy {err:.2e}"
                          f"{'  WRONG' if not err < 1e-5 else ''}", flush=True)
                dispatches = [d for i in range(args.iters) for d in per_w[i % len(weights)]]
                dt = B.timed(dev, dispatches) / args.iters
                res.setdefault((cname, name), []).append(dt)
                print(f"round {r} {cname:8s} {name:6s} {dt * 1e6:7.1f} us {nbytes / dt / 1e9:7.1f} GB/s", flush=True)
    configure(dev, None, {})
    print(f"\n{args.shape}: median over {args.rounds} rounds (us/call, GB/s, per byte vs Q4_0 in the same configuration)")
    for cname, (_, over) in configs.items():
        if over.get("sum") or over.get("wg"):
            print(f"{cname}: row sums {over.get('sum', 'auto')}, workgroup {over.get('wg', _WG)}")
        base = data["Q4_0"][0] / statistics.median(res[(cname, "Q4_0")]) if "Q4_0" in names else None
        for name in names:
            dt = statistics.median(res[(cname, name)])
            bps = data[name][0] / dt  # bytes per second
            ratio = f"{bps / base:5.2f}" if base else "  -  "
            t = dataclasses.replace(_TYPES[name], **over.get(name, {}))
            print(f"{cname:8s} {name:6s} p{t.pairs}/u{t.unroll}/t{t.tpr} {dt * 1e6:7.1f} us {bps / 1e9:7.1f} GB/s"
                  f"  x{ratio}")


if __name__ == "__main__":
    main()
