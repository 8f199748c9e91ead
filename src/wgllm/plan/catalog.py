"""A catalog of known models: hyperparameters and GGUF tensor layouts for common quantizations.

`catalog_layout(name, quant)` builds the `ModelLayout` a GGUF file of that
model and quantization would have, so the memory a model needs is computed
for any context and adapter instead of being a fixed guess (Web-LLM's
`vram_required_MB`). Each entry holds only the GGUF metadata a real file of
the model carries (`wgllm.plan.layout.hparams`); the tensor list comes from
its architecture file's declarations and the types from llama-quantize's mix
of the file type (`wgllm.kernels.qtypes.ftype_tensor_type`).

`identify(layout)` recognises a GGUF file as a catalog model by its
hyperparameters (so an error can propose a smaller quantization of the same
model), and `layout_from_gguf` reads a layout from a header also for
architectures wgllm can plan but not run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from wgllm.errors import ModelNotFoundError
from wgllm.model import arch as arches
from wgllm.model.config import ModelConfig
from wgllm.plan.layout import ModelLayout, TensorSpec, declared_config, hparams, layout_for

QUANTS = ("F16", "Q8_0", "Q4_K_M", "Q4_1", "Q4_0")  # common GGUF file types


@dataclass(frozen=True)
class CatalogEntry:
    """A known model: catalog name, display title, GGUF metadata, tied output, quantizations.

    hub: its `wgllm.hub` registry name when wgllm can fetch it. aliases: other
    names it answers to (lower case)."""

    name: str
    title: str
    metadata: dict[str, Any] = field(hash=False)
    tied: bool
    default_quant: str
    quants: tuple[str, ...] = QUANTS
    hub: str = ""
    aliases: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()  # optional tensors its files hold (e.g. rope factors)

    @property
    def config(self) -> ModelConfig:
        return declared_config(self.metadata, tied=self.tied, optional=self.optional)[0]

    @property
    def arch(self) -> str:
        return self.config.arch

    @property
    def n_ctx_train(self) -> int:
        return self.config.n_ctx_train


def _hp(arch, vocab, dim, layers, heads, kv, ffn, ctx, rope, eps=1e-5, **extra) -> dict[str, Any]:
    return hparams(arch, n_vocab=vocab, dim=dim, n_layers=layers, n_heads=heads, n_kv_heads=kv, ffn_dim=ffn,
                   ctx=ctx, rope_base=rope, rms_eps=eps, **extra)


# Hyperparameters from each model's HF config.json (and the GGUF headers of real files).
CATALOG: dict[str, CatalogEntry] = {e.name: e for e in [
    CatalogEntry("smollm2-135m", "SmolLM2-135M", _hp("llama", 49152, 576, 30, 9, 3, 1536, 8192, 100000.0), True,
                 "Q4_1", hub="smollm2-135m", aliases=("smollm2", "smollm2:135m")),
    CatalogEntry("smollm2-360m", "SmolLM2-360M", _hp("llama", 49152, 960, 32, 15, 5, 2560, 8192, 100000.0), True,
                 "Q8_0", aliases=("smollm2:360m",)),
    CatalogEntry("qwen2.5-0.5b", "Qwen2.5-0.5B", _hp("qwen2", 151936, 896, 24, 14, 2, 4864, 32768, 1e6, 1e-6),
                 True, "Q8_0", aliases=("qwen2.5:0.5b", "qwen2.5-0.5b-instruct")),
    CatalogEntry("gemma-3-270m", "Gemma-3-270M",
                 _hp("gemma3", 262144, 640, 18, 4, 1, 2048, 32768, 1e6, 1e-6, head_dim=256), True,
                 "Q4_K_M", hub="gemma3-270m", aliases=("gemma3-270m", "gemma3", "gemma3:270m")),
    CatalogEntry("llama-3.2-1b", "Llama-3.2-1B", _hp("llama", 128256, 2048, 16, 32, 8, 8192, 131072, 500000.0),
                 True, "Q4_K_M", aliases=("llama3.2:1b", "llama-3.2-1b-instruct")),
    CatalogEntry("phi-3.5-mini", "Phi-3.5-mini", _hp("phi3", 32064, 3072, 32, 32, 32, 8192, 131072, 10000.0,
                                                     rope__scaling__original_context_length=4096,
                                                     rope__scaling__attn_factor=1.1902380714238083),
                 False, "Q4_K_M", aliases=("phi3.5", "phi-3.5-mini-instruct"),
                 optional=("rope_factors_long.weight", "rope_factors_short.weight")),
    CatalogEntry("llama-3-8b", "Llama-3-8B", _hp("llama", 128256, 4096, 32, 32, 8, 14336, 8192, 500000.0), False,
                 "Q4_K_M", aliases=("llama3:8b", "llama-3-8b-instruct", "llama-3.1-8b", "llama3.1:8b")),
]}


# --- lookups -----------------------------------------------------------------------


def entries() -> list[CatalogEntry]:
    """Catalog entries, smallest model first."""
    return sorted(CATALOG.values(), key=lambda e: catalog_layout(e.name).weight_bytes)


def find_entry(name: str) -> CatalogEntry | None:
    """The entry named `name` (catalog name, title, hub name or alias; case-insensitive), or None."""
    key = name.strip().lower()
    for e in CATALOG.values():
        if key in (e.name, e.title.lower(), e.hub) or key in e.aliases:
            return e
    return None


def split_spec(spec: str) -> tuple[CatalogEntry, str] | None:
    """(entry, quant) of "llama-3-8b", "llama-3-8b:q4_0" or "Llama-3-8B-Q4_0"; None if not a catalog model.

    Raises ModelNotFoundError for a known model with an unknown quantization."""
    text = spec.strip()
    for sep in (":", "-", "."):
        head, _, tail = text.rpartition(sep)
        entry = find_entry(head) if head else None
        if entry is not None and tail.upper() in QUANTS + ("Q4_K",):
            return entry, _norm_quant(entry, tail)
    entry = find_entry(text)
    return None if entry is None else (entry, entry.default_quant)


def _norm_quant(entry: CatalogEntry, quant: str) -> str:
    q = {"Q4_K": "Q4_K_M"}.get(quant.upper(), quant.upper())
    if q not in entry.quants:
        raise ModelNotFoundError(
            f"The catalog has no {quant} of {entry.title}; it knows {', '.join(entry.quants)}.")
    return q


def catalog_layout(name: str, quant: str | None = None) -> ModelLayout:
    """The ModelLayout of catalog model `name` in quantization `quant` (default: the entry's default)."""
    entry = find_entry(name)
    if entry is None:
        raise ModelNotFoundError(
            f"'{name}' is not in the catalog of known models ({', '.join(CATALOG)}).")
    return _layout(entry, _norm_quant(entry, quant or entry.default_quant))


_LAYOUTS: dict[tuple[str, str], ModelLayout] = {}


def _layout(entry: CatalogEntry, quant: str) -> ModelLayout:
    key = (entry.name, quant)
    if key not in _LAYOUTS:
        _LAYOUTS[key] = layout_for(entry.title, entry.metadata, tied=entry.tied, ftype=quant,
                                    optional=entry.optional)
    return _LAYOUTS[key]


# --- identifying files -----------------------------------------------------------------


def _shape_key(c: ModelConfig) -> tuple:
    return (c.arch, c.n_vocab, c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim)


def _same_shape(layout: ModelLayout, entry: CatalogEntry) -> bool:
    return _shape_key(layout.config) == _shape_key(entry.config)


def identify(layout: ModelLayout) -> tuple[CatalogEntry, str] | None:
    """(entry, quant) of the catalog model `layout` is, by hyperparameters; None if unknown.

    quant: the layout's own `quantization` if set, else the catalog quantization
    whose weight bytes are within 2% of the layout's, else ""."""
    entry = next((e for e in CATALOG.values() if _same_shape(layout, e)), None)
    if entry is None:
        return None
    if layout.quantization in entry.quants:
        return entry, layout.quantization
    near = [(abs(_layout(entry, q).weight_bytes - layout.weight_bytes), q) for q in entry.quants]
    diff, quant = min(near)
    return entry, quant if diff <= 0.02 * layout.weight_bytes else ""


def smaller_quantizations(name_or_layout: str | ModelLayout) -> list[ModelLayout]:
    """Catalog layouts of the same model with fewer weight bytes, largest (best quality) first.

    name_or_layout: a catalog spec ("llama-3-8b:Q8_0"; a bare name means its
    default quant) or a layout (identified by `identify`); [] if unknown."""
    if isinstance(name_or_layout, str):
        found = split_spec(name_or_layout)
        if found is None:
            return []
        entry, quant = found
        current = _layout(entry, quant).weight_bytes
    else:
        found = identify(name_or_layout)
        if found is None:
            return []
        entry, current = found[0], name_or_layout.weight_bytes
    smaller = [_layout(entry, q) for q in entry.quants if _layout(entry, q).weight_bytes < current]
    return sorted(smaller, key=lambda lay: -lay.weight_bytes)


# --- layouts of files ---------------------------------------------------------------------

def layout_from_gguf(g) -> ModelLayout:
    """The layout of an opened GGUFFile, also for plannable-only architectures; the quantization
    is filled in when the file is a catalog model."""
    cfg = arches.config_for(g, plannable=True)
    tensors = tuple(TensorSpec(t.name, t.type_name, tuple(t.shape)) for t in g.tensors.values())
    layout = ModelLayout(str(g.metadata.get("general.name", g.path.stem)), cfg, tensors)
    found = identify(layout)
    if found and found[1]:
        layout = dataclasses.replace(layout, quantization=found[1])
    return layout
