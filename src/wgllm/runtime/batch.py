"""Continuous batching: many generations at once on one engine, one decode row per sequence.

A `Batcher` drives an Engine built with `parallel=N` (N KV-cache slots, see
wgllm.model.transformer) from a scheduler thread; `Engine.generate` hands each call to
`submit`, which returns a `Stream` of token ids. At every token boundary the loop:

1. admits waiting requests in arrival order (FIFO) into free slots, taking the free slot
   whose cached tokens share the longest prefix with the prompt; a longer prefix cached in
   another slot (the same system prompt, an earlier turn) is copied on the device, so only
   the rest of the prompt is prefilled (prefix reuse);
2. runs one prefill pass (up to `chunk` tokens) of the oldest sequence still reading its
   prompt, so that running streams keep flowing while a long prompt is read;
3. runs one batched decode pass over every sequence past its prompt: greedy rows take the
   GPU's argmax, sampled rows are sampled on the host from their own logits row with their
   own sampler (seeds, penalties, grammars, logprobs exactly as alone); when every row is
   greedy and nobody waits, a few passes are queued back to back (each reads the tokens the
   one before wrote on the GPU), as the single-stream decode loop does;
4. retires what finished (a stop token, max_tokens, the context's end, a consumer that
   closed its stream).

Each batched row is computed exactly as the same token decoded alone (Transformer.batch),
and each prefill exactly as alone, so a request's output equals its solo run. Every pass
runs through the engine's recovery: on a GPU failure the devices are rebuilt, every slot's
K/V replayed from its log (the one-token passes of a batched sequence replay bit-identically),
and the pass runs again, so no stream loses or repeats a token.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from wgllm.errors import RequestError
from wgllm.model.transformer import STAGING_SLOTS
from wgllm.runtime.recovery import Segment, common_prefix, truncate

_END = object()


@dataclass
class _Seq:
    """One generation in the batch (scheduler-thread state)."""

    prompt: list[int]
    max_tokens: int
    sampler: object
    stops: set[int]
    stream: "Stream"
    slot: int = -1
    start: int = 0  # prompt positions its slot held (or got copied) at admission: prefill starts there
    filled: int = 0  # prompt positions whose K/V are computed (or submitted)
    next: int | None = None  # the last token produced: its K/V are computed by the next decode pass
    produced: int = 0
    history: list[int] = field(default_factory=list)
    t_prefill: float = 0.0
    done: bool = False  # finished (stop token, max_tokens, the context's end)
    resume: tuple | None = None  # (log, emitted): a stream continued from another engine (see submit)
    note: object = None  # fn(tok, log) -> extra, called as each token is produced (see submit)


class Stream:
    """The tokens of one batched generation, as `Engine.generate` yields them (stop tokens are not
    yielded); `stats` is its GenerationStats. `close()` (or leaving the iteration) ends it at the next
    token boundary; its slot keeps the K/V computed so far for prefix reuse."""

    def __init__(self, batcher: "Batcher", stats, t0: float):
        self._batcher, self.stats, self._t0 = batcher, stats, t0
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self.extra = None  # what submit's `note` gave for the token __next__ returned last
        self.cancelled = False
        self._t_first: float | None = None
        self._ended = False

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> int:
        if self._ended:
            raise StopIteration
        item = self._q.get()
        if item is _END:
            self._ended = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        if isinstance(item, tuple):  # (token, what `note` gave)
            item, self.extra = item
        now = time.perf_counter()
        st = self.stats
        if self._t_first is None:
            self._t_first = now
            st.ttft_s = now - self._t0
        st.completion_tokens += 1
        st.decode_s = now - self._t_first
        return item

    def close(self) -> None:
        """Stop the generation (at its next token boundary)."""
        if not self._ended:
            self.cancelled = True
            self._ended = True
            self._batcher.wake()

    def _put(self, item) -> None:
        self._q.put(item)


class Batcher:
    """The scheduler of an engine with several sequence slots (see module doc)."""

    def __init__(self, engine):
        self.engine = engine
        self._cv = threading.Condition()
        self._waiting: deque = deque()  # _Seq or ("call", fn, box) in arrival order
        self._live: list[_Seq] = []  # admitted, in admission order
        self._used = [0.0] * engine.n_seq  # when each slot was last given out (LRU among free ones)
        self._thread: threading.Thread | None = None
        self._closed = False
        self.steps = 0  # batched decode passes run (fault point "decode:N")

    # --- the callers' side --------------------------------------------------------------
    def submit(self, prompt: list[int], max_tokens: int, sampler, stops: set[int], stats, resume=None,
               note=None) -> Stream:
        """Queue a generation; its tokens come out of the returned Stream.

        resume (log, emitted): the generation produced `emitted` elsewhere (a worker process that
        died): its slot gets the K/V of prompt + emitted[:-1] by replaying `log` (the segments that
        computed them), and decoding goes on after emitted[-1] (the sampler at its state after it);
        max_tokens counts `emitted`. note(tok, log): called on the scheduler thread as each token is
        produced, log a copy of the slot's segments for the first token of a generation (they cover
        the prompt), else None; what it returns is the Stream's `extra` for that token."""
        stream = Stream(self, stats, time.perf_counter())
        done = len(resume[1]) if resume else 0
        if max_tokens <= done:  # nothing (more) to generate (as alone: not even the prompt runs)
            stream._put(_END)
            return stream
        seq = _Seq(list(prompt), int(max_tokens), sampler, set(stops), stream, history=list(prompt), note=note)
        if resume:
            log, emitted = resume
            seq.resume = ([Segment(s.start, list(s.tokens), s.chunked) for s in log], [int(t) for t in emitted])
        with self._cv:
            self._start()
            self._waiting.append(seq)
            self._cv.notify()
        return stream

    def call(self, fn):
        """Run fn(slot) on the scheduler thread with a free slot (in arrival order, between passes);
        return its result (or raise its exception)."""
        box: dict = {}
        done = threading.Event()
        with self._cv:
            self._start()
            self._waiting.append(("call", fn, box, done))
            self._cv.notify()
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def forget(self) -> None:
        """Forget what the slots no sequence is using have cached (between passes; the running
        sequences keep theirs)."""
        def clear(_slot: int) -> None:
            for k in self._free_slots():
                self.engine.slots[k].cached, self.engine.slots[k].log = [], []

        self.call(clear)

    def wake(self) -> None:
        with self._cv:
            self._cv.notify()

    def close(self) -> None:
        """End the scheduler thread (live generations end with their tokens so far)."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="wgllm-batch", daemon=True)
            self._thread.start()

    # --- the scheduler thread ------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self._live and not self._waiting:
                    self._cv.wait()
                if self._closed:
                    break
            try:
                self._admit()
                self._retire()
                self._prefill_one()
                self._decode()
                self._retire()
            except Exception as exc:  # noqa: BLE001 - recovery gave up: the live generations fail
                for seq in self._live:
                    seq.stream._put(exc)
                self._live = []
        for seq in self._live:
            seq.stream._put(_END)
        with self._cv:
            waiting, self._waiting = list(self._waiting), deque()
        for item in waiting:  # never admitted: they end empty (a call fails)
            if isinstance(item, tuple):
                item[2]["error"] = RequestError("The engine was closed before this call ran.")
                item[3].set()
            else:
                item.stream._put(_END)

    def _free_slots(self) -> list[int]:
        busy = {s.slot for s in self._live}
        return [k for k in range(self.engine.n_seq) if k not in busy]

    def _admit(self) -> None:
        """Waiting requests into free slots, in arrival order (a request that cannot get a slot
        holds back the ones behind it: FIFO, no overtaking)."""
        while True:
            with self._cv:
                if not self._waiting or not self._free_slots():
                    return
                item = self._waiting.popleft()
            if isinstance(item, tuple):
                self._run_call(item)
            elif item.stream.cancelled:
                item.stream._put(_END)
            else:
                try:
                    self._place(item)
                except Exception as exc:  # noqa: BLE001 - (a prefix copy whose recovery gave up) its caller's
                    item.stream._put(exc)

    def _run_call(self, item) -> None:
        _, fn, box, done = item
        try:
            box["value"] = fn(self._free_slots()[0])
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc
        finally:
            done.set()

    def _place(self, seq: _Seq) -> None:
        """Give `seq` the free slot sharing the longest prefix with its prompt (then the least
        recently used); copy a longer prefix another slot holds."""
        if seq.resume is not None:
            self._place_resumed(seq)
            return
        e, prompt = self.engine, seq.prompt
        lcp = [common_prefix(sl.cached, prompt) for sl in e.slots]
        free = self._free_slots()
        k = max(free, key=lambda j: (lcp[j], -self._used[j]))
        donor = max(range(e.n_seq), key=lambda j: lcp[j])
        keep = min(lcp[k], len(prompt) - 1)
        slot = e.slots[k]
        if lcp[donor] > lcp[k] and min(lcp[donor], len(prompt) - 1) > keep:
            keep = min(lcp[donor], len(prompt) - 1)
            self._run(lambda: e.chain.copy_prefix(donor, k, keep))
            src = e.slots[donor]
            slot.cached = list(src.cached[:keep])
            slot.log = [Segment(s.start, list(s.tokens), s.chunked) for s in truncate(src.log, keep)]
        else:
            slot.cached, slot.log = list(prompt[:keep]), truncate(slot.log, keep)
        self._used[k] = time.perf_counter()
        seq.slot, seq.start, seq.filled = k, keep, keep
        seq.stream.stats.cached_tokens = keep
        seq.t_prefill = time.perf_counter()
        self._live.append(seq)

    def _place_resumed(self, seq: _Seq) -> None:
        """A generation continued from elsewhere (see submit): the least recently used free slot,
        its K/V replayed from the given log, the last token produced up next."""
        e = self.engine
        log, emitted = seq.resume
        k = min(self._free_slots(), key=lambda j: self._used[j])
        slot = e.slots[k]
        slot.cached, slot.log = seq.prompt + emitted[:-1], log
        self._used[k] = time.perf_counter()
        seq.slot, seq.filled = k, len(seq.prompt)
        seq.history = seq.prompt + emitted
        seq.next, seq.produced = emitted[-1], len(emitted)
        self._run(lambda: e.replay_slot(k))
        self._live.append(seq)
        if len(slot.cached) >= e.n_ctx:  # emitted[-1] took the context's last position
            seq.done = True

    def _prefill_one(self) -> None:
        """One prefill pass of the oldest sequence still reading its prompt."""
        seq = next((s for s in self._live if s.next is None and not (s.done or s.stream.cancelled)), None)
        if seq is None:
            return
        e, prompt = self.engine, seq.prompt
        s = seq.filled
        T = min(e.chunk, len(prompt) - s)
        last = s + T == len(prompt)
        sampled = seq.sampler.needs_logits

        def work():
            e.chain.write_tokens(prompt[s:s + T], s)
            if last:
                e.chain.fault_point("prefill")
            e.chain.run(T, s, head=last, produce=("logits" if sampled else "token") if last else None, seq=seq.slot)
            if not last:
                return None
            if not sampled:
                return self.engine.checked_token(e.chain.read_token(0))
            return self.engine.checked_logits(e.chain.read_logits()[None, :])[0].copy()

        out = self._run(work)
        slot = e.slots[seq.slot]
        slot.cached = list(prompt[: s + T])
        start = seq.start  # the prompt's prefill is one chunked segment from there
        slot.log = truncate(slot.log, start) + [Segment(start, list(prompt[start: s + T]), True)]
        seq.filled = s + T
        if last:
            seq.stream.stats.prefill_s = time.perf_counter() - seq.t_prefill
            tok = out if not sampled else int(seq.sampler.sample(out, seq.history))
            self._produced(seq, int(tok))

    def _decode(self) -> None:
        """Batched decode passes over every sequence past its prompt: one, or (`_depth`) a few queued
        back to back, each reading the tokens the one before wrote on the GPU."""
        rows = [s for s in self._live if s.next is not None and not (s.done or s.stream.cancelled)]
        if not rows:
            return
        e = self.engine
        pos = [len(e.slots[s.slot].cached) for s in rows]
        need_logits = any(s.sampler.needs_logits for s in rows)
        depth = self._depth(rows, pos, need_logits)
        first = self.steps + 1
        self.steps += depth

        def work():
            for d in range(depth):
                e.chain.fault_point("decode", first + d)
                e.chain.run_batch([(s.slot, p + d) for s, p in zip(rows, pos)], [s.next for s in rows] if d == 0 else None,
                                  "logits" if need_logits else "token", slot=d)
            outs = [e.chain.read_batch(len(rows), need_logits, slot=d) for d in range(depth)]
            greedy = [i for i, s in enumerate(rows) if not s.sampler.needs_logits]
            sampled = [i for i, s in enumerate(rows) if s.sampler.needs_logits]
            for toks, logits in outs:
                self.engine.checked_token(int(toks[greedy].max()) if greedy else 0)
                if sampled:
                    self.engine.checked_logits(logits[sampled])
            return outs

        for d, (toks, logits) in enumerate(self._run(work)):
            for i, (seq, p) in enumerate(zip(rows, pos)):
                if seq.done or seq.stream.cancelled:
                    continue  # finished earlier in these passes: its later rows are dropped
                self._ran(seq, p + d)
                tok = int(seq.sampler.sample(logits[i], seq.history)) if seq.sampler.needs_logits else int(toks[i])
                self._produced(seq, tok)

    def _depth(self, rows: list[_Seq], pos: list[int], need_logits: bool) -> int:
        """Decode passes to queue back to back: up to the engine's pipeline depth when every row is
        greedy (its next input is the argmax the GPU wrote) on a one-part model and nothing waits to
        be admitted or prefilled; never past a row's context or max_tokens."""
        e = self.engine
        if need_logits or e.chain.split or any(s.next is None and not s.done for s in self._live):
            return 1
        with self._cv:
            if self._waiting and self._free_slots():
                return 1
        room = min(min(s.max_tokens - s.produced, e.n_ctx - p) for s, p in zip(rows, pos))
        return max(1, min(STAGING_SLOTS - 1, room))

    def _ran(self, seq: _Seq, p: int) -> None:
        """A decode pass computed the K/V of seq.next at position p: into its slot's state."""
        slot = self.engine.slots[seq.slot]
        slot.cached.append(seq.next)
        last = slot.log[-1] if slot.log else None
        if last is not None and not last.chunked and last.end == p:
            last.tokens.append(seq.next)
        else:
            slot.log.append(Segment(p, [seq.next], False))

    def _produced(self, seq: _Seq, tok: int) -> None:
        """`seq` produced `tok` (the position after its cached tokens): deliver it, or finish."""
        st = seq.stream.stats
        if tok in seq.stops:
            st.finish_reason = "stop"
            seq.done = True  # retired next; the stop token's K/V are never computed
            return
        if seq.note is None:
            seq.stream._put(tok)
        else:
            slot = self.engine.slots[seq.slot]
            log = [Segment(s.start, list(s.tokens), s.chunked) for s in slot.log] if seq.produced == 0 else None
            seq.stream._put((tok, seq.note(tok, log)))
        seq.history.append(tok)
        seq.produced += 1
        seq.next = tok
        at = len(self.engine.slots[seq.slot].cached)  # the position of tok
        if seq.produced >= seq.max_tokens or at >= self.engine.n_ctx:
            st.finish_reason = "length"
            seq.done = True

    def _retire(self) -> None:
        """Drop the sequences that are done (their slots keep what they cached)."""
        keep = []
        for seq in self._live:
            if seq.done or seq.stream.cancelled:
                seq.stream._put(_END)
            else:
                keep.append(seq)
        self._live = keep

    def _run(self, work):
        """work() through the engine's recovery; the live sequences count each recovery."""
        e = self.engine
        before = e.events.recoveries
        try:
            return e._resilient(work)
        finally:
            n = e.events.recoveries - before
            if n:
                for seq in self._live:
                    seq.stream.stats.recoveries += n
