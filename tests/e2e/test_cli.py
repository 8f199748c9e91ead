"""`wgllm` end to end: the France question, and every user mistake gives a clean message."""

import os
import subprocess
import sys

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFWriter

from wgllm import cli


def run_cli(*args, timeout=600, env=None, input=None):
    env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"), **(env or {}))
    return subprocess.run([sys.executable, "-m", "wgllm", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, input=input)


NO_NETWORK = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "PIP_NO_INDEX": "1"}


def assert_clean_error(res, *needles):
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    assert "error:" in res.stderr
    low = " ".join(res.stderr.split()).lower()  # rich wraps long lines
    for n in needles:
        assert n.lower() in low, (n, res.stderr)


def write_minimal_gguf(path, arch="llama", tensor_type=GGMLQuantizationType.F32):
    """A one-layer llama-ish GGUF (dim 32, vocab 8) whose token_embd tensor is of `tensor_type`."""
    w = GGUFWriter(str(path), arch)
    for k, v in {"block_count": 1, "embedding_length": 32, "feed_forward_length": 64, "context_length": 64,
                 "attention.head_count": 2}.items():
        w.add_uint32(f"{arch}.{k}", v)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((8, 32)).astype(np.float32)
    if tensor_type != GGMLQuantizationType.F32:
        from gguf import quants

        data = quants.quantize(data, tensor_type)
    w.add_tensor("token_embd.weight", data, raw_dtype=tensor_type)
    shapes = {"output_norm": (32,), "blk.0.attn_norm": (32,), "blk.0.ffn_norm": (32,), "blk.0.attn_q": (32, 32),
              "blk.0.attn_k": (32, 32), "blk.0.attn_v": (32, 32), "blk.0.attn_output": (32, 32),
              "blk.0.ffn_gate": (64, 32), "blk.0.ffn_up": (64, 32), "blk.0.ffn_down": (32, 64)}
    for name, shape in shapes.items():
        w.add_tensor(f"{name}.weight", rng.standard_normal(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_run_answers_paris(device):
    res = run_cli("run", "What is the capital of France?", "--max-tokens", "24")
    assert res.returncode == 0, res.stderr
    assert "Paris" in res.stdout


def test_run_gemma3_by_name(device, gemma3_path):
    """`wgllm run --model gemma3-270m` (the base model: it continues rather than answers)."""
    from wgllm import hub

    name = "gemma3-270m" if gemma3_path.parent == hub.cache_dir() else str(gemma3_path)
    res = run_cli("run", "--model", name, "What is the capital of France?", "--max-tokens", "8")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() and "Traceback" not in res.stderr


def test_missing_file():
    assert_clean_error(run_cli("run", "--model", "/nonexistent/model.gguf", "hi"), "does not exist")


def test_unknown_model_name():
    assert_clean_error(run_cli("run", "--model", "no-such-model-xyz", "hi"), "no-such-model-xyz")


def test_not_a_gguf(tmp_path):
    p = tmp_path / "notes.gguf"
    p.write_text("hello, I am not a model")
    assert_clean_error(run_cli("run", "--model", str(p), "hi"), "not a usable GGUF", "magic")


def test_truncated_gguf(tmp_path):
    full = write_minimal_gguf(tmp_path / "full.gguf")
    raw = full.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(raw[: len(raw) - 100])
    assert_clean_error(run_cli("run", "--model", str(cut), "hi"), "not a usable GGUF")


def test_unsupported_architecture(tmp_path):
    p = write_minimal_gguf(tmp_path / "m.gguf", arch="mamba")
    assert_clean_error(run_cli("run", "--model", str(p), "hi"), "mamba", "architecture")


def test_unsupported_tensor_type(tmp_path):
    p = write_minimal_gguf(tmp_path / "m.gguf", tensor_type=GGMLQuantizationType.MXFP4)  # no kernels for it
    assert_clean_error(run_cli("run", "--model", str(p), "hi"), "MXFP4")


def test_prompt_longer_than_context(device):
    res = run_cli("run", "--ctx", "16", "word " * 100)
    assert_clean_error(res, "context")


def test_no_adapter_says_how_to_install(monkeypatch, capsys):
    import wgpu

    monkeypatch.setattr(wgpu.gpu, "enumerate_adapters_sync", lambda: [])
    assert cli.main(["devices"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "mesa-vulkan-drivers" in " ".join(captured.err.split())


def test_devices_lists_adapters(device):
    res = run_cli("devices")
    assert res.returncode == 0, res.stderr
    assert device.adapter.info["backend_type"] in res.stdout


def test_hostile_chat_template_fails_safely(tmp_path, device):
    from wgllm.testing import synth

    marker = tmp_path / "pwned"
    template = ("{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}"
                "{% for m in messages %}{{ m.content }}{% endfor %}")
    shape = synth.SHAPES["tiny-mha-tied"]
    path = synth.write_llama_gguf(tmp_path / "hostile.gguf", shape, types="F32", chat_template=template)
    assert_clean_error(run_cli("run", "--model", str(path), "hi"), "template")
    assert not marker.exists()


def test_chat_streams_keeps_conversation_and_resets(device):
    script = "What is the capital of France?\nAnd of Italy?\n/reset\nAnd of Italy?\n/exit\n"
    env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
    res = subprocess.run([sys.executable, "-m", "wgllm", "chat", "--max-tokens", "24"], input=script,
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr
    answers = [a for a in res.stdout.split(">>> ") if a.strip()]
    assert len(answers) == 3, res.stdout
    assert "Paris" in answers[0]
    assert "Rome" in answers[1]  # "And of Italy?" understood through the kept conversation
    assert "conversation cleared" in res.stderr
    assert "Rome" not in answers[2]  # after /reset the same question has no context


# --- listing, version, piped tables ------------------------------------------------------------


def test_version():
    from importlib.metadata import version

    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"wgllm {version('wgllm')}", res


def _cache_with_two_models(tmp_path):
    from wgllm.testing import synth

    models = tmp_path / "a-rather-long-directory-name-for-the-wgllm-home-so-that-paths-are-wide" / "models"
    models.mkdir(parents=True)
    synth.write_llama_gguf(models / "tiny-one.gguf", "tiny-gqa")
    synth.write_llama_gguf(models / "tiny-two.Q8_0.gguf", "tiny-256", types="Q8_0")
    return models


def test_models_lists_fast_without_heavy_imports(tmp_path):
    models = _cache_with_two_models(tmp_path)
    code = ("import sys, time; t0 = time.perf_counter(); from wgllm import cli; rc = cli.main(['models']); "
            "took = time.perf_counter() - t0; "
            "print('HEAVY', [m for m in ('torch', 'wgpu', 'transformers', 'wgllm.runtime') if m in sys.modules]); "
            "print('TOOK', took); sys.exit(rc)")
    env = dict(os.environ, WGLLM_HOME=str(models.parent))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout
    took = float(res.stdout.split("TOOK")[1])
    assert took < 1.0, took
    for name in ("tiny-one.gguf", "tiny-two.Q8_0.gguf"):
        assert str(models / name) in res.stdout  # the whole path, on one line
    assert "…" not in res.stdout


def test_piped_tables_are_neither_wrapped_nor_cut(tmp_path, device):
    import json

    adapters = json.loads(run_cli("devices", "--json").stdout)
    res = run_cli("devices")  # captured: not a terminal, as in `wgllm devices | cat`
    assert res.returncode == 0, res.stderr
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith("│")]
    assert len(rows) == len(adapters), res.stdout  # one line per adapter: no row broken across lines
    for a in adapters:
        assert any(a["name"] in r and a["backend"] in r for r in rows)
    assert "…" not in res.stdout
    models = _cache_with_two_models(tmp_path)
    res = run_cli("models", env={"WGLLM_HOME": str(models.parent)})
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith("│")]
    assert len(rows) == 2 and all(str(models) in r for r in rows) and "…" not in res.stdout, res.stdout


# --- models this version cannot run ----------------------------------------------------------------


@pytest.fixture
def gemma_unrunnable(monkeypatch, tmp_path):
    """The CLI in this process, as a version of wgllm that does not run gemma3 would be."""
    from wgllm.model import arch

    monkeypatch.setattr(arch, "SUPPORTED", tuple(a for a in arch.SUPPORTED if a != "gemma3"))
    monkeypatch.setattr(arch, "PLANNABLE", (*arch.PLANNABLE, "gemma3"))
    monkeypatch.setenv("WGLLM_HOME", str(tmp_path))
    for k, v in NO_NETWORK.items():
        monkeypatch.setenv(k, v)
    return tmp_path


def main_out(capsys, *args):
    rc = cli.main(list(args))
    out = capsys.readouterr()
    return rc, out.out, " ".join(out.err.split())


def test_pull_of_unrunnable_model_refuses_before_downloading(gemma_unrunnable, capsys):
    for args in (("pull", "gemma3-270m"), ("run", "-m", "gemma3-270m", "hi"), ("run", "-m", "gemma3", "hi")):
        rc, out, err = main_out(capsys, *args)
        assert rc == 1 and "Traceback" not in out + err and "error:" in err, (rc, out, err)
        for needle in ("gemma3", "does not run yet", "not downloaded"):
            assert needle in err.lower(), (needle, err)
    assert [p for p in gemma_unrunnable.rglob("*") if p.is_file()] == []


def test_listings_mark_unrunnable_models(gemma_unrunnable, capsys):
    import json

    rc, out, err = main_out(capsys, "models")
    assert rc == 0 and "gemma3-270m (gemma3: not runnable yet)" in err, err
    assert "smollm2-135m (" not in err
    rc, out, err = main_out(capsys, "models", "--json")
    fetchable = {e["name"]: e for e in json.loads(out)["fetchable"]}
    assert fetchable["gemma3-270m"]["runnable"] is False and fetchable["smollm2-135m"]["runnable"] is True
    rc, out, err = main_out(capsys, "models", "--catalog")
    assert rc == 0 and "gemma3-270m (gemma3: not runnable yet)" in err, err
    gemma = [ln for ln in out.splitlines() if "Gemma" in ln]
    assert gemma and all(ln.rstrip("│ ").endswith("no") for ln in gemma), gemma


def test_listings_mark_gemma3_runnable(tmp_path):
    import json

    res = run_cli("models", "--json", env={"WGLLM_HOME": str(tmp_path)})
    fetchable = {e["name"]: e for e in json.loads(res.stdout)["fetchable"]}
    assert fetchable["gemma3-270m"]["runnable"] is True and "not runnable" not in res.stderr


def test_run_survives_a_worker_crash_and_in_process_runs_too(tmp_path, device):
    """`wgllm run` runs the model in a supervised worker: SIGSEGV / SIGKILL to it mid-answer costs a
    restart (a notice on stderr), not the answer; --in-process gives the same answer in one process."""
    from wgllm.testing import synth

    path = str(synth.write_llama_gguf(tmp_path / "tiny.gguf", "tiny-256", seed=5))
    args = ("run", "--model", path, "Tell me about the sea.", "--max-tokens", "12", "--raw")
    plain = run_cli(*args)
    assert plain.returncode == 0, plain.stderr
    for extra in (["--faults", "segv@decode:4"], ["--faults", "kill@prefill"], ["--in-process"]):
        res = run_cli(*args, *extra)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        assert res.stdout == plain.stdout
        if "--faults" in extra:
            assert "continued" in res.stderr
