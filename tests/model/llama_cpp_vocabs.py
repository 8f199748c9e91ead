"""Vocabularies and texts for comparing wgllm's tokenizer with llama.cpp's.

Shared by tests/model/test_pretokenizers.py and scripts/llama_tokenizer_fixtures.py,
which records llama.cpp's token ids for them in tests/model/data/llama_cpp_tokenizer.json.

The byte-level BPE vocabulary makes every pre-tokenizer piece visible: it holds
every substring (up to SUBSTRING_MAX characters, in the byte alphabet) of the
test texts, with every split of each as a merge, ranked shortest first. Any piece
of up to SUBSTRING_MAX characters then merges into exactly one token, so the
token boundaries are the piece boundaries; a different split gives different ids.
The raw-UTF-8 vocabulary does the same for the gemma4-style pre-tokenizers (text
kept as UTF-8, spaces written as U+2581, <0xNN> byte tokens).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import gguf
import numpy as np

SUBSTRING_MAX = 8

TEXTS = [
    "", " ", "  ", "   ", "\n", "\n\n", "\n\n\n", "\t", "\t x", " \n ", "a  b", "a\n\n b", "x \n\n  y", "\r\n",
    " hello", "  hello", "hello ", "hello  ", " discards", "Hello World", "hello world",
    "1", "12", "123", "1234", "12345", "1234567", "x1234567y", " 42", "3.14159", "1,000,000", "١٢٣٤ ۵۶",
    "日本語のテキスト", "中文测试，你好。", "한국어 텍스트", "Emoji 🤖👍🏽 ❤️ 🇺🇸 done", "👨‍👩‍👧",
    "def f(x):\n    return x + 1\n", "for (int i = 0; i < n; ++i) {\n\tx[i] = 0;\n}", "if (a) { b(); } // c",
    "I'm sure they'll say it's fine, don't you think? WE'VE SEEN IT. You'RE",
    " (", "a (b)", "f( x )", "((", " ...", "!!!", " ?!", "--- --", "a.b,c;d:e", "\"quoted\" 'single'",
    "Café naïve résumé", "e\u0301 combining", "\u00a0nbsp\u2003em\u200bzw", "ＦＵＬＬ ｗｉｄｔｈ",
    "MiXeD CaSe camelCaseWord HTTPServer", "<sentinel:12> IMGIMGABZ",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "a<|endoftext|>b", "<tool> x <tool>", "x<tool>",
    "  <|im_end|>  y", "<|fim_prefix|>code", "<s>hello</s> world", "<unk>the", "abc<tool>abc",
    "'sup dude, rock'n'roll l'homme", "abc12345", "中文english混合", "Hello\n\n\nWorld\r\n\r\n",
    "supercalifragilistic", "a supercalifragilistic word", "a  <mask>  b", "<|channel|>analysis<|end|>x<|return|>",
]
# Words in the vocabularies that no merge builds: whole only where llama.cpp ignores merges.
LONG_WORDS = ["supercalifragilistic", " supercalifragilistic"]
# (add_special, parse_special) of each case: every text plainly, the ones with specials all ways.
SPECIAL_TEXTS = [t for t in TEXTS if "<" in t and ">" in t] + ["hello", ""]
CASES = [(t, False, True) for t in TEXTS] + [(t, a, p) for t in SPECIAL_TEXTS for a, p in ((True, True), (False, False))]

# Special tokens of the BPE vocabularies: (text, token type). <|im_end|> and <|fim_prefix|> are written
# as normal tokens: llama.cpp makes them control tokens by name. Others exercise llama.cpp's by-name
# rules: <mask> strips spaces on its left for jina-v2-*; <|channel|> (gpt-oss) and, next to
# <|return|> and <|call|>, <|end|> become user-defined (matched even when parse_special is false).
BPE_SPECIALS = [("<|endoftext|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 1), ("<tool>", 4), ("<|fim_prefix|>", 1),
                ("<mask>", 3), ("<|channel|>", 3), ("<|end|>", 3), ("<|return|>", 3), ("<|call|>", 3)]
# In the raw (gemma4-style) vocabulary <|tool_response>, an end-of-generation token, makes </s> normal.
RAW_SPECIALS = [*BPE_SPECIALS, ("<bos>", 3), ("</s>", 3), ("<|tool_response>", 3)]


def _byte_alphabet() -> list[str]:
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def _substring_vocab(texts: list[str], base: list[tuple[str, int]]) -> tuple[list[str], list[int], list[str]]:
    """(tokens, types, merges): `base` tokens, then every substring of `texts` up to SUBSTRING_MAX long."""
    tokens = [t for t, _ in base]
    types = [k for _, k in base]
    seen = set(tokens)
    subs = sorted({t[i:j] for t in texts for i in range(len(t)) for j in range(i + 2, min(len(t), i + SUBSTRING_MAX) + 1)},
                  key=lambda s: (len(s), s))
    merges = []
    for sub in subs:
        if sub not in seen:
            seen.add(sub)
            tokens.append(sub)
            types.append(1)
        merges += [f"{sub[:k]} {sub[k:]}" for k in range(1, len(sub)) if " " not in sub]
    return tokens, types, merges


def byte_bpe_vocab() -> tuple[list[str], list[int], list[str]]:
    """The byte-level BPE vocabulary: specials, the 256 bytes, then the texts' substrings."""
    alphabet = _byte_alphabet()
    spelled = ["".join(alphabet[b] for b in t.encode()) for t in TEXTS]
    words = [("".join(alphabet[b] for b in w.encode()), 1) for w in LONG_WORDS]
    return _substring_vocab(spelled, [*BPE_SPECIALS, *((c, 1) for c in alphabet), *words])


