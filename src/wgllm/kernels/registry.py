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

The special key `WTEX` = 1: the kernel's weights (binding 0, `W`) are a weight texture
(gpu/device.py Device.texels) instead of a storage buffer: the declaration of `W` becomes a
`texture_2d<u32>` and every `W[i]` a call of a load function (see `texel_weights`), so each
kernel's source is written once, for buffers.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from wgllm.gpu.dispatch import TEXEL_WIDTH

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
    if values.get("WTEX") == "1":
        src = texel_weights(src)
    if values.get("ACT") == "f16":
        src = "enable f16;\n" + src
    return src


_W_DECL = re.compile(r"@group\(0\) @binding\(0\) var<storage, read> W: array<(u32|vec4<u32>)>;")
_TEXEL_LOAD = {
    # word i of the weights is lane i % 4 of texel i / 4; vec4 i is texel i (rows of TEXEL_WIDTH texels)
    "u32": "fn w_at(i: u32) -> u32 {{\n    let t = i >> 2u;\n"
           "    return textureLoad(WT, vec2<u32>(t & {m}u, t >> {s}u), 0)[i & 3u];\n}}",
    "vec4<u32>": "fn w_at(i: u32) -> vec4<u32> {{\n"
                 "    return textureLoad(WT, vec2<u32>(i & {m}u, i >> {s}u), 0);\n}}",
}


def texel_weights(src: str) -> str:
    """`src` reading its weights from a weight texture: W's declaration replaced by the texture's and
    a load function `w_at`, each `W[expr]` (brackets balanced) by `w_at(expr)`."""
    m = _W_DECL.search(src)
    if m is None:
        raise ValueError("WTEX=1 but the kernel declares no storage array W at binding 0")
    load = _TEXEL_LOAD[m.group(1)].format(m=TEXEL_WIDTH - 1, s=TEXEL_WIDTH.bit_length() - 1)
    return src[:m.start()] + "@group(0) @binding(0) var WT: texture_2d<u32>;\n" + load + _w_calls(src[m.end():])


def _w_calls(src: str) -> str:
    """Every `W[expr]` of src as `w_at(expr)`, nested ones too."""
    out, i = [], 0
    for hit in re.finditer(r"\bW\[", src):
        if hit.start() < i:
            continue  # inside an index rewritten below
        depth, j = 1, hit.end()
        while depth:
            depth += {"[": 1, "]": -1}.get(src[j], 0)
            j += 1
        out += [src[i:hit.start()], "w_at(", _w_calls(src[hit.end():j - 1]), ")"]
        i = j
    return "".join(out) + src[i:]
