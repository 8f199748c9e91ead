"""Chat templates: a model's Jinja template turned into a prompt, safely.

A GGUF's `tokenizer.chat_template` is untrusted code from the file's author.
It is compiled once in jinja2's `ImmutableSandboxedEnvironment` (set up as
transformers does: `trim_blocks`, `lstrip_blocks`, `loopcontrols`,
`raise_exception`, `strftime_now` and a non-escaping `tojson`), and only plain
JSON-like data (dicts, lists, strings, numbers, booleans, None) is handed to it.
Anything that goes wrong while rendering -- a syntax error, the template's own
`raise_exception`, or the sandbox stopping an attempt to reach Python internals
-- becomes a `ChatTemplateError`. On top of jinja's sandbox, `*` and `**` on
huge operands and oversized output are refused, so a hostile template cannot
exhaust memory either.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from wgllm.errors import ChatTemplateError, RequestError
from wgllm.model.gguf import GGUFFile

# ChatML, used when a model ships no template of its own (and its vocabulary has no other turn markers).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Gemma's turns (llama.cpp's LLM_CHAT_TEMPLATE_GEMMA): BOS, "model" for the assistant, and system text
# (there is no system turn) put before the next user turn's text. For [system?, user, model, user, ...]
# this renders what the Gemma 2/3 instruct templates render.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for message in messages %}"
    "{% if message['role'] in ('system', 'developer') %}"
    "{% set ns.system = ns.system + (message['content'] | trim) + '\n\n' %}"
    "{% else %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{% if role != 'model' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}"
    "{{ (message['content'] | trim) + '<end_of_turn>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# Without a template in the file, the first of these whose turn marker the vocabulary holds is used.
FALLBACKS = (("<start_of_turn>", GEMMA_TEMPLATE),)


def fallback_source(tokens: Collection[str]) -> str:
    """The template used for a model without one: chosen by the turn markers in its vocabulary
    (`tokens`, a set or list of token strings), ChatML when none is known."""
    vocab = tokens if isinstance(tokens, (set, frozenset)) else set(tokens)
    return next((source for marker, source in FALLBACKS if marker in vocab), CHATML_TEMPLATE)


MAX_OUTPUT_CHARS = 16 * 1024 * 1024  # a rendered prompt longer than this is an attack or a bug
MAX_OPERAND_LEN = 1024 * 1024  # largest result of `*` on a string/list in a template
MAX_POWER_BITS = 1 << 16  # largest `**` result (in bits) in a template


# --- the sandbox --------------------------------------------------------------------


def _raise_exception(message: Any) -> None:
    raise TemplateError(str(message))


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False
) -> str:
    """`tojson` as transformers has it: plain json.dumps, no HTML escaping."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(str(fmt))


