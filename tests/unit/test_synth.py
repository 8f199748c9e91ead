"""wgllm.testing: random-weight llama GGUFs, and the two reference oracles agreeing on them."""

import gguf
import numpy as np
import pytest

from wgllm.testing import oracle, synth
from wgllm.testing.synth import SHAPES, WEIGHT_TYPES, tensor_plan, write_llama_gguf

PROMPT = [1, 5, 77, 200, 3, 9, 42, 100, 17]
MIXED = {"default": "Q4_0", "token_embd": "Q8_0", "attn_v": "Q6_K", "ffn_down": "Q4_K", "output": "Q4_1",
         "attn_k": "Q5_0", "attn_output": "F16"}
CASES = {  # id: (shape, types)
    "gqa-untied-dim80": ("tiny-gqa", "F32"),
    "mha-tied-dim96": ("tiny-mha-tied", "F32"),
    "wide-heads": ("tiny-wide-heads", "F16"),
    "mixed-quant": ("tiny-256", MIXED),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    return {k: write_llama_gguf(d / f"{k}.gguf", s, types=t, seed=3) for k, (s, t) in CASES.items()}


def _rel_err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


@pytest.mark.parametrize("case", CASES)
def test_round_trip(models, case):
    shape_name, types = CASES[case]
    shape = SHAPES[shape_name]
    r = gguf.GGUFReader(str(models[case]))
    plan = tensor_plan(shape, types)
    assert [t.name for t in r.tensors] == list(plan)
    for t in r.tensors:
        dims, ty = plan[t.name]
        assert t.tensor_type.name == ty
        assert tuple(int(x) for x in t.shape[::-1]) == dims  # GGUF lists ne0 (the row) first
    f = lambda k: r.fields[k].contents()  # noqa: E731
    assert f("general.architecture") == "llama"
    assert f("llama.block_count") == shape.n_layers and f("llama.embedding_length") == shape.dim
    assert f("llama.attention.head_count_kv") == shape.n_kv_heads
    assert f("llama.rope.dimension_count") == shape.head_dim
    assert f("llama.rope.freq_base") == pytest.approx(shape.rope_base)
    assert len(f("tokenizer.ggml.tokens")) == shape.n_vocab
    assert ("output.weight" in plan) != shape.tied_embeddings


@pytest.mark.parametrize("case", CASES)
def test_numpy_oracle_matches_transformers(models, case):
    path = models[case]
    ref = oracle.reference_logits(path, PROMPT)
    ours = oracle.numpy_llama_logits(path, PROMPT)
    assert ref.shape == ours.shape == (len(PROMPT), SHAPES[CASES[case][0]].n_vocab)
    assert ours.std() > 0.3  # not degenerate
    assert _rel_err(ref, ours) < 1e-4
    assert oracle.reference_greedy(path, PROMPT, 6) == oracle.numpy_llama_greedy(path, PROMPT, 6)


def test_tokenizer_loads_in_transformers(models):
    from transformers import AutoTokenizer

    path = models["gqa-untied-dim80"]
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    assert len(tok) == SHAPES["tiny-gqa"].n_vocab
    text = tok.apply_chat_template([{"role": "user", "content": "hi the"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi the<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.encode(text, add_special_tokens=False)
    assert ids[0] == 1 and 2 in ids and tok.decode(ids) == text
    assert tok.convert_tokens_to_ids("Ġthe") in ids  # a merge applied


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("ty", WEIGHT_TYPES)
def test_weight_type_blocks_dequantize(ty, fast):
    rows, cols, std = 8, 512, 0.05
    data = synth.random_weight(ty, (rows, cols), std=std, rng=np.random.default_rng(0), fast=fast)
    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[ty]]
    assert data.nbytes == rows * cols // block * size
    x = gguf.quants.dequantize(data, gguf.GGMLQuantizationType[ty])
    assert x.shape == (rows, cols) and np.isfinite(x).all()
    assert 0.3 * std < x.std() < 3 * std and abs(x.mean()) < 0.3 * std


def test_fallback_types():
    plan = tensor_plan(SHAPES["tiny-gqa"], "Q4_K")  # rows of 80 / 144: no 256- or 32-blocks
    assert plan["blk.0.attn_q.weight"][1] == "F16" and plan["blk.0.attn_norm.weight"][1] == "F32"
    plan = tensor_plan(SHAPES["smollm2-135m"], "Q4_K_M")  # 576 = 18 * 32, like the real file
    assert plan["blk.0.attn_q.weight"][1] == "Q5_0" and plan["token_embd.weight"][1] == "Q8_0"
    with pytest.raises(ValueError):
        tensor_plan(SHAPES["tiny-gqa"], "Q4_0", strict=True)


def test_fast_path_tensor_sizes(tmp_path):
    shape = SHAPES["mid-30m"]
    types = "Q4_K_M"
    path = write_llama_gguf(tmp_path / "mid.gguf", shape, types=types, fast=True)
    r = gguf.GGUFReader(str(path))
    plan = tensor_plan(shape, types)
    total = 0
    for t in r.tensors:
        dims, ty = plan[t.name]
        block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[ty]]
        assert t.tensor_type.name == ty and t.n_bytes == int(np.prod(dims)) // block * size
        total += t.n_bytes
    assert {ty for _, ty in plan.values()} == {"F32", "Q4_K", "Q6_K", "Q5_0", "Q8_0"}
    assert path.stat().st_size == pytest.approx(total, rel=0.02)
    assert r.fields["general.file_type"].contents() == 15
    x = gguf.quants.dequantize(r.get_tensor(5).data, r.get_tensor(5).tensor_type)
    assert np.isfinite(x).all()


def test_real_presets():
    assert SHAPES["llama-3-8b"].n_params == pytest.approx(8.03e9, rel=0.01)
    assert SHAPES["llama-3.2-1b"].n_params == pytest.approx(1.24e9, rel=0.01)
    assert SHAPES["smollm2-135m"].n_params == pytest.approx(134.5e6, rel=0.01)
