import numpy as np
import pytest

from tests.conftest import rel_err
from wgllm.kernels import ops

NP = {"f32": np.float32, "f16": np.float16}


@pytest.mark.parametrize("T,D", [(1, 576), (7, 100), (3, 1000), (2, 37)])
def test_rmsnorm_matches_numpy(device, act, rng, T, D):
    x = rng.standard_normal((T, D)).astype(NP[act])
    w = rng.standard_normal(D).astype(np.float32)
    eps = 1e-5
    xb = device.upload(x, "test")
    wb = device.upload(w, "test")
    yb = device.buffer(T * D * np.dtype(NP[act]).itemsize, "test")
    device.write(yb, np.full(T * D, np.nan, NP[act]))  # poison: every element must be written
    device.run(ops.rmsnorm(device, xb, wb, yb, D, T, eps, in_type=act, out_type=act))
    got = device.read_array(yb, NP[act], T * D).reshape(T, D)
    x64 = x.astype(np.float64)
    ref = x64 / np.sqrt((x64**2).mean(-1, keepdims=True) + eps) * w
    assert np.isfinite(got).all()
    assert rel_err(got, ref) < (1e-5 if act == "f32" else 2e-3)
