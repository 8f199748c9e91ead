"""Prefill / decode speed of the engine on a model shape, with the copy-bandwidth roof.

Usage:
    python bench/bench_engine.py --shape smollm2-135m --types Q4_1 [--model FILE.gguf]
        [--prompt 256] [--gen 128] [--precision auto] [--device X] [--json OUT.json]
        [--split 0:0-15,1:16-31 --adapters 0,0] [--depth 1]

Without --model, a random-weight GGUF in the real tensor shapes and types of
`--shape` is written first (see wgllm.testing.synth): speed does not depend
on the weight values. A fixed number of tokens is generated (EOS ignored).
The roof is a large device-to-device buffer copy through WebGPU, timed in the
same process (bytes read + written per second). --split places the model over
adapters (--adapters 0,0 presents adapter 0 as two: a device each); --depth sets
how many decode steps are queued ahead (a split model runs one at a time, so
`--depth 1` on the unsplit model isolates the cost of the cuts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import apply_set, commit, set_option


def copy_roof(dev, nbytes: int = 1 << 30, copies: int = 20, reps: int = 5) -> float:
    """GB/s (read + write) of device-to-device copies through WebGPU: `copies` copies of
    `nbytes` in one submission (alternating direction), median over `reps` submissions."""
    nbytes = min(nbytes, dev.max_buffer // 2) // 4 * 4
    a = dev.buffer(nbytes, "bench")
    b = dev.buffer(nbytes, "bench")
    times = []
    for i in range(reps + 1):
        enc = dev.device.create_command_encoder()
        for c in range(copies):
            src, dst = (a, b) if c % 2 == 0 else (b, a)
            enc.copy_buffer_to_buffer(src, 0, dst, 0, nbytes)
        dev.read(b, 0, 4)  # idle before timing
        t = time.perf_counter()
        dev.queue.submit([enc.finish()])
        dev.read(b, 0, 4)
        if i:
            times.append(time.perf_counter() - t)
    dev.release(a)
    dev.release(b)
    return 2 * nbytes * copies / statistics.median(times) / 1e9


def torch_copy_roof(nbytes: int = 1 << 30, reps: int = 20) -> float | None:
    """GB/s (read + write) of a torch CUDA device-to-device copy, or None without CUDA."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
    except ImportError:
        return None
    a = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    b.copy_(a)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        b.copy_(a)
    end.record()
    torch.cuda.synchronize()
    ms = start.elapsed_time(end) / reps
    del a, b
    torch.cuda.empty_cache()
    return 2 * nbytes / (ms / 1e3) / 1e9


def weight_bytes(engine) -> int:
    """Bytes of weights read per decoded token (every weight once; embedding: one row)."""
    g = engine.gguf
    total = sum(t.n_bytes for n, t in g.tensors.items() if n != "token_embd.weight")
    emb = g.tensors["token_embd.weight"]
    total += emb.n_bytes // emb.n_rows
    if engine.cfg.tied_embeddings:
        total += emb.n_bytes
    return total


def run(args) -> dict:
    from wgllm.runtime import engine as engine_mod
    from wgllm.runtime.engine import Engine
    from wgllm.testing import synth

    path = args.model
    if path is None:
        path = Path(tempfile.mkdtemp()) / f"{args.shape}.gguf"
        t = time.perf_counter()
        types = json.loads(args.types) if args.types.startswith("{") else args.types
        synth.write_llama_gguf(path, synth.SHAPES[args.shape], types=types, seed=0, fast=True)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    if args.adapters:
        os.environ["WGLLM_ADAPTERS"] = args.adapters
    if args.depth:
        engine_mod.PIPELINE_DEPTH = args.depth
    eng = Engine(str(path), device=args.device if args.split == "none" else None, ctx=args.prompt + args.gen + 8,
                 precision=args.precision, chunk=args.chunk, split=args.split)
    load_s = time.perf_counter() - t
    roof = copy_roof(eng.dev)
    troof = torch_copy_roof()
    prompt = np.random.default_rng(0).integers(0, eng.cfg.n_vocab, args.prompt).tolist()
    runs = []
    for _ in range(args.reps):
        eng.reset()
        n = sum(1 for _ in eng.generate(prompt, max_tokens=args.gen, stop_ids=[]))
        s = eng.stats
        runs.append(dict(prefill_tok_s=s.prefill_tok_s, decode_tok_s=s.decode_tok_s, ttft_ms=s.ttft_s * 1e3, n=n))
    med = {k: statistics.median(r[k] for r in runs) for k in ("prefill_tok_s", "decode_tok_s", "ttft_ms")}
    wb = weight_bytes(eng)
    return dict(
        shape=args.shape, types=args.types, model=str(path), adapter=eng.adapter_summary, split=args.split,
        parts=[list(p.layers) for p in eng.plan.parts], depth=1 if eng.plan.is_split else args.depth or engine_mod.PIPELINE_DEPTH,
        precision=eng.precision, prompt=args.prompt, gen=args.gen, reps=args.reps, load_s=load_s,
        weight_mib_per_token=wb / 2**20, copy_roof_gbs=roof, torch_copy_roof_gbs=troof, **med,
        decode_gbs=wb * med["decode_tok_s"] / 1e9, runs=runs,
        commit=commit(), date=time.strftime("%Y-%m-%d"), host=platform.node(),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="smollm2-135m")
    p.add_argument("--types", default="Q4_1", help='one type, a mix name, or JSON like {"default": "Q4_1", "token_embd": "Q8_0"}')
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--prompt", type=int, default=256)
    p.add_argument("--gen", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--precision", default="auto")
    p.add_argument("--device", default=None)
    p.add_argument("--split", default="none", help="none, auto, or a placement such as 0:0-15,1:16-31")
    p.add_argument("--adapters", default="", help="WGLLM_ADAPTERS for this run, e.g. 0,0: the GPU as two adapters")
    p.add_argument("--depth", type=int, default=0, help="decode steps queued ahead (0: the engine's default)")
    set_option(p)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    apply_set(args)
    r = run(args)
    r["set"] = args.set
    print(json.dumps({k: v for k, v in r.items() if k != "runs"}, indent=1))
    print(f"| {r['shape']} {r['types']} | {r['adapter']} | {r['precision']} | prefill {r['prefill_tok_s']:.0f} tok/s "
          f"| decode {r['decode_tok_s']:.1f} tok/s | TTFT {r['ttft_ms']:.0f} ms | {r['decode_gbs']:.0f} GB/s "
          f"of roof {r['copy_roof_gbs']:.0f} GB/s (torch copy: {r['torch_copy_roof_gbs'] or 0:.0f}) |")
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    sys.exit(main())
