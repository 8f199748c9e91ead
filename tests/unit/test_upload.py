"""Bulk uploads: Device.write_parts inside uploading() (the reused staging ring, in the caller's
thread or a background one) writes exactly the bytes the plain path writes, across parts of odd
sizes, pieces that span parts and more pieces than the ring has slots; the ring is gone
afterwards; the background thread's writes keep their order and its error reaches the caller."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgllm.gpu.dispatch import pieces


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 5000), min_size=1, max_size=6), st.data())
def test_pieces_cover_the_range_in_order(sizes, data):
    rng = np.random.default_rng(len(sizes))
    parts = [rng.integers(0, 256, n, dtype=np.uint8) for n in sizes]
    whole = np.concatenate(parts)
    start = data.draw(st.integers(0, whole.size - 1))
    stop = data.draw(st.integers(start + 1, whole.size))
    size = data.draw(st.sampled_from([4, 64, 1000, 4096]))
    got = list(pieces(parts, start, stop, size))
    assert [off for off, _ in got] == list(range(0, stop - start, size))
    assert all(d.nbytes <= size for _, d in got)
    assert np.array_equal(np.concatenate([d for _, d in got]), whole[start:stop])


@pytest.mark.parametrize("background", [False, True], ids=["inline", "thread"])
@pytest.mark.parametrize("slots,size", [(1, 64), (2, 1024), (3, 4096)])
def test_ring_writes_what_the_plain_path_writes(device, slots, size, background):
    rng = np.random.default_rng(slots)
    parts = [rng.integers(0, 256, n, dtype=np.uint8) for n in (1001, 3, 5000, 4097, 30)]
    whole = np.concatenate(parts)
    ranges = [(0, whole.size - whole.size % 4), (8, 9000), (1000, 1004), (4, whole.size)]
    plain, ringed = [], []
    for lo, hi in ranges:
        b = device.buffer(hi - lo, "test upload")
        device.write_parts(b, parts, lo, hi)
        plain.append(b)
    with device.uploading(slots, size, background=background):
        assert device._ring is not None and (device._ring.worker is not None) == background
        for lo, hi in ranges:
            b = device.buffer(hi - lo, "test upload")
            device.write_parts(b, parts, lo, hi)
            ringed.append(b)
    assert device._ring is None
    for (lo, hi), a, b in zip(ranges, plain, ringed):
        want = whole[lo:hi].tobytes()
        assert device.read(a, 0, hi - lo) == want
        assert device.read(b, 0, hi - lo) == want
        device.release(a)
        device.release(b)


def test_background_writes_keep_their_order(device):
    """Two writes of one range, queued one after the other: the buffer holds the second."""
    rng = np.random.default_rng(5)
    first, second = (rng.integers(0, 256, 9000, dtype=np.uint8) for _ in range(2))
    b = device.buffer(9000, "test upload")
    with device.uploading(2, 1024, background=True):
        device.write_parts(b, [first], 0, 9000)
        device.write_parts(b, [second], 0, 9000)
    assert device.read(b, 0, 9000) == second.tobytes()
    device.release(b)


def test_background_error_reaches_the_caller(device):
    """A write that fails in the thread (here: past the buffer's end) raises at the exit of
    uploading(), and the writes queued after it are dropped; the device stays usable."""
    data = np.zeros(4096, np.uint8)
    small, other = device.buffer(64, "test upload"), device.buffer(4096, "test upload")
    with pytest.raises(Exception):
        with device.uploading(2, 1024, background=True):
            device.write_parts(small, [data], 0, 4096)  # 4 KiB into 64 bytes
            device.write_parts(other, [data + 7], 0, 4096)
    assert device.read(other, 0, 4) == bytes(4)  # dropped after the error
    device.write_parts(other, [data + 1], 0, 4096)
    assert device.read(other, 0, 4) == bytes([1] * 4)
    device.release(small)
    device.release(other)


def test_device_lost_while_the_thread_writes():
    """Device.lose() (an injected loss) from the caller while the thread writes: it waits for the
    thread's current piece (a submission racing the destroy aborts wgpu-native, and a map pending
    at the destroy never completes and keeps the buffer and its device referenced), the rest is
    dropped, and nothing of the devices outlives them. (Without the wait this aborted the
    process within a few tries on lavapipe.)"""
    import gc
    import threading
    import time

    import wgpu

    from wgllm.gpu.device import Device
    from wgllm.gpu.discovery import choose_adapter

    def live() -> set[int]:
        gc.collect()
        return {id(o) for o in gc.get_objects() if isinstance(o, (wgpu.GPUDevice, wgpu.GPUBuffer))}

    adapter = choose_adapter(None).adapter
    before = live()
    data = np.random.default_rng(1).integers(0, 256, 1 << 22, dtype=np.uint8)
    for delay_s in (0.0, 0.001, 0.003, 0.01, 0.03) * 2:
        dev = Device(adapter)
        with pytest.raises(RuntimeError, match="the caller failed"):
            with dev.uploading(3, 1 << 16, background=True):
                for _ in range(4):
                    dev.write_parts(dev.buffer(data.nbytes, "test upload"), [data], 0, data.nbytes)
                time.sleep(delay_s)
                dev.lose()
                raise RuntimeError("the caller failed")
        assert not [t for t in threading.enumerate() if t.name == "wgllm-upload"]
        dev.destroy()
        del dev
    assert live() - before == set()
