"""A catalog of known models: hyperparameters and GGUF tensor layouts for common quantizations.

`catalog_layout(name, quant)` builds the `ModelLayout` a GGUF file of that
model and quantization would have (tensor names, shapes and types as
llama.cpp's converter and `llama-quantize` write them), so the memory a
model needs is computed for any context and adapter instead of being a fixed
guess (Web-LLM's `vram_required_MB`). Llama-family tensor lists come from
`wgllm.testing.synth.LlamaShape`; Gemma 3 and Phi-3 have their own (names
from gguf-py's MODEL_TENSORS). Type mixes follow llama.cpp's
`llama_tensor_get_type` for the common file types (see `tensor_type`).

`identify(layout)` recognises a GGUF file as a catalog model by its
hyperparameters (so an error can propose a smaller quantization of the same
model), and `layout_from_gguf` reads a layout from a header also for
architectures wgllm can plan but not run (gemma3, phi3).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from wgllm.errors import ModelNotFoundError, UnsupportedModelError
from wgllm.plan.layout import ModelLayout, TensorSpec
from wgllm.testing.synth import LlamaShape

QK_K = 256  # super-block of the K-quants
QUANTS = ("F16", "Q8_0", "Q4_K_M", "Q4_1", "Q4_0")  # common GGUF file types
_BASE = {"Q4_K_M": "Q4_K"}
_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}  # llama.cpp, when a row is not whole blocks


@dataclass
class Gemma3Shape(LlamaShape):
    """Gemma 3: q/k norms and post-attention / post-FFN norms in every block; tied embeddings."""

    arch: str = "gemma3"

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        d, q, kv, f, hd = self.dim, self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim, \
            self.ffn_dim, self.head_dim
        out: dict[str, tuple[int, ...]] = {"token_embd.weight": (self.n_vocab, d)}
        for i in range(self.n_layers):
            b = f"blk.{i}."
            out.update({
                b + "attn_norm.weight": (d,), b + "attn_q.weight": (q, d), b + "attn_q_norm.weight": (hd,),
                b + "attn_k.weight": (kv, d), b + "attn_k_norm.weight": (hd,), b + "attn_v.weight": (kv, d),
                b + "attn_output.weight": (d, q), b + "post_attention_norm.weight": (d,),
                b + "ffn_norm.weight": (d,), b + "ffn_gate.weight": (f, d), b + "ffn_up.weight": (f, d),
                b + "ffn_down.weight": (d, f), b + "post_ffw_norm.weight": (d,),
            })
        out["output_norm.weight"] = (d,)
        return out


@dataclass
class Phi3Shape(LlamaShape):
    """Phi-3: fused q|k|v (attn_qkv) and gate|up (ffn_up, 2*ffn rows); long/short rope factors."""

    arch: str = "phi3"

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        d, qkv, f = self.dim, (self.n_heads + 2 * self.n_kv_heads) * self.head_dim, self.ffn_dim
        out: dict[str, tuple[int, ...]] = {"token_embd.weight": (self.n_vocab, d)}
        out["rope_factors_long.weight"] = out["rope_factors_short.weight"] = (self.head_dim // 2,)
        for i in range(self.n_layers):
            b = f"blk.{i}."
            out.update({
                b + "attn_norm.weight": (d,), b + "attn_qkv.weight": (qkv, d),
                b + "attn_output.weight": (d, self.n_heads * self.head_dim), b + "ffn_norm.weight": (d,),
                b + "ffn_up.weight": (2 * f, d), b + "ffn_down.weight": (d, f),
            })
        out["output_norm.weight"] = (d,)
        if not self.tied_embeddings:
            out["output.weight"] = (self.n_vocab, d)
        return out


@dataclass(frozen=True)
class CatalogEntry:
    """A known model: catalog name, display title, hyperparameters, quantizations, default one.

    hub: its `wgllm.hub` registry name when wgllm can fetch it. aliases: other
    names it answers to (lower case)."""

    name: str
    title: str
    shape: LlamaShape
    default_quant: str
    quants: tuple[str, ...] = QUANTS
    hub: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def arch(self) -> str:
        return self.shape.arch

    @property
    def n_ctx_train(self) -> int:
        return self.shape.ctx


def _llama(name, vocab, dim, layers, heads, kv, ffn, ctx, rope, tied, arch="llama", eps=1e-5) -> LlamaShape:
    return LlamaShape(name, vocab, dim, layers, heads, kv, ffn, ctx, rope, eps, tied, arch=arch)


# Hyperparameters from each model's HF config.json (and the GGUF headers of real files).
CATALOG: dict[str, CatalogEntry] = {e.name: e for e in [
    CatalogEntry("smollm2-135m", "SmolLM2-135M",
                 _llama("smollm2-135m", 49152, 576, 30, 9, 3, 1536, 8192, 100000.0, True),
                 "Q4_1", hub="smollm2-135m", aliases=("smollm2", "smollm2:135m")),
    CatalogEntry("smollm2-360m", "SmolLM2-360M",
                 _llama("smollm2-360m", 49152, 960, 32, 15, 5, 2560, 8192, 100000.0, True), "Q8_0",
                 aliases=("smollm2:360m",)),
    CatalogEntry("qwen2.5-0.5b", "Qwen2.5-0.5B",
                 _llama("qwen2.5-0.5b", 151936, 896, 24, 14, 2, 4864, 32768, 1e6, True, "qwen2", 1e-6), "Q8_0",
                 aliases=("qwen2.5:0.5b", "qwen2.5-0.5b-instruct")),
    CatalogEntry("gemma-3-270m", "Gemma-3-270M",
                 Gemma3Shape("gemma-3-270m", 262144, 640, 18, 4, 1, 2048, 32768, 1e6, 1e-6, True, head_dim=256),
                 "Q4_K_M", hub="gemma3-270m", aliases=("gemma3-270m", "gemma3", "gemma3:270m")),
    CatalogEntry("llama-3.2-1b", "Llama-3.2-1B",
                 _llama("llama-3.2-1b", 128256, 2048, 16, 32, 8, 8192, 131072, 500000.0, True), "Q4_K_M",
                 aliases=("llama3.2:1b", "llama-3.2-1b-instruct")),
    CatalogEntry("phi-3.5-mini", "Phi-3.5-mini",
                 Phi3Shape("phi-3.5-mini", 32064, 3072, 32, 32, 32, 8192, 131072, 10000.0, 1e-5, False),
                 "Q4_K_M", aliases=("phi3.5", "phi-3.5-mini-instruct")),
    CatalogEntry("llama-3-8b", "Llama-3-8B",
                 _llama("llama-3-8b", 128256, 4096, 32, 32, 8, 14336, 8192, 500000.0, False), "Q4_K_M",
                 aliases=("llama3:8b", "llama-3-8b-instruct", "llama-3.1-8b", "llama3.1:8b")),
]}


# --- type mixes --------------------------------------------------------------------


def _more_bits(i: int, n: int) -> bool:
    """llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def tensor_type(name: str, cols: int, quant: str, shape: LlamaShape) -> str:
    """The ggml type llama-quantize gives tensor `name` (rows of `cols`) in file type `quant`.

    Norms, biases and rope factors stay F32. F16 / Q8_0 / Q4_0 / Q4_1: every
    matrix in that type, except the output matrix (the token embedding when
    tied) of the 4-bit types: Q6_K, or Q8_0 when its rows are not whole 256
    blocks. Q4_K_M: Q4_K, with attn_v and ffn_down in Q6_K on the
    `_more_bits` layers and attn_qkv in Q5_K. A type whose block does not
    divide the row falls back as in llama.cpp (Q4_K->Q5_0, Q5_K->Q5_1,
    Q6_K->Q8_0, else F16)."""
    if name.endswith(("_norm.weight", ".bias")) or name.startswith("rope_"):
        return "F32"
    role = name.removesuffix(".weight").split(".")[-1]
    t = _BASE.get(quant, quant)
    if role == "output" or (role == "token_embd" and shape.tied_embeddings):
        if quant not in ("F32", "F16", "Q8_0"):
            t = "Q8_0" if cols % QK_K else "Q6_K"
    elif quant == "Q4_K_M" and name.startswith("blk."):
        layer = int(name.split(".")[1])
        if role in ("attn_v", "ffn_down") and _more_bits(layer, shape.n_layers):
            t = "Q6_K"
        elif role == "attn_qkv":
            t = "Q5_K"
    return _fit_block(t, cols)


