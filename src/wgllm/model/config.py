"""What every architecture file produces from a GGUF header: a `ModelConfig` with feature flags,
and its declared tensors (`TensorDecl`).

The forward pass, the planner and the test-model writer read the flags
(qk-norm, q/k/v bias, post-norms, softcaps, sliding window, rope kind); no
code outside `wgllm.model.arch` asks which architecture a model is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from wgllm.errors import InvalidModelFileError


@dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters and feature flags of a decoder-only transformer."""

    arch: str
    n_vocab: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    n_ctx_train: int
    rope_base: float
    rope_dim: int
    rope_mode: str  # "normal" (GGUF llama: interleaved pairs) or "neox" (halves)
    rms_eps: float
    tied_embeddings: bool
    qkv_bias: bool = False  # q/k/v projections have biases
    rope_freqs: bool = False  # rope_freqs.weight scales each rotary frequency (llama 3.1+)
    rope_long_short: bool = False  # rope_factors_long/short.weight: long when the context > rope_ctx_orig
    rope_ctx_orig: int = 0  # the original training context of long/short rope factors
    rope_mscale: float = 1.0  # the rotated q and k dims are scaled by this (longrope's attention factor)
    fused_qkv: bool = False  # one attn_qkv tensor instead of attn_q/k/v
    fused_gate_up: bool = False  # ffn_up holds [gate | up] rows (no ffn_gate)
    qk_norm: bool = False  # RMSNorm of each q and k head before rope (attn_q_norm / attn_k_norm)
    post_norms: bool = False  # RMSNorm of the attention and FFN outputs before the residual add
    ffn_act: str = "silu"  # the GLU's activation: "silu" (SwiGLU) or "gelu" (GELU, tanh form)
    embed_scale: float = 1.0  # the embedding rows are multiplied by this (Gemma: sqrt(dim))
    attn_scale: float = 0.0  # score scale (0: 1 / sqrt(head_dim))
    attn_softcap: float = 0.0  # score soft cap c: c * tanh(s / c) (0: none)
    final_softcap: float = 0.0  # logit soft cap (0: none)
    sliding_window: int = 0  # window of the sliding-window layers (0: none)
    swa_layers: tuple[bool, ...] = ()  # per layer: sliding-window attention? (empty: none)
    rope_base_swa: float = 0.0  # rope base of the sliding-window layers (0: rope_base)
    rope_scale: float = 1.0  # linear rope scaling of the other layers (positions / factor)

    def is_swa(self, i: int) -> bool:
        """Whether layer i attends through the sliding window."""
        return bool(self.sliding_window) and bool(self.swa_layers) and self.swa_layers[i]

    def rope_of(self, i: int) -> tuple[float, float]:
        """(rope base, frequency scale) of layer i."""
        if self.is_swa(i):
            return (self.rope_base_swa or self.rope_base, 1.0)
        return (self.rope_base, 1.0 / self.rope_scale)

    def rope_factors_tensor(self, ctx: int) -> str | None:
        """The name of the tensor of per-frequency rope factors for a context of `ctx` (None: none)."""
        if self.rope_long_short:
            return "rope_factors_long.weight" if ctx > self.rope_ctx_orig else "rope_factors_short.weight"
        return "rope_freqs.weight" if self.rope_freqs else None

    @property
    def qkv_dim(self) -> int:
        return (self.n_heads + 2 * self.n_kv_heads) * self.head_dim

    @property
    def n_gqa(self) -> int:
        return self.n_heads // self.n_kv_heads


@dataclass(frozen=True)
class TensorDecl:
    """A tensor an architecture reads: GGUF name, shape in ggml order (row length first),
    required or optional, and whether it is a matrix (quantizable) or an F32 vector."""

    name: str
    shape: tuple[int, ...]
    required: bool = True

    @property
    def is_vector(self) -> bool:
        return len(self.shape) == 1


class Meta:
    """GGUF metadata of one file, read with the architecture prefix (`{arch}.block_count`)."""

    def __init__(self, metadata: Mapping[str, Any], source: str = "the model"):
        self.metadata, self.source = metadata, source
        self.arch = str(metadata.get("general.architecture", ""))

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.arch}.{key}", default)

    def req(self, key: str) -> Any:
        """The value of `{arch}.key`; InvalidModelFileError when missing."""
        value = self.get(key)
        if value is None:
            raise InvalidModelFileError(
                f"{self.source} lacks the metadata key {self.arch}.{key}; the file is incomplete or "
                f"not a {self.arch} model as llama.cpp writes it.")
        return value


def check_tensors(decls: list[TensorDecl], tensors: Mapping[str, Any], source: str) -> None:
    """Raise InvalidModelFileError if a required tensor is missing or any declared one has
    another shape than the architecture's hyperparameters give."""
    for d in decls:
        t = tensors.get(d.name)
        if t is None:
            if d.required:
                raise InvalidModelFileError(
                    f"{source} has no tensor {d.name}, which its architecture needs; the file is "
                    f"incomplete or was written by an incompatible converter.")
            continue
        if tuple(t.shape) != tuple(d.shape):
            raise InvalidModelFileError(
                f"{source}: tensor {d.name} has shape {tuple(t.shape)} but the metadata implies "
                f"{tuple(d.shape)}; the file is inconsistent.")
