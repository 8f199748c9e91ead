"""What the supervised worker process costs: decode speed through the worker's channel vs in-process,
and a killed worker's memory coming back.

Usage:
    python bench/bench_worker.py --shape smollm2-135m --types Q4_1 [--model FILE.gguf]
        [--prompt 64] [--gen 256] [--reps 5] [--rounds 3] [--precision auto] [--json OUT.json]

The in-process Engine and the Supervisor load the same model, each in a process of its own, in
turns (`--rounds` pairs, so drift hits both alike): greedy (argmax on the GPU, 4 bytes read per token) and sampled
(temperature 0.8: a logits row per token on the host). Figures are medians of decode tok/s as the
caller sees the tokens. Then the worker is SIGKILLed and the memory it held is read again: the
machine's available host memory (psutil) and, on NVIDIA, the GPU's used memory (NVML).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import commit


def _decode(eng, prompt, gen, sampling) -> float:
    eng.reset()
    n = sum(1 for _ in eng.generate(prompt, max_tokens=gen, stop_ids=[], sampling=sampling))
    assert n == gen, n
    return eng.stats.decode_tok_s


def _gpu_used() -> int | None:
    """Bytes used on GPU 0 (NVML), or None without NVIDIA."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used)
    except Exception:  # noqa: BLE001 - no NVIDIA GPU or driver here
        return None


def memory_after_kill(path, args) -> dict:
    """Host and GPU memory with no worker, with a loaded worker, and after SIGKILL to it."""
    import psutil

    from wgllm.runtime.supervisor import Supervisor

    def now():
        time.sleep(1.0)
        return dict(host_available=psutil.virtual_memory().available, gpu_used=_gpu_used())

    base = now()
    sup = Supervisor(str(path), ctx=args.prompt + args.gen + 8, precision=args.precision)
    list(sup.generate(list(range(1, 33)), max_tokens=8, stop_ids=[]))
    worker = psutil.Process(sup.pid)
    loaded = dict(now(), worker_rss=worker.memory_info().rss)
    os.kill(sup.pid, signal.SIGKILL)
    sup.release()  # reaps it
    after = now()
    sup.close()
    return dict(base=base, loaded=loaded, after_kill=after, worker_gone=not psutil.pid_exists(worker.pid))


def one(args) -> dict:
    """Decode tok/s of one engine kind (args.one: "in-process" or "worker"), greedy and sampled, in
    this process with no other engine: reps after a warm-up."""
    from wgllm.runtime.engine import Engine
    from wgllm.runtime.sampler import SamplingParams
    from wgllm.runtime.supervisor import Supervisor

    make = Engine if args.one == "in-process" else Supervisor
    eng = make(str(args.model), ctx=args.prompt + args.gen + 8, precision=args.precision, chunk=args.chunk)
    prompt = np.random.default_rng(0).integers(0, eng.cfg.n_vocab, args.prompt).tolist()
    out = {"adapter": eng.adapter_summary, "precision": eng.precision}
    for name, sampling in (("greedy", None), ("sampled", SamplingParams(temperature=0.8, seed=1))):
        out[name] = [_decode(eng, prompt, args.gen, sampling) for _ in range(args.reps + 1)][1:]
    eng.close()
    return out


def restart_time(path, args) -> dict:
    """A worker SIGKILLed at the 4th decoded token: seconds from the death's detection to the
    generation going on in a new worker (its load and the KV replay included), and the output check."""
    from wgllm.runtime.supervisor import Supervisor

    opts = dict(ctx=args.prompt + args.gen + 8, precision=args.precision)
    prompt = list(range(1, args.prompt + 1))
    clean = Supervisor(str(path), **opts)
    want = list(clean.generate(prompt, max_tokens=16, stop_ids=[]))
    clean.close()
    sup = Supervisor(str(path), faults="kill@decode:4", **opts)
    t = time.perf_counter()
    got = list(sup.generate(prompt, max_tokens=16, stop_ids=[]))
    took = time.perf_counter() - t
    cont = [ev.duration_s for ev in sup.events if ev.action == "continued"]
    sup.close()
    return dict(exact=got == want, restart_s=cont[0] if cont else None, generation_s=took)


