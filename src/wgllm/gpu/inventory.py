"""Memory budgets of WebGPU adapters: how many bytes wgllm may allocate on each.

WebGPU cannot say how much memory an adapter has (gpuweb#5505), so the
budget comes from outside it, and says where it came from (`source`):

* "nvml": NVIDIA GPUs, total and free memory from NVML (`nvidia-ml-py`,
  imported only when needed), matched to the adapter by PCI device id, then
  by name when several GPUs share the id. Budget: free less a margin
  (`dedicated_margin`: 5% of total, at least 512 MiB).
* "sysfs": AMD GPUs, `/sys/class/drm/card*/device/mem_info_vram_total` and
  `_used`, matched by PCI device id. Same margin.
* "system-ram": integrated GPUs and CPU adapters share system RAM: psutil's
  available memory less `shared_margin` (10% of RAM, at least 1 GiB). A CPU
  adapter over-commits (lavapipe created 120 GiB of buffers on a 24 GiB
  machine without an error), so past this budget the OOM killer strikes:
  this budget is the only protection there is.
* "unknown": nothing could be measured. `budget` is None; planners use
  `AdapterBudget.planning_budget`, a conservative `UNKNOWN_DEFAULT_BUDGET`
  (2 GiB: nearly every GPU with a Vulkan/Metal/D3D12 driver has that much),
  and say so.
* "user-cap": a user cap (`--gpu-memory 4GiB`, or `WGLLM_GPU_MEMORY`) set the
  budget: it lowers a measured budget (e.g. to simulate a small GPU), or
  replaces an unknown one; a cap above a measured budget is not used.

Nothing here imports `wgpu`: adapters are described by `discovery.AdapterInfo`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterable, Mapping, Union

import psutil

from wgllm.errors import RequestError

NVIDIA_VENDOR = 0x10DE
AMD_VENDOR = 0x1002
GiB = 1 << 30
MiB = 1 << 20
DEDICATED_MARGIN = (0.05, 512 * MiB)  # keep free on a dedicated GPU: max(5% of total, 512 MiB)
SHARED_MARGIN = (0.10, 1 * GiB)  # keep free of system RAM: max(10% of RAM, 1 GiB)
UNKNOWN_DEFAULT_BUDGET = 2 * GiB
ENV_VAR = "WGLLM_GPU_MEMORY"
DRM_ROOT = "/sys/class/drm"
SHARED_KINDS = ("integrated", "cpu")

Caps = Union[str, int, Mapping[int, Union[int, str]], None]


@dataclass
class AdapterBudget:
    """One adapter with the memory wgllm may use on it.

    total/free: what the source reports (None if unknown). budget: bytes wgllm
    plans to use at most (free less a safety margin, or a user cap). source:
    "nvml", "sysfs", "system-ram", "user-cap" or "unknown". shared: the adapter
    uses system RAM (integrated GPU, CPU adapter). cap: the user's cap for this
    adapter, if any. physical: an id of the memory behind the adapter (NVML PCI
    bus id, sysfs card, "system-ram"): adapters with the same one (e.g. the
    Vulkan and OpenGL adapters of one GPU) share one pool of memory."""

    index: int
    name: str
    kind: str
    backend: str
    vendor_id: int
    device_id: int
    shader_f16: bool
    max_buffer_size: int
    max_storage_binding: int
    total: int | None
    free: int | None
    budget: int | None
    source: str
    shared: bool
    note: str = ""
    cap: int | None = None
    physical: str = ""

    @property
    def summary(self) -> str:
        return f"{self.name} ({self.kind}, {self.backend})"

    @property
    def planning_budget(self) -> int:
        """`budget`, or the conservative UNKNOWN_DEFAULT_BUDGET where it is unknown."""
        return UNKNOWN_DEFAULT_BUDGET if self.budget is None else self.budget

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class GpuMemory:
    """Memory of one physical GPU as NVML or sysfs reports it."""

    name: str
    device_id: int
    total: int
    free: int
    physical: str


# --- sizes and caps ---------------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgtp])(i?)(b?)|b?)\s*$", re.IGNORECASE)
_POWERS = "kmgtp"


def parse_size(text: str | int) -> int:
    """Bytes of a memory size: "4GiB", "512MiB", "1.5G", "8GB", "4096", "4096B".

    K/M/G/T/P and KiB/MiB/GiB/TiB/PiB are powers of 1024; KB/MB/GB/TB/PB powers of
    1000 (as SI has it); no unit: bytes. Case does not matter. Raises RequestError."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text > 0:
            return text
        raise RequestError(f"A memory size must be positive, not {text}.")
    m = _SIZE.match(str(text))
    if not m:
        raise _bad_size(text)
    num, unit, binary, b = m.groups()
    base = 1000 if b and not binary else 1024  # "GB": SI; "G", "GiB": binary
    mult = 1 if unit is None else base ** (_POWERS.index(unit.lower()) + 1)
    try:
        value = Decimal(num) * mult
    except InvalidOperation:
        raise _bad_size(text) from None
    if value != int(value) and unit is None:
        raise _bad_size(text)
    if int(value) < 1:
        raise RequestError(f"A memory size must be at least 1 byte, not '{text}'.")
    return int(value)


