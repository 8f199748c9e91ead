"""linear (matvec.wgsl / matmul.wgsl) on raw GGUF weights against float64 numpy."""

import dataclasses

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize

from tests.conftest import rel_err
from wgllm.gpu.dispatch import is_texels
from wgllm.kernels import linear as L
from wgllm.kernels.constants import PAD
from wgllm.kernels import ops, qtypes

NP = {"f32": np.float32, "f16": np.float16}
TOL = {"f32": 1e-5, "f16": 3e-3}
TYPES = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.IQ4_NL,
         Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.IQ4_XS]
# (T, T_max); T_max == 1 is the matvec kernel. The last case has rows of more matvec
# units than a row group's 32 invocations (a second loop iteration for some of them).
CASES = [(1, 1), (5, 16), (37, 64), (3, 3), (1, 1)]
CASE_IDS = ["T1of1", "T5of16", "T37of64", "T3of3", "T1of1long"]


def shape_for(qtype, i):
    """(N, K): odd N, K a multiple of the block but not of the kernels' tiles."""
    big = GGML_QUANT_SIZES[qtype][0] == 256
    if i == 5:  # rows of whole 16-byte block groups (decode goes through matwide for `wide` types)
        return 67, 768
    if i == 4:
        return 37, 2304 if big else 1056
    N = [67, 193][i % 2]
    K = [256, 512][i % 2] if big else [160, 96][i % 2]
    return N, K


def dequant_ref(qtype, raw, N, K):
    return dequantize(raw.reshape(N, -1), qtype).reshape(N, K).astype(np.float64)


def run_linear(dev, w, Wd, rng, T, T_max, act, add, pos=0):
    """Run linear for Step(T, pos) and check y[:T] against numpy and y[T:] untouched."""
    K, N = w.K, w.N
    x = rng.standard_normal((T_max, K)).astype(NP[act])
    y0 = np.full((T_max, N), np.nan, NP[act])  # poison
    if add:
        y0[:T] = rng.standard_normal((T, N))
    xb = dev.upload(x, "test")
    yb = dev.upload(y0, "test")
    step = ops.step_buffer(dev, "test")
    ops.write_step(dev, step, T, pos)
    dev.run(L.linear(dev, w, xb, yb, T_max, step, x_type=act, y_type=act, add=add))
    got = dev.read_array(yb, NP[act], T_max * N).reshape(T_max, N)
    ref = x[:T].astype(np.float64) @ Wd.T + (y0[:T].astype(np.float64) if add else 0.0)
    for b in (xb, yb, step):
        dev.release(b)
    assert np.isfinite(got[:T]).all(), "rows t < T not fully written"
    assert np.isnan(got[T:]).all(), "rows t >= Step.T were written"
    err = rel_err(got[:T], ref)
    assert err < TOL[act], err


def check_product(dev, w, Wd, x, y0, T, T_max, act, *, add, glu):
    """Run linear on x (with glu: [gate | up] rows) into y0's copy for Step(T, 0); y[:T] must
    equal numpy's (silu(gate) * up with glu; y0 added with add), rows past T untouched."""
    K = w.K
    xb, yb = dev.upload(x, "test"), dev.upload(y0, "test")
    step = ops.step_buffer(dev, "test")
    ops.write_step(dev, step, T, 0)
    try:
        dev.run(L.linear(dev, w, xb, yb, T_max, step, x_type=act, y_type=act, add=add, glu=glu))
        got = dev.read_array(yb, NP[act], T_max * w.N).reshape(T_max, w.N)
        xs = x[:T].astype(np.float64)
        if glu:
            g, u = xs[:, :K], xs[:, K:]
            xs = g / (1 + np.exp(-g)) * u
        ref = xs @ Wd.T + (y0[:T].astype(np.float64) if add else 0.0)
        assert rel_err(got[:T], ref) < TOL[act]
        assert np.array_equal(got[T:], y0[T:])  # rows past Step.T untouched
    finally:
        for b in (xb, yb, step):
            dev.release(b)


def release(dev, w):
    for buf, _, _ in w.chunks:
        dev.release(buf)


@pytest.mark.parametrize("add", [False, True], ids=["set", "add"])
@pytest.mark.parametrize("case", range(len(CASES)), ids=CASE_IDS)
@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_linear_matches_numpy(device, act, rng, qtype, case, add):
    T, T_max = CASES[case]
    N, K = shape_for(qtype, case)
    raw = L.random_weight_bytes(rng, qtype, N, K)
    w = L.upload_weight(device, [raw], qtype, K, "test")
    assert (w.N, w.K, w.nbytes) == (N, K, raw.nbytes) and len(w.chunks) == 1
    try:
        run_linear(device, w, dequant_ref(qtype, raw, N, K), rng, T, T_max, act, add, pos=7)
    finally:
        release(device, w)


