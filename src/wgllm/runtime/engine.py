"""The generation engine: load a GGUF model onto a WebGPU device and generate tokens.

`Engine.generate` prefills the prompt in chunks (matrix-matrix passes), then
decodes one token per submission. Greedy decoding never reads logits back:
the argmax kernel writes the next token into the GPU-side `tokens` buffer,
the next step's embedding reads it there, and the host only reads 4 bytes per
token through a ring of small staging buffers while further steps are
already queued. Sampling reads the logits row and samples on the host.
The KV cache is reused across calls for the common prefix of the prompt.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np
import wgpu

from wgllm.errors import ContextLengthExceededError, FeatureMissingError, RequestError, UnsupportedModelError
from wgllm.gpu.device import Device
from wgllm.gpu.discovery import AdapterInfo, list_adapters
from wgllm.gpu.inventory import Caps, inventory
from wgllm.kernels import ops
from wgllm.model import arch as arches
from wgllm.model.gguf import GGUFFile
from wgllm.plan.catalog import layout_from_gguf
from wgllm.plan.planner import DEFAULT_CTX, RUNNABLE_TYPES, Plan, make_plan  # noqa: F401 (DEFAULT_CTX: API)
from wgllm.runtime.sampler import Sampler, SamplingParams

SUPPORTED_TYPES = set(RUNNABLE_TYPES)
PIPELINE_DEPTH = 3  # decode steps queued ahead of the one being read


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


def pick_precision(requested: str, dev: Device, kind: str = "unknown") -> str:
    """'f16' or 'f32' activations. auto: f16 on a GPU with shader-f16 (half the KV
    memory and activation traffic); f32 on a CPU adapter, where f16 arithmetic is
    emulated and measured slower (bench/RESULTS.md), or without shader-f16.
    (The planner applies the same rule, `wgllm.plan.planner.precisions`, before any device exists.)"""
    if requested not in ("auto", "f16", "f32"):
        raise RequestError(f"precision must be auto, f16 or f32, not '{requested}'.")
    if requested == "f16" and not dev.has_f16:
        raise FeatureMissingError(
            f"f16 precision was asked for, but {dev.adapter.summary} lacks the shader-f16 "
            f"feature. Use --precision f32 (or auto)."
        )
    if requested == "auto":
        return "f16" if dev.has_f16 and kind != "cpu" else "f32"
    return requested


class Engine:
    """A model loaded on one WebGPU adapter, ready to generate.

    model: a path to a .gguf file or a model name (see `wgllm models`); None
    for the default model. device: adapter index or name substring, or a
    policy ("auto", "high-performance", "low-power"); None: `policy`. ctx:
    context length in tokens (None: min(model's, 4096), reduced if it does
    not fit). precision: "auto", "f16" or "f32". chunk: prefill tokens per
    pass. gpu_memory: memory caps (e.g. "4GiB", "0=4GiB,1=8GiB"; see
    `wgllm.gpu.inventory.parse_caps`; None: $WGLLM_GPU_MEMORY).

    The model is planned (`self.plan`, see `wgllm.plan.planner`) from its GGUF
    header before any device exists: when it fits nowhere, ModelTooLargeError
    is raised and nothing is allocated. The device gets the adapter's budget,
    so a later allocation past it raises GpuOutOfMemoryError before the driver
    is asked.
    """

    def __init__(self, model: str | None = None, *, device: str | int | None = None, ctx: int | None = None,
                 precision: str = "auto", chunk: int = 128, gpu_memory: Caps = None, policy: str = "auto"):
        from wgllm import hub
        from wgllm.model.chat_template import ChatTemplate
        from wgllm.model.tokenizer import Tokenizer

        self.path = hub.resolve_model(model)
        self.gguf = GGUFFile(self.path)
        self.cfg = arches.config_for(self.gguf)
        check_tensor_types(self.gguf)
        self.tokenizer = Tokenizer.from_gguf(self.gguf)
        self.template = ChatTemplate.from_gguf(self.gguf)
        self.plan, self.adapter = self._plan(device if device not in (None, "") else policy, ctx, precision,
                                             chunk, gpu_memory)
        self.dev = Device(self.adapter.adapter, budget=self.plan.budget)
        self.precision = self.plan.precision
        self.n_ctx = self.plan.n_ctx
        chunk = max(1, min(chunk, self.n_ctx))
        self.model = arches.model_class(self.cfg)(
            self.dev, self.gguf, self.cfg, act=self.precision, n_ctx=self.n_ctx, chunk=chunk
        )
        self.cached: list[int] = []  # tokens whose K/V are in the cache, in order
        self.stats = GenerationStats()
        self._staging = [self.dev.buffer(4, "staging", wgpu.BufferUsage.MAP_READ | wgpu.BufferUsage.COPY_DST)
                         for _ in range(PIPELINE_DEPTH + 1)]
        self._logit_staging = self.dev.buffer(self.cfg.n_vocab * 4, "staging",
                                              wgpu.BufferUsage.MAP_READ | wgpu.BufferUsage.COPY_DST)

    def _plan(self, policy, ctx: int | None, precision: str, chunk: int, gpu_memory: Caps
              ) -> tuple[Plan, AdapterInfo]:
        """Plan the model on this machine's adapters (no device is created here)."""
        ctx = int(ctx) if ctx else None  # 0 / None: the default
        adapters = list_adapters()
        plan = make_plan(layout_from_gguf(self.gguf), inventory(adapters, caps=gpu_memory), ctx=ctx,
                         policy=policy, precision=precision, chunk=chunk)
        return plan, next(a for a in adapters if a.index == plan.adapter.index)

    # --- public API ---------------------------------------------------------
    def reset(self) -> None:
        """Forget the KV cache (the next prompt is prefilled from scratch)."""
        self.cached = []

    def chat_prompt(self, messages: Sequence[dict]) -> list[int]:
        """Token ids of `messages` rendered with the model's chat template."""
        text = self.template.render(messages, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special=False)

    def generate(self, prompt: Sequence[int], *, max_tokens: int = 256, sampling: SamplingParams | None = None,
                 stop_ids: Iterable[int] | None = None) -> Iterator[int]:
        """Yield generated token ids (stop tokens are not yielded). Stats land in `self.stats`."""
        sampling = sampling or SamplingParams()
        sampling.validate()
        prompt = [int(t) for t in prompt]
        self._check_prompt(prompt, max_tokens)
        stops = set(self.tokenizer.stop_ids if stop_ids is None else stop_ids)
        self.stats = GenerationStats(prompt_tokens=len(prompt))
        self._sampler = Sampler(sampling)
        self._history = list(prompt)
        t0 = time.perf_counter()
        first = self._prefill(prompt, sampling)
        self.stats.prefill_s = time.perf_counter() - t0
        steps = self._decode_greedy if sampling.is_greedy else self._decode_sampled
        yield from self._collect(steps(first, len(prompt), sampling), prompt, max_tokens, stops, t0)

    def logits(self, prompt: Sequence[int]) -> np.ndarray:
        """Logits at every position of `prompt` ([T, vocab] float32), computed from an empty cache."""
        prompt = [int(t) for t in prompt]
        self._check_prompt(prompt, 0)
        self.cached = []
        m = self.model
        extra, out = m.all_logits()
        m.write_tokens(prompt, 0)
        rows = []
        for s in range(0, len(prompt), m.chunk):
            T = min(m.chunk, len(prompt) - s)
            ops.write_step(self.dev, m.step, T, s)
            self.dev.run(m.prefill + extra)
            rows.append(self.dev.read_array(out, np.float32, T * self.cfg.n_vocab).reshape(T, -1))
        self.cached = []  # the pass above wrote no argmax token; keep the state simple
        return np.concatenate(rows)

    # --- internals --------------------------------------------------------------
    def _check_prompt(self, prompt: list[int], max_tokens: int) -> None:
        if not prompt:
            raise RequestError("The prompt is empty: give at least one token of text.")
        if len(prompt) >= self.n_ctx:
            raise ContextLengthExceededError(len(prompt), self.n_ctx)
        bad = [t for t in prompt if not 0 <= t < self.cfg.n_vocab]
        if bad:
            raise RequestError(f"Token id {bad[0]} is outside the vocabulary (0..{self.cfg.n_vocab - 1}).")
        if max_tokens < 0:
            raise RequestError(f"max_tokens must be >= 0, not {max_tokens}.")

    def _prefill(self, prompt: list[int], sampling: SamplingParams) -> int:
        """Run the prompt's uncached suffix; returns the first generated token."""
        m = self.model
        keep = min(_common_prefix(self.cached, prompt), len(prompt) - 1)  # >= 1 token must run
        self.cached = prompt[:keep]
        self.stats.cached_tokens = keep
        m.write_tokens(prompt[keep:], keep)
        starts = list(range(keep, len(prompt), m.chunk))
        for s in starts:
            T = min(m.chunk, len(prompt) - s)
            ops.write_step(self.dev, m.step, T, s)
            last = s == starts[-1]
            body = m.decode if T == 1 else m.prefill
            self._submit(body + (m.head if last else []), sampling if last else None, len(prompt))
        self.cached = list(prompt)
        return self._read_next(len(prompt), sampling)

    def _submit(self, dispatches, sampling: SamplingParams | None, next_pos: int, slot: int = 0) -> None:
        """Submit one pass; copy the produced token (greedy) or the logits (sampling) to staging."""
        enc = self.dev.encode(dispatches)
        if sampling is not None and not sampling.is_greedy:
            enc.copy_buffer_to_buffer(self.model.acts.logits, 0, self._logit_staging, 0, self._logit_staging.size)
        elif sampling is not None:
            enc.copy_buffer_to_buffer(self.model.tokens, next_pos * 4, self._staging[slot], 0, 4)
        self.dev.queue.submit([enc.finish()])

    def _read_next(self, pos: int, sampling: SamplingParams, slot: int = 0) -> int:
        """The token at `pos` made by the last pass (greedy: read back; else: sampled here)."""
        if sampling.is_greedy:
            return self._read_slot(slot)
        buf = self._logit_staging
        buf.map_sync(wgpu.MapMode.READ)
        logits = np.frombuffer(buf.read_mapped(), np.float32).copy()
        buf.unmap()
        tok = int(self._sampler.sample(logits, self._history))
        self.model.write_tokens([tok], pos)
        return tok

    def _read_slot(self, slot: int) -> int:
        buf = self._staging[slot]
        buf.map_sync(wgpu.MapMode.READ)
        tok = int(np.frombuffer(buf.read_mapped(), np.uint32)[0])
        buf.unmap()
        return tok

    def _decode_greedy(self, first: int, pos: int, sampling: SamplingParams) -> Iterator[int]:
        """Greedy: yield `first`, then the tokens of steps at pos, pos+1, ... (each step runs
        tokens[p] and writes tokens[p+1]), keeping PIPELINE_DEPTH steps queued ahead."""
        m = self.model
        yield first
        queued: deque[tuple[int, int]] = deque()
        nxt = pos  # next step to submit
        while True:
            while len(queued) < PIPELINE_DEPTH and nxt < self.n_ctx:
                slot = nxt % len(self._staging)
                ops.write_step(self.dev, m.step, 1, nxt)
                self._submit(m.decode + m.head, sampling, nxt + 1, slot)
                queued.append((nxt, slot))
                nxt += 1
            if not queued:
                return
            _, slot = queued.popleft()
            yield self._read_slot(slot)

    def _decode_sampled(self, first: int, pos: int, sampling: SamplingParams) -> Iterator[int]:
        m = self.model
        yield first
        for p in range(pos, self.n_ctx):
            ops.write_step(self.dev, m.step, 1, p)
            self._submit(m.decode + m.head, sampling, p + 1)
            yield self._read_next(p + 1, sampling)

    def _collect(self, tokens: Iterator[int], prompt: list[int], max_tokens: int, stops: set[int],
                 t0: float) -> Iterator[int]:
        """Apply stop/length rules and record stats; afterwards `cached` holds exactly the
        tokens whose K/V were computed (prompt + generated, less a last token never run)."""
        st = self.stats
        st.finish_reason = "length"
        generated: list[int] = []
        t_first = None
        try:
            if max_tokens == 0:
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
            ran = generated if st.finish_reason == "stop" else generated[:-1]
            self.cached = prompt + ran
            tokens.close()


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
