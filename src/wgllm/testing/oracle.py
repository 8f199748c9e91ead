"""Reference outputs for llama GGUF files: HF transformers, and an independent numpy forward pass.

`reference_logits` / `reference_greedy` run transformers (CPU, float32) on the GGUF; transformers
dequantizes every tensor with gguf and un-permutes attn_q/attn_k into HF's rope layout.
`numpy_llama_logits` reads the same file with gguf only and follows llama.cpp's math directly on the
GGUF layout (rope "normal" mode on interleaved pairs), in float64. The two agree to ~1e-6 on the
files `synth.write_llama_gguf` makes (tests/unit/test_synth.py), so either can judge our engine.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["reference_logits", "reference_greedy", "numpy_llama_logits", "numpy_llama_greedy",
           "load_numpy_llama", "NumpyLlama"]

_HF_MODELS: dict[tuple, object] = {}


def _file_key(path: str | Path) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_mtime_ns, st.st_size)


def _hf_model(gguf_path: str | Path, config: dict | None = None):
    """The transformers model for a GGUF file, loaded once per process (per path, mtime, size and
    config overrides: values the GGUF does not carry, e.g. llama 3.1's rope_scaling)."""
    key = (*_file_key(gguf_path), repr(sorted((config or {}).items())))
    if key not in _HF_MODELS:
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()
        p = Path(key[0])
        overrides = {**hf_overrides(p), **(config or {})}
        window = overrides.pop("mistral_sliding_window", None)
        # use_kernels=False: the plain torch forward. transformers 5.x otherwise turns the `kernels`
        # hub layers on where CUDA is present and fails when that package is missing (the GPU machine).
        model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32,
                                                     use_kernels=False, **overrides)
        if window:
            model = _as_mistral(model, window)
        _HF_MODELS[key] = model.eval()
    return _HF_MODELS[key]


def reference_tokenizer(gguf_path: str | Path):
    """transformers' tokenizer built from a GGUF file, loaded once per process (per path, mtime, size)."""
    key = ("tokenizer", *_file_key(gguf_path))
    if key not in _HF_MODELS:
        from transformers import AutoTokenizer

        p = Path(key[1])
        _HF_MODELS[key] = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    return _HF_MODELS[key]


def _as_mistral(llama, window: int):
    """transformers' Mistral (a llama with a sliding window) holding `llama`'s weights: its GGUF
    loader reads a llama-arch file as Llama, which has no window."""
    from transformers import MistralConfig, MistralForCausalLM

    cfg = MistralConfig(**{**llama.config.to_dict(), "sliding_window": window, "model_type": "mistral"})
    model = MistralForCausalLM(cfg).to(llama.dtype)
    model.load_state_dict(llama.state_dict())
    return model