def test_step_T_is_read_at_run_time(device, rng):
    """One set of dispatches, run with different Step.T (including T = 0)."""
    N, K, T_max = 67, 96, 64
    raw = L.random_weight_bytes(rng, Q.Q8_0, N, K)
    Wd = dequant_ref(Q.Q8_0, raw, N, K)
    w = L.upload_weight(device, [raw], Q.Q8_0, K, "test")
    x = rng.standard_normal((T_max, K)).astype(np.float32)
    xb, yb = device.upload(x, "test"), device.buffer(T_max * N * 4, "test")
    step = ops.step_buffer(device, "test")
    dispatches = L.linear(device, w, xb, yb, T_max, step)
    for T in (64, 0, 1, 63, 20):
        device.write(yb, np.full(T_max * N, np.nan, np.float32))
        ops.write_step(device, step, T, 0)
        device.run(dispatches)
        got = device.read_array(yb, np.float32, T_max * N).reshape(T_max, N)
        assert np.isnan(got[T:]).all()
        if T:
            assert rel_err(got[:T], x[:T].astype(np.float64) @ Wd.T) < 1e-5
    for b in (xb, yb, step):
        device.release(b)
    release(device, w)


# --- weights split into several chunks ------------------------------------------------


@pytest.fixture(scope="module")
def small_device():
    """A fresh Device whose storage bindings are pretended to be tiny."""
    from wgllm.gpu.device import Device
    from wgllm.gpu.discovery import choose_adapter

    dev = Device(choose_adapter().adapter)
    yield dev
    dev.destroy()


def split_weight(dev, rng, qtype, N, K, rows_per_binding):
    """A weight uploaded as 3 uneven parts into chunks of ~rows_per_binding rows."""
    rb = L.row_bytes(qtype, K)
    dev.max_binding = rows_per_binding * rb + L.PAD + 2  # not a multiple of 4
    raw = L.random_weight_bytes(rng, qtype, N, K)
    cuts = [0, 31 * rb, 32 * rb, N * rb]  # parts of 31, 1 and N - 32 rows
    parts = [raw[a:b] for a, b in zip(cuts, cuts[1:])]
    w = L.upload_weight(dev, parts, qtype, K, "test")
    return w, raw


@pytest.mark.parametrize("qtype", [Q.Q4_0, Q.Q6_K, Q.F16, Q.Q3_K], ids=lambda t: t.name)
def test_linear_split_weight(small_device, rng, qtype):
    N, K = 193, shape_for(qtype, 0)[1]
    w, raw = split_weight(small_device, rng, qtype, N, K, rows_per_binding=50)
    rows = [c[2] for c in w.chunks]
    assert len(w.chunks) >= 3 and sum(rows) == N
    assert [c[1] for c in w.chunks] == list(np.cumsum([0] + rows[:-1]))
    assert any(r % L.matvec_rows(w) and r % L.MATMUL_ROWS for r in rows)
    for buf, _, n in w.chunks:  # the bytes each holds (a weight texture, on CPU adapters, is whole 64 KiB rows)
        assert n * L.row_bytes(qtype, K) + PAD <= small_device.max_binding
        assert is_texels(buf) or buf.size <= small_device.max_binding
    Wd = dequant_ref(qtype, raw, N, K)
    assert np.array_equal(L.dequantize_gpu(small_device, w), Wd.astype(np.float32))
    for T, T_max in [(1, 1), (37, 64)]:
        for add in (False, True):
            run_linear(small_device, w, Wd, rng, T, T_max, "f32", add)
    release(small_device, w)


def test_split_get_rows(small_device, rng):
    qtype, N, K = Q.Q4_1, 193, 160
    w, raw = split_weight(small_device, rng, qtype, N, K, rows_per_binding=40)
    assert len(w.chunks) >= 3
    Wd = dequant_ref(qtype, raw, N, K).astype(np.float32)
    edges = [r for _, r0, n in w.chunks for r in (r0, r0 + n - 1)]
    ids = np.array(edges + list(rng.integers(0, N, 5)), np.uint32)
    T = len(ids)
    idb = small_device.upload(ids, "test")
    yb = small_device.upload(np.full((T, K), np.nan, np.float32), "test")
    step = ops.step_buffer(small_device, "test")
    ops.write_step(small_device, step, T, 0)
    small_device.run(L.get_rows(small_device, w, idb, yb, T, step))
    got = small_device.read_array(yb, np.float32, T * K).reshape(T, K)
    assert np.array_equal(got, Wd[ids])
    release(small_device, w)


@pytest.mark.parametrize("case", range(len(CASES)), ids=CASE_IDS)
@pytest.mark.parametrize("qtype", [Q.Q4_1, Q.Q6_K, Q.F16, Q.BF16, Q.Q5_0, Q.Q5_1, Q.IQ4_NL, Q.Q2_K, Q.Q3_K,
                                   Q.Q5_K, Q.IQ4_XS], ids=lambda t: t.name)
def test_linear_glu_input(device, act, rng, qtype, case):
    """glu=True: x rows are [gate | up] and the kernel multiplies W by silu(gate) * up."""
    T, T_max = CASES[case]
    N, K = shape_for(qtype, case)
    raw = L.random_weight_bytes(rng, qtype, N, K)
    Wd = dequant_ref(qtype, raw, N, K)
    w = L.upload_weight(device, [raw], qtype, K, "test")
    gu = (2 * rng.standard_normal((T_max, 2 * K))).astype(NP[act])
    y0 = rng.standard_normal((T_max, N)).astype(NP[act])
    try:
        check_product(device, w, Wd, gu, y0, T, T_max, act, add=True, glu=True)
    finally:
        release(device, w)


