"""Exact GPU memory need of a model on the engine, from its layout alone (stub: being written)."""

from __future__ import annotations

from dataclasses import dataclass, asdict


@dataclass
class MemoryEstimate:
    """Bytes the engine will allocate, by purpose (the engine's own accounting labels)."""

    weights: int
    kv_cache: int
    activations: int
    logits: int
    staging: int
    other: int
    largest_buffer: int  # bytes of the largest single buffer
    largest_binding: int  # bytes of the largest single storage-buffer binding

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations + self.logits + self.staging + self.other

    def as_dict(self) -> dict:
        return dict(asdict(self), total=self.total)