def _bad_size(text) -> RequestError:
    return RequestError(
        f"'{text}' is not a memory size. Write a number with an optional unit, e.g. 4GiB, 512MiB, "
        f"1.5G, 8GB or 4096 (bytes): K/M/G/T and KiB/MiB/GiB/TiB count in 1024s, KB/MB/GB/TB in 1000s."
    )


def parse_caps(spec: Caps) -> dict[int | None, int]:
    """Per-adapter caps: {adapter index: bytes}, key None for every adapter.

    spec: "4GiB" (every adapter), "0=4GiB,1=8GiB" (or "0:4GiB,1:8GiB"), "6G,1=8G" (a
    default and exceptions), an int (bytes, every adapter), a {index: size} mapping, or
    None / "" (no caps). Raises RequestError on junk."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return {}
    if isinstance(spec, int) and not isinstance(spec, bool):
        return {None: parse_size(spec)}
    if isinstance(spec, Mapping):
        return {_cap_key(k, spec): parse_size(v) for k, v in spec.items()}
    caps: dict[int | None, int] = {}
    for part in str(spec).split(","):
        key, sep, size = part.partition("=") if "=" in part else part.partition(":")
        caps[_cap_key(key if sep else None, spec)] = parse_size(size if sep else key)
    return caps


def _cap_key(key, spec) -> int | None:
    if key is None or (isinstance(key, str) and key.strip() in ("*", "all")):
        return None
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return key
    if isinstance(key, str) and key.strip().isdigit():
        return int(key.strip())
    raise RequestError(
        f"'{key}' in the memory cap '{spec}' is not an adapter index. Write one size for every "
        f"adapter (4GiB) or index=size pairs (0=4GiB,1=8GiB); `wgllm devices` lists the indices."
    )


# --- sources -----------------------------------------------------------------------


def _text(x) -> str:
    return x.decode(errors="replace") if isinstance(x, bytes) else str(x)


def nvml_gpus() -> tuple[list[GpuMemory], str]:
    """NVIDIA GPUs as NVML sees them, and '' (or why NVML could not be read)."""
    try:
        import pynvml
    except ImportError:
        return [], "NVML unavailable: the nvidia-ml-py package is not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError: no driver, no library
        return [], f"NVML unavailable: {exc}"
    try:
        return [_nvml_gpu(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount())], ""
    except Exception as exc:
        return [], f"NVML failed: {exc}"
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _nvml_gpu(pynvml, i: int) -> GpuMemory:
    h = pynvml.nvmlDeviceGetHandleByIndex(i)
    pci = pynvml.nvmlDeviceGetPciInfo(h)
    mem = pynvml.nvmlDeviceGetMemoryInfo(h)
    bus = _text(getattr(pci, "busId", "")) or f"nvml:{i}"
    return GpuMemory(_text(pynvml.nvmlDeviceGetName(h)), int(pci.pciDeviceId) >> 16, int(mem.total),
                     int(mem.free), bus)


def amd_gpus(root: str | os.PathLike = DRM_ROOT) -> list[GpuMemory]:
    """AMD GPUs with VRAM figures under `root` (/sys/class/drm): card*/device/{vendor,device,mem_info_vram_*}."""
    out = []
    for card in sorted(Path(root).glob("card*")):
        dev = card / "device"
        if not re.fullmatch(r"card\d+", card.name) or _read(dev / "vendor") != str(AMD_VENDOR):
            continue
        total, used = _read_int(dev / "mem_info_vram_total"), _read_int(dev / "mem_info_vram_used")
        if total is None or used is None:
            continue
        name = _read(dev / "product_name") or f"AMD GPU {_read(dev / 'device')}"
        out.append(GpuMemory(name, _read_int(dev / "device") or 0, total, max(total - used, 0), str(card)))
    return out


def _read(path: Path) -> str:
    """A sysfs value as text; numbers in hex ("0x1002") come back in decimal; '' if unreadable."""
    try:
        s = path.read_text().strip()
    except OSError:
        return ""
    return str(int(s, 16)) if s.lower().startswith("0x") else s


def _read_int(path: Path) -> int | None:
    s = _read(path)
    return int(s) if s.isdigit() else None


def system_ram() -> tuple[int, int, int]:
    """(total, available, budget) of system RAM: available less max(10% of RAM, 1 GiB)."""
    vm = psutil.virtual_memory()
    margin = max(int(vm.total * SHARED_MARGIN[0]), SHARED_MARGIN[1])
    return int(vm.total), int(vm.available), max(int(vm.available) - margin, 0)


def dedicated_margin(total: int) -> int:
    """Bytes kept free on a dedicated GPU: max(5% of total, 512 MiB)."""
    return max(int(total * DEDICATED_MARGIN[0]), DEDICATED_MARGIN[1])


# --- matching ------------------------------------------------------------------------


def _norm(name: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", name.lower()).split())


def _same_name(a: str, b: str) -> bool:
    a, b = _norm(a), _norm(b)
    return bool(a and b) and (a in b or b in a)


def match_gpu(info, gpus: list[GpuMemory]) -> tuple[GpuMemory | None, str]:
    """The GPU behind adapter `info` (by PCI device id, then name), and a note.

    Where several GPUs still match (identical cards), the one with the least free
    memory stands for them all, so the budget holds whichever it really is."""
    found = [g for g in gpus if info.device_id and g.device_id == info.device_id]
    if len(found) > 1:
        found = [g for g in found if _same_name(g.name, info.name)] or found
    if not found:
        found = [g for g in gpus if _same_name(g.name, info.name)]
    if not found:
        return None, ""
    best = min(found, key=lambda g: g.free)
    if len(found) == 1:
        return best, ""
    return best, (f"{len(found)} identical GPUs match this adapter and WebGPU cannot tell them apart; "
                  f"the budget assumes the one with the least free memory")


# --- inventory ------------------------------------------------------------------------


def _base(info, **kw) -> AdapterBudget:
    return AdapterBudget(
        index=info.index, name=info.name, kind=info.kind, backend=info.backend, vendor_id=info.vendor_id,
        device_id=info.device_id, shader_f16=info.shader_f16, max_buffer_size=info.max_buffer_size,
        max_storage_binding=info.max_storage_binding, **kw,
    )


def _is_vendor(info, vendor_id: int, *words: str) -> bool:
    return info.vendor_id == vendor_id or any(w in info.name.lower() for w in words)


def _shared(info) -> AdapterBudget:
    total, avail, budget = system_ram()
    note = f"shares system RAM: {avail / GiB:.1f} GiB available, less a margin of {(avail - budget) / GiB:.1f} GiB"
    if info.kind == "cpu":
        note += ("; a CPU adapter over-commits, so going past this budget means the OOM killer, "
                 "not an error")
    return _base(info, total=total, free=avail, budget=budget, source="system-ram", shared=True,
                 note=note, physical="system-ram")


def _dedicated(info, gpus: list[GpuMemory], source: str, why_none: str) -> AdapterBudget:
    gpu, note = match_gpu(info, gpus)
    if gpu is None:
        why = why_none or f"no {source.upper()} GPU matches device id {info.device_id:#06x} or name '{info.name}'"
        return _unknown(info, why)
    budget = max(gpu.free - dedicated_margin(gpu.total), 0)
    note = "; ".join(n for n in (f"{source}: {gpu.name}, {gpu.free / GiB:.1f} of {gpu.total / GiB:.1f} GiB free, "
                                 f"less a margin of {dedicated_margin(gpu.total) / GiB:.2f} GiB", note) if n)
    return _base(info, total=gpu.total, free=gpu.free, budget=budget, source=source, shared=False, note=note,
                 physical=f"{source}:{gpu.physical}")


def _unknown(info, why: str) -> AdapterBudget:
    note = (f"memory unknown ({why}); planning assumes {UNKNOWN_DEFAULT_BUDGET / GiB:.0f} GiB. "
            f"Set --gpu-memory (or {ENV_VAR}) to the adapter's free memory to plan for it exactly")
    return _base(info, total=None, free=None, budget=None, source="unknown", shared=False, note=note)


def measure(info, *, nvml: tuple[list[GpuMemory], str] | None = None,
            drm_root: str | os.PathLike = DRM_ROOT) -> AdapterBudget:
    """The budget of one adapter from the source that fits it (see module doc); no cap applied.

    nvml: `nvml_gpus()`'s answer, to query NVML once for many adapters."""
    if info.kind in SHARED_KINDS:
        return _shared(info)
    if _is_vendor(info, NVIDIA_VENDOR, "nvidia"):
        gpus, why = nvml if nvml is not None else nvml_gpus()
        return _dedicated(info, gpus, "nvml", why)
    if _is_vendor(info, AMD_VENDOR, "amd ", "radeon"):
        gpus = amd_gpus(drm_root)
        return _dedicated(info, gpus, "sysfs", "" if gpus else f"no AMD VRAM figures under {drm_root}")
    return _unknown(info, f"no memory source for vendor {info.vendor_id:#06x} ({info.kind})")


