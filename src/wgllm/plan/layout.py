"""A model's shape for planning: its config and tensor list, from a GGUF header or from metadata.

No weight data is read: a layout is what the memory estimate needs, whether
the model is a file on disk (`ModelLayout.from_gguf`) or an entry of the
catalog / a test model (`layout_for`: GGUF metadata keys in, the tensor list
from the architecture file's declarations, the types from llama-quantize's
mix of a file type or from an explicit table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from wgllm.kernels import qtypes
from wgllm.model import arch as arches
from wgllm.model.config import ModelConfig



@dataclass(frozen=True)
class TensorSpec:
    """One tensor: GGUF name, ggml type name (e.g. "Q4_0"), shape in ggml order (row length first).

    It reads like a GGUF TensorInfo without data, so a model build can run on it."""

    name: str
    ggml_type: str
    shape: tuple[int, ...]

    @property
    def type_name(self) -> str:
        return self.ggml_type

    @property
    def nbytes(self) -> int:
        return qtypes.TYPES[self.ggml_type].nbytes(self.shape)

    n_bytes = nbytes

    @property
    def n_rows(self) -> int:
        n = 1
        for d in self.shape[1:]:
            n *= d
        return n

    @property
    def row_len(self) -> int:
        return int(self.shape[0])


@dataclass(frozen=True)
class ModelLayout:
    """What the planner knows about a model (see module doc)."""

    name: str
    config: ModelConfig
    tensors: tuple[TensorSpec, ...]
    quantization: str = ""
    # sequences served at once (continuous batching, `--parallel`): each has a KV cache of its own
    n_seq: int = 1

    # the config's hyperparameters, read through
    arch = property(lambda self: self.config.arch)
    n_vocab = property(lambda self: self.config.n_vocab)
    dim = property(lambda self: self.config.dim)
    n_layers = property(lambda self: self.config.n_layers)
    n_heads = property(lambda self: self.config.n_heads)
    n_kv_heads = property(lambda self: self.config.n_kv_heads)
    head_dim = property(lambda self: self.config.head_dim)
    ffn_dim = property(lambda self: self.config.ffn_dim)
    n_ctx_train = property(lambda self: self.config.n_ctx_train)
    tied_embeddings = property(lambda self: self.config.tied_embeddings)

    @property
    def weight_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def tensor(self, name: str) -> TensorSpec:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def tensor_map(self) -> dict[str, TensorSpec]:
        return {t.name: t for t in self.tensors}

    @classmethod
    def from_gguf(cls, g) -> "ModelLayout":
        """The layout of an opened `wgllm.model.gguf.GGUFFile` (header only; no data read)."""
        cfg = arches.config_for(g)
        tensors = tuple(TensorSpec(t.name, t.type_name, tuple(t.shape)) for t in g.tensors.values())
        return cls(str(g.metadata.get("general.name", g.path.stem)), cfg, tensors)


class _Shape:
    """A stand-in tensor that has only a shape (to derive a config before the tensor list)."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape


def hparams(arch: str, *, n_vocab: int, dim: int, n_layers: int, n_heads: int, n_kv_heads: int, ffn_dim: int,
            ctx: int = 2048, rope_base: float = 10000.0, rms_eps: float = 1e-5, head_dim: int = 0,
            **extra: Any) -> dict[str, Any]:
    """GGUF metadata (`general.architecture` and `{arch}.*` keys, as llama.cpp writes them) of a model
    with these hyperparameters; `extra` adds `{arch}.<key>` entries (dots as double underscores)."""
    head_dim = head_dim or dim // n_heads
    md: dict[str, Any] = {
        "general.architecture": arch, f"{arch}.vocab_size": n_vocab, f"{arch}.context_length": ctx,
        f"{arch}.embedding_length": dim, f"{arch}.block_count": n_layers, f"{arch}.feed_forward_length": ffn_dim,
        f"{arch}.attention.head_count": n_heads, f"{arch}.attention.head_count_kv": n_kv_heads,
        f"{arch}.rope.freq_base": rope_base, f"{arch}.attention.layer_norm_rms_epsilon": rms_eps,
        f"{arch}.rope.dimension_count": head_dim,
    }
    if head_dim != dim // n_heads:  # llama.cpp writes these only when not implied
        md[f"{arch}.attention.key_length"] = md[f"{arch}.attention.value_length"] = head_dim
    md.update({f"{arch}.{k.replace('__', '.')}": v for k, v in extra.items()})
    return md


def declared_config(metadata: Mapping[str, Any], *, tied: bool, optional: tuple[str, ...] = ()
                    ) -> tuple[ModelConfig, list]:
    """(config, declared tensors) of a model described by metadata alone (`tied`: no output.weight;
    `optional`: names of optional tensors the file holds, e.g. "rope_freqs.weight")."""
    arch = metadata["general.architecture"]
    dim, vocab = metadata[f"{arch}.embedding_length"], metadata[f"{arch}.vocab_size"]
    stub = {"token_embd.weight": _Shape((dim, vocab)), **{n: _Shape(()) for n in optional}}
    if not tied:
        stub["output.weight"] = _Shape((dim, vocab))
    fam = arches.family(arch, plannable=True)
    cfg = fam.config(arches.Meta(metadata, arch), stub)
    return cfg, [d for d in fam.tensors(cfg) if d.required]


def tensor_type(name: str, cols: int, cfg: ModelConfig, *, ftype: str | None = None, types="F32",
                strict: bool = False) -> str:
    """The ggml type of tensor `name` (rows of `cols`): llama-quantize's choice in file type `ftype`
    ("Q4_K_M", "Q4_0": `qtypes.ftype_tensor_type`), else from `types`: one type for every matrix
    ("Q4_0") or a table looked up by base name ("blk.3.attn_v"), then role ("attn_v"), then
    "default". Vectors are F32. A type whose block does not divide the row falls back as
    llama-quantize does, or raises if `strict`."""
    if ftype is not None:
        return qtypes.ftype_tensor_type(ftype, name, cols, n_layers=cfg.n_layers, tied=cfg.tied_embeddings,
                                        n_gqa=cfg.n_gqa)
    if name.endswith(("norm.weight", ".bias")) or name.startswith("rope_"):
        return "F32"
    table = {"default": types} if isinstance(types, str) else types
    base = name.removesuffix(".weight")
    t = table.get(base) or table.get(base.split(".")[-1]) or table.get("default", "F32")
    if t not in qtypes.TYPES:
        raise ValueError(f"unknown tensor type {t!r} for {name} (known: {', '.join(qtypes.TYPES)})")
    if strict and cols % qtypes.TYPES[t].block:
        raise ValueError(f"{name}: row of {cols} is not a whole number of {t} blocks")
    return qtypes.fit_block(t, cols)


def layout_for(name: str, metadata: Mapping[str, Any], *, tied: bool, ftype: str | None = None, types="F32",
               strict: bool = False, optional: tuple[str, ...] = ()) -> ModelLayout:
    """The layout a GGUF file with this metadata would have: the architecture's declared tensors
    (optional ones left out unless named in `optional`; `tied`: no output matrix) in the types
    of `tensor_type`; the quantization is `ftype` (or the single type of `types`)."""
    cfg, decls = declared_config(metadata, tied=tied, optional=optional)
    tensors = tuple(TensorSpec(d.name, tensor_type(d.name, d.shape[0], cfg, ftype=ftype, types=types,
                                                   strict=strict), d.shape) for d in decls)
    quantization = ftype or (types if isinstance(types, str) else "")
    return ModelLayout(name, cfg, tensors, quantization)
