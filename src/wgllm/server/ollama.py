"""Ollama's API on the same server: /api/chat, /api/generate (NDJSON streams), /api/embed (and
the older /api/embeddings), /api/pull (wgllm's registry, into the cache), /api/tags, /api/show,
/api/ps, /api/version.

Each request is translated into the OpenAI request the rest of the server runs (same
validation, sampling, stop strings, grammars): Ollama's `options` map to OpenAI's fields
(`num_predict` -> max_tokens, `temperature`, `top_p`, `top_k`, `min_p`, `seed`, `stop`,
`frequency_penalty`, `presence_penalty`; others, e.g. `num_ctx`, are ignored and logged once),
`format` "json" or a JSON schema constrains the output; `tools` are OpenAI's, calls come back in
Ollama's form (arguments as an object) and tool results name the function (`tool_name`). Errors are Ollama's `{"error": message}`
with the status the OpenAI routes give.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from wgllm.api.generation import by_adapter, model_id
from wgllm.api.tools import result_call_id
from wgllm.errors import InvalidParameterError, ModelNotFoundError, WgllmError
from wgllm.server import errors

log = logging.getLogger("wgllm.server")
OPTIONS = {"num_predict": "max_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
           "min_p": "min_p", "seed": "seed", "stop": "stop", "frequency_penalty": "frequency_penalty",
           "presence_penalty": "presence_penalty"}
_IGNORED: set[str] = set()
PATHS = ("/api/version", "/api/tags", "/api/ps", "/api/show", "/api/chat", "/api/generate", "/api/embed",
         "/api/embeddings", "/api/pull")


def install(app: FastAPI, auth: list) -> None:
    """Add Ollama's routes to `app` (with the app's authentication)."""
    routes = ((_version, "GET"), (_tags, "GET"), (_ps, "GET"), (_show, "POST"), (_chat, "POST"), (_generate, "POST"),
              (_embed, "POST"), (_embeddings, "POST"), (_pull, "POST"))
    for path, (fn, method) in zip(PATHS, routes):
        app.add_api_route(path, _ollama_errors(fn), methods=[method], dependencies=auth)


def _ollama_errors(fn):
    async def route(request: Request) -> Response:
        try:
            return await fn(request)
        except WgllmError as exc:
            status, body = errors.status_and_body(exc)
            return JSONResponse({"error": body["error"]["message"]}, status_code=status)
    route.__name__ = fn.__name__
    return route


# --- listings ---------------------------------------------------------------------------------


async def _version(request: Request) -> JSONResponse:
    import wgllm

    return JSONResponse({"version": wgllm.__version__})


def _details(engine: Any) -> dict[str, Any]:
    cfg = engine.cfg
    n_params = sum(t.n_rows * t.row_len for t in engine.gguf.tensors.values())
    return {"parent_model": "", "format": "gguf", "family": cfg.arch, "families": [cfg.arch],
            "parameter_size": f"{n_params / 1e6:.0f}M" if n_params < 1e9 else f"{n_params / 1e9:.1f}B",
            "quantization_level": _quantization(engine)}


def _quantization(engine: Any) -> str:
    """The file type's name (llama-quantize's, e.g. Q4_K_M) when the file says it, else its main type."""
    from wgllm.kernels.qtypes import FTYPES

    code = engine.gguf.metadata.get("general.file_type")
    names = [name for name, row in FTYPES.items() if row[0] == code]
    if names:
        return names[0]
    types = [t.type_name for t in engine.gguf.tensors.values() if len(t.shape) > 1]
    return max(set(types), key=types.count) if types else ""


def _entry(engine: Any) -> dict[str, Any]:
    path = engine.path
    stat = path.stat()
    name = model_id(engine)
    return {"name": name, "model": name, "size": stat.st_size, "digest": f"{stat.st_size:x}{stat.st_mtime_ns:x}",
            "modified_at": datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(),
            "details": _details(engine)}


def _loaded(request: Request) -> Any | None:
    engine = request.app.state.engine.engine
    return engine if getattr(engine, "loaded", True) else None


async def _tags(request: Request) -> JSONResponse:
    engine = _loaded(request)
    return JSONResponse({"models": [_entry(engine)] if engine is not None else []})


async def _ps(request: Request) -> JSONResponse:
    engine = _loaded(request)
    if engine is None:
        return JSONResponse({"models": []})
    used = sum(int(p["allocated"]) for p in by_adapter(engine))
    return JSONResponse({"models": [{**_entry(engine), "size_vram": used, "expires_at": "2100-01-01T00:00:00Z"}]})


async def _show(request: Request) -> JSONResponse:
    body = await _body(request)
    engine = _served(request, body.get("model") or body.get("name"))
    meta = {k: v for k, v in engine.gguf.metadata.items()
            if not k.startswith("tokenizer.") and isinstance(v, (str, int, float, bool))}
    return JSONResponse({"modelfile": "", "parameters": "", "template": engine.template.source,
                         "details": _details(engine), "model_info": meta, "capabilities": ["completion"]})


# --- generation -------------------------------------------------------------------------------


async def _chat(request: Request) -> Response:
    body = await _body(request)
    req = {**_common(body), "messages": _messages(body.get("messages"))}
    if body.get("tools"):
        req["tools"] = body["tools"]  # Ollama's tools are OpenAI's
    return await _run(request, body, req, chat=True, out="message")


def _messages(messages: Any) -> Any:
    """Ollama's chat messages as OpenAI's: a call's arguments as JSON text and an id for it; a tool
    result's `tool_name` turned into the id of the latest call of that function."""
    if not isinstance(messages, list):
        return messages  # validation names the problem
    ids: dict[str, str] = {}
    out = []
    for i, m in enumerate(messages):
        if isinstance(m, dict) and m.get("images"):
            raise _no_images(f"messages.{i}.images")
        if isinstance(m, dict) and "images" in m:
            m = {k: v for k, v in m.items() if k != "images"}
        if isinstance(m, dict) and isinstance(m.get("tool_calls"), list):
            m = {**m, "tool_calls": [_call(c, f"call_{len(ids) + k}") for k, c in enumerate(m["tool_calls"])]}
            ids.update({c["function"]["name"]: c["id"] for c in m["tool_calls"] if isinstance(c, dict)})
        elif isinstance(m, dict) and m.get("role") == "tool" and "tool_call_id" not in m:
            m = {k: v for k, v in m.items() if k != "tool_name"} | {"tool_call_id": result_call_id(ids, m.get("tool_name"))}
        out.append(m)
    return out


