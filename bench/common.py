"""Shared by the bench scripts: the commit a figure was measured at; the model options."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess


def commit() -> str:
    """$WGLLM_COMMIT, else the checkout's short HEAD, else "unknown"."""
    if os.environ.get("WGLLM_COMMIT"):
        return os.environ["WGLLM_COMMIT"]
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except Exception:  # noqa: BLE001 - no git, not a checkout
        return "unknown"


def model_options(p) -> None:
    """--shape, --types, --model: a GGUF file, or the shape to write one of (random weights)."""
    from pathlib import Path

    p.add_argument("--shape", default="smollm2-135m")
    p.add_argument("--types", default="Q4_1")
    p.add_argument("--model", type=Path, default=None)


def model_file(args):
    """args.model, or a random-weight GGUF of args.shape / args.types written to a temporary folder
    (wgllm.testing.synth: the real tensor shapes and types; speed does not depend on the weights)."""
    import tempfile
    from pathlib import Path

    from wgllm.testing import synth

    if args.model is not None:
        return args.model
    model = Path(tempfile.mkdtemp()) / f"{args.shape}.gguf"
    synth.write_llama_gguf(model, args.shape, types=args.types, seed=0, fast=True)
    return model


def set_option(p) -> None:
    """--set MODULE.NAME=VALUE (repeatable): a kernel constant for this run (A/B of a variant)."""
    p.add_argument("--set", action="append", default=[], metavar="MODULE.NAME=VALUE",
                   help="a kernel constant for this run, e.g. linear.DECODE_NORM=False")


def apply_set(args) -> None:
    """Apply each --set: wgllm.kernels.MODULE's NAME (which must exist) = the Python literal VALUE."""
    for item in args.set:
        key, _, value = item.partition("=")
        mod, _, name = key.rpartition(".")
        module = importlib.import_module(f"wgllm.kernels.{mod}")
        if not hasattr(module, name):
            raise SystemExit(f"--set {item}: wgllm.kernels.{mod} has no {name}")
        setattr(module, name, ast.literal_eval(value))
