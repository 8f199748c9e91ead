"""Diagnose a family test case across machines: write the tiny GGUF of one case of
tests/model/test_families.py, compute wgllm's logits (f32, this machine's adapter) and, where
transformers is installed, the reference logits, save both, and compare with the .npz another
machine wrote (e.g. lavapipe here vs the GPU machine's adapter and transformers).

    python3 bench/diag/family_logits.py --case gemma2-caps --out /tmp/fam            # here
    python3 bench/diag/family_logits.py --case gemma2-caps --out $OUT --ref .diag     # there
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _cases():
    spec = importlib.util.spec_from_file_location("test_families", ROOT / "tests/model/test_families.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return {c[0]: c for c in mod.CASES}, mod


def _rel(a, b) -> list[float]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="gemma2-caps")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ref", help="a folder with another machine's <case>.npz to compare with")
    a = ap.parse_args()
    from wgllm.runtime.engine import Engine
    from wgllm.testing import synth

    cases, mod = _cases()
    name, kw, types, hf = cases[a.case]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.gguf"
    synth.write_llama_gguf(path, synth.LlamaShape(name="tiny", ctx=256, **kw), types=types, seed=sum(map(ord, name)))
    eng = Engine(str(path), ctx=128, precision="f32", chunk=16)
    prompt = mod._prompt(37, eng.cfg.n_vocab, 1)
    res = {"wgllm": eng.logits(prompt).astype(np.float32)}
    info = {"adapter": eng.dev.adapter.summary}
    try:
        import torch
        import transformers

        from wgllm.testing import oracle

        res["hf"] = oracle.reference_logits(path, prompt, hf).astype(np.float32)
        model = oracle._hf_model(path, hf)
        info |= {"transformers": transformers.__version__, "torch": torch.__version__,
                 "attn_implementation": getattr(model.config, "_attn_implementation", None),
                 "attn_logit_softcapping": getattr(model.config, "attn_logit_softcapping", None),
                 "final_logit_softcapping": getattr(model.config, "final_logit_softcapping", None)}
        info["rel wgllm vs hf (max)"] = max(_rel(res["wgllm"], res["hf"]))
    except ImportError as e:
        info["hf"] = f"not here: {e}"
    np.savez(out / f"{name}.npz", **res)
    if a.ref:
        other = np.load(Path(a.ref) / f"{name}.npz")
        for mine in res:
            for theirs in other.files:
                r = _rel(res[mine], other[theirs])
                info[f"rel {mine} here vs {theirs} there"] = {"max": max(r), "first_bad": next(
                    (i for i, v in enumerate(r) if v > 1e-3), None)}
    print(json.dumps(info, indent=1, default=str))


if __name__ == "__main__":
    main()
