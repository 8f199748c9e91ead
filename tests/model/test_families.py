"""Every family's forward pass on WebGPU vs transformers loading the same tiny random GGUF:
qwen3 (qk-norm), mistral (llama with a sliding window), phi3 (fused weights, longrope), gemma3 (qk-norm, post-norms, GELU, embedding scale, sliding window shorter
than the prompt, local rope base), gemma2 (soft caps, alternating window), llama 3.1 rope scaling."""

import numpy as np
import pytest

from wgllm.testing import oracle, synth

LLAMA3 = dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=32)
# phi3 longrope: the engine's context (128) is not beyond the original one, so both use the short factors
LONGROPE = {"rope.scaling.original_context_length": 128, "rope.scaling.attn_factor": 1.19}
# (name, shape kwargs, weight types, transformers config overrides)
CASES = [
    ("qwen3-tied-f32", dict(n_vocab=300, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96,
                            tied_embeddings=True, arch="qwen3", head_dim=32), "F32", None),
    ("qwen3-untied-q8_0", dict(n_vocab=280, dim=128, n_layers=2, n_heads=4, n_kv_heads=1, ffn_dim=224,
                               arch="qwen3"), "Q8_0", None),
    ("gemma3-swa8", dict(n_vocab=300, dim=64, n_layers=6, n_heads=2, n_kv_heads=1, ffn_dim=160, head_dim=32,
                         tied_embeddings=True, arch="gemma3", rope_base=1e6, rms_eps=1e-6,
                         extra={"attention.sliding_window": 8}), "F32", None),
    ("gemma3-untied-q4_0", dict(n_vocab=300, dim=128, n_layers=7, n_heads=4, n_kv_heads=2, ffn_dim=256,
                                head_dim=32, arch="gemma3", rope_base=1e6, extra={"attention.sliding_window": 5}),
     "Q4_0", None),
    ("gemma2-caps", dict(n_vocab=300, dim=64, n_layers=3, n_heads=2, n_kv_heads=1, ffn_dim=160, head_dim=32,
                         tied_embeddings=True, arch="gemma2",
                         extra={"attention.sliding_window": 6, "attn_logit_softcapping": 0.5,
                                "final_logit_softcapping": 1.5}), "F32", None),
    ("llama3-rope-scaling", dict(n_vocab=300, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96,
                                 rope_base=500000.0, rope_scaling=LLAMA3), "F32",
     {"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, **LLAMA3}}),
    ("mistral-swa7", dict(n_vocab=300, dim=64, n_layers=2, n_heads=4, n_kv_heads=1, ffn_dim=96,
                          extra={"attention.sliding_window": 7}), "F32", None),
    ("qwen3-new-types", dict(n_vocab=300, dim=256, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=512, arch="qwen3",
                             head_dim=64),
     {"default": "Q5_K", "attn_q": "Q3_K", "attn_k": "IQ4_XS", "attn_v": "Q5_1", "ffn_down": "Q2_K",
      "ffn_up": "IQ4_NL", "token_embd": "Q5_0", "output": "BF16"}, None),
    ("phi3-mha-untied", dict(n_vocab=300, dim=96, n_layers=2, n_heads=3, n_kv_heads=3, ffn_dim=160, arch="phi3"),
     "F32", None),
    ("phi4-partial-rotary", dict(n_vocab=300, dim=128, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=192,
                                 arch="phi3", tied_embeddings=True, longrope=True,
                                 extra={**LONGROPE, "rope.dimension_count": 24}), "F32", None),
    ("phi3-longrope-gqa-q8_0", dict(n_vocab=300, dim=128, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=192,
                                    arch="phi3", tied_embeddings=True, longrope=True, extra=LONGROPE), "Q8_0", None),
]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def case(request, tmp_path_factory):
    name, kw, types, hf = request.param
    shape = synth.LlamaShape(name="tiny", ctx=256, **kw)
    path = tmp_path_factory.mktemp(name) / f"{name}.gguf"
    synth.write_llama_gguf(path, shape, types=types, seed=sum(map(ord, name)))
    return path, hf


def _engine(path, precision, chunk=16):
    from wgllm.runtime.engine import Engine

    return Engine(str(path), ctx=128, precision=precision, chunk=chunk)


def _prompt(n, vocab, seed):
    return np.random.default_rng(seed).integers(0, vocab, n).tolist()


def test_logits_every_position_f32(case, device):
    path, hf = case
    eng = _engine(path, "f32")
    prompt = _prompt(37, eng.cfg.n_vocab, 1)  # 3 prefill chunks of 16; longer than every window
    got = eng.logits(prompt).astype(np.float64)
    ref = oracle.reference_logits(path, prompt, hf).astype(np.float64)
    rel = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert rel.max() < 1e-3, f"per-position relative error {rel.max():.2e}"


def test_greedy_32_tokens_identical_f32(case, device):
    path, hf = case
    eng = _engine(path, "f32", chunk=5)
    prompt = _prompt(11, eng.cfg.n_vocab, 2)
    assert list(eng.generate(prompt, max_tokens=32, stop_ids=[])) == oracle.reference_greedy(path, prompt, 32, hf)


def test_f16_close_to_reference(case, device):
    if not device.has_f16:
        pytest.skip("adapter has no shader-f16")
    path, hf = case
    eng = _engine(path, "f16")
    prompt = _prompt(21, eng.cfg.n_vocab, 3)
    got = eng.logits(prompt).astype(np.float64)
    ref = oracle.reference_logits(path, prompt, hf).astype(np.float64)
    rel = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert rel.max() < 2e-2, f"f16 per-position relative error {rel.max():.2e}"


def test_phi3_long_factors_beyond_the_original_context(tmp_path, device):
    """A context longer than the original one takes the long rope factors (as llama.cpp does;
    transformers switches by sequence length, so it is given the long factors as its short ones)."""
    from wgllm.runtime.engine import Engine

    shape = synth.LlamaShape(name="tiny", ctx=512, n_vocab=300, dim=64, n_layers=2, n_heads=2, n_kv_heads=1,
                             ffn_dim=96, arch="phi3", longrope=True, extra=LONGROPE)
    path = synth.write_llama_gguf(tmp_path / "phi3-long.gguf", shape, types="F32", seed=7)
    hf = oracle.hf_overrides(path)
    rope = hf["rope_parameters"]
    hf["rope_parameters"] = {**rope, "short_factor": rope["long_factor"]}
    prompt = _prompt(23, shape.n_vocab, 4)
    got = Engine(str(path), ctx=256, precision="f32", chunk=16).logits(prompt).astype(np.float64)
    ref = oracle.reference_logits(path, prompt, hf).astype(np.float64)
    rel = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert rel.max() < 1e-3, f"per-position relative error {rel.max():.2e}"
    short = Engine(str(path), ctx=128, precision="f32", chunk=16).logits(prompt).astype(np.float64)
    assert np.linalg.norm(short - ref) / np.linalg.norm(ref) > 1e-2  # the factors matter: this can fail


def test_greedy_identical_with_the_gpu_kernels(case, device, monkeypatch):
    """The decode pass a hardware adapter builds (its kernel variants: the matvec, the split
    attention and its combine, the one-workgroup RMSNorm), run on whatever adapter this is (on
    lavapipe too), vs transformers."""
    from wgllm.gpu.device import Device

    init = Device.__init__

    def gpu_kind(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.kind = "gpu"

    monkeypatch.setattr(Device, "__init__", gpu_kind)
    path, hf = case
    eng = _engine(path, "f32", chunk=5)
    assert eng.dev.kind == "gpu"
    prompt = _prompt(11, eng.cfg.n_vocab, 2)
    assert list(eng.generate(prompt, max_tokens=16, stop_ids=[])) == oracle.reference_greedy(path, prompt, 16, hf)


def test_greedy_identical_with_matwide_and_fused_norms(tmp_path, device, monkeypatch):
    """The GPU decode kernels kept off by default (kernels/linear.py MATWIDE, DECODE_NORM: matwide
    for rows of whole Q4_0 block groups, the RMSNorm done inside the qkv and gate|up products), run
    on whatever adapter this is, vs transformers: 16 greedy tokens identical."""
    from wgllm.gpu.device import Device
    from wgllm.kernels import linear

    init = Device.__init__

    def gpu_kind(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.kind = "gpu"

    monkeypatch.setattr(Device, "__init__", gpu_kind)
    monkeypatch.setattr(linear, "MATWIDE", True)
    monkeypatch.setattr(linear, "DECODE_NORM", True)
    used = {"matwide": 0, "norm": 0}
    matwide, linear_fn = linear._matwide, linear.linear

    def counting_matwide(*a, **kw):
        used["matwide"] += 1
        return matwide(*a, **kw)

    def counting_linear(*a, **kw):
        used["norm"] += kw.get("norm") is not None
        return linear_fn(*a, **kw)

    monkeypatch.setattr(linear, "_matwide", counting_matwide)
    monkeypatch.setattr(linear, "linear", counting_linear)
    shape = synth.LlamaShape(name="tiny", ctx=256, n_vocab=300, dim=256, n_layers=2, n_heads=4, n_kv_heads=2,
                             ffn_dim=512)  # K 256 / 512: whole Q4_0 block groups
    path = synth.write_llama_gguf(tmp_path / "wide.gguf", shape, types="Q4_0", seed=11)
    eng = _engine(path, "f32", chunk=5)
    assert used["matwide"] > 0 and used["norm"] > 0  # the build took both
    prompt = _prompt(11, shape.n_vocab, 2)
    assert list(eng.generate(prompt, max_tokens=16, stop_ids=[])) == oracle.reference_greedy(path, prompt, 16, None)
