"""WebGPU adapters: enumeration, description, and the default choice.

`WGLLM_ADAPTERS` (for tests and benchmarks) presents the driver's adapters as
another list: a comma-separated list of wgpu's adapter indices, e.g. "0,0"
lists adapter 0 twice, as adapters 0 and 1 (devices on one GPU standing for two
adapters: a split model's parts each get their own device). A repeated
adapter's summary ends in "#2", "#3", ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from wgllm.errors import AdapterNotFoundError, NoAdapterError

_TYPE_NAMES = {"DiscreteGPU": "discrete", "IntegratedGPU": "integrated", "CPU": "cpu", "VirtualGPU": "virtual"}
_TYPE_RANK = {"discrete": 0, "integrated": 1, "virtual": 2, "cpu": 3, "unknown": 4}
_BACKEND_RANK = {"Vulkan": 0, "Metal": 0, "D3D12": 0, "OpenGL": 2}


@dataclass
class AdapterInfo:
    """What wgllm knows about one adapter (no device is created to learn it)."""

    index: int
    name: str
    kind: str  # discrete | integrated | cpu | virtual | unknown
    backend: str
    vendor: str
    vendor_id: int
    device_id: int
    shader_f16: bool
    max_buffer_size: int
    max_storage_binding: int
    max_workgroup_storage: int
    summary: str
    adapter: object = None

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d.pop("adapter")
        return d


def _describe(i: int, a) -> AdapterInfo:
    info = a.info
    kind = _TYPE_NAMES.get(str(info.get("adapter_type", "")), "unknown")
    return AdapterInfo(
        index=i,
        name=str(info.get("device", "")) or a.summary,
        kind=kind,
        backend=str(info.get("backend_type", "")),
        vendor=str(info.get("vendor", "")),
        vendor_id=int(info.get("vendor_id", 0) or 0),
        device_id=int(info.get("device_id", 0) or 0),
        shader_f16="shader-f16" in a.features,
        max_buffer_size=int(a.limits["max-buffer-size"]),
        max_storage_binding=int(a.limits["max-storage-buffer-binding-size"]),
        max_workgroup_storage=int(a.limits["max-compute-workgroup-storage-size"]),
        summary=a.summary,
        adapter=a,
    )


ENV_ADAPTERS = "WGLLM_ADAPTERS"


def list_adapters() -> list[AdapterInfo]:
    """Every WebGPU adapter on this machine, in wgpu's order (or as $WGLLM_ADAPTERS lists them)."""
    try:
        import wgpu

        adapters = wgpu.gpu.enumerate_adapters_sync()
    except Exception as exc:  # no loader / no driver
        raise NoAdapterError(f"{type(exc).__name__}: {exc}") from exc
    found = [_describe(i, a) for i, a in enumerate(adapters)]
    return remap(found, os.environ.get(ENV_ADAPTERS, ""))


def remap(found: list[AdapterInfo], spec: str) -> list[AdapterInfo]:
    """`found` as the list `spec` names ("0,0": adapter 0 twice; "" keeps it; see module doc)."""
    if not spec.strip():
        return found
    try:
        picks = [found[int(p)] for p in spec.split(",")]
    except (ValueError, IndexError):
        raise AdapterNotFoundError(
            f"{ENV_ADAPTERS}='{spec}' must list adapter indices among 0..{len(found) - 1}, e.g. 0,0.") from None
    seen: dict[int, int] = {}
    out = []
    for i, a in enumerate(picks):
        seen[a.index] = seen.get(a.index, 0) + 1
        tag = f" #{seen[a.index]}" if seen[a.index] > 1 else ""
        out.append(replace(a, index=i, summary=a.summary + tag))
    return out


def rank(a: AdapterInfo) -> tuple:
    """Sort key: native backends before OpenGL, then discrete > integrated > CPU."""
    return (_BACKEND_RANK.get(a.backend, 1), _TYPE_RANK.get(a.kind, 4), a.index)


def choose_adapter(spec: str | int | None = None) -> AdapterInfo:
    """The adapter named by `spec` (index or name/backend substring), else the best one."""
    adapters = list_adapters()
    if not adapters:
        raise NoAdapterError()
    if spec is None or spec == "" or spec == "auto":
        return min(adapters, key=rank)
    if isinstance(spec, int) or str(spec).isdigit():
        idx = int(spec)
        if 0 <= idx < len(adapters):
            return adapters[idx]
    else:
        found = [a for a in adapters if str(spec).lower() in a.summary.lower()]
        if found:
            return min(found, key=rank)
    listing = "; ".join(f"{a.index}: {a.summary}" for a in adapters)
    raise AdapterNotFoundError(
        f"No WebGPU adapter matches '{spec}'. The adapters here are: {listing}. "
        f"Pass an index or a part of a name (see `wgllm devices`)."
    )
