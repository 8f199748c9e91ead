"""A parallel engine in the supervised worker (wgllm.runtime.batch_supervisor) on lavapipe: many
generations at once, each equal to its solo in-process run; a worker killed (SIGKILL), crashed
(SIGSEGV) or wedged (SIGSTOP) mid-batch is replaced and every live stream goes on exactly (no
token lost or repeated); a stream left early, logits beside the batch, and crashes in a row that
give every stream the same typed error."""

import os
import signal
import time

import numpy as np
import psutil
import pytest

from tests.conftest import in_threads
from tests.recovery.test_worker import model_path  # noqa: F401 - the worker tests' model (a fixture)
from wgllm import errors
from wgllm.runtime.batch_supervisor import BatchSupervisor
from wgllm.runtime.engine import Engine
from wgllm.runtime.recovery import RecoveryPolicy, Segment
from wgllm.runtime.sampler import Sampler, SamplingParams

N = 20
FAST = dict(backoff_s=0.0, hang_timeout_s=5.0)


def _prompts(n: int) -> list[list[int]]:
    """Different prompts, some longer than a prefill chunk of 16, two sharing a prefix."""
    out = [[(11 * i + 5 * j + 3) % 300 + 5 for j in range(4 + 9 * (i % 4))] for i in range(n)]
    out[-1] = out[1] + [7, 8, 9]
    return out


def _sampling(i: int):
    return SamplingParams(temperature=0.8, top_k=40, seed=50 + i) if i % 3 == 1 else None


@pytest.fixture(scope="module")
def reference(model_path):
    """Each prompt's output alone, in-process."""
    e = Engine(str(model_path), ctx=256, chunk=16, precision="f32")
    out = []
    for i, p in enumerate(_prompts(6)):
        e.reset()
        out.append(list(e.generate(p, max_tokens=N, stop_ids=[], sampling=_sampling(i))))
    e.close()
    assert len({tuple(o) for o in out}) == 6
    return out


def _supervisor(path, spec="", parallel=3, **kw):
    return BatchSupervisor(str(path), ctx=256, chunk=16, precision="f32", faults=spec, parallel=parallel,
                           recovery=RecoveryPolicy(**{**FAST, **kw.pop("policy", {})}), **kw)


def _together(s, prompts, hold=None):
    def run(i):
        got = []
        stream = s.generate(prompts[i], max_tokens=N, stop_ids=[], sampling=_sampling(i))
        for tok in stream:
            got.append(tok)
            if hold and hold.get(i) == len(got):
                stream.close()
                break
        return got, stream.stats

    return in_threads(run, len(prompts))


def test_batched_generations_in_the_worker_equal_their_solo_runs(model_path, reference):
    s = _supervisor(model_path)
    try:
        out = _together(s, _prompts(6))
        assert [got for got, _ in out] == reference
        assert all(st.completion_tokens == N and st.finish_reason == "length" for _, st in out)
        assert s.restarts == 0 and not s.events and s.n_seq == 3
    finally:
        pid = s.pid
        s.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("spec", ["kill@decode:5", "segv@decode:2,kill@decode:9", "kill@prefill"])
def test_a_worker_dying_mid_batch_leaves_every_stream_exact(model_path, reference, spec):
    s = _supervisor(model_path, spec)
    try:
        out = _together(s, _prompts(6))
        assert [got for got, _ in out] == reference
        crashes = len(spec.split(","))
        assert s.restarts == crashes and not any(f.times for f in s.faults.faults)
        assert [ev.action for ev in s.events if ev.kind == "crash"].count("detected") == crashes
        assert any(st.recoveries for _, st in out)
    finally:
        s.close()


def test_a_wedged_worker_mid_batch_is_replaced(model_path, reference):
    s = _supervisor(model_path, "stop@decode:4", beat_timeout_s=3.0)
    try:
        t0 = time.monotonic()
        out = _together(s, _prompts(6))
        assert [got for got, _ in out] == reference and s.restarts == 1
        assert "no heartbeat for 3 s" in next(ev for ev in s.events if ev.action == "detected").detail
        assert time.monotonic() - t0 < 3.0 + 60
    finally:
        s.close()


