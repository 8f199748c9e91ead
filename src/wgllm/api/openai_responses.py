"""OpenAI's Responses API (`/v1/responses`) on top of chat completions.

A Responses request is translated into the chat request the rest of wgllm runs (same validation,
sampling, grammars, tool calls), and the chat result or chunks are translated back:

- input: a string, or items: messages (`input_text` / `output_text` parts), `function_call`
  and `function_call_output` items; `instructions` becomes a system message first;
- `max_output_tokens`, `temperature`, `top_p`, `tools` (Responses' flat function tools),
  `tool_choice`, `parallel_tool_calls`, `text.format` (text / json_object / json_schema);
- output: a `message` item with one `output_text` part, and a `function_call` item per call;
  `status` "incomplete" (max_output_tokens) or "completed";
- streaming: OpenAI's event sequence (`response.created` ... `response.output_text.delta` ...
  `response.function_call_arguments.done` ... `response.completed`), each with its
  `sequence_number`.

wgllm stores nothing: `previous_response_id` and `conversation` are refused (send the whole
conversation as input); `store` and `metadata` are accepted and change nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

from wgllm.errors import InvalidParameterError

log = logging.getLogger("wgllm.api")
PASSED = {"model": "model", "max_output_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p",
          "parallel_tool_calls": "parallel_tool_calls", "stream": "stream", "seed": "seed", "top_k": "top_k",
          "min_p": "min_p", "user": "user"}
ACCEPTED = {"input", "instructions", "tools", "tool_choice", "text", "store", "metadata", "truncation",
            "reasoning", "service_tier", "include", "background"}
REFUSED = {"previous_response_id": "wgllm stores no responses: send the whole conversation as `input`",
           "conversation": "wgllm stores no conversations: send the whole conversation as `input`",
           "prompt": "wgllm has no stored prompts: send the text as `input`"}
_LOGGED: set[str] = set()


def _bad(param: str, problem: str) -> InvalidParameterError:
    return InvalidParameterError(f"Invalid request: '{param}': {problem}.", param)


# --- request -------------------------------------------------------------------------------------


def to_chat_request(body: Any) -> dict[str, Any]:
    """The chat completion request (a dict for `parse_chat_request`) of a Responses request body."""
    if not isinstance(body, dict):
        raise InvalidParameterError("Invalid request: the body must be a JSON object of request fields.")
    for key, why in REFUSED.items():
        if body.get(key) is not None:
            raise _bad(key, why)
    if body.get("background"):
        raise _bad("background", "background responses are not supported; leave background out")
    unknown = [k for k in body if k not in PASSED and k not in ACCEPTED and k not in _LOGGED]
    if unknown:
        _LOGGED.update(unknown)
        log.warning("ignoring Responses field(s) %s (logged once per field)", ", ".join(repr(k)[:60] for k in unknown))
    if "input" not in body:
        raise _bad("input", "input is required (a string, or a list of input items)")
    req = {chat: body[key] for key, chat in PASSED.items() if body.get(key) is not None}
    req["messages"] = _messages(body.get("instructions"), body["input"])
    if body.get("tools"):
        req["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        req["tool_choice"] = _tool_choice(body["tool_choice"])
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if fmt is not None:
        req["response_format"] = _format(fmt)
    if req.get("stream"):
        req["stream_options"] = {"include_usage": True}
    return req


def _messages(instructions: Any, items: Any) -> list[Any]:
    out: list[Any] = [{"role": "system", "content": instructions}] if instructions is not None else []
    if isinstance(items, str):
        return [*out, {"role": "user", "content": items}]
    if not isinstance(items, list):
        raise _bad("input", "input must be a string or a list of input items")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _bad(f"input.{i}", "each input item must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            out.append({"role": item.get("role"), "content": _text(item.get("content"), f"input.{i}.content")})
        elif kind == "function_call":
            call = {"id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments")}}
            last = out[-1] if out else None
            if last is not None and last.get("role") == "assistant" and last.get("tool_calls"):
                last["tool_calls"].append(call)  # parallel calls: one assistant message
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            out.append({"role": "tool", "tool_call_id": item.get("call_id"),
                        "content": _text(output, f"input.{i}.output") if isinstance(output, list) else output})
        elif kind != "reasoning":
            raise _bad(f"input.{i}.type", f"input items of type {str(kind)[:40]!r} are not supported (message, "
                                          f"function_call and function_call_output are)")
    return out


def _text(content: Any, param: str) -> Any:
    """A message's content: a string, or its text parts joined (other parts refused)."""
    if not isinstance(content, list):
        return content
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text", "text"):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise _bad(f"{param}.{j}", f"content parts of type {str(kind)[:40]!r} are not supported (only text)")
        texts.append(part.get("text"))
    return "".join(t if isinstance(t, str) else "" for t in texts)


def _tools(tools: Any) -> list[Any]:
    if not isinstance(tools, list):
        raise _bad("tools", "tools must be a list of function tools")
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type") != "function":
            kind = t.get("type") if isinstance(t, dict) else type(t).__name__
            raise _bad(f"tools.{i}", f"only function tools are supported, not {str(kind)[:40]!r}")
        fn = {k: t[k] for k in ("name", "description", "parameters") if t.get(k) is not None}
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def _format(fmt: Any) -> Any:
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "description", "strict") if k in fmt}
        return {"type": "json_schema", "json_schema": {"name": "response", **schema}}
    return fmt


# --- response ------------------------------------------------------------------------------------


