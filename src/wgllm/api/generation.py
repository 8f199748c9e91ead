"""Requests -> jobs -> pieces of text: the OpenAI API on top of `Engine.generate`.

`prepare_chat` / `prepare_completion` make every check that needs the model
(model name, token ids, logit_bias ids, context length, JSON schema) and
tokenize the prompt, so a bad request fails before anything is generated.
`run` then generates every choice of a `Job` one after another and yields
`Piece`s: an empty one when a choice starts (before its prefill: a stream
sends the role chunk then), text with the logprobs of the tokens that made
it, and a finish reason on a choice's last piece. It holds no generation state of its own
beyond the text not yet emitted: the engine owns the KV cache and the token
history (a device recovery inside `Engine.generate` is invisible here).

n > 1: choices run sequentially on the one engine (the prompt's K/V are reused
from the cache after the first). With a seed, choice j of a prompt samples
with seed + j, so the choices differ and the whole request is reproducible.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from copy import copy
from dataclasses import dataclass, field
from typing import Any

from wgllm.api.grammar import GrammarMask, check_grammar, grammar_for
from wgllm.api.protocol import ChatCompletionRequest, CompletionRequest
from wgllm.api.sampling import ApiSampler, StepLogprobs
from wgllm.api.stops import StopText
from wgllm.api.tools import ToolPlan, plan_for
from wgllm.api.types import Usage
from wgllm.errors import (
    ContextLengthExceededError,
    EngineBusyError,
    InvalidParameterError,
    ModelNotFoundError,
    ModelNotLoadedError,
)
from wgllm.runtime.sampler import Sampler, SamplingParams

Request = ChatCompletionRequest | CompletionRequest


@dataclass
class Job:
    """A validated request ready to run. `usage` is filled in when `run` ends;
    setting `cancel` stops the generation at the next token (finish_reason "abort")."""

    kind: str  # "chat" or "text"
    request: Request
    prompts: list[list[int]]
    max_tokens: list[int]
    grammar: str | None
    bias: dict[int, float]
    model: str
    id: str
    created: int = field(default_factory=lambda: int(time.time()))
    cancel: threading.Event = field(default_factory=threading.Event)
    usage: Usage | None = None
    fingerprint: str = ""
    tools: ToolPlan | None = None  # the request's tools (chat), None without


@dataclass
class Piece:
    """Text of choice `index` that may be emitted, with the logprobs of the tokens behind it."""

    index: int
    text: str
    steps: list[StepLogprobs] = field(default_factory=list)
    finish_reason: str | None = None  # set on the last piece of a choice


# --- model names --------------------------------------------------------------------------


def model_id(engine: Any) -> str:
    """The name the engine's model is served under."""
    return getattr(engine, "model_id", None) or engine.path.stem


def check_model(engine: Any, requested: str | None) -> str:
    """The served model's name, if `engine` serves `requested` (ModelNotFoundError otherwise)."""
    if getattr(engine, "loaded", True) is False:
        raise ModelNotLoadedError(
            "No model is loaded in this engine (it was unloaded). Call engine.load(model) first.")
    served = model_id(engine)
    names = set(getattr(engine, "model_names", ())) | set(getattr(engine, "aliases", ())) | {served}
    if requested is not None and requested not in names and getattr(engine, "strict_model_names", True):
        raise ModelNotFoundError(
            f"The model '{requested[:100]}' is not loaded here: this engine serves '{served}'. Ask for "
            f"model '{served}' (GET /v1/models lists it), or leave the model field out in Python."
        )
    return served


# --- preparing --------------------------------------------------------------------------


def prepare_chat(engine: Any, req: ChatCompletionRequest) -> Job:
    """Check `req` against the model and render its messages (and tools) into prompt tokens."""
    served = check_model(engine, req.model)
    messages = [m.as_template_dict() for m in req.messages]
    plan = plan_for(engine.template, req) if req.tools else None
    if plan is None:
        prompt = engine.chat_prompt(messages)
    else:
        prompt = engine.chat_prompt(plan.template_messages(messages), tools=plan.template_tools())
    return _job(engine, "chat", req, [prompt], served, f"chatcmpl-{uuid.uuid4().hex}", plan)


def prepare_completion(engine: Any, req: CompletionRequest) -> Job:
    """Check `req` against the model and tokenize its prompt(s)."""
    served = check_model(engine, req.model)
    p = req.prompt
    if isinstance(p, str) or (p and isinstance(p[0], str)):
        texts = [p] if isinstance(p, str) else p
        prompts = [engine.tokenizer.encode(t, add_special=True) for t in texts]
    else:
        prompts = [p] if isinstance(p[0], int) else p
    for i, ids in enumerate(prompts):
        _check_ids(engine, ids, "prompt" if len(prompts) == 1 else f"prompt.{i}")
    return _job(engine, "text", req, prompts, served, f"cmpl-{uuid.uuid4().hex}")


