"""Causal GQA attention over the KV cache (split and unsplit) vs float64 numpy."""

import numpy as np
import pytest

from tests.conftest import rel_err
from tests.kernels.test_ops import NP, assert_nan, get, nan_like, put, rope_ref, step
from wgllm.kernels import ops

TOL = {"f32": 1e-4, "f16": 3e-3}


def attention_ref(q, kc, vc, pos, *, scale=None, softcap=0.0, window=0):
    """float64 causal attention. q: [T, Hq, hd]; kc, vc: [>= pos+T, Hkv, hd] -> [T, Hq, hd].
    scale: of q.k (default 1/sqrt(hd)); softcap: c * tanh(s / c) when > 0; window: each row
    sees only its last `window` positions (0: all)."""
    T, Hq, hd = q.shape
    Hkv = kc.shape[1]
    L = pos + T
    k = np.repeat(kc[:L].astype(np.float64), Hq // Hkv, axis=1)  # [L, Hq, hd]
    v = np.repeat(vc[:L].astype(np.float64), Hq // Hkv, axis=1)
    scale = 1 / np.sqrt(hd) if scale is None else scale
    s = np.einsum("thd,lhd->htl", q.astype(np.float64), k) * scale  # [Hq, T, L]
    if softcap:
        s = softcap * np.tanh(s / softcap)
    key, row = np.arange(L)[None, :], pos + np.arange(T)[:, None]
    s[:, key > row] = -np.inf  # causal mask
    if window:
        s[:, row - key >= window] = -np.inf
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("htl,lhd->thd", p, v)


def run_attention(device, act, rng, *, Hq, Hkv, hd, pos, T, T_max, n_ctx, splits=None, plain=False, **opts):
    """Random qkv and cache (positions < pos + T), attention on the GPU; returns (got, ref), and
    with `plain` also the reference without opts (scale, softcap, window: see attention_ref)."""
    dt = NP[act]
    qkv = rng.standard_normal((T_max, Hq + 2 * Hkv, hd)).astype(dt)
    kc = (rng.standard_normal((n_ctx, Hkv, hd)) * 1.5).astype(dt)
    vc = rng.standard_normal((n_ctx, Hkv, hd)).astype(dt)
    out = put(device, nan_like((T_max, Hq, hd), dt))
    st = step(device, T, pos)
    d = ops.attention(device, put(device, qkv), put(device, kc), put(device, vc), out, st, T_max=T_max,
                      n_heads=Hq, n_kv_heads=Hkv, head_dim=hd, n_ctx=n_ctx, act=act, splits=splits, **opts)
    device.run(d)
    got = get(device, out, dt, (T_max, Hq, hd))
    assert_nan(got[T:])  # rows past T untouched
    ref = attention_ref(qkv[:T, :Hq], kc, vc, pos, **opts)
    return (got[:T], ref, attention_ref(qkv[:T, :Hq], kc, vc, pos)) if plain else (got[:T], ref)


CASES = [
    # Hq, Hkv, hd, pos, T, T_max, n_ctx, splits
    (9, 3, 64, 1100, 1, 1, 1200, None),  # decode, long cache, split keys
    (9, 3, 64, 1100, 1, 1, 1200, 1),  # the same in one pass
    (9, 3, 64, 1100, 1, 1, 1200, 4),  # few splits of several key blocks each
    (8, 2, 80, 200, 37, 40, 256, 2),  # prefill, splits of several blocks, rows masked mid-block
    (9, 3, 64, 20, 37, 48, 64, None),  # prefill after a prefix
    (8, 2, 80, 20, 37, 40, 128, 3),  # prefill, split keys
    (4, 4, 48, 0, 5, 8, 64, None),  # no GQA, from position 0
    (4, 4, 48, 70, 1, 4, 200, None),  # decode on a T_max=4 graph
    (8, 2, 128, 300, 1, 1, 512, None),  # hd 128, 4 query heads per kv head
    (32, 1, 64, 10, 3, 3, 32, None),  # MQA: 32 query heads split over head blocks
    (14, 2, 64, 5, 9, 9, 64, None),  # 7 query heads per kv head (Qwen2-0.5B)
    (4, 2, 50, 30, 3, 4, 40, None),  # hd % 4 != 0: 2-wide loads
    (8, 8, 256, 100, 2, 2, 128, 3),  # hd 256
]


@pytest.mark.parametrize("Hq,Hkv,hd,pos,T,T_max,n_ctx,splits", CASES)
def test_attention_matches_numpy(device, act, rng, Hq, Hkv, hd, pos, T, T_max, n_ctx, splits):
    got, ref = run_attention(device, act, rng, Hq=Hq, Hkv=Hkv, hd=hd, pos=pos, T=T, T_max=T_max, n_ctx=n_ctx,
                             splits=splits)
    assert np.isfinite(got).all()
    assert rel_err(got, ref) < TOL[act]


WINDOW_CASES = [
    # Hq, Hkv, hd, pos, T, T_max, n_ctx, splits, window, softcap, scale
    (4, 1, 32, 700, 1, 1, 800, None, 100, 0.0, None),  # decode, window shorter than the cache, split keys
    (4, 1, 32, 700, 1, 1, 800, 1, 100, 0.0, None),  # the same in one pass
    (8, 2, 64, 40, 37, 40, 128, None, 16, 0.0, None),  # prefill: window shorter than the tile's span
    (8, 2, 64, 40, 37, 40, 128, 3, 16, 0.0, None),  # the same with split keys
    (6, 2, 48, 0, 30, 32, 64, None, 64, 0.0, None),  # window longer than every row's history
    (4, 2, 32, 50, 9, 12, 128, None, 0, 50.0, None),  # soft-capped scores (Gemma 2), scores scaled up
    (4, 2, 32, 500, 1, 1, 600, None, 64, 30.0, 0.0625),  # window, soft cap and a query scale together
]


@pytest.mark.parametrize("Hq,Hkv,hd,pos,T,T_max,n_ctx,splits,window,softcap,scale", WINDOW_CASES)
def test_attention_window_softcap_scale(kdevice, act, rng, Hq, Hkv, hd, pos, T, T_max, n_ctx, splits, window,
                                        softcap, scale):
    if softcap:  # scores large enough for the cap to matter
        scale = scale or 4.0 / np.sqrt(hd)
    got, ref, plain = run_attention(kdevice, act, rng, Hq=Hq, Hkv=Hkv, hd=hd, pos=pos, T=T, T_max=T_max,
                                    n_ctx=n_ctx, splits=splits, window=window, softcap=softcap, scale=scale,
                                    plain=True)
    assert np.isfinite(got).all()
    assert rel_err(got, ref) < TOL[act]
    if window < pos + T or softcap:  # the options change the result here: the test can fail
        assert rel_err(plain, ref) > 10 * TOL[act]


def test_attention_plan_decode_splits():
    """Decode with few heads splits the keys; a big prefill tile does not."""
    p = ops.attention_plan(1, 9, 3, 64, 16384)
    assert p["S"] == 256 and p["QT"] == 1 and p["HB"] == 3
    assert ops.attention_plan(512, 32, 8, 128, 4096)["S"] == 1


def test_rope_kv_then_attention_reused(device, act, rng):
    """One set of dispatches (T_max=8) run for a prefill, a short chunk and decode steps."""
    Hq, Hkv, hd, T_max, n_ctx, base = 6, 2, 64, 8, 32, 10000.0
    dt = NP[act]
    kc, vc = put(device, nan_like((n_ctx, Hkv, hd), dt)), put(device, nan_like((n_ctx, Hkv, hd), dt))
    qkv_b = put(device, np.zeros((T_max, Hq + 2 * Hkv, hd), dt))
    out = put(device, np.zeros((T_max, Hq, hd), dt))
    st = ops.step_buffer(device, "test")
    shape = dict(T_max=T_max, n_heads=Hq, n_kv_heads=Hkv, head_dim=hd, act=act)
    d = ops.rope_kv(device, qkv_b, kc, vc, st, rope_base=base, mode="normal", **shape)
    d += ops.attention(device, qkv_b, kc, vc, out, st, n_ctx=n_ctx, **shape)
    seq = rng.standard_normal((14, Hq + 2 * Hkv, hd)).astype(dt)  # the whole sequence's q, k, v
    rot = seq.astype(np.float64)
    rot[:, : Hq + Hkv] = rope_ref(rot[:, : Hq + Hkv], np.arange(14), base, hd, "normal")
    ref = attention_ref(rot[:, :Hq], rot[:, Hq : Hq + Hkv], rot[:, Hq + Hkv :], 0)
    pos = 0
    for T in (8, 3, 1, 1, 1):
        device.write(qkv_b, seq[pos : pos + T])
        ops.write_step(device, st, T, pos)
        device.run(d)
        got = get(device, out, dt, (T_max, Hq, hd))[:T]
        assert rel_err(got, ref[pos : pos + T]) < TOL[act] * 3
        pos += T
    assert_nan(get(device, kc, dt, (n_ctx, Hkv, hd))[pos:])  # nothing past the sequence written
