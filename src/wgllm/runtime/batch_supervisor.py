"""The supervised engine for many users at once: a parallel Engine (continuous batching) in a
worker process, which a crash can take.

`BatchSupervisor` is a `Supervisor` whose worker runs `Engine(parallel=N)`: `generate` may be
called from N threads together; each call gets a `RemoteStream` (its own `stats`, as the
in-process wgllm.runtime.batch.Stream). Every message of a generation carries its id; one
reader thread per worker takes the worker's messages and hands each to its generation's queue
(heartbeats, events and fired faults as the Supervisor handles them).

With each token the worker sends what resuming the stream elsewhere takes: the sampler's state
after it (host sampling) and, with the first token, the segments that computed the prompt's
K/V (wgllm.runtime.recovery.Segment; a prefix copied from another slot included). When the
worker dies (a native crash, a kill, a wedge: no heartbeat), every live stream learns it from
the reader; the first to handle the death applies the recovery policy (Supervisor._died: retry,
fall back, or WorkerCrashedError for all of them) and starts a new worker; then each stream is
submitted again with the tokens it already yielded: the new worker replays the prompt's segments
and one decode pass per yielded token but the last (bit-identical to the batched rows that first
computed them) and decodes on after the last, so no stream loses or repeats a token.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from typing import Any, Iterable, Iterator, Sequence

from wgllm.errors import WorkerCrashedError
from wgllm.runtime.channel import dumps, unpack_error
from wgllm.runtime.engine import GenerationStats
from wgllm.runtime.recovery import Segment
from wgllm.runtime.sampler import Sampler, SamplingParams
from wgllm.runtime.supervisor import Supervisor, _Died, _Run


_CLOSED = object()  # put into every open request's queue when the engine closes under it


class RemoteStream:
    """The tokens of one generation in the worker's batch; `stats` is its GenerationStats;
    `close()` (or leaving the iteration) stops it."""

    def __init__(self, gen: Iterator[int], stats: GenerationStats):
        self._gen, self.stats = gen, stats

    def __iter__(self) -> "RemoteStream":
        return self

    def __next__(self) -> int:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()


class BatchSupervisor(Supervisor):
    """A parallel engine (`parallel` = N > 1 sequences at once) run by a worker process that is
    restarted when it dies (see module doc). Arguments as Supervisor's."""

    def __init__(self, model: str | None = None, **options: Any):
        self._lock = threading.RLock()  # the worker's life (start, death, restart) and the routes
        self._routes: dict[int, tuple[queue.SimpleQueue, int]] = {}  # request id -> (its messages, worker)
        self._ids = itertools.count(1)
        self._epochs = itertools.count(1)  # one per worker started
        self._epoch: int | None = None  # the running worker's
        self._handled: set[int] = set()  # workers whose death was handled
        self._dead: dict[int, _Died] = {}  # workers whose reader saw them die
        self._mourned: set[int] = set()  # workers whose open requests were told of their death
        self._gave_up: dict[int, BaseException] = {}  # worker -> the error all its streams get
        self.n_seq = int(options.get("parallel", 1) or 1)
        super().__init__(model, **options)

    # --- public API ----------------------------------------------------------------------
    def generate(self, prompt: Sequence[int], *, max_tokens: int = 256, sampling: SamplingParams | None = None,
                 stop_ids: Iterable[int] | None = None, sampler: Sampler | None = None) -> RemoteStream:
        """As Engine.generate on a parallel engine: a stream at once, its generation in the batch."""
        sampler = sampler if sampler is not None else Sampler(sampling or SamplingParams())
        prompt = [int(t) for t in prompt]
        self._check_prompt(prompt, max_tokens)
        stats = GenerationStats(prompt_tokens=len(prompt), finish_reason="length")
        stops = None if stop_ids is None else [int(t) for t in stop_ids]
        return RemoteStream(self._generation(prompt, max_tokens, stops, sampler, stats), stats)

    def reset(self) -> None:
        """Forget what the idle slots have cached (the running generations keep theirs)."""
        super().reset()
        if self._chan is not None:
            self._call("reset")

    # --- generating ----------------------------------------------------------------------
    def _generation(self, prompt: list[int], max_tokens: int, stop_ids, sampler: Sampler,
                    st: GenerationStats) -> Iterator[int]:
        run = _Run(prompt, None, sampler, dumps(sampler, {"tokenizer": self.tokenizer}))
        run.log, run.deaths, run.t0 = None, 0, time.perf_counter()
        kwargs = {"max_tokens": max_tokens, "stop_ids": stop_ids}
        sid = epoch = None
        try:
            while not run.done:
                try:
                    sid, q, epoch = self._request("pgenerate", prompt, kwargs, run.blob, run.emitted,
                                               run.sampler_state, self._resume_log(run))
                    yield from self._tokens(run, st, q)
                except _Died as died:
                    self._drop(sid)
                    run.deaths += 1
                    self._recover(died, epoch)
                    if len(run.emitted) >= max_tokens:  # it died after the last token: nothing is left
                        run.done = True
        finally:
            if not run.done and sid is not None:  # the caller left: stop it in the worker
                self._send_quietly("pstop", sid)
            self._drop(sid)
            st.completion_tokens = len(run.emitted)
            st.recoveries += run.deaths

    @staticmethod
    def _resume_log(run: _Run) -> list[Segment] | None:
        """The segments that computed prompt + emitted[:-1]: the prompt's (from the first token),
        then one decode pass per token after it."""
        if not run.emitted:
            return None
        tail = [Segment(len(run.prompt), list(run.emitted[:-1]), False)] if len(run.emitted) > 1 else []
        return list(run.log) + tail

    def _tokens(self, run: _Run, st: GenerationStats, q: queue.SimpleQueue) -> Iterator[int]:
        """Generation messages from the reader, as tokens, until it is done."""
        while True:
            msg = q.get()
            if isinstance(msg, _Died):
                raise msg
            if msg is _CLOSED:  # the engine was closed: the tokens so far
                run.done = True
                return
            if msg[0] == "ptoken":
                _, _, tok, rng, steps, log, pre = msg
                if log is not None:
                    run.log = log
                run.took(tok, rng, steps, pre, st, run.t0)
                yield tok
                continue
            run.done = True
            if msg[0] == "perror":
                raise unpack_error(msg[2])
            done = msg[2]
            st.finish_reason = done["finish_reason"]
            st.recoveries = done["recoveries"]
            if not run.emitted:  # no token came: the worker's figures
                st.cached_tokens, st.prefill_s, st.ttft_s = done["cached_tokens"], done["prefill_s"], done["ttft_s"]
            return

    def _call(self, name: str, *args: Any) -> Any:
        """Engine.`name`(*args) in the worker (beside the batch), across worker deaths."""
        while True:
            cid = epoch = None
            try:
                cid, q, epoch = self._request("pcall", name, args)
                msg = q.get()
                if isinstance(msg, _Died):
                    raise msg
                if msg is _CLOSED:
                    continue  # released under the call: again (a closed engine refuses in _request)
            except _Died as died:
                self._recover(died, epoch)
                continue
            finally:
                self._drop(cid)
            if msg[0] == "perror":
                raise unpack_error(msg[2])
            return msg[2]

    def _request(self, op: str, *args: Any) -> tuple[int, queue.SimpleQueue, int | None]:
        """Send `op` with a new id to a running worker (started if none runs): (id, its queue, worker)."""
        with self._lock:
            while True:
                if self._epoch in self._dead:  # it died while idle (its reader saw it)
                    self._recover(self._dead[self._epoch], self._epoch)
                try:
                    self._ready()
                    break
                except _Died as died:  # the new worker died while loading: the policy, then again
                    self._died(died)
            rid, q = next(self._ids), queue.SimpleQueue()
            self._routes[rid] = (q, self._epoch)
            epoch = self._epoch
            try:
                self._send(op, rid, *args)
            except _Died as died:
                died.epoch = epoch
                raise
            return rid, q, epoch

    def _drop(self, rid: int | None) -> None:
        with self._lock:
            self._routes.pop(rid, None)

    def _send(self, *msg: Any) -> None:
        if msg[0] in ("pgenerate", "pcall"):
            msg = (*msg, self.faults.faults)
        super()._send(*msg)

    def _send_quietly(self, *msg: Any) -> None:
        try:
            with self._lock:
                if self._chan is not None:
                    self._chan.send(*msg)
        except Exception:  # noqa: BLE001 - the worker is gone: nothing runs there to stop
            pass

    # --- the worker's life ---------------------------------------------------------------
    def _spawn(self) -> None:
        super()._spawn()
        self._epoch = next(self._epochs)
        threading.Thread(target=self._read, args=(self._chan, self._epoch), name="wgllm-worker-reader",
                         daemon=True).start()

    def _read(self, chan, epoch: int) -> None:
        """The reader of worker `epoch`: its messages to their generations; its death to all of them."""
        try:
            while True:
                msg = self._next(chan=chan)
                with self._lock:
                    q = self._routes.get(msg[1], (None,))[0]
                    if msg[0] in ("ptoken", "presult"):
                        self._progressed()
                if q is not None:
                    q.put(msg)
        except Exception as exc:  # noqa: BLE001 - _Died, or the channel closed under a stopped worker
            died = exc if isinstance(exc, _Died) else _Died(f"closed its channel ({exc})")
            with self._lock:
                if self._epoch != epoch:
                    return  # stopped on purpose, or its death is handled
                died.epoch = epoch
                self._dead[epoch] = died
                self._mourn(epoch, died)

    def _mourn(self, epoch: int, died: _Died) -> None:
        """Tell every request open on worker `epoch` (once) that it died (a generation may see it
        first, from a send that failed, or the reader, from the channel)."""
        if epoch in self._mourned:
            return
        self._mourned.add(epoch)
        for q, e in list(self._routes.values()):
            if e == epoch:
                q.put(died)

    def _recover(self, died: _Died, epoch: int | None) -> None:
        """A generation saw worker `epoch` die: the first to see it applies the recovery policy
        (Supervisor._died); the others go on with the worker it started, or get the same error."""
        epoch = getattr(died, "epoch", epoch)
        with self._lock:
            if epoch in self._gave_up:
                raise self._gave_up[epoch]
            if epoch in self._handled or epoch != self._epoch:
                return
            self._handled.add(epoch)
            self._mourn(epoch, died)
            try:
                self._died(died)
            except WorkerCrashedError as exc:
                self._gave_up[epoch] = exc
                raise

    def _may_recycle(self) -> bool:
        return not self._routes  # never under running generations

    def _discard(self) -> None:
        with self._lock:
            self._epoch = None  # its reader stops without reporting a death
            super()._discard()

    def _stop_worker(self) -> None:
        """Stop the worker on purpose (release, close): the generations running there end with their
        tokens so far, as on an in-process engine that closes."""
        with self._lock:
            self._epoch = None
            super()._stop_worker()
            routes = list(self._routes.values())
        for q, _ in routes:
            q.put(_CLOSED)
