"""Tool calls through the official openai client against `wgllm serve` on the real SmolLM2
(its template renders no tools: the JSON form), whole and streamed: required, named, parallel,
auto, and a full round trip (call -> tool message -> answer), also through the `ollama` client.
Arguments validated with jsonschema."""

import json

import jsonschema
import pytest

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The local time in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"]}}}
TOOLS = [WEATHER, TIME]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def real_server(smollm2_path, device):
    import wgllm
    from wgllm.server import start_in_thread

    engine = wgllm.AsyncEngine(str(smollm2_path), ctx=1024)
    running = start_in_thread(engine)
    yield running
    running.stop()
    engine.close()


@pytest.fixture(scope="module")
def real_client(real_server):
    import openai

    return openai.OpenAI(base_url=real_server.url + "/v1", api_key="none", max_retries=0, timeout=300)


def valid(calls) -> list[tuple[str, dict]]:
    out = []
    for c in calls:
        args = json.loads(c.function.arguments)
        jsonschema.validate(args, SCHEMAS[c.function.name])
        assert c.type == "function" and c.id
        out.append((c.function.name, args))
    return out


def test_required_call_whole_and_streamed(real_client):
    kw = {"model": "any", "messages": ASK, "tools": TOOLS, "tool_choice": "required", "temperature": 0,
          "max_tokens": 80}
    r = real_client.chat.completions.create(**kw)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = valid(choice.message.tool_calls)
    assert calls[0] == ("get_weather", {"city": "Paris", "unit": "celsius"})
    stream = real_client.chat.completions.create(**kw, stream=True)
    deltas, finish = [], None
    for chunk in stream:
        deltas += chunk.choices[0].delta.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and valid(deltas) == calls
    assert [d.index for d in deltas] == list(range(len(calls)))


def test_named_function_is_called(real_client):
    r = real_client.chat.completions.create(
        model="any", messages=ASK, tools=TOOLS, temperature=0, max_tokens=60,
        tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert r.choices[0].finish_reason == "tool_calls"
    assert [name for name, _ in valid(r.choices[0].message.tool_calls)] == ["get_time"]


def test_parallel_calls_off_gives_one_call(real_client):
    ask = [{"role": "user", "content": "What is the weather and the time in Paris and in Rome?"}]
    for seed in (1, 2):
        r = real_client.chat.completions.create(model="any", messages=ask, tools=TOOLS, tool_choice="required",
                                                parallel_tool_calls=False, temperature=0.8, seed=seed,
                                                max_tokens=80)
        assert r.choices[0].finish_reason == "tool_calls" and len(valid(r.choices[0].message.tool_calls)) == 1


def test_auto_and_none_answer_in_text_or_call(real_client):
    for choice in ("auto", "none"):
        r = real_client.chat.completions.create(model="any", messages=ASK, tools=TOOLS, tool_choice=choice,
                                                temperature=0, max_tokens=40)
        c = r.choices[0]
        if choice == "none" or not c.message.tool_calls:
            assert c.message.content and not c.message.tool_calls and c.finish_reason in ("stop", "length")
        else:
            assert c.finish_reason == "tool_calls" and valid(c.message.tool_calls)


def test_round_trip_call_result_answer(real_client):
    first = real_client.chat.completions.create(model="any", messages=ASK, tools=TOOLS, tool_choice="required",
                                                temperature=0, max_tokens=80)
    call = first.choices[0].message.tool_calls[0]
    messages = [*ASK, first.choices[0].message,  # the message object itself, as clients append it
                {"role": "tool", "tool_call_id": call.id, "content": "22 degrees celsius and sunny"}]
    answer = real_client.chat.completions.create(model="any", messages=messages, tools=TOOLS, temperature=0,
                                                 max_tokens=40)
    text = answer.choices[0].message.content
    assert answer.choices[0].finish_reason in ("stop", "length") and text and not answer.choices[0].message.tool_calls
    assert "22" in text or "sunny" in text.lower(), text


def test_ollama_client_round_trip(real_server):
    import ollama

    client = ollama.Client(host=real_server.url)
    messages = [*ASK, {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
        {"role": "tool", "content": "22 degrees celsius and sunny", "tool_name": "get_weather"}]
    r = client.chat(model="any", messages=messages, tools=TOOLS, options={"num_predict": 40, "temperature": 0})
    assert r.done and r.message.content and not r.message.tool_calls
    assert "22" in r.message.content or "sunny" in r.message.content.lower(), r.message.content


RESPONSES_TOOLS = [{"type": "function", **t["function"]} for t in TOOLS]  # Responses' flat function tools


def test_responses_api_tool_call_and_round_trip(real_client):
    kw = {"model": "any", "tools": RESPONSES_TOOLS, "temperature": 0, "max_output_tokens": 80}
    r = real_client.responses.create(input="What is the weather in Paris?", tool_choice="required", **kw)
    (call,) = [item for item in r.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id and r.status == "completed"
    jsonschema.validate(json.loads(call.arguments), SCHEMAS["get_weather"])
    events = list(real_client.responses.create(input="What is the weather in Paris?", tool_choice="required",
                                               stream=True, **kw))
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [(e.name, e.arguments) for e in done] == [(call.name, call.arguments)]
    assert events[-1].type == "response.completed"
    answer = real_client.responses.create(input=[
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "22 degrees celsius and sunny"}], **kw)
    assert answer.output_text and not [i for i in answer.output if i.type == "function_call"]
    assert "22" in answer.output_text or "sunny" in answer.output_text.lower(), answer.output_text
