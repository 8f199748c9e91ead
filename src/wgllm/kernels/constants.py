"""Kernel constants that tests and the planner read without `wgpu`: padding after weight chunks,
parameter-struct sizes and the attention tiling (`attention_plan`, which sizes the
split-attention scratch). `kernels/linear.py` and `kernels/ops.py` take them from here; the
buffer rounding of devices (gpu/dispatch.py) is re-exported.
"""

from __future__ import annotations

from wgllm.gpu.dispatch import BUFFER_ALIGN, MIN_BUFFER, UNIFORM_ALIGN, align, buffer_size, uniform_size  # noqa: F401


# --- kernels/linear.py ---------------------------------------------------------
K_ALIGN = 32  # every weight kernel needs K % 32 == 0 (and the type's block size)
PAD = 16  # slack after each weight chunk's rows: kernels may read a word past a block
LINEAR_PARAMS = 8  # u32 fields of struct Params in matvec/matmul.wgsl
GET_ROWS_PARAMS = 4  # u32 fields of the get_rows parameter struct

# --- kernels/ops.py --------------------------------------------------------------
MAX_BATCH = 64  # rows of a batched pass (struct Step's rows in step.wgsl): sequences decoded together
STEP_BYTES = 16 + 16 * MAX_BATCH  # struct Step in step.wgsl
RMSNORM_PARAMS = 4  # u32 fields of the rmsnorm parameter struct

ATTN_WG = 128  # threads per attention workgroup (attention.wgsl)
ATTN_MINK = 64  # fewest keys per split, and the key block of split (decode) plans
ATTN_TARGET_GROUPS = 1024  # aim for this many workgroups when splitting the keys
ATTN_MAX_SPLITS = 256
ATTN_MAX_ROWS = 4  # query rows per tile (heads x tokens) for hd <= 128; halved per doubling of hd
# (4 measured fastest for prefill on an H100: 8 and 16 rows are 1.2-2x slower, register pressure)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _pow2_floor(n: int) -> int:
    return 1 << (max(int(n), 1).bit_length() - 1)


def attention_plan(T_max: int, n_heads: int, n_kv_heads: int, head_dim: int, n_ctx: int,
                   splits: int | None = None) -> dict:
    """The tiling of `ops.attention`.

    HB query heads (of one kv head) x QT token rows make a tile of QN rows; keys
    go in blocks of BK; R softmax lanes per row; VEC-wide loads; S key splits
    (capacity; fewer, of at least MINK keys each, are used for short contexts).
    """
    vec = 4 if head_dim % 4 == 0 else 2
    if head_dim % 2 or head_dim // vec > ATTN_WG:
        raise ValueError(f"attention: head_dim {head_dim} must be even and at most {ATTN_WG * vec}")
    g = n_heads // n_kv_heads
    qmax = max(1, ATTN_MAX_ROWS * 128 // max(head_dim, 128))  # rows per tile (registers, workgroup memory)
    hb = max(d for d in range(1, g + 1) if g % d == 0 and d <= qmax)
    qt = max(1, min(qmax // hb, T_max))
    qn = hb * qt
    tiles, head_blocks = _ceil(T_max, qt), n_kv_heads * (g // hb)
    if splits is None:
        splits = min(_ceil(ATTN_TARGET_GROUPS, tiles * head_blocks), _ceil(n_ctx, ATTN_MINK))
    splits = max(1, min(int(splits), ATTN_MAX_SPLITS))
    # one long walk per tile: big blocks amortise the per-block softmax; splits: blocks of MINK
    bk = ATTN_MINK if splits > 1 else min(256, max(32, _pow2_floor(2048 // qn)))
    r = _pow2_floor(min(ATTN_WG // qn, bk))
    # threads per key in the scores: just enough to occupy the workgroup (more, with partial
    # dots summed in workgroup memory, measured slower on an H100)
    tpk = max(1, ATTN_WG // bk)
    return dict(HB=hb, QT=qt, BK=bk, R=r, TPK=tpk, VEC=vec, S=splits, tiles=tiles, head_blocks=head_blocks)


def attention_scratch_bytes(T_max: int, n_heads: int, head_dim: int, splits: int) -> tuple[int, int]:
    """(partial results, partial max/sum) bytes one `ops.attention` dispatch needs in scratch."""
    rows = T_max * n_heads * splits if splits > 1 else 1  # unused with one split
    return rows * head_dim * 4, rows * 8
