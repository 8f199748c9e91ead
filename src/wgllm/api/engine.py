"""`wgllm.Engine`: the runtime engine with OpenAI's Python API on top.

    engine = wgllm.Engine(ctx=2048)
    r = engine.chat.completions.create(messages=[{"role": "user", "content": "Hi"}], temperature=0)
    print(r.choices[0].message.content, r.usage.extra.decode_tokens_per_s)
    for chunk in engine.chat.completions.create(messages=..., stream=True): ...

`create` takes OpenAI's request fields as keyword arguments (see
`wgllm.api.protocol`), validates them (InvalidParameterError,
ContextLengthExceededError, ...) before generating anything, and returns a
`ChatCompletion` / `Completion`, or with stream=True an iterator of chunks.
finish_reason is "stop" (end of turn or a stop sequence), "length" (max_tokens or
the context's end) or "abort" (`interrupt()`). An Engine runs one generation at
a time (EngineBusyError otherwise); for concurrent callers use
`wgllm.AsyncEngine` or `wgllm serve`, which queue.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wgllm.api import embeddings, generation, openai_responses, responses
from wgllm.api.protocol import parse_chat_request, parse_completion_request, parse_embedding_request
from wgllm.api.types import ChatCompletion, ChatCompletionChunk, Completion, EmbeddingList
from wgllm.errors import EngineBusyError, ModelNotLoadedError
from wgllm.runtime.engine import Engine as _RuntimeEngine

def _fields(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Request fields from keyword arguments: None means "not given", as in the openai client."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _model_id(model: Any, path: Path) -> str:
    """The served name: the name asked for (the default model's name for None), a file's stem."""
    from wgllm import hub

    if model is None:
        return hub.DEFAULT_MODEL
    return path.stem if Path(str(model)).expanduser().exists() else str(model)


class ChatCompletions:
    """`engine.chat.completions`."""

    def __init__(self, engine: Any):
        self._engine = engine

    def create(self, **request: Any) -> ChatCompletion | Iterator[ChatCompletionChunk]:
        """A chat completion for OpenAI's request fields (messages=..., model, stream, max_tokens,
        temperature, top_p, seed, n, stop, logprobs, top_logprobs, logit_bias, presence_penalty,
        frequency_penalty, response_format, stream_options, tools, tool_choice, parallel_tool_calls;
        wgllm adds top_k and min_p)."""
        job = generation.prepare_chat(self._engine, parse_chat_request(_fields(request)))
        pieces = generation.run(self._engine, job)
        if job.request.stream:
            return responses.chat_chunks(self._engine, job, pieces)
        return responses.chat_result(self._engine, job, pieces)


class Chat:
    """`engine.chat`."""

    def __init__(self, engine: Any):
        self.completions = ChatCompletions(engine)


class Completions:
    """`engine.completions` (text completion of a raw prompt, no chat template)."""

    def __init__(self, engine: Any):
        self._engine = engine

    def create(self, **request: Any) -> Completion | Iterator[Completion]:
        """A text completion for OpenAI's request fields (prompt=..., and as for chat; logprobs is
        an int 0..5 here; max_tokens defaults to 16 as in OpenAI)."""
        job = generation.prepare_completion(self._engine, parse_completion_request(_fields(request)))
        pieces = generation.run(self._engine, job)
        if job.request.stream:
            return responses.completion_chunks(self._engine, job, pieces)
        return responses.completion_result(self._engine, job, pieces)


class Embeddings:
    """`engine.embeddings`."""

    def __init__(self, engine: Any):
        self._engine = engine

    def create(self, **request: Any) -> EmbeddingList:
        """Embeddings for OpenAI's request fields (input=... a text, texts, token ids; model,
        encoding_format "float" or "base64", dimensions; wgllm adds pooling "mean" or "last"):
        the pooled final hidden state of the loaded model, L2-normalised (see wgllm.api.embeddings)."""
        return embeddings.create(self._engine, parse_embedding_request(_fields(request)))


class Responses:
    """`engine.responses` (OpenAI's Responses API, run as the chat completion it translates to)."""

    def __init__(self, engine: Any):
        self._engine = engine

    def create(self, **request: Any) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """A response for the Responses API's fields (input=... a text or input items;
        instructions, model, max_output_tokens, temperature, top_p, tools, tool_choice,
        parallel_tool_calls, text.format, stream): the Response object as a dict, or with
        stream=True an iterator of its events (dicts with "type" and "sequence_number")."""
        body = _fields(request)
        job = generation.prepare_chat(self._engine, parse_chat_request(openai_responses.to_chat_request(body)))
        pieces = generation.run(self._engine, job)
        if job.request.stream:
            return openai_responses.events(job, body, responses.chat_chunks(self._engine, job, pieces))
        return openai_responses.to_response(job, body, responses.chat_result(self._engine, job, pieces))


_NOT_LOADED = "No model is loaded in this engine (it was unloaded). Call engine.load(model) first."


class _NotLoaded(ModelNotLoadedError, AttributeError):
    """ModelNotLoadedError for what the runtime engine would say: also an AttributeError, so that
    `getattr(engine, name, default)` gives the default while nothing is loaded."""


class Engine:
    """A model on a WebGPU adapter with OpenAI's API: `chat.completions.create`, `completions.create`.

    Arguments as `wgllm.runtime.engine.Engine` (model, device, ctx, precision, chunk, gpu_memory,
    policy, split, recovery, faults, on_event). The model runs in a supervised worker process
    (wgllm.runtime.supervisor: a native crash or hang in the driver costs a restart, not the
    process); in_process=True runs it in this process instead. parallel=N > 1: N sequences at
    once (continuous batching, wgllm.runtime.batch_supervisor in the worker): create() may then
    be called from N threads together, and `wgllm.AsyncEngine` runs N requests at once. `runtime` is the engine that runs
    the model; what it says (tokenizer, n_ctx, stats, events, by_adapter, ...) reads through.
    `model_id` is the name requests may use for the model (the model name given, the file's
    stem for a path; the file's name and stem are accepted too); `interrupt()` stops a running
    generation; `unload()` frees the device; `load(model)` loads another model (or the same one
    again) into this engine."""

    def __init__(self, model: str | None = None, *, in_process: bool = False, **options: Any):
        self.aliases: set[str] = set()  # more names requests may use (the server's --alias)
        self.strict_model_names = True  # False: any requested name is served by the loaded model
        self.in_process = bool(in_process)
        self._interrupt = threading.Event()
        self._api_lock = threading.Lock()
        self.chat = Chat(self)
        self.completions = Completions(self)
        self.embeddings = Embeddings(self)
        self.responses = Responses(self)
        self.runtime: Any = None
        self._load(model, options)

    def _load(self, model: Any, options: dict[str, Any]) -> None:
        from wgllm.runtime.batch_supervisor import BatchSupervisor
        from wgllm.runtime.supervisor import Supervisor

        parallel = int(options.get("parallel", 1) or 1) > 1
        make = _RuntimeEngine if self.in_process else BatchSupervisor if parallel else Supervisor
        self.runtime = make(None if model is None else str(model), **options)
        self._options = dict(options)
        self.model_id = _model_id(model, self.path)
        self.model_names = {self.model_id, self.path.stem, self.path.name, str(self.path)}

    @property
    def loaded(self) -> bool:
        """Whether a model is loaded (False after `unload()`)."""
        return self.runtime is not None

    def __getattr__(self, name: str) -> Any:
        """What the runtime engine says: tokenizer, template, cfg, gguf, path, n_ctx, precision,
        chunk, stats, events, adapter, adapter_summary, by_adapter, restarts, ..."""
        if name.startswith("__") or name in ("runtime", "_options"):
            raise AttributeError(name)
        runtime = self.__dict__.get("runtime")
        if runtime is None:
            raise _NotLoaded(_NOT_LOADED)
        return getattr(runtime, name)

    @property
    def on_progress(self):
        """As the runtime Engine's on_progress (set it here; it is set on the runtime engine)."""
        return self._runtime().on_progress

    @on_progress.setter
    def on_progress(self, fn) -> None:
        self._runtime().on_progress = fn

    def _runtime(self) -> Any:
        if self.runtime is None:
            raise ModelNotLoadedError(_NOT_LOADED)
        return self.runtime

    def interrupt(self) -> None:
        """Stop the running generation at its next token (its finish_reason is "abort"). Safe to
        call from any thread; does nothing when nothing runs."""
        self._interrupt.set()

    def unload(self) -> None:
        """Free the model's device memory (in worker mode: end the worker process). Generating
        afterwards raises ModelNotLoadedError until `load` is called. Raises EngineBusyError while a
        generation runs."""
        if not self._api_lock.acquire(blocking=False):
            raise EngineBusyError()
        try:
            if getattr(self, "_runs", 0):
                raise EngineBusyError()
            if self.runtime is not None:
                self.runtime.close()
            self.runtime = None
            gc.collect()
        finally:
            self._api_lock.release()

    def close(self) -> None:
        """Unload the model for good (the worker process ends)."""
        if self.runtime is not None:
            self.runtime.close()
        self.runtime = None

    def load(self, model: str | None = None, **options: Any) -> None:
        """Unload the current model and load `model` (None: the default model). Options not given
        (device, ctx, precision, ...) keep their values from the last load."""
        self.unload()
        with self._api_lock:
            self._load(model, {**self._options, **options})

    def generate(self, prompt, **kwargs):
        """As `wgllm.runtime.engine.Engine.generate`; ModelNotLoadedError after `unload()`."""
        return self._runtime().generate(prompt, **kwargs)

    def hidden_states(self, prompt):
        """As `wgllm.runtime.engine.Engine.hidden_states`; ModelNotLoadedError after `unload()`."""
        return self._runtime().hidden_states(prompt)

    def chat_prompt(self, messages, tools=None):
        """As `wgllm.runtime.engine.Engine.chat_prompt`; ModelNotLoadedError after `unload()`."""
        return self._runtime().chat_prompt(messages, tools=tools)
