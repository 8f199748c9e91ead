"""Token sampling on the host, in numpy (float64).

The chain follows llama.cpp's default order: repetition / presence /
frequency penalties over the last `repeat_last_n` tokens, then top-k, top-p,
min-p, temperature, and a draw from the remaining distribution. Greedy
decoding (temperature 0, or top_k 1) is the argmax after penalties.

Draws come from a `numpy.random.Generator` seeded from `SamplingParams.seed`,
so the same seed and the same sequence of logits give the same tokens; the
generator's state can be snapshot and restored to replay a generation.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from wgllm.errors import RequestError

# How many of the largest logits top-p first looks at before falling back to a full sort.
_TOP_P_PREFIX = 1024


@dataclass
class SamplingParams:
    """How to pick each next token.

    temperature: 0 means greedy; otherwise logits are divided by it (0 < T <= 2).
    top_k: keep the k most likely tokens (0 = off). top_p: keep the smallest
    set of most likely tokens whose probability sums to at least top_p (1 = off).
    min_p: drop tokens less likely than min_p times the most likely one (0 = off).
    repeat_penalty: divide positive (multiply negative) logits of recently seen
    tokens by it (1 = off). repeat_last_n: how many recent tokens the penalties
    look at (0 = none, -1 = all). presence_penalty / frequency_penalty: subtract
    from a seen token's logit once / once per occurrence. seed: RNG seed (None =
    fresh entropy); negative seeds are taken modulo 2**64.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None

    def validate(self) -> "SamplingParams":
        """Raise RequestError naming the first out-of-range value; return self when all are fine."""
        for name in ("temperature", "top_p", "min_p", "repeat_penalty",
                     "presence_penalty", "frequency_penalty"):
            _check(_is_real(getattr(self, name)), f"{name} must be a finite number, got {getattr(self, name)!r}")
        for name in ("top_k", "repeat_last_n"):
            _check(_is_int(getattr(self, name)), f"{name} must be an integer, got {getattr(self, name)!r}")
        _check(0.0 <= self.temperature <= 2.0, f"temperature must be between 0 and 2 (0 = greedy), got {self.temperature}")
        _check(self.top_k >= 0, f"top_k must be 0 (off) or a positive integer, got {self.top_k}")
        _check(0.0 < self.top_p <= 1.0, f"top_p must be in (0, 1] (1 = off), got {self.top_p}")
        _check(0.0 <= self.min_p <= 1.0, f"min_p must be between 0 and 1 (0 = off), got {self.min_p}")
        _check(self.repeat_penalty > 0.0, f"repeat_penalty must be greater than 0 (1 = off), got {self.repeat_penalty}")
        _check(self.repeat_last_n >= -1, f"repeat_last_n must be -1 (all), 0 (none) or positive, got {self.repeat_last_n}")
        for name in ("presence_penalty", "frequency_penalty"):
            _check(-2.0 <= getattr(self, name) <= 2.0, f"{name} must be between -2 and 2, got {getattr(self, name)}")
        _check(self.seed is None or _is_int(self.seed), f"seed must be an integer or None, got {self.seed!r}")
        return self

    @property
    def is_greedy(self) -> bool:
        """True when sampling is a deterministic argmax (temperature 0 or top_k 1)."""
        return self.temperature <= 0.0 or self.top_k == 1

    @property
    def has_penalties(self) -> bool:
        """True when any repetition/presence/frequency penalty changes logits."""
        active = self.repeat_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0
        return active and self.repeat_last_n != 0


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise RequestError(f"Invalid sampling parameter: {message}.")


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


# --- the filters (each takes and returns candidate ids and their logits) ---------------


def apply_penalties(logits: np.ndarray, history: Sequence[int], params: SamplingParams) -> np.ndarray:
    """Return a float64 copy of `logits` with llama.cpp's repetition penalties applied.

    Over the last `repeat_last_n` tokens of `history`: a seen token's logit is
    divided by repeat_penalty if positive (multiplied if not), then reduced by
    count * frequency_penalty + presence_penalty. Out-of-range ids are ignored.
    """
    out = np.array(logits, dtype=np.float64, copy=True)
    if not params.has_penalties or len(history) == 0:
        return out
    n = params.repeat_last_n
    recent = np.asarray(history if n < 0 else history[-n:], dtype=np.int64)
    recent = recent[(recent >= 0) & (recent < out.shape[0])]
    ids, counts = np.unique(recent, return_counts=True)
    vals = out[ids]
    vals = np.where(vals <= 0.0, vals * params.repeat_penalty, vals / params.repeat_penalty)
    out[ids] = vals - counts * params.frequency_penalty - params.presence_penalty
    return out


