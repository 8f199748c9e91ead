"""Device budget enforcement: a refused allocation raises GpuOutOfMemoryError before the driver,
leaves the accounts as they were, and the device keeps working."""

import os

import numpy as np
import pytest

from wgllm.errors import GpuOutOfMemoryError

KiB = 1024


class CountingDevice:
    """A stand-in for the wgpu device that counts (or fails) create_buffer calls."""

    def __init__(self, real, fail: Exception | None = None):
        self.real, self.fail, self.calls = real, fail, 0

    def create_buffer(self, **kw):
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return self.real.create_buffer(**kw)

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.fixture
def dev(device):
    """A fresh Device (not the session one) with a 64 KiB budget and a counting create_buffer."""
    from wgllm.gpu.device import Device
    from wgllm.gpu.discovery import choose_adapter

    d = Device(choose_adapter(os.environ.get("WGLLM_TEST_ADAPTER")).adapter, budget=64 * KiB)
    d.device = CountingDevice(d.device)
    yield d
    d.device = d.device.real
    d.destroy()


def test_refused_before_the_driver(dev):
    a = dev.buffer(40 * KiB, "weights")
    calls = dev.device.calls
    with pytest.raises(GpuOutOfMemoryError) as info:
        dev.buffer(30 * KiB, "kv")
    assert dev.device.calls == calls  # the driver was never asked
    assert dev.allocated == {"weights": 40 * KiB} and dev.allocated_bytes == 40 * KiB
    err = info.value
    assert err.recoverable and err.label == "kv" and err.size == 30 * KiB
    assert err.allocated == 40 * KiB and err.budget == 64 * KiB
    for words in ("'kv'", "30 KiB", "40 KiB", "64 KiB", "--ctx", "f16", "--gpu-memory", "--device"):
        assert words in err.message, words
    dev.release(a)


def test_release_gives_memory_back_and_device_still_works(dev):
    a = dev.buffer(40 * KiB, "weights")
    with pytest.raises(GpuOutOfMemoryError):
        dev.buffer(30 * KiB, "act")
    dev.release(a)
    assert dev.allocated_bytes == 0 and dev.headroom == 64 * KiB
    data = np.arange(30 * KiB // 4, dtype=np.uint32)
    b = dev.upload(data, "act")  # now fits
    assert dev.allocated == {"act": 30 * KiB}
    assert np.array_equal(dev.read_array(b, np.uint32, data.size), data)


def test_exactly_the_budget_fits_and_uniforms_count(dev):
    dev.budget = 1024
    dev.buffer(1000, "a")
    dev.uniform(np.zeros(3, np.uint32))  # 12 bytes of parameters -> 16
    assert dev.allocated_bytes == 1016
    dev.buffer(8, "b")  # 1024: exactly the budget
    with pytest.raises(GpuOutOfMemoryError):
        dev.buffer(1, "c")  # rounded to 4 bytes: over


def test_budget_settable(dev):
    dev.buffer(40 * KiB, "weights")
    dev.budget = None
    dev.buffer(100 * KiB, "kv")  # no budget: anything the driver allows
    assert dev.headroom is None
    dev.budget = 150 * KiB
    with pytest.raises(GpuOutOfMemoryError):
        dev.buffer(20 * KiB, "act")
    for bad in (-1, 1.5, "4GiB"):
        with pytest.raises((ValueError, TypeError)):
            dev.budget = bad


def test_larger_than_max_buffer_refused_before_driver(dev):
    dev.budget = None
    calls = dev.device.calls
    with pytest.raises(GpuOutOfMemoryError, match="max-buffer-size"):
        dev.buffer(dev.max_buffer + 4, "weights")
    assert dev.device.calls == calls and dev.allocated_bytes == 0


def test_driver_out_of_memory_converted(dev):
    import wgpu

    dev.budget = None
    dev.device.fail = wgpu.GPUValidationError("Validation Error\n\nCaused by:\n  Not enough memory left.")
    with pytest.raises(GpuOutOfMemoryError, match="Not enough memory left") as info:
        dev.buffer(1024, "kv")
    assert isinstance(info.value.__cause__, wgpu.GPUValidationError)
    dev.device.fail = wgpu.GPUOutOfMemoryError("out of memory")
    with pytest.raises(GpuOutOfMemoryError):
        dev.buffer(1024, "kv")
    assert dev.allocated_bytes == 0
    dev.device.fail = wgpu.GPUValidationError("Parent device is lost")  # not about memory: as is
    with pytest.raises(wgpu.GPUValidationError):
        dev.buffer(1024, "kv")
    dev.device.fail = None
    dev.buffer(1024, "kv")
    assert dev.allocated == {"kv": 1024}


def test_real_driver_size_refusal_converted(dev):
    """The driver's own validation error for an oversized buffer (bypassing our pre-check)."""
    dev.budget = None
    real_max = dev.max_buffer
    dev.max_buffer = real_max * 4  # pretend the adapter allowed it: the driver refuses instead
    with pytest.raises(GpuOutOfMemoryError, match="maximum buffer size"):
        dev.buffer(real_max + 1024, "weights")
    dev.max_buffer = real_max
    assert dev.allocated_bytes == 0
    dev.upload(np.ones(4, np.float32), "act")
