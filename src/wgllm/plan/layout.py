"""A model's shape for planning: hyperparameters and tensor list, from a GGUF header or the catalog.

No weight data is read: a layout is what the memory estimate needs, whether
the model is a file on disk or an entry of the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType


@dataclass(frozen=True)
class TensorSpec:
    """One weight tensor: GGUF name, ggml type name (e.g. "Q4_0"), shape in ggml order."""

    name: str
    ggml_type: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType[self.ggml_type]]
        n = 1
        for d in self.shape:
            n *= d
        return n // block * size

    @property
    def n_rows(self) -> int:
        n = 1
        for d in self.shape[1:]:
            n *= d
        return n


@dataclass(frozen=True)
class ModelLayout:
    """What the planner knows about a model (see module doc)."""

    name: str
    arch: str
    n_vocab: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    n_ctx_train: int
    tensors: tuple[TensorSpec, ...]
    quantization: str = ""

    @property
    def weight_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def tied_embeddings(self) -> bool:
        return not any(t.name == "output.weight" for t in self.tensors)

    def tensor(self, name: str) -> TensorSpec:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    @classmethod
    def from_gguf(cls, g) -> "ModelLayout":
        """The layout of an opened `wgllm.model.gguf.GGUFFile` (header only; no data read)."""
        from wgllm.model.arch import config_for

        cfg = config_for(g)
        tensors = tuple(TensorSpec(t.name, t.type_name, tuple(t.shape)) for t in g.tensors.values())
        return cls(
            name=str(g.metadata.get("general.name", g.path.stem)), arch=cfg.arch, n_vocab=cfg.n_vocab,
            dim=cfg.dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads,
            head_dim=cfg.head_dim, ffn_dim=cfg.ffn_dim, n_ctx_train=cfg.n_ctx_train, tensors=tensors,
        )
