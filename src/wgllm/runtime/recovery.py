"""Recovery from GPU failures: policy, events, and the KV-cache log that makes replay exact.

When a device fails (see wgllm.gpu.health), the engine throws the device away,
builds a new one (same adapter first, with bounded retries and backoff; then,
if allowed, the next adapter the planner picks), re-uploads the weights and
rebuilds the KV cache by replaying exactly the passes that built it: the same
prefill chunks and the same one-token decode passes, so with the same adapter
every K/V value is bit-identical and greedy output equals the fault-free one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

from wgllm.errors import RequestError

log = logging.getLogger("wgllm.recovery")
log.addHandler(logging.NullHandler())  # a library does not print; applications configure logging


@dataclass
class RecoveryPolicy:
    """How the engine reacts to a GPU failure.

    enabled: recover at all (False: the caller gets the DeviceLostError; the
    conversation stays intact and the next call rebuilds the device).
    retries: rebuilds on the same adapter before falling back (an out-of-memory
    failure skips them: the same adapter would fail again). backoff_s: wait
    before the first retry, doubled for each further one. fallback: allow
    moving to the next adapter (discrete -> integrated -> CPU). fallback_same_gpu:
    also to the same GPU through another backend (e.g. Vulkan -> OpenGL); off by
    default: the same GPU shares the failure, and wgpu's OpenGL backend aborts the
    process under repeated device rebuilds (measured on lavapipe: an EGL BadAccess
    panic in wgpuDevicePoll). hang_timeout_s: a read-back that takes longer counts as a hang (None: never).
    """

    enabled: bool = True
    retries: int = 2
    backoff_s: float = 0.05
    fallback: bool = True
    fallback_same_gpu: bool = False
    hang_timeout_s: float | None = 120.0

    def validate(self) -> "RecoveryPolicy":
        if not isinstance(self.retries, int) or self.retries < 0:
            raise RequestError(f"recovery retries must be a non-negative integer, not {self.retries!r}.")
        if self.backoff_s < 0:
            raise RequestError(f"recovery backoff must be >= 0 seconds, not {self.backoff_s!r}.")
        if self.hang_timeout_s is not None and self.hang_timeout_s <= 0:
            raise RequestError(f"hang timeout must be > 0 seconds (or None), not {self.hang_timeout_s!r}.")
        return self

    @classmethod
    def off(cls) -> "RecoveryPolicy":
        return cls(enabled=False)


@dataclass
class RecoveryEvent:
    """One failure or recovery step. kind: the failure's reason ("lost",
    "out-of-memory", "hang", "unknown"; "crash": the worker process died, see
    wgllm.runtime.supervisor); action: "detected", "retry", "fallback",
    "continued", "failed" or "gave up"; duration_s: since detection."""

    time: float
    adapter: str
    kind: str
    action: str
    duration_s: float = 0.0
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def notice(self) -> str:
        """A one-line notice for people, e.g. 'GPU lost (out-of-memory); continued on X after 1.8 s'."""
        what = "GPU worker crash" if self.kind == "crash" else f"GPU {self.kind}"  # crash: see runtime.supervisor
        if self.action == "continued":
            return f"{what}; continued on {self.adapter} after {self.duration_s:.1f} s"
        return f"{what} on {self.adapter}: {self.action}" + (f" ({self.detail})" if self.detail else "")


class EventLog(list):
    """The engine's recovery events, also logged on `wgllm.recovery` and sent to listeners."""

    def __init__(self):
        super().__init__()
        self.listeners: list = []

    def add(self, adapter: str, kind: str, action: str, since: float | None = None, detail: str = "") -> RecoveryEvent:
        now = time.time()
        return self.relay(RecoveryEvent(now, adapter, kind, action, 0.0 if since is None else now - since, detail))

    def relay(self, ev: RecoveryEvent) -> RecoveryEvent:
        """Add an event as it is (one another engine's log made: a worker process's)."""
        self.append(ev)
        level = logging.INFO if ev.action in ("continued", "retry", "fallback") else logging.WARNING
        log.log(level, "%s", ev.notice())
        for fn in self.listeners:
            fn(ev)
        return ev

    @property
    def recoveries(self) -> int:
        return sum(1 for e in self if e.action == "continued")

    @property
    def failures(self) -> int:
        return sum(1 for e in self if e.action == "detected")


@dataclass
class Segment:
    """Tokens at positions start.. whose K/V were computed together: in prefill
    passes of up to `chunk` rows (chunked), or one decode pass per token."""

    start: int
    tokens: list[int] = field(default_factory=list)
    chunked: bool = False

    @property
    def end(self) -> int:
        return self.start + len(self.tokens)


def rewound(cached: list[int], log: list[Segment], prompt: list[int],
            emitted: list[int]) -> tuple[list[int], list[Segment]]:
    """The KV state computed for sure when a generation of `prompt` from state (`cached`, `log`)
    fails after yielding `emitted`: none of it if no token came out (the prefill reruns
    identically), else the prompt (as the one chunked segment its prefill ran) + emitted[:-1]."""
    cached, log = list(cached), list(log)
    if not emitted:
        return cached, log
    keep = min(common_prefix(cached, prompt), len(prompt) - 1)
    log = truncate(log, keep) + [Segment(keep, list(prompt[keep:]), True)]
    log += [Segment(len(prompt), list(emitted[:-1]), False)] if len(emitted) > 1 else []
    return list(prompt) + list(emitted[:-1]), log


def settled(cached: list[int], log: list[Segment], prompt: list[int],
            ran: list[int]) -> tuple[list[int], list[Segment]]:
    """The KV state after a generation of `prompt` whose generated tokens `ran` had their K/V
    computed: prompt + ran (unchanged when the prompt never completed: an error, max_tokens 0)."""
    if list(cached[: len(prompt)]) != list(prompt):
        return list(cached), list(log)
    return list(prompt) + list(ran), truncate(log, len(prompt)) + ([Segment(len(prompt), list(ran), False)] if ran else [])


def common_prefix(a, b) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def truncate(segments: list[Segment], keep: int) -> list[Segment]:
    """The segments that rebuild positions < keep exactly. A chunked segment across
    `keep` stays whole (its rows past keep are overwritten later); a one-token-per-pass
    segment is cut (each of its passes stands alone)."""
    out = []
    for seg in segments:
        if seg.start >= keep:
            continue
        if seg.end > keep and not seg.chunked:
            seg = Segment(seg.start, seg.tokens[: keep - seg.start], False)
        out.append(seg)
    return out
