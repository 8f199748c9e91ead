"""Fixtures of the API tests: a tiny random model (fast; output quality does not matter) and the
real SmolLM2 (a few end-to-end checks of answers and structured output)."""

import pytest

from wgllm.testing import synth


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    """A tiny random llama GGUF with a byte-level BPE vocabulary and a ChatML template."""
    return synth.write_llama_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf", "tiny-256", seed=5)


@pytest.fixture(scope="module")
def tiny(tiny_path, device):
    """wgllm.Engine on the tiny model (device: skips without an adapter)."""
    import wgllm

    return wgllm.Engine(str(tiny_path), ctx=256)


@pytest.fixture(scope="module")
def smollm2(smollm2_path, device):
    """wgllm.Engine on the real SmolLM2-135M-Instruct, small context."""
    import wgllm

    return wgllm.Engine(str(smollm2_path), ctx=512)
