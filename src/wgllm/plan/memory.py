"""Exact GPU memory need of a model on the engine, from its layout alone.

`estimate(layout, n_ctx=..., act=...)` replays what
`Engine(model, ctx=n_ctx, precision=act, chunk=chunk)` allocates on a fresh
device, buffer by buffer, with the engine's own labels and rounding: weights
in chunks of whole rows that fit one storage binding (each with `PAD` bytes
of slack), the KV cache (one K and one V buffer per layer), the activation
buffers of one prefill chunk, the logits, the split-attention scratch, the
parameter (uniform) buffers of every dispatch of the decode, prefill and
logits graphs, the rope tables, the token ids and the readback staging
buffers. No weight is read and `wgpu` is not imported.

The mirror (`_Mirror`) follows `model/arch/llama.py` (LlamaModel.__init__,
_weight, body, _layer, logits_head), `kernels/linear.py` (upload_weight,
_chunk_rows, linear, get_rows), `kernels/ops.py` (rmsnorm, rope_kv,
attention and its scratch) and `runtime/engine.py` (staging). The numbers it
shares with them come from `wgllm.kernels.constants`; a change to the
engine's allocations must be made here too (tests/model/test_estimate_vs_allocation.py
compares the two per label, to the byte).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from wgllm.kernels import constants as C
from wgllm.plan.layout import ModelLayout, TensorSpec

PIPELINE_DEPTH = 3  # runtime/engine.py PIPELINE_DEPTH (engine imports wgpu; a test checks they agree)
ACT_BYTES = {"f32": 4, "f16": 2}
DEFAULT_MAX_BINDING = 2**31 - 4  # wgpu's cap on max-storage-buffer-binding-size

# engine label -> MemoryEstimate field; every other label ("tokens", "step", "params",
# "linear params", "get_rows params", "rope") counts as `other`.
LABEL_FIELDS = {
    "weights": "weights",
    "kv": "kv_cache",
    "act": "activations",
    "attn_scratch": "activations",
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


@dataclass(frozen=True)
class Buffer:
    """One buffer the engine allocates: label, bytes (after rounding), bound as a storage buffer?"""

    label: str
    size: int
    binding: bool


def act_bytes(act: str) -> int:
    """Bytes per activation / KV element of precision `act` ("f32" or "f16")."""
    try:
        return ACT_BYTES[act]
    except KeyError:
        raise ValueError(f"act must be 'f32' or 'f16', not {act!r}") from None


def kv_bytes_per_token(layout: ModelLayout, act: str) -> int:
    """KV cache bytes per context token: layers x kv heads x head dim x (K and V) x dtype."""
    return layout.n_layers * layout.n_kv_heads * layout.head_dim * 2 * act_bytes(act)


def chunk_limit(max_binding: int, max_buffer: int | None = None) -> int:
    """Most row bytes of one weight chunk (`linear._chunk_rows`): within a binding and a buffer, less PAD."""
    cap = max_binding if max_buffer is None else min(max_binding, max_buffer)
    return cap // 4 * 4 - C.PAD


def chunk_rows(n_rows: int, row_bytes: int, limit: int) -> list[int]:
    """Rows of each chunk `linear.upload_weight` makes: balanced, each within `limit` bytes."""
    rows_max = limit // row_bytes
    if rows_max < 1:
        raise ValueError(f"one weight row ({row_bytes} bytes) does not fit a storage binding ({limit} bytes)")
    per = -(-n_rows // -(-n_rows // rows_max))
    return [min(per, n_rows - first) for first in range(0, n_rows, per)]


def row_bytes(t: TensorSpec) -> int:
    """Bytes of one row (shape[0] elements) of tensor `t`."""
    return TensorSpec(t.name, t.ggml_type, t.shape[:1]).nbytes


class _Mirror:
    """Replays the engine's construction on a fresh device, recording every buffer."""

    def __init__(self, layout: ModelLayout, *, n_ctx: int, act: str, chunk: int, limit: int):
        self.L, self.n_ctx, self.act, self.a = layout, n_ctx, act, act_bytes(act)
        self.chunk, self.limit = chunk, limit
        self.buffers: list[Buffer] = []
        self.chunks: dict[str, int] = {}  # fused weight key -> number of chunks (one dispatch each)
        self.scratch: tuple[int, int] | None = None  # ops._attn_scratch's current (part, ml) sizes

    # --- Device ------------------------------------------------------------
    def alloc(self, label: str, size: int, binding: bool = True) -> int:
        size = C.buffer_size(size)
        self.buffers.append(Buffer(label, size, binding))
        return size

    def uniform(self, label: str, n_u32: int) -> None:
        self.buffers.append(Buffer(label, C.uniform_size(4 * n_u32), False))

    # --- LlamaModel.__init__ ---------------------------------------------------
    def model(self) -> None:
        L, a = self.L, self.a
        self.alloc("tokens", (self.n_ctx + 1) * 4)
        self.alloc("step", C.STEP_BYTES, binding=False)  # step
        self.alloc("step", C.STEP_BYTES, binding=False)  # step_one
        self.upload()
        kv = self.n_ctx * L.n_kv_heads * L.head_dim * a
        for _ in range(2 * L.n_layers):  # k_cache, v_cache
            self.alloc("kv", kv)
        self.activations()
        self.body(1)  # decode
        if self.chunk > 1:
            self.body(self.chunk)  # prefill
        self.head()

    def upload(self) -> None:
        """LlamaModel._upload: embedding, output norm, output (untied), then the layers."""
        self.weight("token_embd", ["token_embd.weight"])
        self.vector("output_norm.weight")
        if not self.L.tied_embeddings:
            self.weight("output", ["output.weight"])
        for i in range(self.L.n_layers):
            b = f"blk.{i}."
            self.vector(b + "attn_norm.weight")
            self.weight(b + "wqkv", [b + "attn_q.weight", b + "attn_k.weight", b + "attn_v.weight"])
            self.weight(b + "wo", [b + "attn_output.weight"])
            self.vector(b + "ffn_norm.weight")
            self.weight(b + "wgu", [b + "ffn_gate.weight", b + "ffn_up.weight"])
            self.weight(b + "wdown", [b + "ffn_down.weight"])
            if self.has(b + "attn_q.bias"):  # qwen2: q|k|v biases in one buffer
                self.vector(b + "attn_q.bias", b + "attn_k.bias", b + "attn_v.bias")

    def weight(self, key: str, names: list[str]) -> None:
        """LlamaModel._weight: runs of one type are uploaded together, each in chunks (+PAD)."""
        ts = [self.L.tensor(n) for n in names]
        n = 0
        i = 0
        while i < len(ts):
            j = i
            while j < len(ts) and ts[j].ggml_type == ts[i].ggml_type:
                j += 1
            rb = row_bytes(ts[i])
            for rows in chunk_rows(sum(t.n_rows for t in ts[i:j]), rb, self.limit):
                self.alloc("weights", rows * rb + C.PAD)
                n += 1
            i = j
        self.chunks[key] = n

    def vector(self, *names: str) -> None:
        """LlamaModel._vector: F32 vectors concatenated into one buffer."""
        self.alloc("weights", sum(self.L.tensor(n).nbytes for n in names))

    def has(self, name: str) -> bool:
        return any(t.name == name for t in self.L.tensors)

    def activations(self) -> None:
        """llama.Activations for `chunk` rows, and the logits."""
        L, T, a = self.L, self.chunk, self.a
        qkv_dim = (L.n_heads + 2 * L.n_kv_heads) * L.head_dim
        self.alloc("act", T * L.dim * 4)  # x: [T, dim] f32 residual stream
        self.alloc("act", T * L.dim * a)  # xn: [T, dim]
        self.alloc("act", T * qkv_dim * a)  # qkv: [T, (Hq+2Hkv)*hd]
        self.alloc("act", T * L.n_heads * L.head_dim * a)  # attn: [T, Hq*hd]
        self.alloc("act", T * 2 * L.ffn_dim * a)  # gu: [T, 2*ffn] (SwiGLU fused into the down projection)
        self.alloc("act", L.dim * a)  # xlast: [1, dim]
        self.alloc("logits", L.n_vocab * 4)

    # --- the graphs: parameter buffers, rope tables, attention scratch -----------
    def linear(self, key: str) -> None:
        for _ in range(self.chunks[key]):
            self.uniform("linear params", C.LINEAR_PARAMS)

    def body(self, T: int) -> None:
        """LlamaModel.body(T): get_rows, then per layer the dispatches of `_layer`."""
        for _ in range(self.chunks["token_embd"]):
            self.uniform("get_rows params", C.GET_ROWS_PARAMS)
        for i in range(self.L.n_layers):
            b = f"blk.{i}."
            self.uniform("params", C.RMSNORM_PARAMS)
            self.linear(b + "wqkv")
            self.alloc("rope", self.rope_dim() // 2 * 2 * 4)  # rope_freq_table: [rope_dim/2, 2] u32
            self.attention(T)
            self.linear(b + "wo")
            self.uniform("params", C.RMSNORM_PARAMS)
            self.linear(b + "wgu")
            self.linear(b + "wdown")

    def head(self) -> None:
        """LlamaModel.logits_head: rmsnorm of the last row, output linear, argmax."""
        self.uniform("params", C.RMSNORM_PARAMS)
        self.linear("token_embd" if self.L.tied_embeddings else "output")

    def rope_dim(self) -> int:
        return int(getattr(self.L, "rope_dim", 0) or self.L.head_dim)

    def attention(self, T: int) -> None:
        """ops.attention's scratch: one (part, ml) pair per device, re-made larger when too small."""
        L = self.L
        plan = C.attention_plan(T, L.n_heads, L.n_kv_heads, L.head_dim, self.n_ctx)
        part, ml = C.attention_scratch_bytes(T, L.n_heads, L.head_dim, plan["S"])
        cur = self.scratch
        if cur is None or cur[0] < part or cur[1] < ml:
            old = cur or (0, 0)
            self.scratch = (self.alloc("attn_scratch", max(part, old[0])),
                            self.alloc("attn_scratch", max(ml, old[1])))

    # --- Engine -------------------------------------------------------------------
    def staging(self) -> None:
        for _ in range(PIPELINE_DEPTH + 1):
            self.alloc("staging", 4, binding=False)
        self.alloc("staging", self.L.n_vocab * 4, binding=False)

    def all_logits(self) -> None:
        """LlamaModel.all_logits (built on the first `Engine.logits` call)."""
        self.alloc("logits", self.chunk * self.L.n_vocab * 4)
        self.uniform("params", C.RMSNORM_PARAMS)
        self.linear("token_embd" if self.L.tied_embeddings else "output")


def engine_buffers(layout: ModelLayout, *, n_ctx: int, act: str, chunk: int = 128,
                   max_binding: int = DEFAULT_MAX_BINDING, max_buffer: int | None = None,
                   all_logits: bool = False) -> list[Buffer]:
    """Every buffer `Engine(model, ctx=n_ctx, precision=act, chunk=chunk)` allocates, in order.

    max_binding / max_buffer: the adapter's max-storage-buffer-binding-size and
    max-buffer-size (they set how weights are chunked). all_logits: add what
    the first `Engine.logits` call allocates."""
    chunk = max(1, min(int(chunk), int(n_ctx)))  # as Engine.__init__
    m = _Mirror(layout, n_ctx=int(n_ctx), act=act, chunk=chunk, limit=chunk_limit(max_binding, max_buffer))
    m.model()
    m.staging()
    if all_logits:
        m.all_logits()
    return m.buffers


def summarize(buffers: list[Buffer]) -> MemoryEstimate:
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
             all_logits: bool = False) -> MemoryEstimate:
    """Bytes `Engine(model, ctx=n_ctx, precision=act, chunk=chunk)` allocates on a fresh device
    whose max-storage-buffer-binding-size is `max_binding` (see `engine_buffers`)."""
    return summarize(engine_buffers(layout, n_ctx=n_ctx, act=act, chunk=chunk, max_binding=max_binding,
                                    max_buffer=max_buffer, all_logits=all_logits))
