"""Tool calling: the request's tools into the model's own chat template, the model's
tool-call syntax back into OpenAI's `tool_calls`.

The format is read off the chat template (`detect_format`):

- `hermes`: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one block per call
  (Qwen2.5, Qwen3, Hermes 2 Pro / 3 and the many templates that copied them);
- `llama3`: a bare `{"name": ..., "parameters": {...}}`, optionally after `<|python_tag|>`
  (Llama 3.1 / 3.2 / 3.3);
- `mistral`: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]` (Mistral 7B v0.3, Nemo),
  or the newer `[TOOL_CALLS]name[ARGS]{...}`;
- `json`: for a template that renders no tools (ChatML models such as SmolLM2): the tools
  and the JSON form `{"tool_calls": [{"name": ..., "arguments": {...}}]}` are described in a
  system message, earlier calls and tool results are written in that form.

A template that renders tools in a form not listed is parsed with every form above (`any`).
`tool_choice` "auto" parses whatever the model writes; "required" or a named function
constrains decoding with a grammar of the format's syntax whose arguments follow each
function's JSON schema (llguidance), so the call always parses and validates; "none"
leaves the tools out of the prompt. A model's text that is not a well-formed call of a
known function stays content.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from wgllm.api.grammar import JSON_OPTIONS
from wgllm.errors import ChatTemplateError

PROBE = "wgllm_probe_function"  # a tool name no template writes by itself
JSON_SYSTEM = (
    "You can call tools (functions). Their JSON schemas:\n{tools}\n"
    "To call one or more of them, answer with only this JSON and nothing else: "
    '{{"tool_calls": [{{"name": "<function name>", "arguments": {{<its arguments>}}}}]}}. '
    "Otherwise answer normally."
)


@dataclass(frozen=True)
class Format:
    """How one family of chat templates writes tool calls."""

    name: str
    markers: tuple[str, ...]  # a call starts where one of these appears
    bare_json: bool  # the answer may be a call written as bare JSON
    args_key: str = "arguments"  # llama3 writes "parameters"


FORMATS = {f.name: f for f in (
    Format("hermes", ("<tool_call>",), False),
    Format("llama3", ("<|python_tag|>",), True, "parameters"),
    Format("mistral", ("[TOOL_CALLS]",), False),
    Format("json", (), True),
    Format("any", ("<tool_call>", "[TOOL_CALLS]", "<|python_tag|>"), True),
)}


@dataclass
class Call:
    """One parsed tool call."""

    name: str
    arguments: dict[str, Any]
    id: str = ""

    def openai(self, index: int | None = None) -> dict[str, Any]:
        """OpenAI's tool_call object (with `index` for a stream's delta)."""
        out: dict[str, Any] = {"id": self.id, "type": "function",
                               "function": {"name": self.name, "arguments": json.dumps(self.arguments,
                                                                                       ensure_ascii=False)}}
        return out if index is None else {"index": index, **out}


# --- the template's format ------------------------------------------------------------------


def detect_format(template: Any) -> Format:
    """The tool-call format of a `ChatTemplate` (`json` when it renders no tools)."""
    return FORMATS[_detect(template.source, template.bos_token, template.eos_token)]


@lru_cache(maxsize=64)
def _detect(source: str, bos: str, eos: str) -> str:
    from wgllm.model.chat_template import ChatTemplate

    probe = {"type": "function", "function": {"name": PROBE, "description": "probe",
                                              "parameters": {"type": "object", "properties": {}}}}
    try:
        text = ChatTemplate(source, bos, eos).render([{"role": "user", "content": "hi"}], tools=[probe])
    except ChatTemplateError:
        return "json"
    if PROBE not in text:
        return "json"
    if "<tool_call>" in source:
        return "hermes"
    if "[TOOL_CALLS]" in source:
        return "mistral"
    if "<|start_header_id|>" in source and '"parameters"' in source:
        return "llama3"
    return "any"


def new_id(fmt: Format) -> str:
    """A fresh tool-call id (Mistral's templates insist on 9 letters and digits)."""
    if fmt.name == "mistral":
        return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(9))
    return f"call_{secrets.token_hex(12)}"


# --- the plan of one request ----------------------------------------------------------------


