"""A stand-in device that records what a model build would allocate, without `wgpu`.

The planner builds the real model (the same arch code, kernels' builders and
weight chunking the engine runs) against a `MeterDevice`: every buffer the
build asks for is recorded with its label, rounded size and whether it is bound
as storage, and nothing is compiled, written or read. The memory estimate is
then the build's own allocation by construction (wgllm.plan.memory).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from wgllm.gpu.dispatch import STORAGE, STORAGE_BIT, Dispatch, buffer_size, grid, texels_size, uniform_size

DEFAULT_MAX_BINDING = 2**31 - 4  # wgpu's cap on max-storage-buffer-binding-size
DEFAULT_MAX_GROUPS = 65535
DEFAULT_MAX_TEXTURE_ROWS = 8192  # WebGPU's default max-texture-dimension-2d


@dataclass(eq=False)
class MeterBuffer:
    """One recorded buffer: label, bytes (as the device rounds them), bound as storage? a weight
    texture (Device.texels)?"""

    label: str
    size: int
    binding: bool
    texels: bool = False


@dataclass(eq=False)
class MeterDevice:
    """The parts of `wgllm.gpu.device.Device` a model build uses, recording buffers (see module doc).

    kind: "cpu" or "gpu" (the kernel variants the build picks); max_binding /
    max_buffer: the adapter's max-storage-buffer-binding-size / max-buffer-size
    (they set how weights are chunked)."""

    max_binding: int = DEFAULT_MAX_BINDING
    max_buffer: int | None = None
    kind: str = "gpu"
    has_f16: bool = True
    max_groups: int = DEFAULT_MAX_GROUPS
    max_texture_rows: int = DEFAULT_MAX_TEXTURE_ROWS
    buffers: list[MeterBuffer] = field(default_factory=list)
    allocated: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        if self.max_buffer is None:
            self.max_buffer = max(self.max_binding, DEFAULT_MAX_BINDING)

    @property
    def allocated_bytes(self) -> int:
        return sum(self.allocated.values())

    def buffer(self, size: int, label: str, usage: int = STORAGE) -> MeterBuffer:
        return self._record(MeterBuffer(label, buffer_size(size), bool(usage & STORAGE_BIT) and label != "staging"))

    def texels(self, size: int, label: str) -> MeterBuffer:
        return self._record(MeterBuffer(label, texels_size(size), False, texels=True))

    def upload(self, data, label: str, usage: int = STORAGE) -> MeterBuffer:
        return self.buffer(_nbytes(data), label, usage)

    def uniform(self, data, label: str = "params") -> MeterBuffer:
        return self._record(MeterBuffer(label, uniform_size(_nbytes(data)), False))

    def _record(self, buf: MeterBuffer) -> MeterBuffer:
        """`buf` in the list and the accounts."""
        self.buffers.append(buf)
        self.allocated[buf.label] = self.allocated.get(buf.label, 0) + buf.size
        return buf

    def staging(self, size: int) -> MeterBuffer:
        return self.buffer(size, "staging", 0)

    def write(self, buf, data, offset: int = 0) -> None:
        """Nothing is written (the planner reads no weights)."""

    def write_parts(self, buf, parts, start: int, stop: int) -> None:
        """Nothing is written (the planner reads no weights)."""

    @contextmanager
    def uploading(self, background: bool = False):
        """As Device.uploading (its staging ring is not accounted either)."""
        yield

    def release(self, buf: MeterBuffer) -> None:
        self.buffers.remove(buf)
        self.allocated[buf.label] -= buf.size
        if not self.allocated[buf.label]:
            del self.allocated[buf.label]

    def dispatch(self, name: str, bindings, groups, per_token=None, **consts) -> Dispatch:
        groups = tuple(groups) + (1,) * (3 - len(tuple(groups)))
        if max(groups) > self.max_groups:
            raise ValueError(f"dispatch {name}: {groups} exceeds {self.max_groups} workgroups per dimension")
        return Dispatch(None, None, groups, name, list(bindings), per_token)

    def grid(self, n: int) -> tuple[int, int]:
        return grid(n, self.max_groups)

    def uniform_ok(self, buf: MeterBuffer) -> bool:
        """How a kernel binds a buffer does not change what is allocated: always storage here."""
        return False


def _nbytes(data) -> int:
    return int(data.nbytes) if hasattr(data, "nbytes") else len(bytes(data))
