"""The qwen2 family (Qwen2, Qwen2.5): llama's layer with q/k/v biases and neox (half-split) rope."""

from __future__ import annotations

from wgllm.model.arch import llama
from wgllm.model.config import Meta, ModelConfig

ARCH = "qwen2"


def config(meta: Meta, tensors) -> ModelConfig:
    """The qwen2 config of a GGUF header: llama's keys, biases always, neox rope."""
    return llama.base_config(meta, tensors, rope_mode="neox", qkv_bias=True)


tensors = llama.tensors  # llama's list; the biases follow cfg.qkv_bias
layer_weights = llama.layer_weights
layer = llama.layer
