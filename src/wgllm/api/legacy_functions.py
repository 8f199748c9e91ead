"""OpenAI's deprecated function calling (`functions`, `function_call`, role "function"), as tools.

A request with `functions` is rewritten into the tools request wgllm runs (`to_tools_request`):
each function becomes a tool, `function_call` ("none", "auto", {"name": ...}) the tool_choice, an
assistant message's `function_call` a one-call `tool_calls`, and a "function" message (name,
content) the tool message answering the latest call of that name. The answer goes back in the
old shape (`message.function_call`, finish_reason "function_call", streamed as
`delta.function_call`): one call per turn, as the old API had it.
"""

from __future__ import annotations

from typing import Any

from wgllm.api.tools import result_call_id
from wgllm.errors import InvalidParameterError


def uses_functions(data: Any) -> bool:
    """Whether a chat request body uses the deprecated function-calling fields."""
    return isinstance(data, dict) and ("functions" in data or "function_call" in data)


def to_tools_request(data: dict[str, Any]) -> dict[str, Any]:
    """The tools form of a request body that uses `functions` / `function_call`."""
    if "tools" in data or "tool_choice" in data:
        raise InvalidParameterError("Invalid request: 'functions': give either functions / function_call (the "
                                    "deprecated form) or tools / tool_choice, not both.", "functions")
    out = {k: v for k, v in data.items() if k not in ("functions", "function_call")}
    functions = data.get("functions")
    if functions is not None:
        if not isinstance(functions, list):
            raise InvalidParameterError("Invalid request: 'functions' must be a list of function objects.",
                                        "functions")
        out["tools"] = [{"type": "function", "function": f} for f in functions]
    choice = data.get("function_call")
    if isinstance(choice, dict):
        out["tool_choice"] = {"type": "function", "function": choice}
    elif choice is not None:
        out["tool_choice"] = choice
    out["parallel_tool_calls"] = False
    if isinstance(data.get("messages"), list):
        out["messages"] = _messages(data["messages"])
    return out


def _messages(messages: list[Any]) -> list[Any]:
    ids: dict[Any, str] = {}
    out = []
    for i, m in enumerate(messages):
        if isinstance(m, dict) and isinstance(m.get("function_call"), dict) and m.get("role") == "assistant":
            call_id = f"call_{i}"
            ids[m["function_call"].get("name")] = call_id
            m = {k: v for k, v in m.items() if k != "function_call"} | {
                "tool_calls": [{"id": call_id, "type": "function", "function": m["function_call"]}]}
        elif isinstance(m, dict) and m.get("role") == "function":
            m = {"role": "tool", "content": m.get("content"),
                 "tool_call_id": result_call_id(ids, m.get("name"))}
        out.append(m)
    return out


def as_function_call(call: dict[str, Any]) -> dict[str, Any]:
    """The old API's {"name", "arguments"} of an OpenAI tool call object."""
    return {"name": call["function"]["name"], "arguments": call["function"]["arguments"]}
