"""Typed errors of wgllm.

Every error carries a one-paragraph message that says what was wrong and
what to do. `recoverable` tells a caller whether the engine is still usable
after the error (a bad request) or not (the engine or device is gone).
"""

from __future__ import annotations


def fmt_bytes(n: int) -> str:
    """Bytes for people, as every message gives them: '4.66 GiB', '98.4 MiB', '512 B'."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            v = n / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{n} B"


class WgllmError(Exception):
    """Base class of every wgllm error."""

    recoverable: bool = True

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- model files -----------------------------------------------------------


class ModelError(WgllmError):
    """Something is wrong with a model file or model name."""


class ModelNotFoundError(ModelError):
    """The model file or name does not exist."""


class InvalidModelFileError(ModelError):
    """The file is not a (complete, well-formed) GGUF file."""


class UnsupportedModelError(ModelError):
    """The GGUF is valid but uses an architecture or tensor type wgllm lacks."""


class ModelDownloadError(ModelError):
    """Fetching a model failed."""


class ChatTemplateError(ModelError):
    """The model's chat template failed to render (or tried something unsafe)."""


# --- requests --------------------------------------------------------------


class RequestError(WgllmError):
    """A request's parameters are invalid; the engine is fine."""


class ContextLengthExceededError(RequestError):
    """The prompt (plus what must be generated) does not fit in the context."""

    def __init__(self, n_tokens: int, n_ctx: int, what: str = "prompt"):
        self.n_tokens = n_tokens
        self.n_ctx = n_ctx
        super().__init__(
            f"The {what} is {n_tokens} tokens long, but the context holds only "
            f"{n_ctx} tokens. Shorten the {what}, or load the model with a larger "
            f"context (--ctx), if the model and memory allow it."
        )


# --- GPU ------------------------------------------------------------------


class GpuError(WgllmError):
    """A WebGPU problem."""

    recoverable = False


class NoAdapterError(GpuError):
    """No WebGPU adapter exists on this machine."""

    def __init__(self, detail: str = ""):
        extra = f" ({detail})" if detail else ""
        super().__init__(
            "No WebGPU adapter was found" + extra + ". wgllm needs a Vulkan, Metal "
            "or D3D12 driver. On Linux without a GPU driver, install the software "
            "adapter (Mesa lavapipe): `sudo apt-get install mesa-vulkan-drivers "
            "libvulkan1` (Debian/Ubuntu) or `sudo dnf install mesa-vulkan-drivers` "
            "(Fedora); then `wgllm devices` should list it."
        )


class AdapterNotFoundError(GpuError):
    """The adapter the user named does not exist."""

    recoverable = True


class FeatureMissingError(GpuError):
    """A required adapter feature (e.g. shader-f16) is missing."""

    recoverable = True


class KernelCompileError(GpuError):
    """A WGSL kernel failed to compile: a bug in wgllm or the driver."""


class GpuOutOfMemoryError(GpuError):
    """An allocation would exceed the adapter's memory budget (or the driver refused it)."""

    recoverable = True


class DeviceLostError(GpuError):
    """The GPU device failed while working: lost (driver reset or destroyed), out of
    memory, hung (a submission did not finish in time), or produced garbage.

    `reason` is one of "lost", "out-of-memory", "hang", "unknown"; `adapter` the
    adapter's summary; `detail` what the driver or wgllm saw. The engine's state
    (the conversation) is intact: a later call rebuilds the device. Recoverable.
    """

    recoverable = True
    REASONS = ("lost", "out-of-memory", "hang", "unknown")

    def __init__(self, reason: str, adapter: str, detail: str = "", *, message: str | None = None):
        self.reason = reason if reason in self.REASONS else "unknown"
        self.adapter = adapter
        self.detail = detail
        super().__init__(message or self._message())

    def _message(self) -> str:
        what = {
            "lost": "was lost (the driver reset it, or it was destroyed)",
            "out-of-memory": "ran out of memory",
            "hang": "hung: submitted work did not finish in time",
            "unknown": "failed",
        }[self.reason]
        seen = f" The driver said: {self.detail}." if self.detail else ""
        return (f"The GPU device on {self.adapter} {what}.{seen} The conversation is intact; "
                f"wgllm rebuilds the device on the next call. If this repeats, try another adapter "
                f"(--device), a smaller context (--ctx) or a smaller model, or see `wgllm doctor`.")


class WorkerCrashedError(GpuError):
    """The worker process that runs the model on the GPU died (a native crash in the driver,
    a signal) or stopped responding, and restarting it did not get the work done.

    `why` says how it ended ("killed by SIGSEGV", "no heartbeat for 30 s"); `adapter` the
    adapter it ran on; `restarts` how many workers were started for this call. The
    conversation is intact in the supervisor: the next call starts a fresh worker. Recoverable.
    """

    recoverable = True

    def __init__(self, why: str, adapter: str, restarts: int = 0, detail: str = ""):
        self.why, self.adapter, self.restarts, self.detail = why, adapter, restarts, detail
        tried = f" after {restarts} restart{'s' if restarts != 1 else ''}" if restarts else ""
        more = f" {detail}" if detail else ""
        super().__init__(
            f"The GPU worker process on {adapter} {why}{tried}, and the request could not be finished.{more} "
            f"The conversation is intact: the next call starts a fresh worker. If this repeats, the driver "
            f"crashes on this model: try another adapter (--device), another precision (--precision f32), "
            f"or see `wgllm doctor`.")


# --- planning -------------------------------------------------------------


class ModelTooLargeError(WgllmError):
    """No adapter has memory for the model at the requested context and precision.

    `needs` lists, per adapter, (adapter summary, bytes needed, bytes available);
    `alternatives` lists plain-sentence configurations that would fit."""

    def __init__(self, message: str, needs: list | None = None, alternatives: list | None = None):
        super().__init__(message)
        self.needs = needs or []
        self.alternatives = alternatives or []


# --- the OpenAI-compatible API ---------------------------------------------


class InvalidParameterError(RequestError):
    """One request field has a wrong type or an out-of-range value; `param` names it
    (dotted path, e.g. "messages.0.role"; None when the request as a whole is wrong)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class RequestTooLargeError(RequestError):
    """An HTTP request body is larger than the server accepts."""

    def __init__(self, size: int | None, limit: int):
        self.size = size
        self.limit = limit
        got = f"{size} bytes" if size is not None else "more than that"
        super().__init__(
            f"The request body is {got}, but this server accepts at most {limit} bytes. Send a shorter "
            f"request, or start the server with a larger --max-body."
        )


class ModelNotLoadedError(WgllmError):
    """The engine has no model loaded (after `unload()`); `load()` one first."""


class EngineBusyError(RequestError):
    """Another generation is running on this engine (or its stream was left open)."""

    def __init__(self) -> None:
        super().__init__(
            "Another generation is running on this engine. An Engine runs one generation at a time: "
            "finish (or close) the other stream first, or use wgllm.AsyncEngine or `wgllm serve`, "
            "which queue requests."
        )