def _no_images(param: str) -> InvalidParameterError:
    return InvalidParameterError(f"Invalid request: '{param}': wgllm runs text models only; send the request "
                                 f"without images.", param)


def _call(call: Any, default_id: str) -> Any:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        return call
    fn = call["function"]
    args = fn.get("arguments", {})
    return {"id": call.get("id") or default_id, "type": "function",
            "function": {"name": fn.get("name"), "arguments": args if isinstance(args, str) else json.dumps(args)}}


async def _generate(request: Request) -> Response:
    body = await _body(request)
    prompt = body.get("prompt", "")
    if body.get("images"):
        raise _no_images("images")
    if prompt == "":  # Ollama's "load the model" request
        return JSONResponse({"model": _name(request), "created_at": _now(), "response": "", "done": True,
                             "done_reason": "load"})
    if body.get("raw"):
        return await _run(request, body, {**_common(body), "prompt": prompt}, chat=False, out="response")
    messages = ([{"role": "system", "content": body["system"]}] if body.get("system") else []) + \
               [{"role": "user", "content": prompt}]
    return await _run(request, body, {**_common(body), "messages": messages}, chat=True, out="response")


async def _embed(request: Request) -> JSONResponse:
    """/api/embed: {"model", "input": text or texts, "dimensions"?, "truncate"? (default true: inputs
    longer than the context are cut)} -> {"embeddings": [[...]], ...}."""
    body = await _body(request)
    t0 = time.perf_counter_ns()
    req = {"input": body.get("input"), "truncate": body.get("truncate", True),  # Ollama truncates by default
           **({"model": body["model"]} if body.get("model") is not None else {}),
           **({"dimensions": body["dimensions"]} if body.get("dimensions") is not None else {})}
    result = await request.app.state.engine.embed(req)
    return JSONResponse({"model": _name(request), "embeddings": [d.embedding for d in result.data],
                         "total_duration": time.perf_counter_ns() - t0, "load_duration": 0,
                         "prompt_eval_count": result.usage.prompt_tokens})


