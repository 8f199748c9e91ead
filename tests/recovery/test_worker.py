"""The supervised worker process (wgllm.runtime.supervisor): a worker killed (SIGKILL), crashed
(SIGSEGV) or wedged (SIGSTOP) at load, prefill or decode is replaced, the conversation's KV is
replayed exactly and the generation goes on: output equal to the fault-free run, no process left."""

import os
import pickle
import time

import numpy as np
import psutil
import pytest

from wgllm import errors
from wgllm.runtime import faults
from wgllm.runtime.channel import Channel, dumps, loads, pack_error, unpack_error
from wgllm.runtime.engine import Engine
from wgllm.runtime.recovery import RecoveryPolicy
from wgllm.runtime.sampler import SamplingParams
from wgllm.runtime.supervisor import Supervisor
from wgllm.testing import synth

PROMPT = list(range(5, 45))
N = 24
FAST = dict(backoff_s=0.0, hang_timeout_s=1.0)
SEEDED = SamplingParams(temperature=0.9, seed=11)


# --- the channel (no GPU) ------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [errors.ContextLengthExceededError(300, 256),
                                 errors.DeviceLostError("lost", "Adapter X", "it went away"),
                                 errors.WorkerCrashedError("was killed by SIGSEGV", "Adapter X", 2),
                                 errors.RequestError("bad prompt"), ValueError("plain")])
def test_an_error_crosses_the_channel_as_the_same_typed_error(exc):
    back = unpack_error(pickle.loads(pickle.dumps(pack_error(exc))))
    assert type(back) is type(exc) and str(back) == str(exc)
    assert {k: v for k, v in vars(back).items()} == {k: v for k, v in vars(exc).items()}
    if isinstance(exc, errors.WgllmError):
        assert back.recoverable == exc.recoverable


def test_an_unknown_error_class_comes_back_as_a_wgllm_error():
    back = unpack_error(("no.such.module:Nope", "it broke", {}))
    assert isinstance(back, errors.WgllmError) and str(back) == "it broke"


def test_shared_objects_cross_as_references():
    mine, theirs = object(), object()
    data = dumps({"t": mine, "n": [1, 2]}, {"tokenizer": mine})
    assert loads(data, {"tokenizer": theirs}) == {"t": theirs, "n": [1, 2]}


def test_messages_cross_a_socket_pair_and_a_closed_end_says_so():
    from wgllm.runtime.channel import ChannelClosed

    a, b = Channel.pair()
    ca, cb = Channel(a), Channel(b)
    ca.send("token", 7, None)
    assert cb.poll(1.0) and cb.recv() == ("token", 7, None)
    ca.close()
    with pytest.raises(ChannelClosed):
        cb.recv()


def test_process_faults_are_refused_in_process():
    with pytest.raises(errors.RequestError, match="worker process"):
        faults.FaultInjector("kill@decode:3")
    assert faults.FaultInjector("kill@decode:3,segv@prefill,stop@load", process=True).faults


# --- a real worker on lavapipe ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, device):
    return synth.write_llama_gguf(tmp_path_factory.mktemp("wrk") / "m.gguf", "tiny-wide-heads", types="Q8_0", seed=3)


@pytest.fixture(scope="module")
def reference(model_path):
    """Greedy and seeded outputs of the in-process engine."""
    e = Engine(str(model_path), ctx=256, chunk=16, precision="f32")
    greedy = list(e.generate(PROMPT, max_tokens=N, stop_ids=[]))
    sampled = list(e.generate(PROMPT, max_tokens=N, stop_ids=[], sampling=SEEDED))
    e.close()
    assert len(set(greedy)) > 5
    return greedy, sampled


def _supervisor(path, spec="", **kw):
    return Supervisor(str(path), ctx=256, chunk=16, precision="f32", faults=spec,
                      recovery=RecoveryPolicy(**{**FAST, **kw.pop("policy", {})}), **kw)


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_fault_free_worker_gives_the_in_process_output(model_path, reference):
    s = _supervisor(model_path)
    try:
        assert list(s.generate(PROMPT, max_tokens=N, stop_ids=[])) == reference[0]
        assert list(s.generate(PROMPT, max_tokens=N, stop_ids=[], sampling=SEEDED)) == reference[1]
        assert s.stats.cached_tokens == len(PROMPT) - 1 and s.stats.completion_tokens == N
        assert s.restarts == 0 and not s.events and s.pid != os.getpid()
    finally:
        pid = s.pid
        s.close()
    assert _gone(pid)


@pytest.mark.parametrize("spec", ["kill@load", "segv@load", "kill@prefill", "segv@prefill", "kill@decode:1",
                                  "segv@decode:9", "kill@decode:3,lost@decode:5,segv@decode:12"])
@pytest.mark.parametrize("sampled", [False, True])
def test_a_crashed_worker_is_replaced_and_the_output_is_exact(model_path, reference, spec, sampled):
    s = _supervisor(model_path, spec)
    try:
        pids = {s.pid}
        got = []
        for tok in s.generate(PROMPT, max_tokens=N, stop_ids=[], sampling=SEEDED if sampled else None):
            got.append(tok)
            pids.add(s.pid)
        assert got == reference[1 if sampled else 0]
        crashes = sum(1 for f in faults.parse(spec) if f.kind in faults.PROCESS_KINDS)
        assert s.restarts == crashes and not any(f.times for f in s.faults.faults)  # each fired once
        assert [ev.action for ev in s.events if ev.kind == "crash"] == ["detected", "retry", "continued"] * crashes
        assert all(_gone(p) for p in pids - {s.pid})  # the dead workers were reaped
    finally:
        s.close()


def test_a_wedged_worker_is_detected_within_the_timeout_and_replaced(model_path, reference):
    s = _supervisor(model_path, "stop@decode:4", beat_timeout_s=3.0)
    try:
        stopped = s.pid
        t0 = time.monotonic()
        assert list(s.generate(PROMPT, max_tokens=N, stop_ids=[])) == reference[0]
        took = time.monotonic() - t0
        detected = next(ev for ev in s.events if ev.action == "detected")
        assert "no heartbeat for 3 s" in detected.detail and s.restarts == 1
        assert took < 3.0 + 30  # the timeout, then a fresh worker's load (lavapipe, a loaded CI machine)
        assert _gone(stopped)
    finally:
        s.close()


def test_the_conversation_survives_a_crash_between_generations(model_path, reference):
    """A worker killed while idle: the next generation's prompt extends the last one; the new worker
    replays the KV exactly (the same output as one engine that never died)."""
    clean = Engine(str(model_path), ctx=256, chunk=16, precision="f32")
    s = _supervisor(model_path)
    try:
        first = list(s.generate(PROMPT, max_tokens=8, stop_ids=[]))
        assert first == list(clean.generate(PROMPT, max_tokens=8, stop_ids=[]))
        os.kill(s.pid, 9)
        follow = PROMPT + first + [7, 8, 9]
        assert list(s.generate(follow, max_tokens=N, stop_ids=[])) == list(clean.generate(follow, max_tokens=N,
                                                                                          stop_ids=[]))
        assert s.stats.cached_tokens == clean.stats.cached_tokens > len(PROMPT)  # the KV was replayed, not redone
        assert s.restarts == 1
    finally:
        s.close()
        clean.close()


def test_a_stream_left_early_keeps_what_the_caller_got(model_path, reference):
    s = _supervisor(model_path)
    try:
        gen = s.generate(PROMPT, max_tokens=N, stop_ids=[])
        got = [next(gen) for _ in range(5)]
        gen.close()
        assert got == reference[0][:5] and s.cached == PROMPT + got[:-1]
        assert list(s.generate(PROMPT, max_tokens=N, stop_ids=[])) == reference[0]
    finally:
        s.close()


def test_crashes_in_a_row_give_a_typed_error_and_keep_the_conversation(model_path, reference):
    s = _supervisor(model_path, "kill@decode:2x5", policy=dict(retries=1, fallback=False))
    try:
        got = []
        with pytest.raises(errors.WorkerCrashedError, match="killed by SIGKILL") as info:
            for tok in s.generate(PROMPT, max_tokens=N, stop_ids=[]):
                got.append(tok)
        assert info.value.recoverable and got == reference[0][: len(got)]
        assert [ev.action for ev in s.events][-1] == "gave up"
        s.faults.faults = []
        assert list(s.generate(PROMPT, max_tokens=N, stop_ids=[])) == reference[0]
    finally:
        s.close()


def test_a_worker_is_recycled_after_its_rebuilds(model_path, reference):
    s = _supervisor(model_path, recycle_after=2)
    try:
        pids = []
        for _ in range(5):
            s.faults.faults = faults.parse("lost@decode:3")
            assert list(s.generate(PROMPT, max_tokens=N, stop_ids=[])) == reference[0]
            pids.append(s.pid)  # the worker that ran it
        # two device rebuilds per worker, then a fresh process before the next generation
        assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
        assert s.restarts == 0 and s.events.recoveries == 5
    finally:
        s.close()


def _anonymous_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("RssAnon:"))
    return int(kb) << 10


def _others_anonymous_bytes(skip: int) -> int:
    """The anonymous memory of every other process (what they allocate or free meanwhile)."""
    total = 0
    for pid in psutil.pids():
        if pid != skip:
            try:
                total += _anonymous_bytes(pid)
            except (OSError, ValueError, StopIteration):  # gone meanwhile, or a kernel thread
                pass
    return total