# --- the prefill matmul with K split over workgroups (few tiles: fill the GPU) ---------------


@pytest.mark.parametrize("glu", [False, True], ids=["x", "glu"])
@pytest.mark.parametrize("add", [False, True], ids=["set", "add"])
@pytest.mark.parametrize("qtype", [Q.Q4_0, Q.Q8_0, Q.Q4_K, Q.Q6_K, Q.F16], ids=lambda t: t.name)
@pytest.mark.parametrize("split", [True, False], ids=["split", "whole"])
def test_matmul_k_split(gpu_kernel_device, act, rng, monkeypatch, qtype, add, glu, split):
    """A product of one tile split into up to 8 slices of K (the last one shorter), partial sums
    added by splitk_sum (or not split): y equals numpy, rows past Step.T untouched, y added to
    with `add`."""
    dev = gpu_kernel_device
    monkeypatch.setattr(L, "MATMUL_MIN_KS", 32)  # small K splits on test-sized products
    if not split:
        monkeypatch.setattr(L, "MATMUL_FILL", 1)
    T, T_max = 37, 64
    N, K = shape_for(qtype, 4)  # 37 rows: one row tile
    raw = L.random_weight_bytes(rng, qtype, N, K)
    Wd = dequant_ref(qtype, raw, N, K)
    w = L.upload_weight(dev, [raw], qtype, K, "test")
    S, ks = L.matmul_splits(dev, w, N, T_max)
    if split:
        assert S >= 2 and ks % GGML_QUANT_SIZES[qtype][0] == 0 and (S - 1) * ks < K <= S * ks
    else:
        assert (S, ks) == (1, 0)
    x = rng.standard_normal((T_max, 2 * K if glu else K)).astype(NP[act])
    y0 = rng.standard_normal((T_max, N)).astype(NP[act])
    try:
        check_product(dev, w, Wd, x, y0, T, T_max, act, add=add, glu=glu)
    finally:
        release(dev, w)


