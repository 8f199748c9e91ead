"""Tokenizers built from a GGUF file's metadata, tokenizing exactly as llama.cpp does.

A GGUF carries no `tokenizer.json`: it stores the vocabulary, the merges (or,
for SentencePiece vocabularies, a score per token), the token types and a
pre-tokenizer name under llama.cpp's `tokenizer.ggml.*` keys. `Tokenizer.encode`
is a port of llama.cpp's own tokenizer (src/llama-vocab.cpp, src/unicode.cpp),
so a prompt gets the ids llama.cpp would give it:

* special tokens are cut out of the text first, as `tokenizer_st_partition`
  does: control, unknown and user-defined tokens (plus those llama.cpp
  recognises by name, e.g. `<|im_end|>`), longest first; with
  `parse_special=False` only user-defined ones are;
* `gpt2` (byte-level BPE) and `gemma4`: the text is split by the regex list
  llama.cpp uses for `tokenizer.ggml.pre` (with its hand-written splitters for
  the gpt2, llama3, qwen2, qwen35, kimi-k2, afmoe and newline patterns, and its
  trick of matching Unicode categories on a "collapsed" text), mapped to the
  byte alphabet, then merged by rank;
* `llama` (SentencePiece): spaces become U+2581, one is prepended when
  `add_space_prefix` is set (the default) at the start of the text and after
  every special token, and pieces are merged by score, falling back to
  `<0xNN>` byte tokens.

An unknown `tokenizer.ggml.pre` is refused (UnsupportedModelError), as llama.cpp
refuses it; a missing one means 'default'. Decoding, and the `tokenizers.Tokenizer`
that llguidance reads (`Tokenizer._backend`, built on first use), go through the
`tokenizers` library. `StreamDecoder` turns generated ids into text one id at a
time, holding back bytes until they complete a UTF-8 character.

Known differences from llama.cpp: Unicode data is Python's `unicodedata` patched
to llama.cpp's Unicode 15.1 tables (characters added after 15.1 differ); special
tokens of equal byte length are tried in id order (llama.cpp's order is
unspecified); wgllm also accepts the pre-tokenizer name 'gpt2' (as 'gpt-2'),
which llama.cpp refuses; a SentencePiece character with neither a token nor a
byte token becomes the unknown token (llama.cpp aborts).
"""

from __future__ import annotations

import heapq
import logging
import os
import re
import unicodedata
import warnings
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as _Backend

from wgllm.errors import InvalidModelFileError, UnsupportedModelError
from wgllm.model.gguf import GGUFFile
from wgllm.model.chat_template import fallback_source

log = logging.getLogger(__name__)

# llama.cpp's token types (tokenizer.ggml.token_type)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

SUPPORTED_MODELS = ("gpt2", "llama", "gemma4")

# End-of-turn markers of common chat formats; they stop generation when the
# model's chat template uses them and the vocabulary has them.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|eom_id|>")

# --- pre-tokenizers: llama.cpp's tables (src/llama-vocab.cpp), as written there ------
# scripts/llama_tokenizer_fixtures.py --check-tables compares these with a llama.cpp source tree.


@dataclass(frozen=True)
class _PreTokenizer:
    """One `tokenizer.ggml.pre` name: llama.cpp's pre-tokenizer type and the flags the name sets."""

    type: str
    flags: frozenset[str]

    @property
    def regexes(self) -> tuple[str, ...]:
        """The regexes llama.cpp splits the text with, applied one after another."""
        return _PRE_TYPE_REGEXES.get(self.type, _PRE_TYPE_REGEXES["DEFAULT"])

    @property
    def byte_encode(self) -> bool:
        """False where llama.cpp keeps raw UTF-8 (SentencePiece-style BPE) instead of the byte alphabet."""
        return self.type not in _RAW_UTF8_TYPES


def _pre(names: str, pre_type: str, flags: str) -> dict[str, _PreTokenizer]:
    spec = _PreTokenizer(pre_type, frozenset(flags.split()))
    return {name: spec for name in names.split()}


def _types(names: str, regexes: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return {name: regexes for name in names.split()}


_LLAMA3 = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_JAIS2 = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}"
_NEWLINE_CHAR = '[\r\n]'
_DEEPSEEK_LATIN = r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"
_DEEPSEEK_PUNCT = '\\s?[!-/:-~！-／：-～‘-‟\u3000-。]+'
_TRAILING_SPACE = r"\s+$"
_DEEPSEEK_CJK = '[一-龥ࠀ-一가-\ud7ff]+'
_NUMBER_RUN = r"\p{N}+"
_DIGITS_1_3 = r"\p{N}{1,3}"
_CJK_KANA = '[一-龥\u3040-ゟ゠-ヿ]+'
_DEEPSEEK3 = '[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+'
_SPARK2_5 = '[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+'
_DIGIT = r"\p{N}"
_YOUTU_CJK = '[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥\u3040-ゟ゠-ヿ]+'
_YOUTU = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_SPACE_LETTERS = r"\s?\p{L}+"
_SPACE_PUNCT = r"\s?\p{P}+"
_FALCON_PUNCT = r"[\p{P}\$\+<=>\^~\|`]+"
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_THREE_DIGITS = r"[0-9][0-9][0-9]"
_QWEN2 = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN35 = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_BLOOM = r" ?[^(\s|.,!?…。，、।۔،)]+"
_TEKKEN = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_CHAMELEON_SENTINEL = r"<sentinel:[0-9]+>"
_CHAMELEON_IMAGE = r"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z"
_CHAMELEON_SPACES = r"([\t\n]|    |  )"
_CHAMELEON_PUNCT = r"[\p{P}!-/:-@\[-`{-~]"
_GPT4O = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_GRANITE_EMB_MULTI = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_DIGIT_GROUPS = r"\d{1,3}(?=(?:\d{3})*\b)"
_TINY_AYA = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_HAN = r"\p{Han}+"
_THOUSANDS = r"(?=(\d{3})+(?!\d))"
_BAILINGMOE = r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"
_SEED_CODER = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"
_UFAKZEKA = r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_AFMOE_DIGITS = r"\p{AFMoE_digits}"
_AFMOE_CJK = '[一-鿿㐀-䶿豈-\ufaff\u3040-ゟ゠-ヿ･-ﾟ⼀-\u2fdfเ-\u0e7f\u0e80-\u0effក-\u17ffက-႟ꩠ-ꩿꧠ-\ua9ff가-\ud7afᄀ-ᇿ]+'
_AFMOE = '[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+'
_LINES = r"[^\n]+|[\n]+"
_EXAONE_MOE = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+"
_MINICPM5 = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_NON_SPACE = r"\S+"
_DEFAULT_PUNCT = r"[\p{P}\$\+<=>\^~\|]+"

