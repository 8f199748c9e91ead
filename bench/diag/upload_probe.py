"""Where a model's load time goes: host-to-GPU upload paths from a GGUF file in the page cache.

    python bench/diag/upload_probe.py FILE [--gb 2] [--rounds 2] [--profile]

Each variant uploads the first --gb GB of FILE (np.memmap, read once before so it is in the
page cache) into fresh STORAGE buffers of 128 MiB, then waits for the queue (a 4-byte read
back), and prints GB/s:

  touch    only reads the bytes from the mapping (copies them into one reused 64 MiB array)
  stage    write_parts as the engine did: a 16 MiB numpy staging array, then write_buffer
  direct   write_buffer straight from the mapping, 16 MiB per call
  flush    direct, with a queue.submit([]) every 128 MiB (wgpu frees its staging copies
           after each submission instead of holding all of them until the first one)
  ring     our own reused MAP_WRITE staging buffers (4 x 64 MiB), mapped, filled from the
           mapping, copied by copy_buffer_to_buffer

With --profile, cProfile of Engine(FILE) (top 30 by cumulative time) after the variants.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import numpy as np
import wgpu

from wgllm.gpu.discovery import choose_adapter

BU = wgpu.BufferUsage
MIB = 1 << 20
PIECE = 16 * MIB
DST = 128 * MIB


def _dst(dev, nbytes: int) -> list:
    return [dev.create_buffer(size=min(DST, nbytes - o), usage=BU.STORAGE | BU.COPY_DST | BU.COPY_SRC)
            for o in range(0, nbytes, DST)]


def _wait(dev, buf) -> None:
    dev.queue.read_buffer(buf, 0, 4)


def touch(dev, m, n):
    tmp = np.empty(64 * MIB, np.uint8)
    for o in range(0, n, tmp.nbytes):
        k = min(tmp.nbytes, n - o)
        tmp[:k] = m[o : o + k]
    return []


def stage(dev, m, n):
    bufs, st = _dst(dev, n), np.empty(PIECE, np.uint8)
    for i, b in enumerate(bufs):
        for o in range(0, b.size, PIECE):
            k = min(PIECE, b.size - o)
            st[:k] = m[i * DST + o : i * DST + o + k]
            dev.queue.write_buffer(b, o, st[:k])
    return bufs


def direct(dev, m, n, flush: bool = False):
    bufs = _dst(dev, n)
    for i, b in enumerate(bufs):
        for o in range(0, b.size, PIECE):
            dev.queue.write_buffer(b, o, m[i * DST + o : i * DST + o + min(PIECE, b.size - o)])
        if flush:
            dev.queue.submit([])
    return bufs


def ring(dev, m, n, slots: int = 4, size: int = 64 * MIB):
    bufs = _dst(dev, n)
    ring_ = [dev.create_buffer(size=size, usage=BU.MAP_WRITE | BU.COPY_SRC, mapped_at_creation=True)
             for _ in range(slots)]
    mapped = [True] * slots
    j = 0
    for i, b in enumerate(bufs):
        for o in range(0, b.size, size):
            k = min(size, b.size - o)
            s = ring_[j]
            if not mapped[j]:
                s.map_sync(wgpu.MapMode.WRITE)
            s.write_mapped(m[i * DST + o : i * DST + o + k], 0)
            s.unmap()
            mapped[j] = False
            enc = dev.create_command_encoder()
            enc.copy_buffer_to_buffer(s, 0, b, o, k)
            dev.queue.submit([enc.finish()])
            j = (j + 1) % slots
    return bufs


VARIANTS = {"touch": touch, "stage": stage, "direct": direct,
            "flush": lambda d, m, n: direct(d, m, n, True), "ring": ring}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    m = np.memmap(args.file, np.uint8, mode="r")
    n = min(m.size, int(args.gb * 1e9)) // 4 * 4
    touch(None, m, n)  # into the page cache
    info = choose_adapter("auto")
    dev = info.adapter.request_device_sync()
    print(f"{info.summary}; {n / 1e9:.2f} GB of {args.file}")
    for r in range(args.rounds):
        for name in args.variants.split(","):
            t = time.perf_counter()
            bufs = VARIANTS[name](dev, m, n)
            if bufs:
                _wait(dev, bufs[-1])
            dt = time.perf_counter() - t
            print(f"round {r} {name:7s} {dt:7.3f} s {n / dt / 1e9:6.2f} GB/s", flush=True)
            for b in bufs:
                b.destroy()
    if args.profile:
        from wgllm.runtime.engine import Engine
        del dev
        pr = cProfile.Profile()
        t = time.perf_counter()
        pr.enable()
        eng = Engine(args.file)
        pr.disable()
        print(f"Engine({args.file}): {time.perf_counter() - t:.2f} s")
        pstats.Stats(pr).sort_stats("cumulative").print_stats(30)
        pstats.Stats(pr).sort_stats("tottime").print_stats(15)
        del eng


if __name__ == "__main__":
    main()
