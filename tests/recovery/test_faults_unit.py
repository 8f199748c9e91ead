"""Fault specs, recovery policy and the KV replay log (no GPU needed)."""

import pytest

from wgllm.errors import DeviceLostError, RequestError
from wgllm.runtime import faults
from wgllm.runtime.recovery import EventLog, RecoveryPolicy, Segment, truncate


@pytest.mark.parametrize("spec, want", [
    ("lost@decode:17", [("lost", "decode", "17", 1)]),
    ("oom@alloc:kv", [("oom", "alloc", "kv", 1)]),
    ("hang@submit:5", [("hang", "submit", "5", 1)]),
    ("lost@prefill, lost@load", [("lost", "prefill", None, 1), ("lost", "load", None, 1)]),
    ("lost@loadx3,oom@alloc:xlastx2", [("lost", "load", None, 3), ("oom", "alloc", "xlast", 2)]),
    ("", []),
])
def test_parse(spec, want):
    got = [(f.kind, f.point, f.arg, f.times) for f in faults.parse(spec)]
    assert got == want


@pytest.mark.parametrize("bad", ["lost", "boom@decode:1", "lost@nowhere", "lost@decode", "lost@decode:0",
                                 "hang@submit:x", "oom@alloc", "lost@decode:-3"])
def test_parse_rejects_with_a_clear_message(bad):
    with pytest.raises(RequestError, match="Bad fault"):
        faults.parse(bad)


def test_injector_counts_submissions_and_fires_once():
    class Dev:  # stands in for a wgllm Device
        destroyed = 0

        @staticmethod
        def lose():
            Dev.destroyed += 1

    inj = faults.FaultInjector("lost@submit:3")
    for _ in range(6):
        inj.at(Dev, "submit")
    assert Dev.destroyed == 1 and inj.fired == ["lost@submit:3"] and not inj


def test_env_variable(monkeypatch):
    monkeypatch.setenv(faults.ENV, "hang@submit:2")
    assert [f.kind for f in faults.FaultInjector.from_env().faults] == ["hang"]
    assert faults.FaultInjector.from_env("").faults == []  # an explicit spec wins over the environment


def test_policy_validation():
    RecoveryPolicy().validate()
    for bad in (dict(retries=-1), dict(backoff_s=-1.0), dict(hang_timeout_s=0)):
        with pytest.raises(RequestError):
            RecoveryPolicy(**bad).validate()


def test_truncate_keeps_chunked_segments_whole_and_cuts_single_ones():
    log = [Segment(0, list(range(10)), True), Segment(10, [5, 6, 7, 8], False)]
    assert truncate(log, 12) == [log[0], Segment(10, [5, 6], False)]
    assert truncate(log, 5) == [log[0]]  # positions 5..9 are recomputed by whatever comes next
    assert truncate(log, 0) == []


def test_events_and_notice():
    ev = EventLog()
    seen = []
    ev.listeners.append(seen.append)
    ev.add("GPU A", "lost", "detected")
    e = ev.add("GPU B", "out-of-memory", "continued", since=0.0)
    assert seen == list(ev) and ev.recoveries == 1 and ev.failures == 1
    assert e.notice().startswith("GPU out-of-memory; continued on GPU B after")


def test_device_lost_error_message():
    e = DeviceLostError("hang", "GPU A", "no answer in 5 s")
    assert e.recoverable and e.reason == "hang" and "GPU A" in e.message and "no answer in 5 s" in e.message
    assert DeviceLostError("weird", "GPU A").reason == "unknown"


def test_same_gpu_through_another_backend():
    from wgllm.gpu.discovery import AdapterInfo
    from wgllm.runtime.engine import _same_gpu

    def info(i, name, vendor=0, dev=0):
        return AdapterInfo(i, name, "discrete", "Vulkan", "", vendor, dev, True, 1, 1, 1, name)

    assert _same_gpu(info(0, "NVIDIA H100 80GB HBM3", 0x10DE, 0x2330), info(1, "NVIDIA H100 80GB HBM3/PCIe/SSE2"))
    assert _same_gpu(info(0, "llvmpipe (LLVM 15.0.6, 256 bits)"), info(1, "llvmpipe (LLVM 15.0.6, 256 bits)"))
    assert _same_gpu(info(0, "A", 0x10DE, 7), info(1, "B", 0x10DE, 7))
    assert not _same_gpu(info(0, "NVIDIA GeForce RTX 3050", 0x10DE, 1), info(1, "Intel(R) UHD Graphics 770", 0x8086, 2))


def test_loss_log_counts_wgpu_device_lost_records():
    import logging

    from wgllm.gpu import health

    log = health.loss_log()
    n = log.count
    logging.getLogger("wgpu").error("The WGPU device was lost (destroyed): (3)")
    logging.getLogger("wgpu").error("some other error")
    assert log.count == n + 1 and log.last.startswith("The WGPU device was lost")


def test_classify():
    import wgpu

    from wgllm.errors import GpuOutOfMemoryError
    from wgllm.gpu import health

    assert health.classify(wgpu.GPUValidationError("Validation Error\n\nCaused by:\n  Parent device is lost")) == "lost"
    assert health.classify(wgpu.GPUValidationError("Not enough memory left.")) == "out-of-memory"
    assert health.classify(GpuOutOfMemoryError("x")) == "out-of-memory"
    assert health.classify(wgpu.GPUValidationError("binding size mismatch")) == "unknown"
    assert health.is_gpu_failure(RuntimeError("Could not map buffer (1 : x)."))
    assert not health.is_gpu_failure(ValueError("a bug"))
