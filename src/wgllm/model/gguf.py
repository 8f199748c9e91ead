"""GGUF files: metadata and memory-mapped tensors, read through the `gguf` package.

Nothing here trusts the file: every tensor's type, shape, size and offset is
checked against the file before it is used, and any parse failure becomes an
`InvalidModelFileError` with a plain message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFValueType

from wgllm.errors import InvalidModelFileError, ModelNotFoundError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a GGUF file, data memory-mapped (never copied here)."""

    name: str
    ggml_type: GGMLQuantizationType
    shape: tuple[int, ...]  # ggml order: shape[0] is the contiguous (row) length
    data: np.ndarray  # uint8 [n_bytes], a view into the file

    @property
    def n_bytes(self) -> int:
        return int(self.data.nbytes)

    @property
    def type_name(self) -> str:
        return self.ggml_type.name

    @property
    def n_rows(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1

    @property
    def row_len(self) -> int:
        return int(self.shape[0])


def tensor_nbytes(ggml_type: GGMLQuantizationType, shape: tuple[int, ...]) -> int:
    """Bytes a tensor of this type and shape takes in GGUF (ggml block layout)."""
    block, type_size = GGML_QUANT_SIZES[ggml_type]
    if shape[0] % block:
        raise ValueError(f"row length {shape[0]} is not a multiple of the {block}-element block")
    n = int(np.prod(shape, dtype=np.int64))
    return n // block * type_size


class GGUFFile:
    """A parsed GGUF file: `metadata` (key -> python value) and `tensors` (name -> TensorInfo)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        _check_file(self.path)
        try:
            reader = GGUFReader(self.path, "r")
        except Exception as exc:  # the gguf package raises many kinds
            raise _invalid(self.path, f"it could not be parsed ({type(exc).__name__}: {exc})") from exc
        self.metadata: dict[str, Any] = _read_metadata(reader, self.path)
        self.tensors: dict[str, TensorInfo] = _read_tensors(reader, self.path)
        self.n_bytes = self.path.stat().st_size

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise _invalid(self.path, "it has no general.architecture key")
        return arch

    def arch_get(self, key: str, default: Any = None) -> Any:
        """Metadata key under the architecture's prefix, e.g. `block_count`."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, arch={self.metadata.get('general.architecture')!r}, tensors={len(self.tensors)})"


def _invalid(path: Path, why: str) -> InvalidModelFileError:
    return InvalidModelFileError(
        f"'{path}' is not a usable GGUF model file: {why}. If it was downloaded, the "
        f"download may be incomplete or corrupt: delete it and fetch it again "
        f"(`wgllm pull`), or pass the path of a valid .gguf file."
    )


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelNotFoundError(
            f"The model file '{path}' does not exist. Check the path, or use a model "
            f"name from `wgllm models` (fetch one with `wgllm pull NAME`)."
        )
    if not path.is_file():
        raise _invalid(path, "it is not a regular file")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        raise _invalid(path, f"it does not start with the GGUF magic bytes (found {head!r})")


def _field_value(field) -> Any:
    types = field.types
    if types and types[0] == GGUFValueType.ARRAY and len(types) > 1 and types[1] == GGUFValueType.STRING:
        return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]
    return field.contents()


def _read_metadata(reader: GGUFReader, path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            meta[key] = _field_value(field)
        except Exception as exc:
            raise _invalid(path, f"metadata key '{key}' is malformed ({exc})") from exc
    return meta


def _read_tensors(reader: GGUFReader, path: Path) -> dict[str, TensorInfo]:
    size = path.stat().st_size
    out: dict[str, TensorInfo] = {}
    for t in reader.tensors:
        try:
            gtype = GGMLQuantizationType(int(t.tensor_type))
            shape = tuple(int(d) for d in t.shape)
            expected = tensor_nbytes(gtype, shape)
        except (ValueError, KeyError) as exc:
            raise _invalid(path, f"tensor '{t.name}' has an invalid type or shape ({exc})") from exc
        start = int(t.data_offset)
        if start < 0 or start + expected > size or int(t.n_bytes) != expected:
            raise _invalid(
                path,
                f"tensor '{t.name}' needs bytes {start}..{start + expected} but the file has "
                f"{size} bytes (truncated?)",
            )
        data = np.asarray(t.data)
        data = data.reshape(-1).view(np.uint8)
        if data.nbytes != expected:
            raise _invalid(path, f"tensor '{t.name}' data is {data.nbytes} bytes, expected {expected}")
        out[t.name] = TensorInfo(t.name, gtype, shape, data)
    return out
