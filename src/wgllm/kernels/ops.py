"""Python builders for the element-wise / normalisation / attention kernels.

Each builder returns a list of reusable `Dispatch` objects (pipelines and bind
groups built once). Shapes are given in elements; buffers hold activations of
type `act` ("f32" or "f16") unless a parameter says otherwise.
"""

from __future__ import annotations

import numpy as np

from wgllm.gpu.device import UNIFORM, Device, Dispatch

STEP_BYTES = 16  # struct Step in step.wgsl


def step_buffer(dev: Device, label: str = "step"):
    """A uniform buffer holding `struct Step` (see step.wgsl)."""
    return dev.buffer(STEP_BYTES, label, usage=UNIFORM)


def write_step(dev: Device, buf, T: int, pos: int) -> None:
    """Set the Step of the next submission: T tokens starting at position `pos`."""
    dev.write(buf, np.array([T, pos, 0, 0], np.uint32))


def rmsnorm(dev: Device, x, w, y, D: int, T: int, eps: float, *, in_type="f32", out_type="f32") -> list[Dispatch]:
    """y[t, :] = rmsnorm(x[t, :]) * w for t < T.  x: [T, D], w: [D] f32, y: [T, D]."""
    params = np.zeros(4, np.uint32)
    params[0], params[1] = D, T
    params[2:3] = np.array([eps], np.float32).view(np.uint32)
    u = dev.uniform(params)
    act = "f16" if "f16" in (in_type, out_type) else "f32"
    return [dev.dispatch("rmsnorm", [x, w, y, u], dev.grid(T), IN=in_type, OUT=out_type, ACT=act)]
