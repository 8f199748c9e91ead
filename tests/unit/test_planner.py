"""The planner on fake inventories (no GPU): the seed's laptop, a phone-like adapter with a 128 MiB
binding limit, CPU only, nothing fits (with alternatives), explicit devices, policies, context
reduction only when no context was asked for, the f16/f32 rule and the headroom rule."""

import dataclasses
import json
import math

import pytest

from wgllm.errors import AdapterNotFoundError, FeatureMissingError, ModelTooLargeError, NoAdapterError, RequestError
from wgllm.gpu.inventory import AdapterBudget, apply_cap, parse_size
from wgllm.plan.catalog import catalog_layout
from wgllm.plan.planner import HEADROOM, make_plan, usable

MiB, GiB = 1 << 20, 1 << 30
BINDING = 2**31 - 4


def adapter(index, name, kind, *, backend="Vulkan", vendor=0, f16=True, budget=8 * GiB, total=None,
            binding=BINDING, max_buffer=4 * GiB, source=None, shared=None) -> AdapterBudget:
    """A fake AdapterBudget (what `inventory()` would return)."""
    source = source or ("system-ram" if kind in ("integrated", "cpu") else "nvml")
    shared = kind in ("integrated", "cpu") if shared is None else shared
    return AdapterBudget(index=index, name=name, kind=kind, backend=backend, vendor_id=vendor, device_id=0,
                         shader_f16=f16, max_buffer_size=max_buffer, max_storage_binding=binding,
                         total=total, free=None if budget is None else budget, budget=budget,
                         source=source, shared=shared, note="fake")


def laptop() -> list[AdapterBudget]:
    """The seed's laptop (Linux): a 4 GB discrete NVIDIA GPU (NVML: 3.8 GiB free, less the 512 MiB
    margin) and an integrated Intel GPU sharing 32 GB of RAM (26 GiB available, less 10%)."""
    return [
        adapter(0, "NVIDIA GeForce RTX 3050 Laptop GPU", "discrete", vendor=0x10DE, total=4 * GiB,
                budget=int(3.8 * GiB) - 512 * MiB),
        adapter(1, "Intel(R) Iris(R) Xe Graphics (ADL GT2)", "integrated", vendor=0x8086, total=32 * GiB,
                budget=26 * GiB - int(3.2 * GiB), max_buffer=2 * GiB),
    ]


def phone(budget=3 * GiB) -> AdapterBudget:
    """A phone-like integrated GPU: 128 MiB storage bindings, 256 MiB buffers."""
    return adapter(0, "Mali-G78 MP20", "integrated", vendor=0x13B5, binding=128 * MiB, max_buffer=256 * MiB,
                   budget=budget)


def cpu(budget=16 * GiB, f16=True, index=0) -> AdapterBudget:
    return adapter(index, "llvmpipe (LLVM 15.0.6, 256 bits)", "cpu", vendor=0x10005, f16=f16, budget=budget,
                   binding=128 * MiB, max_buffer=2 * GiB)


L8B = catalog_layout("llama-3-8b", "Q4_K_M")  # ~4.9 GB of weights: the "~5 GB Llama-3-8B q4"
L1B = catalog_layout("llama-3.2-1b", "Q4_K_M")
SMOL = catalog_layout("smollm2-135m", "Q4_1")


# --- the laptop --------------------------------------------------------------------------


def test_laptop_8b_without_a_split_goes_to_the_integrated_gpu_and_says_why():
    p = make_plan(L8B, laptop(), ctx=None, split="none")
    assert p.adapter.name.startswith("Intel")
    assert p.precision == p.kv_dtype == "f16"
    assert p.n_ctx == 4096 and not p.ctx_reduced
    why = p.reasons["adapter"]
    assert "NVIDIA GeForce RTX 3050" in why and "passed over" in why and "usable" in why
    assert p.estimate.total <= usable(p.adapter)
    assert p.budget == p.adapter.budget and p.headroom == p.budget - p.estimate.total


def test_laptop_small_model_goes_to_the_discrete_gpu():
    p = make_plan(L1B, laptop())
    assert p.adapter.kind == "discrete" and p.precision == "f16"
    assert "passed over" not in p.reasons["adapter"]


def test_low_power_prefers_the_integrated_gpu():
    p = make_plan(L1B, laptop(), policy="low-power")
    assert p.adapter.kind == "integrated"
    assert "low-power order (integrated, then discrete" in p.reasons["adapter"]


