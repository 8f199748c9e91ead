"""Element-wise, rope/KV-cache, softmax and argmax kernels vs float64 numpy.

Outputs are poisoned (NaN) before each run; rows past Step.T and cache
positions outside the pass must come back untouched.
"""

import numpy as np
import pytest

from tests.conftest import rel_err
from wgllm.kernels import ops

NP = {"f32": np.float32, "f16": np.float16}
TOL = {"f32": 1e-5, "f16": 3e-3}


# --- helpers (also used by test_attention) -------------------------------------


def put(dev, arr):
    """A test buffer holding `arr`."""
    return dev.upload(np.ascontiguousarray(arr), "test")


def get(dev, buf, dtype, shape):
    """`buf` read back as an array of `shape`."""
    return dev.read_array(buf, dtype, int(np.prod(shape))).reshape(shape)


def step(dev, T, pos):
    """A Step buffer set to (T, pos)."""
    st = ops.step_buffer(dev, "test")
    ops.write_step(dev, st, T, pos)
    return st


def nan_like(shape, dtype):
    return np.full(shape, np.nan, dtype)


def assert_nan(a):
    """Every element still the NaN poison: the kernel did not touch it."""
    assert np.isnan(np.asarray(a, np.float64)).all()


# --- rope_kv --------------------------------------------------------------------


def rope_ref(x, positions, base, rope_dim, mode):
    """float64 rotary embedding of x: [T, H, hd] at `positions`: [T]."""
    x = np.array(x, np.float64)
    half = rope_dim // 2
    inv = base ** (-2.0 * np.arange(half) / rope_dim)
    theta = np.asarray(positions, np.float64)[:, None, None] * inv  # [T, 1, half]
    c, s = np.cos(theta), np.sin(theta)
    if mode == "normal":
        ia, ib = np.arange(0, rope_dim, 2), np.arange(1, rope_dim, 2)
    else:
        ia, ib = np.arange(half), np.arange(half, rope_dim)
    a, b = x[..., ia].copy(), x[..., ib].copy()
    x[..., ia] = a * c - b * s
    x[..., ib] = a * s + b * c
    return x


ROPE_CASES = [
    # Hq, Hkv, hd, rope_dim, mode, pos, T, T_max, base
    (9, 3, 64, 64, "normal", 0, 5, 8, 10000.0),
    (4, 4, 48, 48, "neox", 20, 37, 40, 1e6),
    (8, 2, 80, 32, "neox", 30000, 3, 4, 10000.0),
    (8, 2, 80, 40, "normal", 29990, 1, 1, 500000.0),
]


@pytest.mark.parametrize("Hq,Hkv,hd,rd,mode,pos,T,T_max,base", ROPE_CASES)
def test_rope_kv(device, act, rng, Hq, Hkv, hd, rd, mode, pos, T, T_max, base):
    dt = NP[act]
    nh = Hq + 2 * Hkv
    n_ctx = pos + T_max + 3
    qkv = rng.standard_normal((T_max, nh, hd)).astype(dt)
    kc0 = rng.standard_normal((n_ctx, Hkv, hd)).astype(dt)  # earlier contents
    vc0 = rng.standard_normal((n_ctx, Hkv, hd)).astype(dt)
    qkv_b, kc_b, vc_b = put(device, qkv), put(device, kc0), put(device, vc0)
    st = step(device, T, pos)
    device.run(ops.rope_kv(device, qkv_b, kc_b, vc_b, st, T_max=T_max, n_heads=Hq, n_kv_heads=Hkv,
                           head_dim=hd, rope_base=base, rope_dim=rd, mode=mode, act=act))
    got = get(device, qkv_b, dt, qkv.shape)
    kc, vc = get(device, kc_b, dt, kc0.shape), get(device, vc_b, dt, vc0.shape)

    positions = pos + np.arange(T)
    ref = qkv[:T].astype(np.float64)
    ref[:, : Hq + Hkv] = rope_ref(ref[:, : Hq + Hkv], positions, base, rd, mode)
    assert rel_err(got[:T], ref) < TOL[act]
    assert np.array_equal(got[T:], qkv[T:])  # rows past T untouched
    assert rel_err(kc[pos : pos + T], ref[:, Hq : Hq + Hkv]) < TOL[act]
    assert np.array_equal(kc[pos : pos + T], got[:T, Hq : Hq + Hkv])  # cache == rotated k, bit for bit
    assert np.array_equal(vc[pos : pos + T], qkv[:T, Hq + Hkv :])
    keep = np.r_[0:pos, pos + T : n_ctx]  # other positions untouched
    assert np.array_equal(kc[keep], kc0[keep]) and np.array_equal(vc[keep], vc0[keep])


