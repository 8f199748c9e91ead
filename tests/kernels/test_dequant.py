"""dequantize_gpu (quant.wgsl's per-type dq8) against gguf.quants.dequantize, bit for bit."""

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize, quantize

from wgllm.kernels import linear as L
from wgllm.kernels.qtypes import qtype as qtype_row

TYPES = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.IQ4_NL,
         Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.IQ4_XS]


def scale_offsets(qtype):
    """Byte offsets of a block's f16 scale fields (kernels/qtypes.py)."""
    return [off for off, _, _ in qtype_row(qtype).scales]


def _k(qtype, i=0):
    return [256, 512][i] if GGML_QUANT_SIZES[qtype][0] == 256 else [96, 160][i]


def _with_edge_values(rng, qtype, raw):
    """Put awkward values in: subnormal / zero f16 scales, subnormal f16 and f32 weights."""
    raw = raw.copy()
    if qtype == Q.F32:
        v = raw.view(np.uint32)
        idx = rng.choice(v.size, 64, replace=False)
        v[idx[:32]] = rng.integers(1, 1 << 23, 32, dtype=np.uint32) | (rng.integers(0, 2, 32, dtype=np.uint32) << 31)
        v[idx[32:34]] = [0, 0x80000000]
    elif qtype == Q.BF16:  # subnormal f32 values, +-0, +-max
        v = raw.view(np.uint16)
        idx = rng.choice(v.size, 64, replace=False)
        v[idx[:32]] = rng.integers(1, 0x80, 32, dtype=np.uint16) | (rng.integers(0, 2, 32, dtype=np.uint16) << 15)
        v[idx[32:36]] = [0, 0x8000, 0x7F7F, 0xFF7F]
    elif qtype == Q.F16:
        v = raw.view(np.uint16)
        idx = rng.choice(v.size, 64, replace=False)
        v[idx[:32]] = rng.integers(1, 0x400, 32, dtype=np.uint16) | (rng.integers(0, 2, 32, dtype=np.uint16) << 15)
        v[idx[32:36]] = [0, 0x8000, 0x7BFF, 0xFBFF]  # +-0, +-max
    else:
        block, size = GGML_QUANT_SIZES[qtype]
        blocks = raw.reshape(-1, size)
        for off in scale_offsets(qtype):
            idx = rng.choice(len(blocks), min(4, len(blocks)), replace=False)
            halves = rng.integers(1, 0x400, len(idx), dtype=np.uint16) | (rng.integers(0, 2, len(idx), dtype=np.uint16) << 15)
            halves[0] = 0
            blocks[idx, off : off + 2] = halves.view(np.uint8).reshape(-1, 2)
    return raw


def _check_bit_exact(device, qtype, raw, N, K):
    w = L.upload_weight(device, [raw], qtype, K, "test")
    try:
        got = L.dequantize_gpu(device, w)
    finally:
        for buf, _, _ in w.chunks:
            device.release(buf)
    ref = dequantize(raw.reshape(N, -1), qtype).reshape(N, K).astype(np.float32)
    bad = got.view(np.uint32) != ref.view(np.uint32)
    assert not bad.any(), f"{bad.sum()} of {bad.size} differ, first at {np.argwhere(bad)[0]}: got {got[bad][:4]} ref {ref[bad][:4]}"


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("shape", [0, 1])
def test_dequant_random_blocks_bit_exact(device, rng, qtype, shape):
    N, K = [13, 67][shape], _k(qtype, shape)
    raw = _with_edge_values(rng, qtype, L.random_weight_bytes(rng, qtype, N, K))
    _check_bit_exact(device, qtype, raw, N, K)


@pytest.mark.parametrize("qtype", [Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1], ids=lambda t: t.name)
def test_dequant_quantized_floats_bit_exact(device, rng, qtype):
    N, K = 29, 160
    raw = quantize(rng.standard_normal((N, K)).astype(np.float32), qtype).reshape(-1)
    _check_bit_exact(device, qtype, raw, N, K)
