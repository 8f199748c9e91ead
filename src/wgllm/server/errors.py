"""OpenAI-style error bodies: {"error": {"message", "type", "param", "code"}}.

A client's mistake is a 4xx (400 bad request, 401 no or wrong key, 404 no
such model or route, 405 wrong method, 413 body too large); a failure of the
engine or the device is a 5xx (503 while it can recover or no model is
loaded, 500 otherwise).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from wgllm.errors import (
    ChatTemplateError,
    ContextLengthExceededError,
    EngineBusyError,
    InvalidParameterError,
    ModelNotFoundError,
    ModelNotLoadedError,
    RequestError,
    RequestTooLargeError,
    WgllmError,
)

log = logging.getLogger("wgllm.server")


class AuthError(Exception):
    """Missing or wrong API key."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def status_and_body(exc: BaseException) -> tuple[int, dict]:
    """The HTTP status and OpenAI error body for an exception."""
    if isinstance(exc, AuthError):
        return 401, error_body(exc.message, "invalid_request_error", code="invalid_api_key")
    if isinstance(exc, RequestTooLargeError):
        return 413, error_body(exc.message, "invalid_request_error", code="request_too_large")
    if isinstance(exc, ContextLengthExceededError):
        param = getattr(exc, "param", "messages")
        return 400, error_body(exc.message, "invalid_request_error", param, "context_length_exceeded")
    if isinstance(exc, InvalidParameterError):
        return 400, error_body(exc.message, "invalid_request_error", exc.param, "invalid_value")
    if isinstance(exc, ChatTemplateError):
        return 400, error_body(exc.message, "invalid_request_error", "messages", "invalid_messages")
    if isinstance(exc, ModelNotFoundError):
        return 404, error_body(exc.message, "invalid_request_error", "model", "model_not_found")
    if isinstance(exc, EngineBusyError):
        return 429, error_body(exc.message, "rate_limit_error", code="engine_busy")
    if isinstance(exc, RequestError):
        return 400, error_body(exc.message, "invalid_request_error")
    if isinstance(exc, ModelNotLoadedError):
        return 503, error_body(exc.message, "server_error", code="model_not_loaded")
    if isinstance(exc, WgllmError):
        return (503 if exc.recoverable else 500), error_body(exc.message, "server_error", code=type(exc).__name__)
    log.exception("internal error", exc_info=exc)
    return 500, error_body(f"Internal server error ({type(exc).__name__}). This is a bug in wgllm: please "
                           f"report it with the server's log.", "server_error", code="internal_error")


def install(app: FastAPI) -> None:
    """Exception handlers that turn every error into an OpenAI error body."""

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        status, body = status_and_body(exc)
        return JSONResponse(body, status_code=status)

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        msg = f"{exc.detail}: {request.method} {request.url.path}. The API lives under /v1 (chat/completions, " \
              f"completions, models), plus /health and /metrics."
        return JSONResponse(error_body(msg, "invalid_request_error", code=code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(f"Invalid request: {exc.errors()[:1]}", "invalid_request_error"),
                            status_code=400)

    app.add_exception_handler(WgllmError, on_error)
    app.add_exception_handler(AuthError, on_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_error)
