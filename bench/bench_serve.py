"""Load test of the HTTP server (issue 16): N clients streaming chat completions at once from a
`wgllm serve` app (uvicorn in a thread, loopback) with --parallel P.

Usage:
    python bench/bench_serve.py --shape llama-3-8b --types Q4_0 [--model FILE.gguf] [--parallel 16]
        [--clients 1,4,16] [--requests 2] [--max-tokens 128] [--json OUT.json]

Each client sends `--requests` streamed /v1/chat/completions one after another (greedy, different
prompts, max_tokens as given) over its own httpx connection. Reported per client count: requests
served, completion tokens per second over all clients (the tokens the clients received / wall time),
time to first token p50 / p99 (request sent -> first content chunk) and per-request decode rate
(tokens from the usage chunk).
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


def _stream(client, url: str, i: int, max_tokens: int) -> dict:
    body = {"model": "bench", "stream": True, "max_tokens": max_tokens, "temperature": 0,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"Request {i}: tell me a long story about the number {i}."}]}
    t0 = time.perf_counter()
    first = last = None
    chunks = tokens = 0
    with client.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            d = json.loads(line[6:])
            if d.get("usage"):
                tokens = d["usage"]["completion_tokens"]
            if d.get("choices") and d["choices"][0]["delta"].get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                chunks += 1
    return {"ttft_s": (first or t0) - t0, "tokens": tokens, "e2e_s": time.perf_counter() - t0,
            "decode_tok_s": (tokens - 1) / (last - first) if first and last and last > first else 0.0}


def load(url: str, clients: int, requests: int, max_tokens: int) -> dict:
    import httpx

    results: list[dict] = []
    lock = threading.Lock()

    def client_loop(c: int) -> None:
        with httpx.Client() as client:
            for r in range(requests):
                res = _stream(client, url, c * requests + r, max_tokens)
                with lock:
                    results.append(res)

    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttft = sorted(r["ttft_s"] for r in results)
    return {"clients": clients, "requests": len(results), "tokens": sum(r["tokens"] for r in results),
            "tok_s": sum(r["tokens"] for r in results) / wall, "wall_s": wall,
            "ttft_p50_s": statistics.median(ttft), "ttft_p99_s": ttft[min(len(ttft) - 1, int(0.99 * len(ttft)))],
            "per_request_decode_tok_s": statistics.median(r["decode_tok_s"] for r in results)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model_options(p)
    p.add_argument("--parallel", type=int, default=16)
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--requests", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--precision", default="f16")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    import wgllm
    from wgllm.server import start_in_thread

    model = model_file(args)
    engine = wgllm.AsyncEngine(str(model), ctx=args.ctx, precision=args.precision, parallel=args.parallel)
    engine.engine.strict_model_names = False
    srv = start_in_thread(engine)
    rows = []
    try:
        load(srv.url, 1, 1, 8)  # warm-up
        for n in (int(x) for x in args.clients.split(",")):
            row = load(srv.url, n, args.requests, args.max_tokens)
            rows.append(row)
            print(f"{n:>3} clients: {row['tok_s']:9.1f} tok/s in all, TTFT p50 {row['ttft_p50_s']:.3f} s "
                  f"p99 {row['ttft_p99_s']:.3f} s, per request {row['per_request_decode_tok_s']:.1f} tok/s "
                  f"({row['requests']} requests, {row['tokens']} tokens)", flush=True)
    finally:
        srv.stop()
        engine.close()
    out = {"bench": "serve", "shape": args.shape, "types": args.types, "parallel": args.parallel,
           "max_tokens": args.max_tokens, "rows": rows, "commit": commit(), "host": platform.node(),
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