@dataclass
class ToolPlan:
    """The tools of one chat request: how they reach the template, and how calls come back.

    `functions`: OpenAI function objects (name, description, parameters); `forced`: the
    function names decoding must call (required: all; a named choice: that one; empty for
    auto); `parallel`: more than one call may be made."""

    fmt: Format
    functions: list[dict[str, Any]]
    forced: list[str] = field(default_factory=list)
    parallel: bool = True

    @property
    def names(self) -> set[str]:
        return {f["name"] for f in self.functions}

    def template_tools(self) -> list[dict[str, Any]] | None:
        """The `tools` variable for the template (None in the json format: they go in a message)."""
        if self.fmt.name == "json":
            return None
        return [{"type": "function", "function": f} for f in self.functions]

    def template_messages(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Messages for the template: calls' arguments as dicts (as transformers passes them); in
        the json format the tools described in a system message, calls and results as text."""
        out = [dict(m) for m in messages]
        if self.fmt.name != "json":
            return out
        names = {c["id"]: c["function"]["name"] for m in out for c in m.get("tool_calls") or []}
        out = [_json_message(m, names) for m in out]
        schemas = json.dumps([{"type": "function", "function": f} for f in self.functions], ensure_ascii=False)
        system = JSON_SYSTEM.format(tools=schemas)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{system}"}
        else:
            out.insert(0, {"role": "system", "content": system})
        return out

    def grammar(self) -> str | None:
        """The llguidance grammar that forces a call (None when calls are not forced)."""
        if not self.forced:
            return None
        import llguidance

        call = "call: %json " + json.dumps(self._call_schema(), ensure_ascii=False)
        many = self.parallel
        name = self.fmt.name
        if name == "hermes" or name == "any":
            one = '"<tool_call>\\n" call "\\n</tool_call>"'
            start = f"start: {one}" + (f' ("\\n" {one})*' if many else "")
        elif name == "mistral":
            start = 'start: "[TOOL_CALLS][" call' + (' (", " call)*' if many else "") + ' "]"'
        elif name == "json":
            start = 'start: "{\\"tool_calls\\": [" call' + (' (", " call)*' if many else "") + ' "]}"'
        else:  # llama3: one call per message
            start = "start: call"
        return llguidance.LLMatcher.grammar_from_lark(f"{start}\n{call}\n")

    def _call_schema(self) -> dict[str, Any]:
        key = self.fmt.args_key
        variants = [{"type": "object", "properties": {"name": {"const": f["name"]}, key: _closed(f.get("parameters"))},
                     "required": ["name", key], "additionalProperties": False}
                    for f in self.functions if f["name"] in self.forced]
        schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
        return {"x-guidance": JSON_OPTIONS, **schema}

    def stream(self) -> CallStream:
        """A parser for one choice's text as it is generated."""
        return CallStream(self)


def _closed(parameters: dict[str, Any] | None) -> dict[str, Any]:
    """A function's parameters schema for a forced call: no properties beyond those it names,
    unless it says otherwise (as llama.cpp's grammars do; a small model otherwise invents them)."""
    schema = dict(parameters or {"type": "object", "properties": {}})
    if "properties" in schema:
        schema.setdefault("additionalProperties", False)
    return schema


def plan_for(template: Any, req: Any) -> ToolPlan | None:
    """The ToolPlan of a ChatCompletionRequest on a model's `ChatTemplate` (None: no tools, or
    tool_choice "none")."""
    choice = req.tool_choice
    if not req.tools or choice == "none":
        return None
    functions = [t.function.model_dump(exclude_none=True, exclude={"strict"}) for t in req.tools]
    names = [f["name"] for f in functions]
    named = choice not in (None, "auto", "required")
    forced = [choice.function.name] if named else names if choice == "required" else []
    parallel = req.parallel_tool_calls is not False and not named  # a named function: one call of it
    return ToolPlan(detect_format(template), functions, forced, parallel)


def _json_message(m: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A message in the json format's text form (for a template that knows no tools)."""
    if m.get("tool_calls"):
        calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in m["tool_calls"]]
        text = json.dumps({"tool_calls": calls}, ensure_ascii=False)
        content = m.get("content") or ""
        return {"role": "assistant", "content": f"{content}\n{text}" if content else text}
    if m["role"] == "tool":
        response = {"name": names.get(m.get("tool_call_id"), ""), "content": m.get("content", "")}
        return {"role": "user", "content": json.dumps({"tool_response": response}, ensure_ascii=False)}
    return m


# --- parsing what the model wrote -----------------------------------------------------------


class CallStream:
    """Splits one choice's text into content and tool calls, as it arrives.

    `push(text)` returns the content that can be sent now: text from where a call may begin
    (a marker, or the answer's first character for a bare-JSON format) is held back;
    `finish()` parses what was held and returns (the content still to send, the calls)."""

    def __init__(self, plan: ToolPlan):
        self.plan = plan
        self.pending = ""  # not yet sent: may be the start of a marker
        self.held: str | None = None  # from a call's start on
        self.started = False  # something (other than leading space) was sent

    def push(self, text: str) -> str:
        if self.held is not None:
            self.held += text
            return ""
        self.pending += text
        return self._release()

    def _release(self) -> str:
        p, fmt = self.pending, self.plan.fmt
        if not self.started and fmt.bare_json:
            s = p.lstrip()
            if not s:
                return ""
            if s[0] in "{[":
                self.held, self.pending = p, ""
                return ""
        at = min((i for i in (p.find(m) for m in fmt.markers) if i >= 0), default=-1)
        if at >= 0:
            self.held, self.pending = p[at:], ""
            return self._sent(p[:at])
        keep = max((k for m in fmt.markers for k in range(1, len(m)) if p.endswith(m[:k])), default=0)
        if not self.started and fmt.bare_json and any(m.startswith(p.lstrip()) for m in fmt.markers):
            keep = len(p)
        self.pending = p[len(p) - keep:] if keep else ""
        return self._sent(p[:len(p) - keep])

    def _sent(self, text: str) -> str:
        if text.strip():
            self.started = True
        return text

    def finish(self) -> tuple[str, list[Call]]:
        """(content not sent yet, the calls): held text that is not a valid call is content."""
        tail, self.pending = self.pending, ""
        if self.held is None:
            return tail, []
        held, self.held = self.held, None
        found = parse_calls(self.plan.fmt, held, self.plan.names)
        if found is None:
            return tail + held, []
        rest, calls = found
        for c in calls:
            c.id = new_id(self.plan.fmt)
        return tail + rest, calls


def parse_calls(fmt: Format, text: str, names: set[str]) -> tuple[str, list[Call]] | None:
    """(content outside the calls, the calls) of `text` that starts with a call; None when it
    is not a well-formed call of a function in `names`."""
    out: list[tuple[str, list[Call]] | None] = []
    if "<tool_call>" in fmt.markers and text.startswith("<tool_call>"):
        out.append(_hermes(text, names))
    if "[TOOL_CALLS]" in fmt.markers and text.startswith("[TOOL_CALLS]"):
        out.append(_mistral(text[len("[TOOL_CALLS]"):], names))
    if fmt.bare_json or "<|python_tag|>" in fmt.markers:
        body = text[len("<|python_tag|>"):] if text.startswith("<|python_tag|>") else text
        if body.lstrip()[:1] in ("{", "["):
            calls = _json_values(body, names)
            out.append(None if calls is None else ("", calls))
    return next((r for r in out if r is not None and r[1]), None)


_HERMES = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)


def _hermes(text: str, names: set[str]) -> tuple[str, list[Call]] | None:
    """Every block that holds a call; a block that does not (e.g. cut off by max_tokens) stays content."""
    calls, rest, end = [], [], 0
    for m in _HERMES.finditer(text):
        call = _call(_loads(m.group(1).strip()), names)
        if call is not None:
            rest.append(text[end:m.start()])
            calls.append(call)
            end = m.end()
    rest.append(text[end:])
    return "".join(rest).strip(), calls


def _mistral(body: str, names: set[str]) -> tuple[str, list[Call]] | None:
    if body.lstrip().startswith("["):  # [TOOL_CALLS][{...}, ...]
        calls = _json_values(body, names)
        return None if calls is None else ("", calls)
    calls = []  # [TOOL_CALLS]name[ARGS]{...}[TOOL_CALLS]name[ARGS]{...}
    for part in body.split("[TOOL_CALLS]"):
        name, sep, args = part.partition("[ARGS]")
        call = _call({"name": name.strip(), "arguments": _loads(args.strip())}, names) if sep else None
        if call is None:
            return None
        calls.append(call)
    return "", calls


def _json_values(body: str, names: set[str]) -> list[Call] | None:
    """Calls from JSON values written one after another (separated by space, `;` or `,`)."""
    dec, i, calls = json.JSONDecoder(), 0, []
    while True:
        while i < len(body) and body[i] in " \t\r\n;,":
            i += 1
        if i == len(body):
            return calls or None
        try:
            value, i = dec.raw_decode(body, i)
        except json.JSONDecodeError:
            return None
        items = value.get("tool_calls") if isinstance(value, dict) and "tool_calls" in value else value
        for item in items if isinstance(items, list) else [items]:
            call = _call(item, names)
            if call is None:
                return None
            calls.append(call)


def _call(obj: Any, names: set[str]) -> Call | None:
    """A Call of a {"name", "arguments" | "parameters"} object naming a known function."""
    if isinstance(obj, dict) and isinstance(obj.get("function"), dict):  # OpenAI's own shape
        obj = obj["function"]
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        args = _loads(args) if args.strip() else {}
    return Call(obj["name"], args) if isinstance(args, dict) else None


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None


def result_call_id(ids: dict[Any, str], name: Any) -> str:
    """The call id for a tool result that names only its function (Ollama's `tool_name`, the old
    API's `function` role): the latest call of that function, else the latest call, else "call_0".
    `ids`: function name -> id of its latest call, in the order of the calls."""
    return ids.get(name, next(reversed(ids.values()), "call_0"))
