"""Tool calling: request validation, the call parser (every format, whole and streamed), real
models' chat templates (rendered as transformers renders them, tools reaching the prompt, the
model's syntax parsed back), and grammar-forced calls on tiny models with those templates."""

import dataclasses
import json

import jsonschema
import pytest

from wgllm.api import tools as T
from wgllm.api.protocol import parse_chat_request
from wgllm.errors import InvalidParameterError
from wgllm.model.chat_template import ChatTemplate
from wgllm.testing import synth

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"]}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two integers.",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99},
                                                    "b": {"type": "integer", "minimum": 0, "maximum": 99}},
                   "required": ["a", "b"]}}}
TOOLS = [WEATHER, ADD]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
NAMES = set(SCHEMAS)
MSG = [{"role": "user", "content": "What is the weather in Paris?"}]
# template -> (format, what the model writes to call get_weather(Paris, celsius) and add(2, 3))
REAL = {
    "meta-llama-Llama-3.1-8B-Instruct": ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris", "unit": '
                                                   '"celsius"}}'),
    "meta-llama-Llama-3.2-3B-Instruct": ("llama3", '<|python_tag|>{"name": "get_weather", "parameters": {"city": '
                                                   '"Paris", "unit": "celsius"}}; {"name": "add", "parameters": '
                                                   '{"a": 2, "b": 3}}'),
    "Qwen-Qwen2.5-7B-Instruct": ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", '
                                           '"unit": "celsius"}}\n</tool_call>\n<tool_call>\n{"name": "add", '
                                           '"arguments": {"a": 2, "b": 3}}\n</tool_call>'),
    "Qwen-Qwen3-0.6B": ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": '
                                  '"celsius"}}\n</tool_call>'),
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": ("hermes", '<tool_call>\n{"arguments": {"city": "Paris", "unit": '
                                                              '"celsius"}, "name": "get_weather"}\n</tool_call>'),
    "mistralai-Mistral-Nemo-Instruct-2407": ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": '
                                                        '"Paris", "unit": "celsius"}}, {"name": "add", "arguments": '
                                                        '{"a": 2, "b": 3}}]'),
}
EXPECTED = [("get_weather", {"city": "Paris", "unit": "celsius"}), ("add", {"a": 2, "b": 3})]


def plan(fmt: str, **req) -> T.ToolPlan:
    r = parse_chat_request({"messages": MSG, "tools": TOOLS, **req})
    return T.ToolPlan(T.FORMATS[fmt], [t.function.model_dump(exclude_none=True) for t in r.tools])


def split(p: T.ToolPlan, text: str, cuts: list[int]) -> tuple[str, list[T.Call]]:
    """The text pushed in pieces cut at `cuts`: (all content, calls)."""
    s, content, prev = p.stream(), [], 0
    for c in [*cuts, len(text)]:
        content.append(s.push(text[prev:c]))
        prev = c
    tail, calls = s.finish()
    return "".join(content) + tail, calls


def check_split_everywhere(p: T.ToolPlan, text: str) -> tuple[str, list[T.Call]]:
    whole = split(p, text, [])
    for cut in range(1, len(text)):
        got = split(p, text, [cut])
        assert (got[0], [(c.name, c.arguments) for c in got[1]]) == (whole[0], [(c.name, c.arguments) for c in whole[1]])
    return whole


# --- request validation --------------------------------------------------------------------


@pytest.mark.parametrize("req, param", [
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools.0.function.name"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
    ({"messages": [{"role": "tool", "content": "18C"}]}, "messages.0.tool_call_id"),
    ({"messages": [{"role": "assistant"}]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]}, "messages.0.tool_calls"),
])
def test_bad_tool_requests_name_the_field(req, param):
    with pytest.raises(InvalidParameterError) as e:
        parse_chat_request({"messages": MSG, **req})
    assert e.value.param == param and param.split(".")[0] in str(e.value)


def test_tool_messages_reach_the_template_as_transformers_expects():
    r = parse_chat_request({"messages": [
        *MSG, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "3"}], "tools": TOOLS})
    msgs = [m.as_template_dict() for m in r.messages]
    assert msgs[1]["tool_calls"][0]["function"]["arguments"] == {"a": 1, "b": 2}
    assert msgs[2] == {"role": "tool", "content": "3", "tool_call_id": "call_1"}


