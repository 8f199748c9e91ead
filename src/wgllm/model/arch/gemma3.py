"""The gemma3 family (Gemma 3): declared for planning; the forward pass is not built yet.

Per layer: q/k RMSNorm per head, norms before and after attention and the FFN, a GELU(tanh)
GLU; sliding-window layers (local rope base) interleaved with global ones; tied embedding
scaled by sqrt(dim).
"""

from __future__ import annotations

from wgllm.model.arch import llama
from wgllm.model.config import Meta, ModelConfig, TensorDecl

ARCH = "gemma3"


def config(meta: Meta, tensors) -> ModelConfig:
    return llama.base_config(meta, tensors, rope_mode="neox")


def tensors(cfg: ModelConfig) -> list[TensorDecl]:
    d, q, kv, f, hd = cfg.dim, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.ffn_dim, cfg.head_dim
    out = [TensorDecl("token_embd.weight", (d, cfg.n_vocab))]
    for i in range(cfg.n_layers):
        b = f"blk.{i}."
        out += [TensorDecl(b + "attn_norm.weight", (d,)), TensorDecl(b + "attn_q.weight", (d, q)),
                TensorDecl(b + "attn_q_norm.weight", (hd,)), TensorDecl(b + "attn_k.weight", (d, kv)),
                TensorDecl(b + "attn_k_norm.weight", (hd,)), TensorDecl(b + "attn_v.weight", (d, kv)),
                TensorDecl(b + "attn_output.weight", (q, d)), TensorDecl(b + "post_attention_norm.weight", (d,)),
                TensorDecl(b + "ffn_norm.weight", (d,)), TensorDecl(b + "ffn_gate.weight", (d, f)),
                TensorDecl(b + "ffn_up.weight", (d, f)), TensorDecl(b + "ffn_down.weight", (f, d)),
                TensorDecl(b + "post_ffw_norm.weight", (d,))]
    out += [TensorDecl("output_norm.weight", (d,)),
            TensorDecl("output.weight", (d, cfg.n_vocab), required=not cfg.tied_embeddings)]
    return out
