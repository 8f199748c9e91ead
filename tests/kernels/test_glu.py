"""The GELU (tanh form) GLU of Gemma's FFN fused into the down projection's input, vs float64 numpy,
in the matvec/matmul kernels and the CPU-adapter rowdot kernel (kdevice runs both on lavapipe)."""

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from tests.conftest import rel_err
from tests.kernels.test_linear import NP, TOL, dequant_ref
from wgllm.kernels import linear as L
from wgllm.kernels import ops


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


@pytest.mark.parametrize("T,T_max", [(1, 1), (7, 16)])
@pytest.mark.parametrize("qtype", [Q.F32, Q.Q8_0, Q.Q4_K, Q.Q6_K, Q.Q5_0], ids=lambda t: t.name)
def test_gelu_glu_input(kdevice, act, rng, qtype, T, T_max):
    N, K = 45, 256
    raw = L.random_weight_bytes(rng, qtype, N, K)
    Wd = dequant_ref(qtype, raw, N, K)
    w = L.upload_weight(kdevice, [raw], qtype, K, "test")
    gu = (3 * rng.standard_normal((T_max, 2 * K))).astype(NP[act])  # gates far into both tails
    gb, yb = kdevice.upload(gu, "test"), kdevice.upload(np.zeros((T_max, N), NP[act]), "test")
    step = ops.step_buffer(kdevice, "test")
    ops.write_step(kdevice, step, T, 0)
    kdevice.run(L.linear(kdevice, w, gb, yb, T_max, step, x_type=act, y_type=act, glu="gelu"))
    got = kdevice.read_array(yb, NP[act], T_max * N).reshape(T_max, N)
    g, u = gu[:T, :K].astype(np.float64), gu[:T, K:].astype(np.float64)
    ref = (gelu_tanh(g) * u) @ Wd.T
    silu = (g / (1 + np.exp(-g)) * u) @ Wd.T
    assert rel_err(got[:T], ref) < TOL[act]
    # the activation matters (the test can fail): silu in its place misses by 0.026+ (min over 2,000
    # draws of these shapes), against a tolerance of at most 0.003
    assert rel_err(silu, ref) > 3 * TOL[act]


def test_glu_code_rejects_unknown():
    with pytest.raises(ValueError):
        L._glu_code("relu")