# llama.cpp's regex list per pre-tokenizer type (llm_tokenizer_bpe's constructor).
_PRE_TYPE_REGEXES: dict[str, tuple[str, ...]] = {
    **_types("LLAMA3 DBRX SMAUG CHATGLM4", (_LLAMA3,)),
    **_types("JAIS2", (_JAIS2,)),
    **_types("DEEPSEEK_LLM", (_NEWLINE_CHAR, _DEEPSEEK_LATIN, _DEEPSEEK_PUNCT, _TRAILING_SPACE, _DEEPSEEK_CJK, _NUMBER_RUN)),
    **_types("DEEPSEEK3_LLM HUNYUAN_DENSE JOYAI_LLM HY_V4", (_DIGITS_1_3, _CJK_KANA, _DEEPSEEK3)),
    **_types("SPARK2_5", (_DIGITS_1_3, _CJK_KANA, _SPARK2_5, _DIGIT)),
    **_types("YOUTU", (_YOUTU_CJK, _YOUTU)),
    **_types("DEEPSEEK_CODER", (_NEWLINE_CHAR, _SPACE_LETTERS, _SPACE_PUNCT, _DEEPSEEK_CJK, _DIGIT)),
    **_types("FALCON", (_FALCON_PUNCT, _GPT2, _THREE_DIGITS)),
    **_types("STARCODER REFACT COMMAND_R SMOLLM CODESHELL EXAONE MINERVA MELLUM2", (_DIGIT, _GPT2)),
    **_types("GPT2 MPT OLMO JAIS TRILLION GRANITE_DOCLING", (_GPT2,)),
    **_types("STABLELM2 QWEN2 HUNYUAN SOLAR_OPEN GROK_2", (_QWEN2,)),
    **_types("QWEN35", (_QWEN35,)),
    **_types("PORO BLOOM GPT3_FINNISH", (_BLOOM,)),
    **_types("VIKING", (_BLOOM, _DIGIT)),
    **_types("TEKKEN", (_TEKKEN,)),
    **_types("CHAMELEON", (_CHAMELEON_SENTINEL, _CHAMELEON_IMAGE, _CHAMELEON_SPACES, _DIGIT, _CHAMELEON_PUNCT, _GPT2)),
    **_types("GPT4O MINIMAX_M2", (_GPT4O,)),
    **_types("GRANITE_EMB_MULTI", (_GRANITE_EMB_MULTI,)),
    **_types("TINY_AYA", (_DIGIT_GROUPS, _TINY_AYA)),
    **_types("KIMI_K2", (_HAN,)),
    **_types("SUPERBPE", (_NUMBER_RUN, _THOUSANDS)),
    **_types("BAILINGMOE", (_BAILINGMOE,)),
    **_types("SEED_CODER", (_SEED_CODER,)),
    **_types("UFAKZEKA", (_UFAKZEKA,)),
    **_types("AFMOE", (_AFMOE_DIGITS, _AFMOE_CJK, _AFMOE)),
    **_types("LAGUNA", (_LINES, _QWEN2)),
    **_types("EXAONE_MOE", (_EXAONE_MOE,)),
    **_types("GEMMA4 SARVAM_MOE", (_LINES,)),
    **_types("MINICPM5", (_DIGITS_1_3, _MINICPM5)),
    **_types("WHITESPACE", (_NON_SPACE,)),
    **_types("DEFAULT", (_DEFAULT_PUNCT, _GPT2, _NUMBER_RUN, _THREE_DIGITS)),
}
_RAW_UTF8_TYPES = frozenset({"GEMMA4", "SARVAM_MOE", "WHITESPACE"})

PRE_TOKENIZERS: dict[str, _PreTokenizer] = {
    **_pre("default", "DEFAULT", ""),
    **_pre("minicpm5", "MINICPM5", "ignore_merges"),
    **_pre("llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano", "LLAMA3", "add_bos ignore_merges"),
    **_pre("deepseek-llm", "DEEPSEEK_LLM", ""),
    **_pre("deepseek-coder", "DEEPSEEK_CODER", ""),
    **_pre("deepseek-v3", "DEEPSEEK3_LLM", ""),
    **_pre("spark2_5", "SPARK2_5", ""),
    **_pre("youtu", "YOUTU", "ignore_merges"),
    **_pre("falcon", "FALCON", ""),
    **_pre("mpt", "MPT", ""),
    **_pre("starcoder", "STARCODER", ""),
    **_pre("gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert exaone4", "GPT2", ""),
    **_pre("jais-2", "JAIS2", ""),
    **_pre("gemma4 granite-embed-multi-311m", "GEMMA4", "escape_whitespaces"),
    **_pre("sarvam-moe", "SARVAM_MOE", "escape_whitespaces"),
    **_pre("jina-v1-en jina-v2-code roberta-bpe", "GPT2", "add_sep"),
    **_pre("whitespace", "WHITESPACE", ""),
    **_pre("refact", "REFACT", ""),
    **_pre("command-r", "COMMAND_R", ""),
    **_pre("qwen2 deepseek-r1-qwen kormo f2llmv2 megrez", "QWEN2", ""),
    **_pre("qwen35", "QWEN35", ""),
    **_pre("stablelm2", "STABLELM2", ""),
    **_pre("olmo", "OLMO", ""),
    **_pre("dbrx", "DBRX", ""),
    **_pre("smaug-bpe", "SMAUG", ""),
    **_pre("poro-chat", "PORO", ""),
    **_pre("chatglm-bpe", "CHATGLM4", "no_bos"),
    **_pre("glm4 glm5", "CHATGLM4", "ignore_merges no_bos"),
    **_pre("viking", "VIKING", ""),
    **_pre("jais", "JAIS", ""),
    **_pre("tekken", "TEKKEN", "add_bos ignore_merges"),
    **_pre("smollm", "SMOLLM", ""),
    **_pre("codeshell", "CODESHELL", ""),
    **_pre("bloom", "BLOOM", ""),
    **_pre("gpt3-finnish", "GPT3_FINNISH", ""),
    **_pre("exaone", "EXAONE", ""),
    **_pre("exaone-moe", "EXAONE_MOE", ""),
    **_pre("chameleon", "CHAMELEON", "add_bos"),
    **_pre("minerva-7b", "MINERVA", ""),
    **_pre("gpt-4o llama4 kanana2 talkie", "GPT4O", ""),
    **_pre("granite-embed-multi-97m", "GRANITE_EMB_MULTI", "ignore_merges"),
    **_pre("tiny_aya cohere2moe", "TINY_AYA", ""),
    **_pre("superbpe", "SUPERBPE", ""),
    **_pre("trillion", "TRILLION", ""),
    **_pre("granite-docling", "GRANITE_DOCLING", ""),
    **_pre("bailingmoe bailingmoe2 llada-moe", "BAILINGMOE", ""),
    **_pre("seed-coder", "SEED_CODER", ""),
    **_pre("hunyuan", "HUNYUAN", ""),
    **_pre("hunyuan-dense", "HUNYUAN_DENSE", ""),
    **_pre("hy_v4", "HY_V4", ""),
    **_pre("joyai-llm", "JOYAI_LLM", ""),
    **_pre("kimi-k2", "KIMI_K2", ""),
    **_pre("ufakzeka", "UFAKZEKA", ""),
    **_pre("grok-2", "GROK_2", ""),
    **_pre("afmoe", "AFMOE", ""),
    **_pre("laguna", "LAGUNA", ""),
    **_pre("minimax-m2", "MINIMAX_M2", ""),
    **_pre("solar-open", "SOLAR_OPEN", ""),
    **_pre("mellum2", "MELLUM2", ""),
}

