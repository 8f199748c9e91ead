"""What the kernels and models need of a device without `wgpu`: dispatches, usage flags, staged writes.

`Dispatch` is one encoded-once compute dispatch; the usage flags are
WebGPU's numbers (gpu/device.py checks them against wgpu's); `write_parts`
writes a byte range of several arrays in bounded pieces.
Both `wgllm.gpu.device.Device` and the planner's `wgllm.gpu.meter.MeterDevice`
use them, so the model code that builds on either never imports `wgpu`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# WebGPU GPUBufferUsage bits
MAP_READ, COPY_SRC, COPY_DST, UNIFORM_BIT, STORAGE_BIT = 0x1, 0x4, 0x8, 0x40, 0x80
STORAGE = STORAGE_BIT | COPY_SRC | COPY_DST
# Parameter buffers may also be bound as read-only storage: a kernel whose loop bounds
# come from a uniform is recompiled by lavapipe (Mesa 22.3 "uniform inlining") on every
# submission, leaking the compiled code (measured: 1.2 MB and ~40% of decode time per
# token on SmolLM2 for matvec.wgsl); storage loads are never inlined.
UNIFORM = UNIFORM_BIT | STORAGE_BIT | COPY_DST
STAGING = MAP_READ | COPY_DST  # read-back buffers
STAGE = 16 << 20  # bytes per piece of `write_parts` (and per slot of Device.uploading's ring)
BUFFER_ALIGN = 4  # every buffer is rounded up to a multiple of 4 bytes ...
MIN_BUFFER = 4  # ... and is at least 4 bytes
UNIFORM_ALIGN = 16  # a uniform (parameter struct) buffer is first rounded up to 16 bytes
# Weights as textures (Device.texels; CPU adapters, see kernels/linear.py WEIGHT_TEXELS): rgba32uint
# texels of 16 bytes, TEXEL_WIDTH per texture row; byte b of the weight is in texel b // 16.
TEXEL_WIDTH = 4096
TEXEL_ROW = 16 * TEXEL_WIDTH  # bytes per texture row (64 KiB: a multiple of a copy's 256-byte pitch)


def align(n: int, a: int) -> int:
    """`n` rounded up to a multiple of `a`."""
    return (n + a - 1) // a * a


def buffer_size(size: int) -> int:
    """Bytes a device really allocates for a buffer of `size` bytes."""
    return max(MIN_BUFFER, align(int(size), BUFFER_ALIGN))


def texels_size(size: int) -> int:
    """Bytes a device allocates for a weight texture of `size` bytes (whole texture rows)."""
    return align(max(int(size), 1), TEXEL_ROW)


def is_texels(resource) -> bool:
    """Whether a weight chunk is a texture (Device.texels / MeterDevice.texels), not a buffer."""
    return bool(getattr(resource, "texels", False))


def uniform_size(nbytes: int) -> int:
    """Bytes a device really allocates for a uniform of `nbytes` of parameters."""
    return buffer_size(align(int(nbytes), UNIFORM_ALIGN))


@dataclass
class Dispatch:
    """One compute dispatch, ready to encode: pipeline, bind group, workgroup counts."""

    pipeline: Any  # wgpu.GPUComputePipeline (None on a MeterDevice)
    bind_group: Any  # wgpu.GPUBindGroup (None on a MeterDevice)
    groups: tuple[int, int, int]
    name: str = ""
    keep: list = field(default_factory=list)  # buffers the bind group needs alive
    # (axis, num, den): along `axis` the work covers token rows, ceil(T * num / den) workgroups
    # for a pass of T rows (at most `groups[axis]`, the capacity); None: fixed groups.
    per_token: tuple[int, int, int] | None = None

    _by_T: dict = field(default_factory=dict, repr=False)  # groups_for's answers so far

    def groups_for(self, T: int | None) -> tuple[int, int, int]:
        """Workgroup counts for a pass over T token rows (None: the built capacity)."""
        if T is None or self.per_token is None:
            return self.groups
        g = self._by_T.get(T)
        if g is None:  # (the batched decode pass asks this for each dispatch of every step)
            axis, num, den = self.per_token
            g = list(self.groups)
            g[axis] = max(1, min(g[axis], -(-T * num // den)))
            g = self._by_T[T] = (g[0], g[1], g[2])
        return g

    def encode(self, cpass, T: int | None = None) -> None:
        cpass.set_pipeline(self.pipeline)
        cpass.set_bind_group(0, self.bind_group)
        # (the decode loop's hot path: no per-token work unless T asks for fewer groups)
        cpass.dispatch_workgroups(*(self.groups if T is None or self.per_token is None else self.groups_for(T)))


def grid(n: int, max_groups: int) -> tuple[int, int]:
    """Workgroup counts (x, y) covering `n` workgroups within `max_groups` per dimension."""
    if n <= max_groups:
        return (max(n, 1), 1)
    y = (n + max_groups - 1) // max_groups
    return ((n + y - 1) // y, y)


def _byte_ranges(parts: list[np.ndarray], start: int, stop: int):
    """Views of bytes [start, stop) of the concatenation of `parts` (no copies)."""
    pos = 0
    for p in parts:
        lo, hi = max(start, pos), min(stop, pos + p.nbytes)
        if lo < hi:
            yield p[lo - pos : hi - pos]
        pos += p.nbytes


def pieces(parts: list[np.ndarray], start: int, stop: int, size: int = STAGE):
    """(offset, data) for bytes [start, stop) of the concatenation of `parts` (uint8 arrays),
    placed from offset 0, in pieces of at most `size` bytes (a multiple of 4, so offsets stay
    aligned): a piece within one part is a view of it, one across parts a copy."""
    for off in range(0, stop - start, size):
        views = list(_byte_ranges(parts, start + off, min(stop, start + off + size)))
        yield off, views[0] if len(views) == 1 else np.concatenate(views)


def write_parts(write, parts: list[np.ndarray], start: int, stop: int) -> None:
    """Call write(data, offset) for bytes [start, stop) of the concatenation of `parts` (uint8
    arrays), placed from offset 0, in pieces of at most STAGE bytes (see `pieces`)."""
    for off, data in pieces(parts, start, stop):
        write(data, off)
