"""Where a Device gets a kernel's WGSL text: the kernels layer provides it, gpu/ imports nothing above.

`wgllm.kernels` registers its source function (kernels/registry.py:
`specialise(name, consts)`, package data with includes and placeholders)
when it is imported; every dispatch is built by a kernels builder, so the
function is there whenever a Device compiles a pipeline.
"""

from __future__ import annotations

from typing import Callable

_source: Callable[[str, dict], str] | None = None


def provide(fn: Callable[[str, dict], str]) -> None:
    """Set the function that returns kernel `name`'s WGSL specialised with `consts`."""
    global _source
    _source = fn


def specialise(name: str, consts: dict) -> str:
    """The WGSL of kernel `name` specialised with `consts` (from the provided source function)."""
    if _source is None:
        raise RuntimeError("no kernel sources: import wgllm.kernels before building dispatches")
    return _source(name, consts)
