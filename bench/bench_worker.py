"""What the supervised worker process costs: decode speed through the worker's channel vs in-process,
and a killed worker's memory coming back.

Usage:
    python bench/bench_worker.py --shape smollm2-135m --types Q4_1 [--model FILE.gguf]
        [--prompt 64] [--gen 256] [--reps 5] [--precision auto] [--json OUT.json]

The in-process Engine and the Supervisor load the same model; their generations alternate (rep by
rep, so drift hits both alike): greedy (argmax on the GPU, 4 bytes read per token) and sampled
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


def run(args) -> dict:
    from wgllm.runtime.engine import Engine
    from wgllm.runtime.sampler import SamplingParams
    from wgllm.runtime.supervisor import Supervisor
    from wgllm.testing import synth

    path = args.model
    if path is None:
        path = Path(tempfile.mkdtemp()) / f"{args.shape}.gguf"
        synth.write_llama_gguf(path, synth.SHAPES[args.shape], types=args.types, seed=0, fast=True)
    opts = dict(ctx=args.prompt + args.gen + 8, precision=args.precision, chunk=args.chunk)
    inproc, sup = Engine(str(path), **opts), Supervisor(str(path), **opts)
    prompt = np.random.default_rng(0).integers(0, inproc.cfg.n_vocab, args.prompt).tolist()
    out = {}
    for name, sampling in (("greedy", None), ("sampled", SamplingParams(temperature=0.8, seed=1))):
        a, b = [], []
        for _ in range(args.reps + 1):  # the first of each is a warm-up
            a.append(_decode(inproc, prompt, args.gen, sampling))
            b.append(_decode(sup, prompt, args.gen, sampling))
        ia, ib = statistics.median(a[1:]), statistics.median(b[1:])
        out[name] = dict(in_process_tok_s=ia, worker_tok_s=ib, cost_pct=100 * (1 - ib / ia),
                         per_token_us=1e6 * (1 / ib - 1 / ia), in_process_runs=a[1:], worker_runs=b[1:])
    adapter, precision = inproc.adapter_summary, inproc.precision
    inproc.close()
    sup.close()
    mem = memory_after_kill(path, args)
    return dict(shape=args.shape, types=args.types, adapter=adapter, precision=precision, prompt=args.prompt,
                gen=args.gen, reps=args.reps, **out, memory=mem, commit=commit(), date=time.strftime("%Y-%m-%d"),
                host=platform.node())


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


def main() -> None:
    args = p.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
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
    if args.json:
        args.json.write_text(json.dumps(r, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