def _job(engine: Any, kind: str, req: Request, prompts: list[list[int]], served: str, job_id: str,
         plan: ToolPlan | None = None) -> Job:
    limits = [_token_limit(engine, ids, req.token_limit) for ids in prompts]
    bias = _bias(engine, req.logit_bias)
    forced = plan is not None and plan.forced
    grammar = plan.grammar() if forced else grammar_for(req.response_format)
    if grammar is not None:
        check_grammar(engine.tokenizer, grammar, "tools" if forced else "response_format")
    fp = f"wgllm_{getattr(engine, 'precision', '')}"
    return Job(kind, req, prompts, limits, grammar, bias, served, job_id, fingerprint=fp, tools=plan)


def _check_ids(engine: Any, ids: list[int], param: str) -> None:
    if not ids:
        raise InvalidParameterError(f"Invalid request: '{param}' is empty: give at least one token of text.", param)
    n_vocab = engine.cfg.n_vocab
    bad = [t for t in ids if not 0 <= t < n_vocab]
    if bad:
        raise InvalidParameterError(
            f"Invalid request: '{param}' holds token id {bad[0]}, outside this model's vocabulary "
            f"(0..{n_vocab - 1}).", param)


def _token_limit(engine: Any, prompt: list[int], asked: int | None) -> int:
    """max_tokens for `prompt`: what was asked, if prompt + it fits; else the rest of the context."""
    n_ctx, p = engine.n_ctx, len(prompt)
    if p >= n_ctx:
        raise ContextLengthExceededError(p, n_ctx)
    if asked is None:
        return n_ctx - p
    if p + asked > n_ctx:
        err = ContextLengthExceededError(p + asked, n_ctx, what="prompt plus max_tokens")
        err.message = (f"The prompt ({p} tokens) plus max_tokens ({asked}) is {p + asked} tokens, but the "
                       f"context holds only {n_ctx} tokens. Ask for at most {n_ctx - p} tokens, shorten the "
                       f"prompt, or load the model with a larger context (--ctx), if the model and memory allow it.")
        err.args = (err.message,)
        err.param = "max_tokens"
        raise err
    return asked


def _bias(engine: Any, logit_bias: dict[str, float] | None) -> dict[int, float]:
    out = {int(k): float(v) for k, v in (logit_bias or {}).items()}
    n_vocab = engine.cfg.n_vocab
    bad = [t for t in out if t >= n_vocab]
    if bad:
        raise InvalidParameterError(
            f"Invalid request: 'logit_bias' names token id {bad[0]}, outside this model's vocabulary "
            f"(0..{n_vocab - 1}).", "logit_bias")
    return out


# --- running ----------------------------------------------------------------------------


def _params(req: Request, seed: int | None) -> SamplingParams:
    """OpenAI's defaults (temperature 1, top_p 1) and semantics (penalties over all generated tokens)."""
    return SamplingParams(
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p, top_k=req.top_k or 0, min_p=req.min_p or 0.0,
        presence_penalty=req.presence_penalty or 0.0, frequency_penalty=req.frequency_penalty or 0.0,
        repeat_last_n=-1, seed=seed)


def _sampler(engine: Any, job: Job, prompt: list[int], seed: int | None) -> Sampler:
    params = _params(job.request, seed)
    k = job.request.n_logprobs
    if not (job.bias or job.grammar or k is not None or params.has_penalties):
        return Sampler(params)  # plain: greedy runs its argmax on the GPU
    grammar = GrammarMask(engine.tokenizer, job.grammar) if job.grammar else None
    return ApiSampler(params, prompt_len=len(prompt), bias=job.bias, grammar=grammar, top_logprobs=k)


def run(engine: Any, job: Job) -> Iterator[Piece]:
    """Generate every choice of `job` in order (index = prompt * n + j); fill `job.usage` at the end.
    One run at a time (EngineBusyError), but on a parallel engine (n_seq > 1: continuous batching)
    runs go on together, each a sequence of the batch."""
    with _claim(engine):
        acc = _Accumulator(engine)
        for p, (prompt, limit) in enumerate(zip(job.prompts, job.max_tokens)):
            for j in range(job.request.n):
                seed = None if job.request.seed is None else job.request.seed + j
                yield from _choice(engine, job, prompt, limit, p * job.request.n + j, seed, acc, first=j == 0)
        job.usage = acc.usage()


@contextmanager
def _claim(engine: Any) -> Iterator[None]:
    """The engine for one run: held alone (EngineBusyError if another run holds it), or on a parallel
    engine counted among its runs (`_runs`, read by unload); the interrupt flag is cleared when the
    run is the only one."""
    lock = _engine_lock(engine)
    parallel = getattr(engine, "n_seq", 1) > 1
    if not lock.acquire(blocking=False):
        raise EngineBusyError()
    try:
        runs = getattr(engine, "_runs", 0)
        interrupt = getattr(engine, "_interrupt", None)
        if interrupt is not None and runs == 0:
            interrupt.clear()
        if parallel:
            engine._runs = runs + 1
    finally:
        if parallel:
            lock.release()
    try:
        yield
    finally:
        if parallel:
            with lock:
                engine._runs -= 1
        else:
            lock.release()


def _engine_lock(engine: Any) -> threading.Lock:
    lock = getattr(engine, "_api_lock", None)
    if lock is None:
        lock = engine._api_lock = threading.Lock()
    return lock


