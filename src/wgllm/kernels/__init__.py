"""WGSL kernels and their Python builders; importing this package gives devices its sources."""

from wgllm.gpu import shaders as _shaders
from wgllm.kernels import registry as _registry

_shaders.provide(_registry.specialise)
