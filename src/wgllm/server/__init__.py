"""`wgllm serve`: an OpenAI-compatible HTTP server (FastAPI + uvicorn) over an `AsyncEngine`."""

from wgllm.server.app import DEFAULT_MAX_BODY, create_app
from wgllm.server.run import RunningServer, serve, start_in_thread

__all__ = ["DEFAULT_MAX_BODY", "RunningServer", "create_app", "serve", "start_in_thread"]