def _cancelled(engine: Any, job: Job) -> bool:
    interrupt = getattr(engine, "_interrupt", None)
    return job.cancel.is_set() or (interrupt is not None and interrupt.is_set())


def _choice(engine: Any, job: Job, prompt: list[int], limit: int, index: int, seed: int | None,
            acc: _Accumulator, first: bool) -> Iterator[Piece]:
    """One choice: tokens -> text through the stream decoder and the stop sequences."""
    if _cancelled(engine, job):  # a later choice of a cancelled request: do not start it
        yield Piece(index, "", finish_reason="abort")
        return
    yield Piece(index, "")  # the choice starts: a stream sends its role chunk now, before the prefill
    sampler = _sampler(engine, job, prompt, seed)
    steps: list[StepLogprobs] = getattr(sampler, "steps", [])
    stops = StopText(job.request.stop_list)
    dec = engine.tokenizer.stream_decoder()
    n_tok, emitted, finish = 0, 0, None
    gen = engine.generate(prompt, max_tokens=limit, sampler=sampler)
    try:
        for tok in gen:
            if _cancelled(engine, job):
                finish = "abort"
                break
            acc.first_token()
            n_tok += 1
            text = stops.push(dec.add(tok))
            if text or stops.hit is not None:
                yield Piece(index, text, steps[emitted:n_tok])
                emitted = n_tok
            if stops.hit is not None:
                finish = "stop"
                break
    finally:
        gen.close()
        stats = getattr(gen, "stats", None) or engine.stats  # a batched generation's own (wgllm.runtime.batch)
        acc.add(copy(stats), first)
    finish = finish or stats.finish_reason or "length"
    tail = "" if finish == "abort" else stops.push(dec.flush()) + stops.flush()
    yield Piece(index, tail, steps[emitted:n_tok], finish_reason=finish)


def recoveries(engine: Any) -> int:
    """Device recoveries the engine has made so far: its `recoveries` counter, else its event
    log's (`engine.events.recoveries`, or the "continued" entries of `engine.events`), else 0."""
    return _count(engine, "recoveries", "continued")


def by_adapter(engine: Any) -> list[dict]:
    """The engine's per-adapter figures (`by_adapter()`, see wgllm.runtime.engine), or none."""
    fn = getattr(engine, "by_adapter", None)
    return list(fn()) if callable(fn) else []


def device_losses(engine: Any) -> int:
    """GPU failures the engine has seen so far (as `recoveries`: "failures" / "detected" entries)."""
    return _count(engine, "failures", "detected")


def _count(engine: Any, counter: str, action: str) -> int:
    value = getattr(engine, counter, None)
    if isinstance(value, int):
        return value
    events = getattr(engine, "events", None)
    value = getattr(events, counter, None)
    if isinstance(value, int):
        return value
    return sum(1 for e in events or [] if getattr(e, "action", None) == action)


class _Accumulator:
    """Sums the per-choice GenerationStats of a job into one Usage."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.t0 = time.perf_counter()
        self.ttft: float | None = None
        self.rec0 = recoveries(engine)
        self.busy0 = [p["busy_s"] for p in by_adapter(engine)]
        self.prompt = self.cached = self.completion = 0
        self.prefill_tokens = 0
        self.prefill_s = self.decode_s = 0.0
        self.decode_tokens = 0

    def first_token(self) -> None:
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.t0

    def add(self, st: Any, first: bool) -> None:
        if first:
            self.prompt += st.prompt_tokens
            self.cached += st.cached_tokens
        self.completion += st.completion_tokens
        self.prefill_tokens += st.prompt_tokens - st.cached_tokens
        self.prefill_s += st.prefill_s
        self.decode_tokens += max(st.completion_tokens - 1, 0)
        self.decode_s += st.decode_s

    def usage(self) -> Usage:
        e = self.engine
        adapter = getattr(e, "adapter", None)
        return Usage.model_validate({
            "prompt_tokens": self.prompt, "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached},
            "extra": {
                "prefill_tokens_per_s": self.prefill_tokens / self.prefill_s if self.prefill_s > 0 else 0.0,
                "decode_tokens_per_s": self.decode_tokens / self.decode_s if self.decode_s > 0 else 0.0,
                "time_to_first_token_s": self.ttft or 0.0,
                "e2e_latency_s": time.perf_counter() - self.t0,
                "adapter": getattr(e, "adapter_summary", None) or getattr(adapter, "summary", ""),
                "precision": getattr(e, "precision", ""),
                "recoveries": recoveries(e) - self.rec0,
                "adapters": self._adapters(),
            },
        })

    def _adapters(self) -> list[dict]:
        parts = by_adapter(self.engine)
        busy0 = self.busy0 if len(self.busy0) == len(parts) else [0.0] * len(parts)
        return [{"adapter": p["adapter"], "layers": p["layers"], "memory_allocated_bytes": p["allocated"],
                 "memory_planned_bytes": p["planned"], "busy_s": max(p["busy_s"] - b, 0.0)}
                for p, b in zip(parts, busy0)]
