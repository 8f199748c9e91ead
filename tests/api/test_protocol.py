"""Request validation: every bad field is an InvalidParameterError naming it (no GPU needed)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgllm.api.protocol import MAX_N, parse_chat_request, parse_completion_request
from wgllm.errors import InvalidParameterError

MSG = [{"role": "user", "content": "Hi"}]


def chat(**fields):
    return parse_chat_request({"messages": MSG, **fields})


def test_a_full_request_parses():
    r = chat(model="m", stream=True, stream_options={"include_usage": True}, max_completion_tokens=9,
             stop=["a", "b"], temperature=0.5, top_p=0.9, seed=-3, n=3, frequency_penalty=1, presence_penalty=-1,
             logit_bias={"12": -100, "7": 5.5}, logprobs=True, top_logprobs=20,
             response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}})
    assert r.token_limit == 9 and r.include_usage and r.stop_list == ["a", "b"] and r.n_logprobs == 20
    assert r.response_format.json_schema.schema_ == {"type": "object"}
    assert r.temperature == 0.5 and isinstance(r.frequency_penalty, float)


def test_text_parts_and_developer_role():
    r = parse_chat_request({"messages": [{"role": "developer", "content": "be brief"},
                                         {"role": "user", "content": [{"type": "text", "text": "a"},
                                                                      {"type": "text", "text": "b"}]}]})
    assert [m.as_template_dict() for m in r.messages] == [{"role": "system", "content": "be brief"},
                                                           {"role": "user", "content": "ab"}]


@pytest.mark.parametrize("fields, param", [
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": "1"}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.01}, "top_p"),
    ({"n": 0}, "n"),
    ({"n": MAX_N + 1}, "n"),
    ({"n": 1.0}, "n"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": -5}, "max_completion_tokens"),
    ({"max_tokens": 5, "max_completion_tokens": 6}, "max_completion_tokens"),
    ({"seed": 2**63}, "seed"),
    ({"frequency_penalty": 2.5}, "frequency_penalty"),
    ({"presence_penalty": -3}, "presence_penalty"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"logit_bias": {"x": 1}}, "logit_bias"),
    ({"logit_bias": {"5": 101}}, "logit_bias"),
    ({"stop": ["a"] * 5}, "stop"),
    ({"stop": [""]}, "stop"),
    ({"stop": 3}, "stop"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"tools": []}, "tools"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.tool_call_id"),
    ({"messages": [{"role": "sysadmin", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"messages": [{"role": "user"}]}, "messages.0.content"),
    ({"n_predict": 0}, "n_predict"),
    ({"n_predict": -2}, "n_predict"),
    ({"n_predict": "8"}, "n_predict"),
    ({"max_tokens": 4, "n_predict": 5}, "n_predict"),
    ({"cache_prompt": "yes"}, "cache_prompt"),
    ({"id_slot": 1.5}, "id_slot"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"functions": "f"}, "functions"),
    ({"functions": [{"name": "f"}], "tools": [{"type": "function", "function": {"name": "g"}}]}, "functions"),
    ({"functions": [{"name": "bad name"}]}, "tools.0.function.name"),
    ({"audio": {"voice": "x"}}, "audio"),
])
def test_bad_chat_fields_name_the_param(fields, param):
    with pytest.raises(InvalidParameterError) as info:
        parse_chat_request({"messages": MSG, **fields})
    assert info.value.param == param
    assert param.split(".")[0] in info.value.message


def test_system_and_developer_messages_anywhere():
    r = parse_chat_request({"messages": [*MSG, {"role": "assistant", "content": "hi"},
                                         {"role": "developer", "content": "be brief"}, *MSG]})
    assert [m["role"] for m in (x.as_template_dict() for x in r.messages)] == ["user", "assistant", "system", "user"]


def test_unknown_fields_are_ignored_and_logged_once(caplog):
    import logging

    from wgllm.api import protocol

    protocol._IGNORED_LOGGED.clear()
    body = {"messages": MSG, "max_tokens": 3, "mirostat_tau": 5.0, "typical_p": "x", "x-extra": {}}
    with caplog.at_level(logging.WARNING, logger="wgllm.api"):
        first, second = parse_chat_request(body), parse_chat_request(body)
    assert first == second == parse_chat_request({"messages": MSG, "max_tokens": 3})
    logged = [r.getMessage() for r in caplog.records if r.name == "wgllm.api"]
    assert len(logged) == 1 and all(k in logged[0] for k in ("mirostat_tau", "typical_p", "x-extra")), logged


def test_llama_cpp_extras():
    r = parse_chat_request({"messages": MSG, "n_predict": 7, "cache_prompt": True, "id_slot": 0})
    assert r.token_limit == 7 and r.max_tokens == 7
    assert parse_chat_request({"messages": MSG, "n_predict": 7, "max_tokens": 7}).token_limit == 7
    assert parse_chat_request({"messages": MSG, "n_predict": -1}).token_limit is None  # to the end of the context
    assert parse_completion_request({"prompt": "a", "n_predict": -1}).token_limit is None
    assert parse_completion_request({"prompt": "a", "n_predict": 5}).token_limit == 5


def test_out_of_range_message_has_the_number():
    with pytest.raises(InvalidParameterError, match="2.5"):
        chat(temperature=2.5)


def test_body_must_be_an_object():
    for body in ([], "x", 3, None):
        with pytest.raises(InvalidParameterError, match="JSON object"):
            parse_chat_request(body)


@pytest.mark.parametrize("prompt", ["text", ["a", "b"], [1, 2, 3], [[1], [2, 3]]])
def test_completion_prompt_forms(prompt):
    assert parse_completion_request({"prompt": prompt}).prompt == prompt


@pytest.mark.parametrize("fields, param", [
    ({"prompt": ["a", 1]}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": "a", "logprobs": 6}, "logprobs"),
    ({"prompt": "a", "echo": True}, "echo"),
    ({"prompt": "a", "suffix": "z"}, "suffix"),
    ({"prompt": "a", "best_of": 3}, "best_of"),
    ({}, "prompt"),
])
def test_bad_completion_fields(fields, param):
    with pytest.raises(InvalidParameterError) as info:
        parse_completion_request(fields)
    assert info.value.param == param


def test_completion_default_max_tokens_is_openais():
    assert parse_completion_request({"prompt": "a"}).token_limit == 16


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                     max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(["messages", "temperature", "top_p", "n", "max_tokens", "stop", "seed", "logit_bias",
                              "logprobs", "top_logprobs", "response_format", "stream", "frequency_penalty"]),
       value=_json)
def test_any_value_is_accepted_or_an_invalid_parameter(field, value):
    """Whatever a field holds, parsing either succeeds or raises InvalidParameterError (never another error)."""
    try:
        parse_chat_request({"messages": MSG, field: value})
    except InvalidParameterError as exc:
        assert exc.message


def test_an_answer_message_appended_as_the_openai_client_sends_it():
    """`messages.append(r.choices[0].message)` sends refusal / annotations (null) back: accepted."""
    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
    r = parse_chat_request({"messages": [*MSG, {"role": "assistant", "content": None, "refusal": None,
                                                "annotations": [], "tool_calls": [call]},
                                         {"role": "tool", "tool_call_id": "call_1", "content": "1"}]})
    assert r.messages[1].as_template_dict()["tool_calls"][0]["function"]["arguments"] == {"a": 1}
    old = parse_chat_request({"messages": [*MSG, {"role": "assistant", "content": None,
                                                  "function_call": call["function"]}]})
    assert old.messages[1].as_template_dict()["tool_calls"][0]["function"]["name"] == "add"
