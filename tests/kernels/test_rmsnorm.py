import numpy as np
import pytest

from tests.conftest import rel_err
from wgllm.kernels import ops

NP = {"f32": np.float32, "f16": np.float16}


# D: below, around and beyond the GPU kernel's 1,024 elements per loop step (256 threads x 4)
@pytest.mark.parametrize("T,T_max,D", [(1, 1, 576), (7, 7, 100), (3, 5, 1000), (2, 4, 37), (2, 3, 2100)])
@pytest.mark.parametrize("in_f32", [False, True])
@pytest.mark.parametrize("subgroups", [False, True])
def test_rmsnorm_matches_numpy(kdevice, act, rng, T, T_max, D, in_f32, subgroups, monkeypatch):
    device = kdevice  # the CPU adapters' rows kernel and the GPU kernel, both on a CPU adapter
    if subgroups and not ops.subgroup_size(device):
        pytest.skip("adapter has no subgroups")
    monkeypatch.setattr(ops, "RMSNORM_SUBGROUPS", subgroups)  # the workgroup sum: subgroups or a tree
    in_type = "f32" if in_f32 else act
    x = rng.standard_normal((T_max, D)).astype(NP[in_type])
    w = rng.standard_normal(D).astype(np.float32)
    eps = 1e-5
    xb = device.upload(x, "test")
    wb = device.upload(w, "test")
    yb = device.buffer(T_max * D * np.dtype(NP[act]).itemsize, "test")
    device.write(yb, np.full(T_max * D, np.nan, NP[act]))  # poison: rows < T must be written, others not
    st = ops.step_buffer(device, "test")
    ops.write_step(device, st, T, 11)
    device.run(ops.rmsnorm(device, xb, wb, yb, D, T_max, eps, st, in_type=in_type, out_type=act))
    got = device.read_array(yb, NP[act], T_max * D).reshape(T_max, D)
    x64 = x[:T].astype(np.float64)
    ref = x64 / np.sqrt((x64**2).mean(-1, keepdims=True) + eps) * w
    assert np.isfinite(got[:T]).all()
    assert np.isnan(got[T:]).all()
    assert rel_err(got[:T], ref) < (1e-5 if act == "f32" else 2e-3)