def _sorted_top(ids: np.ndarray, logits: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """At least the m largest candidates (all ties at the boundary kept), sorted by (-logit, id)."""
    if m < logits.shape[0]:
        thr = np.partition(logits, logits.shape[0] - m)[logits.shape[0] - m]
        keep = logits >= thr
        ids, logits = ids[keep], logits[keep]
    order = np.lexsort((ids, -logits))
    return ids[order], logits[order]


def top_k_filter(ids: np.ndarray, logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the k largest logits (ties broken toward lower ids); k <= 0 keeps all."""
    if k <= 0 or k >= logits.shape[0]:
        return ids, logits
    ids, logits = _sorted_top(ids, logits, k)
    return ids[:k], logits[:k]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax in float64."""
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(x - np.max(x))
    return e / e.sum()


def top_p_filter(ids: np.ndarray, logits: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep the most likely tokens up to and including the one where cumulative probability reaches p."""
    if p >= 1.0 or logits.shape[0] <= 1:
        return ids, logits
    mx = np.max(logits)
    total = np.exp(logits - mx).sum()
    m = min(_TOP_P_PREFIX, logits.shape[0])
    while True:
        s_ids, s_logits = _sorted_top(ids, logits, m)
        cum = np.cumsum(np.exp(s_logits - mx) / total)
        hit = np.flatnonzero(cum >= p)
        if hit.size or s_ids.shape[0] == logits.shape[0]:
            n = int(hit[0]) + 1 if hit.size else s_ids.shape[0]
            return s_ids[:n], s_logits[:n]
        m = min(m * 8, logits.shape[0])


def min_p_filter(ids: np.ndarray, logits: np.ndarray, min_p: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep tokens whose probability is at least min_p times the largest one (0 keeps all)."""
    if min_p <= 0.0 or logits.shape[0] <= 1:
        return ids, logits
    keep = logits >= np.max(logits) + math.log(min_p)
    return ids[keep], logits[keep]


def logprobs(logits: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k most likely token ids with their log-probabilities (log-softmax of `logits`), best first."""
    x = np.asarray(logits, dtype=np.float64)
    mx = np.max(x)
    lse = mx + math.log(np.exp(x - mx).sum())
    k = max(0, min(int(k), x.shape[0]))
    ids, vals = _sorted_top(np.arange(x.shape[0]), x, k) if k else (np.empty(0, int), x[:0])
    return [(int(i), float(v - lse)) for i, v in zip(ids[:k], vals[:k])]


# --- the sampler -----------------------------------------------------------------------------


class Sampler:
    """Picks tokens from logits per `SamplingParams`, with its own seeded RNG."""

    def __init__(self, params: SamplingParams | None = None):
        self.params = (params or SamplingParams()).validate()
        seed = self.params.seed
        self._rng = np.random.default_rng(None if seed is None else int(seed) % 2**64)

    @property
    def needs_logits(self) -> bool:
        """Whether the engine must read the logits back for this sampler. False only for
        plain greedy decoding, which the engine does with an argmax on the GPU. Subclasses
        that look at logits (logit bias, grammars, logprobs) return True."""
        return not self.params.is_greedy or self.params.has_penalties

    def sample(self, logits: np.ndarray, history: Sequence[int] = ()) -> int:
        """Pick the next token id from `logits` (shape [vocab]) given the tokens so far."""
        x = apply_penalties(_check_logits(logits), history, self.params)
        if self.params.is_greedy:
            return int(np.argmax(x))
        ids, x = top_k_filter(np.arange(x.shape[0]), x, self.params.top_k)
        ids, x = top_p_filter(ids, x, self.params.top_p)
        ids, x = min_p_filter(ids, x, self.params.min_p)
        return self._draw(ids, (x - np.max(x)) / self.params.temperature)  # no overflow for tiny T

    def _draw(self, ids: np.ndarray, logits: np.ndarray) -> int:
        order = np.argsort(ids, kind="stable")  # draw over ascending ids: path-independent
        ids, probs = ids[order], softmax(logits[order])
        cdf = np.cumsum(probs)
        j = int(np.searchsorted(cdf, self._rng.random() * cdf[-1], side="right"))
        return int(ids[min(j, ids.shape[0] - 1)])

    def state(self) -> dict[str, Any]:
        """A snapshot of the RNG state (a plain dict), for `set_state`."""
        return copy.deepcopy(self._rng.bit_generator.state)

    def advance(self, tokens: Sequence[int]) -> None:
        """Bring what follows the chosen tokens past `tokens`, chosen by another copy of this sampler
        (in a worker process that died); nothing in the base class (its RNG is restored with `set_state`)."""

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore an RNG snapshot taken with `state`; later draws repeat those after the snapshot."""
        self._rng.bit_generator.state = copy.deepcopy(state)

    logprobs = staticmethod(logprobs)


def _check_logits(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits)
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"logits must be a non-empty 1-D array, got shape {x.shape}")
    if np.isnan(x).any() or not np.isfinite(np.max(x)):
        raise ValueError("logits contain NaN, or no finite value; the model produced garbage")
    return x