def test_high_performance_cuts_context_on_the_fastest_adapter_auto_keeps_it():
    lay = catalog_layout("llama-3-8b", "Q4_0")
    gpus = laptop()
    gpus[0] = adapter(0, "NVIDIA GeForce RTX 3060 Laptop GPU", "discrete", budget=int(5.2 * GiB))
    auto = make_plan(lay, gpus)  # the context is kept: split over both GPUs
    assert [p.adapter.kind for p in auto.parts] == ["discrete", "integrated"]
    assert auto.n_ctx == 4096 and not auto.ctx_reduced
    whole = make_plan(lay, gpus, split="none")
    assert whole.adapter.kind == "integrated" and whole.n_ctx == 4096 and not whole.ctx_reduced
    fast = make_plan(lay, gpus, policy="high-performance")
    assert fast.adapter.kind == "discrete" and fast.n_ctx == 2048 and fast.ctx_reduced
    assert "reduced from the default 4096" in fast.reasons["n_ctx"]


def test_auto_cuts_context_on_a_gpu_before_falling_back_to_the_cpu():
    lay = catalog_layout("llama-3-8b", "Q4_0")
    machine = [adapter(0, "NVIDIA GeForce RTX 3060", "discrete", budget=int(5.2 * GiB)), cpu(64 * GiB, index=1)]
    p = make_plan(lay, machine)
    assert p.adapter.kind == "discrete" and p.n_ctx == 2048 and p.ctx_reduced


def test_vulkan_before_opengl_of_the_same_gpu():
    gl = adapter(0, "NVIDIA H100", "discrete", backend="OpenGL", f16=False, budget=70 * GiB)
    vk = adapter(1, "NVIDIA H100", "discrete", backend="Vulkan", budget=70 * GiB)
    p = make_plan(L1B, [gl, vk])
    assert p.adapter.backend == "Vulkan" and p.precision == "f16"


# --- explicit devices ---------------------------------------------------------------------


@pytest.mark.parametrize("policy,kind", [(0, "discrete"), ("1", "integrated"), ("intel", "integrated"),
                                         ("GeForce", "discrete"), ("integrated", "integrated")])
def test_explicit_device_by_index_or_name(policy, kind):
    p = make_plan(L1B, laptop(), policy=policy)
    assert p.adapter.kind == kind
    if isinstance(policy, int) or str(policy).isdigit():
        assert "as asked" in p.reasons["adapter"]


@pytest.mark.parametrize("policy", [5, "7", "radeon"])
def test_unknown_device_lists_the_adapters(policy):
    with pytest.raises(AdapterNotFoundError) as exc:
        make_plan(L1B, laptop(), policy=policy)
    assert "0: NVIDIA GeForce RTX 3050" in exc.value.message and "1: Intel" in exc.value.message


def test_explicit_device_too_small_proposes_the_other_adapter():
    with pytest.raises(ModelTooLargeError) as exc:
        make_plan(L8B, laptop(), policy=0)
    e = exc.value
    assert len(e.needs) == 1
    name, need, avail = e.needs[0]
    assert "NVIDIA" in name and need > avail == usable(laptop()[0])
    assert any(a.startswith("--device 1") and "Intel" in a for a in e.alternatives)
    assert "Nothing was allocated" in e.message


# --- phone-like adapter: 128 MiB bindings ------------------------------------------------------


def test_phone_splits_weights_under_the_binding_limit():
    p = make_plan(L1B, [phone()])
    assert p.estimate.largest_binding <= 128 * MiB < L1B.tensor("token_embd.weight").nbytes
    assert "128 MiB limit" in p.reasons["limits"]


def test_phone_kv_binding_limits_a_requested_context():
    lay = catalog_layout("phi-3.5-mini", "Q4_0")  # 32 KV heads x 96: 192 MiB per layer's K at 32768 in f16
    tablet = phone(budget=24 * GiB)
    assert make_plan(lay, [tablet]).n_ctx == 4096
    with pytest.raises(ModelTooLargeError) as exc:
        make_plan(lay, [tablet], ctx=32768)
    assert "max-storage-buffer-binding-size" in exc.value.message
    assert any(a.startswith("--ctx 16384") for a in exc.value.alternatives)


