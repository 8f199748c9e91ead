"""The HTTP server: OpenAI's /v1/chat/completions, /v1/completions and /v1/models, llama.cpp's
/tokenize and /detokenize, plus /health and /metrics (Prometheus).

Requests are checked (size cap, UTF-8, JSON, fields, model, context) before
they queue, so a bad one is answered at once with a 4xx even while a long
generation runs. Generations run one at a time on the engine, first come
first served (`AsyncEngine`'s FIFO worker), or with `--parallel N` up to N at
once as one continuous batch (wgllm.runtime.batch), admitted in arrival order. A client that disconnects has its generation stopped at
the next token, or never started if it was still queued. Streams are
server-sent events in OpenAI's format, ending with `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from wgllm.api import openai_responses
from wgllm.api.async_engine import AsyncEngine
from wgllm.api.generation import Job, check_model, model_id
from wgllm.api.protocol import parse_detokenize_request, parse_tokenize_request
from wgllm.api.types import Model, ModelList
from wgllm.errors import InvalidParameterError, RequestTooLargeError, WgllmError
from wgllm.server import errors, ollama
from wgllm.server.metrics import Metrics

DEFAULT_MAX_BODY = 1 << 20  # bytes of a request body (1 MiB)


def create_app(engine: AsyncEngine, *, api_key: str | None = None, max_body: int = DEFAULT_MAX_BODY,
               aliases: tuple[str, ...] = (), strict_model_names: bool = False) -> FastAPI:
    """The FastAPI app serving `engine`. api_key: required as `Authorization: Bearer KEY` on every
    route but /health (None: no key). max_body: largest request body accepted, in bytes.
    aliases: more model names (listed by /v1/models). Unless `strict_model_names`, a request
    naming another model (clients that send "gpt-3.5-turbo") is served by the loaded one, and the
    response names the real model; strict: such a request gets 404."""
    engine.engine.aliases.update(aliases)
    engine.engine.strict_model_names = strict_model_names
    app = FastAPI(title="wgllm", summary="OpenAI-compatible API of a WebGPU LLM runtime", docs_url=None,
                  redoc_url=None)
    app.state.engine = engine
    app.state.metrics = Metrics(engine)
    app.state.max_body = max_body
    app.state.started = int(time.time())
    errors.install(app)
    auth = [Depends(_auth_dependency(api_key))]

    app.add_api_route("/health", _health, methods=["GET"])
    app.add_api_route("/metrics", _metrics, methods=["GET"], dependencies=auth)
    app.add_api_route("/v1/models", _models, methods=["GET"], dependencies=auth)
    app.add_api_route("/v1/chat/completions", _chat, methods=["POST"], dependencies=auth)
    app.add_api_route("/v1/completions", _completions, methods=["POST"], dependencies=auth)
    app.add_api_route("/v1/embeddings", _embeddings, methods=["POST"], dependencies=auth)
    app.add_api_route("/v1/responses", _responses, methods=["POST"], dependencies=auth)
    app.add_api_route("/tokenize", _tokenize, methods=["POST"], dependencies=auth)
    app.add_api_route("/detokenize", _detokenize, methods=["POST"], dependencies=auth)
    ollama.install(app, auth)
    app.middleware("http")(_count_requests)
    return app


def _auth_dependency(api_key: str | None):
    async def check(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise errors.AuthError("No API key was given. Send it as the header `Authorization: Bearer KEY` "
                                   "(the key the server was started with, --api-key).")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise errors.AuthError("The API key is wrong. Send the key the server was started with "
                                   "(--api-key) as `Authorization: Bearer KEY`.")
    return check


# the routes /metrics counts by path (any other path counts as "other": bounded label values)
_LABELLED = frozenset(("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/models", "/health", "/metrics", "/tokenize",
                       "/detokenize", *ollama.PATHS))


async def _count_requests(request: Request, call_next: Any) -> Response:
    response = await call_next(request)
    path = request.url.path
    endpoint = path if path in _LABELLED else "other"
    request.app.state.metrics.requests.labels(endpoint, str(response.status_code)).inc()
    return response


# --- routes -----------------------------------------------------------------------------------


async def _health(request: Request) -> JSONResponse:
    engine = request.app.state.engine.engine
    loaded = bool(getattr(engine, "loaded", True))
    body = {"status": "ok" if loaded else "no model", "model": model_id(engine) if loaded else None}
    return JSONResponse(body, status_code=200 if loaded else 503)


async def _metrics(request: Request) -> Response:
    return PlainTextResponse(request.app.state.metrics.render(),
                             media_type="text/plain; version=0.0.4; charset=utf-8")


async def _models(request: Request) -> JSONResponse:
    engine = request.app.state.engine.engine
    names = [model_id(engine), *sorted(set(getattr(engine, "aliases", ())) - {model_id(engine)})]
    data = [Model(id=n, created=request.app.state.started) for n in names] if getattr(engine, "loaded", True) else []
    return JSONResponse(ModelList(data=data).model_dump(mode="json"))


async def _chat(request: Request) -> Response:
    body = await read_json(request)
    return await _serve(request, await request.app.state.engine.prepare_chat(body))


async def _responses(request: Request) -> Response:
    """OpenAI's Responses API, run as the chat completion it translates to (wgllm.api.openai_responses)."""
    body = await read_json(request)
    job = await request.app.state.engine.prepare_chat(openai_responses.to_chat_request(body))
    return await _serve(request, job, events=lambda state, watcher: _response_events(state, job, body, watcher),
                        whole=lambda result: openai_responses.to_response(job, body, result))


