"""OpenAI's Responses API (/v1/responses) through the official openai client: text in / text out
equal to the chat route's answer, the streamed event sequence, instructions, structured output,
refused fields."""

import json

import openai
import pytest


def _chat_text(client, messages, n, **kw):
    """The chat route's answer (asked twice: the second finds the prompt cached, as the next request will)."""
    for _ in range(2):
        r = client.chat.completions.create(model="tiny", messages=messages, max_tokens=n, temperature=0, **kw)
    return r.choices[0].message.content, r.choices[0].finish_reason


def test_text_in_text_out_equals_chat(client):
    want, finish = _chat_text(client, [{"role": "user", "content": "Tell me about the sea."}], 8)
    r = client.responses.create(model="tiny", input="Tell me about the sea.", max_output_tokens=8, temperature=0)
    assert r.object == "response" and r.output_text == want and r.id.startswith("resp_")
    assert r.status == ("incomplete" if finish == "length" else "completed")
    assert r.usage.output_tokens == 8 and r.usage.input_tokens > 0
    assert [item.type for item in r.output] == ["message"] and r.output[0].content[0].type == "output_text"


def test_instructions_and_input_items(client):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}, {"role": "user", "content": "why?"}]
    want, _ = _chat_text(client, msgs, 6)
    r = client.responses.create(model="tiny", instructions="Be brief.", max_output_tokens=6, temperature=0, input=[
        {"role": "user", "content": "hi"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]},
        {"role": "user", "content": [{"type": "input_text", "text": "why?"}]}])
    assert r.output_text == want


def test_stream_events(client):
    want, _ = _chat_text(client, [{"role": "user", "content": "Tell me about the sea."}], 8)
    events = list(client.responses.create(model="tiny", input="Tell me about the sea.", max_output_tokens=8,
                                          temperature=0, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.incomplete"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == want
    assert events[-1].response.output_text == want and events[-1].response.usage.output_tokens == 8


def test_structured_output(client):
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
              "required": ["n"], "additionalProperties": False}
    r = client.responses.create(model="tiny", input="a number", max_output_tokens=30, temperature=0, text={
        "format": {"type": "json_schema", "name": "num", "schema": schema}})
    assert set(json.loads(r.output_text)) == {"n"}


@pytest.mark.parametrize("extra", [{"previous_response_id": "resp_1"}, {"tools": [{"type": "web_search"}]},
                                   {"input": [{"type": "input_image", "image_url": "x"}]},
                                   {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
                                   {"input": 5}, {"temperature": "hot"}])
def test_refused_fields_are_400(client, http, extra):
    with pytest.raises(openai.BadRequestError):
        client.responses.create(**{"model": "tiny", "input": "hi", "max_output_tokens": 2, **extra})
    assert http.get("/health").status_code == 200
