"""The generation engine: load a GGUF model onto a WebGPU device and generate tokens.

`Engine.generate` prefills the prompt in chunks (matrix-matrix passes), then
decodes one token per submission. Greedy decoding never reads logits back:
the argmax kernel writes the next token into the GPU-side `tokens` buffer,
the next step's embedding reads it there, and the host only reads 4 bytes per
token through a ring of small staging buffers while further steps are
already queued. Sampling reads the logits row and samples on the host.
The KV cache is reused across calls for the common prefix of the prompt.
A model split over adapters (the plan's placement) runs as a chain of parts
(wgllm.runtime.chain): each token crosses every cut through the host, and the
produced token is written back into the first part before the next step.

GPU failures (device lost, out of memory, hang, non-finite logits) are
detected, and by default recovered from without losing or repeating a token:
see wgllm.runtime.recovery (policy, events, exact KV replay) and
wgllm.runtime.faults (fault injection for tests).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from wgllm.errors import (ContextLengthExceededError, DeviceLostError, GpuOutOfMemoryError, RequestError,
                          UnsupportedModelError, WgllmError)
from wgllm.gpu import health
from wgllm.gpu.discovery import AdapterInfo, list_adapters
from wgllm.gpu.inventory import Caps, inventory
from wgllm.model import arch as arches
from wgllm.model.gguf import GGUFFile
from wgllm.plan.catalog import layout_from_gguf
from wgllm.kernels.qtypes import runnable_types
from wgllm.model.transformer import STAGING_SLOTS
from wgllm.plan.planner import DEFAULT_CTX, Plan, make_plan  # noqa: F401 (DEFAULT_CTX: API)
from wgllm.runtime.chain import Chain, Link
from wgllm.runtime.faults import FaultInjector
from wgllm.runtime.recovery import EventLog, RecoveryPolicy, Segment, common_prefix, rewound, settled, truncate
from wgllm.runtime.sampler import Sampler, SamplingParams

SUPPORTED_TYPES = set(runnable_types())
PIPELINE_DEPTH = STAGING_SLOTS - 1  # decode steps queued ahead of the one being read


@dataclass
class GenerationStats:
    """Figures of the last generation (times in seconds)."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    ttft_s: float = 0.0
    finish_reason: str = ""
    recoveries: int = 0

    @property
    def prefill_tok_s(self) -> float:
        n = self.prompt_tokens - self.cached_tokens
        return n / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tok_s(self) -> float:
        n = max(self.completion_tokens - 1, 0)
        return n / self.decode_s if self.decode_s > 0 else 0.0


def check_tensor_types(g: GGUFFile) -> None:
    """Raise UnsupportedModelError if any tensor has a type no kernel reads."""
    bad = sorted({t.type_name for t in g.tensors.values()} - SUPPORTED_TYPES)
    if bad:
        raise UnsupportedModelError(
            f"'{g.path.name}' holds tensors of type {', '.join(bad)}, which wgllm cannot read yet "
            f"(supported: {', '.join(sorted(SUPPORTED_TYPES))}). Use a quantization of the same "
            f"model in one of those types (e.g. Q4_K_M, Q4_0, Q8_0)."
        )


@dataclass
class SeqState:
    """The KV state of one sequence slot: the tokens whose K/V are in its cache, in order, and how
    they were computed (segments, for exact replay)."""

    cached: list[int] = field(default_factory=list)
    log: list[Segment] = field(default_factory=list)


@dataclass
class OpenedModel:
    """What a model's file gives before any device exists: its path, the parsed GGUF, the config,
    the tokenizer and the chat template (see `open_model`)."""

    path: object
    gguf: GGUFFile
    cfg: object
    tokenizer: object
    template: object


def open_model(model: str | None) -> OpenedModel:
    """Resolve `model` (a path or a name; None: the default model), parse its GGUF header and check
    that wgllm can run it (UnsupportedModelError, InvalidModelFileError, ModelNotFoundError)."""
    from wgllm import hub
    from wgllm.model.chat_template import ChatTemplate
    from wgllm.model.tokenizer import Tokenizer

    path = hub.resolve_model(model)
    g = GGUFFile(path)
    cfg = arches.config_for(g)
    check_tensor_types(g)
    return OpenedModel(path, g, cfg, Tokenizer.from_gguf(g), ChatTemplate.from_gguf(g))