def test_a_stream_left_early_leaves_the_others_exact(model_path, reference):
    s = _supervisor(model_path, "kill@decode:12")
    try:
        out = _together(s, _prompts(6), hold={0: 3})
        assert out[0][0] == reference[0][:3]
        assert [got for got, _ in out[1:]] == reference[1:]
        # the worker goes on serving
        assert list(s.generate(_prompts(6)[2], max_tokens=N, stop_ids=[], sampling=_sampling(2))) == reference[2]
    finally:
        s.close()


def test_a_worker_killed_while_idle_is_replaced_at_the_next_request(model_path, reference):
    s = _supervisor(model_path)
    try:
        old, epoch = s.pid, s._epoch
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while epoch not in s._dead and time.monotonic() < deadline:  # its reader sees it die
            time.sleep(0.05)
        assert epoch in s._dead
        assert list(s.generate(_prompts(6)[0], max_tokens=N, stop_ids=[])) == reference[0]
        assert s.restarts == 1 and s.pid != old
    finally:
        s.close()


def test_closing_the_engine_ends_a_running_stream_with_its_tokens_so_far(model_path, reference):
    s = _supervisor(model_path)
    stream = s.generate(_prompts(6)[0], max_tokens=N, stop_ids=[])
    got = [next(stream), next(stream)]
    s.close()
    got += list(stream)  # ends (what was already sent may still come), never hangs
    assert got == reference[0][: len(got)] and len(got) < N + 1
    with pytest.raises(errors.ModelNotLoadedError):
        list(s.generate(_prompts(6)[0], max_tokens=N, stop_ids=[]))


def test_logits_beside_the_batch_equal_the_in_process_ones(model_path):
    prompt = _prompts(3)[2]
    e = Engine(str(model_path), ctx=256, chunk=16, precision="f32")
    want = e.logits(prompt)
    e.close()
    s = _supervisor(model_path)
    try:
        assert np.array_equal(s.logits(prompt), want)
        s.reset()  # the idle slots forget, in the worker
    finally:
        s.close()


def test_crashes_in_a_row_give_every_stream_the_same_typed_error(model_path, reference):
    s = _supervisor(model_path, "kill@decode:3", policy=dict(retries=0, fallback=False))

    def run(i):
        try:
            return list(s.generate(_prompts(4)[i], max_tokens=N, stop_ids=[]))
        except errors.WorkerCrashedError as exc:
            return exc

    try:
        out = in_threads(run, 4)
        assert all(isinstance(o, errors.WorkerCrashedError) for o in out), out
        assert len({id(o) for o in out}) == 1  # one decision, given to all
        # the next request starts a fresh worker
        s.faults.faults = []
        assert list(s.generate(_prompts(6)[0], max_tokens=N, stop_ids=[])) == reference[0]
    finally:
        s.close()


def test_the_batcher_resumes_a_stream_from_its_log(model_path, reference):
    """Engine-level resume (what a new worker does): the first token's note gives the prompt's
    segments; a fresh parallel engine given them, the tokens so far and the sampler's state after
    them yields exactly the rest (a seeded sampled stream)."""
    prompts, i = _prompts(6), 4
    assert _sampling(i) is not None
    a = Engine(str(model_path), ctx=256, chunk=16, precision="f32", parallel=2)
    sampler, logs = Sampler(_sampling(i)), []
    stream = a.generate(prompts[i], max_tokens=N, stop_ids=[], sampler=sampler,
                        note=lambda tok, log: (logs.append(log), sampler.state())[1])
    got = [next(stream) for _ in range(7)]
    state = stream.extra  # the sampler's state after the 7th token
    stream.close()
    a.close()
    assert got == reference[i][:7] and logs[0] is not None and all(x is None for x in logs[1:])
    assert all(isinstance(s, Segment) for s in logs[0]) and logs[0][-1].end == len(prompts[i])
    b = Engine(str(model_path), ctx=256, chunk=16, precision="f32", parallel=2)
    try:
        again = Sampler(_sampling(i))
        again.set_state(state)
        log = logs[0] + [Segment(len(prompts[i]), got[:-1], False)]
        rest = list(b.generate(prompts[i], max_tokens=N, stop_ids=[], sampler=again, resume=got, log=log))
        assert got + rest == reference[i]
        with pytest.raises(errors.RequestError, match="log="):
            b.generate(prompts[i], max_tokens=N, resume=got)
    finally:
        b.close()
