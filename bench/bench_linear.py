"""Time `wgllm.kernels.linear.linear` on random raw GGUF weights.

    python bench/bench_linear.py                      # default shapes, T = 1
    python bench/bench_linear.py --shape Q4_0:4096x14336 --T 512
    python bench/bench_linear.py --rounds 2            # and each shape's best of 2 rounds

TYPE is any runnable type of kernels/qtypes.py (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1
IQ4_NL Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_XS).

For each shape KxN (K = row length, N = rows) it uploads enough copies of a
random weight to exceed the GPU's last-level cache (cycled, so every dispatch
reads its weight from memory; all shapes' copies go into one arena buffer, the
same memory for every type, unless --fresh-buffers), encodes `iters` linear calls in one submission,
and prints the time per call, the weight bandwidth (weight bytes / time) and the
arithmetic rate. A device-to-device buffer copy gives the memory bandwidth seen
through WebGPU, for comparison.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import wgpu
from gguf import GGMLQuantizationType

from wgllm.gpu.device import Device
from wgllm.gpu.discovery import choose_adapter
from wgllm.kernels import linear as L
from wgllm.kernels import ops, qtypes

DEFAULT_SHAPES = ["Q4_0:4096x14336", "Q4_1:576x1536", "Q8_0:4096x4096", "Q4_K:4096x14336", "Q6_K:4096x14336", "F16:4096x4096",
                  "F32:4096x4096", "BF16:4096x4096", "Q5_0:4096x14336", "Q5_1:4096x14336", "IQ4_NL:4096x14336",
                  "Q2_K:4096x14336", "Q3_K:4096x14336", "Q5_K:4096x14336", "IQ4_XS:4096x14336"]
COLD_BYTES = 512 << 20  # weight copies cycled per run: more than any L2
MAX_COPIES = 256


class _TimestampAdapter:
    """The adapter, asking for the timestamp-query feature too (when it has it)."""

    def __init__(self, adapter):
        self._a = adapter

    def __getattr__(self, name):
        return getattr(self._a, name)

    def request_device_sync(self, *, required_features=(), **kw):
        return self._a.request_device_sync(required_features=list(required_features) + ["timestamp-query"], **kw)


def timed(dev: Device, dispatches, reps: int = 5) -> float:
    """Best time (s) of one compute pass running `dispatches`: GPU timestamps around
    the pass where the device has them, else wall time of submit-to-completion."""
    if dev.timestamps:
        qs = dev.device.create_query_set(type="timestamp", count=2)
        res = dev.buffer(16, "bench ts", wgpu.BufferUsage.QUERY_RESOLVE | wgpu.BufferUsage.COPY_SRC)
    best = float("inf")
    for i in range(reps + 1):  # the first run warms up
        enc = dev.device.create_command_encoder()
        ts = {"query_set": qs, "beginning_of_pass_write_index": 0, "end_of_pass_write_index": 1} if dev.timestamps else None
        cpass = enc.begin_compute_pass(timestamp_writes=ts)
        for d in dispatches:
            d.encode(cpass)
        cpass.end()
        if dev.timestamps:
            enc.resolve_query_set(qs, 0, 2, res, 0)
        buf = enc.finish()
        t = time.perf_counter()
        dev.queue.submit([buf])
        dev.read(dev._sync, 0, 4)
        dt = time.perf_counter() - t
        if dev.timestamps:
            a, b = np.frombuffer(dev.read(res), np.uint64)
            dt = (int(b) - int(a)) * 1e-9  # ticks taken as ns (timestampPeriod is 1 on NVIDIA and lavapipe)
        if i:
            best = min(best, dt)
    return best


def copy_bandwidth(dev: Device, nbytes: int = 1 << 30, iters: int = 10) -> float:
    """GB/s of a device-to-device copy (bytes read + bytes written)."""
    a, b = dev.buffer(nbytes, "bench copy"), dev.buffer(nbytes, "bench copy")
    enc_fn = lambda: _copies(dev, a, b, nbytes, iters)  # noqa: E731
    dev.queue.submit([enc_fn()])
    dev.read(b, 0, 4)
    t = time.perf_counter()
    dev.queue.submit([enc_fn()])
    dev.read(b, 0, 4)
    dt = time.perf_counter() - t
    dev.release(a)
    dev.release(b)
    return 2 * nbytes * iters / dt / 1e9


def _copies(dev, a, b, nbytes, iters):
    enc = dev.device.create_command_encoder()
    for _ in range(iters):
        enc.copy_buffer_to_buffer(a, 0, b, 0, nbytes)
    return enc.finish()


ARENA_BYTES = COLD_BYTES + (160 << 20)  # the copies of every default shape fit


def arena_weights(dev: Device, arena, raw, qtype, K: int, N: int, copies: int) -> list | None:
    """`copies` of weight `raw` written one after another into the buffer `arena` (bound at
    256-byte aligned offsets), or None when they do not fit it or one binding."""
    step = -(-(raw.nbytes + L.PAD) // 256) * 256
    if arena is None or copies * step > arena.size or step > dev.max_binding:
        return None
    out = []
    for i in range(copies):
        dev.write(arena, raw, i * step)
        out.append(L.GpuWeight(qtype, K, N, [((arena, i * step, step), 0, N)], raw.nbytes))
    return out


def bench_shape(dev: Device, qtype: GGMLQuantizationType, K: int, N: int, T: int, iters: int, rng,
                arena=None, batched: bool = False) -> float:
    """Time one shape; with `arena` (a buffer) its copies live there, so that every shape reads
    the same memory (separate buffers per shape were seen to change one type's speed by up to
    1.5x with the allocations made and freed before it)."""
    raw = L.random_weight_bytes(rng, qtype, N, K)
    copies = min(MAX_COPIES, max(1, -(-COLD_BYTES // raw.nbytes)))
    weights = arena_weights(dev, arena, raw, qtype, K, N, copies)
    own = weights is None
    if own:
        weights = [L.upload_weight(dev, [raw], qtype, K, "bench w") for _ in range(copies)]
    x = dev.upload(rng.standard_normal((T, K)).astype(np.float32), "bench x")
    y = dev.buffer(T * N * 4, "bench y")
    step = ops.step_buffer(dev, "bench step")
    if batched:
        ops.write_batch_step(dev, step, [(0, 0)] * T)
    else:
        ops.write_step(dev, step, T, 0)
    per_w = [L.linear(dev, w, x, y, T, step, batched=batched) for w in weights]
    dispatches = [d for i in range(iters) for d in per_w[i % copies]]
    dt = timed(dev, dispatches) / iters
    gbs = raw.nbytes / dt / 1e9
    tflops = 2 * T * K * N / dt / 1e12
    print(f"{qtype.name:5s} K={K:5d} N={N:6d} T={T:4d}{' batched' if batched else ''}  {raw.nbytes / 1e6:8.2f} MB  "
          f"{dt * 1e6:9.1f} us/call  {gbs:7.1f} GB/s  {tflops:6.2f} TFLOP/s  ({copies} copies, "
          f"{len(weights[0].chunks)} chunk(s){', one arena' if not own else ''})")
    for w in weights if own else ():
        for buf, _, _ in w.chunks:
            dev.release(buf)
    for b in (x, y, step):
        dev.release(b)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", action="append", help="TYPE:KxN, e.g. Q4_0:4096x14336 (repeatable)")
    ap.add_argument("--T", type=int, default=1, help="tokens per call (1: decode matvec)")
    ap.add_argument("--batched", action="store_true",
                    help="T rows of a batched decode pass (linear(batched=True): the matvec per row, or the tile)")
    ap.add_argument("--tile", type=int, default=None, help="tokens per matvec tile of a batched pass (MATVEC_TILE)")
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=1,
                    help="time the shapes this many times over (each a fresh upload), then print each shape's best "
                         "(the H200 showed slow spells of a few seconds that hit whichever shapes ran then)")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--fresh-buffers", action="store_true",
                    help="upload each shape's copies into buffers of their own (freed after it), not one arena")
    args = ap.parse_args()
    if args.tile is not None:
        L.MATVEC_TILE = args.tile
    info = choose_adapter(args.adapter)
    has_ts = "timestamp-query" in info.adapter.features
    dev = Device(_TimestampAdapter(info.adapter) if has_ts else info.adapter)
    dev.timestamps = has_ts
    dev._sync = dev.buffer(4, "bench sync")
    print(f"adapter: {info.summary}; timing: {'GPU timestamps' if has_ts else 'wall clock'}")
    print(f"device copy: {copy_bandwidth(dev):.1f} GB/s (read + write)")
    rng = np.random.default_rng(0)
    sg = ops.subgroup_size(dev)
    print(f"subgroup size: {sg or 'none'} (matvec row sums by {'subgroup shuffles' if sg >= 32 else 'workgroup memory'})")
    arena = None if args.fresh_buffers else dev.buffer(min(ARENA_BYTES, dev.max_buffer), "bench arena")
    best: dict[str, float] = {}
    for r in range(args.rounds):
        if args.rounds > 1:
            print(f"round {r}")
        for spec in args.shape or DEFAULT_SHAPES:
            name, dims = spec.split(":")
            K, N = (int(v) for v in dims.lower().split("x"))
            dt = bench_shape(dev, GGMLQuantizationType[name.upper()], K, N, args.T, args.iters, rng, arena, args.batched)
            best[spec] = min(dt, best.get(spec, dt))
    if args.rounds > 1:
        print(f"best of {args.rounds} rounds:")
        for spec, dt in best.items():
            name, dims = spec.split(":")
            K, N = (int(v) for v in dims.lower().split("x"))
            nbytes = qtypes.qtype(name.upper()).nbytes((N, K))
            print(f"{name.upper():6s} {K}x{N}  {dt * 1e6:9.1f} us/call  {nbytes / dt / 1e9:7.1f} GB/s")


if __name__ == "__main__":
    main()