# --- the parser --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, text, content, names", [
    ("hermes", 'Let me check.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>',
     "Let me check.\n", ["add"]),
    ("hermes", '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}', "", ["add"]),  # unclosed at EOS
    ("hermes", 'Just text with a < sign and <tool but no call.', 'Just text with a < sign and <tool but no call.', []),
    ("hermes", '<tool_call>{"name": "unknown_fn", "arguments": {}}</tool_call>',
     '<tool_call>{"name": "unknown_fn", "arguments": {}}</tool_call>', []),  # not a tool: content
    ("llama3", '  {"name": "add", "parameters": {"a": 1, "b": 2}}', "", ["add"]),
    ("llama3", '{"answer": 42}', '{"answer": 42}', []),  # JSON that is not a call stays content
    ("llama3", 'The sum is {"a": 1}', 'The sum is {"a": 1}', []),
    ("mistral", '[TOOL_CALLS]add[ARGS]{"a": 1, "b": 2}[TOOL_CALLS]get_weather[ARGS]{"city": "Rome", "unit": '
                '"celsius"}', "", ["add", "get_weather"]),
    ("json", '{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}', "", ["add"]),
    ("json", '{"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}', "", ["add"]),  # arguments as a string
    ("json", 'Paris is sunny.', 'Paris is sunny.', []),
    ("any", '[TOOL_CALLS][{"name": "add", "arguments": {"a": 1, "b": 2}}]', "", ["add"]),
])
def test_parser_whole_and_split_at_every_point(fmt, text, content, names):
    got_content, calls = check_split_everywhere(plan(fmt), text)
    assert got_content == content and [c.name for c in calls] == names
    for c in calls:
        jsonschema.validate(c.arguments, SCHEMAS[c.name])
        assert c.id


def test_content_streams_before_a_call_starts():
    s = plan("hermes").stream()
    assert s.push("Sure, ") == "Sure, "
    assert s.push("checking <tool") == "checking "  # "<tool" may begin a marker: held
    assert s.push("_call>{\"name\": ") == ""
    s.push('"add", "arguments": {"a": 1, "b": 2}}</tool_call>')
    assert s.finish()[1][0].arguments == {"a": 1, "b": 2}


# --- real templates ------------------------------------------------------------------------


def conversation(call_id: str) -> list[dict]:
    return [{"role": "system", "content": "You are a helpful assistant."}, *MSG,
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "18 degrees, sunny"}]


