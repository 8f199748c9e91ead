"""Pieces -> OpenAI objects: whole responses, or the chunks of a stream.

A whole response is the concatenation of the same pieces a stream sends, so
streamed and non-streamed outputs of one request are the same text.
Stream layout (as OpenAI): per choice, a first chunk with the role (sent as
the choice starts, before its prompt is prefilled), then the content chunks, then a chunk with an empty delta and the finish reason; with
`stream_options.include_usage`, a last chunk with no choices and the usage.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from wgllm.api.generation import Job, Piece
from wgllm.api.grammar import token_bytes
from wgllm.api.legacy_functions import as_function_call
from wgllm.api.sampling import StepLogprobs
from wgllm.api.types import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    ChoiceLogprobs,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    Delta,
    TokenLogprob,
    ToolCall,
    TopLogprob,
)


def _token_text(tok: Any, token: int) -> str:
    return tok.decode([token])


def chat_logprobs(tok: Any, steps: list[StepLogprobs]) -> list[TokenLogprob]:
    """Chat-style logprobs of `steps` (token text, log-probability, bytes, alternatives)."""
    def top(t: int, lp: float) -> TopLogprob:
        return TopLogprob(token=_token_text(tok, t), logprob=lp, bytes=list(token_bytes(tok, t)))

    return [TokenLogprob(**top(s.token, s.logprob).model_dump(), top_logprobs=[top(t, lp) for t, lp in s.top])
            for s in steps]


def text_logprobs(tok: Any, steps: list[StepLogprobs], offset: int) -> CompletionLogprobs:
    """Legacy completions logprobs; text_offset counts from `offset` (characters of the choice so far)."""
    out = CompletionLogprobs()
    for s in steps:
        text = _token_text(tok, s.token)
        out.tokens.append(text)
        out.token_logprobs.append(s.logprob)
        out.top_logprobs.append({_token_text(tok, t): lp for t, lp in s.top})
        out.text_offset.append(offset)
        offset += len(text)
    return out


def _gather(pieces: Iterable[Piece]) -> tuple[dict[int, str], dict[int, list[StepLogprobs]], dict[int, str | None]]:
    """Per choice index: the whole text, every step's logprobs, and the finish reason."""
    texts: dict[int, list[str]] = {}
    steps: dict[int, list[StepLogprobs]] = {}
    finish: dict[int, str | None] = {}
    for p in pieces:
        texts.setdefault(p.index, []).append(p.text)
        steps.setdefault(p.index, []).extend(p.steps)
        if p.finish_reason:
            finish[p.index] = p.finish_reason
    return {i: "".join(t) for i, t in texts.items()}, steps, finish


# --- chat -----------------------------------------------------------------------------


def chat_result(engine: Any, job: Job, pieces: Iterable[Piece]) -> ChatCompletion:
    """The whole chat completion of `job` (runs it)."""
    texts, steps, finish = _gather(pieces)
    want_lp = job.request.n_logprobs is not None
    choices = []
    for i in sorted(texts):
        content, calls = texts[i], []
        if job.tools is not None:
            stream = job.tools.stream()
            content = stream.push(content)
            tail, calls = stream.finish()
            content += tail
        message = ChatMessage(content=None if calls and not content.strip() else content,
                              tool_calls=[ToolCall.model_validate(c.openai()) for c in calls] or None)
        if job.request.legacy_functions and calls:
            message.function_call, message.tool_calls = message.tool_calls[0].function, None
        choices.append(ChatChoice(index=i, message=message, finish_reason=_finish(finish.get(i), calls, job),
                                  logprobs=ChoiceLogprobs(content=chat_logprobs(engine.tokenizer, steps[i]))
                                  if want_lp else None))
    return ChatCompletion(id=job.id, created=job.created, model=job.model, system_fingerprint=job.fingerprint,
                          choices=choices, usage=job.usage)


