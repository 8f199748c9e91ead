"""Weights in textures (Device.texels; CPU adapters keep rowdot types' weights so, linear.WEIGHT_TEXELS):
the bytes written inline, through the staging ring and by its thread read back bit for bit
(dequantized on the device against gguf), every kernel that reads a weight gives with a texture
exactly what it gives with a buffer (rowdot, and the GPU matvec / matmul / get_rows through the
same source rewrite), and the accounts match the planner's metering stand-in."""

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize

from wgllm.gpu.dispatch import TEXEL_ROW, is_texels, texels_size
from wgllm.gpu.meter import MeterDevice
from wgllm.kernels import linear as L
from wgllm.kernels import ops, registry
from wgllm.kernels.constants import PAD

# rows * row bytes of several 64 KiB texture rows and a partial last one (not whole texels)
SHAPES = {Q.Q4_0: (301, 1056), Q.Q4_1: (113, 1056), Q.Q8_0: (67, 1056), Q.Q4_K: (45, 2304), Q.Q6_K: (37, 2304),
          Q.F16: (29, 1056)}


def _weights(dev, monkeypatch, qtype, raw, K, texels: bool, where: str = "inline"):
    monkeypatch.setattr(L, "_texels", lambda d, q: texels)
    if where == "inline":
        return L.upload_weight(dev, [raw], qtype, K, "test")
    with dev.uploading(2, TEXEL_ROW, background=where == "thread"):
        return L.upload_weight(dev, [raw], qtype, K, "test")


def _release(dev, w):
    for buf, _, _ in w.chunks:
        dev.release(buf)


@pytest.mark.parametrize("where", ["inline", "ring", "thread"])
@pytest.mark.parametrize("qtype", list(SHAPES), ids=lambda t: t.name)
def test_texels_hold_the_weight(device, rng, monkeypatch, qtype, where):
    """A weight texture holds the weight's bytes: dequantized on the device it is gguf's
    dequantization bit for bit, and it is accounted as the metering stand-in accounts it."""
    N, K = SHAPES[qtype]
    raw = L.random_weight_bytes(rng, qtype, N, K)
    before = device.allocated.get("test", 0)
    w = _weights(device, monkeypatch, qtype, raw, K, True, where)
    try:
        (buf, _, _), = w.chunks
        assert is_texels(buf)
        rb = L.row_bytes(qtype, K)
        assert device.allocated["test"] - before == texels_size(N * rb + PAD) > N * rb + PAD
        meter = MeterDevice(kind=device.kind)
        monkeypatch.setattr(L, "_texels", lambda d, q: True)
        L.upload_weight(meter, [raw], qtype, K, "test")
        assert meter.allocated["test"] == texels_size(N * rb + PAD) and meter.buffers[0].texels
        want = dequantize(raw.reshape(N, -1), qtype).reshape(N, K).astype(np.float32)
        assert np.array_equal(L.dequantize_gpu(device, w), want)
    finally:
        _release(device, w)


@pytest.mark.parametrize("T,T_max", [(1, 1), (5, 16)])
@pytest.mark.parametrize("qtype", list(SHAPES), ids=lambda t: t.name)
def test_kernels_read_texels_as_buffers(kdevice, act, rng, monkeypatch, qtype, T, T_max):
    """linear (decode and prefill) and get_rows give the same bits from a texture as from a buffer,
    with the adapter's own kernels and with the GPU ones."""
    dev = kdevice
    N, K = SHAPES[qtype]
    raw = L.random_weight_bytes(rng, qtype, N, K)
    x = dev.upload(rng.standard_normal((T_max, K)).astype(np.float32 if act == "f32" else np.float16), "test")
    ids = dev.upload(rng.integers(0, N, T_max).astype(np.uint32), "test")
    step = ops.step_buffer(dev, "test")
    ops.write_step(dev, step, T, 0)
    got = {}
    for texels in (False, True):
        w = _weights(dev, monkeypatch, qtype, raw, K, texels)
        y, e = dev.buffer(T_max * N * 4, "test"), dev.buffer(T_max * K * 4, "test")
        dev.run(L.linear(dev, w, x, y, T_max, step, x_type=act, y_type=act)
                + L.get_rows(dev, w, ids, e, T_max, step, y_type=act))
        got[texels] = (dev.read(y, 0, T * N * (2 if act == "f16" else 4)), dev.read(e, 0, T * K * (2 if act == "f16" else 4)))
        for b in (y, e):
            dev.release(b)
        _release(dev, w)
    for b in (x, ids, step):
        dev.release(b)
    assert got[True] == got[False]


def test_texel_rewrite_of_kernel_sources():
    """WTEX=1: W's declaration becomes the texture's, every W[...] (nested too) a w_at(...) call;
    a kernel without a storage W at binding 0 is refused."""
    src = ("@group(0) @binding(0) var<storage, read> W: array<u32>;\n"
           "fn f(b: u32) -> u32 { return (W[b >> 2u] >> 8u) + W[W[1u] + XW[2u]]; }")
    out = registry.texel_weights(src)
    assert "var WT: texture_2d<u32>;" in out and "W[" not in out.replace("XW[", "")
    assert "(w_at(b >> 2u) >> 8u) + w_at(w_at(1u) + XW[2u])" in out
    vec = registry.texel_weights("@group(0) @binding(0) var<storage, read> W: array<vec4<u32>>;\nlet a = W[i];")
    assert "-> vec4<u32>" in vec and "w_at(i)" in vec
    with pytest.raises(ValueError, match="no storage array W"):
        registry.texel_weights("@group(0) @binding(0) var<storage, read> X: array<u32>;")
