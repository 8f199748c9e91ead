"""`wgllm plan`, `wgllm doctor`, `wgllm models --catalog` and `--gpu-memory` on this machine's real
adapters (lavapipe in CI), and the engine planning before it allocates."""

import json

import pytest

from .test_cli import assert_clean_error, run_cli


def test_plan_real_smollm2(smollm2_path, device):
    res = run_cli("plan", str(smollm2_path))
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    for word in ("Adapter", "Precision", "KV cache", "Context", "Memory", "Headroom", "4096 tokens"):
        assert word in text, (word, res.stdout)


def test_plan_json_parses(smollm2_path, device):
    res = run_cli("plan", str(smollm2_path), "--json")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["n_ctx"] == 4096 and not d["ctx_reduced"] and d["precision"] in ("f16", "f32")
    assert d["kv_dtype"] == d["precision"] and d["runnable"] and d["quantization"] == "Q4_1"
    assert 90e6 < d["estimate"]["weights"] < 110e6 and d["estimate"]["total"] <= d["usable"]
    assert set(d["reasons"]) >= {"adapter", "precision", "kv_dtype", "n_ctx", "headroom"}


def test_plan_with_too_little_memory_is_a_clean_error_with_alternatives(smollm2_path, device):
    res = run_cli("plan", str(smollm2_path), "--gpu-memory", "64MiB")
    assert_clean_error(res, "does not fit", "needs", "Nothing was allocated", "Would fit", "--gpu-memory")
    res = run_cli("plan", str(smollm2_path), "--gpu-memory", "64MiB", "--json")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    d = json.loads(res.stdout)
    assert d["error"] == "ModelTooLargeError" and d["alternatives"]
    assert all(n["needed"] > n["available"] for n in d["needs"])


def test_plan_reduces_context_only_when_not_asked(smollm2_path, device):
    res = run_cli("plan", str(smollm2_path), "--gpu-memory", "160MiB", "--json", "--precision", "f32")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["ctx_reduced"] and d["n_ctx"] < 4096 and "reduced from the default 4096" in d["reasons"]["n_ctx"]
    res = run_cli("plan", str(smollm2_path), "--gpu-memory", "160MiB", "--ctx", "4096", "--precision", "f32")
    assert_clean_error(res, "at 4096 tokens", f"--ctx {d['n_ctx']}")


def test_plan_a_catalog_model_without_a_file(device):
    res = run_cli("plan", "llama-3.2-1b:q4_0", "--json")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["model"] == "Llama-3.2-1B" and d["quantization"] == "Q4_0" and d["source"].startswith("catalog")


def test_plan_unknown_device_and_bad_memory_size(smollm2_path, device):
    assert_clean_error(run_cli("plan", str(smollm2_path), "--device", "nosuchgpu"), "No WebGPU adapter matches")
    assert_clean_error(run_cli("plan", str(smollm2_path), "--gpu-memory", "lots"), "not a memory size")


def test_doctor(device):
    res = run_cli("doctor")
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    for word in ("Adapters", "Vulkan", "Catalog models", "SmolLM2-135M", "Llama-3-8B"):
        assert word in text, (word, res.stdout)
    assert "Hazards" in text or "No known hazards" in text


def test_doctor_json(device):
    res = run_cli("doctor", "--json")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["ok"] and d["adapters"] and {"loader", "drivers", "ok"} <= set(d["vulkan"])
    assert len(d["catalog"]) >= 7 and all(len(r["adapters"]) == len(d["adapters"]) for r in d["catalog"])
    smol = next(r for r in d["catalog"] if r["name"] == "smollm2-135m")
    assert any(f["fits"] for f in smol["adapters"])
    if all(a["kind"] == "cpu" for a in d["adapters"]):
        assert any("CPU" in h for h in d["hazards"])
    if any(a["max_storage_binding"] < 256 << 20 for a in d["adapters"]):
        assert any("per storage buffer" in h for h in d["hazards"])


