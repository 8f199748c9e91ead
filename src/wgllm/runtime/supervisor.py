"""The supervised engine: the model runs on the GPU in a worker process, which a crash can take.

`Supervisor` has the runtime Engine's interface (generate, logits, hidden_states, reset,
release, stats, events, by_adapter, ...) and runs the Engine in a child process
(wgllm.runtime.worker) over a local channel (wgllm.runtime.channel). The parent keeps what
makes the conversation: the model's tokenizer and template, and the KV state (`cached` and
the log of the passes that computed it, see wgllm.runtime.recovery) as the worker last
reported it, so nothing the worker holds is lost when it dies.

A worker is dead when its process ends (a native crash: SIGSEGV, an abort; a kill), when its
heartbeat stops for `beat_timeout_s` (wedged: it is killed), or when the driver refuses it a
device. The supervisor then starts a new one, which replays the KV state exactly and goes on
from the last token the caller got (`Engine.generate(resume=...)`, with the sampler's state
after that token), so no token is lost or repeated. Deaths in a row are retried per the
recovery policy (`retries`, doubling `backoff_s`), then the work falls back to the next
adapter (`fallback`), then WorkerCrashedError is raised; the conversation stays intact and
the next call starts a fresh worker. A worker that has rebuilt its devices `recycle_after`
times is replaced by a fresh process before the next call (a driver refuses new devices after
~93 rebuilds in one process, measured on NVIDIA).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import weakref
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from wgllm.errors import WorkerCrashedError
from wgllm.gpu import health
from wgllm.runtime.channel import Channel, ChannelClosed, dumps, unpack_error
from wgllm.runtime.engine import GenerationStats, ModelSession
from wgllm.runtime.faults import ENV as FAULTS_ENV
from wgllm.runtime.faults import FaultInjector
from wgllm.runtime.recovery import EventLog, RecoveryEvent, RecoveryPolicy, Segment, rewound, settled
from wgllm.runtime.sampler import Sampler, SamplingParams

BEAT_TIMEOUT_S = 30.0  # a worker silent this long is wedged
RECYCLE_AFTER = 32  # device rebuilds in one worker before it is replaced by a fresh process
STOP_WAIT_S = 10.0  # how long a stopped generation may take to say "done" before its worker is killed


class _Died(Exception):
    """The worker is gone: `why` says how ("was killed by SIGSEGV", "stopped responding ...")."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


