"""Embeddings: each input's final-normed last hidden state, pooled over its tokens (mean, or the
last token), optionally cut to `dimensions`, then L2-normalised.

The pooling is the model's own where its GGUF says (`{arch}.pooling_type`: 1 mean, 3 last), else
mean; a request may choose (`pooling`, a wgllm field). Texts are tokenized as a completion prompt
is (BOS and EOS as the model's metadata asks); an input longer than the context is refused, or
with `truncate` (a wgllm field; Ollama's /api/embed sets it by default, as Ollama does) cut to it. Inputs run one after another on the engine, each
from an empty KV cache (the next chat prefills its prompt again).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from wgllm.api.generation import _check_ids, _engine_lock, check_model
from wgllm.api.protocol import EmbeddingRequest
from wgllm.api.types import Embedding, EmbeddingList, EmbeddingUsage
from wgllm.errors import ContextLengthExceededError, EngineBusyError, InvalidParameterError

POOLING_TYPES = {1: "mean", 3: "last"}  # llama.cpp's enum llama_pooling_type


def model_pooling(engine: Any) -> str:
    """The pooling the model's GGUF names, "mean" when it names none wgllm has."""
    meta = getattr(getattr(engine, "gguf", None), "metadata", {}) or {}
    return POOLING_TYPES.get(meta.get(f"{engine.cfg.arch}.pooling_type"), "mean")


def pool(hidden: np.ndarray, pooling: str, dimensions: int | None = None) -> np.ndarray:
    """hidden: [T, dim] -> the pooled, cut and L2-normalised vector [dimensions or dim] (float64)."""
    v = hidden.astype(np.float64).mean(axis=0) if pooling == "mean" else hidden[-1].astype(np.float64)
    v = v[:dimensions] if dimensions else v
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else v


@dataclass
class EmbedJob:
    """A checked embeddings request: each input's token ids, the pooling, the served name."""

    request: EmbeddingRequest
    prompts: list[list[int]]
    pooling: str
    model: str


def prepare(engine: Any, req: EmbeddingRequest) -> EmbedJob:
    """Check `req` against the model (name, dimensions, token ids, lengths) and tokenize its inputs."""
    served = check_model(engine, req.model)
    if req.dimensions is not None and req.dimensions > engine.cfg.dim:
        raise InvalidParameterError(
            f"Invalid request: 'dimensions': this model's embeddings have {engine.cfg.dim} dimensions; ask "
            f"for at most that many (or leave dimensions out).", "dimensions")
    prompts = [_tokens(engine, x, i, len(req.items), req.truncate) for i, x in enumerate(req.items)]
    return EmbedJob(req, prompts, req.pooling or model_pooling(engine), served)


def run(engine: Any, job: EmbedJob) -> EmbeddingList:
    """Compute the embeddings of a prepared job (EngineBusyError while a generation runs)."""
    lock = _engine_lock(engine)
    if not lock.acquire(blocking=False):
        raise EngineBusyError()
    try:
        vectors = [pool(engine.hidden_states(ids), job.pooling, job.request.dimensions) for ids in job.prompts]
    finally:
        lock.release()
    fmt = job.request.encoding_format
    data = [Embedding(index=i, embedding=_encode(v, fmt)) for i, v in enumerate(vectors)]
    n = sum(len(p) for p in job.prompts)
    return EmbeddingList(data=data, model=job.model, usage=EmbeddingUsage(prompt_tokens=n, total_tokens=n))


def create(engine: Any, req: EmbeddingRequest) -> EmbeddingList:
    """`prepare` then `run`."""
    return run(engine, prepare(engine, req))


def _tokens(engine: Any, item: str | list[int], i: int, n: int, truncate: bool = False) -> list[int]:
    param = "input" if n == 1 else f"input.{i}"
    ids = engine.tokenizer.encode(item, add_special=True) if isinstance(item, str) else list(item)
    _check_ids(engine, ids, param)
    if truncate:
        ids = ids[:engine.n_ctx]
    if len(ids) > engine.n_ctx:
        err = ContextLengthExceededError(len(ids), engine.n_ctx, what="input")
        err.param = param
        raise err
    return ids


def _encode(v: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in v.astype(np.float32)]