def test_matmul_splits_only_few_tiles(gpu_kernel_device, device, rng):
    """K is split only where the tiles alone are few, never on a CPU adapter's build."""
    w = L.upload_weight(gpu_kernel_device, [L.random_weight_bytes(rng, Q.Q4_0, 256, 4096)], Q.Q4_0, 4096, "test")
    try:
        assert L.matmul_splits(gpu_kernel_device, w, 256, 128)[0] == min(L.MATMUL_MAX_SPLITS, 4096 // 512)
        assert L.matmul_splits(gpu_kernel_device, w, 128 * L.MATMUL_FILL, 64) == (1, 0)
        if device.kind == "cpu":
            assert L.matmul_splits(device, w, 256, 128) == (1, 0)
    finally:
        release(gpu_kernel_device, w)


# --- matvec tilings: invocations per row group, unrolling, subgroup row sums ------------


@pytest.mark.parametrize("tiling", ["tpr=subgroup", "tpr=16,unroll=2", "tpr=8,unroll=4", "tpr=8,pairs=1", "tpr=64"])
@pytest.mark.parametrize("case", [0, 4], ids=["T1of1", "T1of1long"])
@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_matvec_tilings(gpu_kernel_device, monkeypatch, rng, qtype, case, tiling):
    """The decode matvec with other tilings than the type's: row groups as wide as the
    device's subgroup (row sums by subgroup shuffles), 16 lanes unrolled twice, 8 lanes unrolled
    four times (units past the row's end in the last iteration), 8 lanes with one row pair (shuffles where the subgroup is a multiple of 8, else workgroup memory);
    the tiling by shape (matvec_kern) off, so that the type's tiling is the one run."""
    monkeypatch.setattr(L, "MATVEC_LONG_K", None)
    monkeypatch.setattr(L, "MATVEC_FEW_ROWS", None)
    dev = gpu_kernel_device
    sg = ops.subgroup_size(dev)
    fields = dict(kv.split("=") for kv in tiling.split(","))
    if fields["tpr"] == "subgroup":
        if sg not in (8, 16, 32):
            pytest.skip(f"subgroup size {sg or 'none'}: no row group of that width")
        fields["tpr"] = sg
    monkeypatch.setitem(qtypes.TYPES, qtype.name,
                        dataclasses.replace(qtypes.TYPES[qtype.name], **{k: int(v) for k, v in fields.items()}))
    N, K = shape_for(qtype, case)
    raw = L.random_weight_bytes(rng, qtype, N, K)
    w = L.upload_weight(dev, [raw], qtype, K, "test")
    try:
        run_linear(dev, w, dequant_ref(qtype, raw, N, K), rng, 1, 1, "f32", add=case == 4)
    finally:
        release(dev, w)


# the matvec tilings by shape (linear.matvec_kern): (MATVEC_LONG_K, MATVEC_FEW_ROWS) set so that
# the test's product has long rows, few rows, or neither (the type's own tiling)
MATVEC_SHAPE_RULES = {"long": (1000, None), "few": (None, 10**9), "many": (None, None)}


@pytest.mark.parametrize("rule", list(MATVEC_SHAPE_RULES))
@pytest.mark.parametrize("qtype", [Q.Q4_0, Q.Q4_K, Q.Q8_0, Q.Q6_K], ids=lambda t: t.name)
def test_matvec_tiling_by_shape(gpu_kernel_device, monkeypatch, rng, qtype, rule):
    """matvec_kern: rows of K >= MATVEC_LONG_K get MATVEC_LONG_TPR lanes per row, products of
    N <= MATVEC_FEW_ROWS rows one row pair per row group, others the type's tiling (types with a
    batched tile always theirs); each right alone and, batched, bit for bit the row alone."""
    dev = gpu_kernel_device
    long_k, few = MATVEC_SHAPE_RULES[rule]
    monkeypatch.setattr(L, "MATVEC_LONG_K", long_k)
    monkeypatch.setattr(L, "MATVEC_FEW_ROWS", few)
    N, K = shape_for(qtype, 4)
    raw = L.random_weight_bytes(rng, qtype, N, K)
    w = L.upload_weight(dev, [raw], qtype, K, "test")
    x = rng.standard_normal((3, K)).astype(np.float32)
    st = ops.step_buffer(dev, "test")
    bufs = [dev.upload(x, "test"), dev.buffer(3 * N * 4, "test"), dev.buffer(N * 4, "test")]
    xb, y3, y1 = bufs
    try:
        run_linear(dev, w, dequant_ref(qtype, raw, N, K), rng, 1, 1, "f32", add=True)
        ops.write_batch_step(dev, st, [(0, 1), (1, 2), (2, 3)])
        dev.run(L.linear(dev, w, xb, y3, 3, st, batched=True))
        batched = dev.read_array(y3, np.float32, 3 * N).reshape(3, N)
        for r in range(3):
            one = dev.upload(x[r:r + 1], "test")
            ops.write_step(dev, st, 1, 0)
            (d,) = L.linear(dev, w, one, y1, 1, st)
            own = qtypes.qtype(qtype)
            long_rows, few_rows = rule == "long" and not own.tile, rule == "few" and not own.tile
            assert L.matvec_kern(w).tpr == (L.MATVEC_LONG_TPR if long_rows else own.tpr)
            assert L.matvec_kern(w).pairs == (1 if few_rows else own.pairs)
            assert d.groups[0] * d.groups[1] == -(-N // L.matvec_rows(w))
            dev.run([d])
            assert np.array_equal(dev.read_array(y1, np.float32, N), batched[r])
            dev.release(one)
    finally:
        for b in (*bufs, st):
            dev.release(b)
        release(dev, w)


SLICED_TYPES = [q.ggml for q in qtypes.TYPES.values() if q.sliced]


@pytest.mark.parametrize("tiling", ["unroll=1", "unroll=4", "tpr=64", "tpr=8,pairs=1"])
@pytest.mark.parametrize("case", [0, 1, 4], ids=["short", "short2", "long"])
@pytest.mark.parametrize("glu", [False, True], ids=["x", "glu"])
@pytest.mark.parametrize("qtype", SLICED_TYPES, ids=lambda t: t.name)
def test_matvec_sliced(gpu_kernel_device, act, rng, monkeypatch, qtype, glu, case, tiling):
    """MATVEC_SLICED: types with a sliced body (a quants word of a block per lane) against numpy,
    x or GLU input, added to y, several tilings (a last iteration past the row's end with
    unrolling); batched, each row bit for bit the row alone."""
    monkeypatch.setattr(L, "MATVEC_SLICED", True)
    fields = dict(kv.split("=") for kv in tiling.split(","))
    monkeypatch.setitem(qtypes.TYPES, qtype.name,
                        dataclasses.replace(qtypes.TYPES[qtype.name], **{k: int(v) for k, v in fields.items()}))
    dev = gpu_kernel_device
    N, K = shape_for(qtype, case)
    raw = L.random_weight_bytes(rng, qtype, N, K)
    w = L.upload_weight(dev, [raw], qtype, K, "test")
    assert L.matvec_kern(w).kernel == qtypes.qtype(qtype).kernel + "s"
    xs = (2 * rng.standard_normal((3, 2 * K if glu else K))).astype(NP[act])
    y0 = rng.standard_normal((3, N)).astype(NP[act])
    st = ops.step_buffer(dev, "test")
    xb, y3, y1 = dev.upload(xs, "test"), dev.upload(y0, "test"), dev.buffer(N * 4, "test")
    try:
        check_product(dev, w, dequant_ref(qtype, raw, N, K), xs[:1], y0[:1], 1, 1, act, add=True, glu=glu)
        ops.write_batch_step(dev, st, [(0, 1), (1, 2), (2, 3)])
        dev.run(L.linear(dev, w, xb, y3, 3, st, x_type=act, y_type=act, glu=glu, batched=True))
        batched = dev.read_array(y3, NP[act], 3 * N).reshape(3, N)
        for r in range(3):
            one = dev.upload(xs[r:r + 1], "test")
            ops.write_step(dev, st, 1, 0)
            dev.run(L.linear(dev, w, one, y1, 1, st, x_type=act, y_type=act, glu=glu))
            assert np.array_equal(dev.read_array(y1, NP[act], N), batched[r])
            dev.release(one)
    finally:
        for b in (xb, y3, y1, st):
            dev.release(b)
        release(dev, w)


# (type, MATVEC_TILE): types with a batched tile (qtypes `tile`) at two tile sizes, others once
BATCHED_CASES = [(q, tb) for q in [Q.Q4_0, Q.Q4_1, Q.Q6_K, Q.F16, Q.Q2_K, Q.IQ4_XS]
                 for tb in ([4, 16] if qtypes.qtype(q).tile else [16])]


@pytest.mark.parametrize("case", [1, 4, 5], ids=["short", "long", "aligned"])
@pytest.mark.parametrize("B", [1, 3, 9, 11])
@pytest.mark.parametrize("qtype,tile", BATCHED_CASES, ids=lambda v: getattr(v, "name", f"tile{v}"))
def test_batched_rows_equal_each_row_alone(kdevice, act, rng, monkeypatch, qtype, tile, B, case):
    """linear(batched=True) (the continuous-batching pass, built for 11 rows, run with fewer:
    for types with a tile (qtypes `tile`), `tile` tokens per workgroup sharing each unpacked
    weight unit, a last tile cut short; for the others the matvec per row) gives every row bit
    for bit what the one-row matvec gives it, and it is right; "long" rows take a second loop
    iteration in some lanes; "aligned" rows go through matwide (GPU kernels, `wide` types)."""
    monkeypatch.setattr(L, "MATVEC_TILE", tile)
    monkeypatch.setattr(L, "MATWIDE", case == 5)
    dev = kdevice
    N, K = shape_for(qtype, case)
    raw = L.random_weight_bytes(rng, qtype, N, K)
    w = L.upload_weight(dev, [raw], qtype, K, "weights")
    x = rng.standard_normal((B, K)).astype(NP[act])
    xb, yb, y1 = dev.upload(x, "act"), dev.buffer(B * N * 4, "act"), dev.buffer(N * 4, "act")
    step, one = ops.step_buffer(dev), ops.step_buffer(dev)
    ops.write_batch_step(dev, step, [(0, 0)] * B)
    dev.run(L.linear(dev, w, xb, yb, 11, step, x_type=act, batched=True), T=B)
    got = dev.read_array(yb, np.float32, B * N).reshape(B, N)
    ops.write_step(dev, one, 1, 0)
    for t in range(B):
        xt = dev.upload(x[t], "act")
        dev.run(L.linear(dev, w, xt, y1, 1, one, x_type=act))
        assert np.array_equal(dev.read_array(y1, np.float32, N), got[t]), f"row {t}"
    ref = x.astype(np.float64) @ dequant_ref(qtype, raw, N, K).T
    assert rel_err(got, ref) < TOL[act]
    release(dev, w)


@pytest.mark.parametrize("qtype", [Q.Q4_1, Q.Q8_0, Q.Q4_K], ids=lambda t: t.name)
@pytest.mark.parametrize("T_max", [1, 16])
def test_rowdot_x_uniform_equals_storage(device, act, rng, monkeypatch, qtype, T_max):
    """CPU adapters: rowdot reads x as a uniform array when its buffer fits a uniform binding;
    the result is bit for bit the storage-read one (and right against numpy)."""
    if device.kind != "cpu":
        pytest.skip("rowdot is the CPU adapters' kernel")
    N, K = 67, 512 if GGML_QUANT_SIZES[qtype][0] == 256 else 160
    raw = L.random_weight_bytes(rng, qtype, N, K)
    w = L.upload_weight(device, [raw], qtype, K, "test")
    x = rng.standard_normal((T_max, K)).astype(NP[act])
    xb, yb, step = device.upload(x, "test"), device.buffer(T_max * N * 4, "test"), ops.step_buffer(device, "test")
    ops.write_step(device, step, T_max, 0)
    assert device.uniform_ok(xb), "x should fit a uniform binding here"
    monkeypatch.setattr(L, "ROWDOT_RESIDENT", False)  # the same kernel either way (resident rows: own test)
    got = {}
    try:
        for uni in (True, False):
            monkeypatch.setattr(type(device), "uniform_ok", lambda self, b, uni=uni: uni)
            ds = L.linear(device, w, xb, yb, T_max, step, x_type=act, y_type="f32")
            assert ds[0].name == "rowdot"
            device.run(ds)
            got[uni] = device.read_array(yb, np.float32, T_max * N).reshape(T_max, N)
    finally:
        release(device, w)
        for b in (xb, yb, step):
            device.release(b)
    assert np.array_equal(got[True], got[False])
    ref = x.astype(np.float64) @ dequant_ref(qtype, raw, N, K).T
    assert rel_err(got[True], ref) < TOL[act]


RESIDENT_TYPES = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q4_K, Q.F16, Q.F32]


def _silu(g):
    return g / (1 + np.exp(-g))


# form: (T, T_max, K); K = 256: rows of 8 32-blocks (their bytes align so that resident rows fit);
# K = 576 (SmolLM2's width): other block groups and loop counts in the tiled form
RESIDENT_FORMS = {"plain": (29, 32, 256), "plain_576": (13, 16, 576), "glu_in": (2, 2, 256), "glu_out": (13, 16, 256)}


@pytest.mark.parametrize("form", list(RESIDENT_FORMS))
@pytest.mark.parametrize("qtype", RESIDENT_TYPES, ids=lambda t: t.name)
def test_rowdot_resident_rows(device, act, rng, monkeypatch, qtype, form):
    """CPU adapters, prefill passes with x uniform: rowdot's resident-rows form (rows
    dequantized once, then a loop over the tokens) against float64 numpy, for every type
    that has it, plain, with the GLU input (silu) and with the fused GLU output (gelu);
    rows past Step.T untouched; and bit for bit the tiled form's result (a token's sums must
    not depend on the form of its pass: batched == solo, exact replays). Fails if the
    resident form was not the one built."""
    if device.kind != "cpu":
        pytest.skip("rowdot is the CPU adapters' kernel")
    from wgllm.kernels import rowdot
    built, real = [], rowdot.resident
    monkeypatch.setattr(rowdot, "resident", lambda *a, **k: built.append(a) or real(*a, **k))
    T, T_max, K = RESIDENT_FORMS[form]
    if K % GGML_QUANT_SIZES[qtype][0]:
        K = 512  # (Q4_K: whole 256-blocks)
    N = 2 * 45 if form == "glu_out" else 67  # odd N (F = 45 outputs of the fused GLU)
    raw = L.random_weight_bytes(rng, qtype, N, K)
    Wd = dequant_ref(qtype, raw, N, K)
    w = L.upload_weight(device, [raw], qtype, K, "test")
    x = rng.standard_normal((T_max, 2 * K if form == "glu_in" else K)).astype(NP[act])
    out = N // 2 if form == "glu_out" else N
    xb, yb = device.upload(x, "test"), device.buffer(T_max * out * np.dtype(NP[act]).itemsize, "test")
    step = ops.step_buffer(device, "test")
    ops.write_step(device, step, T, 0)
    got = {}
    try:
        assert device.uniform_ok(xb), "x should fit a uniform binding here"
        kw = {"glu": "silu"} if form == "glu_in" else {"glu_out": "gelu"} if form == "glu_out" else {}
        for on in (True, False):
            monkeypatch.setattr(L, "ROWDOT_RESIDENT", on)
            device.write(yb, np.full((T_max, out), np.nan, NP[act]))
            n = len(built)
            device.run(L.linear(device, w, xb, yb, T_max, step, x_type=act, y_type=act, **kw))
            assert (len(built) > n) == on, "resident rows built when off, or not built when on"
            got[on] = device.read_array(yb, NP[act], T_max * out).reshape(T_max, out)
    finally:
        for b in (xb, yb, step):
            device.release(b)
        release(device, w)
    xd = x[:T].astype(np.float64)
    if form == "glu_in":
        xd = _silu(xd[:, :K]) * xd[:, K:]
    ref = xd @ Wd.T
    if form == "glu_out":
        g, u = ref[:, :out], ref[:, out:]
        ref = g * 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g**3))) * u
    assert rel_err(got[True][:T], ref) < TOL[act]
    assert np.isnan(got[True][T:]).all(), "rows t >= Step.T were written"
    assert np.array_equal(got[True][:T], got[False][:T]), "resident rows round differently from the tiled form"