@pytest.mark.parametrize("mode", ["normal", "neox"])
def test_rope_large_positions(device, rng, mode):
    """Angles stay accurate at p ~ 131072 (cache writes skipped: positions >= n_ctx)."""
    Hq, Hkv, hd, pos, T = 2, 1, 128, 131060, 16
    qkv = rng.standard_normal((T, Hq + 2 * Hkv, hd)).astype(np.float32)
    qkv_b = put(device, qkv)
    kc_b, vc_b = put(device, nan_like((4, Hkv, hd), np.float32)), put(device, nan_like((4, Hkv, hd), np.float32))
    device.run(ops.rope_kv(device, qkv_b, kc_b, vc_b, step(device, T, pos), T_max=T, n_heads=Hq, n_kv_heads=Hkv,
                           head_dim=hd, rope_base=10000.0, mode=mode, act="f32", n_ctx=4))
    got = get(device, qkv_b, np.float32, qkv.shape)
    ref = rope_ref(qkv[:, : Hq + Hkv], pos + np.arange(T), 10000.0, hd, mode)
    assert rel_err(got[:, : Hq + Hkv], ref) < 1e-5
    assert_nan(get(device, kc_b, np.float32, (4, Hkv, hd)))


def test_rope_freq_table():
    """The fixed-point table reproduces frac(inv_freq / 2pi) to 2^-53."""
    t = ops.rope_freq_table(64, 10000.0, 64).astype(np.float64)
    turns = t[:, 0] * 2.0**-32 + t[:, 1] * 2.0**-64
    inv = 10000.0 ** (-2.0 * np.arange(32) / 64)
    assert np.abs(turns - np.mod(inv / (2 * np.pi), 1.0)).max() < 2.0**-52


# --- rmsnorm (last row) ---------------------------------------------------------


def test_rmsnorm_last_row_only(device, act, rng):
    T, T_max, D = 5, 8, 300
    x = rng.standard_normal((T_max, D)).astype(np.float32)
    w = rng.standard_normal(D).astype(np.float32)
    y = put(device, nan_like((2, D), NP[act]))
    device.run(ops.rmsnorm(device, put(device, x), put(device, w), y, D, 1, 1e-6, step(device, T, 3),
                           in_type="f32", out_type=act, last_row_only=True))
    got = get(device, y, NP[act], (2, D))
    r = x[T - 1].astype(np.float64)
    ref = r / np.sqrt((r**2).mean() + 1e-6) * w
    assert rel_err(got[0], ref) < TOL[act]
    assert_nan(got[1])


# --- softmax --------------------------------------------------------------------


