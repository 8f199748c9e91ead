"""get_rows (embedding lookup from raw GGUF weights) against gguf.quants.dequantize."""

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize

from wgllm.kernels import linear as L
from wgllm.kernels import ops

NP = {"f32": np.float32, "f16": np.float16}
TYPES = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.IQ4_NL,
         Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.IQ4_XS]


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_get_rows_matches_dequantize(device, act, rng, qtype):
    N = 101
    K = 512 if GGML_QUANT_SIZES[qtype][0] == 256 else 160
    raw = L.random_weight_bytes(rng, qtype, N, K)
    ref = dequantize(raw.reshape(N, -1), qtype).reshape(N, K)
    w = L.upload_weight(device, [raw], qtype, K, "test")

    T, T_max, pos = 9, 16, 5
    ids = rng.integers(0, N, pos + T).astype(np.uint32)
    ids[pos], ids[pos + T - 1] = 0, N - 1  # first and last row
    idb = device.upload(ids, "test")
    yb = device.upload(np.full((T_max, K), np.nan, NP[act]), "test")  # poison
    step = ops.step_buffer(device, "test")
    ops.write_step(device, step, T, pos)
    device.run(L.get_rows(device, w, idb, yb, T_max, step, y_type=act))
    got = device.read_array(yb, NP[act], T_max * K).reshape(T_max, K)
    for b in [idb, yb, step] + [c[0] for c in w.chunks]:
        device.release(b)

    want = ref[ids[pos : pos + T]]
    assert np.isnan(got[T:]).all(), "rows t >= Step.T were written"
    if act == "f32":
        assert np.array_equal(got[:T].view(np.uint32), want.view(np.uint32))
    else:  # one f32 -> f16 rounding
        assert np.allclose(got[:T].astype(np.float32), want, rtol=2.0**-10, atol=2.0**-24)
