"""Ctrl-C inside the library: a KeyboardInterrupt that lands while the engine waits for a GPU
read-back must leave the engine usable for the next generation (a Python program, a notebook,
a REPL that catches it and goes on). `Device.map_read` settles an interrupted map (waits for
it, then unmaps) before re-raising.

`wgllm chat` / `wgllm run` do not depend on this: they generate in a worker thread, so the
interrupt never lands inside a GPU call (tests/e2e/test_interrupt.py). Before the fix the
interrupted map stayed pending on the staging buffer and the next submission that copied into
it was a wgpu validation error that wgpu-native turned into a Rust panic (the process aborted)."""

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

def ctrl_c_while_waiting(promise, timeout, adapter):
    calls[0] += 1
    if calls[0] == 3:  # the third read-back: Ctrl-C arrives while it waits, just after map_async
        raise KeyboardInterrupt
    return real(promise, timeout, adapter)

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


@pytest.mark.parametrize("temperature", [0.0, 0.8], ids=["greedy", "sampled"])
def test_engine_usable_after_keyboard_interrupt_in_a_read_back(tiny_path, device, temperature):
    env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_path), str(temperature)], capture_output=True,
                         text=True, timeout=300, env=env)
    assert "interrupted" in res.stdout, (res.stdout, res.stderr[-3000:])
    assert res.returncode == 0 and "next generation OK" in res.stdout, (res.returncode, res.stderr[-3000:])