def hf_overrides(gguf_path: str | Path) -> dict:
    """Config values transformers' GGUF loader does not read, set as llama.cpp reads the file:
    the head dim (qwen3 and gemma default it), Gemma's score scale 1/sqrt(head_dim)
    (transformers' default query_pre_attn_scalar is 256), Gemma 2's soft caps and phi3's
    longrope factors (the short ones: a context within the original one)."""
    import gguf

    r = gguf.GGUFReader(str(gguf_path))
    arch = _field(r, "general.architecture")
    dim, heads = _field(r, f"{arch}.embedding_length"), _field(r, f"{arch}.attention.head_count")
    head_dim = _field(r, f"{arch}.attention.key_length", dim // heads)
    # qwen3's and gemma's configs default it to 128 / 256 (qwen2's has no such field)
    out = {"head_dim": head_dim} if arch in ("qwen3", "gemma2", "gemma3") else {}
    if arch == "phi3":
        out.update(_longrope(r, arch))
        rope_dim = _field(r, f"{arch}.rope.dimension_count", head_dim)
        if rope_dim != head_dim:  # Phi-4 mini: partial rotary (the GGUF loader does not read it)
            rope = out.setdefault("rope_parameters", {
                "rope_type": "default", "rope_theta": float(_field(r, f"{arch}.rope.freq_base", 10000.0))})
            rope["partial_rotary_factor"] = rope_dim / head_dim
    if arch == "llama" and _field(r, "llama.attention.sliding_window"):
        out["mistral_sliding_window"] = int(_field(r, "llama.attention.sliding_window"))
    if arch not in ("gemma2", "gemma3"):
        return out
    out["query_pre_attn_scalar"] = head_dim
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        value = _field(r, f"{arch}.{key}")
        if value is not None:
            out[key] = float(value)
    return out


def _longrope(r, arch: str) -> dict:
    """phi3's rope_parameters for transformers from the file's factor tensors and metadata."""
    factors = {t.name: np.asarray(t.data, np.float64).tolist() for t in r.tensors if t.name.startswith("rope_factors")}
    if not factors:
        return {}
    orig = int(_field(r, f"{arch}.rope.scaling.original_context_length"))
    return {"rope_parameters": {
        "rope_type": "longrope", "rope_theta": float(_field(r, f"{arch}.rope.freq_base", 10000.0)),
        "long_factor": factors["rope_factors_long.weight"], "short_factor": factors["rope_factors_short.weight"],
        "original_max_position_embeddings": orig,
        "attention_factor": float(_field(r, f"{arch}.rope.scaling.attn_factor", 1.0))}}


def reference_logits(gguf_path: str | Path, token_ids, config: dict | None = None) -> np.ndarray:
    """Transformers' logits for `token_ids` (positions 0..T-1) as float32 [T, vocab]."""
    import torch

    model = _hf_model(gguf_path, config)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([list(token_ids)], dtype=torch.long))
    return out.logits[0].float().numpy()


def reference_hidden(gguf_path: str | Path, token_ids, config: dict | None = None) -> np.ndarray:
    """Transformers' last hidden state (after the final norm) for `token_ids` as float32 [T, dim]."""
    import torch

    model = _hf_model(gguf_path, config)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([list(token_ids)], dtype=torch.long), output_hidden_states=True)
    return out.hidden_states[-1][0].float().numpy()


def reference_greedy(gguf_path: str | Path, prompt_ids, n: int, config: dict | None = None) -> list[int]:
    """The n tokens transformers picks greedily (argmax, KV-cached, no stop on EOS) after the prompt."""
    import torch

    model = _hf_model(gguf_path, config)
    # the KV cache argument is `cache` in transformers >= 5.24, `past_key_values` before
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    ids, past, new = torch.tensor([list(prompt_ids)], dtype=torch.long), None, []
    with torch.no_grad():
        for _ in range(n):
            out = model(input_ids=ids, use_cache=True, **{key: past})
            past = getattr(out, key)
            new.append(int(out.logits[0, -1].argmax()))
            ids = torch.tensor([[new[-1]]], dtype=torch.long)
    return new


# ---------------------------------------------------------------- numpy reference

