"""GGUF files: metadata and memory-mapped tensors.

The header is parsed here (`Header`), not with `gguf.GGUFReader`: that reader
builds a numpy view per part of every field, which took 2 s for the 49k-token
vocabulary of SmolLM2 on a 2-core machine, most of `wgllm run`'s start-up; this
parser reads the same header in 55 ms (tests compare the two on real and
synthetic files). `read_header` + `read_tensors` serve listings (`wgllm models`),
which decode only a few keys. The `gguf` package still provides the type tables.

Nothing here trusts the file: every length, count, type, shape, size and offset
is checked against the file before it is used, and any parse failure becomes an
`InvalidModelFileError` with a plain message.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

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
        self._map = _map(self.path)
        head = _parse(self._map, self.path)
        self.metadata: dict[str, Any] = head.metadata
        self.tensors: dict[str, TensorInfo] = read_tensors(head)
        self.n_bytes = int(self._map.nbytes)

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


_SCALARS = {  # GGUFValueType -> struct format
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}
_ARRAYS = {t: np.dtype(f) for t, f in _SCALARS.items() if t != GGUFValueType.BOOL}


def read_header(path: str | os.PathLike, keys: frozenset[str] | None = None) -> "Header":
    """The header of the GGUF file at `path` (tensor data untouched). keys: the metadata keys
    to decode (None: all); the values of the others are skipped unread, which makes listing a
    cache of models fast. Raises ModelNotFoundError / InvalidModelFileError."""
    path = Path(path)
    _check_file(path)
    return _parse(_map(path), path, keys)


def _map(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        try:
            return np.memmap(f, dtype=np.uint8, mode="r")
        except (ValueError, OSError, mmap.error) as exc:
            raise _invalid(path, f"it could not be mapped ({exc})") from exc


def _parse(data: np.ndarray, path: Path, keys: frozenset[str] | None = None) -> "Header":
    try:
        return Header(memoryview(data), path, keys)
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise _invalid(path, f"its header could not be parsed ({type(exc).__name__}: {exc})") from exc


class Header:
    """A GGUF header (version 2 or 3): `metadata`, tensor `infos` (name, shape, ggml type id,
    offset) and `data_start`. Every read is bounds-checked; counts are checked against the
    bytes that remain. With `keys`, only those metadata values are decoded."""

    def __init__(self, buf: memoryview, path: Path, keys: frozenset[str] | None = None):
        self.buf, self.path, self.off, self.n_bytes = buf, path, 4, len(buf)
        self.version = version = self._scalar(GGUFValueType.UINT32)
        if version not in (2, 3):
            raise _invalid(path, f"it is GGUF version {version}; wgllm reads versions 2 and 3")
        n_tensors = self._count(self._scalar(GGUFValueType.UINT64), 24, "tensors")
        n_kv = self._count(self._scalar(GGUFValueType.UINT64), 12, "metadata keys")
        self.metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = self._string()
            if keys is None or key in keys:
                self.metadata[key] = self._value(self._type())
            else:
                self._skip(self._type())
        self.infos = [self._tensor_info() for _ in range(n_tensors)]
        align = self.metadata.get("general.alignment", 32)
        if not isinstance(align, int) or align <= 0 or align & (align - 1):
            raise _invalid(path, f"general.alignment is {align!r}, not a power of two")
        self.data_start = -(-self.off // align) * align

    def _take(self, n: int) -> int:
        """Advance past n bytes; returns where they start."""
        if n < 0 or self.off + n > len(self.buf):
            raise _invalid(self.path, f"the header ends early (needs byte {self.off + n}, the file has "
                                      f"{len(self.buf)}; truncated?)")
        start, self.off = self.off, self.off + n
        return start

    def _count(self, n: int, min_bytes: int, what: str) -> int:
        if n * min_bytes > len(self.buf) - self.off:
            raise _invalid(self.path, f"it claims {n} {what}, more than the file can hold")
        return n

    def _scalar(self, t: GGUFValueType):
        fmt = _SCALARS[t]
        return struct.unpack_from(fmt, self.buf, self._take(struct.calcsize(fmt)))[0]

    def _type(self) -> GGUFValueType:
        raw = self._scalar(GGUFValueType.UINT32)
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise _invalid(self.path, f"a metadata value has unknown type {raw}") from None

    def _string(self) -> str:
        n = self._scalar(GGUFValueType.UINT64)
        start = self._take(n)
        return bytes(self.buf[start:start + n]).decode("utf-8", errors="replace")

    def _value(self, t: GGUFValueType) -> Any:
        if t == GGUFValueType.STRING:
            return self._string()
        if t != GGUFValueType.ARRAY:
            return self._scalar(t)
        et = self._type()
        n = self._count(self._scalar(GGUFValueType.UINT64), 1 if et in _SCALARS else 8, "array elements")
        if et in _ARRAYS:
            dt = _ARRAYS[et]
            start = self._take(n * dt.itemsize)
            return np.frombuffer(self.buf, dt, n, start).tolist()
        if et == GGUFValueType.BOOL:
            start = self._take(n)
            return [bool(b) for b in self.buf[start:start + n]]
        if et == GGUFValueType.STRING:
            return self._strings(n)
        return [self._value(et) for _ in range(n)]

    def _skip(self, t: GGUFValueType) -> None:
        """Step over a value without decoding it (string arrays: their lengths only)."""
        if t in _SCALARS:
            self._take(struct.calcsize(_SCALARS[t]))
        elif t == GGUFValueType.STRING:
            self._take(self._scalar(GGUFValueType.UINT64))
        else:
            et = self._type()
            n = self._count(self._scalar(GGUFValueType.UINT64), 1 if et in _SCALARS else 8, "array elements")
            if et in _SCALARS:
                self._take(n * struct.calcsize(_SCALARS[et]))
            else:
                for _ in range(n):
                    self._skip(et)

    def _strings(self, n: int) -> list[str]:
        """n strings (u64 length + bytes each): the vocabulary arrays, in one tight loop."""
        buf, off, end, out = self.buf, self.off, len(self.buf), []
        unpack = struct.Struct("<Q").unpack_from
        for _ in range(n):
            if off + 8 > end:
                self.off = off
                self._take(8)
            (ln,) = unpack(buf, off)
            off += 8
            if off + ln > end:
                self.off = off
                self._take(ln)
            out.append(bytes(buf[off:off + ln]).decode("utf-8", errors="replace"))
            off += ln
        self.off = off
        return out

    def _tensor_info(self) -> tuple[str, tuple[int, ...], int, int]:
        name = self._string()
        n_dims = self._scalar(GGUFValueType.UINT32)
        if not 1 <= n_dims <= 4:
            raise _invalid(self.path, f"tensor '{name}' has {n_dims} dimensions (1..4 allowed)")
        shape = tuple(self._scalar(GGUFValueType.UINT64) for _ in range(n_dims))
        return name, shape, self._scalar(GGUFValueType.UINT32), self._scalar(GGUFValueType.UINT64)


def read_tensors(head: Header) -> dict[str, TensorInfo]:
    """The tensors of a parsed header, each checked to lie inside the file (data: views of it)."""
    path, size = head.path, head.n_bytes
    data = np.frombuffer(head.buf, np.uint8)
    out: dict[str, TensorInfo] = {}
    for name, shape, raw_type, offset in head.infos:
        try:
            gtype = GGMLQuantizationType(raw_type)
            expected = tensor_nbytes(gtype, shape)
        except (ValueError, KeyError) as exc:
            raise _invalid(path, f"tensor '{name}' has an invalid type or shape ({exc})") from exc
        start = head.data_start + offset
        if start + expected > size:
            raise _invalid(
                path,
                f"tensor '{name}' needs bytes {start}..{start + expected}, past the end of the file "
                f"({size} bytes; truncated?)",
            )
        if name in out:
            raise _invalid(path, f"tensor '{name}' is listed twice")
        out[name] = TensorInfo(name, gtype, shape, data[start:start + expected])
    return out
