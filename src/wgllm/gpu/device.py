"""A WebGPU device for wgllm: accounted buffers, cached pipelines, dispatch and readback.

Everything that allocates GPU memory goes through `Device.buffer` so the
engine always knows how many bytes it holds (`Device.allocated`). With a
`budget` (bytes; see wgllm.gpu.inventory), an allocation that would take the
total past it raises `GpuOutOfMemoryError` before the driver is asked, and
the driver's own out-of-memory / buffer-size refusals raise the same error
(the device stays usable: nothing was allocated). Pipelines
are compiled once per (kernel, specialisation) and reused; bind groups are
built once when a `Dispatch` is made and reused for every submission.
"""

from __future__ import annotations

import queue
import threading
from contextlib import contextmanager
from typing import Sequence, Union

import numpy as np
import wgpu

from wgllm.errors import DeviceLostError, GpuOutOfMemoryError, KernelCompileError, fmt_bytes
from wgllm.gpu import health
from wgllm.gpu.dispatch import STAGING, STORAGE, UNIFORM, Dispatch, grid, write_parts  # noqa: F401 (re-exported)
from wgllm.gpu.dispatch import STAGE, TEXEL_ROW, TEXEL_WIDTH, align, buffer_size, is_texels, pieces, texels_size, uniform_size
from wgllm.gpu.shaders import specialise

BU = wgpu.BufferUsage
assert (STORAGE, UNIFORM, STAGING) == (BU.STORAGE | BU.COPY_SRC | BU.COPY_DST, BU.UNIFORM | BU.STORAGE | BU.COPY_DST,
                                       BU.MAP_READ | BU.COPY_DST), "gpu/dispatch.py's usage flags are WebGPU's"

# (buffer) or (buffer, offset, size): what a kernel binding points at.
Binding = Union[wgpu.GPUBuffer, tuple]

_PROBE_BYTES = bytes(4)
_WANTED_LIMITS = (
    "max-storage-buffer-binding-size",
    "max-buffer-size",
    "max-storage-buffers-per-shader-stage",
    "max-compute-workgroup-storage-size",
    "max-compute-invocations-per-workgroup",
    "max-compute-workgroup-size-x",
    "max-compute-workgroups-per-dimension",
    "max-uniform-buffer-binding-size",
    "max-texture-dimension-2d",  # weight textures (Device.texels)
)


_OOM_WORDS = ("not enough memory", "out of memory", "buffer size")  # wgpu-native create_buffer refusals


def _is_oom(exc: Exception) -> bool:
    """Whether a create_buffer error means 'no memory' or 'buffer too large' (vs. a wgllm bug)."""
    if isinstance(exc, wgpu.GPUOutOfMemoryError):
        return True
    msg = str(exc).lower()
    return any(w in msg for w in _OOM_WORDS)