class ModelSession:
    """What an engine of a model is besides its devices: the model's file opened (`path`, `gguf`,
    `cfg`, `tokenizer`, `template`; see `open_model`), the adapters it runs on (`adapters`,
    `adapter`) and the context (`n_ctx`), with what depends only on those: the chat prompt and
    the checks of a request. Shared by the in-process Engine and the supervised one
    (wgllm.runtime.supervisor)."""

    adapters: list[AdapterInfo]
    n_ctx: int

    def _open(self, model: str | None) -> None:
        opened = open_model(model)
        self.path, self.gguf, self.cfg = opened.path, opened.gguf, opened.cfg
        self.tokenizer, self.template = opened.tokenizer, opened.template

    @property
    def adapter(self) -> AdapterInfo:
        """The adapter of the first part (the only one unless the model is split)."""
        return self.adapters[0]

    def chat_prompt(self, messages: Sequence[dict], tools: Sequence[dict] | None = None) -> list[int]:
        """Token ids of `messages` rendered with the model's chat template (`tools`: the template's
        `tools` variable, OpenAI's {"type": "function", "function": {...}} objects)."""
        text = self.template.render(messages, add_generation_prompt=True, tools=tools)
        return self.tokenizer.encode(text, add_special=False)

    def _check_prompt(self, prompt: list[int], max_tokens: int, room: int = 1) -> None:
        """Raise for a prompt that is empty, leaves fewer than `room` positions of the context free
        (a generation needs one for its first token), holds a bad id, or a negative max_tokens."""
        if not prompt:
            raise RequestError("The prompt is empty: give at least one token of text.")
        if len(prompt) > self.n_ctx - room:
            raise ContextLengthExceededError(len(prompt), self.n_ctx)
        bad = [t for t in prompt if not 0 <= t < self.cfg.n_vocab]
        if bad:
            raise RequestError(f"Token id {bad[0]} is outside the vocabulary (0..{self.cfg.n_vocab - 1}).")
        if max_tokens < 0:
            raise RequestError(f"max_tokens must be >= 0, not {max_tokens}.")


