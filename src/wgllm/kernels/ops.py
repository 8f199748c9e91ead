"""Python builders for the element-wise / normalisation / attention kernels.

Each builder returns a list of reusable `Dispatch` objects (pipelines and bind
groups built once). Shapes are given in elements; buffers hold activations of
type `act` ("f32" or "f16") unless a parameter says otherwise.

Kernels that take a `step` buffer (see `step_buffer`) are built for a capacity
of `T_max` rows and read the actual row count T and start position pos of each
submission from it: rows t >= T are left untouched.
"""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING

import numpy as np

from wgllm.gpu.dispatch import UNIFORM, Dispatch
from wgllm.kernels.constants import (ATTN_MAX_ROWS, ATTN_MAX_SPLITS, ATTN_MINK, ATTN_TARGET_GROUPS,  # noqa: F401
                                     ATTN_WG, MAX_BATCH, STEP_BYTES, attention_plan)

if TYPE_CHECKING:
    from wgllm.gpu.device import Device

ROPE_MODES = ("normal", "neox")
ATTN_ROWS_WG = 8  # attn_rows (CPU adapters): (token, head) rows per workgroup
RMSNORM_ROWS_WG = 8  # rmsnorm_rows (CPU adapters): rows per workgroup
RMSNORM_WG = 256  # rmsnorm (GPU adapters): invocations per workgroup
RMSNORM_COLS = 512  # rmsnorm: columns each workgroup writes (a row of D takes ceil(D / this))
RMSNORM_SUBGROUPS = False  # rmsnorm: the workgroup sum by subgroups where the device has them
ELEMENTWISE_WG = 256  # rowmap / bias_add: elements per workgroup


_SUBGROUP: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Device -> subgroup size


def subgroup_size(dev: Device) -> int:
    """Invocations per subgroup of a 128-wide workgroup on `dev` (0: no subgroup feature).

    WebGPU states only a range, so it is measured once per device: a kernel writes
    the subgroup_size builtin (NVIDIA: 32; lavapipe: its vector width, 8 at 256 bits).
    A device without `has_subgroups` (the planner's MeterDevice) reports 0."""
    if not getattr(dev, "has_subgroups", False):
        return 0
    n = _SUBGROUP.get(dev)
    if n is None:
        out = dev.buffer(4, "subgroup probe")
        dev.run([dev.dispatch("subgroup_size", [out], (1,))])
        n = _SUBGROUP[dev] = int(dev.read_array(out, np.uint32, 1)[0])
        dev.release(out)
    return n


def step_buffer(dev: Device, label: str = "step"):
    """A uniform buffer holding `struct Step` (see step.wgsl)."""
    return dev.buffer(STEP_BYTES, label, usage=UNIFORM)


def write_step(dev: Device, buf, T: int, pos: int, slot: int = 0) -> None:
    """Set the Step of the next submission: T tokens of the sequence in KV-cache slot `slot`,
    starting at position `pos`."""
    dev.write(buf, np.array([T, pos, slot, 0], np.uint32))


def write_batch_step(dev: Device, buf, rows) -> None:
    """Set the Step of a batched submission: row t is the token of the sequence in slot
    rows[t][0] at position rows[t][1] (one row per sequence, at most MAX_BATCH)."""
    if not 0 < len(rows) <= MAX_BATCH:
        raise ValueError(f"a batched pass has 1..{MAX_BATCH} rows, not {len(rows)}")
    step = np.zeros((1 + len(rows), 4), np.uint32)
    step[0] = (len(rows), 0, 0, 1)
    step[1:, :2] = np.asarray(rows, np.uint32).reshape(-1, 2)
    dev.write(buf, step)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _check_act(act: str) -> None:
    if act not in ("f32", "f16"):
        raise ValueError(f"act must be 'f32' or 'f16', not {act!r}")


# --- normalisation and element-wise --------------------------------------------


