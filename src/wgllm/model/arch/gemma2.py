"""The gemma2 family (Gemma 2): gemma3's layer without qk-norm, with soft caps.

Scores are soft-capped (`attn_logit_softcapping`, default 50) and so are the final logits
(`final_logit_softcapping`, default 30); every other layer (the even ones) uses the sliding
window (`attention.sliding_window`, default 4096) with the global rope base; the output is the
embedding (always tied).
"""

from __future__ import annotations

import dataclasses

from wgllm.model.arch import gemma3
from wgllm.model.config import Meta, ModelConfig

ARCH = "gemma2"


def config(meta: Meta, tensors) -> ModelConfig:
    cfg = gemma3.llama.base_config(meta, tensors, rope_mode="neox", post_norms=True, ffn_act="gelu")
    cfg = dataclasses.replace(cfg, attn_softcap=50.0, final_softcap=30.0, tied_embeddings=True)
    return gemma3.gemma_flags(meta, cfg, 2, big_layers=46, rope_base_swa=cfg.rope_base, window=4096)


tensors = gemma3.tensors  # no qk-norm (cfg.qk_norm is false), no output matrix
layer_weights = gemma3.layer_weights
layer = gemma3.layer
