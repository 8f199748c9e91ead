"""Injected GPU faults at load, prefill and decode on a real (lavapipe) device: generation
completes with exactly the fault-free output, or ends with the right typed error."""

import time

import pytest

from wgllm.errors import DeviceLostError, GpuOutOfMemoryError
from wgllm.runtime import faults
from wgllm.runtime.engine import Engine
from wgllm.runtime.recovery import RecoveryPolicy
from wgllm.runtime.sampler import SamplingParams
from wgllm.testing import synth

PROMPT = list(range(5, 45))
N = 24
FAST = dict(backoff_s=0.0, hang_timeout_s=1.0)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, device):
    return synth.write_llama_gguf(tmp_path_factory.mktemp("rec") / "m.gguf", "tiny-wide-heads", types="Q8_0", seed=3)


def _engine(path, faults="", precision="f32", **policy):
    return Engine(str(path), ctx=256, chunk=16, precision=precision, faults=faults,
                  recovery=RecoveryPolicy(**{**FAST, **policy}))


@pytest.fixture(scope="module", params=["f32", "f16"])
def reference(request, model_path):
    e = _engine(model_path, precision=request.param)
    greedy = list(e.generate(PROMPT, max_tokens=N, stop_ids=[]))
    sampled = list(e.generate(PROMPT, max_tokens=N, stop_ids=[], sampling=SamplingParams(temperature=0.9, seed=11)))
    assert len(set(greedy)) > 5  # varied enough that a repeated or dropped token changes the sequence
    return request.param, greedy, sampled


SPECS = ["lost@load", "lost@prefill", "lost@decode:1", "lost@decode:9", "oom@alloc:kv", "oom@alloc:act",
         "oom@decode:5", "hang@submit:4", "hang@decode:12", "lost@decode:3,lost@decode:4,hang@decode:20",
         "lost@loadx2"]


@pytest.mark.parametrize("spec", SPECS)
def test_greedy_output_is_exactly_the_fault_free_one(reference, model_path, spec):
    precision, greedy, _ = reference
    e = _engine(model_path, spec, precision)
    assert list(e.generate(PROMPT, max_tokens=N, stop_ids=[])) == greedy
    assert e.faults.fired and not e.faults  # every planned fault really fired
    assert e.events.recoveries == (1 if "x2" in spec else len(e.faults.fired))
    assert e.dev.allocated_bytes == pytest.approx(e.plan.estimate.total, rel=0.02)  # no leftover allocations


@pytest.mark.parametrize("spec", ["lost@prefill", "lost@decode:6", "hang@decode:2", "oom@decode:7"])
def test_seeded_sampling_continues_reproducibly(reference, model_path, spec):
    precision, _, sampled = reference
    e = _engine(model_path, spec, precision)
    got = list(e.generate(PROMPT, max_tokens=N, stop_ids=[], sampling=SamplingParams(temperature=0.9, seed=11)))
    assert got == sampled and e.events.recoveries >= 1


def test_kv_prefix_reuse_survives_a_loss(reference, model_path):
    """A second turn reuses the first's cache; a loss in it replays the first turn exactly."""
    precision, greedy, _ = reference
    clean = _engine(model_path, "", precision)
    first = list(clean.generate(PROMPT, max_tokens=N, stop_ids=[]))
    turn2 = PROMPT + first + [7, 8, 9]
    want = list(clean.generate(turn2, max_tokens=N, stop_ids=[]))
    e = _engine(model_path, "lost@submit:1000000", precision)
    assert list(e.generate(PROMPT, max_tokens=N, stop_ids=[])) == first == greedy
    e.faults.faults[0].arg = str(e.faults.submits + 5)  # in the second turn's decode
    assert list(e.generate(turn2, max_tokens=N, stop_ids=[])) == want
    assert e.stats.cached_tokens > len(PROMPT) and e.events.recoveries == 1


