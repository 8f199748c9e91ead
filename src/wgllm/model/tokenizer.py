"""Tokenizers built from a GGUF file's metadata, on the `tokenizers` library.

A GGUF carries no `tokenizer.json`: it stores the vocabulary, the merges (or,
for SentencePiece vocabularies, a score per token), the token types and a
pre-tokenizer name under llama.cpp's `tokenizer.ggml.*` keys. This module
rebuilds the matching `tokenizers.Tokenizer` from those:

* `gpt2` (byte-level BPE): BPE from tokens + merges, the text split by the
  regexes llama.cpp uses for `tokenizer.ggml.pre`, then mapped to the byte
  alphabet; control and user-defined tokens are added whole, so they are never
  cut into pieces.
* `llama` (SentencePiece BPE): BPE whose merges are recovered from the token
  scores, byte fallback through the `<0xNN>` tokens, and a `Metaspace`
  pre-tokenizer that writes spaces as U+2581 (with a leading one when the file
  asks for `add_space_prefix`).

`StreamDecoder` turns generated ids into text one id at a time, holding back
bytes until they complete a UTF-8 character.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as _Backend

from wgllm.errors import InvalidModelFileError, UnsupportedModelError
from wgllm.model.gguf import GGUFFile

log = logging.getLogger(__name__)

# llama.cpp's token types (tokenizer.ggml.token_type)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

SUPPORTED_MODELS = ("gpt2", "llama")

# End-of-turn markers of common chat formats; they stop generation when the
# model's chat template uses them and the vocabulary has them.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|eom_id|>")

# --- pre-tokenizer regexes (as llama.cpp applies them, one after another) ---------

_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_TEKKEN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+" + _CONTRACTIONS + "?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*" + _CONTRACTIONS + "?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_DEEPSEEK3 = (
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_DEFAULT = (r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]")


def _names(names: str, splits: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return {name: splits for name in names.split()}


PRE_TOKENIZER_SPLITS: dict[str, tuple[str, ...]] = {
    **_names("default", _DEFAULT),
    **_names("llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 dbrx smaug-bpe", (_LLAMA3,)),
    **_names("chatglm-bpe glm4", (_LLAMA3,)),
    **_names("gpt2 gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de mpt olmo jais exaone4", (_GPT2,)),
    **_names("starcoder refact command-r smollm codeshell exaone minerva-7b", (r"\p{N}", _GPT2)),
    **_names("qwen2 deepseek-r1-qwen kormo megrez stablelm2 hunyuan grok-2", (_QWEN2,)),
    **_names("falcon", (r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, r"[0-9][0-9][0-9]")),
    **_names("tekken", (_TEKKEN,)),
    **_names("gpt-4o llama4 minimax-m2", (_GPT4O,)),
    **_names("deepseek-v3", _DEEPSEEK3),
}

# Pre-tokenizers whose vocabulary takes a whole pre-token that is in the vocabulary
# as one token, without applying merges (tokenizer.json's `ignore_merges`).
IGNORE_MERGES = frozenset("llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 tekken".split())
# Pre-tokenizers for which llama.cpp adds BOS when the file does not say.
ADD_BOS_BY_DEFAULT = IGNORE_MERGES | {"chameleon"}


@lru_cache(maxsize=1)
def _byte_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character table (the byte-level alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _byte_level_spelling(token: str) -> str:
    """`token` in the byte-level alphabet (unchanged when it already is)."""
    alphabet = _byte_alphabet()
    if set(token) <= set(alphabet.values()):
        return token
    return "".join(alphabet[b] for b in token.encode("utf-8"))


# --- building -----------------------------------------------------------------------


def _require(meta: Mapping[str, Any], key: str) -> Any:
    if key not in meta:
        raise InvalidModelFileError(
            f"The model file has no '{key}' metadata, so its tokenizer cannot be built. The file is "
            f"incomplete or was written by a converter wgllm does not understand: convert the model "
            f"again with a current llama.cpp, or use another GGUF file of it."
        )
    return meta[key]


def _token_types(meta: Mapping[str, Any], n: int) -> list[int]:
    types = meta.get("tokenizer.ggml.token_type")
    if types is None:
        return [TOKEN_NORMAL] * n
    types = [int(t) for t in types]
    if len(types) != n:
        raise InvalidModelFileError(
            f"The model file lists {n} tokens but {len(types)} token types; its tokenizer metadata is "
            f"inconsistent. Use another GGUF file of this model."
        )
    return types


def _added_tokens(tokens: list[str], types: list[int], vocab: Mapping[str, int]) -> tuple[list, list]:
    """(special, plain) AddedTokens: control/unknown tokens are special, user-defined ones plain."""
    special, plain = [], []
    for token, kind in zip(tokens, types):
        if not token or token not in vocab:
            continue
        if kind in (TOKEN_CONTROL, TOKEN_UNKNOWN):
            special.append(AddedToken(token, normalized=False, special=True))
        elif kind == TOKEN_USER_DEFINED:
            plain.append(AddedToken(token, normalized=False, special=False))
    return special, plain


def _make_bpe(vocab: dict[str, int], merges: list[tuple[str, str]], **options: Any) -> models.BPE:
    try:
        return models.BPE(vocab=vocab, merges=merges, dropout=None, **options)
    except Exception as exc:  # tokenizers raises a bare Exception on bad merges
        raise InvalidModelFileError(
            f"The model file's tokenizer is inconsistent ({exc}): its merges name tokens that are not "
            f"in its vocabulary. Use another GGUF file of this model."
        ) from exc


def _split_merges(merges: Iterable[str]) -> list[tuple[str, str]]:
    """'a b' merge strings -> (a, b); like llama.cpp, split at the first space after position 0."""
    out = []
    for merge in merges:
        pos = merge.find(" ", 1)
        if pos < 0:
            raise InvalidModelFileError(
                f"The model file has a malformed tokenizer merge {merge!r} (expected 'left right'). "
                f"Use another GGUF file of this model."
            )
        out.append((merge[:pos], merge[pos + 1 :]))
    return out


def _pre_tokenizer_splits(pre: str) -> tuple[str, ...]:
    splits = PRE_TOKENIZER_SPLITS.get(pre)
    if splits is None:
        log.warning("unknown pre-tokenizer %r in the model file; using llama.cpp's 'default' rules", pre)
        splits = _DEFAULT
    return splits


def _build_gpt2(meta: Mapping[str, Any], tokens: list[str], types: list[int]) -> _Backend:
    """Byte-level BPE (GPT-2 style) with the pre-tokenizer the file names."""
    pre = str(meta.get("tokenizer.ggml.pre") or "default")
    vocab: dict[str, int] = {}
    for index, (token, kind) in enumerate(zip(tokens, types)):
        # Normal tokens must be in the byte alphabet; added tokens are matched on raw text.
        raw = kind in (TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNKNOWN)
        vocab[token if raw else _byte_level_spelling(token)] = index
    merges = _split_merges(_require(meta, "tokenizer.ggml.merges"))
    backend = _Backend(_make_bpe(vocab, merges, ignore_merges=pre in IGNORE_MERGES))
    splits = [pre_tokenizers.Split(Regex(expr), behavior="isolated") for expr in _pre_tokenizer_splits(pre)]
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.pre_tokenizer = pre_tokenizers.Sequence([*splits, byte_level])
    backend.decoder = decoders.ByteLevel()
    return backend


def merges_from_scores(tokens: list[str], scores: list[float], types: list[int]) -> list[tuple[str, str]]:
    """SentencePiece BPE merges recovered from per-token scores.

    Every split of a token into two tokens of the vocabulary is a candidate merge;
    merges are ranked by the merged token's score (higher first), then by the
    longer left part. Only normal and user-defined tokens are merge results:
    SentencePiece never builds control or byte tokens by merging. This equals
    SentencePiece's own BPE for trained vocabularies, where every piece is the
    join of two pieces.
    """
    vocab = {token: index for index, token in enumerate(tokens)}
    candidates: list[tuple[float, int, int, str, str]] = []
    for token, score, kind in zip(tokens, scores, types):
        if kind not in (TOKEN_NORMAL, TOKEN_USER_DEFINED) or vocab.get(token) is None:
            continue
        pairs = [(token[:k], token[k:]) for k in range(1, len(token))]
        pairs = sorted((p for p in pairs if p[0] in vocab and p[1] in vocab), key=lambda p: (vocab[p[0]], vocab[p[1]]))
        candidates.extend((-float(score), -len(left), -len(right), left, right) for left, right in pairs)
    candidates.sort(key=lambda c: c[:3])  # stable: ties keep vocabulary order
    return [(left, right) for *_, left, right in candidates]


def _build_llama(meta: Mapping[str, Any], tokens: list[str], types: list[int]) -> _Backend:
    """SentencePiece-style BPE with byte fallback and a Metaspace pre-tokenizer."""
    vocab = {token: index for index, token in enumerate(tokens)}
    if "tokenizer.ggml.merges" in meta:
        merges = _split_merges(meta["tokenizer.ggml.merges"])
    else:
        scores = meta.get("tokenizer.ggml.scores")
        scores = [float(s) for s in scores] if scores is not None else [-float(i) for i in range(len(tokens))]
        merges = merges_from_scores(tokens, scores, types)
    unk_id = meta.get("tokenizer.ggml.unknown_token_id")
    unk = tokens[int(unk_id)] if unk_id is not None and 0 <= int(unk_id) < len(tokens) else None
    byte_fallback = TOKEN_BYTE in types or "<0x00>" in vocab
    backend = _Backend(_make_bpe(vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=byte_fallback))
    add_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="first" if add_prefix else "never", split=False
    )
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix:
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    backend.decoder = decoders.Sequence(steps)
    return backend


def _unsupported(model: Any) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"The model's tokenizer type is {model!r} (metadata 'tokenizer.ggml.model'), which wgllm does "
        f"not support: wgllm reads byte-level BPE ('gpt2', used by Llama 3, Qwen, SmolLM, Mistral "
        f"Nemo and most recent models) and SentencePiece BPE ('llama', used by Llama 2, Mistral 7B, "
        f"TinyLlama and Phi-3) vocabularies. Pick a model whose GGUF uses one of these; other types "
        f"('t5', 'bert', 'rwkv', ...) belong to model families wgllm does not run."
    )


# --- the tokenizer ------------------------------------------------------------------


class Tokenizer:
    """A model's tokenizer: text <-> token ids, plus its special token ids.

    Attributes: `model` ('gpt2' or 'llama'), `pre` (the pre-tokenizer name),
    `add_bos` / `add_eos` (whether `encode(..., add_special=True)` adds them).
    """

    def __init__(self, backend: _Backend, meta: Mapping[str, Any], tokens: list[str], types: list[int]):
        """Wrap a built `tokenizers.Tokenizer`; use `from_gguf` / `from_metadata` instead."""
        self._backend = backend
        self._plain_backend: _Backend | None = None
        self._tokens = tokens
        self._types = types
        self.model: str = str(meta.get("tokenizer.ggml.model"))
        self.pre: str | None = meta.get("tokenizer.ggml.pre")
        self._bos_id = self._valid_id(meta.get("tokenizer.ggml.bos_token_id"))
        self._eos_id = self._valid_id(meta.get("tokenizer.ggml.eos_token_id"))
        self._eot_id = self._valid_id(meta.get("tokenizer.ggml.eot_token_id"))
        self._eom_id = self._valid_id(meta.get("tokenizer.ggml.eom_token_id"))
        self.add_bos: bool = self._default_add_bos(meta)
        self.add_eos: bool = bool(meta.get("tokenizer.ggml.add_eos_token", False))
        self._stop_ids = self._find_stop_ids(meta.get("tokenizer.chat_template"))

    # construction

    @classmethod
    def from_gguf(cls, gguf_file: GGUFFile | str | os.PathLike) -> Tokenizer:
        """Build from a `GGUFFile` (or a path to a .gguf file)."""
        if isinstance(gguf_file, (str, os.PathLike)):
            gguf_file = GGUFFile(gguf_file)
        return cls.from_metadata(gguf_file.metadata)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> Tokenizer:
        """Build from GGUF metadata (key -> value, as `GGUFFile.metadata`)."""
        model = _require(meta, "tokenizer.ggml.model")
        if model not in SUPPORTED_MODELS:
            raise _unsupported(model)
        tokens = [str(t) for t in _require(meta, "tokenizer.ggml.tokens")]
        types = _token_types(meta, len(tokens))
        build = _build_gpt2 if model == "gpt2" else _build_llama
        backend = build(meta, tokens, types)
        special, plain = _added_tokens(tokens, types, backend.get_vocab())
        backend.add_special_tokens(special)
        backend.add_tokens(plain)
        return cls(backend, meta, tokens, types)

    def _valid_id(self, token_id: Any) -> int | None:
        if token_id is None or not 0 <= int(token_id) < len(self._tokens):
            return None
        return int(token_id)

    def _default_add_bos(self, meta: Mapping[str, Any]) -> bool:
        if "tokenizer.ggml.add_bos_token" in meta:
            return bool(meta["tokenizer.ggml.add_bos_token"])
        return self.model == "llama" or self.pre in ADD_BOS_BY_DEFAULT

    def _find_stop_ids(self, template: Any) -> frozenset[int]:
        ids = {i for i in (self._eos_id, self._eot_id, self._eom_id) if i is not None}
        # Without a template the chat fallback is ChatML, which ends turns with <|im_end|>.
        text = template if isinstance(template, str) else "<|im_end|>"
        for marker in END_OF_TURN_TOKENS:
            token_id = self.token_to_id(marker)
            if marker in text and token_id is not None:
                ids.add(token_id)
        return frozenset(ids)

    # encoding / decoding

    def encode(self, text: str, add_special: bool = False, parse_special: bool = True) -> list[int]:
        """Token ids of `text`.

        add_special: add BOS (and EOS) when the model's metadata asks for them.
        parse_special: match special tokens written in the text (e.g. "<|im_start|>")
        as single tokens; False tokenizes them as plain text (use it for untrusted
        text that must not inject control tokens).
        """
        backend = self._backend if parse_special else self._plain()
        ids = backend.encode(text, add_special_tokens=False).ids if text else []
        if add_special and self.add_bos and self._bos_id is not None:
            ids.insert(0, self._bos_id)
        if add_special and self.add_eos and self._eos_id is not None:
            ids.append(self._eos_id)
        return ids

    def _plain(self) -> _Backend:
        if self._plain_backend is None:
            plain = _Backend.from_str(self._backend.to_str())
            plain.encode_special_tokens = True
            self._plain_backend = plain
        return self._plain_backend

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of `ids`; bytes that do not form valid UTF-8 become U+FFFD."""
        return self._backend.decode(list(ids), skip_special_tokens=skip_special)

    def stream_decoder(self, skip_special: bool = False) -> StreamDecoder:
        """A `StreamDecoder` over this tokenizer."""
        return StreamDecoder(self, skip_special=skip_special)

    # vocabulary

    @property
    def bos_id(self) -> int | None:
        """Beginning-of-sequence token id (None if the model has none)."""
        return self._bos_id

    @property
    def eos_id(self) -> int | None:
        """End-of-sequence token id (None if the model has none)."""
        return self._eos_id

    @property
    def eot_id(self) -> int | None:
        """End-of-turn token id from the metadata (None if the file names none)."""
        return self._eot_id

    @property
    def stop_ids(self) -> frozenset[int]:
        """Ids that end generation: EOS, EOT/EOM, and the chat format's end-of-turn token."""
        return self._stop_ids

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the model's vocabulary (rows of its embedding)."""
        return len(self._tokens)

    def token_to_id(self, token: str) -> int | None:
        """Id of a vocabulary entry spelled as in the file (e.g. '<|im_end|>'), or None."""
        return self._backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str:
        """The vocabulary entry of `token_id`, spelled as in the file."""
        return self._tokens[token_id]

    def is_control(self, token_id: int) -> bool:
        """True for control tokens (BOS, EOS, <|im_start|>, ...)."""
        return 0 <= token_id < len(self._types) and self._types[token_id] == TOKEN_CONTROL

    def __repr__(self) -> str:
        return f"Tokenizer(model={self.model!r}, pre={self.pre!r}, vocab_size={self.vocab_size})"