def _fit_block(t: str, cols: int) -> str:
    for _ in range(3):
        if cols % GGML_QUANT_SIZES[GGMLQuantizationType[t]][0] == 0:
            return t
        t = _FALLBACK.get(t, "F16")
    return "F16"


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
        s = entry.shape
        tensors = tuple(TensorSpec(n, tensor_type(n, dims[-1], quant, s), tuple(reversed(dims)))
                        for n, dims in s.tensor_shapes().items())
        _LAYOUTS[key] = ModelLayout(
            name=entry.title, arch=s.arch, n_vocab=s.n_vocab, dim=s.dim, n_layers=s.n_layers,
            n_heads=s.n_heads, n_kv_heads=s.n_kv_heads, head_dim=s.head_dim, ffn_dim=s.ffn_dim,
            n_ctx_train=s.ctx, tensors=tensors, quantization=quant)
    return _LAYOUTS[key]


# --- identifying files -----------------------------------------------------------------


def _same_shape(layout: ModelLayout, s: LlamaShape) -> bool:
    mine = (layout.arch, layout.n_vocab, layout.dim, layout.n_layers, layout.n_heads, layout.n_kv_heads,
            layout.head_dim, layout.ffn_dim)
    return mine == (s.arch, s.n_vocab, s.dim, s.n_layers, s.n_heads, s.n_kv_heads, s.head_dim, s.ffn_dim)