@pytest.mark.parametrize("case", range(len(CASES)), ids=CASE_IDS)
@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_linear_glu_output(device, act, rng, qtype, case):
    """glu_out: W is [gate | up] (2 F rows) and y [T, F] = act(gate . x) * (up . x), written
    compactly (row stride F); where the adapter cannot fuse it, a ValueError. GELU in the
    odd cases, silu in the others."""
    T, T_max = CASES[case]
    gelu = case % 2 == 1
    F, K = shape_for(qtype, case)
    raw = L.random_weight_bytes(rng, qtype, 2 * F, K)
    w = L.upload_weight(device, [raw], qtype, K, "test")
    x = rng.standard_normal((T_max, K)).astype(NP[act])
    xb = device.upload(x, "test")
    yb = device.upload(np.full((T_max, 2 * F), np.nan, NP[act]), "test")  # poison, 2x the output
    step = ops.step_buffer(device, "test")
    ops.write_step(device, step, T, 0)
    try:
        if not L.fuses_glu(device, w):
            assert device.kind != "cpu" or not qtypes.qtype(qtype.name).rowdot
            with pytest.raises(ValueError, match="cannot fuse"):
                L.linear(device, w, xb, yb, T_max, step, x_type=act, y_type=act, glu_out="silu")
            return
        device.run(L.linear(device, w, xb, yb, T_max, step, x_type=act, y_type=act,
                            glu_out="gelu" if gelu else "silu"))
        got = device.read_array(yb, NP[act], T_max * 2 * F)
        h = x[:T].astype(np.float64) @ dequant_ref(qtype, raw, 2 * F, K).T
        g, u = h[:, :F], h[:, F:]
        a = g * 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g**3))) if gelu else g / (1 + np.exp(-g))
        assert rel_err(got[:T * F].reshape(T, F), a * u) < TOL[act]
        assert np.isnan(got[T * F:]).all(), "wrote past y[T, F]"
    finally:
        for b in (xb, yb, step):
            device.release(b)
        release(device, w)