def apply_cap(b: AdapterBudget, cap: int | None) -> AdapterBudget:
    """`b` with the user's cap applied (see module doc)."""
    if cap is None:
        return b
    cap_s = f"{cap / GiB:.2f} GiB"
    if b.budget is None:
        note = f"budget {cap_s} from the user cap; the adapter's real memory is unknown"
        return replace(b, budget=cap, source="user-cap", cap=cap, note=note)
    if cap < b.budget:
        note = f"capped by the user at {cap_s} (measured budget {b.budget / GiB:.2f} GiB from {b.source})"
        return replace(b, budget=cap, source="user-cap", cap=cap, note=f"{note}; {b.note}" if b.note else note)
    note = f"user cap {cap_s} is above the measured budget {b.budget / GiB:.2f} GiB, which stays"
    return replace(b, cap=cap, note=f"{b.note}; {note}" if b.note else note)


def inventory(adapters: Iterable | None = None, *, caps: Caps = None,
              drm_root: str | os.PathLike = DRM_ROOT) -> list[AdapterBudget]:
    """An AdapterBudget for every adapter (default: `discovery.list_adapters()`).

    caps: see `parse_caps`; None reads the WGLLM_GPU_MEMORY environment variable
    (an explicit cap, e.g. from --gpu-memory, wins over it)."""
    if adapters is None:
        from wgllm.gpu.discovery import list_adapters

        adapters = list_adapters()
    adapters = list(adapters)
    table = parse_caps(os.environ.get(ENV_VAR) if caps is None else caps)
    wants_nvml = any(a.kind not in SHARED_KINDS and _is_vendor(a, NVIDIA_VENDOR, "nvidia") for a in adapters)
    nvml = nvml_gpus() if wants_nvml else ([], "")
    out = []
    for info in adapters:
        b = measure(info, nvml=nvml, drm_root=drm_root)
        out.append(apply_cap(b, table.get(info.index, table.get(None))))
    return out
