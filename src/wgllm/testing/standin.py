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

from wgllm.kernels.qtypes import FTYPES
from wgllm.plan.layout import ModelLayout, hparams
from wgllm.testing.synth import write_metadata

def write_standin(path: str | os.PathLike, layout: ModelLayout, *, rope_base: float = 500000.0,
                  rms_eps: float = 1e-5, metadata: dict | None = None) -> Path:
    """Write the stand-in GGUF of `layout` at `path` (sparse data; see module doc); returns the path.
    `metadata`: the model's own `{arch}.*` keys (e.g. a catalog entry's), written over the derived ones."""
    w = gguf.GGUFWriter(str(path), layout.arch)
    _metadata(w, layout, rope_base, rms_eps, metadata or {})
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


def _metadata(w: gguf.GGUFWriter, L: ModelLayout, rope_base: float, rms_eps: float, own: dict) -> None:
    c = L.config
    w.add_name(L.name)
    if L.quantization in FTYPES:
        w.add_file_type(FTYPES[L.quantization][0])
    md = hparams(c.arch, n_vocab=c.n_vocab, dim=c.dim, n_layers=c.n_layers, n_heads=c.n_heads,
                 n_kv_heads=c.n_kv_heads, ffn_dim=c.ffn_dim, ctx=c.n_ctx_train, rope_base=rope_base,
                 rms_eps=rms_eps, head_dim=c.head_dim)
    md[f"{c.arch}.attention.key_length"] = md[f"{c.arch}.attention.value_length"] = c.head_dim
    md.update({k: v for k, v in own.items() if k.startswith(f"{c.arch}.")})
    write_metadata(w, md)