class StreamDecoder:
    """Incremental detokenizer: feed ids one at a time, get only the newly completed text.

    It decodes a short window (the last emitted token plus the pending ones), so a
    token's leading space and multi-byte UTF-8 characters split across tokens come
    out right; text ending in an incomplete character is held back until the
    character completes (or `flush` is called).
    """

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = False):
        """Start an empty stream over `tokenizer`."""
        self._tokenizer = tokenizer
        self._skip_special = skip_special
        self._ids: list[int] = []
        self._prefix = 0  # start of the window: the last token already emitted
        self._read = 0  # first token not yet emitted

    def _window_text(self, end: int | None = None) -> str:
        return self._tokenizer.decode(self._ids[self._prefix : end], skip_special=self._skip_special)

    def add(self, token_id: int) -> str:
        """Add one generated id; return the text it completes ('' while a character is incomplete)."""
        self._ids.append(int(token_id))
        done = self._window_text(self._read)
        text = self._window_text()
        if len(text) <= len(done) or text.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(done) :]

    push = add  # alias

    def flush(self) -> str:
        """Return whatever is still held back (incomplete bytes come out as U+FFFD)."""
        done = self._window_text(self._read)
        text = self._window_text()
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(done) :] if len(text) > len(done) else ""

    @property
    def ids(self) -> list[int]:
        """All ids pushed so far."""
        return list(self._ids)
