"""A model on one adapter, or split over several: the parts on their devices, run as one chain.

`Chain` holds one (adapter, Device, Transformer part) per part of the plan's
placement (`Plan.parts`). A pass over T tokens runs the parts in order: the
first embeds the tokens, each part runs its layers, and at a cut the hidden
state `x [T, dim]` is copied into the part's read-back buffer in the same
submission, read on the host (one read-back), and written into the next part's
`x` (one write), whose work, encoded while the part before it ran, is
submitted right after. The last part runs the
output head and produces the token (GPU argmax) or the logits. With one part
nothing crosses the host and greedy decode steps can be queued ahead.

The engine (wgllm.runtime.engine) drives the chain and recovers it: a failure
is attributed to the part that was running (`active`), and only that part's
device is rebuilt (`build(only=k)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import time

import numpy as np

from wgllm.gpu.device import Device
from wgllm.gpu.discovery import AdapterInfo
from wgllm.kernels import ops
from wgllm.model import arch as arches


@dataclass
class Link:
    """One part: its adapter, layer range and budget; its device and model once built."""

    adapter: AdapterInfo
    layers: tuple[int, int]
    budget: int
    dev: Device | None = None
    model: object = None

    @property
    def built(self) -> bool:
        return self.dev is not None


class Chain:
    """The parts of a model, in layer order (see module doc)."""

    def __init__(self, links: list[Link], gguf, cfg, *, act: str, n_ctx: int, chunk: int, faults=None,
                 busy: list[float] | None = None, n_seq: int = 1):
        self.links, self.gguf, self.cfg = links, gguf, cfg
        self.act, self.n_ctx, self.chunk, self.faults, self.n_seq = act, n_ctx, chunk, faults, n_seq
        self.active = 0  # the part whose work runs now (a failure is attributed to it)
        self.hang_timeout_s: float | None = None  # the engine's watchdog for read-backs
        # seconds the host spent on each part: encoding and submitting its passes, waiting for its
        # read-backs (a cut's hidden state; the last part's token or logits)
        self.busy = busy if busy is not None and len(busy) == len(links) else [0.0] * len(links)

    # --- building -----------------------------------------------------------
    @property
    def split(self) -> bool:
        return len(self.links) > 1

    @property
    def first(self):
        return self.links[0].model

    @property
    def last(self):
        return self.links[-1].model

    def build(self, k: int) -> None:
        """A fresh device and model for part k (its previous device destroyed)."""
        self.active = k
        link = self.links[k]
        self.release(k)
        link.dev = Device(link.adapter.adapter, budget=link.budget, faults=self.faults)
        link.dev.part = k
        link.model = arches.build(link.dev, self.gguf.tensors, self.cfg, act=self.act, n_ctx=self.n_ctx,
                                  chunk=self.chunk, layers=link.layers, n_seq=self.n_seq)

    def release(self, k: int | None = None) -> None:
        """Destroy part k's device (None: every part's); the conversation state is the engine's."""
        for link in self.links if k is None else [self.links[k]]:
            if link.dev is not None:
                link.dev.destroy()
            link.dev = link.model = None

    def allocated(self) -> list[int]:
        """Bytes allocated per part (0 for a part not built)."""
        return [link.dev.allocated_bytes if link.dev is not None else 0 for link in self.links]

    # --- running --------------------------------------------------------------
    def write_tokens(self, ids, start: int) -> None:
        """Token ids at positions start.. of the first part's `tokens` (what the embedding reads)."""
        self.active = 0
        self.first.write_tokens(ids, start)

    def fault_point(self, point: str, arg=None) -> None:
        """The engine reached fault point `point`: offer it to every part (a fault naming a part fires
        on that part's device, one naming none on the first)."""
        if self.faults:
            for k, link in enumerate(self.links):
                self.faults.at(link.dev, point, arg, named_only=k > 0)

    def copy_prefix(self, src: int, dst: int, n: int) -> None:
        """Submit the copy of positions 0 .. n - 1 of KV-cache slot `src` into slot `dst` on every part."""
        for k, link in enumerate(self.links):
            self.active = k
            link.model.copy_prefix(src, dst, n)

    def run(self, T: int, pos: int, *, head: bool = False, extra=(), produce: str | None = None,
            slot: int = 0, upto: int | None = None, body: str | None = None, first=None, seq: int = 0) -> None:
        """Submit one pass over T tokens at `pos` through the parts (see module doc); the last part
        adds the output head (`head`) and `extra` dispatches, and copies what `produce` names
        ("token": the argmax's token id at pos + T into staging slot `slot`; "logits": the logits
        row) to its read-back buffer. `upto`: only parts 0..upto (a replay after part upto was
        rebuilt; nothing is produced). body: "prefill" runs the prefill dispatches even for one
        token (default: decode's for T == 1). first: part 0's pass already encoded (`encode_first`).
        seq: the KV-cache slot of the sequence (a model holding several, see Transformer n_seq)."""
        self._submit(lambda k: self._encode(k, T, pos, head, extra, produce, slot, body, seq), T, upto, first)

    def run_batch(self, rows, tokens, produce: str = "token", slot: int = 0) -> None:
        """Submit one batched pass: row t runs token tokens[t] of the sequence in slot rows[t][0] at
        position rows[t][1] (see Transformer.batch); the last part copies every row's argmax token
        into staging slot `slot` ("token") or, with "logits", also every row's logits to its read-back
        buffer. tokens None: the rows run the tokens the previous batched pass's argmax wrote (a
        one-part model: passes queued ahead without the host in between)."""
        self.active = 0
        if tokens is not None:
            self.first.write_batch_tokens(tokens)
        elif self.split:
            raise ValueError("a split model needs each batched pass's tokens from the host")
        self._submit(lambda k: self._encode_batch(k, rows, produce, slot), len(rows))

    def _submit(self, encode, T: int, upto: int | None = None, first=None) -> None:
        """Submit part 0's pass (`first`, or encode(0)) and each later part's (encode(k)) after the
        hidden state [T, dim] crossed the cut (see module doc)."""
        last = len(self.links) - 1 if upto is None else upto
        enc = first if first is not None else encode(0)
        for k in range(last + 1):
            self.active = k
            t0 = time.perf_counter()
            dev = self.links[k].dev
            dev.submit(enc)
            if k < last:
                # the next part's commands are encoded while this part runs on its GPU
                nxt = encode(k + 1)
                self._hand_over(k, T)
                enc = nxt
            self.busy[k] += time.perf_counter() - t0

    def encode_first(self, T: int, pos: int):
        """The first part's pass over T rows at `pos`, encoded ahead (a split model: while the last
        part runs the step before; its token is written into `tokens` before `run(first=...)`)."""
        return self._encode(0, T, pos, False, (), None, 0, None)

    def _encode(self, k: int, T: int, pos: int, head: bool, extra, produce: str | None, slot: int,
                body: str | None, seq: int = 0):
        """Part k's pass over T rows at `pos` of slot `seq`, encoded (its Step written): the last part
        with the head, `extra` and what it produces; the others copy x [T, dim] to their read-back buffer."""
        self.active = k
        m, dev = self.links[k].model, self.links[k].dev
        ops.write_step(dev, m.step, T, pos, seq)
        if k == len(self.links) - 1:
            enc = dev.encode(self._body(m, T, body) + (m.head if head else []) + list(extra), T=T)
            self._produce(enc, m, produce, pos + T, slot)
        else:
            enc = self._cut(dev.encode(self._body(m, T, body), T=T), m, T)
        return enc

    def _encode_batch(self, k: int, rows, produce: str, slot: int = 0):
        """Part k's batched pass over len(rows) rows, encoded (its batched Step written)."""
        self.active = k
        m, dev = self.links[k].model, self.links[k].dev
        B = len(rows)
        ops.write_batch_step(dev, m.step, rows)
        enc = dev.encode(m.batch, T=B)
        if k < len(self.links) - 1:
            return self._cut(enc, m, B)
        enc.copy_buffer_to_buffer(m.btok, 0, m.batch_staging[slot], 0, B * 4)
        if produce == "logits":
            enc.copy_buffer_to_buffer(m.acts.logits, 0, m.batch_logit_staging, 0, B * self.cfg.n_vocab * 4)
        return enc

    def _cut(self, enc, m, T: int):
        """After a part that is not last: its x [T, dim] copied to its read-back buffer."""
        enc.copy_buffer_to_buffer(m.acts.x, 0, m.x_staging, 0, T * self.cfg.dim * 4)
        return enc

    @staticmethod
    def _body(m, T: int, body: str | None = None) -> list:
        return m.decode if T == 1 and body != "prefill" else m.prefill

    def _hand_over(self, k: int, T: int) -> None:
        """Part k's x [T, dim] (submitted) into part k + 1's: one read-back, one write."""
        self.active = k
        m, dev = self.links[k].model, self.links[k].dev
        nbytes = T * self.cfg.dim * 4
        x = np.frombuffer(dev.map_read(m.x_staging, self.hang_timeout_s), np.uint8)[:nbytes]
        self.active = k + 1
        nxt = self.links[k + 1].model
        self.links[k + 1].dev.write(nxt.acts.x, x)

    @staticmethod
    def _produce(enc, m, produce: str | None, next_pos: int, slot: int) -> None:
        if produce == "logits":
            enc.copy_buffer_to_buffer(m.acts.logits, 0, m.logit_staging, 0, m.logit_staging.size)
        elif produce == "token":
            enc.copy_buffer_to_buffer(m.tokens, next_pos * 4, m.staging[slot], 0, 4)

    def read_token(self, slot: int) -> int:
        """The token id in the last part's staging slot `slot` (waits for the GPU)."""
        self.active = len(self.links) - 1
        t0 = time.perf_counter()
        raw = self.links[-1].dev.map_read(self.last.staging[slot], self.hang_timeout_s)
        self.busy[-1] += time.perf_counter() - t0
        return int(np.frombuffer(raw, np.uint32)[0])

    def read_batch(self, B: int, logits: bool = False, slot: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """A batched pass's argmax tokens [B] from staging slot `slot` (and with `logits` the last
        pass's logits [B, vocab])."""
        self.active = len(self.links) - 1
        t0 = time.perf_counter()
        dev, m = self.links[-1].dev, self.last
        toks = np.frombuffer(dev.map_read(m.batch_staging[slot], self.hang_timeout_s), np.uint32)[:B].copy()
        rows = None
        if logits:
            raw = dev.map_read(m.batch_logit_staging, self.hang_timeout_s)
            rows = np.frombuffer(raw, np.float32)[: B * self.cfg.n_vocab].reshape(B, self.cfg.n_vocab)
        self.busy[-1] += time.perf_counter() - t0
        return toks, rows

    def read_logits(self) -> np.ndarray:
        """The last produced logits row ([vocab] float32, waits for the GPU)."""
        self.active = len(self.links) - 1
        t0 = time.perf_counter()
        raw = self.links[-1].dev.map_read(self.last.logit_staging, self.hang_timeout_s)
        self.busy[-1] += time.perf_counter() - t0
        return np.frombuffer(raw, np.float32)

    def read_rows(self, buf, rows: int, width: int) -> np.ndarray:
        """rows x width float32 of a last-part buffer (after a pass with its `extra` dispatches)."""
        self.active = len(self.links) - 1
        return self.links[-1].dev.read_array(buf, np.float32, rows * width).reshape(rows, width)