def test_phone_model_too_large_for_its_memory():
    with pytest.raises(ModelTooLargeError) as exc:
        make_plan(L8B, [phone()])
    assert exc.value.needs[0][1] > exc.value.needs[0][2]
    assert exc.value.alternatives  # e.g. a smaller catalog model


# --- CPU only ------------------------------------------------------------------------------------


def test_cpu_with_f16_uses_f16_and_says_why():
    p = make_plan(SMOL, [cpu()])
    assert p.precision == "f16" and "CPU adapter" in p.reasons["precision"]


def test_cpu_f32_when_asked():
    p = make_plan(SMOL, [cpu()], precision="f32")
    assert p.precision == "f32" and "as asked" in p.reasons["precision"]


def test_cpu_without_f16_reduces_context_instead():
    p = make_plan(SMOL, [cpu(200 * MiB, f16=False)])
    assert p.precision == "f32" and p.n_ctx == 1024 and p.ctx_reduced
    assert "reduced from the default 4096" in p.reasons["n_ctx"]


# --- context reduction only when not asked for --------------------------------------------------


def test_requested_context_is_never_reduced():
    small = [cpu(200 * MiB, f16=False)]
    with pytest.raises(ModelTooLargeError) as exc:
        make_plan(SMOL, small, ctx=4096)
    assert "at 4096 tokens." in exc.value.message
    assert any(a.startswith("--ctx 1024") for a in exc.value.alternatives)
    p = make_plan(SMOL, small, ctx=1024)
    assert p.n_ctx == 1024 and not p.ctx_reduced and "as asked" in p.reasons["n_ctx"]


def test_reduction_stops_at_the_floor():
    with pytest.raises(ModelTooLargeError) as exc:
        make_plan(SMOL, [cpu(110 * MiB, f16=False)])
    assert "down to 512" in exc.value.message


def test_default_context_is_capped_by_the_training_context():
    p = make_plan(SMOL, [cpu()])
    assert p.n_ctx == 4096 and "default" in p.reasons["n_ctx"]
    tiny = catalog_layout("smollm2-135m")
    short = dataclasses.replace(tiny, config=dataclasses.replace(tiny.config, n_ctx_train=1000))
    assert make_plan(short, [cpu()]).n_ctx == 1000


# --- nothing fits ----------------------------------------------------------------------------------


def test_nothing_fits_lists_needs_per_adapter_and_a_smaller_quantization():
    small_laptop = laptop()
    small_laptop[1] = adapter(1, "Intel(R) UHD Graphics 620", "integrated", budget=6 * GiB)
    lay = catalog_layout("llama-3-8b", "Q8_0")
    with pytest.raises(ModelTooLargeError) as exc:
        make_plan(lay, small_laptop, split="none")
    e = exc.value
    assert [n[0] for n in e.needs] == [a.summary for a in small_laptop]
    assert all(need > avail for _, need, avail in e.needs)
    quant = [a for a in e.alternatives if "quantization of Llama-3-8B" in a]
    assert quant and ("Q4_K_M" in quant[0] or "Q4_0" in quant[0] or "Q4_1" in quant[0])
    assert "Would fit:" in e.message and quant[0] in e.message


def test_f16_kv_is_offered_when_f32_was_asked():
    lay = catalog_layout("llama-3-8b", "Q4_0")
    gpu = adapter(0, "Radeon RX 7600", "discrete", vendor=0x1002, budget=int(6.5 * GiB))
    with pytest.raises(ModelTooLargeError) as exc:
        make_plan(lay, [gpu], ctx=8192, precision="f32")
    assert any(a.startswith("--precision f16") for a in exc.value.alternatives)


def test_unknown_memory_proposes_a_budget_that_then_fits():
    gpu = adapter(0, "Intel(R) Arc(TM) A380 Graphics", "discrete", vendor=0x8086, budget=None, source="unknown")
    with pytest.raises(ModelTooLargeError) as exc:
        make_plan(L8B, [gpu])
    alt = next(a for a in exc.value.alternatives if a.startswith("--gpu-memory"))
    size = parse_size(alt.split()[1].rstrip(","))
    assert make_plan(L8B, [apply_cap(gpu, size)]).n_ctx == 4096


def test_no_adapter_at_all():
    with pytest.raises(NoAdapterError):
        make_plan(SMOL, [])


# --- precision --------------------------------------------------------------------------------------


