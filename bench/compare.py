"""The side-by-side table of issue 13: wgllm's bench_engine.py against llama.cpp's llama-bench
on the same GGUF files, measured in the same call (bench/device/compare.sh runs both).

    python3 bench/compare.py DIR   # DIR holds NAME.wgllm.json (bench_engine --json) and
                                   # NAME.llama.json (llama-bench -o json) per model NAME

Prints one markdown row per NAME: decode tok/s (wgllm's decode, llama-bench's tg), prefill
tok/s (wgllm's prefill of --prompt tokens, llama-bench's pp of -p tokens) and the ratios.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def llama_rates(path: Path) -> tuple[float | None, float | None, int | None]:
    """(tg tok/s, pp tok/s, pp tokens) from llama-bench's JSON list of tests."""
    tg = pp = n_pp = None
    for t in json.loads(path.read_text()):
        if t.get("n_gen", 0) > 0 and t.get("n_prompt", 0) == 0:
            tg = float(t["avg_ts"])
        elif t.get("n_prompt", 0) > 0 and t.get("n_gen", 0) == 0:
            pp, n_pp = float(t["avg_ts"]), int(t["n_prompt"])
    return tg, pp, n_pp


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def _num(v) -> str:
    return f"{v:,.1f}" if v else "-"


def table(d: Path) -> str:
    lines = ["| model | wgllm decode | llama.cpp decode | ratio | wgllm prefill | llama.cpp prefill | ratio |",
             "|---|---|---|---|---|---|---|"]
    for w in sorted(d.glob("*.wgllm.json")):
        name = w.name.removesuffix(".wgllm.json")
        r = json.loads(w.read_text())
        lp = d / f"{name}.llama.json"
        tg, pp, n_pp = llama_rates(lp) if lp.exists() else (None, None, None)
        wd, wp = r.get("decode_tok_s"), r.get("prefill_tok_s")
        lines.append(f"| {name} (pp{r.get('prompt', '?')} / pp{n_pp or '?'}) | {_num(wd)} | {_num(tg)} | "
                     f"{_ratio(wd, tg)} | {_num(wp)} | {_num(pp)} | {_ratio(wp, pp)} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(table(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