def _finish(reason: str | None, calls: list, job: Job) -> str | None:
    """"tool_calls" ("function_call" in the deprecated form) for a turn that ended (stop) with calls."""
    if calls and reason == "stop":
        return "function_call" if job.request.legacy_functions else "tool_calls"
    return reason


def chat_chunks(engine: Any, job: Job, pieces: Iterable[Piece]) -> Iterator[ChatCompletionChunk]:
    """The chunks of a streamed chat completion of `job` (runs it as they are taken). With tools,
    text that may be a call is held back; each parsed call is sent as one tool_calls delta."""
    want_lp = job.request.n_logprobs is not None
    streams: dict[int, Any] = {}
    held_steps: dict[int, list[StepLogprobs]] = {}

    def chunk(index: int, delta: Delta, finish: str | None = None, steps=None) -> ChatCompletionChunk:
        lp = ChoiceLogprobs(content=chat_logprobs(engine.tokenizer, steps)) if want_lp and steps else None
        return ChatCompletionChunk(id=job.id, created=job.created, model=job.model,
                                   system_fingerprint=job.fingerprint,
                                   choices=[ChunkChoice(index=index, delta=delta, logprobs=lp, finish_reason=finish)])

    for p in pieces:
        i = p.index
        if i not in streams:
            streams[i] = job.tools.stream() if job.tools is not None else None
            yield chunk(i, Delta(role="assistant", content=""))
        stream, steps = streams[i], held_steps.pop(i, []) + p.steps
        text, calls = p.text, []
        if stream is not None:
            text = stream.push(text)
            if p.finish_reason:
                tail, calls = stream.finish()
                text += tail
        if text or (steps and stream is None):
            yield chunk(i, Delta(content=text), steps=steps)
        elif steps:
            held_steps[i] = steps
        if calls:
            delta = Delta(function_call=as_function_call(calls[0].openai())) if job.request.legacy_functions \
                else Delta(tool_calls=[c.openai(n) for n, c in enumerate(calls)])
            yield chunk(i, delta, steps=held_steps.pop(i, []))
        if p.finish_reason:
            yield chunk(i, Delta(), _finish(p.finish_reason, calls, job), steps=held_steps.pop(i, []))
    if job.request.include_usage:
        yield ChatCompletionChunk(id=job.id, created=job.created, model=job.model,
                                  system_fingerprint=job.fingerprint, choices=[], usage=job.usage)


# --- text completions ---------------------------------------------------------------------


def completion_result(engine: Any, job: Job, pieces: Iterable[Piece]) -> Completion:
    """The whole text completion of `job` (runs it)."""
    texts, steps, finish = _gather(pieces)
    want_lp = job.request.n_logprobs is not None
    choices = [CompletionChoice(index=i, text=texts[i], finish_reason=finish.get(i),
                                logprobs=text_logprobs(engine.tokenizer, steps[i], 0) if want_lp else None)
               for i in sorted(texts)]
    return Completion(id=job.id, created=job.created, model=job.model, system_fingerprint=job.fingerprint,
                      choices=choices, usage=job.usage)


def completion_chunks(engine: Any, job: Job, pieces: Iterable[Piece]) -> Iterator[Completion]:
    """The chunks of a streamed text completion of `job`."""
    want_lp = job.request.n_logprobs is not None
    offsets: dict[int, int] = {}
    for p in pieces:
        if not (p.text or p.steps or p.finish_reason):
            continue
        off = offsets.get(p.index, 0)
        lp = text_logprobs(engine.tokenizer, p.steps, off) if want_lp else None
        offsets[p.index] = off + len(p.text)
        yield Completion(id=job.id, created=job.created, model=job.model, system_fingerprint=job.fingerprint,
                         choices=[CompletionChoice(index=p.index, text=p.text, logprobs=lp,
                                                   finish_reason=p.finish_reason)])
    if job.request.include_usage:
        yield Completion(id=job.id, created=job.created, model=job.model, system_fingerprint=job.fingerprint,
                         choices=[], usage=job.usage)