def run(args) -> dict:
    """Alternate in-process and worker runs, each in a fresh process of its own (so that neither
    shares the GPU or the host with the other), `rounds` times; medians over every rep."""
    import subprocess

    from wgllm.testing import synth

    path = args.model
    if path is None:
        path = Path(tempfile.mkdtemp()) / f"{args.shape}.gguf"
        synth.write_llama_gguf(path, synth.SHAPES[args.shape], types=args.types, seed=0, fast=True)
    runs = {"in-process": [], "worker": []}
    for _ in range(args.rounds):
        for kind in runs:
            cmd = [sys.executable, __file__, "--one", kind, "--model", str(path), "--prompt", str(args.prompt),
                   "--gen", str(args.gen), "--reps", str(args.reps), "--precision", args.precision]
            if args.chunk:
                cmd += ["--chunk", str(args.chunk)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs[kind].append(json.loads(res.stdout.strip().splitlines()[-1]))
    first = runs["in-process"][0]
    out = {}
    for name in ("greedy", "sampled"):
        a = [x for r in runs["in-process"] for x in r[name]]
        b = [x for r in runs["worker"] for x in r[name]]
        ia, ib = statistics.median(a), statistics.median(b)
        out[name] = dict(in_process_tok_s=ia, worker_tok_s=ib, cost_pct=100 * (1 - ib / ia),
                         per_token_us=1e6 * (1 / ib - 1 / ia), in_process_runs=a, worker_runs=b)
    mem = memory_after_kill(path, args)
    return dict(shape=args.shape, types=args.types, adapter=first["adapter"], precision=first["precision"],
                prompt=args.prompt, gen=args.gen, reps=args.reps, rounds=args.rounds, **out, memory=mem,
                restart=restart_time(path, args),
                commit=commit(), date=time.strftime("%Y-%m-%d"), host=platform.node())


p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--shape", default="smollm2-135m")
p.add_argument("--types", default="Q4_1")
p.add_argument("--model", type=Path, default=None)
p.add_argument("--prompt", type=int, default=64)
p.add_argument("--gen", type=int, default=256)
p.add_argument("--reps", type=int, default=5)
p.add_argument("--chunk", type=int, default=None)
p.add_argument("--precision", default="auto")
p.add_argument("--json", type=Path, default=None)
p.add_argument("--rounds", type=int, default=3, help="in-process / worker process pairs")
p.add_argument("--one", default=None, help=argparse.SUPPRESS)


def main() -> None:
    args = p.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    if args.one:
        print(json.dumps(one(args)))
        return
    r = run(args)
    print(json.dumps({k: v for k, v in r.items()}, indent=1, default=str))
    for name in ("greedy", "sampled"):
        x = r[name]
        print(f"| {r['shape']} {r['types']} {name} | {r['adapter']} | {r['precision']} | in-process "
              f"{x['in_process_tok_s']:.1f} tok/s | worker {x['worker_tok_s']:.1f} tok/s | cost {x['cost_pct']:+.2f}% "
              f"({x['per_token_us']:+.0f} us/token) |")
    m = r["memory"]
    gpu = [m[k]["gpu_used"] for k in ("base", "loaded", "after_kill")]
    host = [m[k]["host_available"] >> 20 for k in ("base", "loaded", "after_kill")]
    print(f"memory: host available MiB base/loaded/after kill {host}; GPU used {gpu}; "
          f"worker rss {m['loaded']['worker_rss'] >> 20} MiB; reaped {m['worker_gone']}")
    x = r["restart"]
    print(f"restart after SIGKILL at decode 4: {x['restart_s']:.2f} s to go on (exact: {x['exact']})")
    if args.json:
        args.json.write_text(json.dumps(r, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
