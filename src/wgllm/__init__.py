"""wgllm: a WebGPU LLM runtime for Python.

`wgllm.Engine` and `wgllm.AsyncEngine` (OpenAI-shaped chat and text
completions) are imported on first use, so `import wgllm` stays light.
"""

from typing import Any

__all__ = ["Engine", "AsyncEngine"]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from wgllm.api.engine import Engine

        return Engine
    if name == "AsyncEngine":
        from wgllm.api.async_engine import AsyncEngine

        return AsyncEngine
    raise AttributeError(f"module 'wgllm' has no attribute {name!r}")
