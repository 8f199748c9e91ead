"""OpenAI response shapes (pydantic): ChatCompletion, ChatCompletionChunk, Completion.

Field names and nesting follow the `openai` package's types, so the official
client parses them. `Usage.extra` carries wgllm's own figures (as Web-LLM's
`usage.extra` does): prefill and decode speed, time to first token, the
adapter, and the number of device recoveries during the request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_serializer


class AdapterUsage(BaseModel):
    """One adapter's share of a request: the model part on it (layers [start, stop)), its memory
    now and as planned, and the seconds the host spent on its work during the request."""

    adapter: str = ""
    layers: list[int] = Field(default_factory=list)
    memory_allocated_bytes: int = 0
    memory_planned_bytes: int = 0
    busy_s: float = 0.0


class UsageExtra(BaseModel):
    """wgllm's figures of a request (seconds, tokens per second). Times count from when the engine
    starts the request (time waiting in a server's queue is not included); speeds are over all its
    choices; `recoveries` counts device failures recovered from during the request."""

    prefill_tokens_per_s: float = 0.0
    decode_tokens_per_s: float = 0.0
    time_to_first_token_s: float = 0.0
    e2e_latency_s: float = 0.0
    adapter: str = ""
    precision: str = ""
    recoveries: int = 0
    adapters: list[AdapterUsage] = Field(default_factory=list)  # per adapter (several: a split model)


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    """Token counts (the prompt once per prompt, every choice's completion) plus `extra`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)
    extra: UsageExtra = Field(default_factory=UsageExtra)


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None
    refusal: None = None


class FunctionCall(BaseModel):
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """The answer: content (None when the model only called tools) and/or tool_calls."""

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None  # the deprecated function-calling answer

    @model_serializer(mode="wrap")
    def _drop_no_calls(self, handler: Any) -> dict:
        out = handler(self)
        for key in ("tool_calls", "function_call"):
            if out.get(key) is None:
                out.pop(key, None)
        return out


class ChatChoice(BaseModel):
    index: int
    message: ChatMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletion(BaseModel):
    """The answer to a non-streamed chat completion request."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChoice]
    usage: Usage | None = None


class Delta(BaseModel):
    """A chunk's increment; fields that are None are left out of the JSON, as OpenAI does."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # {"index", "id", "type", "function": {name, arguments}}
    function_call: dict[str, str] | None = None  # the deprecated form: {"name", "arguments"}

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: Any) -> dict:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed chat completion."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChunkChoice]
    usage: Usage | None = None


class CompletionLogprobs(BaseModel):
    """Legacy completions logprobs: parallel lists, top alternatives as {token: logprob}."""

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


class Completion(BaseModel):
    """A text completion, or (streamed) one chunk of it."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[CompletionChoice]
    usage: Usage | None = None


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "wgllm"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class Embedding(BaseModel):
    """One input's vector: floats, or (encoding_format base64) float32 little-endian bytes in base64."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingList(BaseModel):
    """The answer to an embeddings request."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage = Field(default_factory=EmbeddingUsage)