# wgllm-only alias: llama.cpp refuses 'gpt2', but wgllm.testing.synth writes it.
PRE_TOKENIZERS["gpt2"] = PRE_TOKENIZERS["gpt-2"]


# --- Unicode categories as llama.cpp's unicode-data.cpp has them ----------------------

_F_UNDEFINED, _F_NUMBER, _F_LETTER, _F_SEPARATOR = 0x001, 0x002, 0x004, 0x008
_F_MARK, _F_PUNCTUATION, _F_SYMBOL, _F_CONTROL, _F_WHITESPACE = 0x010, 0x020, 0x040, 0x080, 0x100
_F_CATEGORIES = 0x0FF
_CATEGORY_FLAGS = {"C": _F_CONTROL, "L": _F_LETTER, "M": _F_MARK, "N": _F_NUMBER, "P": _F_PUNCTUATION,
                   "S": _F_SYMBOL, "Z": _F_SEPARATOR}
_WHITESPACE = frozenset(map(chr, [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028,
                                  0x2029, 0x202F, 0x205F, 0x3000]))
# Characters llama.cpp's tables (Unicode 15.1) assign and Python 3.11's unicodedata (14.0) does not.
_UNICODE_15_1 = (
    (0x00CF3, 0x00CF3, "Mn"), (0x00ECE, 0x00ECE, "Mn"), (0x02FFC, 0x02FFF, "So"), (0x031EF, 0x031EF, "So"),
    (0x10EFD, 0x10EFF, "Mn"), (0x1123F, 0x11240, "Lo"), (0x11241, 0x11241, "Mn"), (0x11B00, 0x11B09, "Po"),
    (0x11F00, 0x11F01, "Mn"), (0x11F02, 0x11F02, "Lo"), (0x11F03, 0x11F03, "Mn"), (0x11F04, 0x11F10, "Lo"),
    (0x11F12, 0x11F33, "Lo"), (0x11F34, 0x11F3A, "Mn"), (0x11F3E, 0x11F42, "Mn"), (0x11F43, 0x11F4F, "Po"),
    (0x11F50, 0x11F59, "Nd"), (0x1342F, 0x1342F, "Lo"), (0x13439, 0x1343F, "Cf"), (0x13440, 0x13440, "Mn"),
    (0x13441, 0x13446, "Lo"), (0x13447, 0x13455, "Mn"), (0x1B132, 0x1B132, "Lo"), (0x1B155, 0x1B155, "Lo"),
    (0x1D2C0, 0x1D2D3, "Nd"), (0x1DF25, 0x1DF2A, "Lo"), (0x1E030, 0x1E06D, "Lo"), (0x1E08F, 0x1E08F, "Mn"),
    (0x1E4D0, 0x1E4EB, "Lo"), (0x1E4EC, 0x1E4EF, "Mn"), (0x1E4F0, 0x1E4F9, "Nd"), (0x1F6DC, 0x1F6DC, "So"),
    (0x1F774, 0x1F776, "So"), (0x1F77B, 0x1F77F, "So"), (0x1F7D9, 0x1F7D9, "So"), (0x1FA75, 0x1FA77, "So"),
    (0x1FA87, 0x1FA88, "So"), (0x1FAAD, 0x1FAAF, "So"), (0x1FABB, 0x1FABD, "So"), (0x1FABF, 0x1FABF, "So"),
    (0x1FACE, 0x1FACF, "So"), (0x1FADA, 0x1FADB, "So"), (0x1FAE8, 0x1FAE8, "So"), (0x1FAF7, 0x1FAF8, "So"),
    (0x2B739, 0x2B739, "Lo"), (0x2EBF0, 0x2EE5D, "Lo"), (0x31350, 0x323AF, "Lo"),
)
_UNICODE_15_1_STARTS = [start for start, _, _ in _UNICODE_15_1]
_flag_cache: dict[str, int] = {}


def _category(ch: str) -> str:
    category = unicodedata.category(ch)
    if category == "Cn":
        i = bisect_right(_UNICODE_15_1_STARTS, ord(ch)) - 1
        if i >= 0 and ord(ch) <= _UNICODE_15_1[i][1]:
            return _UNICODE_15_1[i][2]
    return category


def _flags(ch: str) -> int:
    """llama.cpp's `unicode_cpt_flags` of one character (category bits plus whitespace)."""
    flags = _flag_cache.get(ch)
    if flags is None:
        category = _category(ch)
        flags = _F_UNDEFINED if category == "Cn" else _CATEGORY_FLAGS[category[0]]
        flags |= _F_WHITESPACE if ch in _WHITESPACE else 0
        _flag_cache[ch] = flags
    return flags


def _is_han(ch: str) -> bool:
    """llama.cpp's `unicode_cpt_is_han`: CJK unified ideographs, extensions A-F, compatibility ideographs."""
    c = ord(ch)
    return any(lo <= c <= hi for lo, hi in _HAN_RANGES)


_HAN_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2EBEF), (0xF900, 0xFAFF),
               (0x2F800, 0x2FA1F))


# --- unicode_regex_split: llama.cpp's pre-tokenizer (src/unicode.cpp) ---------------
#
# Each regex splits every piece the previous ones left (matches and the text between
# them both become pieces). Pieces are kept as lengths in characters ("offsets").

_WS_LN = _F_WHITESPACE | _F_LETTER | _F_NUMBER


def _ascii_lower(ch: str) -> str:
    return ch.lower() if "A" <= ch <= "Z" else ch


def _contraction_end(text: str, pos: int, end: int, fold: bool) -> int:
    """End of 's 't 're 've 'm 'll 'd at `pos` (case-insensitive if `fold`), or -1."""
    if text[pos] != "'" or pos + 1 >= end:
        return -1
    lower = _ascii_lower if fold else str
    c1 = lower(text[pos + 1])
    if c1 in ("s", "t", "m", "d"):
        return pos + 2
    if pos + 2 < end and c1 + lower(text[pos + 2]) in ("re", "ve", "ll"):
        return pos + 3
    return -1


def _space_run_end(text: str, flags: list[int], pos: int, end: int, newlines: bool) -> int:
    """The whitespace alternatives: \\s*[\\r\\n]+ (if `newlines`), \\s+(?!\\S), \\s+, else one character."""
    n, last_newline = 0, 0
    while pos + n < end and flags[pos + n] & _F_WHITESPACE:
        if text[pos + n] in ("\r", "\n"):
            last_newline = pos + n + 1
        n += 1
    if newlines and last_newline:
        return last_newline
    if n > 1 and pos + n < end:
        return pos + n - 1
    return pos + max(n, 1)


