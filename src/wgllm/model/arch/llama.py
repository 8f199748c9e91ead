"""The llama family: Llama 2 / 3 / 3.1-3.3 (rope_freqs factors), Mistral 7B, TinyLlama, SmolLM2.

Pre-norm attention with interleaved-pair rope ("normal" mode: llama.cpp's converter permutes
q/k rows for it) and a SwiGLU FFN; the output matrix may be tied to the embedding. When the
metadata sets `attention.sliding_window` (Mistral v0.1) every layer attends through that window,
as transformers' Mistral does (llama.cpp's llama graph ignores the key).
"""

from __future__ import annotations

from wgllm.errors import UnsupportedModelError
from wgllm.model import blocks
from wgllm.model.config import Meta, ModelConfig, TensorDecl

ARCH = "llama"


def config(meta: Meta, tensors) -> ModelConfig:
    """The llama config of a GGUF header (`tensors`: name -> anything with a ggml `shape`)."""
    window = int(meta.get("attention.sliding_window", 0) or 0)
    n_layers = int(meta.req("block_count"))
    return base_config(meta, tensors, rope_mode="normal", sliding_window=window,
                       swa_layers=(True,) * n_layers if window else ())


def base_config(meta: Meta, tensors, *, rope_mode: str, **flags) -> ModelConfig:
    """The hyperparameters every llama-like family stores under the standard `{arch}.*` keys."""
    dim = int(meta.req("embedding_length"))
    n_heads = int(meta.req("attention.head_count"))
    head_dim = int(meta.get("attention.key_length", dim // n_heads))
    emb = tensors.get("token_embd.weight")
    if emb is None:
        raise UnsupportedModelError(f"{meta.source} has no token_embd.weight tensor.")
    return ModelConfig(
        arch=meta.arch, n_vocab=int(emb.shape[1]), dim=dim, n_layers=int(meta.req("block_count")),
        n_heads=n_heads, n_kv_heads=int(meta.get("attention.head_count_kv", n_heads)), head_dim=head_dim,
        ffn_dim=int(meta.req("feed_forward_length")), n_ctx_train=int(meta.get("context_length", 2048)),
        rope_base=float(meta.get("rope.freq_base", 10000.0)),
        rope_dim=int(meta.get("rope.dimension_count", head_dim)), rope_mode=rope_mode,
        rms_eps=float(meta.get("attention.layer_norm_rms_epsilon", 1e-5)),
        tied_embeddings="output.weight" not in tensors, rope_freqs="rope_freqs.weight" in tensors, **flags)


def tensors(cfg: ModelConfig) -> list[TensorDecl]:
    """Every tensor a llama-family file holds (ggml shapes), in llama.cpp's file order."""
    d, q, kv, f = cfg.dim, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.ffn_dim
    out = [TensorDecl("token_embd.weight", (d, cfg.n_vocab)),
           TensorDecl("rope_freqs.weight", (cfg.rope_dim // 2,), required=cfg.rope_freqs)]
    for i in range(cfg.n_layers):
        b = f"blk.{i}."
        out += [TensorDecl(b + "attn_norm.weight", (d,)), TensorDecl(b + "attn_q.weight", (d, q)),
                TensorDecl(b + "attn_k.weight", (d, kv)), TensorDecl(b + "attn_v.weight", (d, kv))]
        if cfg.qkv_bias:
            out += [TensorDecl(b + "attn_q.bias", (q,)), TensorDecl(b + "attn_k.bias", (kv,)),
                    TensorDecl(b + "attn_v.bias", (kv,))]
        out += [TensorDecl(b + "attn_output.weight", (q, d)), TensorDecl(b + "ffn_norm.weight", (d,)),
                TensorDecl(b + "ffn_gate.weight", (d, f)), TensorDecl(b + "ffn_up.weight", (d, f)),
                TensorDecl(b + "ffn_down.weight", (f, d))]
    return out + output_decls(cfg)


def output_decls(cfg: ModelConfig) -> list[TensorDecl]:
    """The final norm and the output matrix (absent when tied to the embedding)."""
    return [TensorDecl("output_norm.weight", (cfg.dim,)),
            TensorDecl("output.weight", (cfg.dim, cfg.n_vocab), required=not cfg.tied_embeddings)]


def layer_weights(m, i: int, qkv=("attn_q", "attn_k", "attn_v"), gate_up=("ffn_gate", "ffn_up")
                  ) -> blocks.LayerWeights:
    """Layer i's weights on the device: the `qkv` tensors fused row-wise into q|k|v, the `gate_up`
    ones into gate|up (a family whose file holds them fused names one tensor each)."""
    b = f"blk.{i}."
    return blocks.LayerWeights(
        attn_norm=m.vector(b + "attn_norm.weight"),
        wqkv=m.weight([f"{b}{r}.weight" for r in qkv]),
        wo=m.weight([b + "attn_output.weight"]),
        ffn_norm=m.vector(b + "ffn_norm.weight"),
        wgu=m.weight([f"{b}{r}.weight" for r in gate_up]),
        wdown=m.weight([b + "ffn_down.weight"]),
        bqkv=m.vector(b + "attn_q.bias", b + "attn_k.bias", b + "attn_v.bias") if m.cfg.qkv_bias else None,
    )


def layer(m, i: int, T: int):
    """Layer i over up to T tokens: pre-norm attention, then the SwiGLU FFN."""
    L = m.layers[i]
    return blocks.attention(m, L, i, T) + blocks.gated_ffn(m, L, T)
