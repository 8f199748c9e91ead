"""The memory estimate (from the GGUF header alone) against what the engine really allocates.

For tiny synthetic models of every family (GQA / MHA, tied / untied, mixed weight types, qwen2
biases, qwen3 qk-norm, gemma post-norms and windows, phi3 fused weights and longrope, llama 3.1
rope factors, weights split into many chunks) and the real SmolLM2-135M, at several contexts, chunk sizes and both
precisions: the engine's own accounting (`Device.allocated`) equals the estimate, label by label
and byte for byte (the issue asks for 2%; we assert that and exactness).
"""

import pytest

from wgllm.gpu.device import Device
from wgllm.gpu.dispatch import is_texels
from wgllm.kernels import linear
from wgllm.kernels.constants import PAD
from wgllm.model.gguf import GGUFFile
from wgllm.plan.layout import ModelLayout
from wgllm.plan.memory import estimate
from wgllm.testing import synth

# (name, shape kwargs, weight types)
TINY = [
    ("gqa-tied-q4_1", dict(n_vocab=300, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96,
                           tied_embeddings=True), "Q4_1"),
    ("mha-untied-f16", dict(n_vocab=260, dim=96, n_layers=3, n_heads=3, n_kv_heads=3, ffn_dim=224), "F16"),
    ("mixed-kquants", dict(n_vocab=280, dim=256, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=512),
     {"default": "Q4_K", "attn_v": "Q6_K", "ffn_down": "Q6_K", "token_embd": "Q8_0", "output": "F16"}),
    ("qwen2-gqa-q8_0", dict(n_vocab=300, dim=128, n_layers=2, n_heads=8, n_kv_heads=2, ffn_dim=224,
                            arch="qwen2"), "Q8_0"),
    ("qwen3-q5_0", dict(n_vocab=300, dim=128, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=224, arch="qwen3",
                        head_dim=48), "Q5_0"),
    ("gemma2-caps-q5_k", dict(n_vocab=300, dim=256, n_layers=3, n_heads=2, n_kv_heads=1, ffn_dim=512, head_dim=64,
                              tied_embeddings=True, arch="gemma2",
                              extra={"attention.sliding_window": 6, "attn_logit_softcapping": 50.0,
                                     "final_logit_softcapping": 30.0}), "Q5_K"),
    ("gemma3-swa-iq4_nl", dict(n_vocab=300, dim=128, n_layers=7, n_heads=4, n_kv_heads=1, ffn_dim=256,
                               head_dim=32, arch="gemma3", extra={"attention.sliding_window": 5}), "IQ4_NL"),
    ("phi3-longrope-q3_k", dict(n_vocab=300, dim=256, n_layers=2, n_heads=4, n_kv_heads=4, ffn_dim=512,
                                arch="phi3", longrope=True,
                                extra={"rope.scaling.original_context_length": 256,
                                       "rope.scaling.attn_factor": 1.2}), "Q3_K"),
    ("llama3-rope-freqs-q2_k", dict(n_vocab=300, dim=256, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=512,
                                    rope_scaling=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                                      original_max_position_embeddings=64)), "Q2_K"),
]
# (n_ctx, precision, chunk)
CONFIGS = [(64, "f32", 128), (512, "f16", 16), (2048, "f32", 1), (2048, "f16", 128), (300, "f32", 7)]


@pytest.fixture(scope="module", params=TINY, ids=[c[0] for c in TINY])
def tiny_path(request, tmp_path_factory):
    name, kw, types = request.param
    shape = synth.LlamaShape(name=name, ctx=4096, **kw)
    return synth.write_llama_gguf(tmp_path_factory.mktemp(name) / f"{name}.gguf", shape, types=types)


def _engine(path, n_ctx, act, chunk):
    from wgllm.runtime.engine import Engine

    return Engine(str(path), ctx=n_ctx, precision=act, chunk=chunk)