def identify(layout: ModelLayout) -> tuple[CatalogEntry, str] | None:
    """(entry, quant) of the catalog model `layout` is, by hyperparameters; None if unknown.

    quant: the layout's own `quantization` if set, else the catalog quantization
    whose weight bytes are within 2% of the layout's, else ""."""
    entry = next((e for e in CATALOG.values() if _same_shape(layout, e.shape)), None)
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

PLANNABLE = ("gemma3", "phi3")  # described for planning; not run by this version


def layout_from_gguf(g) -> ModelLayout:
    """The layout of an opened GGUFFile, also for plannable-only architectures; the quantization
    is filled in when the file is a catalog model."""
    try:
        layout = ModelLayout.from_gguf(g)
    except UnsupportedModelError:
        if g.architecture not in PLANNABLE:
            raise
        layout = _generic_layout(g)
    found = identify(layout)
    if found and found[1] and not layout.quantization:
        layout = dataclasses.replace(layout, quantization=found[1])
    return layout


def _generic_layout(g) -> ModelLayout:
    """A layout from the standard `{arch}.*` metadata keys (gemma3, phi3)."""
    dim, heads = int(g.arch_get("embedding_length")), int(g.arch_get("attention.head_count"))
    tensors = tuple(TensorSpec(t.name, t.type_name, tuple(t.shape)) for t in g.tensors.values())
    return ModelLayout(
        name=str(g.metadata.get("general.name", g.path.stem)), arch=g.architecture,
        n_vocab=int(g.tensors["token_embd.weight"].shape[1]), dim=dim, n_layers=int(g.arch_get("block_count")),
        n_heads=heads, n_kv_heads=int(g.arch_get("attention.head_count_kv", heads)),
        head_dim=int(g.arch_get("attention.key_length", dim // heads)),
        ffn_dim=int(g.arch_get("feed_forward_length")), n_ctx_train=int(g.arch_get("context_length", 2048)),
        tensors=tensors)