async def _response_events(state: Any, job: Job, body: dict, watcher: asyncio.Task) -> AsyncIterator[str]:
    def sse(e: dict) -> str:
        return f"event: {e['type']}\ndata: {json.dumps(e, ensure_ascii=False)}\n\n"
    try:
        async for event in openai_responses.aevents(job, body, state.engine.stream(job)):
            yield sse(event)
    except WgllmError as exc:  # after the 200 went out: an error event
        _, err = errors.status_and_body(exc)
        yield sse({"type": "error", "sequence_number": -1, **err["error"]})
    finally:
        watcher.cancel()
        state.metrics.observe(job)


async def _embeddings(request: Request) -> JSONResponse:
    """OpenAI's /v1/embeddings (in the queue's order, like a generation)."""
    result = await request.app.state.engine.embed(await read_json(request))
    return JSONResponse(result.model_dump(mode="json"))


async def _tokenize(request: Request) -> JSONResponse:
    """llama.cpp's /tokenize: {"content", "add_special", "parse_special", "with_pieces"} -> {"tokens"}."""
    req = parse_tokenize_request(await read_json(request))
    tok = _tokenizer(request)
    ids = tok.encode(req.content, add_special=req.add_special, parse_special=req.parse_special)
    if req.with_pieces:
        return JSONResponse({"tokens": [{"id": i, "piece": tok.decode([i])} for i in ids]})
    return JSONResponse({"tokens": ids})


async def _detokenize(request: Request) -> JSONResponse:
    """llama.cpp's /detokenize: {"tokens": [ids]} -> {"content"}."""
    req = parse_detokenize_request(await read_json(request))
    tok = _tokenizer(request)
    bad = [i for i in req.tokens if not 0 <= i < tok.vocab_size]
    if bad:
        raise InvalidParameterError(f"Invalid request: 'tokens': {bad[0]} is not a token id of this model (ids are "
                                    f"0..{tok.vocab_size - 1}).", "tokens")
    return JSONResponse({"content": tok.decode(req.tokens)})


def _tokenizer(request: Request):
    engine = request.app.state.engine.engine
    check_model(engine, None)  # ModelNotLoadedError when unloaded
    return engine.tokenizer


async def _completions(request: Request) -> Response:
    body = await read_json(request)
    return await _serve(request, await request.app.state.engine.prepare_completion(body))


# --- bodies -----------------------------------------------------------------------------------


async def read_json(request: Request) -> Any:
    """The request body parsed as JSON, after the size cap and a strict UTF-8 check."""
    limit = request.app.state.max_body
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise RequestTooLargeError(int(length), limit)
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise RequestTooLargeError(None, limit)
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidParameterError(f"The request body is not valid UTF-8 (bad byte at offset {exc.start}). "
                                    f"Send JSON encoded as UTF-8.") from None
    try:
        return json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise InvalidParameterError(f"The request body is not valid JSON ({str(exc)[:200]}). Send one JSON "
                                    f"object with the request's fields.") from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# --- running ----------------------------------------------------------------------------------


async def _serve(request: Request, job: Job, events: Any = None, whole: Any = None) -> Response:
    """Run a prepared job: the whole response (`whole(result)`: its JSON, default the result's), or an
    SSE stream (`events(state, watcher)`: its text, default OpenAI's chunks)."""
    state = request.app.state
    watcher = asyncio.create_task(_cancel_on_disconnect(request, job))
    if job.request.stream:
        body = events(state, watcher) if events else _sse(state, job, watcher)
        return StreamingResponse(body, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        result = await state.engine.result(job)
    finally:
        watcher.cancel()
        state.metrics.observe(job)
    return JSONResponse(whole(result) if whole else result.model_dump(mode="json"))


async def _cancel_on_disconnect(request: Request, job: Job) -> None:
    """Wait for the client to go away; then stop its generation."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            break
    if job.usage is None and not job.cancel.is_set():
        job.cancel.set()
        request.app.state.metrics.cancelled.inc()


async def _sse(state: Any, job: Job, watcher: asyncio.Task) -> AsyncIterator[str]:
    include_usage = job.request.include_usage
    try:
        async for chunk in state.engine.stream(job):
            data = chunk.model_dump(mode="json")
            if not include_usage:
                data.pop("usage", None)
            yield f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
        if not job.cancel.is_set() or job.usage is not None:
            yield "data: [DONE]\n\n"
    except WgllmError as exc:  # after the 200 went out: an error event, as OpenAI sends
        _, body = errors.status_and_body(exc)
        yield f"data: {json.dumps(body)}\n\n"
    finally:
        watcher.cancel()
        state.metrics.observe(job)
