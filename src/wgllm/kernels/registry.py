"""WGSL kernel sources: loading, small templating, and compile-once caching.

A kernel file `NAME.wgsl` lives next to this module (package data). Two
template mechanisms, both resolved before compilation:

* `//!include OTHER` on a line of its own pastes `OTHER.wgsl` (once); OTHER may
  contain `{{KEY}}` placeholders (a variant picked by a constant, e.g. code that
  needs a device feature and must not be compiled without it).
* `{{KEY}}` is replaced by the string value of specialisation constant KEY.
  The special key `ACT` ("f32" or "f16") names the activation storage type;
  when it is "f16" the source is prefixed with `enable f16;`.

A placeholder left unresolved is an error, never a silent default.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

_PLACEHOLDER = re.compile(r"\{\{([A-Z0-9_]+)\}\}")
_INCLUDE = re.compile(r"^//!include\s+([\w{}]+)\s*$", re.M)


@lru_cache(maxsize=None)
def load_source(name: str) -> str:
    """The raw text of kernel file `name`.wgsl."""
    return resources.files("wgllm.kernels").joinpath(f"{name}.wgsl").read_text("utf-8")


def _expand_includes(src: str, seen: set[str], values: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        inc = _PLACEHOLDER.sub(lambda k: values[k.group(1)], m.group(1))
        if inc in seen:
            return ""
        seen.add(inc)
        return _expand_includes(load_source(inc), seen, values)

    return _INCLUDE.sub(repl, src)


def specialise(name: str, consts: dict[str, object]) -> str:
    """Kernel `name` with includes pasted and every `{{KEY}}` replaced from `consts`."""
    values = {k: str(v) for k, v in consts.items()}
    src = _expand_includes(load_source(name), {name}, values)

    def repl(m: re.Match) -> str:
        key = m.group(1)
        if key not in values:
            raise KeyError(f"kernel {name}: no value for placeholder {{{{{key}}}}}")
        return values[key]

    src = _PLACEHOLDER.sub(repl, src)
    if values.get("ACT") == "f16":
        src = "enable f16;\n" + src
    return src