@dataclass
class NumpyLlama:
    """A llama model's hyperparameters and float64 weights in GGUF layout ([out, in] matrices)."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    rope_base: float
    rope_dims: int
    rms_eps: float
    weights: dict[str, np.ndarray]


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def load_numpy_llama(gguf_path: str | Path) -> NumpyLlama:
    """Read a llama GGUF with gguf and dequantize every tensor to float64."""
    import gguf

    r = gguf.GGUFReader(str(gguf_path))
    arch = _field(r, "general.architecture")
    k = lambda name, default=None: _field(r, f"{arch}.{name}", default)  # noqa: E731
    w = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64) for t in r.tensors}
    n_heads, dim = int(k("attention.head_count")), int(k("embedding_length"))
    head_dim = int(k("attention.key_length", dim // n_heads))
    return NumpyLlama(
        n_layers=int(k("block_count")), n_heads=n_heads, n_kv_heads=int(k("attention.head_count_kv", n_heads)),
        head_dim=head_dim, rope_base=float(k("rope.freq_base", 10000.0)),
        rope_dims=int(k("rope.dimension_count", head_dim)),
        rms_eps=float(k("attention.layer_norm_rms_epsilon")), weights=w)


def _rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _rope_normal(x: np.ndarray, base: float, n_dims: int) -> np.ndarray:
    """llama.cpp rope mode 0 on x [T, heads, head_dim]: rotate pairs (2i, 2i+1) by pos * base^(-2i/n_dims)."""
    t = np.arange(x.shape[0], dtype=np.float64)[:, None, None]
    theta = t * base ** (-np.arange(0, n_dims, 2, dtype=np.float64) / n_dims)
    cos, sin = np.cos(theta), np.sin(theta)
    out = x.copy()
    a, b = x[..., 0:n_dims:2], x[..., 1:n_dims:2]
    out[..., 0:n_dims:2], out[..., 1:n_dims:2] = a * cos - b * sin, a * sin + b * cos
    return out


def _attention(m: NumpyLlama, h: np.ndarray, i: int) -> np.ndarray:
    W, T, hd = m.weights, h.shape[0], m.head_dim
    q = (h @ W[f"blk.{i}.attn_q.weight"].T).reshape(T, m.n_heads, hd)
    k = (h @ W[f"blk.{i}.attn_k.weight"].T).reshape(T, m.n_kv_heads, hd)
    v = (h @ W[f"blk.{i}.attn_v.weight"].T).reshape(T, m.n_kv_heads, hd)
    q, k = _rope_normal(q, m.rope_base, m.rope_dims), _rope_normal(k, m.rope_base, m.rope_dims)
    group = m.n_heads // m.n_kv_heads  # GQA: query head j reads kv head j // group
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd)
    s = np.where(np.tril(np.ones((T, T), dtype=bool)), s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    o = np.einsum("hts,shd->thd", p, v).reshape(T, m.n_heads * hd)
    return o @ W[f"blk.{i}.attn_output.weight"].T


def _ffn(m: NumpyLlama, h: np.ndarray, i: int) -> np.ndarray:
    W = m.weights
    g, u = h @ W[f"blk.{i}.ffn_gate.weight"].T, h @ W[f"blk.{i}.ffn_up.weight"].T
    return (g / (1.0 + np.exp(-g)) * u) @ W[f"blk.{i}.ffn_down.weight"].T


def numpy_llama_forward(m: NumpyLlama, token_ids) -> np.ndarray:
    """Float64 logits [T, vocab] of a loaded `NumpyLlama` for `token_ids` at positions 0..T-1."""
    W = m.weights
    x = W["token_embd.weight"][np.asarray(list(token_ids))]
    for i in range(m.n_layers):
        x = x + _attention(m, _rms_norm(x, W[f"blk.{i}.attn_norm.weight"], m.rms_eps), i)
        x = x + _ffn(m, _rms_norm(x, W[f"blk.{i}.ffn_norm.weight"], m.rms_eps), i)
    out = W.get("output.weight", W["token_embd.weight"])  # tied embeddings: no output.weight
    return _rms_norm(x, W["output_norm.weight"], m.rms_eps) @ out.T


def numpy_llama_logits(gguf_path: str | Path, token_ids) -> np.ndarray:
    """Independent float64 numpy logits [T, vocab] for a llama GGUF (llama.cpp's math, GGUF layout)."""
    return numpy_llama_forward(load_numpy_llama(gguf_path), token_ids)


def numpy_llama_greedy(gguf_path: str | Path, prompt_ids, n: int) -> list[int]:
    """The n tokens the numpy reference picks greedily after the prompt (recomputes the prefix)."""
    m, ids = load_numpy_llama(gguf_path), list(prompt_ids)
    for _ in range(n):
        ids.append(int(numpy_llama_forward(m, ids)[-1].argmax()))
    return ids[len(prompt_ids):]
