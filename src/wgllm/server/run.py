"""Run the server with uvicorn: `serve` (blocking, for `wgllm serve`) and `start_in_thread`
(a background server on a free port, for embedding and tests)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn

from wgllm.api.async_engine import AsyncEngine
from wgllm.server.app import DEFAULT_MAX_BODY, create_app


def _config(app: Any, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="off",
                          timeout_graceful_shutdown=5)


def serve(engine: AsyncEngine, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          max_body: int = DEFAULT_MAX_BODY, log_level: str = "info", **names: Any) -> None:
    """Serve `engine` until interrupted (Ctrl-C); `names`: create_app's aliases / strict_model_names."""
    app = create_app(engine, api_key=api_key, max_body=max_body, **names)
    uvicorn.Server(_config(app, host, port, log_level)).run()


@dataclass
class RunningServer:
    """A server started by `start_in_thread`; `stop()` shuts it down."""

    server: uvicorn.Server
    thread: threading.Thread
    url: str  # e.g. http://127.0.0.1:54321

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_in_thread(engine: AsyncEngine, *, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
                    max_body: int = DEFAULT_MAX_BODY, log_level: str = "warning", **names: Any) -> RunningServer:
    """Start a server in a daemon thread (port 0: a free port) and wait until it listens."""
    app = create_app(engine, api_key=api_key, max_body=max_body, **names)
    server = uvicorn.Server(_config(app, host, port, log_level))
    thread = threading.Thread(target=server.run, name="wgllm-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    sock = server.servers[0].sockets[0].getsockname()
    return RunningServer(server, thread, f"http://{sock[0]}:{sock[1]}")