def _first_line(exc: Exception) -> str:
    """The most telling line of a wgpu error message (its last non-empty one)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _unmap(buf: wgpu.GPUBuffer, promise, wait_s: float = 5.0) -> None:
    """Unmap `buf` after `promise` (its map) whether the map is done or still pending: a
    pending map completes once the work before it has run (wgpu-py refuses to unmap a
    pending buffer), so wait for it first, at most `wait_s` (a hung device is rebuilt anyway)."""
    try:
        if buf.map_state == "pending":
            event = getattr(promise, "_thread_event", None)
            if event is not None and not event.wait(wait_s):
                return
            promise.sync_wait()
        if buf.map_state == "mapped":
            buf.unmap()
    except Exception:  # noqa: BLE001 - the map failed or the device is gone: nothing to unmap
        pass


def _texel_regions(offset: int, nbytes: int) -> list[tuple[int, int, int, int]]:
    """(source offset, first texture row, texels per row, rows) of the copies that put `nbytes`
    (a multiple of 16) at byte `offset` (a multiple of TEXEL_ROW) of a weight texture: the whole
    rows, then the last, partial one."""
    if offset % TEXEL_ROW or nbytes % 16:
        raise ValueError(f"a weight texture is written from whole rows ({offset}) in whole texels ({nbytes})")
    full, rest = divmod(nbytes, TEXEL_ROW)
    row = offset // TEXEL_ROW
    out = [(0, row, TEXEL_WIDTH, full)] if full else []
    return out + ([(full * TEXEL_ROW, row + full, rest // 16, 1)] if rest else [])


def _pad16(data: np.ndarray) -> np.ndarray:
    """uint8 `data` padded with zeros to a multiple of 16 bytes (whole texels)."""
    return data if data.nbytes % 16 == 0 else np.concatenate([data, np.zeros(16 - data.nbytes % 16, np.uint8)])


class Device:
    """wgllm's handle on one WebGPU device (see module doc)."""

    def __init__(self, adapter: wgpu.GPUAdapter, *, label: str = "wgllm", budget: int | None = None,
                 faults=None, features: Sequence[str] = ()):
        self.adapter = adapter
        self.faults = faults  # a wgllm.runtime.faults.FaultInjector, or None
        self.part = 0  # which part of a split model this device holds (for faults naming a part)
        self.has_f16 = "shader-f16" in adapter.features
        # The adapter class picks kernel variants: "cpu" (a software adapter such as lavapipe)
        # or "gpu". On "cpu", parameter structs are read-only storage, not uniforms: lavapipe
        # inlines uniform values that bound loops or branches and recompiles the kernel when
        # they change (every decode step for attention's position).
        self.kind = "cpu" if adapter.info.get("adapter_type", "") == "CPU" else "gpu"
        self.has_subgroups = "subgroup" in adapter.features
        features = (["shader-f16"] if self.has_f16 else []) + (["subgroup"] if self.has_subgroups else []) \
            + [f for f in features if f in adapter.features]
        limits = {k: adapter.limits[k] for k in _WANTED_LIMITS if k in adapter.limits}
        try:
            self.device = adapter.request_device_sync(
                label=label, required_features=features, required_limits=limits
            )
        except Exception as exc:  # noqa: BLE001 - the driver's words go into the error
            raise DeviceLostError("unknown", adapter.summary,
                                  f"no device could be created ({health.last_line(exc)})") from exc
        self.queue = self.device.queue
        # 4 bytes written before each submission: on a lost device the write raises "Parent
        # device is lost" and leaks nothing, where encoder.finish() on a lost device makes a
        # command buffer that keeps the whole device's memory alive (wgpu-native 0.32;
        # measured on lavapipe: every byte of the device, for the life of the process).
        self._probe = self.device.create_buffer(size=4, usage=wgpu.BufferUsage.COPY_DST, label="wgllm-probe")
        self._loss_seen = health.loss_log().count  # wgpu's device-lost log records before this device
        self.limits = dict(self.device.limits)
        self.max_binding = int(self.limits["max-storage-buffer-binding-size"])
        self.max_buffer = int(self.limits["max-buffer-size"])
        self.max_uniform = int(self.limits["max-uniform-buffer-binding-size"])
        self.max_groups = int(self.limits["max-compute-workgroups-per-dimension"])
        self.max_texture_rows = int(self.limits.get("max-texture-dimension-2d", 8192))
        self.allocated: dict[str, int] = {}
        self._sizes: dict[int, tuple[str, int]] = {}
        self._buffers: dict[int, wgpu.GPUBuffer] = {}  # every live buffer, for close()
        self._pipelines: dict[tuple, wgpu.GPUComputePipeline] = {}
        self._ring: _UploadRing | None = None  # inside uploading()
        # Held by the background upload for each piece and by lose(): wgpu-native aborts the
        # process on a submission that races the device's destroy.
        self._piece_lock = threading.Lock()
        self.budget = budget

    # --- memory ---------------------------------------------------------
    @property
    def allocated_bytes(self) -> int:
        return sum(self.allocated.values())

    @property
    def budget(self) -> int | None:
        """Most bytes this device may hold in buffers (None: no limit but the driver's)."""
        return self._budget

    @budget.setter
    def budget(self, value: int | None) -> None:
        if value is not None and (int(value) != value or value < 0):
            raise ValueError(f"budget must be a non-negative number of bytes or None, not {value!r}")
        self._budget = None if value is None else int(value)

    @property
    def headroom(self) -> int | None:
        """Bytes left under the budget (None without a budget)."""
        return None if self._budget is None else self._budget - self.allocated_bytes

    def buffer(self, size: int, label: str, usage: int = STORAGE) -> wgpu.GPUBuffer:
        """A new zero-initialised buffer of at least `size` bytes (rounded up to 4), accounted under `label`.

        Raises GpuOutOfMemoryError, before calling the driver, when the buffer would
        take the total past `budget` or is larger than max-buffer-size; and when the
        driver refuses it for lack of memory."""
        size = buffer_size(size)
        self._may_allocate(size, label)
        if size > self.max_buffer:
            raise self._oom(label, size, f"one buffer may be at most {fmt_bytes(self.max_buffer)} "
                                         f"(max-buffer-size) on this adapter")
        if usage == STORAGE and self.kind == "cpu" and size <= self.max_uniform:
            usage |= BU.UNIFORM  # a kernel may read it as a uniform array (see uniform_ok)
        return self._accounted(lambda: self.device.create_buffer(size=size, usage=usage, label=label), size, label)

    def _may_allocate(self, size: int, label: str) -> None:
        """The checks before an allocation: injected faults, then the budget."""
        if self.faults:
            self.faults.at(self, "alloc", label)
            if label == "weights":
                self.faults.at(self, "load")
        if self._budget is not None and self.allocated_bytes + size > self._budget:
            raise self._oom(label, size, f"that would exceed the memory budget of {fmt_bytes(self._budget)}")

    def _accounted(self, make, size: int, label: str):
        """make() (a new buffer or weight texture of `size` bytes; GpuOutOfMemoryError where the
        driver refuses it for lack of memory), in the accounts under `label`."""
        try:
            res = make()
        except (wgpu.GPUOutOfMemoryError, wgpu.GPUValidationError) as exc:
            if not _is_oom(exc):
                raise
            raise self._oom(label, size, f"the driver refused it ({_first_line(exc)})") from exc
        self.allocated[label] = self.allocated.get(label, 0) + size
        self._sizes[id(res)] = (label, size)
        self._buffers[id(res)] = res
        return res

    def texels(self, size: int, label: str) -> wgpu.GPUTexture:
        """A zero-initialised rgba32uint texture holding at least `size` bytes of a weight (rows of
        TEXEL_WIDTH texels; kernels read it specialised with WTEX=1, see kernels/registry.py),
        accounted under `label` as Device.buffer is (the same faults, budget and limits)."""
        size = texels_size(size)
        self._may_allocate(size, label)
        rows = size // TEXEL_ROW
        if rows > self.max_texture_rows:
            raise self._oom(label, size, f"a weight texture may hold at most {fmt_bytes(self.max_texture_rows * TEXEL_ROW)}"
                                         f" (max-texture-dimension-2d) on this adapter")
        def make():
            tex = self.device.create_texture(size=(TEXEL_WIDTH, rows, 1), format=wgpu.TextureFormat.rgba32uint,
                                             usage=wgpu.TextureUsage.TEXTURE_BINDING | wgpu.TextureUsage.COPY_DST,
                                             label=label)
            tex.texels = True  # see dispatch.is_texels
            return tex

        return self._accounted(make, size, label)

    def lose(self) -> None:
        """Destroy the wgpu device now: a real device loss (for fault injection), between two
        pieces of a background upload, never inside one."""
        with self._piece_lock:
            self.device.destroy()

    def refused_allocation(self) -> None:
        """Ask the driver for a buffer past max-buffer-size (a real refusal, for fault
        injection); raises the GpuOutOfMemoryError that any refused allocation raises."""
        size = buffer_size(self.max_buffer + 4)
        try:
            self.device.create_buffer(size=size, usage=STORAGE, label="refused")
        except Exception as exc:  # noqa: BLE001 - whatever the driver says, it refused
            raise self._oom("refused", size, f"the driver refused it ({_first_line(exc)})") from exc
        raise GpuOutOfMemoryError(f"The driver accepted a {fmt_bytes(size)} buffer past max-buffer-size.")

    def upload(self, data, label: str, usage: int = STORAGE) -> wgpu.GPUBuffer:
        """A new buffer holding `data` (numpy array or bytes), padded to 4 bytes."""
        raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1) if isinstance(data, np.ndarray) else np.frombuffer(bytes(data), np.uint8)
        buf = self.buffer(raw.nbytes, label, usage)
        self.write(buf, raw)
        return buf

    def write(self, buf: wgpu.GPUBuffer, data, offset: int = 0) -> None:
        """Queue a write of `data` into `buf` at `offset` (padded to 4 bytes)."""
        raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1) if isinstance(data, np.ndarray) else np.frombuffer(bytes(data), np.uint8)
        if raw.nbytes % 4:
            raw = np.concatenate([raw, np.zeros(4 - raw.nbytes % 4, np.uint8)])
        self.queue.write_buffer(buf, offset, raw)

    def _write_texels(self, tex: wgpu.GPUTexture, data: np.ndarray, offset: int) -> None:
        """Queue a write of uint8 `data` into weight texture `tex` at byte `offset` (whole rows)."""
        data = _pad16(data)
        for src, row, width, rows in _texel_regions(offset, data.nbytes):
            self.queue.write_texture({"texture": tex, "origin": (0, row, 0)}, data[src:src + width * rows * 16],
                                     {"offset": 0, "bytes_per_row": TEXEL_ROW, "rows_per_image": rows},
                                     (width, rows, 1))

    def write_parts(self, buf: wgpu.GPUBuffer, parts, start: int, stop: int) -> None:
        """Write bytes [start, stop) of the concatenation of `parts` (uint8 arrays) into `buf`
        from offset 0, a bounded piece at a time (see gpu/dispatch.pieces); inside
        `uploading()` through its reused staging ring (with `background`, by its thread)."""
        if self._ring is None:
            put = self._write_texels if is_texels(buf) else self.write
            write_parts(lambda data, off: put(buf, data, off), parts, start, stop)
        elif self._ring.worker is not None:
            self._ring.tasks.put((buf, parts, start, stop))
        else:
            self._ring.write(buf, parts, start, stop)

    @contextmanager
    def uploading(self, slots: int = 3, size: int = STAGE, background: bool = False):
        """Bulk uploads (a model's weights): write_parts goes through `slots` reused MAP_WRITE
        staging buffers of `size` bytes (a multiple of 4; of TEXEL_ROW to write weight textures) each: a piece is copied once, into mapped memory, and
        then on the GPU into place, where write_buffer copies it into fresh staging memory that
        wgpu holds until the next submission (the whole model, for a model's load). The ring
        (host memory, not accounted: transient, as write_buffer's staging is) is freed at exit.

        background: a thread does the writes, in order, while the caller goes on (building the
        passes: compiling kernels, which waits in the driver, not on Python), and the exit waits
        for it; an error of the thread is raised there, unless the body raised first."""
        self._ring = _UploadRing(self, slots, size, background)
        failed = True
        try:
            yield
            failed = False
        finally:
            ring, self._ring = self._ring, None
            ring.close(discard=failed)

    def staging(self, size: int) -> wgpu.GPUBuffer:
        """A read-back (MAP_READ) buffer of `size` bytes, accounted under "staging"."""
        return self.buffer(size, "staging", STAGING)

    def uniform(self, data, label: str = "params") -> wgpu.GPUBuffer:
        """A small uniform buffer holding `data` (e.g. a kernel's parameter struct)."""
        raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        buf = self.buffer(uniform_size(raw.nbytes), label, UNIFORM)
        self.write(buf, raw)
        return buf

    def _oom(self, label: str, size: int, why: str) -> GpuOutOfMemoryError:
        """The error for a refused allocation: what, how much, the accounts, what to do."""
        budget = "no budget set" if self._budget is None else f"budget {fmt_bytes(self._budget)}"
        err = GpuOutOfMemoryError(
            f"Cannot allocate {fmt_bytes(size)} for '{label}' on {self.adapter.summary}: {why}. "
            f"{fmt_bytes(self.allocated_bytes)} is already allocated ({budget}). Nothing was allocated and the "
            f"device is still usable. To fit, use a smaller context (--ctx), f16 precision (--precision f16 "
            f"halves the KV cache and activations), a smaller model or quantization, or another adapter "
            f"(--device); if the adapter really has more memory free, raise the budget with --gpu-memory "
            f"(or the WGLLM_GPU_MEMORY environment variable)."
        )
        err.label, err.size, err.allocated, err.budget = label, size, self.allocated_bytes, self._budget
        return err

    def uniform_ok(self, buf: wgpu.GPUBuffer) -> bool:
        """Whether a kernel may bind all of `buf` as a uniform array (on CPU adapters every buffer
        this device made for storage that fits in a uniform binding may be)."""
        return bool(buf.usage & BU.UNIFORM) and buf.size <= self.max_uniform and buf.size % 16 == 0

    def release(self, buf: wgpu.GPUBuffer) -> None:
        """Destroy `buf` and take it off the accounts."""
        label, size = self._sizes.pop(id(buf), (None, 0))
        self._buffers.pop(id(buf), None)
        if label is not None:
            self.allocated[label] -= size
            if not self.allocated[label]:
                del self.allocated[label]
        buf.destroy()

    # --- kernels --------------------------------------------------------
    def pipeline(self, name: str, **consts) -> wgpu.GPUComputePipeline:
        """The compute pipeline of kernel `name` specialised with `consts`, compiled once."""
        consts.setdefault("UNI", "storage, read" if self.kind == "cpu" else "uniform")
        key = (name, tuple(sorted((k, str(v)) for k, v in consts.items())))
        pipe = self._pipelines.get(key)
        if pipe is None:
            src = specialise(name, consts)
            try:
                module = self.device.create_shader_module(code=src, label=name)
                pipe = self.device.create_compute_pipeline(
                    layout="auto", compute={"module": module, "entry_point": "main"}, label=name
                )
            except Exception as exc:
                raise KernelCompileError(
                    f"Kernel '{name}' ({dict(consts)}) failed to compile on "
                    f"{self.adapter.summary}: {exc}. This is a bug in wgllm or the driver; "
                    f"please report it with the output of `wgllm devices`."
                ) from exc
            self._pipelines[key] = pipe
        return pipe

    def dispatch(self, name: str, bindings: Sequence[Binding], groups, per_token: tuple[int, int, int] | None = None,
                 **consts) -> Dispatch:
        """A reusable dispatch of kernel `name`: binding i of group 0 is `bindings[i]`.

        per_token (axis, num, den): the workgroups along `axis` cover token rows, and a pass
        of T rows needs only ceil(T * num / den) of them (see Dispatch.groups_for)."""
        pipe = self.pipeline(name, **consts)
        entries = []
        for i, b in enumerate(bindings):
            if is_texels(b):
                entries.append({"binding": i, "resource": b.create_view()})
            elif isinstance(b, tuple):
                buf, off, size = b
                entries.append({"binding": i, "resource": {"buffer": buf, "offset": off, "size": size}})
            else:
                entries.append({"binding": i, "resource": {"buffer": b, "offset": 0, "size": b.size}})
        bg = self.device.create_bind_group(layout=pipe.get_bind_group_layout(0), entries=entries)
        groups = tuple(groups) + (1,) * (3 - len(tuple(groups)))
        if max(groups) > self.max_groups:
            raise ValueError(f"dispatch {name}: {groups} exceeds {self.max_groups} workgroups per dimension")
        if per_token is not None and per_token[0] == 0 and groups[1] > 1:
            per_token = None  # a grid flattened into x and y (see grid): rows do not map to one axis
        return Dispatch(pipe, bg, groups, name, list(bindings), per_token)

    def grid(self, n: int) -> tuple[int, int]:
        """Workgroup counts (x, y) covering `n` workgroups within the per-dimension limit."""
        return grid(n, self.max_groups)

    # --- execution ------------------------------------------------------
    def encode(self, dispatches: Sequence[Dispatch], encoder: wgpu.GPUCommandEncoder | None = None,
               T: int | None = None):
        """Encode `dispatches` in one compute pass, sized for T token rows (None: their
        capacity; see Dispatch.groups_for); returns the encoder."""
        enc = encoder or self.device.create_command_encoder()
        cpass = enc.begin_compute_pass()
        for d in dispatches:
            d.encode(cpass, T)
        cpass.end()
        return enc

    def run(self, dispatches: Sequence[Dispatch], T: int | None = None) -> None:
        """Encode (for T token rows) and submit `dispatches` as one submission."""
        self.submit(self.encode(dispatches, T=T))

    def submit(self, encoder: wgpu.GPUCommandEncoder) -> None:
        """Finish `encoder` and submit it (the one place submissions go through)."""
        if self.faults:
            self.faults.at(self, "submit")
        self.check_alive()
        self.queue.submit([encoder.finish()])

    def check_alive(self) -> None:
        """Raise the driver's own error if the device is lost (a real call that leaks nothing)."""
        self.queue.write_buffer(self._probe, 0, _PROBE_BYTES)

    def loss_logged(self) -> str | None:
        """The `wgpu` logger's last device-lost record if one came since this device was
        made (the log does not say which device: use it to explain a failure, not alone)."""
        log = health.loss_log()
        return log.last if log.count > self._loss_seen else None

    def map_read(self, buf: wgpu.GPUBuffer, timeout: float | None = None) -> memoryview:
        """Map a MAP_READ buffer and return a copy of its bytes, waiting at most `timeout`
        seconds for the GPU (then DeviceLostError "hang")."""
        if self.faults and self.faults.take_hang(self):
            health.stall(timeout, self.adapter.summary)
        # On a lost device this raises at once, where a map would leave wgpu-py's polling
        # thread polling a dead device (which can abort the process).
        self.check_alive()
        promise = buf.map_async(wgpu.MapMode.READ)
        try:
            health.wait_mapped(promise, timeout, self.adapter.summary)
            return bytes(buf.read_mapped())
        finally:
            # Also when the wait is interrupted (Ctrl-C, a hang): a map left pending would make
            # the next submission that writes `buf` a validation panic in wgpu-native.
            _unmap(buf, promise)

    def read(self, buf: wgpu.GPUBuffer, offset: int = 0, size: int | None = None) -> bytes:
        """Bytes of `buf[offset:offset+size]`, waiting for the GPU (read small slices)."""
        size = buf.size - offset if size is None else size
        return bytes(self.queue.read_buffer(buf, offset, align(size, 4))[:size])

    def read_array(self, buf: wgpu.GPUBuffer, dtype, count: int, offset: int = 0) -> np.ndarray:
        item = np.dtype(dtype).itemsize
        return np.frombuffer(self.read(buf, offset, count * item), dtype=dtype).copy()

    def destroy(self) -> None:
        """Release every buffer and destroy the device (safe on a lost device); the
        accounts go to zero and nothing of it stays referenced."""
        poller = getattr(self.device, "_poller", None)  # wgpu-native's polling thread (private API)
        if poller is not None:
            poller.stop()  # first: polling a device while its buffers are torn down can abort the process

        bufs, self._buffers = [self._probe, *self._buffers.values()], {}
        for buf in bufs:
            try:
                buf.destroy()
            except Exception:  # noqa: BLE001 - a lost device may refuse; it is going anyway
                pass
        self._sizes.clear()
        self.allocated.clear()
        self._pipelines.clear()
        try:
            self.device.destroy()
        except Exception:  # noqa: BLE001
            pass