def _base(job: Any, body: dict[str, Any], status: str) -> dict[str, Any]:
    req = job.request
    tools = [{"type": "function", "name": f["name"], "description": f.get("description"),
              "parameters": f.get("parameters"), "strict": False} for f in (job.tools.functions if job.tools else [])]
    choice = body.get("tool_choice") or "auto"
    return {"id": job.id.replace("chatcmpl-", "resp_"), "object": "response", "created_at": job.created,
            "status": status, "model": job.model, "output": [], "parallel_tool_calls": req.parallel_tool_calls
            is not False, "tool_choice": choice, "tools": tools, "temperature": req.temperature, "top_p": req.top_p,
            "max_output_tokens": req.token_limit, "instructions": body.get("instructions"),
            "text": {"format": (body.get("text") or {}).get("format") or {"type": "text"}}, "store": False,
            "error": None, "incomplete_details": None, "metadata": body.get("metadata") or {}, "usage": None}


def _usage(usage: Any) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "input_tokens_details": {"cached_tokens": usage.prompt_tokens_details.cached_tokens},
            "output_tokens_details": {"reasoning_tokens": 0}}


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [part] if status == "completed" else []}


def _call_item(call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    fn = call["function"]
    return {"type": "function_call", "id": f"fc_{call['id']}", "call_id": call["id"], "name": fn["name"],
            "arguments": fn["arguments"] if status == "completed" else "", "status": status}


def _finish(out: dict[str, Any], finish: str | None, usage: Any) -> dict[str, Any]:
    out["usage"] = _usage(usage)
    out["completed_at"] = int(time.time())
    if finish == "length":
        out["status"], out["incomplete_details"] = "incomplete", {"reason": "max_output_tokens"}
    else:
        out["status"] = "completed"
    return out


def to_response(job: Any, body: dict[str, Any], result: Any) -> dict[str, Any]:
    """The Responses object of a whole chat completion `result` of `job`."""
    out = _base(job, body, "completed")
    choice = result.choices[0]
    if choice.message.content:
        out["output"].append(_message_item(f"msg_{uuid.uuid4().hex}", choice.message.content))
    for call in choice.message.tool_calls or []:
        out["output"].append(_call_item(call.model_dump()))
    return _finish(out, choice.finish_reason, result.usage)


class EventStream:
    """Responses stream events (dicts with "type" and "sequence_number") of a chat stream: `start()`
    first, `push(chunk)` for each chat chunk, `finish()` last; each returns the events to send."""

    def __init__(self, job: Any, body: dict[str, Any]):
        self.out = _base(job, body, "in_progress")
        self._seq = 0
        self.msg_id, self.text, self.finish, self.usage = f"msg_{uuid.uuid4().hex}", [], None, None

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self._seq += 1
        return {"type": kind, "sequence_number": self._seq - 1, **fields}

    def start(self) -> list[dict[str, Any]]:
        return [self._event("response.created", response=dict(self.out)),
                self._event("response.in_progress", response=dict(self.out))]

    def push(self, chunk: Any) -> list[dict[str, Any]]:
        evs: list[dict[str, Any]] = []
        self.usage = chunk.usage or self.usage
        index = len(self.out["output"])
        for ch in chunk.choices:
            self.finish = ch.finish_reason or self.finish
            if ch.delta.content:
                if not self.text:
                    evs += [self._event("response.output_item.added", output_index=index,
                                        item=_message_item(self.msg_id, "", "in_progress")),
                            self._event("response.content_part.added", item_id=self.msg_id, output_index=index,
                                        content_index=0, part=_message_item(self.msg_id, "")["content"][0])]
                self.text.append(ch.delta.content)
                evs.append(self._event("response.output_text.delta", item_id=self.msg_id, output_index=index,
                                       content_index=0, delta=ch.delta.content, logprobs=[]))
            for call in ch.delta.tool_calls or []:
                evs += self._end_message() + self._call(call)
        return evs

    def finish_events(self) -> list[dict[str, Any]]:
        kind = "response.incomplete" if self.finish == "length" else "response.completed"
        return self._end_message() + [self._event(kind, response=_finish(self.out, self.finish, self.usage))]

    def _end_message(self) -> list[dict[str, Any]]:
        if not self.text:
            return []
        index, item = len(self.out["output"]), _message_item(self.msg_id, "".join(self.text))
        self.text, self.msg_id = [], f"msg_{uuid.uuid4().hex}"
        self.out["output"].append(item)
        return [self._event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                            text=item["content"][0]["text"], logprobs=[]),
                self._event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                            part=item["content"][0]),
                self._event("response.output_item.done", output_index=index, item=item)]

    def _call(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        index, item = len(self.out["output"]), _call_item(call)
        self.out["output"].append(item)
        return [self._event("response.output_item.added", output_index=index, item=_call_item(call, "in_progress")),
                self._event("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                            delta=item["arguments"]),
                self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                            name=item["name"], arguments=item["arguments"]),
                self._event("response.output_item.done", output_index=index, item=item)]


async def aevents(job: Any, body: dict[str, Any], chunks: AsyncIterable[Any]) -> AsyncIterator[dict[str, Any]]:
    """All the Responses stream events of an asynchronous chat stream."""
    stream = EventStream(job, body)
    for event in stream.start():
        yield event
    async for chunk in chunks:
        for event in stream.push(chunk):
            yield event
    for event in stream.finish_events():
        yield event


def events(job: Any, body: dict[str, Any], chunks: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """All the Responses stream events of a (synchronous) chat stream."""
    stream = EventStream(job, body)
    yield from stream.start()
    for chunk in chunks:
        yield from stream.push(chunk)
    yield from stream.finish_events()
