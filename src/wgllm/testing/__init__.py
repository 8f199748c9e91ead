"""Testing tools: random-weight GGUF models (`synth`) and reference outputs (`oracle`).

`synth` needs only gguf and numpy; `oracle.reference_*` also need torch and transformers,
imported on first use.
"""

from .synth import SHAPES, WEIGHT_TYPES, LlamaShape, tensor_plan, write_llama_gguf

__all__ = ["SHAPES", "WEIGHT_TYPES", "LlamaShape", "tensor_plan", "write_llama_gguf"]