# --- matwide: the GPU decode matvec of aligned block groups -----------------------------

WIDE_TYPES = [q for q in TYPES if qtypes.qtype(q).wide]


@pytest.fixture
def matwide_on(monkeypatch):
    """matwide and the fused decode norm enabled (linear.MATWIDE, DECODE_NORM: off by default, see
    their comments)."""
    monkeypatch.setattr(L, "MATWIDE", True)
    monkeypatch.setattr(L, "DECODE_NORM", True)
# (tpr, R): the shapes' defaults (32/1, 32/4, 16/4) and row groups as wide as lavapipe's subgroups
# of 8 (8/4, 8/2: sums by shuffles there; the others through workgroup memory)
WIDE_TILINGS = [(32, 1), (32, 4), (16, 4), (8, 4), (8, 2)]


@pytest.mark.parametrize("tiling,glu", [(t, False) for t in WIDE_TILINGS] + [((32, 4), True), ((8, 2), True)],
                         ids=lambda v: f"t{v[0]}r{v[1]}" if isinstance(v, tuple) else ("glu" if v else "x"))
@pytest.mark.parametrize("qtype", WIDE_TYPES, ids=lambda t: t.name)
def test_matwide_matches_numpy(gpu_kernel_device, act, rng, monkeypatch, qtype, tiling, glu, matwide_on):
    """GPU decode of `wide` types with rows of whole 16-byte block groups goes through matwide
    (asserted), and matches float64 numpy with each tiling: N odd (a last row group cut short,
    row groups past the chunk), K = 3 block groups (lanes without work) and 37 (lanes with two)
    of 256 elements, the residual add, the GLU input."""
    monkeypatch.setattr(L, "MATWIDE_TILING", tiling)
    dev = gpu_kernel_device
    for N, K in [(67, 768), (29, 37 * 256)]:
        raw = L.random_weight_bytes(rng, qtype, N, K)
        Wd = dequant_ref(qtype, raw, N, K)
        w = L.upload_weight(dev, [raw], qtype, K, "test")
        assert L.wide_tiling(dev, w) == tiling
        x = (2 * rng.standard_normal((1, 2 * K if glu else K))).astype(NP[act])
        y0 = rng.standard_normal((1, N)).astype(NP[act])
        xb, yb = dev.upload(x, "test"), dev.upload(y0, "test")
        step = ops.step_buffer(dev, "test")
        ops.write_step(dev, step, 1, 0)
        try:
            dev.run(L.linear(dev, w, xb, yb, 1, step, x_type=act, y_type=act, add=True, glu=glu))
            got = dev.read_array(yb, NP[act], N).reshape(1, N)
            xs = x.astype(np.float64)
            if glu:
                g, u = xs[:, :K], xs[:, K:]
                xs = g / (1 + np.exp(-g)) * u
            assert rel_err(got, y0.astype(np.float64) + xs @ Wd.T) < TOL[act]
        finally:
            for b in (xb, yb, step):
                dev.release(b)
            release(dev, w)


