"""wgllm's tokenizer against llama.cpp's own, on every pre-tokenizer name llama.cpp knows.

The expected ids were recorded from llama.cpp (llama-cpp-python, vocab_only) by
scripts/llama_tokenizer_fixtures.py into data/llama_cpp_tokenizer.json (its
"about" entry has the version, date and command). The vocabularies are rebuilt
here from tests/model/llama_cpp_vocabs.py (byte-level and raw-UTF-8 BPE, in which
every pre-tokenizer piece shows as one token; their digests must equal the
recorded ones), one per pre-tokenizer name llama.cpp knows, and from the
SentencePiece pieces stored in the fixture; the real SmolLM2 and Gemma 3 files
are compared when the model cache has the recorded ones.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path

import pytest

from tests.model import llama_cpp_vocabs as V
from wgllm.errors import UnsupportedModelError
from wgllm.model import tokenizer as T
from wgllm.model.gguf import GGUFFile
from wgllm.model.tokenizer import PRE_TOKENIZERS, Tokenizer

FIXTURE = json.loads((Path(__file__).parent / "data" / "llama_cpp_tokenizer.json").read_text())
RESULTS = FIXTURE["results"]
CASES = [tuple(c) for c in FIXTURE["cases"]]


@pytest.fixture(scope="module")
def metas(tmp_path_factory) -> dict[str, dict]:
    """The fixture's vocabularies as GGUF metadata, keyed as in RESULTS.

    The per-name files differ from the 'pre:gpt-2' and 'pre:gemma4' ones only in
    tokenizer.ggml.pre, so those two are written and read, and the name is swapped in.
    """
    tmp = tmp_path_factory.mktemp("llama_cpp_vocabs")
    files = {**V.bpe_files(tmp, ["gpt-2", "gemma4"]), **V.spm_files(tmp, FIXTURE["spm_pieces"])}
    out = {key: dict(GGUFFile(path).metadata) for key, path in files.items()}
    for key in RESULTS:
        if key.startswith("pre:") and key not in out:
            name = key[4:]
            spec = PRE_TOKENIZERS.get(name)
            meta = dict(out["pre:gemma4" if spec is not None and not spec.byte_encode else "pre:gpt-2"])
            meta.pop("tokenizer.ggml.pre")
            out[key] = meta if name == "(none)" else {**meta, "tokenizer.ggml.pre": name}
    return out


def _expected(key: str) -> list:
    return FIXTURE["outputs"][RESULTS[key]["output"]]


def _mismatches(tok: Tokenizer, key: str) -> list[str]:
    bad = []
    for (text, add_special, parse_special), want in zip(CASES, _expected(key)):
        if want == ["abort"]:  # llama.cpp dies on this one (GGML_ASSERT); nothing to match
            continue
        got = tok.encode(text, add_special=add_special, parse_special=parse_special)
        if got != want:
            bad.append(f"{text!r} add_special={add_special} parse_special={parse_special}: {got} != {want}")
    return bad


def test_fixture_is_for_these_cases_and_vocabularies():
    assert CASES == [tuple(c) for c in V.CASES]
    assert FIXTURE["about"]["bpe_vocab"] == V.vocab_digest(*V.byte_bpe_vocab())
    assert FIXTURE["about"]["raw_vocab"] == V.vocab_digest(*V.raw_bpe_vocab())
    assert FIXTURE["about"]["substring_max"] == V.SUBSTRING_MAX


def test_every_llama_cpp_name_is_recorded():
    names = {k[4:] for k in RESULTS if k.startswith("pre:")}
    assert set(PRE_TOKENIZERS) <= names
    assert len(PRE_TOKENIZERS) >= 90


@pytest.mark.parametrize("key", [k for k in RESULTS if "output" in RESULTS[k] and not k.startswith("real:")])
def test_matches_llama_cpp(metas, key):
    tok = Tokenizer.from_metadata(metas[key])
    bad = _mismatches(tok, key)
    assert not bad, f"{key}: {len(bad)} of {len(CASES)} cases differ from llama.cpp:\n" + "\n".join(bad[:12])


@pytest.mark.parametrize("key", [k for k in RESULTS if "error" in RESULTS[k]])
def test_refused_like_llama_cpp(metas, key):
    """llama.cpp refuses unknown pre-tokenizer names; so does wgllm, except its alias 'gpt2'."""
    if key == "pre:gpt2":
        tok = Tokenizer.from_metadata(metas[key])
        assert tok.pre == "gpt2" and not _mismatches(tok, "pre:gpt-2")
        return
    with pytest.raises(UnsupportedModelError, match="pre-tokenizer 'no-such-pre'"):
        Tokenizer.from_metadata(metas[key])


def test_read_from_the_file(tmp_path):
    """One name end to end, from a GGUF file written with it (the others swap the name in metadata)."""
    path = V.bpe_files(tmp_path, ["qwen35"])["pre:qwen35"]
    assert not _mismatches(Tokenizer.from_gguf(path), "pre:qwen35")


def test_missing_pre_tokenizer_is_default(metas):
    assert "tokenizer.ggml.pre" not in metas["pre:(none)"]
    assert not _mismatches(Tokenizer.from_metadata(metas["pre:(none)"]), "pre:default")


def test_pieces_are_observable(metas):
    """The vocabulary shows piece boundaries: pre-tokenizers that split differently give different ids."""
    outputs = {RESULTS[f"pre:{name}"]["output"] for name in ("gpt-2", "llama3", "qwen2", "qwen35", "deepseek-coder",
                                                             "tekken", "gpt-4o", "default", "smollm", "kimi-k2")}
    assert len(outputs) == 10
    # " (" is one piece for qwen35 and deepseek-coder's neighbours, two for the default rules.
    assert len(Tokenizer.from_metadata(metas["pre:qwen35"]).encode(" (")) == 1
    assert len(Tokenizer.from_metadata(metas["pre:default"]).encode(" (")) == 2


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _real(key: str, path: Path | None) -> Tokenizer:
    if path is None or not path.is_file() or _sha256(path) != RESULTS[key]["sha256"]:
        pytest.skip(f"the model cache has not the file {RESULTS[key]['file']} the fixture was recorded with")
    return Tokenizer.from_gguf(path)


def test_smollm2_matches_llama_cpp(smollm2_path):
    tok = _real("real:smollm2", smollm2_path)
    bad = _mismatches(tok, "real:smollm2")
    assert not bad, "\n".join(bad[:12])


def test_gemma3_matches_llama_cpp(gemma3_path):
    """Gemma 3's SentencePiece vocabulary (262k tokens, add_space_prefix false)."""
    tok = _real("real:gemma3", gemma3_path)
    bad = _mismatches(tok, "real:gemma3")
    assert not bad, "\n".join(bad[:12])