def test_precision_rule():
    gpu = adapter(0, "NVIDIA H100", "discrete")
    no16 = adapter(1, "Old GPU", "discrete", f16=False)
    assert make_plan(SMOL, [gpu]).precision == "f16"
    p = make_plan(SMOL, [no16])
    assert p.precision == "f32" and "lacks shader-f16" in p.reasons["precision"]
    assert make_plan(SMOL, [gpu], precision="f32").precision == "f32"
    assert make_plan(SMOL, [cpu()], precision="f16").precision == "f16"
    with pytest.raises(FeatureMissingError):
        make_plan(SMOL, [no16], precision="f16")
    assert make_plan(SMOL, [no16, gpu], precision="f16").adapter.name == "NVIDIA H100"


@pytest.mark.parametrize("kw", [dict(ctx=4), dict(ctx=0), dict(precision="bf16"), dict(chunk=0)])
def test_bad_requests(kw):
    with pytest.raises(RequestError):
        make_plan(SMOL, [cpu()], **kw)


# --- headroom ----------------------------------------------------------------------------------------


def test_headroom_rule_is_ninety_percent_of_the_budget():
    need = make_plan(SMOL, [cpu(f16=False)], ctx=2048).estimate.total
    enough = math.ceil(need / (1 - HEADROOM)) + 1
    p = make_plan(SMOL, [cpu(enough, f16=False)], ctx=2048)
    assert p.headroom == enough - need and p.headroom >= HEADROOM * enough - 1
    with pytest.raises(ModelTooLargeError):
        make_plan(SMOL, [cpu(enough - 16, f16=False)], ctx=2048)


# --- plannable-only architectures, output ---------------------------------------------------------------


@pytest.fixture
def phi3_plannable_only(monkeypatch):
    """As a version of wgllm that declares phi3 for planning but has no forward pass for it."""
    from wgllm.model import arch

    monkeypatch.setattr(arch, "SUPPORTED", tuple(a for a in arch.SUPPORTED if a != "phi3"))
    monkeypatch.setattr(arch, "PLANNABLE", (*arch.PLANNABLE, "phi3"))


@pytest.mark.parametrize("name", ["phi-3.5-mini"])
def test_non_runnable_archs_are_planned_and_flagged(name, phi3_plannable_only):
    lay = catalog_layout(name)
    p = make_plan(lay, [adapter(0, "NVIDIA H100", "discrete", budget=70 * GiB)])
    assert not p.runnable and "not runnable by this version" in p.reasons["model"]
    assert p.estimate.weights >= lay.weight_bytes


def test_a_type_without_kernels_is_flagged(monkeypatch):
    # qwen2.5's Q4_K_M file holds Q5_0 (its rows of 896 are not whole 256-blocks): as if Q5_0 had no kernels
    from wgllm.plan import planner

    monkeypatch.setattr(planner, "RUNNABLE_TYPES", planner.RUNNABLE_TYPES - {"Q5_0"})
    p = make_plan(catalog_layout("qwen2.5-0.5b", "Q4_K_M"), [cpu()])
    assert not p.runnable and "Q5_0" in p.reasons["model"]
    assert make_plan(catalog_layout("qwen2.5-0.5b", "Q8_0"), [cpu()]).runnable


def test_as_dict_and_explain():
    p = make_plan(L8B, laptop(), split="none")
    d = json.loads(json.dumps(p.as_dict()))
    assert d["adapter"]["index"] == 1 and d["n_ctx"] == 4096 and d["estimate"]["total"] == p.estimate.total
    assert set(d["reasons"]) == {"model", "adapter", "precision", "kv_dtype", "n_ctx", "budget", "headroom",
                                 "limits"}
    lines = p.explain()
    assert any(line.startswith("Memory: ") for line in lines)
    assert all(line.strip() for line in lines) and len(lines) == len(p.reasons) + 1


# --- prefill chunk ------------------------------------------------------------------------------


def test_default_chunk_is_per_adapter_kind_and_explicit_chunks_are_kept():
    assert make_plan(SMOL, [cpu()]).chunk == 32
    assert make_plan(SMOL, laptop()).chunk == 128
    assert make_plan(SMOL, [cpu()], chunk=7).chunk == 7
    p = make_plan(SMOL, [cpu()])
    assert p.estimate == make_plan(SMOL, [cpu()], chunk=32).estimate  # planned with the chunk it reports