def test_matwide_routing(gpu_kernel_device, device, rng, matwide_on):
    """Which decode products matwide takes: aligned rows of `wide` types on GPU adapters; not
    rows of a partial block group, not products of more than MATWIDE_MAX_ROWS rows, not types
    without `wide`, never on a CPU adapter's own kernels."""
    dev = gpu_kernel_device

    def tiling(d, qtype, N, K):
        w = L.GpuWeight(qtype, K, N, [], 0)
        return L.wide_tiling(d, w)

    assert tiling(dev, Q.Q4_0, 4096, 4096) == (16, 4)
    assert tiling(dev, Q.Q4_0, 4096, 14336) == (32, 4)
    assert tiling(dev, Q.Q4_0, 1024, 4096) == (32, 1)
    assert tiling(dev, Q.Q4_0, L.MATWIDE_MAX_ROWS + 1, 4096) is None
    assert tiling(dev, Q.Q4_0, 4096, 4096 + 32) is None  # 129 blocks: not whole groups of 8
    assert tiling(dev, Q.Q4_K, 4096, 4096) is None
    if device.kind == "cpu":
        assert tiling(device, Q.Q4_0, 4096, 4096) is None


def test_fused_norm_needs_the_row_in_workgroup_memory(matwide_on):
    """fuses_norm: only where the normed f32 row (4 K bytes) and the row sums fit the adapter's
    workgroup memory; never on a CPU adapter, never in prefill."""
    import types

    w = L.GpuWeight(Q.Q4_0, 4096, 4096, [], 0)
    big = types.SimpleNamespace(kind="gpu", limits={"max-compute-workgroup-storage-size": 49152})
    small = types.SimpleNamespace(kind="gpu", limits={"max-compute-workgroup-storage-size": 16384})
    cpu = types.SimpleNamespace(kind="cpu", limits={"max-compute-workgroup-storage-size": 49152})
    assert L.fuses_norm(big, w, 1) and L.fuses_norm(big, w, 8, batched=True) and not L.fuses_norm(big, w, 8)
    assert not L.fuses_norm(small, w, 1) and not L.fuses_norm(cpu, w, 1)


