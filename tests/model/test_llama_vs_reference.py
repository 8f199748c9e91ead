"""Whole tiny llama-family models (llama, qwen2) on WebGPU vs transformers loading the same GGUF."""

import numpy as np
import pytest

from wgllm.testing import oracle, synth

# (name, shape kwargs, weight types): GQA and not, tied and untied, dims not multiples of 64.
CASES = [
    ("gqa-tied-f32", dict(n_vocab=300, dim=96, n_layers=2, n_heads=6, n_kv_heads=1, ffn_dim=160, tied_embeddings=True), "F32"),
    ("mha-untied-f16", dict(n_vocab=260, dim=96, n_layers=3, n_heads=3, n_kv_heads=3, ffn_dim=224, tied_embeddings=False), "F16"),
    ("gqa-untied-q8_0", dict(n_vocab=300, dim=160, n_layers=2, n_heads=5, n_kv_heads=1, ffn_dim=288, tied_embeddings=False), "Q8_0"),
    ("gqa-untied-q4_0", dict(n_vocab=300, dim=128, n_layers=2, n_heads=8, n_kv_heads=2, ffn_dim=224, tied_embeddings=False), "Q4_0"),
    ("gqa-tied-q4_1", dict(n_vocab=300, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, tied_embeddings=True), "Q4_1"),
    ("qwen2-gqa-tied-q8_0", dict(n_vocab=300, dim=128, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=224, tied_embeddings=True, arch="qwen2"), "Q8_0"),
    ("qwen2-untied-f32", dict(n_vocab=280, dim=96, n_layers=2, n_heads=6, n_kv_heads=2, ffn_dim=160, tied_embeddings=False, arch="qwen2"), "F32"),
    ("kquants", dict(n_vocab=280, dim=256, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=512, tied_embeddings=False),
     {"default": "Q4_K", "attn_v": "Q6_K", "ffn_down": "Q6_K", "token_embd": "Q6_K", "output": "F16"}),
]


def _shape(kw):
    return synth.LlamaShape(name="tiny", ctx=256, rope_base=10000.0, rms_eps=1e-5, **kw)


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def model_file(request, tmp_path_factory):
    name, kw, types = request.param
    path = tmp_path_factory.mktemp(name) / f"{name}.gguf"
    synth.write_llama_gguf(path, _shape(kw), types=types, seed=hash(name) % 1000)
    return path


def _engine(path, precision, chunk=16):
    from wgllm.runtime.engine import Engine

    return Engine(str(path), ctx=128, precision=precision, chunk=chunk)


def _prompt(n, vocab, seed):
    return np.random.default_rng(seed).integers(0, vocab, n).tolist()


def test_logits_every_position_f32(model_file, device):
    eng = _engine(model_file, "f32")
    prompt = _prompt(37, eng.cfg.n_vocab, 1)  # 37 tokens: 3 prefill chunks of 16, the last partial
    got = eng.logits(prompt).astype(np.float64)
    ref = oracle.reference_logits(model_file, prompt).astype(np.float64)
    assert got.shape == ref.shape
    rel = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert rel.max() < 1e-3, f"per-position relative error {rel.max():.2e}"


def test_greedy_32_tokens_identical_f32(model_file, device):
    eng = _engine(model_file, "f32")
    prompt = _prompt(11, eng.cfg.n_vocab, 2)
    got = list(eng.generate(prompt, max_tokens=32, stop_ids=[]))
    ref = oracle.reference_greedy(model_file, prompt, 32)
    assert got == ref


def test_f16_close_to_reference(model_file, device):
    if not device.has_f16:
        pytest.skip("adapter has no shader-f16")
    eng = _engine(model_file, "f16")
    prompt = _prompt(21, eng.cfg.n_vocab, 3)
    got = eng.logits(prompt).astype(np.float64)
    ref = oracle.reference_logits(model_file, prompt).astype(np.float64)
    rel = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert rel.max() < 2e-2, f"f16 per-position relative error {rel.max():.2e}"


def test_kv_cache_reuse_and_chunking_agree(model_file, device):
    """Prefill in one pass, in chunks, by decode steps, and with a cached prefix: same tokens."""
    prompt = _prompt(30, 250, 4)
    whole = list(_engine(model_file, "f32", chunk=64).generate(prompt, max_tokens=12, stop_ids=[]))
    eng = _engine(model_file, "f32", chunk=7)
    assert list(eng.generate(prompt, max_tokens=12, stop_ids=[])) == whole
    # The cache now holds prompt + generated; a longer prompt reuses it.
    assert list(eng.generate(prompt, max_tokens=12, stop_ids=[])) == whole
    assert eng.stats.cached_tokens == len(prompt) - 1
    one = _engine(model_file, "f32", chunk=1)
    assert list(one.generate(prompt, max_tokens=12, stop_ids=[])) == whole