async def _embeddings(request: Request) -> JSONResponse:
    """/api/embeddings (Ollama's older route): {"model", "prompt"} -> {"embedding": [...]}."""
    body = await _body(request)
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise InvalidParameterError("Invalid request: 'prompt' must be the text to embed.", "prompt")
    req = {"input": prompt, **({"model": body["model"]} if body.get("model") is not None else {})}
    result = await request.app.state.engine.embed(req)
    return JSONResponse({"embedding": result.data[0].embedding})


async def _pull(request: Request) -> Response:
    """/api/pull: fetch a model of wgllm's registry into the cache (`wgllm pull`), with Ollama's status
    lines. The server goes on serving the model it has loaded."""
    from wgllm import hub

    body = await _body(request)
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidParameterError("Invalid request: 'model' must name the model to pull.", "model")
    if hub.registry_entry(name) is None:
        raise ModelNotFoundError(f"Unknown model '{name[:100]}': /api/pull fetches models of wgllm's registry "
                                 f"(`wgllm models --catalog` lists them).")
    lines = _pull_lines(name)
    if body.get("stream", True):
        return StreamingResponse(lines, media_type="application/x-ndjson")
    last = {}
    async for line in lines:
        last = json.loads(line)
    return JSONResponse(last, status_code=500 if "error" in last else 200)


async def _pull_lines(name: str) -> AsyncIterator[str]:
    from wgllm import hub

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def report(part: str, done: int, total: int | None) -> None:
        line = {"status": f"pulling {part}", "digest": part, "completed": done, **({"total": total} if total else {})}
        loop.call_soon_threadsafe(queue.put_nowait, line)

    yield json.dumps({"status": "pulling manifest"}) + "\n"
    task = loop.run_in_executor(None, lambda: hub.pull(name, progress=False, on_progress=report))
    while not (task.done() and queue.empty()):
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            yield json.dumps(getter.result()) + "\n"
        else:
            getter.cancel()
    try:
        task.result()
    except WgllmError as exc:
        yield json.dumps({"error": exc.message}) + "\n"
        return
    yield json.dumps({"status": "verifying sha256 digest"}) + "\n"
    yield json.dumps({"status": "success"}) + "\n"