def _gpt2_step(text: str, flags: list[int], pos: int, end: int) -> int:
    """One match of 's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+ at `pos`."""
    contraction = _contraction_end(text, pos, end, fold=False)
    if contraction > 0:
        return contraction
    start = pos + 1 if text[pos] == " " else pos
    f2 = flags[start] if start < end else 0
    for kind in (_F_LETTER, _F_NUMBER):
        if f2 & kind:
            while start < end and flags[start] & kind:
                start += 1
            return start
    if f2 and not f2 & _WS_LN:
        while start < end and not flags[start] & _WS_LN:
            start += 1
        return start
    return _space_run_end(text, flags, pos, end, newlines=False)


def _llama3_step(text: str, flags: list[int], pos: int, end: int, digits: int, marks: bool) -> int:
    """One match of llama3's regex (qwen2: digits=1; qwen35: digits=1 and marks join letters) at `pos`."""
    contraction = _contraction_end(text, pos, end, fold=True)
    if contraction > 0:
        return contraction
    cpt, f = text[pos], flags[pos]
    word = _F_LETTER | (_F_MARK if marks else 0)
    following = flags[pos + 1] if pos + 1 < end else 0
    if cpt not in ("\r", "\n") and not f & _F_NUMBER and (f | following) & word:
        pos += 1
        while pos < end and flags[pos] & word:
            pos += 1
        return pos
    if f & _F_NUMBER:
        stop = min(end, pos + digits)
        while pos < stop and flags[pos] & _F_NUMBER:
            pos += 1
        return pos
    other = _F_WHITESPACE | word | _F_NUMBER
    start = pos + 1 if cpt == " " else pos
    if not (flags[start] if start < end else 0) & other:
        while start < end and not flags[start] & other:
            start += 1
        while start < end and text[start] in ("\r", "\n"):
            start += 1
        return start
    return _space_run_end(text, flags, pos, end, newlines=True)


def _kimi_letters_end(text: str, flags: list[int], pos: int, end: int) -> int:
    """Kimi-K2's letter words (no Han characters, optional contraction) at `pos`, or -1."""
    def letter(p: int) -> bool:
        return p < end and bool(flags[p] & _F_LETTER) and not _is_han(text[p])

    cpt, f = text[pos], flags[pos]
    leading = not (cpt in ("\r", "\n") or f & (_F_LETTER | _F_NUMBER))
    if not (letter(pos) or (leading and letter(pos + 1))):
        return -1
    p = pos + 1 if leading else pos
    while letter(p):
        p += 1
    contraction = _contraction_end(text, p, end, fold=True) if p < end else -1
    return contraction if contraction > 0 else p


def _kimi_step(text: str, flags: list[int], pos: int, end: int) -> int:
    """One match of Kimi-K2's regex set (Han runs, letter words, 3 digits, punctuation, spaces) at `pos`."""
    if _is_han(text[pos]):
        while pos < end and _is_han(text[pos]):
            pos += 1
        return pos
    letters = _kimi_letters_end(text, flags, pos, end)
    if letters > 0:
        return letters
    if flags[pos] & _F_NUMBER:
        stop = min(end, pos + 3)
        while pos < stop and flags[pos] & _F_NUMBER:
            pos += 1
        return pos
    start = pos + 1 if text[pos] == " " else pos
    f2 = flags[start] if start < end else 0
    if f2 and not f2 & _WS_LN:
        while start < end and not flags[start] & _WS_LN:
            start += 1
        while start < end and text[start] in ("\r", "\n"):
            start += 1
        return start
    return _space_run_end(text, flags, pos, end, newlines=True)


def _stepwise(step: Any) -> Any:
    """A splitter applying `step` (one match at a position) over each piece."""
    def split(text: str, flags: list[int], offsets: list[int]) -> list[int]:
        out, start = [], 0
        for offset in offsets:
            pos, end = start, start + offset
            while pos < end:
                nxt = step(text, flags, pos, end)
                out.append(nxt - pos)
                pos = nxt
            start = end
        return out
    return split


def _split_digit_groups(text: str, flags: list[int], offsets: list[int]) -> list[int]:
    """llama.cpp's afmoe digit splitter: digit runs in groups of 3 from the right.

    As in llama.cpp, text before a digit run joins the run's first group.
    """
    out, start = [], 0
    for offset in offsets:
        pos, end, prev = start, start + offset, start
        while pos < end:
            if not flags[pos] & _F_NUMBER:
                pos += 1
                continue
            first = pos
            while pos < end and flags[pos] & _F_NUMBER:
                pos += 1
            cut = first + (pos - first) % 3
            for stop in [*([cut] if cut > first else []), *range(cut + 3, pos + 1, 3)]:
                out.append(stop - prev)
                prev = stop
        if prev < end:
            out.append(end - prev)
        start = end
    return out


def _split_lines(text: str, flags: list[int], offsets: list[int]) -> list[int]:
    """[^\\n]+|[\\n]+: runs of newlines and runs of other characters."""
    out, start = [], 0
    for offset in offsets:
        pos, end = start, start + offset
        while pos < end:
            newline, run = text[pos] == "\n", pos
            while pos < end and (text[pos] == "\n") == newline:
                pos += 1
            out.append(pos - run)
        start = end
    return out


# llama.cpp's hand-written splitters, keyed by the regex they stand for.
_CUSTOM_SPLITS = {
    _GPT2: _stepwise(_gpt2_step),
    _LLAMA3: _stepwise(lambda t, f, p, e: _llama3_step(t, f, p, e, 3, False)),
    _QWEN2: _stepwise(lambda t, f, p, e: _llama3_step(t, f, p, e, 1, False)),
    _QWEN35: _stepwise(lambda t, f, p, e: _llama3_step(t, f, p, e, 1, True)),
    _HAN: _stepwise(_kimi_step),
    _AFMOE_DIGITS: _split_digit_groups,
    _DIGIT_GROUPS: _split_digit_groups,
    _LINES: _split_lines,
}

# The general path: std::regex on a "collapsed" text where each non-ASCII character is
# one byte standing for its category (regexes with \p{..}), else std::wregex.
_UCAT_FLAGS = {r"\p{N}": _F_NUMBER, r"\p{L}": _F_LETTER, r"\p{P}": _F_PUNCTUATION, r"\p{M}": _F_MARK,
               r"\p{S}": _F_SYMBOL, r"\p{Lu}": _F_LETTER, r"\p{Ll}": _F_LETTER, r"\p{Lt}": _F_LETTER,
               r"\p{Lm}": _F_LETTER, r"\p{Lo}": _F_LETTER}
_UCAT_BYTE = {_F_NUMBER: 0xD1, _F_LETTER: 0xD2, _F_PUNCTUATION: 0xD3, _F_MARK: 0xD4, _F_SYMBOL: 0xD5}
_UCAT_ASCII = {_F_NUMBER: "0-9", _F_LETTER: "A-Za-z", _F_PUNCTUATION: r"!-#%-*,-/:-;?-@\[-\]_\{\}", _F_MARK: "",
               _F_SYMBOL: r"\$\+<->^`\|\~"}


