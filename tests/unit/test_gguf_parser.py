"""Our GGUF header parser (wgllm.model.gguf) against the gguf package's GGUFReader,
and its refusals of malformed files."""

import numpy as np
import pytest
from gguf import GGUFReader, GGUFValueType

from wgllm.errors import InvalidModelFileError
from wgllm.model.gguf import GGUFFile
from wgllm.testing import synth


def _reader_view(path):
    r = GGUFReader(str(path))
    meta = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        if f.types[0] == GGUFValueType.ARRAY and f.types[1] == GGUFValueType.STRING:
            meta[k] = [bytes(f.parts[i]).decode("utf-8", errors="replace") for i in f.data]
        else:
            meta[k] = f.contents()
    return meta, {t.name: np.asarray(t.data).reshape(-1).view(np.uint8) for t in r.tensors}


def _check_same(path):
    g = GGUFFile(path)
    meta, tensors = _reader_view(path)
    assert g.metadata == meta
    assert set(g.tensors) == set(tensors)
    for name, data in tensors.items():
        assert np.array_equal(g.tensors[name].data, data), name


@pytest.mark.parametrize("types", ["F32", "Q4_1", "Q8_0"])
def test_matches_gguf_reader_on_synthetic_files(tmp_path, types):
    path = tmp_path / "m.gguf"
    synth.write_llama_gguf(path, "tiny-gqa",
                           types=types, seed=1, fast=True)
    _check_same(path)


def test_matches_gguf_reader_on_the_real_model(smollm2_path):
    _check_same(smollm2_path)


def test_truncated_files_are_refused(tmp_path):
    src = tmp_path / "m.gguf"
    synth.write_llama_gguf(src, "tiny-gqa", types="F32", seed=1, fast=True)
    raw = src.read_bytes()
    for cut in (8, 30, 200, len(raw) // 2, len(raw) - 1):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(raw[:cut])
        with pytest.raises(InvalidModelFileError):
            GGUFFile(bad)


def test_absurd_counts_are_refused(tmp_path):
    bad = tmp_path / "huge.gguf"
    bad.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (1 << 60).to_bytes(8, "little") + (0).to_bytes(8, "little"))
    with pytest.raises(InvalidModelFileError, match="claims"):
        GGUFFile(bad)