@pytest.mark.parametrize("spec, error, reason", [
    ("lost@decode:5", DeviceLostError, "lost"),
    ("hang@decode:5", DeviceLostError, "hang"),
    ("oom@decode:5", GpuOutOfMemoryError, None),
    ("lost@prefill", DeviceLostError, "lost"),
])
def test_recovery_off_raises_typed_error_and_the_next_call_goes_on(reference, model_path, spec, error, reason):
    precision, greedy, _ = reference
    e = _engine(model_path, spec, precision, enabled=False)
    got = []
    with pytest.raises(error) as info:
        for tok in e.generate(PROMPT, max_tokens=N, stop_ids=[]):
            got.append(tok)
    assert info.value.recoverable and (reason is None or info.value.reason == reason)
    assert got == greedy[: len(got)]  # what was streamed before the failure is right
    assert e.dev is None  # the failed device is released
    # The conversation is intact: the same request again gives the fault-free answer.
    assert list(e.generate(PROMPT, max_tokens=N, stop_ids=[])) == greedy


def test_hang_detection_fires_within_the_timeout(model_path):
    e = _engine(model_path, "hang@decode:3", hang_timeout_s=0.5, enabled=False)
    t0 = time.perf_counter()
    with pytest.raises(DeviceLostError) as info:
        list(e.generate(PROMPT, max_tokens=N, stop_ids=[]))
    assert info.value.reason == "hang" and time.perf_counter() - t0 < 0.5 + 5.0


def test_same_adapter_keeps_failing_falls_back_to_the_next(model_path):
    """Three losses in a row during loads exhaust 2 retries; the planner's next adapter
    takes over. The second adapter here is the same GPU through OpenGL: allowed with
    fallback_same_gpu (off by default). On lavapipe it computes (same numbers in f32); on
    the H100 wgpu's OpenGL backend cannot make a compute device, so the engine must give
    up with a typed error after trying it, and the next call must work."""
    from wgllm.gpu.discovery import list_adapters

    if len(list_adapters()) < 2:
        pytest.skip("this machine has one WebGPU adapter: nothing to fall back to")
    e = _engine(model_path, "", "auto", fallback_same_gpu=True)
    greedy = list(e.generate(PROMPT, max_tokens=N, stop_ids=[]))
    e.reset()
    e.faults.faults += faults.parse("lost@decode:2,lost@loadx2")  # after the first load
    first = e.adapter.index
    try:
        out = list(e.generate(PROMPT, max_tokens=N, stop_ids=[]))
    except DeviceLostError:
        actions = [ev.action for ev in e.events]
        assert actions[-3:] == ["fallback", "failed", "gave up"] and e.adapter.index == first
        assert list(e.generate(PROMPT, max_tokens=N, stop_ids=[])) == greedy  # back on the first adapter
        return
    assert "fallback" in [ev.action for ev in e.events] and e.adapter.index != first
    assert e.precision == "f32" and out == greedy  # the same lavapipe underneath, in f32: the same numbers
    assert e.dev.allocated_bytes == pytest.approx(e.plan.estimate.total, rel=0.02)


def test_no_fallback_gives_up_with_a_typed_error(model_path):
    e = _engine(model_path, "", retries=1, fallback=False)
    e.faults.faults += faults.parse("lost@decode:2,lost@loadx5")
    with pytest.raises(DeviceLostError):
        list(e.generate(PROMPT, max_tokens=N, stop_ids=[]))
    assert [ev.action for ev in e.events][-1] == "gave up"


def test_out_of_memory_does_not_fall_back_to_the_same_gpu(reference, model_path):
    """By default the same GPU through another backend is no fallback: an out-of-memory
    failure is retried on the same adapter."""
    precision, greedy, _ = reference
    e = _engine(model_path, "oom@decode:3", precision)
    first = e.adapter.index
    assert list(e.generate(PROMPT, max_tokens=N, stop_ids=[])) == greedy
    assert e.adapter.index == first and "fallback" not in [ev.action for ev in e.events]