def _collapse_regex(expr: str) -> str:
    """llama.cpp's rewrite of \\p{..} into [<category byte><its ASCII members>]."""
    out, inside, i = [], False, 0
    while i < len(expr):
        c = expr[i]
        if c == "[" and (i == 0 or expr[i - 1] != "\\"):
            inside = True
        elif inside and c == "]" and expr[i - 1] != "\\":
            inside = False
        elif expr.startswith("\\p{", i) and i + 3 < len(expr):
            close = expr.find("}", i + 3)
            flag = _UCAT_FLAGS.get(expr[i : close + 1]) if 0 <= close <= i + 10 else None
            if flag is not None:
                body = chr(_UCAT_BYTE[flag]) + _UCAT_ASCII[flag]
                out.append(body if inside else f"[{body}]")
                i = close + 1
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _python_syntax(expr: str) -> str:
    """ECMAScript -> Python `re`: a bare `$` (end of input only) becomes \\Z."""
    out, inside, i = [], False, 0
    while i < len(expr):
        c = expr[i]
        if c == "\\":
            out.append(expr[i : i + 2])
            i += 2
            continue
        inside = (inside or c == "[") and not (inside and c == "]")
        out.append("\\Z" if c == "$" and not inside else c)
        i += 1
    return "".join(out)


@lru_cache(maxsize=None)
def _std_regex(expr: str) -> tuple[re.Pattern, bool]:
    """(compiled pattern, whether it runs on the collapsed text) for one of llama.cpp's regexes."""
    collapsed = any(cat in expr for cat in _UCAT_FLAGS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Python's note on '[' inside classes
        if collapsed:
            return re.compile(_python_syntax(_collapse_regex(expr)).encode("latin-1")), True
        return re.compile(_python_syntax(expr), re.ASCII), False


def _collapsed_text(text: str, flags: list[int]) -> bytes:
    out = bytearray(len(text))
    for i, (c, f) in enumerate(zip(text, flags)):
        o = ord(c)
        out[i] = o if o < 128 else 0x0B if f & _F_WHITESPACE else _UCAT_BYTE.get(f & _F_CATEGORIES, 0xD0)
    return bytes(out)


def _wide_text(text: str, flags: list[int]) -> str:
    return "".join("\x0b" if ord(c) > 0x7F and f & _F_WHITESPACE else c for c, f in zip(text, flags))


def _split_std(subject: bytes | str, pattern: re.Pattern, offsets: list[int]) -> list[int]:
    """unicode_regex_split_stl: matches and the gaps between them, within each piece."""
    out, start = [], 0
    for offset in offsets:
        done = 0
        for m in pattern.finditer(subject[start : start + offset]):
            if m.start() > done:
                out.append(m.start() - done)
            out.append(m.end() - m.start())
            done = m.end()
        if done < offset:
            out.append(offset - done)
        start += offset
    return out


def regex_split(text: str, regexes: Iterable[str]) -> list[str]:
    """`text` cut into pieces by llama.cpp's pre-tokenizer regexes (unicode_regex_split, no byte encoding)."""
    flags = [_flags(c) for c in text]
    subjects: dict[bool, bytes | str] = {}
    offsets = [len(text)] if text else []
    for expr in regexes:
        custom = _CUSTOM_SPLITS.get(expr)
        if custom is not None:
            offsets = custom(text, flags, offsets)
            continue
        pattern, collapsed = _std_regex(expr)
        if collapsed not in subjects:
            subjects[collapsed] = _collapsed_text(text, flags) if collapsed else _wide_text(text, flags)
        offsets = _split_std(subjects[collapsed], pattern, offsets)
    pieces, start = [], 0
    for offset in offsets:
        pieces.append(text[start : start + offset])
        start += offset
    return pieces


# --- token attributes and special tokens, as llama_vocab::impl::load sets them ---------

_A_NORMAL, _A_UNKNOWN, _A_CONTROL, _A_USER_DEFINED, _A_UNUSED, _A_BYTE, _A_UNDEFINED = 1, 2, 4, 8, 16, 32, 64
_A_LSTRIP, _A_RSTRIP = 128, 256
_TYPE_ATTR = {TOKEN_NORMAL: _A_NORMAL, TOKEN_UNKNOWN: _A_UNKNOWN, TOKEN_CONTROL: _A_CONTROL,
              TOKEN_USER_DEFINED: _A_USER_DEFINED, TOKEN_UNUSED: _A_UNUSED, TOKEN_BYTE: _A_BYTE}

# Tokens llama.cpp ends generation on (special_eog_ids); it makes them control tokens.
_EOG_NAMES = frozenset((
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
))
# Fill-in-the-middle tokens llama.cpp looks up by name when the file gives no id; found ones become control.
_FIM_NAMES = {
    ("fim_pre", "prefix"): ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
                            "<|code_prefix|>", "<|prefix|>"),
    ("fim_suf", "suffix"): ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
                            "<|code_suffix|>", "<|suffix|>"),
    ("fim_mid", "middle"): ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
                            "<|code_middle|>", "<|middle|>"),
    ("fim_pad", "fim_pad"): ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    ("fim_rep", "fim_rep"): ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    ("fim_sep", "fim_sep"): ("<|file_sep|>",),
}
_ALWAYS_RENDERED = ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>")  # gpt-oss: user-defined


def _meta_id(meta: Mapping[str, Any], key: str, n: int) -> int | None:
    value = meta.get(f"tokenizer.ggml.{key}_token_id")
    return int(value) if value is not None and 0 <= int(value) < n else None


def _token_attrs(meta: Mapping[str, Any], tokens: list[str], types: list[int], eog_ids: set[int]) -> list[int]:
    """Each token's llama.cpp attributes: from its type, then llama.cpp's by-name corrections."""
    attrs = [_TYPE_ATTR.get(t, _A_UNDEFINED) for t in types]
    vocab = {t: i for i, t in enumerate(tokens)}
    control = {vocab[t] for t in _EOG_NAMES if t in vocab}
    for (key, old_key), names in _FIM_NAMES.items():
        if _meta_id(meta, key, len(tokens)) is None and _meta_id(meta, old_key, len(tokens)) is None:
            control |= {vocab[t] for t in names if t in vocab}
    for i in control:
        attrs[i] |= _A_CONTROL
    for name in _ALWAYS_RENDERED:
        if name in vocab:
            attrs[vocab[name]] = _A_USER_DEFINED
    eog = {t for t in _EOG_NAMES if t in vocab} | {tokens[i] for i in eog_ids}
    has_call = bool({"<|call|>", "<|calls|>"} & eog)
    if "<|end|>" in eog and has_call and ({"<|return|>", "<|flush|>"} & eog):
        attrs[vocab["<|end|>"]] = _A_USER_DEFINED  # o200k_harmony, solar-open: <|end|> is not an end
    if "</s>" in eog and ({"<|tool_response>", "<|plamo:eos|>"} & eog):
        attrs[vocab["</s>"]] = _A_NORMAL  # gemma4: a normal </s>
    return attrs


