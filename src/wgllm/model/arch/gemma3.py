"""The gemma3 family (Gemma 3 text models, 270M to 27B).

Per layer: q/k RMSNorm per head, norms before and after attention and the FFN (the post-norms
go into the residual stream), a GELU (tanh form) GLU; sliding-window layers (window from
`attention.sliding_window`, rope base 10000 or `rope.freq_base_swa`) with every 6th layer
global (layers 5, 11, ...); the embedding scaled by sqrt(dim) and tied to the output; the score
scale 1/sqrt(head_dim), or 1/sqrt(dim / heads) for the 62-layer 27B (as llama.cpp). GGUF norm
weights already hold Gemma's (1 + w).
"""

from __future__ import annotations

import dataclasses
import math

from wgllm.model import blocks
from wgllm.model.arch import llama
from wgllm.model.config import Meta, ModelConfig, TensorDecl

ARCH = "gemma3"
SWA_PATTERN = 6  # layer i is global when i % 6 == 5


def config(meta: Meta, tensors) -> ModelConfig:
    cfg = llama.base_config(meta, tensors, rope_mode="neox", qk_norm=True, post_norms=True, ffn_act="gelu")
    return gemma_flags(meta, cfg, SWA_PATTERN, big_layers=62, rope_base_swa=10000.0)


def gemma_flags(meta: Meta, cfg: ModelConfig, pattern: int, *, big_layers: int, rope_base_swa: float,
                window: int = 0) -> ModelConfig:
    """The Gemma settings shared by gemma2 and gemma3: sliding-window pattern, rope of the window
    layers, embedding scale, score scale, soft caps (from metadata where the file has them)."""
    window = int(meta.get("attention.sliding_window", window) or 0)
    swa = tuple(i % pattern < pattern - 1 for i in range(cfg.n_layers)) if window else ()
    dims = cfg.dim // cfg.n_heads if cfg.n_layers == big_layers else cfg.head_dim
    factor = meta.get("rope.scaling.factor") if meta.get("rope.scaling.type") == "linear" else None
    return dataclasses.replace(
        cfg, sliding_window=window, swa_layers=swa, rope_base_swa=float(meta.get("rope.freq_base_swa", rope_base_swa)),
        embed_scale=math.sqrt(cfg.dim), attn_scale=1.0 / math.sqrt(dims), rope_scale=float(factor or 1.0),
        attn_softcap=float(meta.get("attn_logit_softcapping", cfg.attn_softcap) or 0.0),
        final_softcap=float(meta.get("final_logit_softcapping", cfg.final_softcap) or 0.0))


def tensors(cfg: ModelConfig) -> list[TensorDecl]:
    d, q, kv, f, hd = cfg.dim, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.ffn_dim, cfg.head_dim
    out = [TensorDecl("token_embd.weight", (d, cfg.n_vocab))]
    for i in range(cfg.n_layers):
        b = f"blk.{i}."
        out += [TensorDecl(b + "attn_norm.weight", (d,)), TensorDecl(b + "attn_q.weight", (d, q)),
                TensorDecl(b + "attn_k.weight", (d, kv)), TensorDecl(b + "attn_v.weight", (d, kv))]
        if cfg.qk_norm:
            out += [TensorDecl(b + "attn_q_norm.weight", (hd,)), TensorDecl(b + "attn_k_norm.weight", (hd,))]
        out += [TensorDecl(b + "attn_output.weight", (q, d)), TensorDecl(b + "post_attention_norm.weight", (d,)),
                TensorDecl(b + "ffn_norm.weight", (d,)), TensorDecl(b + "ffn_gate.weight", (d, f)),
                TensorDecl(b + "ffn_up.weight", (d, f)), TensorDecl(b + "ffn_down.weight", (f, d)),
                TensorDecl(b + "post_ffw_norm.weight", (d,))]
    return out + llama.output_decls(cfg)


def layer_weights(m, i: int) -> blocks.LayerWeights:
    b = f"blk.{i}."
    L = llama.layer_weights(m, i)
    if m.cfg.qk_norm:
        L.qk_norm = m.vector(b + "attn_q_norm.weight", b + "attn_k_norm.weight")
    L.attn_post_norm = m.vector(b + "post_attention_norm.weight")
    L.ffn_post_norm = m.vector(b + "post_ffw_norm.weight")
    return L


layer = llama.layer