def check(eng, n_ctx: int, act: str, chunk: int, **kw):
    """Assert the estimate of eng's model equals eng's allocations (total within 2%, and exactly)."""
    layout = ModelLayout.from_gguf(GGUFFile(eng.path))
    est = estimate(layout, n_ctx=n_ctx, act=act, chunk=chunk, max_binding=eng.dev.max_binding,
                   max_buffer=eng.dev.max_buffer, kind=eng.dev.kind, **kw)
    got = eng.dev.allocated_bytes
    assert abs(got - est.total) / est.total < 0.02
    assert dict(eng.dev.allocated) == est.by_label
    assert got == est.total
    assert len(eng.dev._sizes) == est.n_buffers
    sizes = [size for _, size in eng.dev._sizes.values()]
    assert max(sizes) == est.largest_buffer
    return est


def _skip_f16(act, device):
    if act == "f16" and not device.has_f16:
        pytest.skip("adapter has no shader-f16")


@pytest.mark.parametrize("n_ctx,act,chunk", CONFIGS, ids=[f"{c}-{a}-chunk{k}" for c, a, k in CONFIGS])
def test_tiny_models(tiny_path, n_ctx, act, chunk, device):
    _skip_f16(act, device)
    check(_engine(tiny_path, n_ctx, act, chunk), n_ctx, act, chunk)


SMOLLM2 = [(64, "f32", 128), (512, "f16", 128), (2048, "f32", 32), (2048, "f16", 1)]


@pytest.mark.parametrize("n_ctx,act,chunk", SMOLLM2, ids=[f"{c}-{a}-chunk{k}" for c, a, k in SMOLLM2])
def test_smollm2(smollm2_path, n_ctx, act, chunk, device):
    _skip_f16(act, device)
    est = check(_engine(smollm2_path, n_ctx, act, chunk), n_ctx, act, chunk)
    assert 90e6 < est.weights < 110e6


def test_all_logits_buffers(tiny_path, device):
    eng = _engine(tiny_path, 128, "f32", 16)
    eng.model.all_logits()  # what the first Engine.logits call adds
    check(eng, 128, "f32", 16, all_logits=True)


def test_weights_split_into_many_chunks(tiny_path, device, monkeypatch):
    """With a small max-storage-buffer-binding-size every weight is split into several chunks
    (several get_rows / linear parameter buffers, PAD per chunk): still exact."""
    init = Device.__init__

    def small_bindings(self, *a, **kw):
        init(self, *a, **kw)
        self.max_binding = 8192

    monkeypatch.setattr(Device, "__init__", small_bindings)
    eng = _engine(tiny_path, 256, "f32", 16)
    assert all(len(w.chunks) > 1 for w in eng.model.output)
    # the bytes each chunk holds (a weight texture, on CPU adapters, is whole 64 KiB rows)
    assert all(n * linear.row_bytes(w.qtype, w.K) + PAD <= 8192 for w in eng.model.output for _, _, n in w.chunks)
    assert all(is_texels(buf) or buf.size <= 8192 for w in eng.model.output for buf, _, _ in w.chunks)
    check(eng, 256, "f32", 16)


def test_gemma3_270m(gemma3_path, device):
    """The real Gemma 3 270M Q4_K_M (262k-row tied embedding, Q5_0/Q8_0 fallbacks in its mix)."""
    est = check(_engine(gemma3_path, 1024, "f32", 64), 1024, "f32", 64)
    assert 230e6 < est.weights < 260e6


@pytest.mark.parametrize("fused", [False, True], ids=["as-is", "fused-norms"])
def test_gpu_kernel_build(tiny_path, device, monkeypatch, fused):
    """The build a hardware adapter gets (with linear.DECODE_NORM its decode products do the
    RMSNorm: fewer norm parameter buffers than a CPU adapter's), run on whatever adapter this is:
    the estimate for kind "gpu" equals it exactly."""

    monkeypatch.setattr(linear, "DECODE_NORM", fused)
    init = Device.__init__

    def gpu_kind(self, *a, **kw):
        init(self, *a, **kw)
        self.kind = "gpu"

    monkeypatch.setattr(Device, "__init__", gpu_kind)
    eng = _engine(tiny_path, 128, "f32", 16)
    assert eng.dev.kind == "gpu"
    check(eng, 128, "f32", 16)