def _strip_attrs(meta: Mapping[str, Any], tokens: list[str], attrs: list[int], special: list[int]) -> None:
    """llama.cpp's per-model lstrip/rstrip of the text around some special tokens."""
    vocab = {t: i for i, t in enumerate(tokens)}
    name = str(meta.get("general.name") or "").lower()
    pre = str(meta.get("tokenizer.ggml.pre") or "")
    arch = str(meta.get("general.architecture") or "")

    def set_attr(token: str, attr: int, on: bool) -> None:
        if token in vocab:
            attrs[vocab[token]] = attrs[vocab[token]] | attr if on else attrs[vocab[token]] & ~attr

    if any(s in pre for s in ("jina-v2-de", "jina-v2-es", "jina-v2-code")) or any(
            s in arch for s in ("nomic-bert-moe", "jina-bert-v3")):
        set_attr("<mask>", _A_LSTRIP, True)
    elif "phi-3" in name or "phi3" in name:
        for i in special:
            attrs[i] |= _A_RSTRIP
        set_attr("</s>", _A_RSTRIP, True)
        for token in ("<unk>", "<s>", "<|endoftext|>"):
            set_attr(token, _A_RSTRIP, False)
    elif "modern-bert" in name:
        set_attr("[MASK]", _A_LSTRIP, True)


@dataclass(frozen=True)
class _Special:
    """A token matched in raw text before tokenizing (llama.cpp's cache_special_tokens)."""

    text: str
    id: int
    control: bool  # control or unknown: skipped when parse_special is False
    lstrip: bool
    rstrip: bool


_C_SPACE = " \t\n\v\f\r"  # C isspace


def _cut(fragment: str, tok: _Special) -> list[str | int]:
    """`fragment` split at each occurrence of `tok` (tokenizer_st_partition for one token)."""
    out: list[str | int] = []
    while True:
        at = fragment.find(tok.text)
        if at < 0:
            break
        left = fragment[:at].rstrip(_C_SPACE) if tok.lstrip else fragment[:at]
        if left:
            out.append(left)
        out.append(tok.id)
        fragment = fragment[at + len(tok.text) :]
        if tok.rstrip:
            fragment = fragment.lstrip(_C_SPACE)
    if fragment:
        out.append(fragment)
    return out


def _partition(text: str, specials: list[_Special], parse_special: bool) -> list[str | int]:
    """Raw text fragments and special token ids, in order."""
    fragments: list[str | int] = [text] if text else []
    for tok in specials:
        if (tok.control and not parse_special) or tok.text not in text:
            continue
        new: list[str | int] = []
        for fragment in fragments:
            new.extend(_cut(fragment, tok) if isinstance(fragment, str) else (fragment,))
        fragments = new
    return fragments


# --- llama.cpp's tokenizer sessions -------------------------------------------------------


def _linked(n: int) -> tuple[list[int], list[int]]:
    return list(range(-1, n - 1)), [*range(1, n), -1]


def _bpe_merge(symbols: list[str], ranks: Mapping[tuple[str, str], int]) -> list[str]:
    """llm_tokenizer_bpe_session: merge adjacent symbols by lowest rank (then leftmost)."""
    prev, nxt = _linked(len(symbols))
    queue: list[tuple[int, int, int, str]] = []

    def push(left: int, right: int) -> None:
        if left >= 0 and right >= 0:
            rank = ranks.get((symbols[left], symbols[right]))
            if rank is not None:
                heapq.heappush(queue, (rank, left, right, symbols[left] + symbols[right]))

    for i in range(1, len(symbols)):
        push(i - 1, i)
    while queue:
        _, left, right, text = heapq.heappop(queue)
        if not symbols[left] or not symbols[right] or symbols[left] + symbols[right] != text:
            continue
        symbols[left], symbols[right] = text, ""
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prev[nxt[right]] = left
        push(prev[left], left)
        push(left, nxt[left])
    return [s for s in symbols if s]


def _spm_merge(symbols: list[str], vocab: Mapping[str, int], scores: list[float]) -> list[str]:
    """llm_tokenizer_spm_session: merge the adjacent pair forming the highest-scored token (then leftmost)."""
    prev, nxt = _linked(len(symbols))
    queue: list[tuple[float, int, int, int]] = []

    def push(left: int, right: int) -> None:
        if left >= 0 and right >= 0:
            token = vocab.get(symbols[left] + symbols[right])
            if token is not None:
                heapq.heappush(queue, (-scores[token], left, right, len(symbols[left]) + len(symbols[right])))

    for i in range(1, len(symbols)):
        push(i - 1, i)
    while queue:
        _, left, right, size = heapq.heappop(queue)
        if not symbols[left] or not symbols[right] or len(symbols[left]) + len(symbols[right]) != size:
            continue
        symbols[left], symbols[right] = symbols[left] + symbols[right], ""
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prev[nxt[right]] = left
        push(prev[left], left)
        push(left, nxt[left])
    return [s for s in symbols if s]


def _special_tokens(meta: Mapping[str, Any], tokens: list[str], types: list[int], eos_id: int | None) -> list[_Special]:
    """llama.cpp's cache_special_tokens: control, user-defined and unknown tokens, longest (in bytes) first."""
    n = len(tokens)
    eog = {i for i in (eos_id, _meta_id(meta, "eot", n), _meta_id(meta, "eom", n)) if i is not None}
    attrs = _token_attrs(meta, tokens, types, eog)
    ids = [i for i, a in enumerate(attrs) if a & (_A_CONTROL | _A_USER_DEFINED | _A_UNKNOWN)]
    ids.sort(key=lambda i: -len(tokens[i].encode()))
    _strip_attrs(meta, tokens, attrs, ids)
    return [_Special(tokens[i], i, bool(attrs[i] & (_A_CONTROL | _A_UNKNOWN)), bool(attrs[i] & _A_LSTRIP),
                     bool(attrs[i] & _A_RSTRIP)) for i in ids if tokens[i]]


