"""Memory budgets of WebGPU adapters (stub: being written)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AdapterBudget:
    """One adapter with the memory wgllm may use on it.

    total/free: what the source reports (None if unknown). budget: bytes wgllm
    plans to use at most (free less a safety margin, or a user cap). source:
    "nvml", "sysfs", "system-ram", "user-cap" or "unknown". shared: the adapter
    uses system RAM (integrated GPU, CPU adapter)."""

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

    @property
    def summary(self) -> str:
        return f"{self.name} ({self.kind}, {self.backend})"
