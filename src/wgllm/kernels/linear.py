"""Weights in raw GGUF block layout on the GPU, and the kernels that read them.

A weight matrix W has N rows of K elements; row n is `row_bytes(qtype, K)` bytes
of ggml blocks, rows laid end to end exactly as in the GGUF file (no
requantization, no dequantized copy). Large weights are split by whole rows
into chunks that each fit one storage binding; every kernel runs one dispatch
per chunk.

Kernels (see the .wgsl files for layouts and tiling):
* matvec.wgsl  - `linear` when T_max == 1 (decode): 2 or 4 rows per 32 invocations.
* matwide.wgsl - decode on GPU adapters for `wide` types whose rows are whole 16-byte block
  groups (aligned vec4 loads; rows per row group chosen by shape, see wide_tiling); MATWIDE.
* matmul.wgsl  - `linear` when T_max > 1 (prefill): 128 rows x 64 tokens tiles.
* get_rows.wgsl - embedding lookup.
* dequant.wgsl - whole-weight dequantization (test helper).
All share quant.wgsl (byte reads, per-type block dequantization).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from wgllm.gpu.dispatch import TEXEL_ROW, Dispatch, is_texels
from wgllm.kernels import ops, qtypes, rowdot
from wgllm.kernels.constants import K_ALIGN, PAD
from wgllm.kernels.qtypes import QType

if TYPE_CHECKING:
    from wgllm.gpu.device import Device

Q = GGMLQuantizationType


def _qt(qtype: GGMLQuantizationType) -> QType:
    """The table row of a weight type the kernels read (see kernels/qtypes.py)."""
    return qtypes.qtype(qtype)


SUPPORTED_TYPES = frozenset(Q[n] for n in qtypes.runnable_types())

# CPU adapters keep the weights of types the CPU kernel (rowdot) reads in textures (Device.texels):
# on lavapipe a texel fetch is a gather where a storage-buffer load loops over the SIMD lanes
# (SmolLM2 Q4_1 decode +35-50% in turns, bench/RESULTS.md 2026-12-08). Every kernel reads them (WTEX).
WEIGHT_TEXELS = True
MATVEC_WG = 128       # matvec: invocations per workgroup (row groups of the type's tpr each)
MATVEC_PAIRS = None   # matvec: row pairs per row group (None: the type's, see kernels/qtypes.py)
MATVEC_UNROLL = None  # matvec: units per invocation per loop iteration, 1, 2 or 4 (None: the type's)
MATVEC_TILE = 16      # matvec: tokens per workgroup of a batched pass, for types with a tile (1: none)
MATVEC_LONG_K = 8192  # matvec: rows of at least this many elements get MATVEC_LONG_TPR lanes (None: off)
MATVEC_LONG_TPR = 64
# matvec: products of at most this many rows (shorter than MATVEC_LONG_K) get one row pair per row
# group, twice the workgroups: on an H200 the 8B's qkv 0.72 -> 0.60 ms and wo 0.66 -> 0.51 ms per
# token, while the down and gate|up products were slower so (bench/RESULTS.md, 2026-12-07). None: off.
MATVEC_FEW_ROWS = 8192
# matvec: types with a sliced body (qtypes.py `sliced`) read one quants word of a block per lane, 4
# lanes per block, so a subgroup's loads of x and of the weights coalesce. Off: not measured on a GPU
# yet (none was lent on 2026-12-08; the planned call is in bench/RESULTS.md).
MATVEC_SLICED = False
MATMUL_ROWS = 128     # rows per matmul workgroup
MATMUL_TOKENS = 64    # tokens per matmul workgroup
MATMUL_K = 16         # k-slice of the matmul tiles per step
MATMUL_FILL = 256     # matmul (GPU adapters): workgroups a product should have, else K is split
MATMUL_MAX_SPLITS = 8  # matmul: K splits at most (each at least MATMUL_MIN_KS elements)
MATMUL_MIN_KS = 512
SPLITK_SUM_WG = 64    # splitk_sum: rows per workgroup
GET_ROWS_WG = 64      # invocations per get_rows / dequant workgroup (8 elements each)
# matwide off: in the engine's chain of kernels every tiling of it was slower than matvec on an H100
# (8B Q4_0 decode 7.4 -> 8.8-10.8 ms of kernel time), though faster in back-to-back timing
# (bench/RESULTS.md, 2026-12-07, "matwide"); kept, tested, for adapters where it pays.
MATWIDE = False
MATWIDE_WG = 128      # matwide: invocations per workgroup
MATWIDE_MAX_ROWS = 16384  # matwide: products of more rows keep matvec (its many workgroups were faster)
MATWIDE_TILING = None  # matwide: (invocations, rows) per row group for every shape (None: wide_tiling's)
MATWIDE_LAZY = False  # matwide: weight loads just before their first use, not all first (rowdot._group)
# GPU decode: the RMSNorm before qkv and gate|up done inside those products (see fuses_norm). Off: on
# an H100 each workgroup's norm of the row (1,792 of them for the 8B's gate|up) cost more than the
# 64 norm dispatches it saves (8B Q4_0 decode kernels 7.42 -> 7.63 ms; bench/RESULTS.md 2026-12-07).
DECODE_NORM = False
ROWDOT_WG = 8         # rowdot (CPU adapters): invocations per workgroup
ROWDOT_ROWS = 8       # rowdot: rows per invocation (at least; see rowdot.rows_per_invocation)
# rowdot: token rows per pass over the weights when T_max > 1. 2, not 4: lavapipe compiles a
# kernel at its first use (a new machine's first prefill), and at 4 each prefill variant took
# ~4 s against ~1.7 s at 2, for ~5-10% faster prefill (bench/RESULTS.md).
ROWDOT_TOKENS = 2
# Prefill passes with x uniform: resident rows where the type has them (rowdot.resident), ~1.6x
# faster CPU prefill. Their sums are the tiled form's expressions over the same values, so a token
# gets the same bits in every pass form (test_rowdot_resident_rows checks it bit for bit).
ROWDOT_RESIDENT = True
_NORM_RED_BYTES = 4 * 4 * max(MATWIDE_WG, MATVEC_WG) + 64  # the kernels' other workgroup memory, at most
_LINEAR_PARAMS = 8    # u32 fields of struct Params in matvec/matmul.wgsl


@dataclass
class GpuWeight:
    """A weight matrix [N, K] in raw GGUF layout, as chunks of whole rows on the GPU."""

    qtype: GGMLQuantizationType
    K: int
    N: int
    chunks: list[tuple[object, int, int]]  # (buffer, first row, row count)
    nbytes: int  # weight bytes uploaded (sum of row bytes, without padding)


def row_bytes(qtype: GGMLQuantizationType, K: int) -> int:
    """Bytes of one row of K elements of `qtype` in ggml block layout."""
    return qtypes.qtype(qtype).row_bytes(K)


def _check_type(qtype: GGMLQuantizationType, K: int) -> None:
    if qtype not in SUPPORTED_TYPES:
        names = ", ".join(sorted(t.name for t in SUPPORTED_TYPES))
        raise NotImplementedError(f"weights of type {qtype.name} are not supported (supported: {names})")
    if K % K_ALIGN or K <= 0:
        raise ValueError(f"row length {K} must be a positive multiple of {K_ALIGN}")
    row_bytes(qtype, K)


# --- upload -------------------------------------------------------------------------


def _texels(dev: Device, qtype: GGMLQuantizationType) -> bool:
    """Whether a weight of qtype lives in textures on dev (see WEIGHT_TEXELS)."""
    return WEIGHT_TEXELS and dev.kind == "cpu" and _qt(qtype).rowdot


def _chunk_rows(dev: Device, N: int, rb: int, texels: bool = False) -> int:
    """Rows per chunk: balanced chunks, each (with PAD) within one binding and one buffer (and,
    for textures, one texture)."""
    limit = min(dev.max_binding, dev.max_buffer) // 4 * 4 - PAD
    if texels:
        limit = min(limit, dev.max_texture_rows * TEXEL_ROW - PAD)
    rows_max = limit // rb
    if rows_max < 1:
        raise ValueError(f"one weight row ({rb} bytes) does not fit a storage binding ({dev.max_binding} bytes)")
    n_chunks = -(-N // rows_max)
    return -(-N // n_chunks)


def _raw(p):
    """A part of a weight as flat uint8 bytes; a data-less tensor spec (planning) stays as is."""
    return np.ascontiguousarray(p).view(np.uint8).reshape(-1) if isinstance(p, np.ndarray) else p


def upload_weight(dev: Device, parts: list, qtype: GGMLQuantizationType, K: int, label: str) -> GpuWeight:
    """Upload the rows of `parts` (raw uint8 GGUF bytes, same qtype and K), concatenated
    row-wise into one [N, K] weight, as chunks of whole rows that each fit a binding.
    Only one staging piece (<= 16 MiB) is copied in RAM at a time. On the planner's
    MeterDevice a part may be anything with `nbytes` (nothing is read)."""
    _check_type(qtype, K)
    rb = row_bytes(qtype, K)
    parts = [_raw(p) for p in parts]
    for p in parts:
        if p.nbytes % rb:
            raise ValueError(f"{label}: {p.nbytes} bytes is not a whole number of {rb}-byte rows")
    N = sum(p.nbytes for p in parts) // rb
    if N == 0:
        raise ValueError(f"{label}: empty weight")
    texels = _texels(dev, qtype)
    per = _chunk_rows(dev, N, rb, texels)
    chunks = []
    for first in range(0, N, per):
        rows = min(per, N - first)
        buf = dev.texels(rows * rb + PAD, label) if texels else dev.buffer(rows * rb + PAD, label)
        dev.write_parts(buf, parts, first * rb, (first + rows) * rb)
        chunks.append((buf, first, rows))
    return GpuWeight(qtype, K, N, chunks, N * rb)


# --- kernels --------------------------------------------------------------------------


def matvec_kern(w: GpuWeight) -> QType:
    """The type's row of kernels/qtypes.py with the matvec tiling of weight w's decode product:
    MATVEC_LONG_TPR lanes per row group for long rows (K >= MATVEC_LONG_K: the FFN down product),
    one row pair per group for products of few shorter rows (N <= MATVEC_FEW_ROWS); with
    MATVEC_SLICED, the sliced body of types that have one (kernel "<kernel>s"). Types with a
    batched tile keep their own (a batched row must equal the row alone). MATVEC_PAIRS and
    MATVEC_UNROLL, where set, override the row pairs and the unrolling of every product."""
    kern = _qt(w.qtype)
    if MATVEC_SLICED and kern.sliced:
        kern = dataclasses.replace(kern, kernel=kern.kernel + "s", unit=kern.block // 4)
    if not kern.tile and MATVEC_LONG_K and w.K >= MATVEC_LONG_K:
        kern = dataclasses.replace(kern, tpr=max(kern.tpr, MATVEC_LONG_TPR))
    elif not kern.tile and MATVEC_FEW_ROWS and w.N <= MATVEC_FEW_ROWS:
        kern = dataclasses.replace(kern, pairs=1)
    if MATVEC_PAIRS:
        kern = dataclasses.replace(kern, pairs=MATVEC_PAIRS)
    return dataclasses.replace(kern, unroll=MATVEC_UNROLL) if MATVEC_UNROLL else kern


def matvec_rows(w: GpuWeight) -> int:
    """Weight rows per matvec workgroup of w's decode product (one token, no batched tile)."""
    kern = matvec_kern(w)
    return MATVEC_WG // kern.tpr * 2 * kern.pairs