# (type, matwide tiling or None for matvec, N, K): matwide's tilings; matvec for types without
# `wide`, rows of a partial block group, and K-quants
NORM_CASES = [(Q.Q4_0, (32, 4), 67, 13 * 256), (Q.Q8_0, (16, 4), 67, 13 * 256), (Q.Q5_1, (8, 2), 67, 13 * 256),
              (Q.Q4_0, None, 67, 1056), (Q.Q4_K, None, 67, 2304), (Q.Q6_K, None, 35, 512), (Q.F16, None, 67, 160),
              (Q.IQ4_XS, None, 35, 512), (Q.Q2_K, None, 35, 768)]


@pytest.mark.parametrize("B", [1, 5])
@pytest.mark.parametrize("case", NORM_CASES, ids=lambda c: f"{c[0].name}-{'t%dr%d' % c[1] if c[1] else 'matvec'}")
def test_decode_fused_norm(gpu_kernel_device, act, rng, monkeypatch, case, B, matwide_on):
    """linear(norm=(nw, eps)) on a GPU adapter's decode kernels (matwide where the type and rows
    allow, else matvec, asserted): the RMSNorm of the f32 residual rows done in the x loads matches
    float64 numpy's rmsnorm(x) * nw @ W.T; in a batched pass (B rows) each row is bit for bit the
    one-row result; prefill passes refuse it."""
    qtype, tiling, N, K = case
    monkeypatch.setattr(L, "MATWIDE_TILING", tiling)
    monkeypatch.setattr(L, "MATVEC_TILE", 1)  # (Q6_K's batched tile has no fused norm)
    dev = gpu_kernel_device
    eps = 1e-5
    raw = L.random_weight_bytes(rng, qtype, N, K)
    w = L.upload_weight(dev, [raw], qtype, K, "test")
    assert L.wide_tiling(dev, w) == tiling and L.fuses_norm(dev, w, 1) and not L.fuses_norm(dev, w, 4)
    x = (3 * rng.standard_normal((B, K))).astype(np.float32)
    nw = rng.uniform(0.5, 1.5, K).astype(np.float32)
    xb, nwb, yb, y1 = dev.upload(x, "x"), dev.upload(nw, "nw"), dev.buffer(B * N * 4, "y"), dev.buffer(N * 4, "y")
    step, one = ops.step_buffer(dev), ops.step_buffer(dev)
    try:
        ops.write_batch_step(dev, step, [(0, 0)] * B)
        dev.run(L.linear(dev, w, xb, yb, 11, step, y_type=act, batched=True, norm=(nwb, eps)), T=B)
        got = dev.read_array(yb, NP[act], B * N).reshape(B, N)
        xs = x.astype(np.float64)
        xn = xs / np.sqrt((xs * xs).mean(axis=1, keepdims=True) + eps) * nw
        assert rel_err(got, xn @ dequant_ref(qtype, raw, N, K).T) < TOL[act]
        ops.write_step(dev, one, 1, 0)
        for t in range(B):
            xt = dev.upload(x[t], "x")
            dev.run(L.linear(dev, w, xt, y1, 1, one, y_type=act, norm=(nwb, eps)))
            assert np.array_equal(dev.read_array(y1, NP[act], N), got[t]), f"row {t}"
            dev.release(xt)
        with pytest.raises(ValueError, match="fuses_norm"):
            L.linear(dev, w, xb, yb, 4, step, norm=(nwb, eps))
    finally:
        for b in (xb, nwb, yb, y1, step, one):
            dev.release(b)
        release(dev, w)


@pytest.mark.parametrize("glu", [False, True], ids=["x", "glu"])
@pytest.mark.parametrize("qtype", [Q.Q4_0, Q.Q5_1], ids=lambda t: t.name)
def test_matwide_lazy_loads_same_bits(gpu_kernel_device, act, rng, monkeypatch, qtype, glu, matwide_on):
    """MATWIDE_LAZY (each weight vec4 loaded just before its first use) gives the bits of the
    loads-first body: the same arithmetic in the same order."""
    dev = gpu_kernel_device
    N, K = 67, 37 * 256
    raw = L.random_weight_bytes(rng, qtype, N, K)
    w = L.upload_weight(dev, [raw], qtype, K, "test")
    x = rng.standard_normal((1, 2 * K if glu else K)).astype(NP[act])
    xb, yb = dev.upload(x, "x"), dev.buffer(N * 4, "y")
    step = ops.step_buffer(dev)
    ops.write_step(dev, step, 1, 0)
    got = []
    for lazy in (False, True):
        monkeypatch.setattr(L, "MATWIDE_LAZY", lazy)
        dev.run(L.linear(dev, w, xb, yb, 1, step, x_type=act, glu=glu))
        got.append(dev.read_array(yb, np.float32, N))
    assert L.wide_tiling(dev, w) is not None and np.array_equal(got[0], got[1])
    for b in (xb, yb, step):
        dev.release(b)
    release(dev, w)
