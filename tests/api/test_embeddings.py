"""Embeddings: the real SmolLM2's pooled hidden states against transformers' on the same GGUF
(f32, rel. err <= 1e-3); encodings, dimensions, batches and bad requests on a tiny model; the
openai and ollama clients against the server."""

import base64

import numpy as np
import pytest

from wgllm.api.embeddings import pool
from wgllm.errors import ContextLengthExceededError, InvalidParameterError
from wgllm.testing import oracle

from ..conftest import rel_err

TEXTS = ["The capital of France is Paris.", "Embeddings turn text into vectors of numbers."]


@pytest.fixture(scope="module")
def smollm2_f32(smollm2_path, device):
    import wgllm

    return wgllm.Engine(str(smollm2_path), ctx=256, precision="f32")


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_smollm2_embeddings_match_transformers(smollm2_f32, smollm2_path, pooling):
    r = smollm2_f32.embeddings.create(input=TEXTS, pooling=pooling)
    assert [d.index for d in r.data] == [0, 1] and r.usage.prompt_tokens > 0
    for text, d in zip(TEXTS, r.data):
        ids = smollm2_f32.tokenizer.encode(text, add_special=True)
        ref = pool(oracle.reference_hidden(smollm2_path, ids), pooling)
        got = np.asarray(d.embedding, np.float64)
        assert got.shape == (smollm2_f32.cfg.dim,) and abs(np.linalg.norm(got) - 1) < 1e-5
        assert rel_err(got, ref) <= 1e-3


def test_mean_and_last_differ_and_texts_differ(smollm2_f32):
    mean = smollm2_f32.embeddings.create(input=TEXTS, pooling="mean").data
    last = smollm2_f32.embeddings.create(input=TEXTS, pooling="last").data
    assert rel_err(mean[0].embedding, last[0].embedding) > 1e-2
    assert rel_err(mean[0].embedding, mean[1].embedding) > 1e-2


def test_encodings_dimensions_and_inputs_agree(tiny):
    ids = tiny.tokenizer.encode("hello sea", add_special=True)
    floats = tiny.embeddings.create(input="hello sea").data[0].embedding
    b64 = tiny.embeddings.create(input="hello sea", encoding_format="base64").data[0].embedding
    assert np.array_equal(np.frombuffer(base64.b64decode(b64), "<f4"), np.asarray(floats, np.float32))
    assert tiny.embeddings.create(input=ids).data[0].embedding == floats
    batch = tiny.embeddings.create(input=["x y", "hello sea", "x y"]).data
    assert batch[1].embedding == floats and batch[0].embedding == batch[2].embedding
    cut = np.asarray(tiny.embeddings.create(input="hello sea", dimensions=16).data[0].embedding)
    full = tiny.hidden_states(ids).mean(axis=0)[:16]
    assert cut.shape == (16,) and rel_err(cut, full / np.linalg.norm(full)) < 1e-5


def test_chat_after_embeddings_is_unchanged(tiny):
    kw = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "temperature": 0}
    tiny.reset()  # both answers prefill from an empty cache (f16 rounding differs on a cached prefix)
    before = tiny.chat.completions.create(**kw).choices[0].message.content
    tiny.embeddings.create(input="something else entirely")
    assert tiny.chat.completions.create(**kw).choices[0].message.content == before


@pytest.mark.parametrize("req, err, param", [
    ({"input": []}, InvalidParameterError, "input"),
    ({"input": 5}, InvalidParameterError, "input"),
    ({"input": [[1, 2], [10**6]]}, InvalidParameterError, "input.1"),
    ({"input": ""}, InvalidParameterError, "input"),
    ({"input": "x", "dimensions": 10**5}, InvalidParameterError, "dimensions"),
    ({"input": "x", "encoding_format": "int8"}, InvalidParameterError, "encoding_format"),
    ({"input": "x", "pooling": "cls"}, InvalidParameterError, "pooling"),
    ({"input": [3] * 300}, ContextLengthExceededError, "input"),
])
def test_bad_embedding_requests(tiny, req, err, param):
    with pytest.raises(err) as e:
        tiny.embeddings.create(**req)
    assert e.value.param == param


def test_truncate_cuts_to_the_context(tiny):
    long = [3] * 300  # the tiny engine's context is 256
    cut = tiny.embeddings.create(input=long, truncate=True)
    assert cut.usage.prompt_tokens == tiny.n_ctx
    assert cut.data[0].embedding == tiny.embeddings.create(input=long[:tiny.n_ctx]).data[0].embedding
