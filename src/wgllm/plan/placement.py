"""Splitting a model over adapters: layer ranges per adapter, each with its exact memory need.

A placement is a list of `Part`s, each an adapter and a (start, stop) range of
layers; the first part also holds the token embedding, the last the output
head (final norm, output matrix, sampling). Every part's estimate is the
metered build of that part alone (`wgllm.plan.memory.estimate(..., layers=)`),
checked against its own adapter's budget; nothing is allocated until the whole
placement fits. The hidden state crosses each cut through the host.

`parse_split` reads the user's `--split` (`auto`, `none`, or explicit
`0:0-19,1:20-31`: adapter index, first and last layer, inclusive);
`greedy` fills adapters in preference order, each with as many layers as fit;
`explicit` checks a user's placement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from wgllm.errors import RequestError, fmt_bytes
from wgllm.gpu.inventory import AdapterBudget
from wgllm.plan.memory import MemoryEstimate

SPLIT_POLICIES = ("auto", "none")

# (adapter, act, n_ctx, layers) -> (estimate or None, problems): the planner's check of one part
PartCheck = Callable[[AdapterBudget, str, int, tuple[int, int]], tuple[MemoryEstimate | None, list[str]]]


class Fit:
    """A configuration checked against an adapter: its `estimate` (None when it could not be
    built) and `problems` (empty: it fits)."""

    estimate: MemoryEstimate | None
    problems: list[str]

    @property
    def fits(self) -> bool:
        return not self.problems

    @property
    def need(self) -> int:
        return self.estimate.total if self.estimate else 0


@dataclass
class Part(Fit):
    """One adapter's share of a split model: layers [start, stop), and what it needs there."""

    adapter: AdapterBudget
    layers: tuple[int, int]
    estimate: MemoryEstimate | None
    problems: list[str] = field(default_factory=list)

    def describe(self, n_layers: int) -> str:
        """'layers 0-19 (+ embedding)' for people (inclusive ranges, as --split writes them)."""
        a, b = self.layers
        extra = [w for w, on in (("embedding", a == 0), ("output head", b == n_layers)) if on]
        return f"layers {a}-{b - 1}" + (f" (+ {', '.join(extra)})" if extra else "")

    def as_dict(self) -> dict:
        return {"adapter": self.adapter.index, "adapter_summary": self.adapter.summary, "layers": list(self.layers),
                "estimate": self.estimate.as_dict() if self.estimate else None, "problems": list(self.problems)}


def parse_split(spec: str | None, n_layers: int | None = None) -> str | list[tuple[int, int, int]]:
    """"auto" / "none", or an explicit placement [(adapter index, start, stop)] from
    "0:0-19,1:20-31" (inclusive layer ranges, in order, covering every layer once when
    `n_layers` is given). Raises RequestError saying what is wrong."""
    text = "auto" if spec is None else str(spec).strip().lower()
    if text in SPLIT_POLICIES or text == "":
        return text or "auto"
    out = []
    for item in text.split(","):
        idx, sep, rng = item.strip().partition(":")
        first, dash, last = rng.partition("-")
        if not (sep and dash and idx.strip().isdigit() and first.strip().isdigit() and last.strip().isdigit()):
            raise RequestError(
                f"'{item.strip()}' in --split '{spec}' is not ADAPTER:FIRST-LAST. Write auto, none, or parts such "
                f"as 0:0-19,1:20-31 (adapter index from `wgllm devices`, then the first and last layer, inclusive).")
        out.append((int(idx), int(first), int(last) + 1))
    _check_ranges(out, spec, n_layers)
    return out


def _check_ranges(parts: list[tuple[int, int, int]], spec, n_layers: int | None) -> None:
    expect = 0
    for idx, a, b in parts:
        if b <= a or a != expect:
            raise RequestError(
                f"--split '{spec}': the parts must be consecutive non-empty layer ranges starting at layer 0 "
                f"(part {idx}:{a}-{b - 1} should start at layer {expect}).")
        expect = b
    if n_layers is not None and expect != n_layers:
        raise RequestError(
            f"--split '{spec}' covers layers 0-{expect - 1}, but the model has {n_layers} layers (0-{n_layers - 1}): "
            f"the last part must end at layer {n_layers - 1}.")


def explicit(parts: list[tuple[int, int, int]], adapters: dict[int, AdapterBudget], act: str, n_ctx: int,
             check: PartCheck, usable: Callable[[AdapterBudget], int]) -> list[Part]:
    """The user's placement, each part checked; parts that share an adapter share its budget."""
    out, used = [], {}
    for idx, a, b in parts:
        ad = adapters[idx]
        est, problems = check(ad, act, n_ctx, (a, b))
        used[idx] = used.get(idx, 0) + (est.total if est else 0)
        if est is not None and used[idx] > usable(ad) and not problems:
            problems = [f"with the other parts on this adapter it needs {fmt_bytes(used[idx])} of {fmt_bytes(usable(ad))} usable"]
        out.append(Part(ad, (a, b), est, problems))
    return out


def greedy(cands: list[AdapterBudget], n_layers: int, act: str, n_ctx: int, check: PartCheck,
           usable: Callable[[AdapterBudget], int]) -> tuple[list[Part] | None, list[Part]]:
    """Fill `cands` in order, each with as many of the remaining layers as fit (the last part
    with the output head); adapters drawing on a memory pool already used (one GPU through two
    backends, system RAM for an integrated GPU and a CPU adapter) are skipped. Returns the
    placement (None if the layers do not all fit) and the parts tried (for the refusal)."""
    parts: list[Part] = []
    start, pools = 0, set()
    for ad in cands:
        pool = _pool(ad)
        if pool and pool in pools:
            continue
        part = _fill(ad, start, n_layers, act, n_ctx, check)
        if part is None:
            continue
        parts.append(part)
        if pool:
            pools.add(pool)
        start = part.layers[1]
        if start == n_layers:
            return parts, parts
    return None, parts


def _pool(ad: AdapterBudget) -> str:
    """The measured memory pool behind an adapter ('' for a user cap or unknown memory: its own)."""
    return ad.physical if ad.physical and ad.source not in ("user-cap", "unknown") else ""


def _fill(ad: AdapterBudget, start: int, n_layers: int, act: str, n_ctx: int, check: PartCheck) -> Part | None:
    """The part of `ad` from layer `start`: every remaining layer and the head if they fit, else
    the most layers that do (binary search: a part's need grows with its layers); None: not one."""
    est, problems = check(ad, act, n_ctx, (start, n_layers))
    if not problems:
        return Part(ad, (start, n_layers), est)
    lo, hi, best = 1, n_layers - start - 1, None  # layers [start, start + k) without the head
    while lo <= hi:
        k = (lo + hi) // 2
        est, problems = check(ad, act, n_ctx, (start, start + k))
        if problems:
            hi = k - 1
        else:
            best, lo = Part(ad, (start, start + k), est), k + 1
    return best


def total(parts: list[Part]) -> MemoryEstimate:
    """The parts' estimates added up (largest buffer and binding: the largest of any part)."""
    ests = [p.estimate for p in parts if p.estimate is not None]
    fields = ("weights", "kv_cache", "activations", "logits", "staging", "other", "n_buffers")
    sums = {f: sum(getattr(e, f) for e in ests) for f in fields}
    by_label: dict[str, int] = {}
    for e in ests:
        for k, v in e.by_label.items():
            by_label[k] = by_label.get(k, 0) + v
    return MemoryEstimate(**sums, largest_buffer=max(e.largest_buffer for e in ests),
                          largest_binding=max(e.largest_binding for e in ests), by_label=by_label)
