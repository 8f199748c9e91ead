"""Model architectures: one module per family, found by the GGUF `general.architecture`.

Each module has `ARCH`, `config(meta, tensors)` (GGUF metadata -> ModelConfig
with feature flags), `tensors(cfg)` (the declared tensors), and the forward
pass as `layer_weights(model, i)` and `layer(model, i, T)` built from
wgllm.model.blocks. Nothing outside this package names an architecture.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import Any, Mapping

from wgllm.errors import UnsupportedModelError
from wgllm.model.config import Meta, ModelConfig, check_tensors

SUPPORTED = ("llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3")  # runnable families (module names)
# Declared for planning only: config, tensors and weight upload (`layer_weights`, which the planner
# meters), but a forward pass not checked against a reference yet. None today.
PLANNABLE: tuple[str, ...] = ()


def family(arch: str, source: str = "the model", plannable: bool = False) -> ModuleType:
    """The module of architecture `arch` (UnsupportedModelError for unknown families; with
    `plannable`, also the families declared for planning only)."""
    if arch not in SUPPORTED and not (plannable and arch in PLANNABLE):
        raise UnsupportedModelError(
            f"{source} uses the '{arch}' architecture, which wgllm does not run yet "
            f"(supported: {', '.join(SUPPORTED)}). Pick a model of a supported family, e.g. "
            f"SmolLM2, Llama 3 or Qwen2 in GGUF.")
    return import_module(f"wgllm.model.arch.{arch}")


def config_from(metadata: Mapping[str, Any], tensors: Mapping[str, Any], source: str = "the model",
                check: bool = True, plannable: bool = False) -> ModelConfig:
    """The config of a model given its GGUF metadata and tensors (name -> object with a ggml
    `shape`); with `check`, every declared tensor is verified against the file."""
    meta = Meta(metadata, source)
    fam = family(meta.arch, source, plannable)
    cfg = fam.config(meta, tensors)
    if check:
        check_tensors(fam.tensors(cfg), tensors, source)
    return cfg


def config_for(g, plannable: bool = False) -> ModelConfig:
    """The architecture config of an opened GGUF file (raises UnsupportedModelError for unknown
    families, InvalidModelFileError for a file its architecture cannot read)."""
    return config_from(g.metadata, g.tensors, f"'{g.path.name}'", plannable=plannable)


def build(dev, tensors: Mapping[str, Any], cfg: ModelConfig, *, act: str, n_ctx: int, chunk: int,
          plannable: bool = False, layers: tuple[int, int] | None = None, n_seq: int = 1):
    """The model of `cfg` on `dev` (a Device, or the planner's MeterDevice) from `tensors`
    (`plannable`: also a family declared for planning only, to meter its buffers; `layers`:
    the (start, stop) range of one part of a split model, None: all; `n_seq`: sequences decoded
    together, each with its own KV-cache slot)."""
    from wgllm.model.transformer import Transformer

    fam = family(cfg.arch, plannable=plannable)
    return Transformer(dev, tensors, cfg, fam, act=act, n_ctx=n_ctx, chunk=chunk, layers=layers, n_seq=n_seq)
