"""The phi3 family (Phi-3, Phi-3.5): declared for planning; the forward pass is not built yet.

Fused q|k|v (attn_qkv) and gate|up (ffn_up with 2 * ffn rows); long/short rope factors.
"""

from __future__ import annotations

import dataclasses

from wgllm.model.arch import llama
from wgllm.model.config import Meta, ModelConfig, TensorDecl

ARCH = "phi3"


def config(meta: Meta, tensors) -> ModelConfig:
    cfg = llama.base_config(meta, tensors, rope_mode="neox", fused_qkv=True, fused_gate_up=True)
    # long/short rope factors: the 128k-context models (their files set the original context)
    factors = "rope_factors_long.weight" in tensors or meta.get("rope.scaling.original_context_length") is not None
    return dataclasses.replace(cfg, rope_freqs=factors)


def tensors(cfg: ModelConfig) -> list[TensorDecl]:
    d, f, q = cfg.dim, cfg.ffn_dim, cfg.n_heads * cfg.head_dim
    out = [TensorDecl("token_embd.weight", (d, cfg.n_vocab)),
           TensorDecl("rope_factors_long.weight", (cfg.rope_dim // 2,), required=cfg.rope_freqs),
           TensorDecl("rope_factors_short.weight", (cfg.rope_dim // 2,), required=cfg.rope_freqs)]
    for i in range(cfg.n_layers):
        b = f"blk.{i}."
        out += [TensorDecl(b + "attn_norm.weight", (d,)), TensorDecl(b + "attn_qkv.weight", (d, cfg.qkv_dim)),
                TensorDecl(b + "attn_output.weight", (q, d)), TensorDecl(b + "ffn_norm.weight", (d,)),
                TensorDecl(b + "ffn_up.weight", (d, 2 * f)), TensorDecl(b + "ffn_down.weight", (f, d))]
    out += [TensorDecl("output_norm.weight", (d,)),
            TensorDecl("output.weight", (d, cfg.n_vocab), required=not cfg.tied_embeddings)]
    return out
