"""Recovery time after a real device loss in the middle of a generation.

Usage:
    python bench/bench_recovery.py --shape smollm2-135m --types Q4_1 [--prompt 64] [--gen 64] [--at 32]
        [--reps 3] [--json OUT.json]

A random-weight GGUF in the real tensor shapes is written (wgllm.testing.synth).
The engine generates `--gen` tokens greedily with no fault (the reference,
with per-token timestamps), then again with `lost@decode:AT`: the device is
really destroyed (`device.destroy()`) just before the AT-th decode step is
read. Reported: loss to next token (the gap between the tokens around the
loss, minus nothing: it includes detection, a new device, re-uploading the
weights, compiling the pipelines, replaying the KV cache and the next step),
the engine's own detected->continued time, the median token interval, and
whether the output equals the fault-free one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from common import commit


def timed_tokens(engine, prompt, n):
    """(tokens, perf_counter timestamp of each) of one greedy generation."""
    toks, stamps = [], []
    for tok in engine.generate(prompt, max_tokens=n, stop_ids=[]):
        toks.append(tok)
        stamps.append(time.perf_counter())
    return toks, stamps


def one_loss(engine, prompt, args, ref) -> dict:
    from wgllm.runtime import faults

    engine.reset()
    engine.faults.faults = faults.parse(f"lost@decode:{args.at}")
    n_events = len(engine.events)
    toks, stamps = timed_tokens(engine, prompt, args.gen)
    gaps = np.diff(stamps)
    events = engine.events[n_events:]
    cont = [e for e in events if e.action == "continued"]
    return dict(
        fired=list(engine.faults.fired[-1:]), identical=toks == ref,
        loss_to_next_token_s=float(gaps[args.at - 1]),  # token AT-1 -> token AT (0-based): the lost step
        engine_recovery_s=cont[0].duration_s if cont else None,
        events=[e.as_dict() for e in events],
    )


def run(args) -> dict:
    from wgllm.runtime.engine import Engine
    from wgllm.runtime.recovery import RecoveryPolicy
    from wgllm.testing import synth

    path = Path(tempfile.mkdtemp()) / f"{args.shape}.gguf"
    t = time.perf_counter()
    synth.write_llama_gguf(path, synth.SHAPES[args.shape], types=args.types, seed=0, fast=True)
    print(f"wrote {path.name} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    eng = Engine(str(path), ctx=args.prompt + args.gen + 8, precision=args.precision, faults="",
                 recovery=RecoveryPolicy(backoff_s=0.0))
    load_s = time.perf_counter() - t
    prompt = np.random.default_rng(0).integers(0, eng.cfg.n_vocab, args.prompt).tolist()
    timed_tokens(eng, prompt, args.gen)  # warm-up
    eng.reset()
    ref, stamps = timed_tokens(eng, prompt, args.gen)
    losses = [one_loss(eng, prompt, args, ref) for _ in range(args.reps)]
    return dict(
        shape=args.shape, types=args.types, adapter=eng.adapter.summary, precision=eng.precision,
        prompt=args.prompt, gen=args.gen, at=args.at, load_s=load_s,
        token_interval_ms=statistics.median(np.diff(stamps)) * 1e3,
        loss_to_next_token_s=statistics.median(x["loss_to_next_token_s"] for x in losses),
        engine_recovery_s=statistics.median(x["engine_recovery_s"] or float("nan") for x in losses),
        all_identical=all(x["identical"] for x in losses), losses=losses,
        date=time.strftime("%Y-%m-%d"), commit=commit(),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="smollm2-135m")
    p.add_argument("--types", default="Q4_1")
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--gen", type=int, default=64)
    p.add_argument("--at", type=int, default=32, help="decode step at which the device is destroyed")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--precision", default="auto")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    res = run(args)
    brief = {k: v for k, v in res.items() if k != "losses"}
    print(json.dumps(brief, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