class Engine(ModelSession):
    """A model loaded on one WebGPU adapter, ready to generate.

    model: a path to a .gguf file or a model name (see `wgllm models`); None
    for the default model. device: adapter index or name substring, or a
    policy ("auto", "high-performance", "low-power"); None: `policy`. ctx:
    context length in tokens (None: min(model's, 4096), reduced if it does
    not fit). precision: "auto", "f16" or "f32". chunk: prefill tokens per
    pass (None: the planner's default for the adapter, 32 on a CPU adapter, 128 elsewhere).
    gpu_memory: memory caps (e.g. "4GiB", "0=4GiB,1=8GiB"; see
    `wgllm.gpu.inventory.parse_caps`; None: $WGLLM_GPU_MEMORY).
    split: "auto" (split the model over adapters when no single one holds it),
    "none", or a placement such as "0:0-19,1:20-31" (see wgllm.plan.placement).
    recovery: a RecoveryPolicy (None: the default: recover on the same adapter,
    then fall back). faults: a fault-injection spec (see wgllm.runtime.faults;
    None: $WGLLM_FAULTS; or a FaultInjector). on_event: called with each RecoveryEvent.
    on_planned: called with the adapter summary once the model is planned (before the weights
    load). exclude: adapter indexes never to plan on. parallel: sequences served at once
    (continuous batching, wgllm.runtime.batch): the KV cache holds that many contexts of `ctx`
    tokens, and `generate` may be called from several threads, each call one sequence of the
    batch; 1 (default): one generation at a time.

    The model is planned (`self.plan`, see `wgllm.plan.planner`) from its GGUF
    header before any device exists: when it fits nowhere, ModelTooLargeError
    is raised and nothing is allocated. The device gets the adapter's budget,
    so a later allocation past it raises GpuOutOfMemoryError before the driver
    is asked. Failures and recoveries are listed in `self.events`.
    """

    def __init__(self, model: str | None = None, *, device: str | int | None = None, ctx: int | None = None,
                 precision: str = "auto", chunk: int | None = None, gpu_memory: Caps = None, policy: str = "auto",
                 split: str | None = "auto", recovery: RecoveryPolicy | None = None,
                 faults: str | FaultInjector | None = None, on_event=None, on_planned=None,
                 exclude: Iterable[int] = (), parallel: int = 1):
        self.recovery = (recovery or RecoveryPolicy()).validate()
        self.faults = faults if isinstance(faults, FaultInjector) else FaultInjector.from_env(faults)
        self.events = EventLog()
        if on_event is not None:
            self.events.listeners.append(on_event)
        self._open(model)
        self._request = dict(ctx=int(ctx) if ctx else None, precision=precision, chunk=chunk, caps=gpu_memory,
                             split=split, parallel=parallel)
        self._failed: set[int] = {int(i) for i in exclude}  # adapter indexes given up on
        self.plan, self.adapters = self._plan(device if device not in (None, "") else policy, self._failed)
        if on_planned is not None:
            on_planned(self.adapter_summary)
        self.precision = self.plan.precision
        self.n_ctx = self.plan.n_ctx
        self.chunk = max(1, min(self.plan.chunk, self.n_ctx))
        self.n_seq = self.plan.n_seq
        self.slots = [SeqState() for _ in range(self.n_seq)]  # slot 0: the conversation of `generate`
        self.stats = GenerationStats()
        self._sampler = Sampler()
        # on_progress(stage, done, total): called as work proceeds before the first token
        # ("prefill": prompt tokens run so far of those to run), for spinners and logs.
        self.on_progress = None
        self.chain: Chain | None = None
        self._busy: list[float] = []  # per part: see by_adapter
        self._broken: Exception | None = None  # the failure that took a device, until rebuilt
        self._broken_part: int | None = None  # the part whose device it took (None: rebuild every part)
        self._stale = False  # `cached` was adopted (see adopt) and its K/V are not on the devices yet
        self._batch = None  # the scheduler of a parallel engine (wgllm.runtime.batch)
        self._resilient(lambda: None)  # builds the devices, recovering from failures on the way
        if self.n_seq > 1:
            from wgllm.runtime.batch import Batcher

            self._batch = Batcher(self)

    @property
    def cached(self) -> list[int]:
        """The tokens whose K/V are in the cache (slot 0's), in order."""
        return self.slots[0].cached

    @cached.setter
    def cached(self, tokens: list[int]) -> None:
        self.slots[0].cached = tokens

    @property
    def _log(self) -> list[Segment]:
        """How the K/V of `cached` were computed (for exact replay)."""
        return self.slots[0].log

    @_log.setter
    def _log(self, log: list[Segment]) -> None:
        self.slots[0].log = log

    @property
    def adapter_summary(self) -> str:
        """The adapter, or for a split model every part's ("X (layers 0-18) + Y (layers 19-31)")."""
        if len(self.adapters) == 1:
            return self.adapters[0].summary
        return " + ".join(f"{a.summary} (layers {p.layers[0]}-{p.layers[1] - 1})"
                          for a, p in zip(self.adapters, self.plan.parts))

    @property
    def dev(self):
        """The first part's Device (None before it is built or after a failure took it)."""
        return self.chain.links[0].dev if self.chain is not None else None

    @property
    def model(self):
        """The first part's model (see `dev`)."""
        return self.chain.links[0].model if self.chain is not None else None

    def by_adapter(self) -> list[dict]:
        """Per part of the model (one unless split): adapter summary and index, layers [start, stop),
        bytes allocated now, bytes planned, the adapter's budget, and busy_s: seconds the host has
        spent on the part's work so far (submitting it, waiting for its read-backs)."""
        got = self.chain.allocated() if self.chain is not None else [0] * len(self.adapters)
        busy = self._busy if len(self._busy) == len(self.adapters) else [0.0] * len(self.adapters)
        return [{"adapter": a.summary, "index": a.index, "layers": list(p.layers), "allocated": n,
                 "planned": p.need, "budget": p.adapter.planning_budget, "busy_s": b}
                for a, p, n, b in zip(self.adapters, self.plan.parts, got, busy)]

    def _plan(self, policy, exclude: set[int] = frozenset()) -> tuple[Plan, list[AdapterInfo]]:
        """Plan the model on this machine's adapters, less `exclude` (no device is created here)."""
        r = self._request
        adapters = [a for a in list_adapters() if a.index not in exclude]
        plan = make_plan(layout_from_gguf(self.gguf), inventory(adapters, caps=r["caps"]), ctx=r["ctx"],
                         policy=policy, precision=r["precision"], chunk=r["chunk"], split=r["split"],
                         parallel=r["parallel"])
        by_index = {a.index: a for a in adapters}
        return plan, [by_index[p.adapter.index] for p in plan.parts]

    def _build(self, only: int | None = None) -> None:
        """Fresh devices for every part (or only part `only`), the weights uploaded, the KV cache
        replayed (through the parts up to the rebuilt one)."""
        rebuild = self.chain is not None or self._broken is not None
        if only is None or self.chain is None:
            if self.chain is not None:
                self.chain.release()
            if rebuild:
                self.adapters = [self._fresh_adapter(a) for a in self.adapters]
            links = [Link(a, p.layers, p.adapter.planning_budget) for a, p in zip(self.adapters, self.plan.parts)]
            self.chain = Chain(links, self.gguf, self.cfg, act=self.precision, n_ctx=self.n_ctx, chunk=self.chunk,
                               faults=self.faults, busy=self._busy, n_seq=self.n_seq)
            self._busy = self.chain.busy
            self.chain.hang_timeout_s = self.recovery.hang_timeout_s
            for k in range(len(links)):
                self.chain.build(k)
            self._replay()
        else:
            self.adapters[only] = self.chain.links[only].adapter = self._fresh_adapter(self.adapters[only])
            self.chain.build(only)
            self._replay(upto=only)
        self._broken = self._broken_part = None

    def _fresh_adapter(self, old: AdapterInfo) -> AdapterInfo:
        """Adapter `old`, enumerated anew: after a loss NVIDIA's driver refuses a new
        device from the old adapter object ("Parent device is lost"; measured on H100)."""
        listed = list_adapters()
        for a in listed:
            if (a.index, a.name, a.backend) == (old.index, old.name, old.backend):
                return a
        for a in listed:
            if (a.name, a.backend) == (old.name, old.backend):
                return a
        raise DeviceLostError("lost", old.summary, "the adapter is no longer listed by the driver")

    # --- public API ---------------------------------------------------------
    def reset(self) -> None:
        """Forget the KV cache (the next prompt is prefilled from scratch); on a parallel engine,
        that of every slot no running generation uses."""
        if self.n_seq > 1 and self._batch is not None:
            self._batch.forget()
            return
        self.slots = [SeqState() for _ in range(self.n_seq)]
        self._stale = False

    def adopt(self, cached: Sequence[int], log: Sequence[Segment]) -> None:
        """Take over a conversation's KV state (`cached` and the segments that computed it, as another
        engine of the same model on the same adapter had them): its K/V are computed by replaying the
        segments before the next generation, bit-identical to the original ones. A state this engine
        holds already, or a prefix of it (the K/V of those positions are on the devices), costs nothing."""
        cached, log = [int(t) for t in cached], list(log)
        if (cached, log) == (self.cached, self._log):
            return
        held = not self._stale and self.cached[: len(cached)] == cached and truncate(self._log, len(cached)) == log
        self.cached, self._log = cached, log
        self._stale = self._stale or not held

    def state(self) -> tuple[list[int], list[Segment]]:
        """The conversation's KV state (`cached`, log), for `adopt`."""
        return list(self.cached), list(self._log)

    def release(self) -> None:
        """Free every device and its memory now; the conversation is kept, and the next
        generation builds the devices again (and replays the KV cache)."""
        self._release()

    def close(self) -> None:
        """Release every device and all its memory; the engine cannot be used afterwards."""
        if self._batch is not None:
            self._batch.close()
            self._batch = None
        if self.chain is not None:
            self.chain.release()
        self.chain = None

    def generate(self, prompt: Sequence[int], *, max_tokens: int = 256, sampling: SamplingParams | None = None,
                 stop_ids: Iterable[int] | None = None, sampler: Sampler | None = None,
                 resume: Sequence[int] = (), log: Sequence[Segment] | None = None, note=None) -> Iterator[int]:
        """Yield generated token ids (stop tokens are not yielded). Stats land in `self.stats`.

        sampler: a `Sampler` (or subclass: logit bias, grammar, logprobs) to pick tokens
        with; default `Sampler(sampling)`. Plain greedy decoding without penalties runs
        the argmax on the GPU; any sampler whose `needs_logits` is true gets each
        step's logits row on the host.

        A GPU failure on the way is recovered from per `self.recovery`: the stream
        goes on with no token lost or repeated (greedy output equals the fault-free
        output; seeded sampling continues reproducibly). Without recovery, or when it
        is exhausted, DeviceLostError / GpuOutOfMemoryError is raised; the engine keeps
        the conversation and rebuilds the device on the next call.

        resume: tokens this generation already produced elsewhere (a worker process that died, see
        wgllm.runtime.supervisor), from the state before it (`adopt`): the K/V of the prompt and of
        resume[:-1] are replayed exactly and decoding goes on after resume[-1]; the sampler must be
        at its state after resume[-1]. Only the tokens after them are yielded.

        On a parallel engine (parallel > 1) the call returns a wgllm.runtime.batch.Stream at once (its
        `stats` are this generation's) and the generation runs in the batch beside the others; there
        resume= needs `log`, the segments that computed prompt + resume[:-1] (the prompt's as the
        stream's first `note` gave them), and `note` (see Batcher.submit) records, per token, what a
        supervisor needs to resume the stream elsewhere."""
        sampler = sampler if sampler is not None else Sampler(sampling or SamplingParams())
        prompt, resume = [int(t) for t in prompt], [int(t) for t in resume]
        self._check_prompt(prompt, max_tokens)
        stops = set(self.tokenizer.stop_ids if stop_ids is None else stop_ids)
        if self.n_seq > 1:
            if resume and log is None:
                raise RequestError("resume= on an engine serving several sequences (parallel > 1) needs the "
                                   "log= of the K/V it continues from.")
            stats = GenerationStats(prompt_tokens=len(prompt), finish_reason="length")
            return self._batcher().submit(prompt, max_tokens, sampler, stops, stats,
                                          resume=(list(log), resume) if resume else None, note=note)
        return self._generate(prompt, max_tokens, sampler, stops, resume)

    def _generate(self, prompt: list[int], max_tokens: int, sampler: Sampler, stops: set[int],
                  resume: list[int]) -> Iterator[int]:
        self._sampler = sampler
        self.stats = GenerationStats(prompt_tokens=len(prompt))
        self._history = prompt + resume
        yield from self._collect(self._survive(prompt, resume), prompt, max_tokens, stops, time.perf_counter(),
                                 resume)

    def _batcher(self):
        """The scheduler of the sequences of a parallel engine (made with the engine; its thread
        starts at the first use)."""
        if self._batch is None:
            raise RequestError("This engine is closed: load the model again to generate.")
        return self._batch

    def logits(self, prompt: Sequence[int]) -> np.ndarray:
        """Logits at every position of `prompt` ([T, vocab] float32), computed from an empty cache."""
        return self._every_row(prompt, lambda m: m.all_logits(), self.cfg.n_vocab)

    def hidden_states(self, prompt: Sequence[int]) -> np.ndarray:
        """The final-normed hidden state at every position of `prompt` ([T, dim] float32: what the
        logits are computed from, transformers' last `hidden_states`), from an empty cache."""
        return self._every_row(prompt, lambda m: m.all_hidden(), self.cfg.dim)

    def _every_row(self, prompt: Sequence[int], extra_of, width: int) -> np.ndarray:
        """Prefill `prompt` chunk by chunk from an empty cache, running `extra_of(model)`'s dispatches
        after each pass and reading its output rows ([T, width] float32). A parallel engine runs it
        in a free slot between the batch's passes."""
        prompt = [int(t) for t in prompt]
        self._check_prompt(prompt, 0, room=0)  # a whole context fits: nothing is generated
        if self.n_seq > 1:
            return self._batcher().call(lambda slot: self._rows_in(slot, prompt, extra_of, width))
        self.reset()
        return self._rows_in(0, prompt, extra_of, width)

    def _rows_in(self, slot: int, prompt: list[int], extra_of, width: int) -> np.ndarray:
        self.slots[slot] = SeqState()

        def work() -> np.ndarray:
            chain = self.chain
            extra, out = extra_of(chain.last)
            chain.write_tokens(prompt, 0)
            rows = []
            for s in range(0, len(prompt), self.chunk):
                T = min(self.chunk, len(prompt) - s)
                chain.run(T, s, extra=extra, body="prefill", seq=slot)
                rows.append(chain.read_rows(out, T, width))
            return np.concatenate(rows)

        return self._resilient(work)

    # --- recovery ---------------------------------------------------------------
    def _resilient(self, work):
        """Run `work()` on a healthy device: rebuild first if the device failed before;
        on a GPU failure, recover (per policy) and run it again."""
        while True:
            try:
                self._ready()
                return work()
            except Exception as exc:  # noqa: BLE001 - only GPU failures are handled; the rest re-raised
                if not health.is_gpu_failure(exc):
                    raise
                self._recover(exc)

    def _recover(self, exc: BaseException) -> None:
        """Detected GPU failure -> a rebuilt device for the part it took (same adapter, then a
        fallback re-plan of every part), or raise."""
        k = self.chain.active if self.chain is not None else 0
        k = k if k < len(self.adapters) else 0
        where = self.adapters[k].summary
        err = exc if isinstance(exc, GpuOutOfMemoryError) else health.as_device_error(exc, where)
        dev = self.chain.links[k].dev if self.chain is not None else None
        logged = dev.loss_logged() if dev is not None else None
        if isinstance(err, DeviceLostError) and err.reason == "unknown" and logged:
            err = DeviceLostError("lost", where, f"{err.detail}; the wgpu log said: {logged}")
        kind = health.classify(err)
        t0 = time.time()
        self._broken = err
        self._broken_part = k if len(self.adapters) > 1 and self.chain is not None else None
        self.events.add(where, kind, "detected", detail=health.last_line(exc))
        if not self.recovery.enabled:
            self._release()
            raise err
        oom_first = kind == "out-of-memory" and self.recovery.fallback  # the same adapter would likely fail again
        if oom_first and self._fall_back(kind, t0, k) or self._retry(kind, t0, k):
            return
        if self.recovery.fallback and not oom_first and self._fall_back(kind, t0, k):
            return
        self.events.add(where, kind, "gave up", t0)
        self._release()
        raise err

    def _retry(self, kind: str, t0: float, k: int) -> bool:
        """Rebuild part k on the same adapter, up to `retries` times with doubling backoff."""
        retries = self.recovery.retries
        for attempt in range(retries):
            time.sleep(self.recovery.backoff_s * 2 ** attempt)
            self.events.add(self.adapters[k].summary, kind, "retry", t0, f"attempt {attempt + 1} of {retries}")
            if self._try(lambda: self._build(self._broken_part), k):
                self.events.add(self.adapters[k].summary, kind, "continued", t0)
                return True
        return False

    def _try(self, build, k: int = 0) -> bool:
        """Run a rebuild; False (every device released) when it fails on the GPU too."""
        try:
            build()
            return True
        except Exception as exc:  # noqa: BLE001
            if not health.is_gpu_failure(exc):
                raise
            where = self.adapters[min(k, len(self.adapters) - 1)].summary
            self.events.add(where, health.classify(exc), "failed", detail=health.last_line(exc))
            self._release()
            return False

    def _fall_back(self, kind: str, t0: float, k: int) -> bool:
        """Re-plan without part k's adapter, in the planner's order (a split may be re-planned
        onto what is left), until a plan builds; on failure the engine stays planned as it was."""
        before = (self.plan, self.adapters, self.precision, self.n_ctx)
        lost = self.adapters[k]
        failed = self._failed | {lost.index}
        if not self.recovery.fallback_same_gpu:
            failed |= {a.index for a in list_adapters() if _same_gpu(a, lost)}
        while True:
            try:
                plan, adapters = self._plan("auto", exclude=failed)
            except WgllmError:
                self.plan, self.adapters, self.precision, self.n_ctx = before
                return False
            failed |= {a.index for a in adapters}
            if plan.n_ctx <= max(len(sl.cached) for sl in self.slots):
                continue
            names = " + ".join(a.summary for a in adapters)
            self.events.add(names, kind, "fallback", t0, f"from {lost.summary}")
            self.plan, self.adapters, self.precision, self.n_ctx = plan, adapters, plan.precision, plan.n_ctx
            self._release()
            if self._try(self._build):
                self._failed.add(lost.index)
                self.events.add(names, kind, "continued", t0)
                return True

    def _release(self) -> None:
        """Drop every device and everything on it (the conversation state stays)."""
        if self.chain is not None:
            self.chain.release()
        self.chain = None
        self._broken_part = None

    def _replay(self, upto: int | None = None) -> None:
        """Recompute the KV cache of every slot's `cached` with exactly the passes that first built it
        (through parts 0..upto: the parts after a rebuilt one kept theirs)."""
        for k in range(len(self.slots)):
            self.replay_slot(k, upto)

    def replay_slot(self, k: int, upto: int | None = None) -> None:
        """Recompute slot k's K/V from its log (see _replay)."""
        for seg in (s for s in self.slots[k].log if s.tokens):
            self.chain.write_tokens(seg.tokens, seg.start)
            step = self.chunk if seg.chunked else 1
            for s in range(seg.start, seg.end, step):
                self.chain.run(min(step, seg.end - s), s, upto=upto, seq=k)

    def _ready(self) -> None:
        """Healthy devices holding the K/V of `cached`: rebuilt (and replayed) after a failure; an
        adopted state replayed."""
        if self.chain is None or self._broken is not None:
            self._build(self._broken_part)
        elif self._stale:
            self._replay()
        self._stale = False

    def _survive(self, prompt: list[int], resume: list[int]) -> Iterator[int]:
        """The generation's tokens, carried across GPU failures (see generate)."""
        start = (list(self.cached), list(self._log), self._sampler.state())
        emitted: list[int] = list(resume)
        rng = start[2]
        if emitted:
            self._rewind(prompt, emitted, start)
            self._stale = True
        while True:
            try:
                self._ready()
                for tok in self._steps(prompt, emitted):
                    emitted.append(tok)
                    if self._sampler.needs_logits:
                        rng = self._sampler.state()
                    yield tok
                return
            except Exception as exc:  # noqa: BLE001 - only GPU failures are handled; the rest re-raised
                if not health.is_gpu_failure(exc):
                    raise
                self._rewind(prompt, emitted, start)
                self._sampler.set_state(rng)
                self._recover(exc)
                self.stats.recoveries += 1

    def _rewind(self, prompt: list[int], emitted: list[int], start) -> None:
        """Set `cached`/log to what was computed for sure: before the prompt if no token
        came out yet (so the prefill reruns identically), else prompt + emitted[:-1]."""
        self.cached, self._log = rewound(start[0], start[1], prompt, emitted)

    def _steps(self, prompt: list[int], emitted: list[int]) -> Iterator[int]:
        """Fresh: prefill, then decode. Resumed after a recovery: decode from the last
        emitted token (whose K/V is not in the rebuilt cache yet)."""
        if emitted:
            pos = len(prompt) + len(emitted) - 1
            self.chain.write_tokens([emitted[-1]], pos)
            done = len(emitted) - 1
        else:
            t0 = time.perf_counter()
            first = self._prefill(prompt)
            self.stats.prefill_s = time.perf_counter() - t0
            yield first
            pos, done = len(prompt), 0
        steps = self._decode_sampled if self._sampler.needs_logits else self._decode_greedy
        yield from steps(pos, done)

    # --- internals --------------------------------------------------------------
    def _prefill(self, prompt: list[int]) -> int:
        """Run the prompt's uncached suffix; returns the first generated token."""
        chain = self.chain
        keep = min(common_prefix(self.cached, prompt), len(prompt) - 1)  # >= 1 token must run
        self.cached, self._log = prompt[:keep], truncate(self._log, keep)
        self.stats.cached_tokens = keep
        chain.write_tokens(prompt[keep:], keep)
        starts = list(range(keep, len(prompt), self.chunk))
        for s in starts:
            if self.on_progress is not None:
                self.on_progress("prefill", s - keep, len(prompt) - keep)
            T = min(self.chunk, len(prompt) - s)
            last = s == starts[-1]
            if last:
                chain.fault_point("prefill")
            chain.run(T, s, head=last, produce=self._produces() if last else None)
        tok = self._read_next(len(prompt))
        self.cached = list(prompt)
        self._log.append(Segment(keep, prompt[keep:], True))
        return tok

    def _produces(self) -> str:
        """What a step reads back: the logits row (host sampling) or the GPU argmax's token."""
        return "logits" if self._sampler.needs_logits else "token"

    def _read_next(self, pos: int, slot: int = 0) -> int:
        """The token at `pos` made by the last pass (GPU argmax: read back; else sampled here)."""
        if not self._sampler.needs_logits:
            return self._read_slot(slot, pos)
        logits = self.checked_logits(self.chain.read_logits())
        tok = int(self._sampler.sample(logits, self._history))
        self.chain.write_tokens([tok], pos)
        return tok

    def checked_token(self, tok: int) -> int:
        """A token id the GPU argmax gave (DeviceLostError for its mark of non-finite logits)."""
        if tok >= self.cfg.n_vocab:
            raise DeviceLostError("unknown", self.adapters[-1].summary, "the logits are not finite (NaN or inf)")
        return tok

    def checked_logits(self, logits: np.ndarray) -> np.ndarray:
        """Logits read back (DeviceLostError when any is NaN or inf)."""
        if not np.isfinite(logits).all():
            raise DeviceLostError("unknown", self.adapters[-1].summary, "the logits are not finite (NaN or inf)")
        return logits

    def _read_slot(self, slot: int, pos: int) -> int:
        """The argmax's token for position `pos` from staging `slot` (relayed to the first part of a
        split model, whose embedding reads it next)."""
        tok = self.checked_token(self.chain.read_token(slot))
        if self.chain.split:
            self.chain.write_tokens([tok], pos)
        return tok

    def _decode_greedy(self, pos: int, done: int) -> Iterator[int]:
        """Greedy: yield the tokens of steps at pos, pos+1, ... (each step runs tokens[p]
        and writes tokens[p+1]), keeping PIPELINE_DEPTH steps queued ahead (one model part;
        a split model needs each token on the host before the next step). `done`: decode
        steps of this generation before this call (for fault points)."""
        chain = self.chain
        depth = 1 if chain.split else PIPELINE_DEPTH
        queued: deque[tuple[int, int]] = deque()
        nxt = pos  # next step to submit
        ahead = None  # a split model: the next step's first part, encoded while the last part runs
        while True:
            while len(queued) < depth and nxt < self.n_ctx:
                slot = nxt % len(chain.last.staging)
                chain.run(1, nxt, head=True, produce="token", slot=slot, first=ahead)
                ahead = chain.encode_first(1, nxt + 1) if chain.split and nxt + 1 < self.n_ctx else None
                queued.append((nxt, slot))
                nxt += 1
            if not queued:
                return
            p, slot = queued.popleft()
            chain.fault_point("decode", done + p - pos + 1)
            yield self._read_slot(slot, p + 1)

    def _decode_sampled(self, pos: int, done: int) -> Iterator[int]:
        for p in range(pos, self.n_ctx):
            self.chain.run(1, p, head=True, produce="logits")
            self.chain.fault_point("decode", done + p - pos + 1)
            yield self._read_next(p + 1)

    def _collect(self, tokens: Iterator[int], prompt: list[int], max_tokens: int, stops: set[int],
                 t0: float, resume: list[int]) -> Iterator[int]:
        """Apply stop/length rules and record stats; afterwards `cached` holds exactly the
        tokens whose K/V were computed (prompt + generated, less a last token never run).
        `resume`: tokens generated before (count towards max_tokens, not yielded again)."""
        st = self.stats
        st.finish_reason = "length"
        generated: list[int] = list(resume)
        t_first = None
        try:
            if len(generated) >= max_tokens:
                return
            for tok in tokens:
                if t_first is None:
                    t_first = time.perf_counter()
                    st.ttft_s = t_first - t0
                if tok in stops:
                    st.finish_reason = "stop"
                    break
                generated.append(tok)
                self._history.append(tok)
                st.completion_tokens += 1
                st.decode_s = time.perf_counter() - t_first
                yield tok
                if len(generated) >= max_tokens:
                    break
        finally:
            tokens.close()
            self._settle(prompt, generated if st.finish_reason == "stop" else generated[:-1])

    def _settle(self, prompt: list[int], ran: list[int]) -> None:
        """After a generation: `cached`/log = prompt + the generated tokens that ran."""
        self.cached, self._log = settled(self.cached, self._log, prompt, ran)


def _same_gpu(a: AdapterInfo, b: AdapterInfo) -> bool:
    """Whether two adapters are one GPU through different backends (e.g. Vulkan and OpenGL:
    "NVIDIA H100 80GB HBM3" and "NVIDIA H100 80GB HBM3/PCIe/SSE2")."""
    if a.vendor_id and a.device_id and (a.vendor_id, a.device_id) == (b.vendor_id, b.device_id):
        return True
    return bool(a.name) and bool(b.name) and (a.name.startswith(b.name) or b.name.startswith(a.name))