def _matvec_consts(dev: Device, kern: QType, tb: int = 1) -> dict:
    """matvec.wgsl's tiling constants for weight type `kern` on `dev`: row sums by subgroup
    shuffles where each row group lies in one subgroup, else through workgroup memory;
    tb > 1: the batched tile of tb tokens (one row pair per row group)."""
    sg = ops.subgroup_size(dev)
    shuffle = sg >= kern.tpr and sg % kern.tpr == 0
    pairs = 1 if tb > 1 else kern.pairs
    return dict(RG=MATVEC_WG // kern.tpr, TPR=kern.tpr, UNIT=kern.unit, PAIRS=pairs, UNROLL=kern.unroll, UDOT=kern.kernel,
                SHUFFLE="subgroup" if shuffle else "none", SHUFFLE_ON=int(shuffle), TB=tb,
                TILE="on" if tb > 1 else "none", **(_tile_code(kern.kernel, tb) if tb > 1 else {}))


def _tile_code(qt: str, tb: int) -> dict:
    """matvec_tile_on.wgsl's per-token code written out for tb tokens: an accumulator per token
    (registers, not an indexed array), token j's dots only where the pass has row j."""
    dot = "acc{j} += wd_{qt}(a, b, u, xu + {j}u * xrow);"
    dots = [dot.format(j=0, qt=qt)] + [f"if (nt > {j}u) {{ {dot.format(j=j, qt=qt)} }}" for j in range(1, tb)]
    return dict(TILE_VARS=" ".join(f"var acc{j} = vec2<f32>(0.0);" for j in range(tb)),
                TILE_DOTS="\n            ".join(dots),
                TILE_SUMS="\n    ".join(f"tile_out(acc{j}, {j}u, nt, t0, lid, r, l, n0 + l);" for j in range(tb)))