class _TemplateDict:
    """`dict(...)` for templates, without exposing the `dict` type itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


class _Namespace(jinja2.utils.Namespace):
    """jinja's `namespace`, refusing underscore-prefixed attribute names."""

    def __init__(*args: Any, **kwargs: Any):  # noqa: N805 - jinja's signature trick (a key may be named `self`)
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise SecurityError(f"a chat template may not set the underscore attribute {name!r} on a namespace")


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` (transformers' assistant-mask marker): renders its body."""

    tags = {"generation"}

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        return caller()


def _power_too_big(base: Any, exponent: Any) -> bool:
    """An int ** int whose result would be huge (floats just overflow, harmlessly)."""
    if not isinstance(base, int) or not isinstance(exponent, int):
        return False
    return exponent > 0 and abs(base) > 1 and abs(base).bit_length() * exponent > MAX_POWER_BITS


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox: unsafe attributes fail loudly; `*` and `**` are bounded."""

    intercepted_binops = frozenset(["*", "**"])

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        """Fail at once (jinja would return an Undefined that prints as '')."""
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__!r} object is unsafe")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _power_too_big(left, right):
            raise SecurityError(f"a chat template may not compute {left!r} ** {right!r}")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                sized = isinstance(seq, (str, bytes, list, tuple)) and isinstance(count, int)
                if sized and len(seq) * abs(count) > MAX_OPERAND_LEN:
                    raise SecurityError("a chat template may not build a string or list this large")
        return super().call_binop(context, operator, left, right)


def _environment() -> _Sandbox:
    env = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _Namespace
    return env


# --- plain data ---------------------------------------------------------------------


def _plain(value: Any, where: str) -> Any:
    """A copy of `value` made only of JSON-like builtins (no objects with methods reach the template)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(k, where): _plain(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    raise RequestError(
        f"The {where} holds a {type(value).__name__}, but chat messages may only contain strings, "
        f"numbers, booleans, None, lists and dicts. Convert it to one of these first."
    )


def _plain_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise RequestError("`messages` must be a list of {'role': ..., 'content': ...} dicts.")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise RequestError(
                f"Message {i} is not a chat message: each message must be a dict with a string 'role' "
                f"(e.g. 'system', 'user', 'assistant') and its 'content'."
            )
        # Like transformers, drop keys set to None: templates handle a missing key better.
        out.append({k: v for k, v in _plain(message, f"message {i}").items() if v is not None})
    return out


# --- the template -------------------------------------------------------------------


class ChatTemplate:
    """A compiled chat template (the model's own, or a fallback when it has none)."""

    def __init__(
        self,
        source: str | None,
        bos_token: str = "",
        eos_token: str = "",
        special_tokens: Mapping[str, str] | None = None,
        fallback: str = CHATML_TEMPLATE,
    ):
        """Compile `source` (None or empty: `fallback`, ChatML unless given). Raises ChatTemplateError
        on bad syntax."""
        self.is_fallback: bool = not source
        self.source: str = fallback if self.is_fallback else str(source)
        self.bos_token = bos_token
        self.eos_token = eos_token
        self._variables = {"bos_token": bos_token, "eos_token": eos_token, **dict(special_tokens or {})}
        try:
            self._template = _environment().from_string(self.source)
        except TemplateError as exc:
            raise ChatTemplateError(
                f"The model's chat template does not compile ({type(exc).__name__}: {exc}). The template in "
                f"the GGUF file is broken: use another GGUF of this model, or pass a template of your own."
            ) from exc

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> ChatTemplate:
        """The template of GGUF metadata, with its BOS/EOS/UNK/PAD token strings as variables."""
        tokens = meta.get("tokenizer.ggml.tokens") or []

        def token(key: str) -> str | None:
            index = meta.get(f"tokenizer.ggml.{key}")
            return str(tokens[int(index)]) if index is not None and 0 <= int(index) < len(tokens) else None

        extra = {name: text for name, key in (("unk_token", "unknown_token_id"), ("pad_token", "padding_token_id"))
                 if (text := token(key)) is not None}
        source = meta.get("tokenizer.chat_template")
        return cls(source if isinstance(source, str) else None, token("bos_token_id") or "",
                   token("eos_token_id") or "", extra, fallback_source(tokens))

    @classmethod
    def from_gguf(cls, gguf_file: GGUFFile) -> ChatTemplate:
        """The template of a `GGUFFile`."""
        return cls.from_metadata(gguf_file.metadata)

    def render(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True, **variables: Any
    ) -> str:
        """The prompt text for `messages` (a list of {'role', 'content'} dicts).

        add_generation_prompt: end with the header of an assistant turn, so the model
        answers. Extra keyword variables (e.g. tools=[...]) are passed to the template.
        Raises ChatTemplateError when the template fails or tries something unsafe.
        """
        context = {
            **self._variables,
            **_plain(variables, "template variables"),
            "messages": _plain_messages(messages),
            "add_generation_prompt": bool(add_generation_prompt),
        }
        context.setdefault("tools", None)
        context.setdefault("documents", None)
        try:
            return self._collect(self._template.generate(context))
        except SecurityError as exc:
            raise ChatTemplateError(
                f"The model's chat template tried something the sandbox forbids ({exc}); nothing was run. "
                f"The template in this GGUF file is unsafe or broken: use another GGUF of this model."
            ) from exc
        except ChatTemplateError:
            raise
        except Exception as exc:  # TemplateError, and any error a template can provoke (TypeError, ...)
            raise ChatTemplateError(
                f"The model's chat template failed to render these messages ({type(exc).__name__}: {exc}). "
                f"Templates often insist on a role order (e.g. user/assistant alternating, system first): "
                f"check the conversation, or use another template."
            ) from exc

    @staticmethod
    def _collect(pieces: Any) -> str:
        out: list[str] = []
        total = 0
        for piece in pieces:
            total += len(piece)
            if total > MAX_OUTPUT_CHARS:
                raise ChatTemplateError(
                    f"The model's chat template produced more than {MAX_OUTPUT_CHARS} characters; rendering "
                    f"was stopped. The template is broken or hostile: use another GGUF of this model."
                )
            out.append(piece)
        return "".join(out)

    def __repr__(self) -> str:
        return f"ChatTemplate(is_fallback={self.is_fallback}, chars={len(self.source)})"