def reference_messages(call_id: str) -> list[dict]:
    """The same conversation as transformers' documentation writes it (arguments as a dict)."""
    return [{"role": "system", "content": "You are a helpful assistant."}, *MSG,
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": call_id, "type": "function",
                 "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "18 degrees, sunny"}]


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_template_renders_tools_as_transformers_and_parses_back(name, real_templates):
    from transformers.utils.chat_template_utils import render_jinja_template

    source, (fmt, emitted) = real_templates[name], REAL[name]
    template = ChatTemplate(source, "<|bos|>", "<|eos|>")
    assert T.detect_format(template).name == fmt
    call_id = "abcDEF123"  # Mistral's templates want 9 letters and digits
    req = parse_chat_request({"messages": conversation(call_id), "tools": TOOLS})
    p = T.plan_for(template, req)
    ours = template.render(p.template_messages([m.as_template_dict() for m in req.messages]),
                           tools=p.template_tools())
    (ref,), _ = render_jinja_template(conversations=[reference_messages(call_id)], tools=TOOLS, chat_template=source,
                                      add_generation_prompt=True, bos_token="<|bos|>", eos_token="<|eos|>")
    assert ours == ref
    assert "get_weather" in ours and "Add two integers." in ours  # the tools reached the prompt
    content, calls = check_split_everywhere(p, emitted)
    expected = EXPECTED if emitted.count('"name"') == 2 else EXPECTED[:1]
    assert content == "" and [(c.name, c.arguments) for c in calls] == expected


def test_template_without_tools_gets_them_in_a_system_message():
    template = ChatTemplate(synth.CHATML_TEMPLATE, "", "")
    assert T.detect_format(template).name == "json"
    req = parse_chat_request({"messages": conversation("call_9"), "tools": TOOLS})
    p = T.plan_for(template, req)
    text = template.render(p.template_messages([m.as_template_dict() for m in req.messages]), tools=p.template_tools())
    assert text.count("<|im_start|>system") == 1 and "Add two integers." in text
    assert '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]}' in text
    assert '{"tool_response": {"name": "get_weather", "content": "18 degrees, sunny"}}' in text


# --- grammar-forced calls on tiny models with the real templates --------------------------------


@pytest.fixture(scope="module")
def template_engines(real_templates, tmp_path_factory, device):
    """name -> wgllm.Engine of a tiny random model whose chat template is that real template."""
    import wgllm

    shape = dataclasses.replace(synth.SHAPES["tiny-256"], name="tools-tiny", ctx=4096)
    engines = {}
    for name in [*REAL, "chatml"]:
        source = real_templates.get(name, synth.CHATML_TEMPLATE)
        path = synth.write_llama_gguf(tmp_path_factory.mktemp("tools") / f"{name}.gguf", shape, seed=3,
                                      chat_template=source)
        engines[name] = wgllm.Engine(str(path), ctx=4096)
    return engines


def call_names(r) -> list[str]:
    calls = r.choices[0].message.tool_calls or []
    for c in calls:
        jsonschema.validate(json.loads(c.function.arguments), SCHEMAS[c.function.name])
    return [c.function.name for c in calls]


@pytest.mark.parametrize("name", [*sorted(REAL), "chatml"])
def test_forced_calls_parse_and_validate(name, template_engines):
    engine = template_engines[name]
    kw = {"messages": [{"role": "user", "content": "Weather?"}], "tools": TOOLS, "max_tokens": 96, "temperature": 0}
    named = engine.chat.completions.create(**kw, tool_choice={"type": "function", "function": {"name": "add"}})
    assert named.choices[0].finish_reason == "tool_calls" and call_names(named) == ["add"]
    assert named.choices[0].message.content is None
    single = engine.chat.completions.create(**{**kw, "temperature": 1.0}, tool_choice="required",
                                            parallel_tool_calls=False, seed=1)
    assert single.choices[0].finish_reason == "tool_calls" and len(call_names(single)) == 1
    sampled = {**kw, "temperature": 1.0, "seed": 2, "tool_choice": "required", "parallel_tool_calls": False}
    chunks = list(engine.chat.completions.create(**sampled, stream=True))
    deltas = [d for c in chunks for d in c.choices[0].delta.tool_calls or []]
    whole = engine.chat.completions.create(**sampled)
    assert [(d["index"], d["function"]["name"], d["function"]["arguments"]) for d in deltas] == [
        (0, c.function.name, c.function.arguments) for c in whole.choices[0].message.tool_calls]
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason == "tool_calls"
    parallel = engine.chat.completions.create(**{**sampled, "parallel_tool_calls": True})
    assert parallel.choices[0].finish_reason in ("tool_calls", "length")  # a random model may not stop calling
    call_names(parallel)


# --- the deprecated functions / function_call -------------------------------------------------


def test_deprecated_function_calling(template_engines):
    engine = template_engines["chatml"]
    functions = [t["function"] for t in TOOLS]
    kw = {"messages": [{"role": "user", "content": "Weather?"}], "functions": functions, "max_tokens": 96,
          "temperature": 0, "function_call": {"name": "add"}}
    r = engine.chat.completions.create(**kw)
    message = r.choices[0].message
    assert r.choices[0].finish_reason == "function_call" and message.tool_calls is None
    assert message.function_call.name == "add"
    jsonschema.validate(json.loads(message.function_call.arguments), SCHEMAS["add"])
    assert "tool_calls" not in r.model_dump() ["choices"][0]["message"]
    chunks = list(engine.chat.completions.create(**kw, stream=True))
    calls = [c.choices[0].delta.function_call for c in chunks if c.choices[0].delta.function_call]
    assert calls == [message.function_call.model_dump()] and chunks[-1].choices[0].finish_reason == "function_call"
    answer = engine.chat.completions.create(**{**kw, "function_call": "none", "messages": [
        *kw["messages"], {"role": "assistant", "content": None, "function_call": message.function_call.model_dump()},
        {"role": "function", "name": "add", "content": "5"}]})
    assert answer.choices[0].message.function_call is None and answer.choices[0].finish_reason in ("stop", "length")
