"""End-to-end on the real SmolLM2-135M-Instruct: a right answer, and structured output that parses
and validates against its schema."""

import json

import jsonschema


def test_greedy_answer_mentions_paris(smollm2):
    r = smollm2.chat.completions.create(messages=[{"role": "user", "content": "What is the capital of France?"}],
                                        max_tokens=12, temperature=0)
    assert "Paris" in r.choices[0].message.content
    assert r.usage.extra.prefill_tokens_per_s > 0 and r.usage.extra.decode_tokens_per_s > 0


SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "country", "population"],
          "properties": {"city": {"type": "string", "maxLength": 20}, "country": {"type": "string", "maxLength": 20},
                         "population": {"type": "integer", "minimum": 0}}}


def test_json_schema_answer_parses_and_validates(smollm2):
    r = smollm2.chat.completions.create(
        messages=[{"role": "user", "content": "Give the capital of France as JSON with city, country, population."}],
        max_tokens=48, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": SCHEMA}})
    c = r.choices[0]
    assert c.finish_reason == "stop", c.message.content
    data = json.loads(c.message.content)
    jsonschema.validate(data, SCHEMA)
    assert data["city"] == "Paris"
