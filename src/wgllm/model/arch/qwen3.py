"""The qwen3 family (Qwen3 dense): llama's layer with per-head q/k RMSNorm, no biases, neox rope."""

from __future__ import annotations

from wgllm.model import blocks
from wgllm.model.arch import llama
from wgllm.model.config import Meta, ModelConfig, TensorDecl

ARCH = "qwen3"


def config(meta: Meta, tensors) -> ModelConfig:
    """The qwen3 config of a GGUF header: llama's keys, qk-norm, neox rope."""
    return llama.base_config(meta, tensors, rope_mode="neox", qk_norm=True)


def tensors(cfg: ModelConfig) -> list[TensorDecl]:
    """llama's tensors plus each layer's attn_q_norm / attn_k_norm [head_dim]."""
    out = []
    for d in llama.tensors(cfg):
        out.append(d)
        if d.name.endswith("attn_k.weight"):
            b = d.name.removesuffix("attn_k.weight")
            out += [TensorDecl(b + "attn_q_norm.weight", (cfg.head_dim,)),
                    TensorDecl(b + "attn_k_norm.weight", (cfg.head_dim,))]
    return out


def layer_weights(m, i: int) -> blocks.LayerWeights:
    b = f"blk.{i}."
    L = llama.layer_weights(m, i)
    L.qk_norm = m.vector(b + "attn_q_norm.weight", b + "attn_k_norm.weight")
    return L


layer = llama.layer
