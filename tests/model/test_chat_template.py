"""wgllm's chat templates against transformers, and against hostile templates."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import jinja2
import pytest

from wgllm.errors import ChatTemplateError, RequestError
from wgllm.model.chat_template import CHATML_TEMPLATE, ChatTemplate


CONVERSATIONS = {
    "system_user": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
    ],
    "user_only": [{"role": "user", "content": "Hello!"}],
    "multi_turn": [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Bonjour !"},
        {"role": "user", "content": "How are you?\nTwo lines."},
    ],
    "multi_turn_no_system": [
        {"role": "user", "content": "Write code"},
        {"role": "assistant", "content": "def f():\n\treturn 1  # ok"},
        {"role": "user", "content": "日本語 🤖 {{ 7*7 }} {% raw %}"},
    ],
}


@pytest.fixture(scope="module")
def model_path(smollm2_path) -> Path:
    return smollm2_path


@pytest.fixture(scope="module")
def hf(model_path):
    """transformers' tokenizer built from the same GGUF (slow: loaded once per process)."""
    from wgllm.testing import oracle

    return oracle.reference_tokenizer(model_path)


@pytest.fixture(scope="module")
def smollm_template(model_path) -> ChatTemplate:
    from wgllm.model.gguf import GGUFFile

    return ChatTemplate.from_gguf(GGUFFile(model_path))