def rmsnorm(dev: Device, x, w, y, D: int, T: int, eps: float, step, *, in_type="f32", out_type="f32",
            last_row_only: bool = False, add: bool = False) -> list[Dispatch]:
    """y[t, :] = rmsnorm(x[t, :]) * w for t < Step.T.  x: [T, D], w: [D] f32, y: [T, D].

    `T` is the row capacity. With `last_row_only`, only row Step.T - 1 of x is
    normalised, into y[0, :] (y: [1, D]); `T` is then ignored. With `add`, the normed
    row is added to y (y[t, :] += ...: a post-norm into the residual stream). On a CPU adapter one
    invocation per row does it (rmsnorm_rows.wgsl); elsewhere ceil(D / RMSNORM_COLS) workgroups
    per row, each summing the whole row and writing its columns.
    """
    params = np.zeros(4, np.uint32)
    params[0], params[1], params[3] = D, int(last_row_only), RMSNORM_COLS
    params[2:3] = np.array([eps], np.float32).view(np.uint32)
    u = dev.uniform(params)
    act = "f16" if "f16" in (in_type, out_type) else "f32"
    if dev.kind == "cpu" and D % 4 == 0:
        groups = (1, 1) if last_row_only else (_ceil(T, RMSNORM_ROWS_WG), 1)
        return [dev.dispatch("rmsnorm_rows", [x, w, y, u, step], groups,
                             per_token=None if last_row_only else (0, 1, RMSNORM_ROWS_WG), IN=in_type,
                             OUT=out_type, ACT=act, WG=RMSNORM_ROWS_WG, ADD=_bool(add))]
    rows = 1 if last_row_only else T  # (the chunk's rows: far below the per-dimension limit)
    return [dev.dispatch("rmsnorm", [x, w, y, u, step], (_ceil(D, RMSNORM_COLS), rows),
                         per_token=None if last_row_only else (1, 1, 1),
                         IN=in_type, OUT=out_type, ACT=act, ADD=_bool(add), WG=RMSNORM_WG, **_norm_sum(dev))]


def _norm_sum(dev: Device) -> dict:
    """rmsnorm.wgsl's workgroup sum: by subgroups (RMSNORM_SUBGROUPS, where the device's
    subgroups divide the workgroup) or as a tree through workgroup memory."""
    sg = subgroup_size(dev) if RMSNORM_SUBGROUPS else 0
    if sg and RMSNORM_WG % sg == 0:
        return dict(SUM="subgroup", SG=sg)
    return dict(SUM="tree")


def _bool(b: bool) -> str:
    return "true" if b else "false"


HEAD_NORM_WG = 64  # head_norm: (token, head) rows per workgroup


def head_norm(dev: Device, qkv, w, step, *, T_max: int, n_heads: int, n_kv_heads: int, head_dim: int,
              eps: float, act: str) -> list[Dispatch]:
    """RMSNorm of each q and k head of qkv in place, for rows t < Step.T (qk-norm).

    qkv: [T_max, (Hq + 2 Hkv) * hd] (act), w: [2, hd] f32: the q norm's weights, then the k
    norm's (each shared by all heads). One invocation per (token, head)."""
    _check_act(act)
    if head_dim % 4:
        raise ValueError(f"head_norm: head_dim {head_dim} must be a multiple of 4")
    rows_per_token = n_heads + n_kv_heads
    groups = dev.grid(_ceil(T_max * rows_per_token, HEAD_NORM_WG))
    return [dev.dispatch("head_norm", [qkv, w, step], groups, per_token=(0, rows_per_token, HEAD_NORM_WG),
                         HD=head_dim, HQ=n_heads, HKV=n_kv_heads, EPS=f"{float(eps)!r}", WG=HEAD_NORM_WG, ACT=act)]


def rowmap(dev: Device, x, step, *, D: int, rows: int, op: str, c: float, per_token: bool = True) -> list[Dispatch]:
    """x[r, :] = f(x[r, :]) in place for r < rows (and r < Step.T when `per_token`); x: [rows, D] f32.

    op "scale": f(v) = c * v (Gemma's embedding scale); "softcap": f(v) = c * tanh(v / c)."""
    if op not in ("scale", "softcap"):
        raise ValueError(f"rowmap op must be 'scale' or 'softcap', not {op!r}")
    return [dev.dispatch("rowmap", [x, step], (_ceil(D, ELEMENTWISE_WG), rows),
                         per_token=(1, 1, 1) if per_token else None, D=D, ROWS=rows, PER_TOKEN=_bool(per_token),
                         C=f"{float(c)!r}", SOFTCAP=_bool(op == "softcap"), WG=ELEMENTWISE_WG)]


def bias_add(dev: Device, y, b, step, *, T_max: int, n: int, act: str) -> list[Dispatch]:
    """y[t, :] += b for t < Step.T.  y: [T_max, n] (act), b: [n] f32."""
    _check_act(act)
    return [dev.dispatch("bias_add", [y, b, step], (_ceil(n, ELEMENTWISE_WG), T_max), per_token=(1, 1, 1), N=n, ACT=act,
                         WG=ELEMENTWISE_WG)]


