"""Diagnose device re-creation after destroy on a real driver (run one variant per process)."""
import sys, time
import numpy as np
import wgpu

variant = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 12
BU = wgpu.BufferUsage


def raw(destroy_first: bool):
    for i in range(N):
        ad = wgpu.gpu.enumerate_adapters_sync()[0]
        try:
            d = ad.request_device_sync()
        except Exception as e:
            print(variant, "FAILED at", i, str(e).splitlines()[-1]); return
        b = d.create_buffer(size=4096, usage=BU.STORAGE | BU.COPY_SRC | BU.COPY_DST)
        st = d.create_buffer(size=4096, usage=BU.MAP_READ | BU.COPY_DST)
        d.queue.write_buffer(b, 0, np.zeros(1024, np.uint32))
        e = d.create_command_encoder(); e.copy_buffer_to_buffer(b, 0, st, 0, 4096); d.queue.submit([e.finish()])
        st.map_sync(wgpu.MapMode.READ); st.unmap()
        if destroy_first:
            d.destroy()
            try:
                d.queue.write_buffer(b, 0, np.zeros(1024, np.uint32))
            except Exception:
                pass
        else:
            b.destroy(); st.destroy(); d.destroy()
        del b, st, d, ad
    print(variant, "ok", N)


def engine(spec):
    """N generations, each with the faults of `spec`: in a supervised worker (the default engine;
    recycled after its rebuilds), or with "inproc:" before the spec, in this process."""
    from wgllm.runtime.engine import Engine
    from wgllm.runtime.recovery import RecoveryPolicy
    from wgllm.runtime.supervisor import Supervisor
    from wgllm.runtime import faults
    from wgllm.testing import synth
    inproc = spec.startswith("inproc:")
    spec = spec.removeprefix("inproc:")
    p = synth.write_llama_gguf("/tmp/diag.gguf", "tiny-wide-heads", types="Q8_0", seed=3)
    policy = RecoveryPolicy(backoff_s=0, retries=1, fallback=False, hang_timeout_s=0.3)
    e = (Engine if inproc else Supervisor)(str(p), ctx=256, chunk=16, recovery=policy)
    want = list(e.generate(list(range(5, 40)), max_tokens=10, stop_ids=[]))
    pids, t0 = set(), time.time()
    for i in range(N):
        e.reset(); e.faults.faults = faults.parse(spec)
        try:
            got = list(e.generate(list(range(5, 40)), max_tokens=10, stop_ids=[]))
        except Exception as ex:
            print(variant, spec, "FAILED at", i, str(ex)[:200]); return
        assert got == want, (i, got, want)
        pids.add(getattr(e, "pid", None))
        if i % 50 == 0:
            print(variant, i, f"{time.time() - t0:.0f} s", flush=True)
    retries = sum(1 for ev in e.events if ev.action == "retry")
    detected = sum(1 for ev in e.events if ev.action == "detected")
    print(variant, spec, "ok", N, f"exact; {detected} faults detected, {retries} retries "
          f"({retries / max(detected, 1):.2f} per fault), {len(pids)} worker processes, "
          f"{getattr(e, 'restarts', 0)} restarts, {time.time() - t0:.0f} s")
    e.close()


if variant == "raw-destroy":
    raw(False)
elif variant == "raw-lost":
    raw(True)
elif variant not in ("chaos", "build"):
    engine(variant)


def chaos():
    sys.path.insert(0, ".")
    from tests.recovery.test_chaos import _fault_plan, _requests
    from wgllm.runtime.engine import Engine
    from wgllm.runtime.recovery import RecoveryPolicy
    from wgllm.testing import synth
    p = synth.write_llama_gguf("/tmp/diag.gguf", "tiny-wide-heads", types="Q8_0", seed=5)
    rng = np.random.default_rng(2026)
    reqs = _requests(rng, 320)
    e = Engine(str(p), ctx=256, chunk=16, precision="f32", recovery=RecoveryPolicy(retries=2, backoff_s=0.0, hang_timeout_s=0.3))
    for g, (prompt, n, sampling) in enumerate(reqs):
        e.reset()
        plan = _fault_plan(rng, n)
        e.faults.faults = plan
        k = len(e.events)
        try:
            list(e.generate(prompt, max_tokens=n, stop_ids=[], sampling=sampling))
        except Exception as ex:
            print("gen", g, "ERROR", type(ex).__name__)
        evs = [(ev.kind, ev.action) for ev in e.events[k:]]
        print("gen", g, [f"{f.kind}@{f.point}:{f.arg}" for f in plan], "fired", e.faults.fired[-4:], evs, flush=True)
        if any("no device could be created" in ev.detail for ev in e.events[k:]):
            print("FIRST FAILURE", [ev.detail[:150] for ev in e.events[k:] if ev.action == "failed"][:1])
            return


if variant == "chaos":
    chaos()


def build():
    """Engine-like devices without the engine: Device + model (pipelines, bind groups,
    weights uploaded), then destroy; RSS every 20."""
    import gc
    import psutil
    from wgllm.gpu.device import Device
    from wgllm.gpu.discovery import list_adapters
    from wgllm.runtime.engine import Engine
    from wgllm.model import arch as arches
    from wgllm.testing import synth
    p = synth.write_llama_gguf("/tmp/diag.gguf", "tiny-wide-heads", types="Q8_0", seed=3)
    e = Engine(str(p), ctx=256, chunk=16)
    e.close()
    for i in range(N):
        try:
            d = Device(list_adapters()[0].adapter)
            m = arches.build(d, e.gguf.tensors, e.cfg, act=e.precision, n_ctx=256, chunk=16)
            d.destroy()
            del d, m
        except Exception as ex:
            print(variant, "FAILED at", i, str(ex)[:200]); return
        if i % 20 == 0:
            gc.collect()
            print(variant, i, f"{psutil.Process().memory_info().rss >> 20} MiB", flush=True)
    print(variant, "ok", N)


if variant == "build":
    build()