def _merge_ranks(meta: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """llama.cpp's bpe_ranks: each merge's index in the file (the first one where a merge repeats)."""
    ranks: dict[tuple[str, str], int] = {}
    for rank, pair in enumerate(_split_merges(meta.get("tokenizer.ggml.merges") or [])):
        ranks.setdefault(pair, rank)
    return ranks


class _Encoder:
    """Text -> ids for one vocabulary, following llama_vocab::impl::tokenize."""

    def __init__(self, meta: Mapping[str, Any], tokens: list[str], types: list[int], spec: _Settings):
        self.spec = spec
        self.vocab = {token or f"[EMPTY_{i}]": i for i, token in enumerate(tokens)}
        self.specials = _special_tokens(meta, tokens, types, spec.eos_id)
        scores = meta.get("tokenizer.ggml.scores")
        self.scores = [0.0] * len(tokens) if scores is None else [float(s) for s in scores]
        self.scores += [0.0] * (len(tokens) - len(self.scores))
        self.ranks = _merge_ranks(meta) if spec.model != "llama" else {}
        self._words: dict[str, tuple[int, ...]] = {}

    def encode(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        """llama.cpp's tokenize(text, add_special, parse_special)."""
        spec = self.spec
        ids = [spec.bos_id] if add_special and spec.add_bos and spec.bos_id is not None else []
        after_special = True
        for fragment in _partition(text, self.specials, parse_special):
            if isinstance(fragment, int):
                ids.append(fragment)
                after_special = True
            elif spec.model == "llama":
                prefix = " " if spec.add_space_prefix and after_special else ""
                ids += self._spm(_escape(prefix + fragment))
                after_special = False
            else:
                ids += self._bpe(_escape(fragment) if spec.escape_whitespaces else fragment)
        if add_special and spec.add_eos and spec.eos_id is not None:
            ids.append(spec.eos_id)
        return ids

    def _spm(self, text: str) -> list[int]:
        ids = []
        for symbol in _spm_merge(list(text), self.vocab, self.scores):
            token = self.vocab.get(symbol)
            ids.extend([token] if token is not None else self._spm_bytes(symbol))
        return ids

    def _spm_bytes(self, symbol: str) -> list[int]:
        out = []
        for b in symbol.encode("utf-8"):
            token = self.vocab.get(f"<0x{b:02X}>")
            token = self.vocab.get(chr(b)) if token is None and b < 0x80 else token
            token = self.spec.unk_id if token is None else token
            if token is not None:
                out.append(token)
        return out

    def _bpe(self, text: str) -> list[int]:
        ids: list[int] = []
        for word in regex_split(text, self.spec.pre.regexes):
            cached = self._words.get(word)
            if cached is None:
                if len(self._words) > 100_000:
                    self._words.clear()
                cached = self._words[word] = tuple(self._bpe_word(word))
            ids += cached
        return ids

    def _bpe_word(self, word: str) -> list[int]:
        spec = self.spec
        if spec.pre.byte_encode:
            alphabet = _byte_alphabet()
            word = "".join(alphabet[b] for b in word.encode("utf-8"))
        whole = self.vocab.get(word)
        if whole is not None and ("ignore_merges" in spec.pre.flags or (
                spec.pre.type == "GEMMA4" and not word.strip("\n"))):
            return [whole]
        ids = []
        for symbol in _bpe_merge(list(word), self.ranks):
            token = self.vocab.get(symbol)
            ids.extend([token] if token is not None else self._bpe_bytes(symbol))
        return ids

    def _bpe_bytes(self, symbol: str) -> list[int]:
        if self.spec.pre.byte_encode:
            found = (self.vocab.get(chr(b)) if b < 0x80 else None for b in symbol.encode("utf-8"))
        else:
            found = (self.vocab.get(f"<0x{b:02X}>") for b in symbol.encode("utf-8"))
        return [t for t in found if t is not None]


def _escape(text: str) -> str:
    return text.replace(" ", "▁")


# --- settings read from the metadata, with llama.cpp's defaults ---------------------------


@dataclass(frozen=True)
class _Settings:
    """What llama.cpp reads from the metadata to tokenize (special ids, add_* flags, pre-tokenizer)."""

    model: str
    pre: _PreTokenizer
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool

    @property
    def escape_whitespaces(self) -> bool:
        """BPE vocabularies that write spaces as U+2581 (gemma4, sarvam-moe)."""
        return "escape_whitespaces" in self.pre.flags


def _pre_tokenizer(meta: Mapping[str, Any], model: str) -> _PreTokenizer:
    if model == "llama":  # SentencePiece: llama.cpp ignores tokenizer.ggml.pre
        return PRE_TOKENIZERS["default"]
    name = "gemma4" if model == "gemma4" else meta.get("tokenizer.ggml.pre")
    if not name:
        log.warning("the model file names no pre-tokenizer (tokenizer.ggml.pre); using llama.cpp's 'default'")
        return PRE_TOKENIZERS["default"]
    spec = PRE_TOKENIZERS.get(str(name))
    if spec is None:
        raise UnsupportedModelError(
            f"The model file's pre-tokenizer {str(name)!r} (metadata 'tokenizer.ggml.pre') is not one llama.cpp "
            f"knows, so its text cannot be split as the model expects (llama.cpp refuses such files too). "
            f"Convert the model again with a current llama.cpp, or use another GGUF file of it."
        )
    return spec


def _settings(meta: Mapping[str, Any], n: int) -> _Settings:
    """llama_vocab::impl::load's special ids and flags: per-type defaults, then the file's keys."""
    model = str(meta["tokenizer.ggml.model"])
    pre = _pre_tokenizer(meta, model)
    ids = {"llama": (1, 2, 0), "gemma4": (None, None, None)}.get(model, (11, 11, None))
    bos, eos, unk = (i if i is not None and i < n else None for i in ids)
    bos = None if "no_bos" in pre.flags else bos
    bos, eos, unk = (_id_or(meta, key, n, default) for key, default in (("bos", bos), ("eos", eos), ("unknown", unk)))
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", model == "llama" or "add_bos" in pre.flags))
    return _Settings(
        model=model, pre=pre, bos_id=bos, eos_id=eos, unk_id=unk,
        add_bos=add_bos or pre.type == "GEMMA4",
        add_eos=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        add_space_prefix=bool(meta.get("tokenizer.ggml.add_space_prefix", model == "llama")),
    )


def _id_or(meta: Mapping[str, Any], key: str, n: int, default: int | None) -> int | None:
    """The file's tokenizer.ggml.<key>_token_id if it is a valid id, else llama.cpp's default."""
    found = _meta_id(meta, key, n)
    return default if found is None else found


# --- the tokenizers.Tokenizer used for decoding and by llguidance --------------------------


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
        raise _bad_merges(str(exc)) from exc


def _bad_merges(detail: str) -> InvalidModelFileError:
    return InvalidModelFileError(
        f"The model file's tokenizer is inconsistent ({detail}): its merges name tokens that are not "
        f"in its vocabulary. Use another GGUF file of this model."
    )


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


def _check_merges(merges: list[tuple[str, str]], tokens: list[str]) -> None:
    """Refuse merges naming tokens the vocabulary lacks (llama.cpp would tokenize such a file wrongly)."""
    vocab = set(tokens)
    for left, right in merges:
        for token in (left, right, left + right):
            if token not in vocab:
                raise _bad_merges(f"merge {left!r} {right!r} needs {token!r}")


def _hf_splits(pre: _PreTokenizer) -> list[pre_tokenizers.PreTokenizer]:
    """The pre-tokenizer's regexes as `tokenizers` Splits (those its regex engine compiles)."""
    splits = []
    for expr in pre.regexes:
        try:
            splits.append(pre_tokenizers.Split(Regex(expr), behavior="isolated"))
        except Exception:  # a llama.cpp-only pattern such as \p{AFMoE_digits}
            log.debug("tokenizers cannot compile %r; left out of the decoding backend", expr)
    return splits


def _build_bpe_backend(meta: Mapping[str, Any], tokens: list[str], types: list[int], spec: _Settings) -> _Backend:
    """BPE (byte-level, or raw UTF-8 with <0xNN> fallback for gemma4-style files) with the file's splits."""
    raw_utf8 = not spec.pre.byte_encode
    vocab: dict[str, int] = {}
    for index, (token, kind) in enumerate(zip(tokens, types)):
        # Normal tokens must be in the byte alphabet; added tokens are matched on raw text.
        raw = raw_utf8 or kind in (TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNKNOWN)
        vocab[token if raw else _byte_level_spelling(token)] = index
    merges = _split_merges(meta.get("tokenizer.ggml.merges") or [])
    ignore = "ignore_merges" in spec.pre.flags
    backend = _Backend(_make_bpe(vocab, merges, ignore_merges=ignore, byte_fallback=raw_utf8))
    splits = _hf_splits(spec.pre)
    if raw_utf8:
        if spec.escape_whitespaces:
            backend.normalizer = normalizers.Replace(" ", "▁")
        backend.pre_tokenizer = pre_tokenizers.Sequence(splits)
        steps = [decoders.Replace("▁", " ")] if spec.escape_whitespaces else []
        backend.decoder = decoders.Sequence([*steps, decoders.ByteFallback(), decoders.Fuse()])
        return backend
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
    join of two pieces. (Encoding does not use these: it follows llama.cpp's
    score-driven merging directly; the `tokenizers` backend built from them
    serves decoding and llguidance.)
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


def _build_spm_backend(meta: Mapping[str, Any], tokens: list[str], types: list[int], spec: _Settings) -> _Backend:
    """SentencePiece-style BPE with byte fallback and a Metaspace pre-tokenizer."""
    vocab = {token: index for index, token in enumerate(tokens)}
    if "tokenizer.ggml.merges" in meta:
        merges = _split_merges(meta["tokenizer.ggml.merges"])
    else:
        scores = meta.get("tokenizer.ggml.scores")
        scores = [float(s) for s in scores] if scores is not None else [-float(i) for i in range(len(tokens))]
        merges = merges_from_scores(tokens, scores, types)
    unk = tokens[spec.unk_id] if spec.unk_id is not None else None
    byte_fallback = TOKEN_BYTE in types or "<0x00>" in vocab
    backend = _Backend(_make_bpe(vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=byte_fallback))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="first" if spec.add_space_prefix else "never", split=False
    )
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if spec.add_space_prefix:
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    backend.decoder = decoders.Sequence(steps)
    return backend


def _build_backend(meta: Mapping[str, Any], tokens: list[str], types: list[int], spec: _Settings) -> _Backend:
    build = _build_spm_backend if spec.model == "llama" else _build_bpe_backend
    backend = build(meta, tokens, types, spec)
    special, plain = _added_tokens(tokens, types, backend.get_vocab())
    backend.add_special_tokens(special)
    backend.add_tokens(plain)
    return backend


def _unsupported(model: Any) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"The model's tokenizer type is {model!r} (metadata 'tokenizer.ggml.model'), which wgllm does "
        f"not support: wgllm reads byte-level BPE ('gpt2', used by Llama 3, Qwen, SmolLM, Mistral "
        f"Nemo and most recent models; 'gemma4') and SentencePiece BPE ('llama', used by Llama 2, Mistral 7B, "
        f"TinyLlama, Phi-3 and Gemma 3) vocabularies. Pick a model whose GGUF uses one of these; other types "
        f"('t5', 'bert', 'rwkv', ...) belong to model families wgllm does not run."
    )


