"""Exact GPU memory need of a model on the engine, from its layout alone.

`estimate(layout, n_ctx=..., act=...)` builds the model exactly as
`Engine(model, ctx=n_ctx, precision=act, chunk=chunk)` does (the same
architecture file, kernel builders and weight chunking) against a
`wgllm.gpu.meter.MeterDevice`, which records every buffer the build asks for
and allocates, compiles and reads nothing. The estimate is therefore the
engine's allocation by construction, label by label (weights in chunks of
whole rows that fit one storage binding, the KV cache, activations, logits,
attention scratch, parameter buffers, rope tables, token ids and read-back
staging). No weight is read and `wgpu` is not imported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from wgllm.gpu.meter import DEFAULT_MAX_BINDING, MeterBuffer, MeterDevice
from wgllm.model import arch as arches
from wgllm.plan.layout import ModelLayout

ACT_BYTES = {"f32": 4, "f16": 2}

# engine label -> MemoryEstimate field; every other label ("tokens", "step", "params",
# "linear params", "get_rows params", "rope") counts as `other`.
LABEL_FIELDS = {
    "weights": "weights",
    "kv": "kv_cache",
    "act": "activations",
    "attn_scratch": "activations",
    "splitk_scratch": "activations",
    "argmax_scratch": "activations",
    "logits": "logits",
    "staging": "staging",
}
FIELDS = ("weights", "kv_cache", "activations", "logits", "staging", "other")


@dataclass
class MemoryEstimate:
    """Bytes the engine will allocate, by purpose (the engine's own accounting labels).

    `by_label` holds the same bytes under the engine's labels (what
    `Device.allocated` will hold after the engine is built); `n_buffers` is
    the number of buffers."""

    weights: int
    kv_cache: int
    activations: int
    logits: int
    staging: int
    other: int
    largest_buffer: int  # bytes of the largest single buffer
    largest_binding: int  # bytes of the largest single storage-buffer binding
    by_label: dict[str, int] = field(default_factory=dict)
    n_buffers: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations + self.logits + self.staging + self.other

    def as_dict(self) -> dict:
        return dict(asdict(self), total=self.total)

    def limit_problems(self, max_buffer_size: int, max_storage_binding: int) -> list[str]:
        """Plain sentences saying which adapter limit a buffer would break (empty: none)."""
        out = []
        if self.largest_buffer > max_buffer_size:
            out.append(f"its largest buffer ({self.largest_buffer:,} bytes) exceeds the adapter's "
                       f"max-buffer-size ({max_buffer_size:,} bytes)")
        if self.largest_binding > max_storage_binding:
            out.append(f"its largest storage binding ({self.largest_binding:,} bytes) exceeds the adapter's "
                       f"max-storage-buffer-binding-size ({max_storage_binding:,} bytes)")
        return out

    def fits_limits(self, max_buffer_size: int, max_storage_binding: int) -> bool:
        return not self.limit_problems(max_buffer_size, max_storage_binding)


def act_bytes(act: str) -> int:
    """Bytes per activation / KV element of precision `act` ("f32" or "f16")."""
    try:
        return ACT_BYTES[act]
    except KeyError:
        raise ValueError(f"act must be 'f32' or 'f16', not {act!r}") from None


def kv_bytes_per_token(layout: ModelLayout, act: str) -> int:
    """KV cache bytes per context token: layers x kv heads x head dim x (K and V) x dtype, times the
    sequences served at once (each has a cache of n_ctx tokens)."""
    return layout.n_seq * layout.n_layers * layout.n_kv_heads * layout.head_dim * 2 * act_bytes(act)


Buffer = MeterBuffer  # label, size, binding


def engine_buffers(layout: ModelLayout, *, n_ctx: int, act: str, chunk: int = 128,
                   max_binding: int = DEFAULT_MAX_BINDING, max_buffer: int | None = None,
                   all_logits: bool = False, kind: str = "gpu",
                   layers: tuple[int, int] | None = None) -> list[MeterBuffer]:
    """Every buffer `Engine(model, ctx=n_ctx, precision=act, chunk=chunk)` allocates, in order:
    the model built on a MeterDevice (see module doc); `layers`: only the part of a split
    model holding that (start, stop) layer range (on its own adapter).

    max_binding / max_buffer: the adapter's max-storage-buffer-binding-size and
    max-buffer-size (they set how weights are chunked); kind: the adapter class
    ("gpu" or "cpu": the kernel variants). all_logits: add what the first
    `Engine.logits` call allocates."""
    act_bytes(act)
    chunk = max(1, min(int(chunk), int(n_ctx)))  # as Engine.__init__
    dev = MeterDevice(max_binding=max_binding, max_buffer=max_buffer, kind=kind)
    model = arches.build(dev, layout.tensor_map(), layout.config, act=act, n_ctx=int(n_ctx), chunk=chunk,
                         plannable=True, layers=layers, n_seq=layout.n_seq)
    if all_logits and model.last:
        model.all_logits()
    return dev.buffers


def summarize(buffers: list[MeterBuffer]) -> MemoryEstimate:
    """A MemoryEstimate of a list of buffers (fields by LABEL_FIELDS)."""
    by_label: dict[str, int] = {}
    for b in buffers:
        by_label[b.label] = by_label.get(b.label, 0) + b.size
    parts = dict.fromkeys(FIELDS, 0)
    for label, n in by_label.items():
        parts[LABEL_FIELDS.get(label, "other")] += n
    return MemoryEstimate(
        **parts,
        largest_buffer=max((b.size for b in buffers), default=0),
        largest_binding=max((b.size for b in buffers if b.binding), default=0),
        by_label=by_label,
        n_buffers=len(buffers),
    )


def estimate(layout: ModelLayout, *, n_ctx: int, act: str, chunk: int = 128,
             max_binding: int = DEFAULT_MAX_BINDING, max_buffer: int | None = None,
             all_logits: bool = False, kind: str = "gpu", layers: tuple[int, int] | None = None) -> MemoryEstimate:
    """Bytes `Engine(model, ctx=n_ctx, precision=act, chunk=chunk)` allocates on a fresh device
    whose max-storage-buffer-binding-size is `max_binding` (see `engine_buffers`); `layers`: of
    the part of a split model holding that layer range."""
    return summarize(engine_buffers(layout, n_ctx=n_ctx, act=act, chunk=chunk, max_binding=max_binding,
                                    max_buffer=max_buffer, all_logits=all_logits, kind=kind, layers=layers))