def softmax(dev: Device, x, y, n: int, rows: int, *, temperature: float = 1.0) -> list[Dispatch]:
    """y[r, :] = softmax(x[r, :] / temperature) for r < rows.  x, y: [rows, n] f32, distinct buffers.

    Not tied to Step: all `rows` rows are computed. Change the temperature of the
    built dispatches with `set_softmax_temperature`.
    """
    if x is y:  # x is bound read-only, y read_write: one buffer cannot be both
        raise ValueError("softmax: x and y must be different buffers")
    u = dev.uniform(_softmax_params(n, rows, temperature), "params")
    return [dev.dispatch("softmax", [x, y, u], dev.grid(rows))]


def _softmax_params(n: int, rows: int, temperature: float) -> np.ndarray:
    if not temperature > 0:
        raise ValueError(f"softmax temperature must be > 0 (use argmax for greedy), got {temperature}")
    p = np.zeros(4, np.uint32)
    p[0], p[1] = n, rows
    p[2:3] = np.array([1.0 / temperature], np.float32).view(np.uint32)
    return p


def set_softmax_temperature(dev: Device, dispatches: list[Dispatch], n: int, rows: int, temperature: float) -> None:
    """Rewrite the temperature of dispatches built by `softmax` (for the next submission)."""
    dev.write(dispatches[0].keep[2], _softmax_params(n, rows, temperature))


ARGMAX_PARTS = 128  # argmax (GPU adapters): workgroups per row of logits before the final one (1: one)
ARGMAX_MIN_PART = 1024  # argmax: logits per part at least


