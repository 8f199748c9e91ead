"""Model architectures: one module per family. `config_for` picks by GGUF metadata."""

from __future__ import annotations

from wgllm.errors import UnsupportedModelError
from wgllm.model.gguf import GGUFFile

SUPPORTED = ("llama", "qwen2")


def config_for(g: GGUFFile):
    """The architecture config of `g` (raises UnsupportedModelError for unknown families)."""
    arch = g.architecture
    if arch in SUPPORTED:
        from wgllm.model.arch.llama import LlamaConfig

        return LlamaConfig.from_gguf(g)
    raise UnsupportedModelError(
        f"'{g.path.name}' uses the '{arch}' architecture, which wgllm does not run yet "
        f"(supported: {', '.join(SUPPORTED)}). Pick a model of a supported family, e.g. "
        f"SmolLM2, Llama 3 or Qwen2 in GGUF."
    )


def model_class(cfg):
    """The GPU model class for a config."""
    from wgllm.model.arch.llama import LlamaModel

    return LlamaModel
