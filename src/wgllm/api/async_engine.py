"""`wgllm.AsyncEngine`: the same API for asyncio, with a queue in front of the engine.

    engine = wgllm.AsyncEngine(ctx=2048)
    r = await engine.chat.completions.create(messages=[...])
    async for chunk in await engine.chat.completions.create(messages=[...], stream=True): ...

Generations run on one worker thread, one at a time, in the order they were
submitted (first come, first served: the worker's queue is FIFO); on an engine loaded with
parallel=N, N worker threads run N generations at once as one continuous batch (the
engine's scheduler admits them in arrival order too). Checking
and tokenizing a request runs beside it, so a bad request fails at once even
while a long generation runs. Leaving a stream (break, `aclose`, a cancelled
task) or cancelling an awaited `create` stops that request's generation at
its next token; a request cancelled while still queued never runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wgllm.api import embeddings, generation, openai_responses, responses
from wgllm.api.engine import Engine, _fields
from wgllm.api.generation import Job
from wgllm.api.protocol import parse_chat_request, parse_completion_request, parse_embedding_request

_END = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


class AsyncEngine:
    """An `Engine` behind a FIFO worker thread (see module doc). Pass `engine=` to wrap an existing
    Engine; otherwise the arguments are Engine's (the model loads in the constructor)."""

    def __init__(self, model: str | None = None, *, engine: Engine | None = None, **options: Any):
        self.engine = engine if engine is not None else Engine(model, **options)
        # one worker thread per sequence the engine serves at once (its batch; 1: one at a time)
        self.parallel = max(1, int(getattr(self.engine, "n_seq", 1) or 1))
        self._pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="wgllm-engine")
        self.pending = 0  # requests queued or running
        self.chat = _AsyncChat(self)
        self.completions = _AsyncCompletions(self)
        self.embeddings = _AsyncEmbeddings(self)
        self.responses = _AsyncResponses(self)

    # --- requests -------------------------------------------------------------------------
    async def prepare_chat(self, request: dict[str, Any]) -> Job:
        """Validate and tokenize a chat request (raises the request's error; generates nothing)."""
        return await asyncio.to_thread(generation.prepare_chat, self.engine, parse_chat_request(request))

    async def prepare_completion(self, request: dict[str, Any]) -> Job:
        """Validate and tokenize a text completion request."""
        return await asyncio.to_thread(generation.prepare_completion, self.engine,
                                       parse_completion_request(request))

    async def result(self, job: Job) -> Any:
        """Run `job` in its turn and return the whole response object."""
        build = responses.chat_result if job.kind == "chat" else responses.completion_result
        return await self._in_worker(lambda: build(self.engine, job, generation.run(self.engine, job)), job)

    async def stream(self, job: Job) -> AsyncIterator[Any]:
        """Run `job` in its turn, yielding its chunks as they are made."""
        build = responses.chat_chunks if job.kind == "chat" else responses.completion_chunks
        async for item in self._iterate(lambda: build(self.engine, job, generation.run(self.engine, job)), job):
            yield item

    async def embed(self, request: dict[str, Any]) -> Any:
        """Validate an embeddings request and run it in its turn (an EmbeddingList)."""
        job = await asyncio.to_thread(embeddings.prepare, self.engine, parse_embedding_request(request))
        return await self._in_worker(lambda: embeddings.run(self.engine, job))

    # --- engine control ---------------------------------------------------------------------
    def interrupt(self) -> None:
        """Stop the generation that is running now (queued requests still run)."""
        self.engine.interrupt()

    async def reset(self) -> None:
        """Forget the KV cache (in the queue's order)."""
        await self._in_worker(self.engine.reset)

    async def unload(self) -> None:
        """Free the model (in the queue's order)."""
        await self._in_worker(self.engine.unload)

    async def load(self, model: str | None = None, **options: Any) -> None:
        """Load another model (in the queue's order)."""
        await self._in_worker(lambda: self.engine.load(model, **options))

    def close(self) -> None:
        """Stop the worker thread; once what it is running ends, close the engine (its worker
        process ends)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        close = getattr(self.engine, "close", None)
        if callable(close):
            def after() -> None:
                self._pool.shutdown(wait=True)
                close()

            threading.Thread(target=after, name="wgllm-close", daemon=True).start()

    # --- the worker -------------------------------------------------------------------------
    async def _in_worker(self, fn: Callable[[], Any], job: Job | None = None) -> Any:
        self.pending += 1
        fut = asyncio.get_running_loop().run_in_executor(self._pool, self._guard(fn, job))
        try:
            return await fut
        except asyncio.CancelledError:
            if job is not None:
                job.cancel.set()
            raise
        finally:
            self.pending -= 1

    @staticmethod
    def _guard(fn: Callable[[], Any], job: Job | None) -> Callable[[], Any]:
        def call() -> Any:
            if job is not None and job.cancel.is_set():
                return None  # cancelled while queued
            return fn()
        return call

    async def _iterate(self, make: Callable[[], Iterator[Any]], job: Job) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening
                job.cancel.set()

        def pump() -> None:
            try:
                if job.cancel.is_set():
                    return  # cancelled while queued
                it = make()
                try:
                    for item in it:
                        if job.cancel.is_set():
                            break
                        put(item)
                finally:
                    it.close()
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                put(_Failed(exc))
            finally:
                put(_END)

        self.pending += 1
        loop.run_in_executor(self._pool, pump)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.exc
                yield item
        finally:
            job.cancel.set()
            self.pending -= 1


class _AsyncChatCompletions:
    def __init__(self, owner: AsyncEngine):
        self._owner = owner

    async def create(self, **request: Any) -> Any:
        """As `Engine.chat.completions.create`; with stream=True, returns an async iterator."""
        job = await self._owner.prepare_chat(_fields(request))
        return self._owner.stream(job) if job.request.stream else await self._owner.result(job)


class _AsyncChat:
    def __init__(self, owner: AsyncEngine):
        self.completions = _AsyncChatCompletions(owner)


class _AsyncCompletions:
    def __init__(self, owner: AsyncEngine):
        self._owner = owner

    async def create(self, **request: Any) -> Any:
        """As `Engine.completions.create`; with stream=True, returns an async iterator."""
        job = await self._owner.prepare_completion(_fields(request))
        return self._owner.stream(job) if job.request.stream else await self._owner.result(job)


class _AsyncEmbeddings:
    def __init__(self, owner: AsyncEngine):
        self._owner = owner

    async def create(self, **request: Any) -> Any:
        """As `Engine.embeddings.create`."""
        return await self._owner.embed(_fields(request))


class _AsyncResponses:
    def __init__(self, owner: AsyncEngine):
        self._owner = owner

    async def create(self, **request: Any) -> Any:
        """As `Engine.responses.create`; with stream=True, returns an async iterator of events."""
        body = _fields(request)
        job = await self._owner.prepare_chat(openai_responses.to_chat_request(body))
        if not job.request.stream:
            return openai_responses.to_response(job, body, await self._owner.result(job))
        return openai_responses.aevents(job, body, self._owner.stream(job))
