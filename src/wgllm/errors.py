"""Typed errors of wgllm.

Every error carries a one-paragraph message that says what was wrong and
what to do. `recoverable` tells a caller whether the engine is still usable
after the error (a bad request) or not (the engine or device is gone).
"""

from __future__ import annotations


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


# --- planning -------------------------------------------------------------


class ModelTooLargeError(WgllmError):
    """No adapter has memory for the model at the requested context and precision.

    `needs` lists, per adapter, (adapter summary, bytes needed, bytes available);
    `alternatives` lists plain-sentence configurations that would fit."""

    def __init__(self, message: str, needs: list | None = None, alternatives: list | None = None):
        super().__init__(message)
        self.needs = needs or []
        self.alternatives = alternatives or []
