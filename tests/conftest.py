"""Shared fixtures: a WebGPU device (skips cleanly when there is no adapter,
unless WGLLM_REQUIRE_GPU=1, as in CI, where a missing adapter is a failure)."""

import os

import numpy as np
import pytest

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # the Vulkan loader complains without it


def _device_or_skip():
    from wgllm.errors import NoAdapterError
    from wgllm.gpu.device import Device
    from wgllm.gpu.discovery import choose_adapter

    try:
        info = choose_adapter(os.environ.get("WGLLM_TEST_ADAPTER"))
    except NoAdapterError as exc:
        if os.environ.get("WGLLM_REQUIRE_GPU") == "1":
            pytest.fail(f"WGLLM_REQUIRE_GPU=1 but no adapter: {exc}")
        pytest.skip(f"no WebGPU adapter: {exc}")
    return Device(info.adapter)


@pytest.fixture(scope="session")
def device():
    """One wgllm Device for the whole session."""
    return _device_or_skip()


@pytest.fixture(scope="session")
def gpu_kernel_device():
    """A second Device whose kernel variants are the GPU ones even on a CPU adapter (lavapipe),
    so CI also runs the kernels a hardware adapter gets."""
    dev = _device_or_skip()
    dev.kind = "gpu"
    return dev


@pytest.fixture(params=["native", "gpu-kernels"])
def kdevice(request, device, gpu_kernel_device):
    """The session device with its own kernel variants, then with the GPU variants (the same
    device twice on a hardware adapter)."""
    return device if request.param == "native" or device.kind == "gpu" else gpu_kernel_device


@pytest.fixture(params=["f32", "f16"])
def act(request, device):
    """Activation precision; f16 is skipped on adapters without shader-f16."""
    if request.param == "f16" and not device.has_f16:
        pytest.skip("adapter has no shader-f16")
    return request.param


@pytest.fixture
def rng():
    """Fresh random inputs every run (seed printed on failure via the id)."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"rng seed {seed}")
    return np.random.default_rng(seed)


def rel_err(got, ref) -> float:
    """||got - ref|| / ||ref|| in float64."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


def _registry_model(name: str, env: str):
    """A registry model's path: $`env`, else the model cache, fetched from PyPI when missing.
    Without network it skips, except in CI (fails)."""
    from pathlib import Path

    if os.environ.get(env):
        return Path(os.environ[env])
    from wgllm import hub
    from wgllm.errors import ModelDownloadError

    try:
        return hub.pull(name, progress=False)
    except ModelDownloadError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"cannot fetch {name} in CI: {exc}")
        pytest.skip(f"{name} not available: {exc}")


@pytest.fixture(scope="session")
def smollm2_path():
    """The real SmolLM2-135M-Instruct Q4_1 (the default model; $WGLLM_TEST_MODEL overrides)."""
    from wgllm import hub

    return _registry_model(hub.DEFAULT_MODEL, "WGLLM_TEST_MODEL")


@pytest.fixture(scope="session")
def gemma3_path():
    """The real Gemma 3 270M Q4_K_M ($WGLLM_TEST_GEMMA3 overrides)."""
    return _registry_model("gemma3-270m", "WGLLM_TEST_GEMMA3")


# Real chat templates (tool calling): llama.cpp's collection, as shipped in the llama-cpp-python sdist on
# PyPI (pinned, hash-checked). Downloaded once into the cache; nothing of it is kept in this repository.
TEMPLATES_SDIST = ("llama-cpp-python==0.3.36", "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e")
TEMPLATE_NAMES = ("meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct", "Qwen-Qwen2.5-7B-Instruct",
                  "Qwen-Qwen3-0.6B", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
                  "mistralai-Mistral-Nemo-Instruct-2407")


def _fetch_templates(cache):
    import hashlib
    import subprocess
    import sys
    import tarfile
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", tmp,
               TEMPLATES_SDIST[0]]
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
        (sdist,) = Path(tmp).glob("*.tar.gz")
        if hashlib.sha256(sdist.read_bytes()).hexdigest() != TEMPLATES_SDIST[1]:
            raise RuntimeError(f"{sdist.name}: sha256 differs from the pinned one")
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                name = member.name.rsplit("/", 1)[-1].removesuffix(".jinja")
                if "/models/templates/" in member.name and name in TEMPLATE_NAMES and member.isfile():
                    (cache / f"{name}.jinja").write_bytes(tar.extractfile(member).read())


@pytest.fixture(scope="session")
def real_templates():
    """{name: chat template source} of real models' templates (TEMPLATE_NAMES); fetched from PyPI
    when not cached; without network it skips, except in CI (fails)."""
    from pathlib import Path

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wgllm" / "test-templates" / "0.3.36"
    if not all((cache / f"{n}.jinja").exists() for n in TEMPLATE_NAMES):
        try:
            _fetch_templates(cache)
        except Exception as exc:  # noqa: BLE001 - no network / PyPI: skip (fail in CI)
            if os.environ.get("CI"):
                pytest.fail(f"cannot fetch the chat templates in CI: {exc}")
            pytest.skip(f"real chat templates not available: {exc}")
    return {n: (cache / f"{n}.jinja").read_text() for n in TEMPLATE_NAMES}


def in_threads(fn, n: int, timeout: float = 300.0) -> list:
    """[fn(0), ..., fn(n - 1)], each called from a thread of its own, all at once (an exception in
    any fails the caller's test)."""
    import threading

    out, errors = [None] * n, []

    def run(i: int) -> None:
        try:
            out[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not errors, errors
    return out
