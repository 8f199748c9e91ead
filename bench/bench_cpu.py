"""wgllm on a CPU adapter (lavapipe) against llama.cpp's CPU backend, in one run.

Usage:
    python bench/bench_cpu.py [--model FILE.gguf] [--peer-python /path/to/python] [--reps 3]
        [--json OUT.json]

Measures, with the model already cached:
* the README's main job, `wgllm run "What is the capital of France?"`, end to end
  (a fresh process each time: Python start-up, load, compile, prefill, decode);
* time to first token for a 41-token chat prompt (`Engine.generate`,
  a fresh KV cache each rep; the first rep of a process is reported apart: it
  includes the driver's first compilation of the prefill kernels);
* prefill and decode tok/s (40-token prompt, 64 tokens generated, EOS ignored);
* llama.cpp's CPU backend on the same file (llama-cpp-python, run in
  `--peer-python`, default this interpreter; 2 threads): the same prompt tokens
  evaluated in one batch (prefill, TTFT without sampling), then greedy tokens one
  by one (decode), timed here with the same clock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import commit

QUESTION = "What is the capital of France?"
CHAT = [{"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Name three rivers in Europe and, for each of them, say in one short line where it flows."}]

PEER = r"""
import json, sys, time
import llama_cpp
path, prompt, gen, reps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t = time.perf_counter()
llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_threads=2, n_threads_batch=2, verbose=False)
load = time.perf_counter() - t
runs = []
for _ in range(reps):
    llm.reset()
    t = time.perf_counter()
    llm.eval(prompt)
    prefill = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(gen - 1):
        llm.eval([int(llm.scores[llm.n_tokens - 1].argmax())])  # greedy
    decode = time.perf_counter() - t
    runs.append(dict(prefill_tok_s=len(prompt) / prefill, decode_tok_s=(gen - 1) / decode, ttft_ms=prefill * 1e3))
print(json.dumps(dict(load_s=load, version=llama_cpp.__version__, runs=runs)))
"""


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main_job(model: str | None, reps: int) -> dict:
    """Wall seconds of `wgllm run QUESTION` in a fresh process (median), and the answer."""
    cmd = [sys.executable, "-m", "wgllm", "run"] + (["--model", model] if model else []) + [QUESTION]
    times, out = [], ""
    for _ in range(reps):
        t = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        times.append(time.perf_counter() - t)
        if res.returncode:
            raise SystemExit(f"wgllm run failed: {res.stderr[-2000:]}")
        out = res.stdout.strip()
    return dict(command=" ".join(["wgllm", "run", repr(QUESTION)]), wall_s=statistics.median(times),
                walls_s=times, answer=out)


def engine_figures(model: str | None, reps: int, gen: int) -> dict:
    from wgllm.runtime.engine import Engine

    t = time.perf_counter()
    eng = Engine(model)
    load = time.perf_counter() - t
    prompt = eng.chat_prompt(CHAT)
    runs = []
    for _ in range(reps + 1):
        eng.reset()
        n = sum(1 for _ in eng.generate(prompt, max_tokens=gen, stop_ids=[]))
        s = eng.stats
        runs.append(dict(prefill_tok_s=s.prefill_tok_s, decode_tok_s=s.decode_tok_s, ttft_ms=s.ttft_s * 1e3, n=n))
    first, warm = runs[0], runs[1:]
    return dict(adapter=eng.adapter.summary, precision=eng.precision, load_s=load, prompt_tokens=len(prompt),
                gen=gen, first_ttft_ms=first["ttft_ms"], **{k: _median(warm, k) for k in
                                                           ("prefill_tok_s", "decode_tok_s", "ttft_ms")},
                runs=runs, prompt=prompt, path=str(eng.path))


def peer(python: str, path: str, prompt: list[int], gen: int, reps: int) -> dict | None:
    res = subprocess.run([python, "-c", PEER, path, json.dumps(prompt), str(gen), str(reps)], capture_output=True,
                         text=True, timeout=900)
    if res.returncode:
        print(f"llama.cpp peer failed: {res.stderr[-1500:]}", file=sys.stderr)
        return None
    r = json.loads(res.stdout.strip().splitlines()[-1])
    return dict(r, **{k: _median(r["runs"], k) for k in ("prefill_tok_s", "decode_tok_s", "ttft_ms")})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--peer-python", default=sys.executable)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--gen", type=int, default=64)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    job = main_job(args.model, args.reps)
    eng = engine_figures(args.model, args.reps, args.gen)
    llama = peer(args.peer_python, eng["path"], eng.pop("prompt"), args.gen, args.reps)
    r = dict(main_job=job, wgllm=eng, llama_cpp=llama, date=time.strftime("%Y-%m-%d"), host=platform.node(),
             cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), commit=commit())
    print(json.dumps({k: v for k, v in r.items()}, indent=1, default=str))
    w, l = eng, llama or {}
    print(f"| main job {job['wall_s']:.2f} s | TTFT {w['ttft_ms']:.0f} ms (first {w['first_ttft_ms']:.0f}) for "
          f"{w['prompt_tokens']} tokens | prefill {w['prefill_tok_s']:.0f} tok/s (llama.cpp "
          f"{l.get('prefill_tok_s', 0):.0f}) | decode {w['decode_tok_s']:.1f} tok/s (llama.cpp "
          f"{l.get('decode_tok_s', 0):.1f}) | {w['adapter']} {w['precision']} |")
    if args.json:
        args.json.write_text(json.dumps(r, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