# --- the reported defects, spelled out -------------------------------------------------


def test_sentencepiece_spaces(metas):
    tok = Tokenizer.from_metadata(metas["spm:trained"])
    for text in (" ", " discards", "  hello"):  # the add_space_prefix space, then the text's own
        assert "".join(tok.id_to_token(i) for i in tok.encode(text)) == "▁" + text.replace(" ", "▁")
    no_prefix = Tokenizer.from_metadata(metas["spm:trained-prefix-false"])
    assert "".join(no_prefix.id_to_token(i) for i in no_prefix.encode(" discards")) == "▁discards"


def test_qwen35_keeps_space_paren(metas):
    tok = Tokenizer.from_metadata(metas["pre:qwen35"])
    assert [tok.id_to_token(i) for i in tok.encode(" (")] == ["Ġ("]


# --- Unicode tables ------------------------------------------------------------------------


def test_unicode_categories_match_llama_cpp():
    """Our codepoint flags (unicodedata patched to Unicode 15.1) equal llama.cpp's unicode-data.cpp."""
    if unicodedata.unidata_version > "15.1.0":
        pytest.skip(f"Python's Unicode {unicodedata.unidata_version} is newer than llama.cpp's 15.1")
    ranges = FIXTURE["unicode"]["ranges"]
    bad = []
    for (start, flags), (end, _) in zip(ranges, ranges[1:]):
        for cp in range(start, end):
            category = T._category(chr(cp))
            ours = T._F_UNDEFINED if category == "Cn" else T._CATEGORY_FLAGS[category[0]]
            if ours != flags & T._F_CATEGORIES:
                bad.append(hex(cp))
    assert not bad, f"{len(bad)} codepoints differ, e.g. {bad[:10]}"
    assert T._WHITESPACE == {chr(c) for c in FIXTURE["unicode"]["whitespace"]}
