"""The worker process: the runtime Engine (devices, model, KV cache) behind a channel.

Started by wgllm.runtime.supervisor as `python -m wgllm.runtime.worker FD` with one end of a
socket pair as FD. It loads the model as the first message asks, says "ready", then serves
commands one at a time (a parallel engine's: many generations at once, see
wgllm.runtime.batch_supervisor, each message tagged with its generation's id) until "exit" or
until the channel closes (the supervisor died or
gave up on it: the worker then ends, so no worker outlives its supervisor). A heartbeat
thread sends a "beat" (with the memory per adapter) every `beat_s`, also while the main
thread waits on the GPU; a worker whose beats stop is wedged and gets killed.

What crosses per token is small: the token id, and for host sampling the sampler's state
(the RNG, a few hundred bytes) and the token's logprobs when asked for. Every command
carries the conversation's KV state as the supervisor knows it (`Engine.adopt`: a no-op
when the worker has the same), so a fresh worker replays it exactly before it goes on.
Process faults (`kill@decode:3`, `segv@prefill`, `stop@load`; see wgllm.runtime.faults)
are told to the supervisor ("fired") before they fire, so a restarted worker does not
fire them again.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, replace

from wgllm.runtime.channel import Channel, ChannelClosed, pack_error
from wgllm.runtime.faults import FaultInjector

BEAT_S = 0.5  # seconds between heartbeats


class _Stop(Exception):
    """The supervisor asked the running generation to stop (raised from the progress hook)."""


class Worker:
    """Serves one supervisor over `chan` (see module doc)."""

    def __init__(self, chan: Channel):
        self.chan = chan
        self.engine = None
        self.faults = FaultInjector([], process=True, on_fire=lambda i: self.chan.send("fired", i))
        self._streams: dict = {}  # id -> Stream of a parallel engine's generations running here

    # --- life ------------------------------------------------------------------------
    def serve(self) -> None:
        op, options, faults = self.chan.recv()
        assert op == "start", op
        threading.Thread(target=self._beat, name="wgllm-heartbeat", daemon=True).start()
        if not self._load(options, faults):
            return
        while True:
            msg = self.chan.recv()
            if msg[0] == "exit":
                return
            if msg[0] == "generate":
                self._generate(*msg[1:])
            elif msg[0] == "call":
                self._call(*msg[1:])
            elif msg[0] == "pgenerate":
                self._pgenerate(*msg[1:])
            elif msg[0] == "pstop":
                stream = self._streams.get(msg[1])
                if stream is not None:
                    stream.close()
            elif msg[0] == "pcall":
                threading.Thread(target=self._pcall, args=msg[1:], daemon=True).start()
            # a "stop" that arrives after its generation ended is dropped

    def _load(self, options: dict, faults: list) -> bool:
        from wgllm.runtime.engine import Engine

        self.faults.faults = list(faults)
        try:
            self.engine = Engine(**options, faults=self.faults, on_event=lambda ev: self.chan.send("event", asdict(ev)),
                                 on_planned=lambda summary: self.chan.send("planned", summary))
        except ChannelClosed:
            raise
        except Exception as exc:  # noqa: BLE001 - the supervisor decides what it means
            self.chan.send("error", pack_error(exc), None, None)
            return False
        self.chan.shared["tokenizer"] = self.engine.tokenizer
        e = self.engine
        self.chan.send("ready", {"precision": e.precision, "n_ctx": e.n_ctx, "chunk": e.chunk,
                                 "adapters": [replace(a, adapter=None) for a in e.adapters], "adapter_summary": e.adapter_summary,
                                 "by_adapter": e.by_adapter(), "pid": os.getpid()})
        return True

    def _beat(self) -> None:
        while True:
            time.sleep(BEAT_S)
            try:
                self.chan.send("beat", self._memory())
            except ChannelClosed:
                os._exit(0)  # the supervisor is gone: so is this worker

    def _memory(self):
        try:
            return self.engine.by_adapter() if self.engine is not None else None
        except Exception:  # noqa: BLE001 - read beside the main thread: a part may be being rebuilt
            return None

    # --- commands --------------------------------------------------------------------
    def _prepare(self, state, faults) -> None:
        self.faults.faults = list(faults)
        self.engine.adopt(*state)

    def _generate(self, prompt, kwargs: dict, blob: bytes, resume, sampler_state, state, faults) -> None:
        e = self.engine
        self._prepare(state, faults)
        sampler = self.chan.loads(blob)  # as the generation started: brought to the last token below
        if resume:
            sampler.advance(resume)
        if sampler_state is not None:
            sampler.set_state(sampler_state)
        steps = getattr(sampler, "steps", None)
        seen = len(steps) if steps is not None else 0
        e.on_progress = self._progress
        first = True
        try:
            gen = e.generate(prompt, sampler=sampler, resume=resume, **kwargs)
            try:
                for tok in gen:
                    new = steps[seen:] if steps is not None else []
                    seen += len(new)
                    st = sampler.state() if sampler.needs_logits else None
                    pre = (e.stats.cached_tokens, e.stats.prefill_s) if first else None
                    self.chan.send("token", tok, st, new, pre)
                    first = False
                    if self._stopped():
                        break
            finally:
                gen.close()
        except _Stop:
            pass
        except ChannelClosed:
            raise
        except Exception as exc:  # noqa: BLE001 - sent to the supervisor, which raises it
            self.chan.send("error", pack_error(exc), e.state(), self._memory())
            return
        finally:
            e.on_progress = None
        self.chan.send("done", asdict(e.stats), e.state(), self._memory())

    def _progress(self, stage: str, done: int, total: int) -> None:
        self.chan.send("progress", stage, done, total)
        if self._stopped():
            raise _Stop()

    def _stopped(self) -> bool:
        """Whether the supervisor asked to stop (it sends nothing else while a generation runs)."""
        return self.chan.poll(0) and self.chan.recv()[0] == "stop"

    def _call(self, name: str, args: tuple, state, faults) -> None:
        """A method of the engine: logits, hidden_states, reset, release."""
        self._prepare(state, faults)
        try:
            value = getattr(self.engine, name)(*args)
        except ChannelClosed:
            raise
        except Exception as exc:  # noqa: BLE001
            self.chan.send("error", pack_error(exc), self.engine.state(), self._memory())
            return
        self.chan.send("result", value, self.engine.state(), self._memory())


    # --- a parallel engine: many generations at once, each message tagged with its id -----
    def _pgenerate(self, sid: int, prompt, kwargs: dict, blob: bytes, resume, sampler_state, log, faults) -> None:
        """Start generation `sid` in the engine's batch (resume: the tokens it produced in a worker
        before, `log` the segments that computed prompt + resume[:-1]); a thread sends its tokens."""
        self.faults.faults = list(faults)
        sampler = self.chan.loads(blob)
        if resume:
            sampler.advance(resume)
        if sampler_state is not None:
            sampler.set_state(sampler_state)
        steps = getattr(sampler, "steps", None)
        seen = [len(steps) if steps is not None else 0]

        def note(tok, first_log):  # on the scheduler thread, as the token is produced
            new = steps[seen[0]:] if steps is not None else []
            seen[0] += len(new)
            return sampler.state() if sampler.needs_logits else None, new, first_log

        try:
            stream = self.engine.generate(prompt, sampler=sampler, resume=resume, log=log, note=note, **kwargs)
        except Exception as exc:  # noqa: BLE001 - sent to the supervisor, which raises it
            self.chan.send("perror", sid, pack_error(exc), self._memory())
            return
        self._streams[sid] = stream
        threading.Thread(target=self._pump, args=(sid, stream), name=f"wgllm-stream-{sid}", daemon=True).start()

    def _pump(self, sid: int, stream) -> None:
        """Generation `sid`'s tokens (with what resuming it needs) to the supervisor, then its end."""
        try:
            first = True
            for tok in stream:
                rng, steps, log = stream.extra
                pre = (stream.stats.cached_tokens, stream.stats.prefill_s) if first else None
                self.chan.send("ptoken", sid, tok, rng, steps, log, pre)
                first = False
            self.chan.send("pdone", sid, asdict(stream.stats), self._memory())
        except ChannelClosed:
            pass  # the supervisor is gone (the heartbeat thread ends the process)
        except Exception as exc:  # noqa: BLE001 - sent to the supervisor, which raises it
            self._send_quietly("perror", sid, pack_error(exc), self._memory())
        finally:
            self._streams.pop(sid, None)

    def _pcall(self, cid: int, name: str, args: tuple, faults) -> None:
        """A method of the parallel engine (logits, hidden_states, reset), run beside the batch."""
        try:
            value = getattr(self.engine, name)(*args)
        except Exception as exc:  # noqa: BLE001
            self._send_quietly("perror", cid, pack_error(exc), self._memory())
            return
        self._send_quietly("presult", cid, value, self._memory())

    def _send_quietly(self, *msg) -> None:
        try:
            self.chan.send(*msg)
        except ChannelClosed:
            pass


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    chan = Channel(socket.socket(fileno=int(argv[1])))
    try:
        Worker(chan).serve()
    except ChannelClosed:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