class Supervisor(ModelSession):
    """A model on a WebGPU adapter, run by a worker process that is restarted when it dies.

    Arguments as `wgllm.runtime.engine.Engine` (model, device, ctx, precision, chunk, gpu_memory,
    policy, split, recovery, faults, on_event, on_planned); faults may also name the process
    faults kill, segv and stop (see wgllm.runtime.faults). beat_timeout_s: seconds without a
    heartbeat after which a worker counts as wedged; recycle_after: device rebuilds after which a
    worker is replaced. `restarts` counts the workers started after the first; `pid` is the
    running worker's process id (None when none runs: after `release`, or before a restart).
    """

    def __init__(self, model: str | None = None, *, recovery: RecoveryPolicy | None = None,
                 faults: str | None = None, on_event=None, on_planned=None,
                 beat_timeout_s: float = BEAT_TIMEOUT_S, recycle_after: int = RECYCLE_AFTER, **options: Any):
        self.recovery = (recovery or RecoveryPolicy()).validate()
        self.faults = FaultInjector(os.environ.get(FAULTS_ENV, "") if faults is None else faults, process=True)
        self.events = EventLog()
        if on_event is not None:
            self.events.listeners.append(on_event)
        self.on_planned = on_planned
        self.on_progress = None  # as Engine.on_progress; called in the thread that iterates generate
        self.beat_timeout_s, self.recycle_after = float(beat_timeout_s), int(recycle_after)
        self._open(model)
        self._options = {**options, "model": str(self.path), "recovery": self.recovery}
        self.cached: list[int] = []
        self._log: list[Segment] = []
        self.stats = GenerationStats()
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self._chan: Channel | None = None
        self._exclude: set[int] = set()  # adapter indexes whose workers kept dying
        self._strikes = 0  # deaths since the last progress
        self._rebuilds = 0  # device rebuilds in the running worker
        self._memory: list[dict] = []
        self._finalizer = None
        self._down_since: float | None = None  # when the worker died, until one gets work done again
        self._last_death = ""
        self._closed = False
        self._with_worker(lambda: None)

    # --- what the worker said it runs on ------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def by_adapter(self) -> list[dict]:
        """As Engine.by_adapter, from the worker's last heartbeat (allocated 0 with no worker)."""
        if self._chan is None:
            return [{**p, "allocated": 0} for p in self._memory]
        return [dict(p) for p in self._memory]

    def state(self) -> tuple[list[int], list[Segment]]:
        """The conversation's KV state (`cached`, log)."""
        return list(self.cached), list(self._log)

    # --- public API ----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the KV cache (the next prompt is prefilled from scratch)."""
        self.cached, self._log = [], []

    def release(self) -> None:
        """End the worker: the OS frees all of its GPU and host memory. The conversation is kept;
        the next call starts a worker, which replays it."""
        self._stop_worker()

    def close(self) -> None:
        """End the worker; the engine cannot be used afterwards."""
        self._closed = True
        self._stop_worker()

    def generate(self, prompt: Sequence[int], *, max_tokens: int = 256, sampling: SamplingParams | None = None,
                 stop_ids: Iterable[int] | None = None, sampler: Sampler | None = None) -> Iterator[int]:
        """As Engine.generate; a worker that dies on the way is replaced and the stream goes on with
        no token lost or repeated (see the module doc)."""
        sampler = sampler if sampler is not None else Sampler(sampling or SamplingParams())
        prompt = [int(t) for t in prompt]
        self._check_prompt(prompt, max_tokens)
        return self._generation(prompt, max_tokens, None if stop_ids is None else [int(t) for t in stop_ids],
                                sampler)

    def logits(self, prompt: Sequence[int]) -> np.ndarray:
        """As Engine.logits (computed in the worker)."""
        return self._call("logits", [int(t) for t in prompt])

    def hidden_states(self, prompt: Sequence[int]) -> np.ndarray:
        """As Engine.hidden_states (computed in the worker)."""
        return self._call("hidden_states", [int(t) for t in prompt])

    # --- generating ----------------------------------------------------------------------
    def _generation(self, prompt: list[int], max_tokens: int, stop_ids, sampler: Sampler) -> Iterator[int]:
        run = _Run(prompt, self.state(), sampler, dumps(sampler, {"tokenizer": self.tokenizer}))
        self.stats = st = GenerationStats(prompt_tokens=len(prompt))
        kwargs = {"max_tokens": max_tokens, "stop_ids": stop_ids}
        before, t0 = self.events.recoveries, time.perf_counter()
        try:
            while not run.done:
                try:
                    self._ready()
                    self._send("generate", prompt, kwargs, run.blob, run.emitted, run.sampler_state, run.start)
                    yield from self._tokens(run, st, t0)
                except _Died as died:
                    self._died(died)
        finally:
            if not run.done:
                self._abandon(run)
            st.completion_tokens = len(run.emitted)
            st.recoveries = self.events.recoveries - before

    def _tokens(self, run: "_Run", st: GenerationStats, t0: float) -> Iterator[int]:
        """The running worker's messages for `run`, as tokens, until it is done."""
        while True:
            msg = self._next()
            self._progressed()
            if msg[0] == "token":
                _, tok, sampler_state, steps, pre = msg
                run.took(tok, sampler_state, steps, pre, st, t0)
                yield tok
                continue
            run.done = True
            self._settle_from(msg[2], msg[3])
            if msg[0] == "error":
                raise unpack_error(msg[1])
            st.finish_reason = msg[1]["finish_reason"]
            if not run.emitted:  # no token came (max_tokens 0, or a stop token first): the worker's figures
                st.cached_tokens, st.prefill_s, st.ttft_s = (msg[1][k] for k in ("cached_tokens", "prefill_s",
                                                                                  "ttft_s"))
            return

    def _abandon(self, run: "_Run") -> None:
        """The caller stopped taking tokens (or an error came up in its thread): stop the worker's
        generation and keep the KV state of what the caller got, as an in-process engine would."""
        if self._chan is not None:
            try:
                self._send("stop")
                deadline = time.monotonic() + STOP_WAIT_S
                while (msg := self._next(deadline, quiet=True))[0] not in ("done", "error"):
                    pass
                self._settle_from(msg[2], msg[3])
            except _Died as died:
                self._discard()
        if self._chan is None:  # it died: what it computed for sure
            self.cached, self._log = rewound(*run.start, run.prompt, run.emitted)
        else:  # the K/V of what the caller got (the worker may have run a few tokens further)
            self.cached, self._log = settled(self.cached, self._log, run.prompt, run.emitted[:-1])

    def _settle_from(self, state, memory) -> None:
        if state is not None:
            self.cached, self._log = list(state[0]), list(state[1])
        if memory is not None:
            self._memory = memory

    def _call(self, name: str, *args: Any) -> Any:
        """Engine.`name`(*args) in the worker, across worker deaths."""

        def attempt():
            self._send("call", name, args, self.state())
            msg = self._next()
            self._progressed()
            self._settle_from(msg[2], msg[3])
            if msg[0] == "error":
                raise unpack_error(msg[1])
            return msg[1]

        return self._with_worker(attempt)

    def _progressed(self) -> None:
        """The worker got work done: a death before counts as recovered from."""
        self._strikes = 0
        if self._down_since is not None:
            self.events.add(self._where(), "crash", "continued", self._down_since)
            self._down_since = None

    def _with_worker(self, attempt) -> Any:
        while True:
            try:
                self._ready()
                return attempt()
            except _Died as died:
                self._died(died)

    # --- the worker's life ---------------------------------------------------------------
    def _ready(self) -> None:
        """A worker that has loaded the model (started, or replaced after `recycle_after` rebuilds)."""
        if self._closed:
            from wgllm.errors import ModelNotLoadedError

            raise ModelNotLoadedError("This engine was closed: create a new one.")
        if self._chan is not None and self._rebuilds >= self.recycle_after and self._may_recycle():
            self._stop_worker()
        if self._chan is None:
            self._spawn()

    def _may_recycle(self) -> bool:
        """Whether the running worker may be replaced now (see _ready)."""
        return True

    def _spawn(self) -> None:
        """Start a worker and wait until it has loaded the model (or died: _Died)."""
        ours, theirs = Channel.pair()
        env = {k: v for k, v in os.environ.items() if k != FAULTS_ENV}
        self._proc = subprocess.Popen([sys.executable, "-m", "wgllm.runtime.worker", str(theirs.fileno())],
                                      pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env,
                                      start_new_session=True)  # Ctrl-C at the terminal is the parent's
        theirs.close()
        self._chan = Channel(ours, {"tokenizer": self.tokenizer})
        self._finalizer = weakref.finalize(self, _kill, self._proc)
        self._rebuilds = 0
        self._send("start", {**self._options, "exclude": sorted(self._exclude)}, self.faults.faults)
        msg = self._next()
        if msg[0] == "error":
            exc = unpack_error(msg[1])
            self._discard()
            if health.is_gpu_failure(exc):  # the driver refused the worker a device
                raise _Died(f"could not get a device ({exc})")
            if self._exclude:  # fell back, and no other adapter takes the model
                self._give_up(self._where(), self._last_death, f"No other adapter could take the model: {exc}")
            raise exc
        ready = msg[1]
        self.precision, self.n_ctx, self.chunk = ready["precision"], ready["n_ctx"], ready["chunk"]
        self.adapters, self.adapter_summary = ready["adapters"], ready["adapter_summary"]
        self._memory = ready["by_adapter"]

    def _send(self, *msg: Any) -> None:
        try:
            self._chan.send(*msg, *((self.faults.faults,) if msg[0] in ("generate", "call") else ()))
        except ChannelClosed:
            raise _Died(self._how_it_ended()) from None

    def _next(self, deadline: float | None = None, quiet: bool = False, chan: Channel | None = None) -> tuple:
        """The worker's next answer (before time.monotonic() reaches `deadline`, if given; from `chan`,
        default the running worker's); its heartbeats, events, fired faults and progress reports (not
        when `quiet`) are handled here."""
        chan = chan or self._chan
        while True:
            wait = self.beat_timeout_s if deadline is None else min(self.beat_timeout_s,
                                                                    max(0.0, deadline - time.monotonic()))
            if not chan.poll(wait):
                if deadline is not None and time.monotonic() >= deadline:
                    raise _Died("did not stop its generation in time")
                raise _Died(f"stopped responding (no heartbeat for {self.beat_timeout_s:g} s)")
            try:
                msg = chan.recv()
            except ChannelClosed:
                raise _Died(self._how_it_ended()) from None
            kind = msg[0]
            if kind == "beat":
                self._memory = msg[1] if msg[1] is not None else self._memory
            elif kind == "event":
                self._relay(RecoveryEvent(**msg[1]))
            elif kind == "fired":
                self.faults.faults[msg[1]].times -= 1
            elif kind == "planned":
                if self.on_planned is not None and not quiet:
                    self.on_planned(msg[1])
            elif kind == "progress":
                if self.on_progress is not None and not quiet:
                    self.on_progress(*msg[1:])
            else:
                return msg
            if deadline is not None and time.monotonic() >= deadline:
                raise _Died("did not stop its generation in time")

    def _relay(self, ev: RecoveryEvent) -> None:
        """A recovery event of the worker's engine, into our log (and to its listeners)."""
        self.events.relay(ev)
        if ev.action == "detected":
            self._rebuilds += 1

    def _died(self, died: _Died) -> None:
        """Handle a dead worker per the recovery policy: back off and return (the caller starts a
        new one), or raise WorkerCrashedError (the conversation stays as it was)."""
        where = self._where()
        self._discard()
        self._last_death = died.why
        if not self.recovery.enabled:
            raise WorkerCrashedError(died.why, where)
        self._strikes += 1
        self._down_since = self._down_since or time.time()
        self.events.add(where, "crash", "detected", detail=f"worker {died.why}")
        if self._strikes <= self.recovery.retries:
            time.sleep(self.recovery.backoff_s * 2 ** (self._strikes - 1))
            self.events.add(where, "crash", "retry")
        elif self.recovery.fallback and getattr(self, "adapters", None):
            self._exclude |= {a.index for a in self.adapters}
            self._strikes = 0
            self.events.add(where, "crash", "fallback")
        else:
            self._give_up(where, died.why)
        self.restarts += 1

    def _give_up(self, where: str, why: str, detail: str = "") -> None:
        self.events.add(where, "crash", "gave up", self._down_since, detail=why)
        self._exclude, self._strikes, self._down_since = set(), 0, None
        raise WorkerCrashedError(why, where, self.restarts, detail)

    def _where(self) -> str:
        return getattr(self, "adapter_summary", None) or "the GPU"

    def _how_it_ended(self) -> str:
        proc = self._proc
        if proc is None:
            return "closed its channel"
        try:
            rc = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "closed its channel"
        if rc < 0:
            return f"was killed by {signal.Signals(-rc).name}"
        return f"exited with status {rc}"

    def _discard(self) -> None:
        """Kill the worker (if still alive) and reap it."""
        if self._chan is not None:
            self._chan.close()
        if self._proc is not None:
            _kill(self._proc)
        if self._finalizer is not None:
            self._finalizer.detach()
        self._chan = self._proc = self._finalizer = None

    def _stop_worker(self) -> None:
        """Ask the worker to exit, then make sure it has."""
        if self._chan is not None:
            try:
                self._chan.send("exit")
                self._proc.wait(timeout=5)
            except (ChannelClosed, subprocess.TimeoutExpired):
                pass
        self._discard()



class _Run:
    """One generation as the supervisor carries it across workers."""

    def __init__(self, prompt: list[int], start, sampler: Sampler, blob: bytes):
        self.prompt, self.start, self.sampler, self.blob = prompt, start, sampler, blob
        self.emitted: list[int] = []
        self.sampler_state = None  # the sampler's state after the last emitted token (host sampling)
        self.done = False
        self.t_first = 0.0

    def took(self, tok: int, sampler_state, steps, pre, st: GenerationStats, t0: float) -> None:
        """The worker yielded `tok` (with the sampler's state after it, its logprob steps, and with the
        first token the prefill's (cached tokens, seconds)): into the run and its stats."""
        if pre is not None and not self.emitted:
            st.cached_tokens, st.prefill_s = pre
        self.emitted.append(tok)
        self.sampler_state = sampler_state
        if steps:
            self.sampler.steps.extend(steps)
        now = time.perf_counter()
        if len(self.emitted) == 1:
            self.t_first = now
            st.ttft_s = now - t0
        st.decode_s = now - self.t_first


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL `proc` (a worker; a stopped one too) and reap it."""
    if proc.poll() is None:
        try:
            proc.kill()
        except OSError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass

