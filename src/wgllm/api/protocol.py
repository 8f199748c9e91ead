"""OpenAI request shapes (pydantic), validated as strictly as Web-LLM does.

Types are strict (no "1" for 1, no true for 1, no NaN) and every range is checked.
Fields no endpoint defines (extras of other servers' clients) are ignored and
logged once per name; a field of the other endpoint (prompt sent to chat) and the
OpenAI fields wgllm does not implement (`UNSUPPORTED`, e.g. audio) are refused, so
nothing changes behaviour silently (the deprecated `functions` are taken as tools). llama.cpp's `n_predict` means max_tokens,
its `cache_prompt` and `id_slot` are accepted and ignored. System (and developer)
messages may stand anywhere. `parse_chat_request` / `parse_completion_request` turn
a plain dict (a JSON body, or keyword arguments of `create`) into a request or
raise `InvalidParameterError` naming the field and the value. Checks that need
the model (vocabulary ids, context length, schemas) are made later, in
`wgllm.api.generation.prepare_*`, still before any token is generated.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from wgllm.api import legacy_functions
from wgllm.api.limits import INT64, LIMITS  # noqa: F401 (INT64: API)
from wgllm.errors import InvalidParameterError

MAX_N = 16  # choices per request (they run one after another)
MAX_STOP = 4  # stop sequences, as OpenAI
MAX_TOP_LOGPROBS = 20  # chat; completions allow 5, as OpenAI
MAX_TOOLS = 128  # as OpenAI
MAX_EMBED_INPUTS = 2048  # as OpenAI
# OpenAI request fields wgllm does not implement (yet): refused rather than ignored
UNSUPPORTED = frozenset({"audio", "modalities", "prediction", "web_search_options"})

log = logging.getLogger("wgllm.api")
_IGNORED_LOGGED: set[tuple[str, str]] = set()  # (request kind, field) already logged


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, populate_by_name=True)


class TextPart(_Strict):
    """A text part of a message's content (images and audio are not supported)."""

    type: Literal["text"]
    text: str


class FunctionCall(_Strict):
    """A call's function: its name and its arguments as a JSON text."""

    name: str
    arguments: str


class ToolCall(_Strict):
    """A tool call of an earlier assistant message."""

    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Strict):
    """A chat message. "developer" is OpenAI's newer name for "system"; an assistant message may
    carry `tool_calls` instead of content; a "tool" message answers the call `tool_call_id`."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    # what the openai client sends back when an answer's message object is appended to the
    # conversation: refusal and annotations are not shown to the model; a function_call (the
    # deprecated form) is taken as a tool call
    refusal: str | None = None
    annotations: list[Any] | None = None
    function_call: FunctionCall | None = None

    @model_validator(mode="after")
    def _content_rules(self) -> Message:
        if self.content is None and not (self.role == "assistant" and (self.tool_calls or self.function_call)):
            raise PydanticCustomError("message", "a {role} message needs content" + (
                " (or tool_calls)" if self.role == "assistant" else ""), {"role": self.role, "at": "content"})
        if self.tool_calls is not None and self.role != "assistant":
            raise PydanticCustomError("message", "only assistant messages carry tool_calls, not {role} messages",
                                      {"role": self.role, "at": "tool_calls"})
        if self.role == "tool" and not self.tool_call_id:
            raise PydanticCustomError("message", "a tool message needs the tool_call_id of the call it answers",
                                      {"at": "tool_call_id"})
        return self

    @property
    def text(self) -> str:
        """The content as one string (text parts joined; "" for none)."""
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    def as_template_dict(self) -> dict[str, Any]:
        """The message for the chat template: {"role", "content"}, and a call's arguments as a
        dict (as transformers passes them), a tool result's call id and function name."""
        out: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role, "content": self.text}
        calls = self.tool_calls or ([ToolCall(id="call_0", function=self.function_call)] if self.function_call else [])
        if calls:
            out["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.function.name, "arguments": _arguments(c.function)}}
                                 for c in calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


def _arguments(fn: FunctionCall) -> Any:
    """A call's arguments as JSON (a dict), or the text itself when it is not JSON."""
    try:
        return json.loads(fn.arguments) if fn.arguments.strip() else {}
    except ValueError:
        return fn.arguments


class FunctionDef(_Strict):
    """A function the model may call: its name, what it does, its parameters' JSON schema."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Strict):
    name: str


class ToolChoiceFunction(_Strict):
    """tool_choice naming the function to call."""

    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Strict):
    include_usage: bool = False


class JsonSchemaFormat(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    """`text` (no constraint), `json_object` (any JSON object) or `json_schema`."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_iff_json_schema(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            _bad("response_format.json_schema", "response_format of type json_schema needs a json_schema object "
                 "({\"name\": ..., \"schema\": {...}})")
        if self.type != "json_schema" and self.json_schema is not None:
            _bad("response_format.json_schema", f"json_schema is only allowed with type json_schema, not {self.type}")
        return self


class _Common(_Strict):
    """Fields shared by chat and text completions (plus wgllm's top_k / min_p)."""

    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, **LIMITS["max_tokens"].field())
    stop: str | list[str] | None = None
    temperature: float | None = Field(None, **LIMITS["temperature"].field())
    top_p: float | None = Field(None, **LIMITS["top_p"].field())
    top_k: int | None = Field(None, **LIMITS["top_k"].field())
    min_p: float | None = Field(None, **LIMITS["min_p"].field())
    seed: int | None = Field(None, **LIMITS["seed"].field())
    n: int = Field(1, ge=1, le=MAX_N)
    frequency_penalty: float | None = Field(None, **LIMITS["frequency_penalty"].field())
    presence_penalty: float | None = Field(None, **LIMITS["presence_penalty"].field())
    logit_bias: dict[str, float] | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    # llama.cpp's extras: n_predict is max_tokens (-1: no limit); the other two change nothing here
    n_predict: int | None = Field(None, ge=-1, le=LIMITS["max_tokens"].hi)
    cache_prompt: bool | None = None
    id_slot: int | None = None

    @model_validator(mode="after")
    def _common_rules(self) -> _Common:
        if self.n_predict is not None:
            if self.n_predict == 0:
                _bad("n_predict", "n_predict must be at least 1 (or -1: no limit)")
            limit = None if self.n_predict == -1 else self.n_predict
            if None not in (self.max_tokens, limit) and self.max_tokens != limit:
                _bad("n_predict", f"max_tokens ({self.max_tokens}) and n_predict ({self.n_predict}) disagree; give "
                                  f"only one")
            if self.max_tokens is None:
                self.max_tokens = limit
        if self.stream_options is not None and not self.stream:
            _bad("stream_options", "stream_options is only allowed when stream is true")
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        if len(stops) > MAX_STOP:
            _bad("stop", f"stop takes at most {MAX_STOP} sequences, got {len(stops)}")
        if any(s == "" for s in stops):
            _bad("stop", "stop sequences must not be empty strings")
        for key, value in (self.logit_bias or {}).items():
            if not key.isdigit():
                _bad("logit_bias", f"logit_bias keys must be token ids written as strings (e.g. \"1234\"), "
                                   f"got {key[:40]!r}")
            if not -100.0 <= value <= 100.0:
                _bad("logit_bias", f"logit_bias values must be between -100 and 100, got {value} for token {key}")
        return self

    @property
    def stop_list(self) -> list[str]:
        """The stop sequences as a list."""
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Common):
    """POST /v1/chat/completions."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, **LIMITS["max_tokens"].field())
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[Tool] | None = Field(None, min_length=1, max_length=MAX_TOOLS)
    _legacy: bool = PrivateAttr(False)  # asked with the deprecated functions / function_call
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceFunction | None = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def _chat_rules(self) -> ChatCompletionRequest:
        self._tool_rules()
        if self.top_logprobs is not None and not self.logprobs:
            _bad("top_logprobs", "top_logprobs is only allowed when logprobs is true")
        if None not in (self.max_tokens, self.max_completion_tokens) and self.max_tokens != self.max_completion_tokens:
            _bad("max_completion_tokens", f"max_tokens ({self.max_tokens}) and max_completion_tokens "
                             f"({self.max_completion_tokens}) disagree; give only one")
        return self

    def _tool_rules(self) -> None:
        names = [t.function.name for t in self.tools or []]
        if len(set(names)) != len(names):
            _bad("tools", f"function names must be unique; {sorted(n for n in set(names) if names.count(n) > 1)[0]!r} "
                          f"is given twice")
        choice = self.tool_choice
        if choice not in (None, "none") and not names:
            _bad("tool_choice", "tool_choice is only allowed when tools are given")
        if isinstance(choice, ToolChoiceFunction) and choice.function.name not in names:
            _bad("tool_choice", f"tool_choice names the function {choice.function.name[:64]!r}, which is not "
                                f"one of the tools ({', '.join(names)})")
        forced = choice == "required" or isinstance(choice, ToolChoiceFunction)
        if forced and self.response_format is not None and self.response_format.type != "text":
            _bad("response_format", "response_format cannot constrain the output while tool_choice forces a "
                                    "tool call; send one of the two")

    @property
    def legacy_functions(self) -> bool:
        """Asked with the deprecated functions / function_call: answer in that shape."""
        return self._legacy

    @legacy_functions.setter
    def legacy_functions(self, value: bool) -> None:
        self._legacy = bool(value)

    @property
    def token_limit(self) -> int | None:
        """max_completion_tokens or max_tokens (None: up to the end of the context)."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def n_logprobs(self) -> int | None:
        """How many alternatives to report per token (None: no logprobs)."""
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_Common):
    """POST /v1/completions: a prompt as text, a list of texts, token ids, or lists of token ids."""

    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: Literal[False] = False
    suffix: None = None
    best_of: int | None = Field(None, ge=1, le=MAX_N)

    @model_validator(mode="after")
    def _completion_rules(self) -> CompletionRequest:
        if self.best_of is not None and self.best_of != self.n:
            _bad("best_of", f"best_of ({self.best_of}) other than n ({self.n}) is not supported")
        if isinstance(self.prompt, list) and not self.prompt:
            _bad("prompt", "prompt must not be an empty list")
        return self

    @property
    def token_limit(self) -> int | None:
        if self.max_tokens is not None:
            return self.max_tokens
        return None if self.n_predict == -1 else 16  # OpenAI's default for completions; -1: llama.cpp's no limit

    @property
    def n_logprobs(self) -> int | None:
        return self.logprobs


class EmbeddingRequest(_Strict):
    """POST /v1/embeddings: texts (or token ids) to pooled, normalised hidden states."""

    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
    pooling: Literal["mean", "last"] | None = None  # wgllm: None = the model's own (GGUF pooling_type), else mean
    truncate: bool = False  # wgllm (Ollama's default is true): cut inputs to the context instead of refusing them

    @model_validator(mode="after")
    def _inputs(self) -> EmbeddingRequest:
        if isinstance(self.input, list) and not self.input:
            _bad("input", "input must not be an empty list")
        if isinstance(self.input, list) and len(self.input) > MAX_EMBED_INPUTS:
            _bad("input", f"input takes at most {MAX_EMBED_INPUTS} items, got {len(self.input)}")
        return self

    @property
    def items(self) -> list[str | list[int]]:
        """Each input: a text or a list of token ids."""
        x = self.input
        if isinstance(x, str) or (x and isinstance(x[0], int)):
            return [x]
        return list(x)


def parse_embedding_request(data: Any) -> EmbeddingRequest:
    """Validate an embeddings request body; raise InvalidParameterError on the first problem."""
    return _parse(EmbeddingRequest, data)


class TokenizeRequest(_Strict):
    """POST /tokenize (llama.cpp's server): text to token ids."""

    content: str
    add_special: bool = False  # BOS (and EOS) as the model's metadata asks
    parse_special: bool = True  # special-token text (e.g. <|im_end|>) becomes that token
    with_pieces: bool = False  # each id with its text


class DetokenizeRequest(_Strict):
    """POST /detokenize (llama.cpp's server): token ids to text."""

    tokens: list[int]


def parse_tokenize_request(data: Any) -> TokenizeRequest:
    """Validate a /tokenize body; raise InvalidParameterError on the first problem."""
    return _parse(TokenizeRequest, data)


def parse_detokenize_request(data: Any) -> DetokenizeRequest:
    """Validate a /detokenize body; raise InvalidParameterError on the first problem."""
    return _parse(DetokenizeRequest, data)


def _bad(param: str, problem: str) -> None:
    """Raise InvalidParameterError for a rule across fields (pydantic lets it through unwrapped)."""
    raise InvalidParameterError(f"Invalid request: '{param}': {problem}. {_FIX}", param)


_FIX = "Fix this field and send the request again (the OpenAI API reference gives each field's type and range)."
_UNIONS = {
    "prompt": "a string, a list of strings, a list of token ids or a list of lists of token ids",
    "content": "a string or a list of {\"type\": \"text\", \"text\": ...} parts",
    "stop": "a string or a list of strings",
    "input": "a string, a list of strings, a list of token ids or a list of lists of token ids",
}


def _known_fields(cls: type[_Strict], data: Any) -> Any:
    """`data` without the fields `cls` does not define (logged once per name); UNSUPPORTED ones raise."""
    if not isinstance(data, dict):
        return data
    known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
    if issubclass(cls, _Common):
        _refuse_unsupported(data, known)
    extra = [k for k in data if k not in known]
    if not extra:
        return data
    new = [k for k in extra if (cls.__name__, str(k)) not in _IGNORED_LOGGED]
    if new:
        _IGNORED_LOGGED.update((cls.__name__, str(k)) for k in new)
        log.warning("ignoring request field(s) %s: not part of the %s API wgllm serves (logged once per field)",
                    ", ".join(repr(str(k))[:60] for k in new), cls.__doc__.split("\n")[0].rstrip("."))
    return {k: v for k, v in data.items() if k not in extra}


def _refuse_unsupported(data: dict, known: set[str]) -> None:
    """Raise for an UNSUPPORTED field, or a field of the other completion endpoint (e.g. prompt sent
    to chat: ignoring it would answer another question)."""
    other = (set(ChatCompletionRequest.model_fields) | set(CompletionRequest.model_fields)) - known
    for key in data:
        if key in UNSUPPORTED:
            raise InvalidParameterError(
                f"Invalid request: '{key}' is not supported by this version of wgllm. Send the request "
                f"without it.", key)
        if key in other:
            where = "/v1/completions" if key in CompletionRequest.model_fields else "/v1/chat/completions"
            raise InvalidParameterError(
                f"Invalid request: '{key}' is a field of {where}, not of this endpoint. {_FIX}", key)


def _parse(cls: type[_Strict], data: Any) -> Any:
    try:
        return cls.model_validate(_known_fields(cls, data))
    except ValidationError as exc:
        raise _invalid(exc) from None


def parse_chat_request(data: Any) -> ChatCompletionRequest:
    """Validate a chat completion request body; raise InvalidParameterError on the first problem.
    The deprecated `functions` / `function_call` are taken as tools (see legacy_functions)."""
    if not legacy_functions.uses_functions(data):
        return _parse(ChatCompletionRequest, data)
    req = _parse(ChatCompletionRequest, legacy_functions.to_tools_request(data))
    req.legacy_functions = True
    return req


def parse_completion_request(data: Any) -> CompletionRequest:
    """Validate a text completion request body; raise InvalidParameterError on the first problem."""
    return _parse(CompletionRequest, data)


def _invalid(exc: ValidationError) -> InvalidParameterError:
    """The first pydantic error as an InvalidParameterError (param: the field's dotted path)."""
    errors = exc.errors(include_url=False)
    first = min(errors, key=lambda e: len(e["loc"]))  # the least nested: union branches add depth
    loc = [str(p) for p in first["loc"] if not re.match(_BRANCH, str(p))]
    loc += [first["ctx"]["at"]] if "at" in first.get("ctx", {}) else []  # a message rule names its field
    param = ".".join(loc) or None
    others = {e["loc"][:1] for e in errors} - {first["loc"][:1]}  # union branches of one field count once
    more = f" ({len(others)} other field(s) are wrong too.)" if others else ""
    if param is None:
        return InvalidParameterError(f"Invalid request: the body must be a JSON object of request fields. {_FIX}")
    kind = _UNIONS.get(loc[-1]) if loc and len(errors) > 1 else None
    msg = f"must be {kind}" if kind else first["msg"]
    got = "" if first["type"] == "missing" else f" (got {_short(first.get('input'))})"
    return InvalidParameterError(f"Invalid request: '{param}': {msg}{got}. {_FIX}{more}", param)


_BRANCH = r"^(str|list\[.*\]|int|TextPart|ToolChoiceFunction|literal\[.*\]|none)$"  # union branches in a loc


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