def _hf_render(template: str, messages, add_generation_prompt: bool = True, **kwargs) -> str:
    """transformers' own renderer, for templates that no tokenizer carries."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        conversations=[messages], chat_template=template, add_generation_prompt=add_generation_prompt, **kwargs
    )
    return rendered[0]


# --- parity with transformers --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_smollm2_template_matches_transformers(smollm_template, hf, name, add_generation_prompt):
    messages = CONVERSATIONS[name]
    want = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert smollm_template.render(messages, add_generation_prompt=add_generation_prompt) == want
    assert not smollm_template.is_fallback
    assert smollm_template.bos_token == hf.bos_token and smollm_template.eos_token == hf.eos_token


def test_user_content_is_data_not_code(smollm_template):
    text = smollm_template.render(CONVERSATIONS["multi_turn_no_system"])
    assert "{{ 7*7 }} {% raw %}" in text and "49" not in text


# A template that uses what real templates use: whitespace control, trim/lstrip blocks,
# namespace, loop controls, tojson with options, raise_exception, tools, bos/eos tokens,
# dict(), string methods and filters.
RICH_TEMPLATE = """{{ bos_token }}
{%- set ns = namespace(system=none, n=0) %}
{% for m in messages %}
    {% if m.role == 'system' %}{% set ns.system = m.content %}{% continue %}{% endif %}
    {% set ns.n = ns.n + 1 %}
{% endfor %}
{% if ns.system %}<<SYS>>{{ ns.system | trim }}<</SYS>>
{% endif %}
{% if tools %}Tools: {{ tools | tojson(indent=2) }}
{% endif %}
{% for m in messages if m.role != 'system' %}
    {% if (m.role == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {% endif %}
    {% if m.role == 'user' %}
[INST] {{ m.content.strip() }} [/INST]
    {%- else %}
 {{ m.content | tojson }}{{ eos_token }}
    {% endif %}
    {% if loop.index > 20 %}{% break %}{% endif %}
{% endfor %}
{% if add_generation_prompt %} ASSISTANT({{ ns.n }}, {{ dict(a=1) | tojson }}, {{ 'x' | upper }}):{% endif %}"""


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_rich_template_matches_transformers(name):
    messages = CONVERSATIONS[name]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"é": [1, 2.5, None, True]}}}]
    variables = {"bos_token": "<s>", "eos_token": "</s>"}
    ours = ChatTemplate(RICH_TEMPLATE, bos_token="<s>", eos_token="</s>")
    for extra in ({}, {"tools": tools}):
        want = _hf_render(RICH_TEMPLATE, messages, **variables, **extra)
        assert ours.render(messages, **extra) == want


def test_template_error_message_reaches_the_caller():
    bad_order = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(jinja2.TemplateError):
        _hf_render(RICH_TEMPLATE, bad_order)  # transformers refuses too
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        ChatTemplate(RICH_TEMPLATE).render(bad_order)


def test_strftime_now_and_none_keys_match_transformers(hf):
    template = "{{ strftime_now('%Y') }}|{% for m in messages %}{{ m.keys() | list | sort | join(',') }};{% endfor %}"
    messages = [{"role": "user", "content": "x", "tool_calls": None}]
    want = hf.apply_chat_template(messages, chat_template=template, tokenize=False)
    assert ChatTemplate(template).render(messages) == want == f"{datetime.now():%Y}|content,role;"


# --- fallback, compile once, input checks ---------------------------------------------


def test_fallback_is_chatml_and_says_so():
    messages = CONVERSATIONS["multi_turn"]
    for template in (ChatTemplate(None), ChatTemplate(""), ChatTemplate.from_metadata({"tokenizer.ggml.tokens": []})):
        assert template.is_fallback
        assert template.render(messages) == _hf_render(CHATML_TEMPLATE, messages, add_generation_prompt=True)
    assert ChatTemplate(None).render(messages).endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_template_is_compiled_once(monkeypatch):
    calls = []
    original = jinja2.Environment.compile

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    template = ChatTemplate(RICH_TEMPLATE)
    assert len(calls) == 1
    for _ in range(3):
        template.render(CONVERSATIONS["multi_turn"])
    assert len(calls) == 1


def test_syntax_error_is_chat_template_error():
    with pytest.raises(ChatTemplateError, match="does not compile"):
        ChatTemplate("{% for m in messages %}{{ m.content }")


def test_render_does_not_touch_the_callers_messages():
    messages = [{"role": "user", "content": "hi", "extra": None}]
    before = [dict(m) for m in messages]
    ChatTemplate(None).render(messages)
    assert messages == before


@pytest.mark.parametrize("messages", ["hello", [{"content": "no role"}], [{"role": "user", "content": object()}]])
def test_malformed_messages_are_request_errors(messages):
    with pytest.raises(RequestError):
        ChatTemplate(None).render(messages)


# --- hostile templates ----------------------------------------------------------------

# Classic Jinja server-side template injection payloads. Each tries to create the file
# PWNED (replaced by a path in tmp_path) by reaching Python's os / open / subprocess.
SSTI_PAYLOADS = {
    "cycler_globals_os": "{{ cycler.__init__.__globals__.os.popen('touch PWNED').read() }}",
    "joiner_globals_os": "{{ joiner.__init__.__globals__.os.system('touch PWNED') }}",
    "namespace_globals": "{{ namespace.__init__.__globals__.os.system('touch PWNED') }}",
    "lipsum_globals": "{{ lipsum.__globals__['os'].popen('touch PWNED').read() }}",
    "builtins_open": "{{ cycler.__init__.__globals__.__builtins__.open('PWNED', 'w').write('x') }}",
    "raise_exception_globals": "{{ raise_exception.__globals__['__builtins__']['open']('PWNED', 'w') }}",
    "strftime_globals": "{{ strftime_now.__globals__.__builtins__.open('PWNED', 'w') }}",
    "mro_subclasses": (
        "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == 'Popen' %}"
        "{{ c(['touch', 'PWNED']) }}{% endif %}{% endfor %}"
    ),
    "attr_filter": (
        "{{ ((''|attr('__class__')|attr('__mro__'))[1]|attr('__subclasses__'))() }}"
        "{{ cycler|attr('__init__')|attr('__globals__') }}"
    ),
    "format_string": "{{ '{0.__init__.__globals__[os].system}'.format(cycler) }}{{ 'touch PWNED' }}",
    "self_context": "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen('touch PWNED') }}",
    "messages_class": "{{ messages.__class__.__init__.__globals__ }}{{ messages.pop() }}",
    "dict_global": "{{ dict.__call__.__globals__['__builtins__']['open']('PWNED', 'w') }}",
    "namespace_dunder_set": "{% set ns = namespace() %}{% set ns.__class__ = 1 %}{{ ns }}",
    "include_file": "{% include 'PWNED' %}",
    "huge_string": "{{ 'x' * 10000000000 }}",
    "huge_power": "{{ 2 ** 1000000000 }}",
    "huge_range": "{{ range(10000000000) | list }}",
}


@pytest.fixture
def pwned(tmp_path) -> Path:
    return tmp_path / "pwned"


@pytest.mark.parametrize("name", sorted(SSTI_PAYLOADS))
def test_hostile_template_fails_safely(name, pwned):
    source = SSTI_PAYLOADS[name].replace("PWNED", str(pwned))
    with pytest.raises(ChatTemplateError):
        ChatTemplate(source).render(CONVERSATIONS["user_only"])
    assert not pwned.exists()


@pytest.mark.parametrize("name", ["cycler_globals_os", "builtins_open", "lipsum_globals"])
def test_payloads_are_live_outside_the_sandbox(name, pwned):
    """Control: the same payloads in a plain jinja2.Environment do create the file."""
    source = SSTI_PAYLOADS[name].replace("PWNED", str(pwned))
    jinja2.Environment().from_string(source).render(messages=[])
    assert pwned.exists()


def test_output_size_is_bounded():
    template = "{% for i in range(100000) %}{% for j in range(100000) %}{{ 'x' * 1000 }}{% endfor %}{% endfor %}"
    with pytest.raises(ChatTemplateError, match="more than"):
        ChatTemplate(template).render([])
