"""The official openai client against the live server: chat (whole and streamed), completions,
stop sequences, seeds, n > 1, logprobs, json_schema, /v1/models."""

import json

import jsonschema
import pytest

MSG = [{"role": "user", "content": "Tell me about the sea."}]


def joined(stream):
    texts, finish = {}, {}
    for c in stream:
        for ch in c.choices:
            texts[ch.index] = texts.get(ch.index, "") + (ch.delta.content or "")
            if ch.finish_reason:
                finish[ch.index] = ch.finish_reason
    return texts, finish


def test_models(client, aengine):
    (m,) = client.models.list().data
    assert m.id == aengine.engine.model_id and m.object == "model"


def test_chat_whole_and_streamed_agree(client):
    r = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=10, temperature=0)
    assert r.object == "chat.completion" and r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 10 and r.usage.prompt_tokens > 0
    assert r.usage.model_extra["extra"]["decode_tokens_per_s"] > 0
    stream = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=10, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    texts, finish = joined(chunks)
    assert texts == {0: r.choices[0].message.content} and finish == {0: "length"}
    assert chunks[-1].usage.completion_tokens == 10


def test_completions(client):
    r = client.completions.create(model="tiny", prompt="The sea is", max_tokens=6, temperature=0)
    assert r.object == "text_completion" and r.usage.completion_tokens == 6
    text = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="The sea is", max_tokens=6, temperature=0, stream=True) if c.choices)
    assert text == r.choices[0].text


def test_stop_sequences(client):
    full = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=20, temperature=0)
    text = full.choices[0].message.content
    stop = text[4:7]
    r = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=20, temperature=0, stop=[stop])
    assert r.choices[0].message.content == text[: text.index(stop)] and r.choices[0].finish_reason == "stop"
    texts, finish = joined(client.chat.completions.create(model="tiny", messages=MSG, max_tokens=20, temperature=0,
                                                          stop=stop, stream=True))
    assert texts == {0: text[: text.index(stop)]} and finish == {0: "stop"}


def test_seed_reproducibility_and_n(client):
    kw = {"model": "tiny", "messages": MSG, "max_tokens": 8, "temperature": 1.0, "seed": 77, "n": 3}
    a = client.chat.completions.create(**kw)
    b = client.chat.completions.create(**kw)
    ta = [c.message.content for c in a.choices]
    assert ta == [c.message.content for c in b.choices] and len(ta) == 3 and len(set(ta)) > 1
    texts, _ = joined(client.chat.completions.create(**kw, stream=True))
    assert [texts[i] for i in range(3)] == ta


def test_logprobs(client):
    r = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=5, temperature=0, logprobs=True,
                                       top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == 5
    for t in content:
        assert len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob == pytest.approx(t.logprob)
    c = client.completions.create(model="tiny", prompt="abc", max_tokens=4, temperature=0, logprobs=3)
    assert len(c.choices[0].logprobs.token_logprobs) == 4


SCHEMA = {"type": "object", "additionalProperties": False, "required": ["word", "count", "tags"],
          "properties": {"word": {"type": "string", "maxLength": 5}, "count": {"type": "integer", "maximum": 99},
                         "tags": {"type": "array", "maxItems": 2, "items": {"enum": ["a", "b", "c"]}}}}


@pytest.mark.parametrize("seed", [11, 12])
def test_json_schema_output_parses_and_validates(client, seed):
    r = client.chat.completions.create(
        model="tiny", messages=MSG, max_tokens=150, temperature=1.0, seed=seed,
        response_format={"type": "json_schema", "json_schema": {"name": "thing", "schema": SCHEMA, "strict": True}})
    assert r.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)


def test_bad_request_through_the_client_is_a_400(client):
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=MSG, temperature=5)
    assert info.value.body["param"] == "temperature"
    served = client.chat.completions.create(model="gpt-3.5-turbo", messages=MSG, max_tokens=2)
    assert served.model == "tiny"  # any name is served by the loaded model; the response names it


def test_embeddings(client, aengine):
    import numpy as np

    r = client.embeddings.create(model="tiny", input=["the sea", "the land"])  # the client asks for base64
    want = aengine.engine.embeddings.create(input=["the sea", "the land"]).data
    assert [d.index for d in r.data] == [0, 1] and r.usage.prompt_tokens > 0
    for got, ref in zip(r.data, want):
        assert np.allclose(got.embedding, ref.embedding, atol=1e-7) and len(got.embedding) == aengine.engine.cfg.dim
    floats = client.embeddings.create(model="tiny", input="the sea", encoding_format="float", dimensions=8)
    assert len(floats.data[0].embedding) == 8 and abs(np.linalg.norm(floats.data[0].embedding) - 1) < 1e-5
    import openai

    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="tiny", input="x", dimensions=10**6)