class _UploadRing:
    """Reused MAP_WRITE | COPY_SRC staging buffers for Device.uploading: a slot is filled while
    mapped, unmapped and copied into place by its own submission; when its turn comes again it
    is mapped anew, which waits for that copy (at most MAP_WAIT_S: else DeviceLostError "hang")."""

    MAP_WAIT_S = 60.0

    def __init__(self, dev: "Device", slots: int, size: int, background: bool = False):
        self.dev, self.size = dev, size
        usage = BU.MAP_WRITE | BU.COPY_SRC
        self.slots = [dev.device.create_buffer(size=size, usage=usage, mapped_at_creation=True, label="upload ring")
                      for _ in range(slots)]
        self.mapped = [True] * slots
        self.next = 0
        self.tasks: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.worker = threading.Thread(target=self._work, name="wgllm-upload", daemon=True) if background else None
        if self.worker is not None:
            self.worker.start()

    def write(self, dst: wgpu.GPUBuffer, parts, start: int, stop: int) -> None:
        """Bytes [start, stop) of the concatenation of `parts` into `dst` from offset 0, by pieces."""
        for off, data in pieces(parts, start, stop, self.size):
            if self.error is not None:  # the background thread after an error, or abandoned
                return
            self.put(dst, off, data)

    def _work(self) -> None:
        """The background thread: the queued writes in order until None; after an error, the rest
        are dropped (the error is raised by close)."""
        while (task := self.tasks.get()) is not None:
            try:
                self.write(*task)  # nothing once self.error is set
            except BaseException as exc:  # noqa: BLE001 - handed to the caller by close()
                self.error = exc

    def put(self, dst: wgpu.GPUBuffer, offset: int, data: np.ndarray) -> None:
        """Copy `data` (uint8, at most `size` bytes) into `dst` at `offset` (a multiple of 4)."""
        with self.dev._piece_lock:
            self._put(dst, offset, data)

    def _put(self, dst: wgpu.GPUBuffer, offset: int, data: np.ndarray) -> None:
        i, self.next = self.next, (self.next + 1) % len(self.slots)
        slot = self.slots[i]
        if not self.mapped[i]:
            self.dev.check_alive()  # a map on a lost device can abort the process (see map_read)
            health.wait_mapped(slot.map_async(wgpu.MapMode.WRITE), self.MAP_WAIT_S, self.dev.adapter.summary)
        texels = is_texels(dst)
        if texels:
            data = _pad16(data)
        slot.write_mapped(data, 0)
        slot.unmap()
        self.mapped[i] = False
        enc = self.dev.device.create_command_encoder()
        if texels:
            for src, row, width, rows in _texel_regions(offset, data.nbytes):
                enc.copy_buffer_to_texture({"buffer": slot, "offset": src, "bytes_per_row": TEXEL_ROW, "rows_per_image": rows},
                                           {"texture": dst, "origin": (0, row, 0)}, (width, rows, 1))
        else:
            enc.copy_buffer_to_buffer(slot, 0, dst, offset, align(data.nbytes, 4))
        self.dev.check_alive()
        self.dev.queue.submit([enc.finish()])

    def close(self, discard: bool = False) -> None:
        """Wait for the background writes (none left to do with `discard`: the caller failed),
        free the slots, then raise the thread's error, if any and not discarded."""
        if self.worker is not None:
            if discard:
                self.error = self.error or RuntimeError("upload abandoned")
            self.tasks.put(None)
            self.worker.join()
        for slot in self.slots:
            try:
                slot.destroy()
            except Exception:  # noqa: BLE001 - a lost device may refuse; it is going anyway
                pass
        if self.error is not None and not discard:
            raise self.error