def argmax(dev: Device, logits, tokens, step, *, V: int, rows: int = 1) -> list[Dispatch]:
    """tokens[Step.pos + Step.T] = argmax(logits[:V]) (lowest index on ties); with a batched
    Step, tokens[r] = argmax(logits[r, :V]) for each row r < Step.T (capacity `rows`).

    logits: [V] (batched: [rows, V]) f32 (NaN-free), tokens: u32 array of the whole sequence
    (batched: of one token per row). On a GPU adapter a row of many logits is scanned by G
    workgroups, each writing its best (value, index) to a scratch, then reduced by one more.
    """
    per_token = (1, 1, 1) if rows > 1 else None
    G = 1 if dev.kind == "cpu" else max(1, min(ARGMAX_PARTS, V // ARGMAX_MIN_PART))
    if G == 1:
        return [dev.dispatch("argmax", [logits, tokens, step, logits], (1, rows), per_token=per_token, V=V, G=1,
                             SL=V, STAGE_ID=0, PART_ACCESS="read", PART_WRITE="")]  # (part unused: logits)
    sl = -(-V // G)
    G = -(-V // sl)
    part = scratch(dev, "argmax_part", rows * G * 12, "argmax_scratch")
    write = ("let o = (r * G + wid.x) * 3u; part[o] = bitcast<u32>(best_v[0]); part[o + 1u] = best_i[0]; "
             "part[o + 2u] = any_bad;")
    consts = dict(V=V, G=G, SL=sl)
    return [dev.dispatch("argmax", [logits, tokens, step, part], (G, rows), per_token=per_token, STAGE_ID=1,
                         PART_ACCESS="read_write", PART_WRITE=write, **consts),
            dev.dispatch("argmax", [logits, tokens, step, part], (1, rows), per_token=per_token, STAGE_ID=2,
                         PART_ACCESS="read", PART_WRITE="", **consts)]


# --- rotary embedding and KV cache --------------------------------------------


def rope_freq_table(head_dim: int, rope_base: float, rope_dim: int, *, freq_scale: float = 1.0,
                    freq_factors=None) -> np.ndarray:
    """[rope_dim/2, 2] u32: frac(inv_freq_i / 2pi) as 64-bit fixed point (hi, lo) per pair i.

    inv_freq_i = freq_scale * rope_base^(-2i/rope_dim) / freq_factors[i], in float64.
    """
    half = rope_dim // 2
    inv = freq_scale * float(rope_base) ** (-2.0 * np.arange(half, dtype=np.float64) / rope_dim)
    if freq_factors is not None:
        inv = inv / np.asarray(freq_factors, np.float64)[:half]
    turns = np.mod(inv / (2 * np.pi), 1.0)
    fixed = [int(np.ldexp(f, 64)) % (1 << 64) for f in turns]
    return np.array([[f >> 32, f & 0xFFFFFFFF] for f in fixed], np.uint32).reshape(half, 2)


def rope_kv(dev: Device, qkv, k_cache, v_cache, step, *, T_max: int, n_heads: int, n_kv_heads: int,
            head_dim: int, rope_base: float, rope_dim: int | None = None, mode: str = "normal", act: str,
            n_ctx: int | None = None, freq_scale: float = 1.0, freq_factors=None,
            mscale: float = 1.0) -> list[Dispatch]:
    """Rotate q and k in place in qkv and append k, v to the caches, for rows t < Step.T.

    qkv: [T_max, (Hq + 2 Hkv) * hd] (act), rows [q heads | k heads | v heads].
    k_cache, v_cache: [slots, n_ctx, Hkv, hd] (act); row t goes to position Step.pos + t of slot
    Step.slot (a batched Step: each row's own slot and position).
    mode "normal": pairs (2i, 2i+1) (GGUF llama); "neox": pairs (i, i + rope_dim/2) (Qwen2).
    Only the first `rope_dim` (default hd) dims of each head rotate (and are scaled by `mscale`,
    longrope's attention factor). Angles are
    p * inv_freq reduced exactly modulo 2pi (accurate at any position).
    `n_ctx` (positions per slot; default: the cache size, one slot) bounds the positions written.
    """
    _check_act(act)
    rope_dim = head_dim if rope_dim is None else rope_dim
    if mode not in ROPE_MODES:
        raise ValueError(f"rope mode must be one of {ROPE_MODES}, not {mode!r}")
    if head_dim % 2 or rope_dim % 2 or not 0 < rope_dim <= head_dim or n_heads % n_kv_heads:
        raise ValueError(f"bad rope shape: hd={head_dim} rope_dim={rope_dim} Hq={n_heads} Hkv={n_kv_heads}")
    if n_ctx is None:
        n_ctx = _binding_size(k_cache) // (n_kv_heads * head_dim * (2 if act == "f16" else 4))
    table = rope_freq_table(head_dim, rope_base, rope_dim, freq_scale=freq_scale, freq_factors=freq_factors)
    freq = dev.upload(table, "rope")
    pairs = (n_heads + 2 * n_kv_heads) * head_dim // 2
    consts = dict(HD=head_dim, HQ=n_heads, HKV=n_kv_heads, RP=rope_dim // 2,
                  NEOX="true" if mode == "neox" else "false", N_CTX=n_ctx, ACT=act,
                  MSCALE=f"{float(mscale)!r}")
    return [dev.dispatch("rope_kv", [qkv, k_cache, v_cache, freq, step], (_ceil(pairs, 64), T_max),
                         per_token=(1, 1, 1), **consts)]


KV_COPY_WG = 256  # kv_copy: words per workgroup


def kv_copy(dev: Device, caches, params, words: int) -> list[Dispatch]:
    """Dispatches copying a range of u32 words within each buffer of `caches` (the K and V caches
    of every layer): buf[P.dst + i] = buf[P.src + i] for i < P.n <= `words` (kv_copy.wgsl);
    `params` holds (src, dst, n, 0) as u32, written before each submission."""
    groups = dev.grid(_ceil(words, KV_COPY_WG))
    return [dev.dispatch("kv_copy", [c, params], groups, WG=KV_COPY_WG) for c in caches]


def _binding_size(b) -> int:
    return b[2] if isinstance(b, tuple) else b.size


# --- attention -----------------------------------------------------------------

_SCRATCH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Device -> {label: buffer}


def scratch(dev: Device, key: str, nbytes: int, label: str | None = None):
    """A scratch buffer `key` (accounting label `label`, default the key) of at least nbytes,
    one per device and key, grown as needed.

    Every dispatch of a device that asks for `label` shares it (layers, decode and prefill
    graphs): dispatches run one after another, and each one's partial results are consumed by
    the dispatch right after it. A grown buffer replaces the old one for later builds; the old
    one stays with the dispatches bound to it.
    """
    bufs = _SCRATCH.setdefault(dev, {})
    cur = bufs.get(key)
    if cur is None or cur.size < nbytes:
        cur = bufs[key] = dev.buffer(max(nbytes, cur.size if cur is not None else 0), label or key)
    return cur


def _attn_scratch(dev: Device, part_bytes: int, ml_bytes: int):
    """The split-attention partial results (acc) and their (max, sum): see scratch."""
    return (scratch(dev, "attn_part", part_bytes, "attn_scratch"),
            scratch(dev, "attn_ml", ml_bytes, "attn_scratch"))


def attention(dev: Device, qkv, k_cache, v_cache, out, step, *, T_max: int, n_heads: int, n_kv_heads: int,
              head_dim: int, n_ctx: int, act: str, splits: int | None = None, scale: float | None = None,
              softcap: float = 0.0, window: int = 0, batched: bool = False) -> list[Dispatch]:
    """Causal attention of the q heads in qkv over the KV cache, for rows t < Step.T.

    qkv: [T_max, (Hq + 2 Hkv) * hd] (act; q already rotated), k_cache, v_cache:
    [slots, n_ctx, Hkv, hd] (act; slot Step.slot holding positions 0 .. Step.pos + Step.T - 1), out:
    [T_max, Hq * hd] (act). Row t sits at position Step.pos + t and attends cache
    positions 0 .. Step.pos + t (with a `window` W > 0, only the last W of them: sliding-window
    attention); score = q.k * scale (default 1/sqrt(hd)), soft-capped to softcap * tanh(score /
    softcap) when softcap > 0 (Gemma 2); GQA head h uses kv head h // (Hq/Hkv).

    On a CPU adapter (Device.kind "cpu") one invocation per (token, head) row walks
    its keys (attn_rows.wgsl). Elsewhere one workgroup per (key split, tile of token rows x query heads of one kv
    head); when the tiles alone give few workgroups (decode) the keys are split
    (up to 256 ways, by default aiming at ~1024 workgroups, at least 64 keys per
    split) and a second dispatch merges the splits. `splits` overrides that choice.
    The partial results live in scratch buffers shared by all attention dispatches
    of `dev` (label "attn_scratch"; by default about 4096 * (hd + 2) * 4 bytes, a few MB).

    batched: the rows are one decode token each of up to T_max sequences (a batched Step, see
    kernels/step.wgsl): each row is tiled and split exactly as a one-token pass of its own, so
    a batched row's result equals the row attended alone, bit for bit.
    """
    _check_act(act)
    if n_heads % n_kv_heads:
        raise ValueError(f"attention: {n_heads} query heads are not a multiple of {n_kv_heads} kv heads")
    plan = attention_plan(1 if batched else T_max, n_heads, n_kv_heads, head_dim, n_ctx, splits)
    if batched:
        plan["tiles"] = T_max
    S = plan["S"]
    consts = dict(HD=head_dim, HQ=n_heads, HKV=n_kv_heads, QT=plan["QT"], S=S, VEC=plan["VEC"], MINK=ATTN_MINK,
                  ACT=act, WINDOW=int(window), SOFTCAP=f"{float(softcap) * math.log2(math.e)!r}", N_CTX=n_ctx)
    qscale = math.log2(math.e) * (1.0 / math.sqrt(head_dim) if scale is None else float(scale))
    rows = T_max * n_heads * S if S > 1 else 1  # partial results (unused with one split)
    part, part_ml = _attn_scratch(dev, rows * head_dim * 4, rows * 8)  # (also on "cpu": the planner counts it)
    if dev.kind == "cpu":
        wg = ATTN_ROWS_WG
        return [dev.dispatch("attn_rows", [qkv, k_cache, v_cache, out, step], dev.grid(_ceil(T_max * n_heads, wg)),
                             per_token=(0, n_heads, wg), HD=head_dim, HQ=n_heads, HKV=n_kv_heads, VEC=plan["VEC"],
                             QSCALE=f"{qscale!r}", WG=wg, ACT=act, WINDOW=consts["WINDOW"],
                             SOFTCAP=consts["SOFTCAP"], N_CTX=n_ctx)]
    first = dev.dispatch(
        "attention", [qkv, k_cache, v_cache, out, part, part_ml, step], (S, plan["tiles"], plan["head_blocks"]),
        per_token=(1, 1, plan["QT"]),
        HB=plan["HB"], BK=plan["BK"], R=plan["R"], TPK=plan["TPK"], SPLIT="true" if S > 1 else "false",
        QSCALE=f"{qscale!r}", **consts,
    )
    if S == 1:
        return [first]
    return [first, dev.dispatch("attn_combine", [part, part_ml, out, step], dev.grid(T_max * n_heads),
                                per_token=(0, n_heads, 1), **consts)]
