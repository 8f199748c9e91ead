"""Ctrl-C inside the library: a KeyboardInterrupt that lands while the engine waits for a GPU
read-back must leave the engine usable for the next generation (a Python program, a notebook,
a REPL that catches it and goes on).

`wgllm chat` / `wgllm run` do not depend on this: they generate in a worker thread, so the
interrupt never lands inside a GPU call (tests/e2e/test_interrupt.py). The library does: today
the interrupted map stays pending on the staging buffer (`Device.map_read` ->
`health.wait_mapped`: `buf.map_async()` then `event.wait()`, interrupted, and nothing unmaps),
and the next generation's `queue.submit` that copies into that buffer is a wgpu validation
error ("Buffer with 'staging' label is still mapped") that wgpu-native turns into a Rust panic:
the process aborts. The fix belongs in src/wgllm/gpu/device.py (map_read: on any BaseException
after map_async, wait for / abort the map and unmap before re-raising) or runtime/engine.py
(unmap any staging buffer not "unmapped" before submitting); until then these tests xfail."""

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import sys
import wgpu
from wgllm.gpu import health
from wgllm.runtime.engine import Engine
from wgllm.runtime.sampler import SamplingParams

engine = Engine(sys.argv[1], ctx=256)
sampling = SamplingParams(temperature=float(sys.argv[2]), seed=1)
ids = engine.tokenizer.encode("hello there", add_special=True)
real, calls = health.wait_mapped, [0]

def ctrl_c_while_waiting(buf, timeout, adapter):
    calls[0] += 1
    if calls[0] == 3:  # the third read-back: Ctrl-C arrives while it waits, just after map_async
        buf.map_async(wgpu.MapMode.READ)
        raise KeyboardInterrupt
    return real(buf, timeout, adapter)

health.wait_mapped = ctrl_c_while_waiting
try:
    for _ in engine.generate(ids, max_tokens=50, sampling=sampling):
        pass
except KeyboardInterrupt:
    print("interrupted", flush=True)
health.wait_mapped = real
out = list(engine.generate(ids + [5, 6], max_tokens=5, sampling=sampling))
print("next generation OK", len(out), flush=True)
"""


@pytest.mark.xfail(strict=True, reason="runtime/gpu: an interrupted read-back leaves its staging buffer's map "
                                       "pending; the next submit panics in wgpu-native (see module doc)")
@pytest.mark.parametrize("temperature", [0.0, 0.8], ids=["greedy", "sampled"])
def test_engine_usable_after_keyboard_interrupt_in_a_read_back(tiny_path, device, temperature):
    env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_path), str(temperature)], capture_output=True,
                         text=True, timeout=300, env=env)
    assert "interrupted" in res.stdout, (res.stdout, res.stderr[-3000:])
    assert res.returncode == 0 and "next generation OK" in res.stdout, (res.returncode, res.stderr[-3000:])