def test_doctor_with_a_tiny_cap_says_nothing_fits(device):
    d = json.loads(run_cli("doctor", "--json", "--gpu-memory", "64MiB").stdout)
    assert not any(f["fits"] for r in d["catalog"] for f in r["adapters"])


def test_models_catalog(device):
    res = run_cli("models", "--catalog")
    assert res.returncode == 0, res.stderr
    for title in ("SmolLM2-135M", "SmolLM2-360M", "Qwen2.5-0.5B", "Llama-3.2-1B", "Gemma-3-270M", "Llama-3-8B",
                  "Phi-3.5-mini"):
        assert title in res.stdout
    rows = json.loads(run_cli("models", "--catalog", "--json").stdout)
    row = next(r for r in rows if r["name"] == "llama-3-8b" and r["quantization"] == "Q4_0")
    assert set(row["need"]) == {"2048", "8192"}  # 32768 is past its training context
    assert row["need"]["2048"] < row["need"]["8192"]


def test_run_with_too_little_memory_fails_before_loading(device):
    assert_clean_error(run_cli("run", "--gpu-memory", "64MiB", "hi"), "does not fit", "Nothing was allocated")


def test_engine_plans_before_creating_a_device(smollm2_path, device, monkeypatch):
    from wgllm.errors import ModelTooLargeError
    from wgllm.runtime import chain as chain_mod
    from wgllm.runtime import engine as engine_mod

    def no_device(*a, **k):
        raise AssertionError("a Device was created although nothing fits")

    monkeypatch.setattr(chain_mod, "Device", no_device)
    with pytest.raises(ModelTooLargeError) as exc:
        engine_mod.Engine(str(smollm2_path), gpu_memory="64MiB")
    assert exc.value.alternatives


def test_engine_uses_its_plan(smollm2_path, device):
    from wgllm.runtime.engine import Engine

    eng = Engine(str(smollm2_path), ctx=256)
    p = eng.plan
    assert (eng.n_ctx, eng.precision) == (p.n_ctx, p.precision) == (256, p.kv_dtype)
    assert eng.adapter.index == p.adapter.index
    assert eng.dev.budget == p.budget
    assert eng.dev.allocated_bytes == p.estimate.total  # the plan's estimate is what was allocated


SPLIT_ENV = {"WGLLM_ADAPTERS": "0,0"}  # lavapipe as two adapters


def test_plan_shows_a_split_placement(smollm2_path, device):
    res = run_cli("plan", str(smollm2_path), "--split", "0:0-14,1:15-29", env=SPLIT_ENV)
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    for words in ("Placement", "Part 1", "layers 0-14 (+ embedding)", "Part 2", "layers 15-29 (+ output head)",
                  "as asked"):
        assert words in text, (words, res.stdout)
    d = json.loads(run_cli("plan", str(smollm2_path), "--split", "0:0-14,1:15-29", "--json", env=SPLIT_ENV).stdout)
    assert [p["layers"] for p in d["parts"]] == [[0, 15], [15, 30]] and [p["adapter"] for p in d["parts"]] == [0, 1]
    assert_clean_error(run_cli("plan", str(smollm2_path), "--split", "0:0-14,1:16-29", env=SPLIT_ENV),
                       "consecutive", "layer 15")
    assert_clean_error(run_cli("plan", str(smollm2_path), "--split", "0:0-14,5:15-29", env=SPLIT_ENV),
                       "adapter 5")


def test_run_split_equals_unsplit(smollm2_path, device):
    args = ("run", "What is the capital of France?", "--model", str(smollm2_path), "-n", "24", "--precision", "f32")
    whole = run_cli(*args, "--split", "none", env=SPLIT_ENV)
    split = run_cli(*args, "--split", "0:0-9,1:10-29", "--stats", env=SPLIT_ENV)
    assert whole.returncode == 0 and split.returncode == 0, (whole.stderr, split.stderr)
    assert whole.stdout == split.stdout and len(whole.stdout.split()) > 3
    assert "layers 0-9" in " ".join(split.stderr.split())