def _machine_anonymous_bytes() -> int:
    """The kernel's count of anonymous pages in use (/proc/meminfo AnonPages)."""
    with open("/proc/meminfo") as f:
        kb = next(line.split()[1] for line in f if line.startswith("AnonPages:"))
    return int(kb) << 10


def test_a_killed_workers_memory_comes_back(model_path):
    """The OS frees a killed worker's memory: the process is reaped, and the machine's anonymous
    memory in use (the kernel's AnonPages) falls by about what the worker held, net of what the other
    processes' anonymous memory did meanwhile. (Not MemAvailable: on this CI's VM, a Firecracker guest,
    freed pages come back to it over seconds or not within the test, so that read 11-49 MiB for 96
    MiB freed, and failed in CI twice on 2026-12-04.)"""
    s = _supervisor(model_path)
    try:
        list(s.generate(PROMPT, max_tokens=4, stop_ids=[]))
        worker = psutil.Process(s.pid)
        held = _anonymous_bytes(worker.pid)  # its heap and the driver's (lavapipe: the GPU's) memory
        assert held > 50 << 20  # the model, the driver and its KV (lavapipe: host memory)
        others, anon = _others_anonymous_bytes(worker.pid), _machine_anonymous_bytes()
        os.kill(s.pid, 9)
        s.release()  # reaps what is left of it
        assert _gone(worker.pid)
        deadline = time.monotonic() + 10
        while True:
            freed = anon - _machine_anonymous_bytes() + _others_anonymous_bytes(worker.pid) - others
            if freed > held // 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert freed > held // 2, (freed >> 20, held >> 20)
    finally:
        s.close()


@pytest.mark.slow
def test_chaos_of_worker_kills_and_device_losses(model_path, reference):
    """200 faults (worker kills and crashes mixed with device losses) over 50 generations: every output
    exact, at most one worker alive at any time, no memory growth in the supervisor."""
    from wgllm.testing.memory import resident_bytes

    rng = np.random.default_rng(15)
    runs = []  # (prompt, max_tokens, sampling, fault plan)
    for i in range(50):
        prompt = [int(t) for t in rng.integers(1, 320, int(rng.integers(3, 60)))]
        n = int(rng.integers(8, 24))
        steps = sorted(rng.choice(np.arange(1, n), 4, replace=False))
        kinds = [str(k) for k in rng.choice(["lost", "lost", "kill", "segv"], 4)]
        plan = [faults.Fault(k, "decode", str(st)) for k, st in zip(kinds, steps)]
        if rng.random() < 0.3:
            plan[0] = faults.Fault(kinds[0], "prefill")
        runs.append((prompt, n, SamplingParams(temperature=0.8, seed=i) if i % 2 else SamplingParams(), plan))
    clean = Engine(str(model_path), ctx=256, chunk=16, precision="f32")
    refs = []
    for prompt, n, sampling, _ in runs:
        clean.reset()
        refs.append(list(clean.generate(prompt, max_tokens=n, stop_ids=[], sampling=sampling)))
    clean.close()
    del clean

    s = _supervisor(model_path, policy=dict(retries=3))
    me = psutil.Process()
    rss = []
    try:
        for i, ((prompt, n, sampling, plan), want) in enumerate(zip(runs, refs)):
            s.reset()
            s.faults.faults = plan
            got = []
            for tok in s.generate(prompt, max_tokens=n, stop_ids=[], sampling=sampling):
                got.append(tok)
                assert len(me.children(recursive=True)) <= 1
            assert got == want, f"generation {i}"
            assert all(f.times == 0 for f in plan), f"generation {i}: a fault did not fire"
            rss.append(resident_bytes())
        crashes = sum(1 for *_, plan in runs for f in plan if f.kind in faults.PROCESS_KINDS)
        assert s.restarts == crashes > 50
    finally:
        s.close()
    assert not me.children(recursive=True)
    slope = np.polyfit(np.arange(len(rss) - 10), np.array(rss[10:], float), 1)[0]
    assert slope < 1 << 20, f"supervisor memory grew {slope / 2**20:.2f} MiB per generation"


def test_a_generation_without_tokens_reports_the_prefill(model_path, reference):
    s = _supervisor(model_path)
    try:
        stop = reference[0][0]
        assert list(s.generate(PROMPT, max_tokens=N, stop_ids=[stop])) == []  # the first token is a stop
        assert s.stats.finish_reason == "stop" and s.stats.prefill_s > 0 and s.stats.completion_tokens == 0
        assert s.cached == PROMPT  # as in-process: the stop token never ran
    finally:
        s.close()
