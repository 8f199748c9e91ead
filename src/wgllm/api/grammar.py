"""Structured output (`response_format`) through llguidance.

Why llguidance rather than xgrammar: it builds its tokenizer straight from the
serialized `tokenizers.Tokenizer` that wgllm already makes from the GGUF
(`LLTokenizer(tokenizer_json)`, 0.2 s for a 49k vocabulary, no `transformers`
needed at run time), it compiles a JSON schema lazily (no up-front grammar
compilation per request; the first mask is ready in about a millisecond), its
wheel is abi3 for every CPython and carries no torch dependency, and it
computes masks on the CPU into a numpy bitmask, which is what the host-side
sampler needs. It is the library behind Guidance and llama.cpp's
`--grammar`-llguidance path and supports most of JSON Schema.

JSON is compiled without free whitespace (", " and ": " separators): a small
model that may emit whitespace between tokens can otherwise loop on
newlines until max_tokens, and the output would not parse.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from wgllm.errors import InvalidParameterError

if TYPE_CHECKING:  # pragma: no cover
    import llguidance

    from wgllm.api.protocol import ResponseFormat
    from wgllm.model.tokenizer import Tokenizer

JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_lock = threading.Lock()


def llg_tokenizer(tok: Tokenizer) -> llguidance.LLTokenizer:
    """llguidance's view of `tok` (built once per tokenizer, then cached on it)."""
    cached = getattr(tok, "_wgllm_llg", None)
    if cached is not None:
        return cached
    import llguidance

    with _lock:
        if getattr(tok, "_wgllm_llg", None) is None:
            backend = tok._backend  # the tokenizers.Tokenizer built from the GGUF
            tok._wgllm_llg = llguidance.LLTokenizer(backend.to_str(), n_vocab=tok.vocab_size,
                                                   eos_token=sorted(tok.stop_ids) or None)
    return tok._wgllm_llg


def grammar_for(fmt: ResponseFormat | None) -> str | None:
    """The llguidance grammar of a response_format (None for plain text)."""
    import llguidance

    if fmt is None or fmt.type == "text":
        return None
    schema: dict[str, Any] = {"type": "object"} if fmt.type == "json_object" else fmt.json_schema.schema_
    try:
        return llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)
    except (ValueError, TypeError) as exc:
        raise _bad_schema(str(exc)) from None


def check_grammar(tok: Tokenizer, grammar: str, param: str = "response_format") -> None:
    """Raise InvalidParameterError (naming `param`) if llguidance cannot compile `grammar` for this model."""
    import llguidance

    ok_or_error = llguidance.LLMatcher.validate_grammar(grammar, llg_tokenizer(tok))
    if ok_or_error and not ok_or_error.startswith("WARNING"):
        raise _bad_schema(ok_or_error, param)


def _bad_schema(detail: str, param: str = "response_format") -> InvalidParameterError:
    detail = detail.strip().splitlines()[0][:300] if detail.strip() else "unknown reason"
    return InvalidParameterError(
        f"Invalid request: '{param}': the JSON schema cannot be used to constrain the output "
        f"({detail}). Use a schema with the common keywords (type, properties, required, items, enum, "
        f"anyOf, minimum/maximum, minLength/maxLength, pattern, $ref to $defs).",
        param,
    )


class GrammarMask:
    """One generation's grammar state: the mask of allowed next tokens, advanced token by token."""

    def __init__(self, tok: Tokenizer, grammar: str):
        import llguidance
        import llguidance.numpy as llnp

        self._llnp = llnp
        self._llt = llg_tokenizer(tok)
        self._tok, self._grammar = tok, grammar
        self._matcher = llguidance.LLMatcher(self._llt, grammar, log_level=0)
        self._bits = llnp.allocate_token_bitmask(1, self._llt.vocab_size)
        self.consumed = 0  # tokens fed so far
        self._fed: list[int] = []  # the tokens the grammar took, in order

    def __getstate__(self) -> dict[str, Any]:
        """Pickled as its grammar and the tokens fed (for a worker process; see
        wgllm.runtime.channel, which sends the tokenizer as a reference to the worker's own)."""
        return {"tok": self._tok, "grammar": self._grammar, "fed": self._fed[: self.consumed]}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["tok"], state["grammar"])
        for t in state["fed"]:
            self.advance(t)

    def allowed(self, n_vocab: int) -> np.ndarray:
        """Boolean [n_vocab]: the tokens the grammar allows next (all False in an error state)."""
        if self._matcher.is_error():
            return np.zeros(n_vocab, dtype=bool)
        self._llnp.fill_next_token_bitmask(self._matcher, self._bits)
        bits = np.unpackbits(self._bits.view(np.uint8), bitorder="little").astype(bool)
        out = np.zeros(n_vocab, dtype=bool)
        m = min(n_vocab, bits.shape[0])
        out[:m] = bits[:m]
        return out

    def advance(self, token: int) -> None:
        """Feed the chosen token (a stop token at an accepting state ends the grammar)."""
        if self._matcher.consume_token(int(token)):
            del self._fed[self.consumed:]
            self._fed.append(int(token))
            self.consumed += 1

    def rollback_to(self, consumed: int) -> None:
        """Forget the tokens fed after the first `consumed` (a recovery replays them)."""
        if consumed < self.consumed and self._matcher.rollback(self.consumed - consumed):
            self.consumed = consumed


def token_bytes(tok: Tokenizer, token: int) -> bytes:
    """The exact bytes of one token (byte-level tokens may be part of a UTF-8 character)."""
    try:
        return llg_tokenizer(tok).decode_bytes([int(token)])
    except Exception:  # noqa: BLE001 - no llguidance view of this tokenizer: its text is the best we have
        return tok.decode([int(token)]).encode("utf-8")
