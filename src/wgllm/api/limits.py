"""The ranges of generation options, in one place for the OpenAI API and the CLI.

`wgllm.api.protocol` builds its request fields' bounds from `LIMITS` (pydantic's
ge / gt / le / lt), and `wgllm.cli` checks `--max-tokens`, `--temperature`,
`--top-p`, ... against the same table before it loads a model, so both accept
and refuse the same values. This module imports nothing heavy (the CLI checks
options in the first milliseconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from wgllm.errors import InvalidParameterError

INT64 = 2**63


@dataclass(frozen=True)
class Range:
    """An interval of allowed values: [lo, hi], either end open or absent; `note` explains special values."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    note: str = ""

    def field(self) -> dict[str, float]:
        """The bounds as pydantic Field arguments (ge / gt / le / lt)."""
        out: dict[str, float] = {}
        if self.lo is not None:
            out["gt" if self.lo_open else "ge"] = self.lo
        if self.hi is not None:
            out["lt" if self.hi_open else "le"] = self.hi
        return out

    def contains(self, x: Any) -> bool:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return False
        if self.integer and not isinstance(x, int):
            return False
        if isinstance(x, float) and not math.isfinite(x):
            return False
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return not (self.hi is not None and (x >= self.hi if self.hi_open else x > self.hi))

    def describe(self) -> str:
        """The range in words: "between 0 and 2", "greater than 0 and at most 1", "at least 1", ..."""
        kind = "an integer, " if self.integer else ""
        lo = None if self.lo is None else (f"greater than {_num(self.lo)}" if self.lo_open else f"at least {_num(self.lo)}")
        hi = None if self.hi is None else (f"less than {_num(self.hi)}" if self.hi_open else f"at most {_num(self.hi)}")
        if self.lo is not None and self.hi is not None and not (self.lo_open or self.hi_open):
            text = f"between {_num(self.lo)} and {_num(self.hi)}"
        else:
            text = " and ".join(p for p in (lo, hi) if p) or "a number"
        return kind + text + (f" ({self.note})" if self.note else "")


def _num(x: float) -> str:
    if isinstance(x, int) and abs(x) >= 2**62:
        return f"-2**{int(math.log2(-x))}" if x < 0 else f"2**{int(math.log2(x))}"
    return f"{x:g}" if isinstance(x, float) else str(x)


LIMITS: dict[str, Range] = {
    "max_tokens": Range(1, integer=True),
    "temperature": Range(0.0, 2.0, note="0 = greedy"),
    "top_p": Range(0.0, 1.0, lo_open=True, note="1 = off"),
    "top_k": Range(0, integer=True, note="0 = off"),
    "min_p": Range(0.0, 1.0, note="0 = off"),
    "frequency_penalty": Range(-2.0, 2.0),
    "presence_penalty": Range(-2.0, 2.0),
    "seed": Range(-INT64, INT64, hi_open=True, integer=True),
    # wgllm's own (CLI and runtime; the OpenAI API has presence / frequency penalties instead)
    "repeat_penalty": Range(0.0, lo_open=True, note="1 = off"),
}


def check(name: str, value: Any, option: str | None = None) -> None:
    """Raise InvalidParameterError (param `name`) unless `value` is in `LIMITS[name]`; `option`
    is how the user wrote it (e.g. "--max-tokens"; default: the field's name)."""
    rng = LIMITS[name]
    if value is None or rng.contains(value):
        return
    raise InvalidParameterError(f"{option or name} must be {rng.describe()}, not {value!r}.", name)
