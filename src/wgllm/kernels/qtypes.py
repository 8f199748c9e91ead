"""Every GGUF tensor type wgllm knows, in one wgpu-free table, and llama-quantize's type mixes.

One row (`QType`) per ggml type says how big its blocks are, whether the
engine has kernels for it, the suffix of its WGSL functions (`dq8_<kernel>` in
quant.wgsl, `udot_<kernel>` in matvec.wgsl), the matvec tiling (row pairs, invocations per row group, unrolling), whether the
CPU-adapter kernel (rowdot) and the GPU decode kernel of aligned block groups
(matwide) read it, the type llama-quantize falls back to
when a row is not a whole number of blocks, and where its f16 scales sit (for
valid random test data). The planner, the engine, the kernels, the catalog and
the synthetic-model writer all read this table; nothing else lists types.

`ftype_tensor_type` is llama.cpp's `llama_tensor_get_type` for the common file
types (no importance matrix, no experts), so the catalog and the test-model
writer agree with what `llama-quantize` writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

QK_K = 256  # super-block of the K-quants


@dataclass(frozen=True)
class QType:
    """One ggml tensor type (see module doc)."""

    name: str  # ggml name, e.g. "Q4_K"
    kernel: str  # suffix of the WGSL functions, e.g. "q4_k"
    runnable: bool = True  # the engine's kernels read it (matvec, matmul, get_rows)
    unit: int = 32  # matvec: elements per invocation step (a block or a slice of one)
    pairs: int = 2  # matvec: row pairs per row group
    tpr: int = 32  # matvec: invocations per row group (16 or 32)
    unroll: int = 1  # matvec: units per invocation per loop iteration (1, 2 or 4)
    rowdot: bool = False  # the CPU-adapter kernel (rowdot) reads it
    tile: bool = False  # matvec has its batched tile (uw_/wd_<kernel> in matvec.wgsl)
    sliced: bool = False  # matvec has udot_<kernel>s: a quants word of a block per lane (UNIT block / 4)
    wide: bool = False  # GPU decode reads it with matwide.wgsl where rows split into 16-byte block groups
    fallback: str | None = None  # llama-quantize's type when a row is not whole blocks (then F16)
    scales: tuple[tuple[int, float, float], ...] = ()  # (byte offset in block, lo, hi) of f16 scales

    @property
    def ggml(self) -> GGMLQuantizationType:
        return GGMLQuantizationType[self.name]

    @property
    def block(self) -> int:
        """Elements per block."""
        return GGML_QUANT_SIZES[self.ggml][0]

    @property
    def block_bytes(self) -> int:
        return GGML_QUANT_SIZES[self.ggml][1]

    def row_bytes(self, K: int) -> int:
        """Bytes of one row of K elements (ValueError when K is not whole blocks)."""
        if K % self.block:
            raise ValueError(f"row length {K} is not a multiple of the {self.name} block ({self.block})")
        return K // self.block * self.block_bytes

    def nbytes(self, shape) -> int:
        """Bytes of a tensor of `shape` (any order; rows must be whole blocks)."""
        n = 1
        for d in shape:
            n *= int(d)
        return n // self.block * self.block_bytes


_S8 = ((0, 1e-3, 1e-2),)
TYPES: dict[str, QType] = {t.name: t for t in [
    QType("F32", "f32", unit=8, pairs=1, rowdot=True),
    QType("F16", "f16", unit=16, pairs=1, rowdot=True),
    QType("BF16", "bf16", unit=16, pairs=1),
    QType("Q8_0", "q8_0", rowdot=True, wide=True, scales=_S8),
    QType("Q4_0", "q4_0", rowdot=True, wide=True, sliced=True, scales=_S8),
    QType("Q4_1", "q4_1", rowdot=True, wide=True, sliced=True, scales=((0, 1e-3, 1e-2), (2, -1e-2, 1e-2))),
    QType("Q5_0", "q5_0", rowdot=True, wide=True, scales=_S8),
    QType("Q5_1", "q5_1", rowdot=True, wide=True, scales=((0, 1e-3, 1e-2), (2, -1e-2, 1e-2))),
    QType("IQ4_NL", "iq4_nl", scales=_S8),
    QType("Q2_K", "q2_k", unit=64, fallback="Q4_0", scales=((80, 1e-4, 1e-3), (82, 1e-4, 1e-3))),
    QType("Q3_K", "q3_k", unit=64, fallback="Q4_0", scales=((108, 1e-4, 1e-3),)),
    QType("Q4_K", "q4_k", unit=64, rowdot=True, fallback="Q5_0", scales=((0, 1e-4, 1e-3), (2, 1e-4, 1e-3))),
    QType("Q5_K", "q5_k", unit=64, pairs=1, fallback="Q5_1", scales=((0, 1e-4, 1e-3), (2, 1e-4, 1e-3))),
    QType("Q6_K", "q6_k", tile=True, rowdot=True, unit=64, fallback="Q8_0", scales=((208, 1e-4, 1e-3),)),
    QType("IQ4_XS", "iq4_xs", unit=64, pairs=1, fallback="IQ4_NL", scales=((0, 1e-4, 1e-3),)),
]}


def qtype(name) -> QType:
    """The row of a type given by name ("Q4_K") or GGMLQuantizationType; KeyError if unknown."""
    key = name.name if isinstance(name, GGMLQuantizationType) else str(name)
    return TYPES[key]


def runnable_types() -> frozenset[str]:
    """Names of the types the engine's kernels read."""
    return frozenset(n for n, t in TYPES.items() if t.runnable)


