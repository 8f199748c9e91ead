"""Chaos: 50 generations with 200 injected GPU faults at random points. Every output equals
its fault-free reference (or stops with a typed error after a correct prefix), no streamed
token is repeated or lost, and the process's memory comes back to its baseline."""

import gc

import numpy as np
import pytest
import wgpu

from wgllm.errors import DeviceLostError, GpuOutOfMemoryError
from wgllm.runtime import faults
from wgllm.runtime.engine import Engine
from wgllm.runtime.recovery import RecoveryPolicy
from wgllm.runtime.sampler import SamplingParams
from wgllm.testing import synth
from wgllm.testing.memory import resident_bytes

GENERATIONS, FAULTS_PER_GENERATION = 50, 4
KINDS = ("lost", "oom", "hang")
# The driver's own caches (lavapipe/LLVM) grow over the first device rebuilds of a process,
# then stay flat (measured: ~10 rebuilds, ~150 MB). Resident memory also jumps between
# generations in steps of transient driver allocations (lavapipe: levels ~45 MB apart, e.g.
# 235 / 280 / 325 / 370 MiB; NVIDIA ~77 MB steps), and which levels a stretch of generations
# visits is chance: the lowest level was seen missing for 21 generations in a row. So what is
# checked is the trend after WARMUP: the least-squares slope of resident memory per generation.
# A leak of 1 MB per fault is ~4 MiB per generation; measured without a leak on lavapipe
# (2026-12-02, 100 generations): slopes of 40-generation stretches between -1.1 and +1.0.
WARMUP = 10
MAX_SLOPE = 2 << 20  # bytes per generation


def _engine(path, spec=""):
    policy = RecoveryPolicy(retries=2, backoff_s=0.0, hang_timeout_s=0.3)
    return Engine(str(path), ctx=256, chunk=16, precision="f32", faults=spec, recovery=policy)


def _requests(rng, vocab):
    """(prompt, max_tokens, sampling) of every generation."""
    out = []
    for i in range(GENERATIONS):
        prompt = [int(t) for t in rng.integers(1, vocab, int(rng.integers(3, 60)))]
        sampling = SamplingParams(temperature=0.8, seed=i) if i % 2 else SamplingParams()
        out.append((prompt, int(rng.integers(8, 24)), sampling))
    return out


def _fault_plan(rng, max_tokens, kinds=KINDS):
    """FAULTS_PER_GENERATION faults that all fire: prefill or distinct decode steps; a load or
    allocation fault only after one of those (it fires in the rebuild that follows)."""
    steps = sorted(rng.choice(np.arange(1, max_tokens), FAULTS_PER_GENERATION, replace=False))
    points = [f"decode:{s}" for s in steps]
    if rng.random() < 0.3:
        points[0] = "prefill"
    if rng.random() < 0.3:  # a failure during the recovery itself
        points[-1] = str(rng.choice(["load", "alloc:kv", "alloc:act", "alloc:weights"]))
        points = [points[0], points[-1]] + points[1:-1]
    return [faults.Fault(str(rng.choice(kinds)), *(p.split(":") + [None])[:2]) for p in points]


@pytest.mark.slow
def test_chaos(tmp_path, device):
    """All fault kinds: outputs exact, every fault noticed, nothing of the old devices kept
    (no wgpu object outlives its engine; process memory back to its baseline)."""
    before = _wgpu_objects()
    _chaos(tmp_path, KINDS)
    left = _wgpu_objects() - before
    assert not left, f"{len(left)} wgpu objects outlived their engine"


def _wgpu_objects() -> set[int]:
    gc.collect()
    kinds = (wgpu.GPUDevice, wgpu.GPUBuffer, wgpu.GPUComputePipeline)
    return {id(o) for o in gc.get_objects() if isinstance(o, kinds)}



def _chaos(tmp_path, kinds, generations: int = GENERATIONS):
    path = synth.write_llama_gguf(tmp_path / "m.gguf", "tiny-wide-heads", types="Q8_0", seed=5)
    rng = np.random.default_rng(2026)
    requests = _requests(rng, 320)[:generations]
    clean = _engine(path)
    refs = []
    for prompt, n, sampling in requests:
        clean.reset()
        refs.append(list(clean.generate(prompt, max_tokens=n, stop_ids=[], sampling=sampling)))
    clean.close()
    del clean

    e = _engine(path)
    typed_errors = fired = 0
    rss = []  # after each generation
    for (prompt, n, sampling), ref in zip(requests, refs):
        e.reset()
        before = len(e.faults.fired)
        e.faults.faults = _fault_plan(rng, n, kinds)
        got = []
        try:
            for tok in e.generate(prompt, max_tokens=n, stop_ids=[], sampling=sampling):
                got.append(tok)
        except (DeviceLostError, GpuOutOfMemoryError):
            typed_errors += 1
            assert got == ref[: len(got)]  # a correct prefix: nothing repeated or lost
        else:
            assert got == ref
        fired += len(e.faults.fired) - before
        e.faults.faults = []
        rss.append(resident_bytes())
    assert fired >= generations * FAULTS_PER_GENERATION * 0.95  # (a load fault may not come when recovery gave up)
    seen = sum(1 for ev in e.events if ev.action in ("detected", "failed"))  # "failed": during a rebuild
    assert seen == fired  # every fault was noticed
    assert typed_errors <= generations // 5
    assert e.dev.allocated_bytes == pytest.approx(e.plan.estimate.total, rel=0.02)  # accounts back to plan
    if generations >= WARMUP + 20:
        slope = np.polyfit(np.arange(len(rss) - WARMUP), np.array(rss[WARMUP:], float), 1)[0]
        mib = [r >> 20 for r in rss]
        assert slope < MAX_SLOPE, f"process memory grew {slope / 2**20:.2f} MiB per generation after the warm-up (MiB: {mib})"
    e.close()