@pytest.mark.parametrize("n,rows,temp", [(49157, 2, 0.7), (1000, 3, 1.0), (10, 1, 2.5)])
def test_softmax(device, rng, n, rows, temp):
    x = (rng.standard_normal((rows, n)) * 5).astype(np.float32)
    x[0, :3] = -np.inf  # masked logits
    y = put(device, nan_like((rows + 1, n), np.float32))
    d = ops.softmax(device, put(device, x), y, n, rows, temperature=temp)
    device.run(d)
    got = get(device, y, np.float32, (rows + 1, n))
    z = x.astype(np.float64) / temp
    ref = np.exp(z - z.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    assert rel_err(got[:rows], ref) < 1e-5
    assert_nan(got[rows])
    ops.set_softmax_temperature(device, d, n, rows, 2 * temp)
    device.run(d)
    ref2 = np.exp(z / 2 - (z / 2).max(-1, keepdims=True))
    ref2 /= ref2.sum(-1, keepdims=True)
    assert rel_err(get(device, y, np.float32, (rows, n)), ref2) < 1e-5


# --- argmax ---------------------------------------------------------------------


def _argmax_gpu(device, logits, T, pos):
    n_tok = pos + T + 3
    tokens = put(device, np.full(n_tok, 0xDEADBEEF, np.uint32))
    device.run(ops.argmax(device, put(device, logits), tokens, step(device, T, pos), V=logits.size))
    got = get(device, tokens, np.uint32, (n_tok,))
    others = np.delete(got, pos + T)
    assert (others == 0xDEADBEEF).all()  # only tokens[pos + T] written
    return int(got[pos + T])


@pytest.mark.parametrize("V", [49157, 152064, 300, 128256])
def test_argmax_random_and_ties(kdevice, rng, V):
    device = kdevice  # one workgroup (CPU adapters), G parts and a final one (GPU)
    x = rng.standard_normal(V).astype(np.float32)
    assert _argmax_gpu(device, x, 1, 5) == int(np.argmax(x))
    top = np.sort(rng.choice(V, 4, replace=False))  # a 4-way tie at the max: the lowest index wins
    x[top] = x.max() + 1.0
    assert _argmax_gpu(device, x, 4, 0) == top[0]
    x[: top[0]] = x[top[0]]  # now everything before it ties too: index 0
    assert _argmax_gpu(device, x, 2, 9) == 0


def test_argmax_negative_and_inf(kdevice, rng):
    device, V = kdevice, 50000
    x = -np.abs(rng.standard_normal(V)).astype(np.float32) - 10.0
    assert _argmax_gpu(device, x, 1, 0) == int(np.argmax(x))
    x[rng.choice(V, V // 2, replace=False)] = -np.inf
    assert _argmax_gpu(device, x, 1, 0) == int(np.argmax(x))
    y = np.full(V, -np.inf, np.float32)
    assert _argmax_gpu(device, y, 1, 0) == 0
    y[V - 1] = -3e38
    assert _argmax_gpu(device, y, 1, 0) == V - 1
    z = np.full(V, -0.0, np.float32)
    z[77] = 0.0  # -0.0 == 0.0: a tie, the first wins
    assert _argmax_gpu(device, z, 1, 0) == 0


@pytest.mark.parametrize("T,T_max,n", [(1, 1, 576), (5, 9, 300), (3, 3, 1)])
def test_bias_add_matches_numpy(device, act, rng, T, T_max, n):
    dt = np.float16 if act == "f16" else np.float32
    y0 = rng.standard_normal((T_max, n)).astype(dt)
    b = rng.standard_normal(n).astype(np.float32)
    yb = device.upload(y0, "test")
    bb = device.upload(b, "test")
    st = ops.step_buffer(device)
    ops.write_step(device, st, T, 0)
    device.run(ops.bias_add(device, yb, bb, st, T_max=T_max, n=n, act=act))
    got = device.read_array(yb, dt, T_max * n).reshape(T_max, n)
    ref = y0.astype(np.float64)[:T] + b
    assert np.abs(got[:T] - ref).max() <= (1e-6 if act == "f32" else 2e-3) * max(1.0, np.abs(ref).max())
    assert np.array_equal(got[T:], y0[T:])  # rows past Step.T untouched


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_argmax_marks_non_finite_logits(kdevice, rng, bad):
    device, V = kdevice, 4099
    x = rng.standard_normal(V).astype(np.float32)
    x[rng.integers(V)] = bad  # anywhere: a broken device or model, never a token
    assert _argmax_gpu(device, x, 1, 3) == 0xFFFFFFFF
    x[:] = rng.standard_normal(V).astype(np.float32)  # the mark does not stick to later runs
    for _ in range(3):
        assert _argmax_gpu(device, x, 1, 3) == int(np.argmax(x))


def test_argmax_batched_rows(kdevice, rng):
    """A batched pass: tokens[r] = argmax(logits[r]) for rows r < T of a capacity of 4, a tie
    and a NaN in different parts of different rows; rows past T untouched."""
    V, rows = 70001, 4
    x = rng.standard_normal((rows, V)).astype(np.float32)
    x[0, [60001, 3]] = 9.0  # tie across parts: 3 wins
    x[2, 40000] = np.nan
    tokens = put(kdevice, np.full(rows, 0xDEADBEEF, np.uint32))
    st = ops.step_buffer(kdevice, "test")
    ops.write_batch_step(kdevice, st, [(0, 5), (1, 7), (2, 0)])
    kdevice.run(ops.argmax(kdevice, put(kdevice, x), tokens, st, V=V, rows=rows))
    got = get(kdevice, tokens, np.uint32, (rows,))
    assert list(got) == [3, int(np.argmax(x[1])), 0xFFFFFFFF, 0xDEADBEEF]


# --- post-norm add, qk-norm, row maps ------------------------------------------------


@pytest.mark.parametrize("D", [300, 640])  # 300: the GPU kernel's strided loop; both % 4 == 0 for rmsnorm_rows
def test_rmsnorm_add_into_residual(kdevice, act, rng, D):
    T, T_max = 5, 8
    h = rng.standard_normal((T_max, D)).astype(NP[act])  # a block's output
    x = rng.standard_normal((T_max, D)).astype(np.float32)  # the residual stream
    w = rng.standard_normal(D).astype(np.float32)
    xb = put(kdevice, x)
    kdevice.run(ops.rmsnorm(kdevice, put(kdevice, h), put(kdevice, w), xb, D, T_max, 1e-6, step(kdevice, T, 0),
                            in_type=act, out_type="f32", add=True))
    got = get(kdevice, xb, np.float32, (T_max, D))
    r = h[:T].astype(np.float64)
    ref = x[:T] + r / np.sqrt((r**2).mean(-1, keepdims=True) + 1e-6) * w
    assert rel_err(got[:T], ref) < TOL[act]
    assert np.array_equal(got[T:], x[T:])  # rows past T untouched


@pytest.mark.parametrize("Hq,Hkv,hd,T,T_max", [(4, 1, 256, 3, 4), (9, 3, 64, 70, 80), (2, 2, 16, 1, 1)])
def test_head_norm(kdevice, act, rng, Hq, Hkv, hd, T, T_max):
    qkv = (rng.standard_normal((T_max, Hq + 2 * Hkv, hd)) * 3).astype(NP[act])
    w = rng.standard_normal((2, hd)).astype(np.float32)
    buf = put(kdevice, qkv)
    kdevice.run(ops.head_norm(kdevice, buf, put(kdevice, w), step(kdevice, T, 5), T_max=T_max, n_heads=Hq,
                              n_kv_heads=Hkv, head_dim=hd, eps=1e-6, act=act))
    got = get(kdevice, buf, NP[act], qkv.shape)
    r = qkv[:T, : Hq + Hkv].astype(np.float64)
    normed = r / np.sqrt((r**2).mean(-1, keepdims=True) + 1e-6)
    ref = np.concatenate([normed[:, :Hq] * w[0], normed[:, Hq:] * w[1]], axis=1)
    assert rel_err(got[:T, : Hq + Hkv], ref) < TOL[act]
    assert np.array_equal(got[:T, Hq + Hkv :], qkv[:T, Hq + Hkv :])  # v heads untouched
    assert np.array_equal(got[T:], qkv[T:])  # rows past T untouched


@pytest.mark.parametrize("op,c,per_token", [("scale", 25.3, True), ("softcap", 30.0, False), ("softcap", 2.0, True)])
def test_rowmap(device, rng, op, c, per_token):
    rows, D, T = 6, 1000, 4
    x = (rng.standard_normal((rows, D)) * 40).astype(np.float32)
    buf = put(device, x)
    device.run(ops.rowmap(device, buf, step(device, T, 0), D=D, rows=rows, op=op, c=c, per_token=per_token))
    got = get(device, buf, np.float32, (rows, D))
    n = T if per_token else rows
    x64 = x[:n].astype(np.float64)
    ref = x64 * c if op == "scale" else c * np.tanh(x64 / c)
    assert rel_err(got[:n], ref) < 1e-6
    assert np.array_equal(got[n:], x[n:])
