"""Noticing that a WebGPU device failed, and saying how.

wgpu-py 0.32 has no `device.lost` promise and no error scopes (measured, see
DESIGN.md): a lost device shows up as (1) a `GPUValidationError` "Parent
device is lost" from every later call, (2) "DEVICE LOST!" / "The WGPU device
was lost ..." records on the `wgpu` logger, (3) a submission that never
completes (a hang), or (4) garbage results (non-finite logits). This module
turns each of these into a typed `DeviceLostError` with a reason: "lost",
"out-of-memory", "hang" or "unknown".
"""

from __future__ import annotations

import logging
import threading

import wgpu

from wgllm.errors import DeviceLostError, GpuOutOfMemoryError

_LOST_WORDS = ("device is lost", "device was lost", "device lost", "destroyed")
_OOM_WORDS = ("not enough memory", "out of memory", "outofmemory", "allocation failed")


class LossLog(logging.Handler):
    """Counts the `wgpu` logger's device-lost records (the only loss signal wgpu-py 0.32 gives)."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.count = 0
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if any(w in msg.lower() for w in ("device lost", "device was lost")):
            self.count += 1
            self.last = msg.strip().splitlines()[0] if msg.strip() else msg


_loss_log: LossLog | None = None
_install_lock = threading.Lock()


def loss_log() -> LossLog:
    """The process-wide handler on the `wgpu` logger (installed on first use)."""
    global _loss_log
    with _install_lock:
        if _loss_log is None:
            _loss_log = LossLog()
            logging.getLogger("wgpu").addHandler(_loss_log)
    return _loss_log


def is_gpu_failure(exc: BaseException) -> bool:
    """Whether `exc` came from the GPU (vs. a bug or bad input in wgllm)."""
    if isinstance(exc, (DeviceLostError, GpuOutOfMemoryError, wgpu.GPUError)):
        return True
    return isinstance(exc, RuntimeError) and "could not map buffer" in str(exc).lower()


def classify(exc: BaseException) -> str:
    """The reason behind a GPU failure: "out-of-memory", "lost", "hang" or "unknown"."""
    if isinstance(exc, DeviceLostError):
        return exc.reason
    if isinstance(exc, (GpuOutOfMemoryError, wgpu.GPUOutOfMemoryError)):
        return "out-of-memory"
    msg = str(exc).lower()
    if any(w in msg for w in _OOM_WORDS):
        return "out-of-memory"
    if any(w in msg for w in _LOST_WORDS):
        return "lost"
    return "unknown"


def last_line(exc: BaseException) -> str:
    """The most telling line of a wgpu error message (its last non-empty one)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def as_device_error(exc: BaseException, adapter: str) -> DeviceLostError:
    """`exc` (a GPU failure) as a DeviceLostError naming its reason and the adapter."""
    if isinstance(exc, DeviceLostError):
        return exc
    err = DeviceLostError(classify(exc), adapter, last_line(exc))
    err.__cause__ = exc
    return err


def wait_mapped(promise, timeout: float | None, adapter: str) -> None:
    """Wait for a buffer map (`promise` from `buf.map_async`), at most `timeout` seconds (None: forever).

    A map that does not complete in time means the work before it has not
    finished: DeviceLostError("hang"). (Uses the promise's thread event, which
    the wgpu-native backend sets from its polling thread.)"""
    event = getattr(promise, "_thread_event", None)
    if timeout is not None and event is not None and not event.wait(timeout):
        raise DeviceLostError("hang", adapter, f"a read-back did not complete within {timeout:g} s")
    promise.sync_wait()


def stall(timeout: float | None, adapter: str) -> None:
    """An injected hang: wait `timeout` on work that never completes, then raise as the
    watchdog does (see wgllm.runtime.faults)."""
    threading.Event().wait(30.0 if timeout is None else timeout)
    raise DeviceLostError("hang", adapter, f"a read-back did not complete within {timeout:g} s (injected)"
                          if timeout is not None else "injected hang")
