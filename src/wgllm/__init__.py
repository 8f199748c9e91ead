"""wgllm: a WebGPU LLM runtime for Python.

`wgllm.Engine` and `wgllm.AsyncEngine` (OpenAI-shaped chat and text
completions) are imported on first use, so `import wgllm` stays light.

Importing wgllm sets XDG_RUNTIME_DIR when it is unset (see
`default_runtime_dir`): without it the Vulkan loader's window-system drivers
print "XDG_RUNTIME_DIR is invalid or not set" once per adapter probe.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

__all__ = ["Engine", "AsyncEngine", "__version__"]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("wgllm")
    except Exception:  # noqa: BLE001 - not installed (a source tree on sys.path)
        return "0+unknown"


def default_runtime_dir() -> str:
    """A private runtime directory for this user: `<temp dir>/wgllm-runtime-<uid>`, mode 0700,
    created if needed. Falls back to the temp dir itself when that directory cannot be made
    private (it exists with another owner or mode, or is a link)."""
    tmp = tempfile.gettempdir()
    uid = os.getuid() if hasattr(os, "getuid") else None
    path = os.path.join(tmp, f"wgllm-runtime-{uid if uid is not None else 'user'}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return tmp
    try:
        st = os.lstat(path)
    except OSError:
        return tmp
    import stat

    private = stat.S_ISDIR(st.st_mode) and (st.st_mode & 0o077) == 0 and (uid is None or st.st_uid == uid)
    return path if private else tmp


def ensure_runtime_dir() -> None:
    """Set XDG_RUNTIME_DIR to `default_runtime_dir()` when it is unset or empty (before wgpu loads)."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        os.environ["XDG_RUNTIME_DIR"] = default_runtime_dir()


ensure_runtime_dir()


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from wgllm.api.engine import Engine

        return Engine
    if name == "AsyncEngine":
        from wgllm.api.async_engine import AsyncEngine

        return AsyncEngine
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'wgllm' has no attribute {name!r}")