def _common(body: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI fields of an Ollama request: model, options, format (always streamed inside)."""
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise InvalidParameterError("Invalid request: 'options' must be an object of sampling options.", "options")
    req: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
    if body.get("model") is not None:
        req["model"] = body["model"]
    for key, value in options.items():
        if key in OPTIONS:
            req[OPTIONS[key]] = value
        elif key not in _IGNORED:
            _IGNORED.add(key)
            log.warning("ignoring Ollama option %r (wgllm does not implement it; logged once)", str(key)[:60])
    if req.get("max_tokens") in (-1, -2):  # Ollama: no limit / fill the context
        del req["max_tokens"]
    fmt = body.get("format")
    if fmt == "json":
        req["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        req["response_format"] = {"type": "json_schema", "json_schema": {"name": "ollama", "schema": fmt}}
    elif fmt not in (None, ""):
        raise InvalidParameterError("Invalid request: 'format' must be \"json\" or a JSON schema object.", "format")
    return req


async def _run(request: Request, body: dict[str, Any], req: dict[str, Any], *, chat: bool, out: str) -> Response:
    """Run OpenAI request `req` (chat or text completion); answer in Ollama's `out` shape:
    "message" (/api/chat) or "response" (/api/generate)."""
    engine = request.app.state.engine
    t0 = time.perf_counter_ns()
    job = await (engine.prepare_chat(req) if chat else engine.prepare_completion(req))
    name = _name(request)
    lines = _lines(request, job, name, chat, out, t0)
    if body.get("stream", True):
        return StreamingResponse(lines, media_type="application/x-ndjson")
    text, calls, last = [], [], None
    async for line in lines:
        last = json.loads(line)
        if "error" in last:
            return JSONResponse(last, status_code=500)
        message = last.pop("message", {})
        calls += message.get("tool_calls", [])
        text.append(message.get("content", "") if out == "message" else last.pop("response", ""))
    assert last is not None
    last[out] = {"role": "assistant", "content": "".join(text)} if out == "message" else "".join(text)
    if calls:
        last[out]["tool_calls"] = calls
    return JSONResponse(last)


async def _lines(request: Request, job: Any, name: str, chat: bool, out: str, t0: int) -> AsyncIterator[str]:
    state = request.app.state
    finish, usage, t_first = None, None, None
    try:
        async for chunk in state.engine.stream(job):
            if chunk.usage is not None:
                usage = chunk.usage
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            piece = (choice.delta.content or "") if chat else choice.text
            calls = (choice.delta.tool_calls or []) if chat else []
            finish = choice.finish_reason or finish
            if piece or calls:
                t_first = t_first or time.perf_counter_ns()
                yield _line(name, out, piece, done=False, calls=calls)
    except WgllmError as exc:  # after the 200 went out: Ollama's error line
        _, body = errors.status_and_body(exc)
        yield json.dumps({"error": body["error"]["message"]}) + "\n"
        return
    finally:
        state.metrics.observe(job)
    end = time.perf_counter_ns()
    first = t_first or end
    stats = {"done_reason": "length" if finish == "length" else "stop", "total_duration": end - t0,
             "load_duration": 0, "prompt_eval_count": usage.prompt_tokens if usage else 0,
             "prompt_eval_duration": first - t0, "eval_count": usage.completion_tokens if usage else 0,
             "eval_duration": end - first}
    yield _line(name, out, "", done=True, **stats)


def _line(name: str, out: str, piece: str, *, done: bool, calls: list | None = None, **extra: Any) -> str:
    """One NDJSON line; tool calls (OpenAI delta form) in Ollama's form, arguments as an object."""
    message: dict[str, Any] = {"role": "assistant", "content": piece}
    if calls:
        message["tool_calls"] = [{"id": c["id"], "function": {"index": c["index"], "name": c["function"]["name"],
                                                              "arguments": json.loads(c["function"]["arguments"])}}
                                 for c in calls]
    line: dict[str, Any] = {"model": name, "created_at": _now(), out: message if out == "message" else piece,
                            "done": done}
    return json.dumps({**line, **extra}, ensure_ascii=False) + "\n"


# --- helpers ----------------------------------------------------------------------------------


async def _body(request: Request) -> dict[str, Any]:
    from wgllm.server.app import read_json

    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidParameterError("Invalid request: the body must be a JSON object.")
    return body


def _served(request: Request, requested: Any) -> Any:
    """The loaded engine if it serves `requested` (the same name rules as the OpenAI routes)."""
    from wgllm.api.generation import check_model

    engine = request.app.state.engine.engine
    check_model(engine, requested if isinstance(requested, str) else None)
    return engine


def _name(request: Request) -> str:
    return model_id(request.app.state.engine.engine)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
