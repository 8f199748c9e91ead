"""The phi3 family (Phi-3, Phi-3.5 mini, Phi-4 mini: partial rotary).

llama's layer with fused q|k|v (attn_qkv) and gate|up (ffn_up holds [gate | up] rows) weights,
neox rope. The 128k-context files carry long and short rope factors (longrope): as llama.cpp
does, the long ones are used when the context is longer than the original training context,
and the metadata's attention factor scales the rotated dims of q and k.
"""

from __future__ import annotations

import dataclasses

from wgllm.model.arch import llama
from wgllm.model.config import Meta, ModelConfig, TensorDecl

ARCH = "phi3"


def config(meta: Meta, tensors) -> ModelConfig:
    """The phi3 config of a GGUF header: llama's keys, fused weights, neox rope, longrope."""
    cfg = llama.base_config(meta, tensors, rope_mode="neox", fused_qkv=True, fused_gate_up=True)
    long_short = "rope_factors_long.weight" in tensors
    orig = int(meta.get("rope.scaling.original_context_length", 0) or 0)
    factor = float(meta.get("rope.scaling.attn_factor", 1.0) or 1.0)
    return dataclasses.replace(cfg, rope_freqs=False, rope_long_short=long_short,
                               rope_ctx_orig=orig or cfg.n_ctx_train, rope_mscale=factor)


def tensors(cfg: ModelConfig) -> list[TensorDecl]:
    """Every tensor a phi3 file holds (ggml shapes), in llama.cpp's file order."""
    d, f, q = cfg.dim, cfg.ffn_dim, cfg.n_heads * cfg.head_dim
    out = [TensorDecl("token_embd.weight", (d, cfg.n_vocab)),
           TensorDecl("rope_factors_long.weight", (cfg.rope_dim // 2,), required=cfg.rope_long_short),
           TensorDecl("rope_factors_short.weight", (cfg.rope_dim // 2,), required=cfg.rope_long_short)]
    for i in range(cfg.n_layers):
        b = f"blk.{i}."
        out += [TensorDecl(b + "attn_norm.weight", (d,)), TensorDecl(b + "attn_qkv.weight", (d, cfg.qkv_dim)),
                TensorDecl(b + "attn_output.weight", (q, d)), TensorDecl(b + "ffn_norm.weight", (d,)),
                TensorDecl(b + "ffn_up.weight", (d, 2 * f)), TensorDecl(b + "ffn_down.weight", (f, d))]
    return out + llama.output_decls(cfg)


def layer_weights(m, i: int):
    """Layer i's weights on the device: the file's fused tensors are already q|k|v and gate|up."""
    return llama.layer_weights(m, i, qkv=("attn_qkv",), gate_up=("ffn_up",))


layer = llama.layer
