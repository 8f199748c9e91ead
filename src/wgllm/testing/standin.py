"""Header-faithful GGUF stand-ins for planning tests: a real model's tensor list, no real data.

`write_standin(path, layout)` writes a GGUF whose header (metadata and
tensor infos) is what a real file of that model would hold, and whose tensor
data is a hole: the file is extended to its full size with `truncate`, so
a Llama-3-8B stand-in reads as 4.6 GB but takes a few kilobytes of disk
(on file systems with sparse files). Opening it with `GGUFFile` and reading
`ModelLayout.from_gguf` touches only the header. Only gguf and numpy needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np

from wgllm.plan.layout import ModelLayout

FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q4_K_M": 15}


def write_standin(path: str | os.PathLike, layout: ModelLayout, *, rope_base: float = 500000.0,
                  rms_eps: float = 1e-5) -> Path:
    """Write the stand-in GGUF of `layout` at `path` (sparse data; see module doc); returns the path."""
    w = gguf.GGUFWriter(str(path), layout.arch)
    _metadata(w, layout, rope_base, rms_eps)
    for t in layout.tensors:  # numpy order (rows first) = reversed ggml order
        w.add_tensor_info(t.name, tuple(reversed(t.shape)), np.dtype(np.float32), t.nbytes,
                          raw_dtype=gguf.GGMLQuantizationType[t.ggml_type])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    data_start = gguf.GGUFWriter.ggml_pad(w.fout[0].tell(), w.data_alignment)
    w.close()
    size = data_start + sum(gguf.GGUFWriter.ggml_pad(t.nbytes, w.data_alignment) for t in layout.tensors)
    os.truncate(path, size)
    return Path(path)


def _metadata(w: gguf.GGUFWriter, L: ModelLayout, rope_base: float, rms_eps: float) -> None:
    w.add_name(L.name)
    if L.quantization in FILE_TYPES:
        w.add_file_type(FILE_TYPES[L.quantization])
    w.add_vocab_size(L.n_vocab)
    w.add_context_length(L.n_ctx_train)
    w.add_embedding_length(L.dim)
    w.add_block_count(L.n_layers)
    w.add_feed_forward_length(L.ffn_dim)
    w.add_head_count(L.n_heads)
    w.add_head_count_kv(L.n_kv_heads)
    w.add_key_length(L.head_dim)
    w.add_value_length(L.head_dim)
    w.add_rope_dimension_count(L.head_dim)
    w.add_rope_freq_base(rope_base)
    w.add_layer_norm_rms_eps(rms_eps)