def raw_bpe_vocab() -> tuple[list[str], list[int], list[str]]:
    """The raw-UTF-8 BPE vocabulary (gemma4 style): specials, <0xNN> bytes, characters, substrings."""
    texts = [*TEXTS, *(t.replace(" ", "▁") for t in TEXTS)]
    chars = sorted({c for t in texts for c in t if c != " "} | {"▁"})
    base = [*RAW_SPECIALS, *((f"<0x{b:02X}>", 6) for b in range(256)), *((c, 1) for c in chars)]
    base += [(w.replace(" ", "▁"), 1) for w in LONG_WORDS]
    return _substring_vocab(texts, base)


RAW_BOS = [t for t, _ in RAW_SPECIALS].index("<bos>")


def write_vocab_gguf(path: Path, model: str, tokens: list[str], types: list[int], **kv: Any) -> Path:
    """A vocabulary-only llama GGUF (what llama.cpp's vocab_only load needs). kv: tokenizer.ggml.* keys
    by short name (pre, merges, scores, bos, eos, unk, add_bos, add_eos, add_space_prefix, name)."""
    w = gguf.GGUFWriter(str(path), "llama")
    if kv.get("name"):
        w.add_name(kv["name"])
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model(model)
    w.add_token_list(tokens)
    w.add_token_types(types)
    if kv.get("pre") is not None:
        w.add_tokenizer_pre(kv["pre"])
    if kv.get("scores") is not None:
        w.add_token_scores(kv["scores"])
    if kv.get("merges") is not None:
        w.add_token_merges(kv["merges"])
    for key, add in (("bos", w.add_bos_token_id), ("eos", w.add_eos_token_id), ("unk", w.add_unk_token_id),
                     ("add_bos", w.add_add_bos_token), ("add_eos", w.add_add_eos_token),
                     ("add_space_prefix", w.add_add_space_prefix)):
        if kv.get(key) is not None:
            add(kv[key])
    w.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), dtype=np.float32))  # transformers loads it
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def vocab_digest(tokens: list[str], types: list[int], extra: list[Any]) -> str:
    """A short hash identifying a vocabulary (tokens, types and merges or scores)."""
    h = hashlib.sha256()
    for part in (tokens, types, extra):
        h.update(repr(part).encode())
    return h.hexdigest()[:16]


def bpe_files(tmp: Path, names: list[str | None]) -> dict[str, Path]:
    """One byte-level BPE GGUF per pre-tokenizer name (None: no tokenizer.ggml.pre key), plus the
    gemma4-style raw ones: 'raw:<name>' files, and 'model:gemma4' (tokenizer model gemma4)."""
    from wgllm.model.tokenizer import PRE_TOKENIZERS

    tokens, types, merges = byte_bpe_vocab()
    raw_tokens, raw_types, raw_merges = raw_bpe_vocab()
    files = {}
    for name in names:
        key = f"pre:{name if name is not None else '(none)'}"
        spec = PRE_TOKENIZERS.get(name or "default")
        if spec is not None and not spec.byte_encode:
            files[key] = write_vocab_gguf(tmp / f"raw-{len(files)}.gguf", "gpt2", raw_tokens, raw_types, pre=name,
                                          merges=raw_merges, bos=RAW_BOS, eos=0)
        else:
            files[key] = write_vocab_gguf(tmp / f"bpe-{len(files)}.gguf", "gpt2", tokens, types, pre=name,
                                          merges=merges, bos=1, eos=0)
    files["model:gemma4"] = write_vocab_gguf(tmp / "gemma4.gguf", "gemma4", raw_tokens, raw_types, pre="gemma4",
                                             merges=raw_merges, bos=RAW_BOS, eos=0)
    # No bos/eos ids in the file: llama.cpp's defaults (11 for BPE) apply.
    files["noids:llama-bpe"] = write_vocab_gguf(tmp / "noids.gguf", "gpt2", tokens, types, pre="llama-bpe",
                                                merges=merges)
    return files


# SentencePiece files: name -> (which pieces, GGUF keys). The pieces (trained with sentencepiece by the
# fixture script, and test_tokenizer.py's hand-made ones) are stored in the fixture.
SPM_VARIANTS = {
    "trained": ("trained", {}),
    "trained-prefix-false": ("trained", {"add_space_prefix": False}),
    "trained-prefix-true-eos": ("trained", {"add_space_prefix": True, "add_eos": True, "add_bos": False}),
    "trained-phi3": ("trained", {"name": "Phi-3 mini"}),
    "hand": ("hand", {"add_space_prefix": True}),
    "hand-no-scores": ("hand", {"scores": None}),
    "trained-no-ids": ("trained", {"bos": None, "eos": None, "unk": None}),  # llama.cpp's defaults 1, 2, 0
}


def spm_files(tmp: Path, pieces: dict[str, list[list]]) -> dict[str, Path]:
    """The SentencePiece GGUF files of SPM_VARIANTS, from [[piece, score, type]] lists."""
    files = {}
    for name, (which, keys) in SPM_VARIANTS.items():
        p = pieces[which]
        kv = {"pre": "default", "scores": [s for _, s, _ in p], "bos": 1, "eos": 2, "unk": 0, **keys}
        files[f"spm:{name}"] = write_vocab_gguf(tmp / f"spm-{name}.gguf", "llama", [t for t, _, _ in p],
                                                [k for _, _, k in p], **kv)
    return files