def _matvec(dev: Device, w: GpuWeight, kern: QType, rows: int, binds, T_max: int, batched: bool, consts) -> Dispatch:
    """The matvec dispatch of one chunk: one token (T_max == 1); a batched pass's rows, each
    token on its own (grid x = token) or, for types with a tile, MATVEC_TILE tokens per
    workgroup (grid x = tile); either way each row equals the row computed alone."""
    tb = min(MATVEC_TILE, T_max) if batched and kern.tile else 1
    mc = _matvec_consts(dev, matvec_kern(w), tb)
    ga, gb = dev.grid(-(-rows // (mc["RG"] * 2 * mc["PAIRS"])))  # workgroups of RG row groups
    if not batched:
        return dev.dispatch("matvec", binds, (ga, gb, 1), TOKX=0, **mc, **consts)
    d = dev.dispatch("matvec", binds, (-(-T_max // tb), ga, gb), TOKX=1, **mc, **consts)
    d.per_token = (0, 1, tb)  # x is exactly the token, or the tile (Device.dispatch drops per_token on axis 0)
    return d


def wide_tiling(dev: Device, w: GpuWeight) -> tuple[int, int] | None:
    """(TPR, R) of matwide for weight w's decode product on `dev`, or None where matvec reads it
    (MATWIDE off, CPU adapters, types without `wide`, rows not whole 16-byte block groups, products of more
    than MATWIDE_MAX_ROWS rows). Per shape, as measured on an H100 (bench/RESULTS.md,
    2026-12-07): 32 invocations on one row for few rows (<= 1024), 32 on 4 rows for long rows
    (K >= 8192), else 16 on 4 rows."""
    kern = _qt(w.qtype)
    if not MATWIDE or dev.kind == "cpu" or not kern.wide or w.N > MATWIDE_MAX_ROWS:
        return None
    tpr, R = MATWIDE_TILING or ((32, 1) if w.N <= 1024 else (32, 4) if w.K >= 8192 else (16, 4))
    return (tpr, R) if rowdot.wide_fits(kern.kernel, w.K, row_bytes(w.qtype, w.K), R) else None


def _matwide(dev: Device, w: GpuWeight, qt: str, rows: int, binds, T_max: int, batched: bool, consts,
             tiling: tuple[int, int]) -> Dispatch:
    """The matwide dispatch of one chunk (see matwide.wgsl): one token, or a batched pass's rows
    (grid z = token, each row computed exactly as alone)."""
    tpr, R = tiling
    sg = ops.subgroup_size(dev)
    shuffle = sg >= tpr and sg % tpr == 0
    f16 = consts["XT"] == "f16"
    rb = row_bytes(w.qtype, w.K)
    gen = rowdot.wide(qt, w.K, rb, R, bool(consts["GLU"]), f16, shuffle, MATWIDE_LAZY)
    consts = dict(consts, **gen, **_x_consts(w.K, f16, bool(consts["GLU"]), R * rb), WG=MATWIDE_WG, TPR=tpr, R=R,
                  RN=R, GLUO=0, XSPACE="storage, read", XLEN="")
    ga, gb = dev.grid(-(-rows // (MATWIDE_WG // tpr * R)))
    tokens = T_max if batched else 1
    return dev.dispatch("matwide", binds, (ga, gb, tokens), per_token=(2, 1, 1) if batched else None, **consts)


def _x_consts(K: int, f16: bool, glu: bool, rows_bytes: int) -> dict:
    """rowdot_common.wgsl's x and row layout constants (rowdot and matwide): x vec4 per token row
    (XROW, twice HALFX with the GLU input), its element word type, W vec4 per invocation's rows."""
    xe = 8 if f16 else 4  # x elements per vec4 read
    return dict(XROW=K // xe * (2 if glu else 1), HALFX=K // xe, XW="u32" if f16 else "f32", ROWV=rows_bytes // 16)


def _act(*types: str) -> str:
    for t in types:
        if t not in ("f32", "f16"):
            raise ValueError(f"activation type must be 'f32' or 'f16', not {t!r}")
    return "f16" if "f16" in types else "f32"


def linear(dev: Device, w: GpuWeight, x, y, T_max: int, step, *, x_type: str = "f32",
           y_type: str = "f32", add: bool = False, glu: bool | str = False, batched: bool = False,
           glu_out: bool | str = False, norm: tuple | None = None) -> list[Dispatch]:
    """y[t, n] = (add ? y[t, n] : 0) + sum_k W[n, k] * x[t, k] for t < Step.T.

    glu: x is [T_max, 2K] = [gate | up] and x[t, k] = act(gate[t, k]) * up[t, k], act silu
    ("silu" or True: SwiGLU) or the tanh form of GELU ("gelu": Gemma's GeGLU)
    (the SwiGLU activation fused into the FFN down projection).

    x: [T_max, K] of x_type, y: [T_max, N] of y_type, step: the Step uniform buffer
    (ops.step_buffer). Rows t >= Step.T of y are left untouched. One dispatch per
    chunk; T_max == 1 builds the matrix-vector kernel, larger T_max the tiled one.
    batched: T_max rows of different sequences (a batched decode pass): the matrix-vector
    kernel for each row (for types with a tile, MATVEC_TILE rows per workgroup sharing each
    unpacked weight unit), each row computed exactly as alone.
    glu_out: w is an FFN's [gate | up] (N = 2 F rows) and y [T_max, F] gets the GLU product
    act(gate . x) * (up . x) (act as for glu); only where fuses_glu(dev, w).
    norm: (nw, eps), the RMSNorm of x fused into the product: x is the f32 residual stream and the
    product reads rmsnorm(x[t]) * nw (nw: f32 buffer [K]); only where fuses_norm(dev, w, T_max).
    """
    act = _act(x_type, y_type)
    kern = _qt(w.qtype)
    if norm is not None and not (fuses_norm(dev, w, T_max, batched) and x_type == "f32" and not glu):
        raise ValueError(f"this adapter cannot fuse the RMSNorm into a {w.qtype.name} product of {w.N} x {w.K} "
                         f"(f32 x, no GLU input, T_max {T_max}): see fuses_norm")
    if glu_out:
        if not fuses_glu(dev, w):
            raise ValueError(f"this adapter cannot fuse the GLU product into a {w.qtype.name} product "
                             f"of {w.N} rows in {len(w.chunks)} chunk(s): see fuses_glu")
        return [_rowdot(dev, w, kern.kernel, w.N // 2, _binds(dev, w, w.chunks[0][0], x, y, step, w.N // 2, 0),
                        T_max, False, dict(QT=kern.kernel, XT=x_type, YT=y_type, ACT=act, GLU=0,
                                           WTEX=int(is_texels(w.chunks[0][0]))),
                        glu_out=_glu_code(glu_out), batched=batched)]
    tiling = wide_tiling(dev, w) if T_max == 1 or batched else None
    out = []
    for buf, row0, rows in w.chunks:
        consts = dict(QT=kern.kernel, XT=x_type, YT=y_type, ACT=act, GLU=_glu_code(glu), NORM=int(norm is not None),
                      NORMV="none" if norm is None else "on", XNK=w.K // 4, WTEX=int(is_texels(buf)))
        if T_max > 1 and not batched and not (dev.kind == "cpu" and kern.rowdot):
            out += _matmul(dev, w, ((buf, row0, rows), x, y, step), add, T_max, consts)  # prefill
            continue
        binds = _binds(dev, w, buf, x, y, step, w.N, row0, rows, add, norm)
        if dev.kind == "cpu" and kern.rowdot:
            out.append(_rowdot(dev, w, kern.kernel, rows, binds, T_max, glu, consts, batched=batched))
        elif tiling is not None:
            out.append(_matwide(dev, w, kern.kernel, rows, binds, T_max, batched, consts, tiling))
        else:
            out.append(_matvec(dev, w, kern, rows, binds, T_max, batched, consts))
    return out


def matmul_splits(dev: Device, w: GpuWeight, rows: int, T_max: int) -> tuple[int, int]:
    """(S, KS): the matmul of `rows` rows of w over T_max tokens in S slices of K of KS
    elements each (whole blocks), so that a product of few tiles still has about MATMUL_FILL
    workgroups; (1, 0): not split (CPU adapters, or enough tiles)."""
    tiles = -(-rows // MATMUL_ROWS) * -(-T_max // MATMUL_TOKENS)
    if dev.kind == "cpu" or tiles >= MATMUL_FILL:
        return 1, 0
    align = math.lcm(GGML_QUANT_SIZES[w.qtype][0], MATMUL_K)
    s = min(MATMUL_MAX_SPLITS, -(-MATMUL_FILL // tiles), w.K // max(MATMUL_MIN_KS, align))
    if s < 2:
        return 1, 0
    ks = -(-w.K // s // align) * align
    return -(-w.K // ks), ks


def _matmul(dev: Device, w: GpuWeight, chunk, add: bool, T_max: int, consts) -> list[Dispatch]:
    """The prefill product of one chunk: matmul tiles of MATMUL_ROWS x MATMUL_TOKENS; with a
    K split (matmul_splits) each slice's partial sums go to a shared f32 scratch and
    splitk_sum adds them (and y, with add) into y."""
    (buf, row0, rows), x, y, step = chunk
    tiling = dict(BN=MATMUL_ROWS, BT=MATMUL_TOKENS, BK=MATMUL_K)
    groups = (-(-rows // MATMUL_ROWS), -(-T_max // MATMUL_TOKENS))
    S, ks = matmul_splits(dev, w, rows, T_max)
    if S == 1:
        binds = _binds(dev, w, buf, x, y, step, w.N, row0, rows, add)
        return [dev.dispatch("matmul", binds, groups, per_token=(1, 1, MATMUL_TOKENS), **tiling, **consts)]
    part = ops.scratch(dev, "splitk_scratch", S * T_max * rows * 4)
    params = np.array([w.K, rows, 0, rows, row_bytes(w.qtype, w.K), 0, ks, T_max * rows], np.uint32)
    d = dev.dispatch("matmul", [buf, x, part, dev.uniform(params, "linear params"), step], groups + (S,),
                     per_token=(1, 1, MATMUL_TOKENS), **tiling, **dict(consts, YT="f32"))
    sums = np.array([w.N, row0, rows, int(add), S, T_max * rows, 0, 0], np.uint32)
    yt = consts["YT"]
    return [d, dev.dispatch("splitk_sum", [part, y, dev.uniform(sums, "splitk params"), step],
                            (-(-rows // SPLITK_SUM_WG), T_max), per_token=(1, 1, 1), YT=yt, ACT=yt,
                            WG=SPLITK_SUM_WG)]


def _binds(dev: Device, w: GpuWeight, buf, x, y, step, N: int, row0: int, rows: int | None = None,
           add: bool = False, norm: tuple | None = None) -> list:
    """A product's bindings: weight chunk, x, y, its params uniform (y has N columns; the chunk
    writes `rows` of them from row0), step; with a fused norm (nw, eps) its eps in the params
    and nw."""
    rows = N if rows is None else rows
    params = np.array([w.K, N, row0, rows, row_bytes(w.qtype, w.K), int(add), 0, 0], np.uint32)
    assert params.size == _LINEAR_PARAMS
    if norm is not None:
        params[6:7] = np.array([norm[1]], np.float32).view(np.uint32)
    binds = [buf, x, y, dev.uniform(params, "linear params"), step]
    return binds + [norm[0]] if norm is not None else binds


def fuses_norm(dev: Device, w: GpuWeight, T_max: int, batched: bool = False) -> bool:
    """Whether linear(dev, w, ..., norm=(nw, eps)) can do the RMSNorm of its x (f32) itself: a
    decode or batched decode product on a GPU adapter (matvec or matwide; not the batched tile of
    types with one) whose normed row fits the adapter's workgroup memory, DECODE_NORM on."""
    tile = batched and _qt(w.qtype).tile and min(MATVEC_TILE, T_max) > 1
    shared = getattr(dev, "limits", {}).get("max-compute-workgroup-storage-size", 16384)
    fits = 4 * w.K + _NORM_RED_BYTES <= shared  # the normed row (f32) and the row sums in workgroup memory
    return DECODE_NORM and dev.kind != "cpu" and (T_max == 1 or batched) and not tile and fits


def fuses_glu(dev: Device, w: GpuWeight) -> bool:
    """Whether linear(dev, w, ..., glu_out=act) can form an FFN's GLU product in its [gate | up]
    product (the CPU adapters' rowdot kernel, one chunk, an even row count)."""
    return dev.kind == "cpu" and _qt(w.qtype).rowdot and len(w.chunks) == 1 and w.N % 2 == 0


def _glu_code(glu: bool | str) -> int:
    """The kernels' GLU constant: 0 no GLU, 1 silu(gate) * up, 2 gelu(gate) * up."""
    codes = {False: 0, True: 1, "silu": 1, "gelu": 2}
    if glu not in codes:
        raise ValueError(f"glu must be False, 'silu' or 'gelu', not {glu!r}")
    return codes[glu]


def _rowdot(dev: Device, w: GpuWeight, qt: str, rows: int, binds, T_max: int, glu, consts,
            glu_out: int = 0, batched: bool = False) -> Dispatch:
    """The CPU-adapter kernel (rowdot.wgsl) for one chunk: R rows per invocation, all tokens.
    glu_out (a _glu_code): the fused GLU output, rows = F output rows from F gate and F up rows;
    an invocation takes RN = R / 2 of each. batched: rows of different sequences, each computed
    exactly as alone (so never resident rows, whose sums round differently)."""
    rb = row_bytes(w.qtype, w.K)
    bt = rowdot.TYPES[qt]
    parts = 2 if glu_out else 1  # gate and up rows, or one kind
    f16 = consts["XT"] == "f16"
    x = binds[1]
    uni = not isinstance(x, tuple) and dev.uniform_ok(x)  # x as a uniform array (see rowdot.wgsl)
    split = rows if glu_out else 0
    RN = rowdot.resident_rows(qt, w.K, rb, parts) if T_max > 1 and uni and ROWDOT_RESIDENT and not batched else None
    if RN is not None:  # resident rows (prefill with x uniform: see rowdot.resident)
        TT = 1
        pre, body = rowdot.resident(qt, w.K, rb, parts * RN, bool(glu), f16, split)
    else:
        RN = bt.rows // parts if bt.realign else rowdot.rows_per_invocation(rb, ROWDOT_ROWS // parts)
        TT = 1 if T_max == 1 else ROWDOT_TOKENS
        pre, body = "", rowdot.body(qt, w.K, rb, parts * RN, TT, bool(glu), f16, split)
    R = parts * RN
    lanes = -(-rows // RN)
    groups = dev.grid(-(-lanes // ROWDOT_WG))
    consts = dict(consts, **_x_consts(w.K, f16, bool(glu), RN * rb), NORM=0, NORMV="none", WG=ROWDOT_WG, R=R,
                  RN=RN, GLUO=glu_out, TT=TT, BODY=body, PRE=pre, XSPACE="uniform" if uni else "storage, read",
                  XLEN=f", {x.size // 16}" if uni else "")
    return dev.dispatch("rowdot", binds, groups, **consts)


def get_rows(dev: Device, w: GpuWeight, ids, y, T_max: int, step, *, y_type: str = "f32") -> list[Dispatch]:
    """Embedding lookup: y[t, :] = dequant(W[ids[Step.pos + t], :]) for t < Step.T.

    ids: array<u32> buffer of row ids (< N; others write nothing), y: [T_max, K] of
    y_type. One dispatch per chunk; each writes the tokens whose row it holds.
    """
    act = _act(y_type)
    qt = _qt(w.qtype).kernel
    rb = row_bytes(w.qtype, w.K)
    groups = (-(-w.K // (8 * GET_ROWS_WG)), 1, T_max)
    out = []
    for buf, row0, rows in w.chunks:
        u = dev.uniform(np.array([w.K, row0, rows, rb], np.uint32), "get_rows params")
        out.append(dev.dispatch("get_rows", [buf, ids, y, u, step], groups, per_token=(2, 1, 1), QT=qt, YT=y_type,
                                ACT=act, WG=GET_ROWS_WG, WTEX=int(is_texels(buf))))
    return out


def dequantize_gpu(dev: Device, w: GpuWeight) -> np.ndarray:
    """Test helper: the whole weight dequantized on the GPU, f32 [N, K]."""
    qt = _qt(w.qtype).kernel
    rb = row_bytes(w.qtype, w.K)
    out = np.empty((w.N, w.K), np.float32)
    batch = max(1, min(dev.max_binding, 64 << 20) // (4 * w.K))  # rows per readback
    for buf, row0, rows in w.chunks:
        for first in range(0, rows, batch):
            count = min(batch, rows - first)
            y = dev.buffer(count * w.K * 4, "dequant out")
            u = dev.uniform(np.array([w.K, rb, first, count], np.uint32), "dequant params")
            groups = dev.grid(-(-count * w.K // (8 * GET_ROWS_WG)))
            dev.run([dev.dispatch("dequant", [buf, y, u], groups, QT=qt, WG=GET_ROWS_WG, WTEX=int(is_texels(buf)))])
            out[row0 + first : row0 + first + count] = dev.read_array(y, np.float32, count * w.K).reshape(count, w.K)
            dev.release(y)
            dev.release(u)
    return out


# --- test / benchmark data -------------------------------------------------------------

def random_weight_bytes(rng: np.random.Generator, qtype: GGMLQuantizationType, N: int, K: int) -> np.ndarray:
    """Random valid raw GGUF bytes for an [N, K] weight: random quants with random
    f16 scales of either sign in sane ranges (uint8 [N * row_bytes])."""
    if qtype == Q.F32:
        return rng.standard_normal(N * K, dtype=np.float32).view(np.uint8)
    if qtype == Q.F16:
        return rng.standard_normal(N * K).astype(np.float16).view(np.uint8)
    if qtype == Q.BF16:  # the top 16 bits of random normal f32
        return (rng.standard_normal(N * K, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    block, type_size = GGML_QUANT_SIZES[qtype]
    n_blocks = N * K // block
    blocks = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    for off, lo, hi in _qt(qtype).scales:
        scale = rng.uniform(lo, hi, n_blocks) * rng.choice([-1.0, 1.0], n_blocks)
        blocks[:, off : off + 2] = scale.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(-1)
