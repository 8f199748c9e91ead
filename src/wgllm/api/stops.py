"""Stop sequences on streamed text.

Text arrives a token at a time. `StopText.push` returns the text that is
certainly before any stop sequence: a tail that could be the start of one is
held back until the next piece shows whether it is. When a stop sequence
appears, everything before it is returned, `hit` is set, and nothing after it
is ever emitted (the stop sequence itself is not part of the output, as in
OpenAI's API).
"""

from __future__ import annotations

from collections.abc import Sequence


class StopText:
    """Filter streamed text through a set of stop sequences (see module doc)."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.hit: str | None = None  # the stop sequence found, once found
        self._held = ""

    def push(self, text: str) -> str:
        """Add generated text; return what can be emitted now ('' after a hit)."""
        if self.hit is not None:
            return ""
        buf = self._held + text
        found = [(buf.find(s), s) for s in self.stops if s in buf]
        if found:
            cut, self.hit = min(found)
            self._held = ""
            return buf[:cut]
        keep = self._partial_suffix(buf)
        self._held = buf[len(buf) - keep:]
        return buf[:len(buf) - keep]

    def flush(self) -> str:
        """At the end of generation: return what was held back (it was no stop sequence)."""
        out, self._held = self._held, ""
        return "" if self.hit is not None else out

    def _partial_suffix(self, buf: str) -> int:
        """Length of the longest suffix of `buf` that is a proper prefix of a stop sequence."""
        best = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), best, -1):
                if buf.endswith(s[:k]):
                    best = k
                    break
        return best
