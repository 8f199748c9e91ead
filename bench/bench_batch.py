"""Aggregate decode of many sequences at once (continuous batching, issue 16), measured as
llama-batched-bench does: npl sequences, each a prompt of pp tokens and tg generated tokens.

Usage:
    python bench/bench_batch.py --shape llama-3-8b --types Q4_0 [--model FILE.gguf] [--npl 1,4,16]
        [--pp 128] [--tg 128] [--precision f16] [--worker] [--json OUT.json]

One engine with parallel = max(npl) KV slots (so the model loads once); for each npl, npl
different prompts are submitted together from threads (greedy, EOS ignored) and the time of
every token is recorded where the caller receives it. Reported per npl: the prefill phase (until
every sequence has its first token), the aggregate decode rate after that (tokens received after
the last first token / the time until the last token: llama-batched-bench's S_TG), and the total
rate (npl * tg / wall time). --worker: the engine in the supervised worker process, as `wgllm serve`
runs it (wgllm.runtime.batch_supervisor: every token crosses the channel). Without --model a random-weight GGUF in the real shapes is written
(speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

from common import commit, model_file, model_options


def one_round(engine, prompts: list[list[int]], tg: int) -> dict:
    """All prompts at once; per-token receive times -> the phase figures."""
    times: list[list[float]] = [[] for _ in prompts]

    def run(i: int) -> None:
        for _ in engine.generate(prompts[i], max_tokens=tg, stop_ids=[]):
            times[i].append(time.perf_counter())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_end = max(ts[-1] for ts in times)
    t_all = max(ts[0] for ts in times)  # every sequence has its first token
    after = sum(1 for ts in times for t in ts if t > t_all)
    n = sum(len(ts) for ts in times)
    return {"tokens": n, "prefill_s": t_all - t0, "decode_s": t_end - t_all,
            "decode_tok_s": after / (t_end - t_all) if t_end > t_all else 0.0,
            "total_tok_s": n / (t_end - t0), "wall_s": t_end - t0,
            "ttft_p50_s": statistics.median(ts[0] - t0 for ts in times)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model_options(p)
    p.add_argument("--npl", default="1,4,16")
    p.add_argument("--pp", type=int, default=128)
    p.add_argument("--tg", type=int, default=128)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--precision", default="f16")
    p.add_argument("--worker", action="store_true", help="run the engine in the supervised worker process")
    p.add_argument("--tile", type=int, default=None,
                   help="tokens per matvec workgroup of a batched pass (kernels.linear.MATVEC_TILE; 1: each "
                        "token on its own; not with --worker)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    from wgllm.kernels import linear
    from wgllm.runtime.batch_supervisor import BatchSupervisor
    from wgllm.runtime.engine import Engine

    if args.tile is not None:
        linear.MATVEC_TILE = args.tile

    model = model_file(args)
    npls = [int(x) for x in args.npl.split(",")]
    ctx = 1 << (args.pp + args.tg + 8 - 1).bit_length()
    t = time.perf_counter()
    make = BatchSupervisor if args.worker else Engine
    engine = make(str(model), ctx=ctx, precision=args.precision, parallel=max(npls))
    load_s = time.perf_counter() - t
    vocab = engine.cfg.n_vocab
    rows = []
    for npl in npls:
        prompts = [[(97 * i + 13 * j + 5) % (vocab - 10) + 5 for j in range(args.pp)] for i in range(npl)]
        one_round(engine, prompts, 8)  # warm-up (kernels compiled, slots touched)
        reps = [one_round(engine, [[(x + r + 1) % (vocab - 10) + 5 for x in q] for q in prompts], args.tg)
                for r in range(args.reps)]
        best = max(reps, key=lambda d: d["decode_tok_s"])
        best["npl"] = npl
        rows.append(best)
        print(f"npl {npl:>3}: decode {best['decode_tok_s']:9.1f} tok/s aggregate, total {best['total_tok_s']:9.1f} "
              f"tok/s, prefill phase {best['prefill_s']:.3f} s, TTFT p50 {best['ttft_p50_s']:.3f} s", flush=True)
    out = {"bench": "batch", "shape": args.shape, "types": args.types, "pp": args.pp, "tg": args.tg,
           "precision": engine.precision, "adapter": engine.adapter_summary, "parallel": engine.n_seq,
           "n_ctx": engine.n_ctx, "worker": args.worker, "tile": linear.MATVEC_TILE, "load_s": load_s, "rows": rows, "commit": commit(), "host": platform.node(),
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    engine.close()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
