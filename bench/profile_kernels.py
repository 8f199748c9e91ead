"""Where a forward pass spends its time: every dispatch timed with timestamp queries.

Usage:
    python bench/profile_kernels.py [--model FILE.gguf | --shape smollm2-135m --types Q4_1]
        [--precision auto] [--device X] [--prompt 40] [--pos 64] [--reps 5] [--batch N] [--json OUT.json]

Builds the model on one adapter (with the `timestamp-query` feature) and times
three passes: decode (one token at position --pos, with the logits head),
(with --batch N, also the batched decode pass: N sequences at --pos, one row each,)
prefill (--prompt tokens at position 0, with the head), and the same passes as
the engine submits them (wall time of one submission plus a 4-byte read-back).
Each dispatch runs in its own compute pass whose begin/end timestamps are
written; all of a pass's dispatches go in one submission. Times are medians over
--reps submissions, grouped by kernel and by the shape of its work. The table is
Markdown, ready for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from common import apply_set, commit, set_option

import numpy as np


def _build(args):
    import wgpu

    from wgllm.gpu.device import Device
    from wgllm.gpu.discovery import list_adapters
    from wgllm.hub import resolve_model
    from wgllm.model import arch as arches
    from wgllm.model.gguf import GGUFFile
    from wgllm.testing import synth

    path = args.model
    if path is None and args.shape:
        path = Path(tempfile.mkdtemp()) / f"{args.shape}.gguf"
        synth.write_llama_gguf(path, synth.SHAPES[args.shape], types=args.types, seed=0, fast=True)
    g = GGUFFile(resolve_model(str(path) if path else None))
    cfg = arches.config_for(g)
    adapters = list_adapters()
    a = adapters[0] if args.device is None else next(x for x in adapters if args.device in (str(x.index), x.name))
    dev = Device(a.adapter, features=["timestamp-query"])
    act = args.precision if args.precision != "auto" else ("f16" if dev.has_f16 else "f32")
    n_ctx = max(args.pos, args.prompt) + 8
    model = arches.build(dev, g.tensors, cfg, act=act, n_ctx=n_ctx, chunk=max(args.prompt, 2), n_seq=args.batch)
    model.write_tokens(np.zeros(n_ctx, np.uint32), 0)
    return wgpu, dev, model, a, act, g


def _time_dispatches(wgpu, dev, dispatches, reps: int, T: int) -> list[float]:
    """Median GPU time (s) of each dispatch, each in its own timestamped pass."""
    n = len(dispatches)
    qs = dev.device.create_query_set(type="timestamp", count=2 * n)
    res = dev.device.create_buffer(size=16 * n, usage=wgpu.BufferUsage.QUERY_RESOLVE | wgpu.BufferUsage.COPY_SRC)
    out = dev.device.create_buffer(size=16 * n, usage=wgpu.BufferUsage.MAP_READ | wgpu.BufferUsage.COPY_DST)
    samples = [[] for _ in range(n)]
    period = dev.device.queue.get_timestamp_period() if hasattr(dev.device.queue, "get_timestamp_period") else 1.0
    for rep in range(reps + 1):
        enc = dev.device.create_command_encoder()
        for i, d in enumerate(dispatches):
            cpass = enc.begin_compute_pass(timestamp_writes={
                "query_set": qs, "beginning_of_pass_write_index": 2 * i, "end_of_pass_write_index": 2 * i + 1})
            d.encode(cpass, T)
            cpass.end()
        enc.resolve_query_set(qs, 0, 2 * n, res, 0)
        enc.copy_buffer_to_buffer(res, 0, out, 0, 16 * n)
        dev.queue.submit([enc.finish()])
        out.map_sync(wgpu.MapMode.READ)
        ts = np.frombuffer(out.read_mapped(), np.uint64).copy()
        out.unmap()
        if rep:  # the first submission warms caches and compiles
            for i in range(n):
                samples[i].append(float(ts[2 * i + 1] - ts[2 * i]) * period * 1e-9)
    return [statistics.median(s) for s in samples]


def _wall(dev, model, dispatches, reps: int, T: int) -> float:
    """Median wall time (s) of the pass submitted as the engine does, plus a 4-byte read."""
    times = []
    for rep in range(reps + 1):
        t = time.perf_counter()
        dev.run(dispatches, T=T)
        dev.read(model.tokens, 0, 4)
        if rep:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def _key(d) -> str:
    return f"{d.name} {'x'.join(str(g) for g in d.groups)}"


def profile(args) -> dict:
    from wgllm.kernels import ops

    wgpu, dev, model, a, act, g = _build(args)
    passes = {"decode": (1, args.pos, model.decode + model.head),
              "prefill": (args.prompt, 0, model.prefill + model.head)}
    result = dict(adapter=a.summary, precision=act, model=str(g.path), prompt=args.prompt, pos=args.pos,
                  reps=args.reps, date=time.strftime("%Y-%m-%d"), commit=commit(), passes={})
    if args.batch > 1:  # --batch sequences, slot i at position --pos, one decode row each
        passes["batched decode"] = (args.batch, args.pos, model.batch)
        model.write_batch_tokens(np.zeros(args.batch, np.uint32))
    for name, (T, pos, ds) in passes.items():
        if name == "batched decode":
            ops.write_batch_step(dev, model.step, [(i, pos) for i in range(T)])
        else:
            ops.write_step(dev, model.step, T, pos)
        per = _time_dispatches(wgpu, dev, ds, args.reps, T)
        wall = _wall(dev, model, ds, args.reps, T)
        rows = defaultdict(lambda: [0, 0.0])
        for d, t in zip(ds, per):
            r = rows[_key(d)]
            r[0] += 1
            r[1] += t
        result["passes"][name] = dict(
            T=T, pos=pos, dispatches=len(ds), gpu_s=sum(per), wall_s=wall,
            kernels=sorted(([k, n, s] for k, (n, s) in rows.items()), key=lambda r: -r[2]))
    return result


def markdown(r: dict) -> str:
    lines = [f"Adapter {r['adapter']}, {r['precision']}, {Path(r['model']).name}, commit {r['commit']}, {r['date']}"]
    for name, p in r["passes"].items():
        lines += ["", f"{name}: T={p['T']} at position {p['pos']}, {p['dispatches']} dispatches; sum of kernel "
                      f"times {p['gpu_s'] * 1e3:.2f} ms, one submission + read-back {p['wall_s'] * 1e3:.2f} ms",
                  "", "| kernel, workgroups | count | total ms | share |", "|---|---|---|---|"]
        for k, n, s in p["kernels"]:
            lines.append(f"| {k} | {n} | {s * 1e3:.3f} | {s / p['gpu_s'] * 100:.1f}% |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="a GGUF file or model name (default: the default model)")
    p.add_argument("--shape", default=None, help="write a random-weight model of this shape instead")
    p.add_argument("--types", default="Q4_1")
    p.add_argument("--precision", default="auto")
    p.add_argument("--device", default=None)
    p.add_argument("--prompt", type=int, default=40)
    p.add_argument("--pos", type=int, default=64)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--batch", type=int, default=1, help="also profile the batched decode pass of this many sequences")
    set_option(p)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    apply_set(args)
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    r = profile(args)
    print(markdown(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    sys.exit(main())