def fit_block(name: str, cols: int) -> str:
    """`name`, or llama-quantize's fallback for rows of `cols` elements (then F16)."""
    t = TYPES[name]
    if cols % t.block == 0:
        return name
    fb = t.fallback
    if fb is not None and cols % TYPES[fb].block == 0:
        return fb
    return "F16"


# --- llama-quantize's file types ----------------------------------------------------

# file type name -> (general.file_type id, the type of most matrices)
FTYPES: dict[str, tuple[int, str]] = {
    "F32": (0, "F32"), "F16": (1, "F16"), "Q4_0": (2, "Q4_0"), "Q4_1": (3, "Q4_1"), "Q8_0": (7, "Q8_0"),
    "Q5_0": (8, "Q5_0"), "Q5_1": (9, "Q5_1"), "Q2_K": (10, "Q2_K"), "Q3_K_S": (11, "Q3_K"),
    "Q3_K_M": (12, "Q3_K"), "Q3_K_L": (13, "Q3_K"), "Q4_K_S": (14, "Q4_K"), "Q4_K_M": (15, "Q4_K"),
    "Q5_K_S": (16, "Q5_K"), "Q5_K_M": (17, "Q5_K"), "Q6_K": (18, "Q6_K"), "IQ4_NL": (25, "IQ4_NL"),
    "IQ4_XS": (30, "IQ4_XS"), "BF16": (32, "BF16"),
}


def _more_bits(i: int, n: int) -> bool:
    """llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _attn_v(ftype: str, i: int, n: int, n_gqa: int) -> str | None:
    if ftype == "Q2_K":
        return "Q4_K" if n_gqa >= 4 else "Q3_K"
    if ftype == "Q3_K_M":
        return "Q5_K" if i < 2 else "Q4_K"
    if ftype == "Q3_K_L" or (ftype in ("IQ4_NL", "IQ4_XS") and n_gqa >= 4):
        return "Q5_K"
    if ftype in ("Q4_K_M", "Q5_K_M") and _more_bits(i, n):
        return "Q6_K"
    if ftype == "Q4_K_S" and i < 4:
        return "Q5_K"
    return None


def _ffn_down(ftype: str, i: int, n: int) -> str | None:
    if ftype == "Q2_K":
        return "Q3_K"
    if ftype == "Q3_K_M":
        return "Q5_K" if i < n // 16 else "Q4_K"
    if ftype == "Q3_K_L":
        return "Q5_K"
    if ftype in ("Q4_K_M", "Q5_K_M") and _more_bits(i, n):
        return "Q6_K"
    if ftype in ("IQ4_NL", "IQ4_XS", "Q4_K_S") and i < n // 8:
        return "Q5_K"
    return None


_ATTN_OUTPUT = {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}
_ATTN_QKV = {"Q3_K_M": "Q4_K", "Q3_K_L": "Q4_K", "Q4_K_M": "Q5_K", "Q5_K_M": "Q6_K"}


def ftype_tensor_type(ftype: str, name: str, cols: int, *, n_layers: int, tied: bool, n_gqa: int = 1) -> str:
    """The type llama-quantize gives tensor `name` (rows of `cols`) in file type `ftype`.

    Vectors (norms, biases, rope factors) stay F32. The output matrix (the token
    embedding when tied) of a quantized file type is Q6_K (Q8_0 when its rows
    are not whole 256-blocks, or in a Q8_0 file); attn_v, ffn_down, attn_output
    and attn_qkv get more bits in the K-quant mixes; a type whose block does not
    divide the row falls back (`fit_block`)."""
    if ftype not in FTYPES:
        raise ValueError(f"unknown file type {ftype!r} (known: {', '.join(FTYPES)})")
    base = FTYPES[ftype][1]
    if name.endswith(("norm.weight", ".bias")) or name.startswith("rope_"):
        return "F32"
    if base in ("F32", "F16", "BF16"):
        return base
    role = name.removesuffix(".weight").split(".")[-1]
    layer = int(name.split(".")[1]) if name.startswith("blk.") else 0
    t = None
    if role == "output" or (role == "token_embd" and tied):
        t = "Q8_0" if cols % QK_K or base == "Q8_0" else "Q6_K"
    elif role == "attn_v":
        t = _attn_v(ftype, layer, n_layers, n_gqa)
    elif role == "ffn_down":
        t = _ffn_down(ftype, layer, n_layers)
    elif role == "attn_output":
        t = _ATTN_OUTPUT.get(ftype)
    elif role == "attn_qkv":
        t = _ATTN_QKV.get(ftype)
    return fit_block(t or base, cols)