# --- the tokenizer ------------------------------------------------------------------


class Tokenizer:
    """A model's tokenizer: text <-> token ids, plus its special token ids.

    Attributes: `model` ('gpt2', 'llama' or 'gemma4'), `pre` (the pre-tokenizer
    name in the file), `add_bos` / `add_eos` (whether `encode(..., add_special=True)`
    adds them; llama.cpp's defaults when the file does not say).
    """

    def __init__(self, meta: Mapping[str, Any], tokens: list[str], types: list[int]):
        """Read the tokenizer metadata; use `from_gguf` / `from_metadata` instead."""
        self._meta = meta
        self._tokens = tokens
        self._types = types
        self._settings = _settings(meta, len(tokens))
        self._encoder = _Encoder(meta, tokens, types, self._settings)
        self._hf: _Backend | None = None
        self.model: str = self._settings.model
        self.pre: str | None = meta.get("tokenizer.ggml.pre")
        self._bos_id = self._settings.bos_id
        self._eos_id = self._settings.eos_id
        self._eot_id = self._valid_id(meta.get("tokenizer.ggml.eot_token_id"))
        self._eom_id = self._valid_id(meta.get("tokenizer.ggml.eom_token_id"))
        self.add_bos: bool = self._settings.add_bos
        self.add_eos: bool = self._settings.add_eos
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
        if model != "llama" and meta.get("tokenizer.ggml.pre") != "kimi-k2":
            _check_merges(_split_merges(_require(meta, "tokenizer.ggml.merges")), tokens)
        return cls(meta, tokens, types)

    @property
    def _backend(self) -> _Backend:
        """The `tokenizers.Tokenizer` for decoding (and llguidance), built on first use."""
        if self._hf is None:
            self._hf = _build_backend(self._meta, self._tokens, self._types, self._settings)
        return self._hf

    def _valid_id(self, token_id: Any) -> int | None:
        if token_id is None or not 0 <= int(token_id) < len(self._tokens):
            return None
        return int(token_id)

    def _find_stop_ids(self, template: Any) -> frozenset[int]:
        ids = {i for i in (self._eos_id, self._eot_id, self._eom_id) if i is not None}
        # Without a template, the turns end as the chat fallback for this vocabulary ends them.
        text = template if isinstance(template, str) and template else fallback_source(self._tokens)
        for marker in END_OF_TURN_TOKENS:
            token_id = self.token_to_id(marker)
            if marker in text and token_id is not None:
                ids.add(token_id)
        return frozenset(ids)

    # encoding / decoding

    def encode(self, text: str, add_special: bool = False, parse_special: bool = True) -> list[int]:
        """Token ids of `text`, as llama.cpp's `llama_tokenize(text, add_special, parse_special)` gives them.

        add_special: add BOS (and EOS) when the model's metadata asks for them
        (llama.cpp's defaults otherwise: BOS for SentencePiece and llama3-style files).
        parse_special: match special tokens written in the text (e.g. "<|im_start|>")
        as single tokens; False tokenizes control tokens as plain text (use it for
        untrusted text that must not inject them; user-defined tokens still match).
        """
        return self._encoder.encode(text, add_special, parse_special)

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of `ids`; bytes that do not form valid UTF-8 become U+FFFD."""
        return self._backend.decode(list(ids), skip_special_tokens=skip_special)

    def stream_decoder(self, skip_special: bool = False) -> StreamDecoder:
        """A `StreamDecoder` over this tokenizer."""
        return StreamDecoder(self, skip_special=skip_special)

    # vocabulary

    @property
    def bos_id(self) -> int | None:
        """Beginning-of-sequence token id (llama.cpp's default when the file names none; None if there is none)."""
        return self._bos_id

    @property
    def eos_id(self) -> int | None:
        """End-of-sequence token id (llama.cpp's default when the file names none; None if there is none)."""
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
        return self._encoder.vocab.get(token) if token else None

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
