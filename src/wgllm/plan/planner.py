"""The planner: which adapter, precision, KV dtype and context a model gets, and why.

`make_plan(layout, adapters, ctx=..., policy=..., precision=...)` tries
configurations against each adapter's memory budget and limits, using the
exact memory estimate of `wgllm.plan.memory`, and returns the first that
fits as a `Plan` whose `reasons` say, in one sentence per decision, why. It
allocates nothing and imports no `wgpu`. When nothing fits it raises
`ModelTooLargeError` listing, per adapter, what is needed and what is
available, with alternatives that were checked to fit.

Rules
-----
* Fit: every buffer within max-buffer-size, every storage binding within
  max-storage-buffer-binding-size (weights are split into chunks that fit a
  binding; a layer's K or V cache is one binding: Web-LLM's
  `buffer_size_required_bytes` check), and the estimate at most
  (1 - HEADROOM) = 90% of the adapter's budget. The budget already keeps the
  inventory's margin free (max(5%, 512 MiB) of a dedicated GPU, max(10%,
  1 GiB) of system RAM); the further 10% covers what the estimate cannot see:
  the driver's own allocations, pipelines and bind groups, allocator rounding,
  `queue.read_buffer`'s temporary copies, and the all-position logits buffer
  `Engine.logits` makes on first use. (Ollama keeps 20% of free memory; our
  estimate is exact to the byte for the engine's own buffers, so 10% does.)
* Context: a context the user asked for is kept, or the plan fails. Without
  one the default is min(training context, DEFAULT_CTX = 4096); if nothing
  holds it, it is halved through powers of two down to MIN_AUTO_CTX (512, or
  the default if smaller), and the plan says so (`ctx_reduced`).
* Precision: "auto" is f16 on a GPU with shader-f16 (half the KV cache and
  activation memory) and f32 on a CPU adapter (f16 is emulated there and
  measured slower) or without shader-f16; on a CPU adapter with shader-f16,
  f16 is used when f32 would not fit. The KV cache has the activation dtype.
* Policies: "auto" prefers discrete, then integrated, then other GPUs, native
  backends (Vulkan/Metal/D3D12) before OpenGL; it keeps the context across
  GPUs (a full context on an integrated GPU beats a cut one on a discrete
  GPU) but cuts the context on a GPU before falling back to a CPU adapter.
  "high-performance": same order, but cuts the context on the fastest adapter
  before trying the next. "low-power": integrated first, then discrete, then
  CPU, context kept as in auto. An index or a name substring: that adapter
  only (AdapterNotFoundError if none matches).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator, Union

from wgllm.errors import (AdapterNotFoundError, FeatureMissingError, ModelTooLargeError, NoAdapterError, RequestError,
                          fmt_bytes)
from wgllm.gpu.inventory import AdapterBudget
from wgllm.kernels.constants import MAX_BATCH
from wgllm.kernels.qtypes import runnable_types
from wgllm.model import arch as _arch
from wgllm.plan import catalog
from wgllm.plan import placement
from wgllm.plan.layout import ModelLayout
from wgllm.plan.memory import MemoryEstimate, estimate, kv_bytes_per_token
from wgllm.plan.placement import Fit, Part

HEADROOM = 0.10  # share of the budget a plan leaves free (see module doc)
DEFAULT_CTX = 4096
MIN_AUTO_CTX = 512  # automatic context reduction stops here
MIN_ALT_CTX = 128  # smallest context offered as an alternative
MIN_CTX = 8
POLICIES = ("auto", "high-performance", "low-power")
RUNNABLE_TYPES = runnable_types()  # the engine's kernels read these
MiB, GiB = 1 << 20, 1 << 30
_KIND_ORDER = {
    "auto": ("discrete", "integrated", "virtual", "unknown", "cpu"),
    "high-performance": ("discrete", "integrated", "virtual", "unknown", "cpu"),
    "low-power": ("integrated", "discrete", "virtual", "unknown", "cpu"),
}
_BACKEND_RANK = {"Vulkan": 0, "Metal": 0, "D3D12": 0, "OpenGL": 2}

Policy = Union[str, int, None]


def usable(adapter: AdapterBudget) -> int:
    """Bytes a plan may use on `adapter`: (1 - HEADROOM) of its (planning) budget."""
    return int(adapter.planning_budget * (1 - HEADROOM))


def default_ctx(layout: ModelLayout) -> int:
    """The context used when none is asked for: min(training context, DEFAULT_CTX)."""
    return min(layout.n_ctx_train, DEFAULT_CTX) if layout.n_ctx_train > 0 else DEFAULT_CTX


def ctx_ladder(layout: ModelLayout, ctx: int | None) -> list[int]:
    """Contexts to try, best first: [ctx] when asked for, else the default then halvings to the floor."""
    if ctx is not None:
        return [int(ctx)]
    top = default_ctx(layout)
    floor = min(MIN_AUTO_CTX, top)
    out, c = [top], _pow2_below(top)
    while c >= floor:
        out.append(c)
        c //= 2
    return out


def _pow2_below(n: int) -> int:
    """The largest power of two strictly below n (0 for n <= 1)."""
    return 1 << (n - 1).bit_length() - 1 if n > 1 else 0


@lru_cache(maxsize=4096)
def _estimate(layout: ModelLayout, n_ctx: int, act: str, chunk: int, max_binding: int,
              max_buffer: int, layers: tuple[int, int] | None = None, kind: str = "gpu") -> MemoryEstimate:
    return estimate(layout, n_ctx=n_ctx, act=act, chunk=chunk, max_binding=max_binding, max_buffer=max_buffer,
                    layers=layers, kind=kind)


def runnable(layout: ModelLayout) -> tuple[bool, str]:
    """Whether this version of wgllm can run `layout`, and a sentence saying so."""
    if layout.arch not in _arch.SUPPORTED:
        return False, (f"{layout.arch} is described for planning only: it is not runnable by this version of "
                       f"wgllm, which runs {', '.join(_arch.SUPPORTED)} (the estimate is as if it did).")
    bad = sorted({t.ggml_type for t in layout.tensors} - RUNNABLE_TYPES)
    if bad:
        return False, (f"Its tensors of type {', '.join(bad)} are not runnable by this version of wgllm "
                       f"(it reads {', '.join(sorted(RUNNABLE_TYPES))}); a Q4_0, Q4_1 or Q8_0 file would be.")
    return True, f"{layout.arch} with tensor types {', '.join(sorted({t.ggml_type for t in layout.tensors}))}: runnable."


# --- trying configurations ---------------------------------------------------------------


@dataclass
class Trial(Fit):
    """One configuration tried on one adapter; `problems` empty means it fits."""

    adapter: AdapterBudget
    precision: str
    n_ctx: int
    estimate: MemoryEstimate | None
    problems: list[str]
    chunk: int = 128


def default_chunk(adapter: AdapterBudget) -> int:
    """Prefill tokens per pass when not asked for: 32 on a CPU adapter (the CPU kernels gain
    nothing from longer passes, and a pass there takes ~0.5 s: progress and Ctrl-C stay prompt),
    128 elsewhere."""
    return 32 if adapter.kind == "cpu" else 128


def check(layout: ModelLayout, adapter: AdapterBudget, act: str, n_ctx: int, chunk: int | None = None,
          layers: tuple[int, int] | None = None) -> Trial:
    """Try `layout` at (act, n_ctx) on `adapter` with prefill passes of `chunk` tokens (None:
    `default_chunk`): limits and memory (see module doc). `layers`: only the part of a split
    model holding that (start, stop) layer range."""
    chunk = chunk or default_chunk(adapter)
    if layers is not None and tuple(layers) == (0, layout.n_layers):
        layers = None  # the whole model: one cache entry
    try:
        est = _estimate(layout, int(n_ctx), act, int(chunk), adapter.max_storage_binding, adapter.max_buffer_size,
                        None if layers is None else tuple(layers), "cpu" if adapter.kind == "cpu" else "gpu")
    except ValueError as exc:  # a weight row larger than a binding
        return Trial(adapter, act, n_ctx, None, [str(exc)], chunk)
    problems = est.limit_problems(adapter.max_buffer_size, adapter.max_storage_binding)
    if est.total > usable(adapter):
        problems.append(f"it needs {fmt_bytes(est.total)} but {fmt_bytes(usable(adapter))} is usable "
                        f"({1 - HEADROOM:.0%} of the {fmt_bytes(adapter.planning_budget)} budget)")
    return Trial(adapter, act, n_ctx, est, problems, chunk)


def precisions(requested: str, adapter: AdapterBudget) -> list[str]:
    """Precisions to try on `adapter`, best first (empty: f16 asked for, and missing)."""
    if requested == "f16":
        return ["f16"] if adapter.shader_f16 else []
    if requested == "f32":
        return ["f32"]
    # f16 where the adapter has it: on GPUs it halves memory and traffic, and on a CPU adapter
    # (lavapipe) the CPU kernels read f16 activations 8 per load and were measured faster
    # (bench/RESULTS.md: prefill +30%, decode equal).
    return ["f16"] if adapter.shader_f16 else ["f32"]


def _order(adapters: list[AdapterBudget], policy: str) -> list[AdapterBudget]:
    kinds = _KIND_ORDER.get(policy, _KIND_ORDER["auto"])
    return sorted(adapters, key=lambda a: (_BACKEND_RANK.get(a.backend, 1),
                                           kinds.index(a.kind) if a.kind in kinds else len(kinds), a.index))


def select_adapters(adapters: list[AdapterBudget], policy: Policy) -> tuple[list[AdapterBudget], str]:
    """The candidate adapters of `policy`, in preference order, and the policy's name
    ("auto", "high-performance", "low-power", "index" or "name")."""
    if not adapters:
        raise NoAdapterError()
    spec = "auto" if policy is None or policy == "" else policy
    if isinstance(spec, int) or str(spec).strip().isdigit():
        found = [a for a in adapters if a.index == int(spec)]
        if found:
            return found, "index"
    elif str(spec).strip().lower() in POLICIES:
        return _order(adapters, str(spec).strip().lower()), str(spec).strip().lower()
    else:
        found = [a for a in adapters if str(spec).strip().lower() in a.summary.lower()]
        if found:
            return _order(found, "auto"), "name"
    listing = "; ".join(f"{a.index}: {a.summary}" for a in adapters)
    raise AdapterNotFoundError(
        f"No WebGPU adapter matches '{spec}'. The adapters here are: {listing}. Pass an index, a part of a "
        f"name, or a policy ({', '.join(POLICIES)}); `wgllm devices` lists them.")


def _pairs(cands: list[AdapterBudget], ladder: list[int], adapter_first: bool
           ) -> Iterator[tuple[AdapterBudget, int]]:
    """(adapter, ctx) in search order: GPUs before CPU adapters; within each, context-first
    (keep the context, change adapter) or adapter-first (keep the adapter, cut the context)."""
    for tier in ([a for a in cands if a.kind != "cpu"], [a for a in cands if a.kind == "cpu"]):
        if adapter_first:
            yield from ((a, c) for a in tier for c in ladder)
        else:
            yield from ((a, c) for c in ladder for a in tier)


def search(layout: ModelLayout, cands: list[AdapterBudget], ladder: list[int], precision: str,
           chunk: int | None = None, adapter_first: bool = False) -> tuple[Trial | None, list[Trial]]:
    """The first configuration that fits (or None), and every trial made."""
    trials: list[Trial] = []
    for adapter, n_ctx in _pairs(cands, ladder, adapter_first):
        for act in precisions(precision, adapter):
            trials.append(check(layout, adapter, act, n_ctx, chunk))
            if trials[-1].fits:
                return trials[-1], trials
    return None, trials


# --- the plan ------------------------------------------------------------------------------


@dataclass
class Plan:
    """Where and how a model runs: adapter, precision, KV dtype, context, memory; `reasons`
    holds one plain sentence per decision (keys: model, adapter, precision, kv_dtype, n_ctx,
    budget, headroom, limits)."""

    adapter: AdapterBudget
    precision: str
    kv_dtype: str
    n_ctx: int
    estimate: MemoryEstimate
    headroom: int  # bytes of the budget left free
    reasons: dict[str, str]
    ctx_reduced: bool = False
    model: str = ""
    arch: str = ""
    quantization: str = ""
    runnable: bool = True
    budget: int = 0  # bytes: the adapter's planning budget (the Device's budget)
    requested_ctx: int | None = None
    policy: str = "auto"
    chunk: int = 128
    parts: list[Part] = field(default_factory=list)  # the placement: one part, or one per adapter of a split
    split: str = "auto"  # the split policy asked for: auto, none, or the explicit placement
    n_seq: int = 1  # sequences served at once (continuous batching), each with a context of n_ctx

    @property
    def is_split(self) -> bool:
        return len(self.parts) > 1

    def as_dict(self) -> dict:
        """Everything, JSON-ready (for `wgllm plan --json`)."""
        return {"split": self.split, "parts": [p.as_dict() for p in self.parts], **self._single_dict()}

    def _single_dict(self) -> dict:
        return {
            "model": self.model, "arch": self.arch, "quantization": self.quantization, "runnable": self.runnable,
            "adapter": self.adapter.as_dict(), "policy": self.policy, "precision": self.precision,
            "kv_dtype": self.kv_dtype, "n_ctx": self.n_ctx, "requested_ctx": self.requested_ctx,
            "ctx_reduced": self.ctx_reduced, "chunk": self.chunk, "parallel": self.n_seq, "budget": self.budget,
            "usable": usable(self.adapter), "headroom": self.headroom, "headroom_rule": HEADROOM,
            "estimate": self.estimate.as_dict(), "reasons": dict(self.reasons),
        }

    def explain(self) -> list[str]:
        """The plan for people: one line per decision."""
        e = self.estimate
        memory = (f"Memory: {fmt_bytes(e.total)} (weights {fmt_bytes(e.weights)}, KV cache "
                  f"{fmt_bytes(e.kv_cache)}, activations {fmt_bytes(e.activations)}, logits "
                  f"{fmt_bytes(e.logits)}, other {fmt_bytes(e.other + e.staging)}) " +
                  ("in all, per part below." if self.is_split else f"of a {fmt_bytes(self.budget)} budget."))
        titles = {"model": "Model", "adapter": "Adapter", "placement": "Placement", "precision": "Precision",
                  "kv_dtype": "KV cache", "n_ctx": "Context", "parallel": "Parallel", "budget": "Budget",
                  "headroom": "Headroom", "limits": "Limits"}
        lines = [f"{titles.get(k, k)}: {v}" for k, v in self.reasons.items()]
        lines.insert(min(5, len(lines)), memory)
        if self.is_split:
            n = self.parts[-1].layers[1]
            lines += [f"Part {k + 1}: {p.describe(n)} on {p.adapter.summary}, {fmt_bytes(p.need)} (weights "
                      f"{fmt_bytes(p.estimate.weights)}, KV {fmt_bytes(p.estimate.kv_cache)}, activations "
                      f"{fmt_bytes(p.estimate.activations + p.estimate.logits)}, other "
                      f"{fmt_bytes(p.estimate.other + p.estimate.staging)}) of {fmt_bytes(usable(p.adapter))} usable"
                      for k, p in enumerate(self.parts)]
        return lines


def _validate(ctx: int | None, precision: str, chunk: int | None) -> None:
    if precision not in ("auto", "f16", "f32"):
        raise RequestError(f"precision must be auto, f16 or f32, not '{precision}'.")
    if ctx is not None and (int(ctx) != ctx or ctx < MIN_CTX):
        raise RequestError(f"ctx must be at least {MIN_CTX} tokens, not {ctx}.")
    if chunk is not None and chunk < 1:
        raise RequestError(f"chunk must be at least 1 token, not {chunk}.")


def _check_f16(cands: list[AdapterBudget], precision: str, how: str) -> None:
    if precision == "f16" and not any(a.shader_f16 for a in cands):
        which = cands[0].summary if len(cands) == 1 else "none of the adapters"
        raise FeatureMissingError(
            f"f16 precision was asked for, but {which} lacks the shader-f16 feature. Use --precision f32 "
            f"(or auto){' or another adapter (--device)' if how in ('index', 'name') else ''}.")


def make_plan(layout: ModelLayout, adapters: list[AdapterBudget], *, ctx: int | None = None,
              policy: Policy = "auto", precision: str = "auto", chunk: int | None = None,
              split: str | None = "auto", parallel: int = 1) -> Plan:
    """Plan `layout` on one of `adapters`, or split over several (see module doc for the rules).

    parallel: sequences served at once (continuous batching): the KV cache holds that many
    contexts of `ctx` tokens each (ctx is per sequence), all counted in the memory estimate.
    ctx: tokens, or None for the default (which may then be reduced).
    policy: "auto", "high-performance", "low-power", an adapter index or a name
    substring. chunk: prefill tokens per pass (None: `default_chunk` of each adapter).
    split: "auto" (split over the policy's adapters when no single one holds the model),
    "none", or an explicit placement "0:0-19,1:20-31" (see wgllm.plan.placement).
    Raises ModelTooLargeError (nothing fits; alternatives listed),
    AdapterNotFoundError, FeatureMissingError, NoAdapterError, RequestError."""
    _validate(ctx, precision, chunk)
    if not isinstance(parallel, int) or not 1 <= parallel <= MAX_BATCH:
        raise RequestError(f"parallel must be a whole number of sequences from 1 to {MAX_BATCH}, not {parallel!r}.")
    layout = dataclasses.replace(layout, n_seq=parallel)
    plan = _make_plan(layout, adapters, ctx, policy, precision, chunk, split)
    plan.n_seq = parallel
    if parallel > 1:
        plan.reasons["parallel"] = (
            f"{parallel} sequences at once (continuous batching), each with a context of {plan.n_ctx} tokens "
            f"(--ctx is per sequence): the KV cache holds {parallel} x {plan.n_ctx} tokens, "
            f"{fmt_bytes(plan.estimate.kv_cache)}.")
    return plan


def _make_plan(layout: ModelLayout, adapters: list[AdapterBudget], ctx, policy, precision, chunk, split) -> Plan:
    how_split = placement.parse_split(split, layout.n_layers)
    ladder = ctx_ladder(layout, ctx)
    if isinstance(how_split, list):
        return _explicit_plan(layout, adapters, how_split, ladder, ctx, precision, chunk, str(split))
    cands, how = select_adapters(adapters, policy)
    _check_f16(cands, precision, how)
    found, trials, tried = _find(layout, cands, ladder, precision, chunk, how, how_split == "auto")
    if found is None:
        raise too_large(layout, adapters, cands, ladder, precision, chunk, ctx, trials, tried)
    if isinstance(found, Trial):
        plan = _build(layout, found, trials, cands, how, policy, ladder, ctx, precision, chunk)
        plan.split = how_split
        return plan
    parts, act, n_ctx, split_chunk = found
    return _split_plan(layout, parts, act, n_ctx, ladder, ctx, precision, policy, how_split, trials, split_chunk)


def _find(layout: ModelLayout, cands: list[AdapterBudget], ladder: list[int], precision: str, chunk: int | None,
          how: str = "auto", split: bool = True):
    """The first configuration of the search order (`_steps`) that fits: a Trial (one adapter) or
    (parts, act, n_ctx, chunk) (a split), or None; with every single-adapter trial and the parts of
    the split that got furthest."""
    trials: list[Trial] = []
    tried: list[Part] = []
    for kind, group, ctxs in _steps(cands, split, ladder, how == "high-performance"):
        if kind == "single":
            found, more = search(layout, group, ctxs, precision, chunk, how == "high-performance")
            trials += more
            if found is not None:
                return found, trials, tried
        else:
            got = _split_search(layout, group, ctxs, precision, chunk)
            if got[0] is not None:
                return (got[0], got[1], got[2], got[4]), trials, tried
            tried = got[3] or tried
    return None, trials, tried


def _steps(cands: list[AdapterBudget], split: bool, ladder: list[int], adapter_first: bool
           ) -> Iterator[tuple[str, list[AdapterBudget], list[int]]]:
    """(kind, adapters, contexts) in search order. First the GPUs: one adapter of the best GPU
    kind, a split over the GPUs, one of the other GPUs; then with CPU adapters: a split over GPUs
    and CPU adapters (partial offload), one CPU adapter, a split over CPU adapters. Within each
    round the context comes first (it is kept, the adapters change) unless `adapter_first`
    (high-performance: the context is cut on the fastest adapter first). Without `split`, the
    single-adapter steps only."""
    gpus = [a for a in cands if a.kind != "cpu"]
    cpus = [a for a in cands if a.kind == "cpu"]
    best = [a for a in gpus if a.kind == gpus[0].kind] if gpus else []
    rounds = ([("single", best), ("split", gpus), ("single", [a for a in gpus if a not in best])],
              [("split", cands if gpus and cpus else []), ("single", cpus), ("split", cpus)])
    for steps in rounds:
        steps = [(k, g) for k, g in steps if g and (k == "single" or (split and len(g) > 1))]
        if adapter_first:
            yield from ((k, g, ladder) for k, g in steps)
        else:
            yield from ((k, g, [c]) for c in ladder for k, g in steps)


def _split_search(layout: ModelLayout, cands: list[AdapterBudget], ladder: list[int], precision: str,
                  chunk: int | None):
    """(parts, act, n_ctx, tried): the first greedy split over `cands` that fits, context first
    (f16 over the adapters that have it, then f32 over all, for "auto"), or (None, ..., tried)."""
    chunk = chunk or min(default_chunk(a) for a in cands)
    tried: list[Part] = []
    for n_ctx in ladder:
        for act, group in _split_precisions(precision, cands):
            parts, tried_now = placement.greedy(group, layout.n_layers, act, n_ctx,
                                                _part_check(layout, chunk), usable)
            tried = tried or tried_now
            if parts is not None and len(parts) > 1:
                return parts, act, n_ctx, parts, chunk
    return None, None, None, tried, chunk


def _split_precisions(precision: str, cands: list[AdapterBudget]) -> list[tuple[str, list[AdapterBudget]]]:
    f16 = [a for a in cands if a.shader_f16]
    if precision == "f32":
        return [("f32", cands)]
    if precision == "f16":
        return [("f16", f16)] if len(f16) > 1 else []
    return ([("f16", f16)] if len(f16) > 1 else []) + ([("f32", cands)] if len(f16) < len(cands) else [])


def _part_check(layout: ModelLayout, chunk: int):
    def part_check(adapter: AdapterBudget, act: str, n_ctx: int, layers: tuple[int, int]):
        t = check(layout, adapter, act, n_ctx, chunk, layers)
        return t.estimate, t.problems
    return part_check


def _explicit_plan(layout, adapters, spec: list[tuple[int, int, int]], ladder, ctx, precision, chunk,
                   text: str) -> Plan:
    """The user's placement at the first context of the ladder where every part fits."""
    by_index = {a.index: a for a in adapters}
    missing = sorted({i for i, _, _ in spec} - set(by_index))
    if missing:
        listing = "; ".join(f"{a.index}: {a.summary}" for a in adapters)
        raise AdapterNotFoundError(f"--split names adapter {missing[0]}, which is not here. The adapters are: "
                                   f"{listing}.")
    used = [by_index[i] for i, _, _ in spec]
    acts = ["f16"] if precision != "f32" and all(a.shader_f16 for a in used) else ["f32"]
    if precision == "f16" and acts != ["f16"]:
        _check_f16([a for a in used if not a.shader_f16][:1], "f16", "index")
    chunk = chunk or min(default_chunk(a) for a in used)
    parts: list[Part] = []
    for n_ctx in ladder:
        parts = placement.explicit(spec, by_index, acts[0], n_ctx, _part_check(layout, chunk), usable)
        if all(p.fits for p in parts):
            return _split_plan(layout, parts, acts[0], n_ctx, ladder, ctx, precision, "index", text, [], chunk)
    lines = "; ".join(f"{p.describe(layout.n_layers)} on {p.adapter.summary} needs {fmt_bytes(p.need)} and has "
                      f"{fmt_bytes(usable(p.adapter))} usable" + (f" ({p.problems[0]})" if p.problems else "")
                      for p in parts)
    raise ModelTooLargeError(f"{layout.name} does not fit the placement --split {text} at {ladder[-1]} tokens: "
                             f"{lines}. Nothing was allocated. Try --split auto, or move layers to the adapter "
                             f"with room.", needs=[(p.adapter.summary, p.need, usable(p.adapter)) for p in parts])


def _split_plan(layout, parts: list[Part], act: str, n_ctx: int, ladder, ctx, precision, policy, split,
                trials: list[Trial], chunk: int) -> Plan:
    """The Plan of a placement over several adapters (see Plan), checked with prefill passes of
    `chunk` tokens."""
    est = placement.total(parts)
    first, n = parts[0].adapter, layout.n_layers
    ok, why_run = runnable(layout)
    cause = "as asked" if isinstance(split, str) and ":" in split else _why_split(layout, parts, trials, n_ctx)
    where = "; ".join(f"{p.describe(n)} on {p.adapter.summary} ({fmt_bytes(p.need)} of "
                      f"{fmt_bytes(usable(p.adapter))} usable)" for p in parts)
    lacks = [p.adapter.summary for p in parts if not p.adapter.shader_f16]
    why_act = (f"{act}, as asked." if precision != "auto" else
               "f16: every adapter of the placement has shader-f16." if act == "f16" else
               f"f32: {', '.join(lacks)} lacks shader-f16 (f16 is used only where every part has it).")
    found = Trial(first, act, n_ctx, est, [], chunk)
    reasons = {
        "model": _why_model(layout, why_run),
        "adapter": f"split over {len(parts)} adapters (placement below).",
        "placement": f"{where}: {cause}; the hidden state crosses each cut through the host once per "
                     f"prefill chunk and once per token.",
        "precision": why_act,
        "kv_dtype": (f"{act}, the activation precision: {fmt_bytes(kv_bytes_per_token(layout, act))} per token "
                     f"over all parts, {fmt_bytes(est.kv_cache)} for {n_ctx} tokens."),
        "n_ctx": _why_ctx(layout, found, [found], ladder, ctx, "auto") if n_ctx == ladder[0] else
        f"{n_ctx} tokens, reduced from the default {ladder[0]}: no placement holds more.",
        "budget": "; ".join(f"{p.adapter.summary}: {_why_budget(p.adapter)}" for p in parts),
    }
    return Plan(adapter=first, precision=act, kv_dtype=act, n_ctx=n_ctx, estimate=est,
                headroom=min(p.adapter.planning_budget - p.need for p in parts), reasons=reasons,
                ctx_reduced=n_ctx != ladder[0], model=layout.name, arch=layout.arch,
                quantization=layout.quantization, runnable=ok, budget=first.planning_budget, requested_ctx=ctx,
                policy=str(policy or "auto"), chunk=chunk, parts=parts, split=str(split))


def _why_split(layout, parts: list[Part], trials: list[Trial], n_ctx: int) -> str:
    """Why one adapter was not enough: the first part's adapter's need for the whole model."""
    a = parts[0].adapter
    whole = next((t for t in trials if t.adapter.index == a.index and t.n_ctx == n_ctx and t.estimate), None)
    if whole is None:
        return f"no single adapter holds the whole model at {n_ctx} tokens"
    return (f"no single adapter holds the whole model at {n_ctx} tokens ({a.summary} would need "
            f"{fmt_bytes(whole.need)} of {fmt_bytes(usable(a))} usable), so {a.summary} takes as many layers as "
            f"fit and the next adapter the rest")


def _build(layout, found: Trial, trials: list[Trial], cands, how, policy, ladder, ctx, precision, chunk) -> Plan:
    a, est = found.adapter, found.estimate
    ok, why_run = runnable(layout)
    reasons = {
        "model": _why_model(layout, why_run),
        "adapter": _why_adapter(found, trials, cands, how, policy),
        "precision": _why_precision(found, trials, precision),
        "kv_dtype": (f"{found.precision}, the activation precision (the engine keeps K and V in it): "
                     f"{fmt_bytes(kv_bytes_per_token(layout, found.precision))} per token"
                     f"{f' of all {layout.n_seq} sequences' if layout.n_seq > 1 else ''}, "
                     f"{fmt_bytes(est.kv_cache)} for {_seqs(layout)}{found.n_ctx} tokens."),
        "n_ctx": _why_ctx(layout, found, trials, ladder, ctx, how),
        "budget": _why_budget(a),
        "headroom": (f"{fmt_bytes(a.planning_budget - est.total)} of the budget stays free "
                     f"({(a.planning_budget - est.total) / max(a.planning_budget, 1):.0%}); a plan must leave at "
                     f"least {HEADROOM:.0%} free for what the estimate cannot see (driver allocations, "
                     f"pipelines, fragmentation, read-back copies)."),
        "limits": (f"The largest storage binding is {fmt_bytes(est.largest_binding)} (weights are split into "
                   f"chunks; a layer's K or V cache is one binding), within the adapter's "
                   f"{fmt_bytes(a.max_storage_binding)} limit; the largest buffer is "
                   f"{fmt_bytes(est.largest_buffer)} of {fmt_bytes(a.max_buffer_size)} allowed."),
    }
    return Plan(adapter=a, precision=found.precision, kv_dtype=found.precision, n_ctx=found.n_ctx, estimate=est,
                headroom=a.planning_budget - est.total, reasons=reasons, ctx_reduced=found.n_ctx != ladder[0],
                model=layout.name, arch=layout.arch, quantization=layout.quantization, runnable=ok,
                budget=a.planning_budget, requested_ctx=ctx, policy=str(policy or "auto"), chunk=found.chunk,
                parts=[Part(a, (0, layout.n_layers), est)])


def _seqs(layout: ModelLayout) -> str:
    """"N x " when the plan serves N > 1 sequences at once, else nothing."""
    return f"{layout.n_seq} x " if layout.n_seq > 1 else ""


def _why_model(layout: ModelLayout, why_run: str) -> str:
    quant = f" {layout.quantization}" if layout.quantization else ""
    return f"{layout.name}{quant} ({layout.arch}, {fmt_bytes(layout.weight_bytes)} of weights). {why_run}"


def _passed_over(found: Trial, trials: list[Trial]) -> str:
    """'; passed over: X (why)' for adapters tried before the chosen one at its context."""
    seen, out = {found.adapter.index}, []
    for t in trials:
        if t.adapter.index not in seen and t.n_ctx == found.n_ctx and not t.fits:
            seen.add(t.adapter.index)
            out.append(f"{t.adapter.summary}, where {t.problems[0]}")
    return f"; passed over {'; '.join(out)}" if out else ""


def _why_adapter(found: Trial, trials: list[Trial], cands, how: str, policy) -> str:
    a = found.adapter
    if how == "index":
        return f"{a.summary}, adapter {a.index}, as asked."
    if len(cands) == 1:
        where = f"the only adapter matching '{policy}'" if how == "name" else "the only adapter"
        return f"{a.summary}: {where}."
    order = {"name": f"the adapters matching '{policy}'"}.get(
        how, f"{how} order ({_order_words(how)})")
    return (f"{a.summary}: the first of {order} that holds the model at {found.n_ctx} tokens with "
            f"headroom{_passed_over(found, trials)}.")


def _order_words(policy: str) -> str:
    kinds = [k if k != "cpu" else "CPU" for k in _KIND_ORDER[policy] if k not in ("virtual", "unknown")]
    return ", then ".join(kinds)


def _why_precision(found: Trial, trials: list[Trial], requested: str) -> str:
    a, p = found.adapter, found.precision
    if requested != "auto":
        return f"{p}, as asked."
    if p == "f16" and a.kind != "cpu":
        return "f16: the adapter has shader-f16, which halves the KV cache and activation memory and traffic."
    if p == "f16":
        return ("f16: on a CPU adapter wgllm's CPU kernels read f16 activations 8 per load, measured faster "
                "than f32; it also halves the KV cache.")
    return "f32: the adapter lacks shader-f16."


def _why_ctx(layout: ModelLayout, found: Trial, trials: list[Trial], ladder, ctx, how: str) -> str:
    n, train = found.n_ctx, layout.n_ctx_train
    if ctx is not None:
        beyond = f" (beyond the model's training context of {train}; quality may drop)" if train and n > train else ""
        return f"{n} tokens, as asked{beyond}."
    if n == ladder[0]:
        return f"{n} tokens: the default, the smaller of the model's training context ({train}) and {DEFAULT_CTX}."
    first = next(t for t in trials if t.n_ctx == ladder[0] and t.adapter.index == found.adapter.index)
    who = (f"{first.adapter.summary} cannot hold" if how == "high-performance" else "no adapter holds")
    return (f"{n} tokens, reduced from the default {ladder[0]} because {who} {ladder[0]} tokens "
            f"(on {first.adapter.summary}: {first.problems[0]}); ask for a context with --ctx to get an error "
            f"instead of a reduction.")


def _why_budget(a: AdapterBudget) -> str:
    if a.budget is None:
        return (f"{fmt_bytes(a.planning_budget)}, assumed: the adapter's memory is unknown ({a.note}); "
                f"set --gpu-memory to plan for it exactly.")
    return f"{fmt_bytes(a.budget)} ({a.source}): {a.note}." if a.note else f"{fmt_bytes(a.budget)} ({a.source})."


# --- when nothing fits -----------------------------------------------------------------------


def too_large(layout: ModelLayout, adapters, cands, ladder, precision, chunk, ctx, trials,
              tried: list[Part] | None = None) -> ModelTooLargeError:
    """The error for a model no candidate holds, alone or split: per adapter need vs available,
    how far a split got, and alternatives."""
    firsts: dict[int, Trial] = {}
    for t in trials:
        if t.n_ctx == ladder[0]:
            firsts.setdefault(t.adapter.index, t)
    needs = [(t.adapter.summary, t.need, usable(t.adapter)) for t in firsts.values()]
    at = f"{ladder[0]} tokens" if ctx is not None or len(ladder) == 1 else \
        f"{ladder[0]} tokens, nor at any context down to {ladder[-1]}"
    quant = f" {layout.quantization}" if layout.quantization else ""
    where = cands[0].summary if len(cands) == 1 else "any adapter"
    lines = "; ".join(_need_line(t) for t in firsts.values())
    if tried:
        held = sum(p.layers[1] - p.layers[0] for p in tried)
        got = ", ".join(f"{p.describe(layout.n_layers)} on {p.adapter.summary}" for p in tried)
        lines += (f". Split over the adapters, {got} would fit, leaving {layout.n_layers - held} of the "
                  f"{layout.n_layers} layers and the output head without room")
    alts = alternatives(layout, adapters, cands, ladder, precision, chunk)
    tail = (" Would fit: " + "; ".join(alts) + ".") if alts else \
        " No smaller configuration or catalog model would fit on this machine."
    return ModelTooLargeError(
        f"{layout.name}{quant} does not fit {where} at {at}. {lines}. Nothing was allocated.{tail}",
        needs=needs, alternatives=alts)


def _need_line(t: Trial) -> str:
    """'X (f16) needs 5 GiB and has 3 GiB usable[, and its largest binding ...]'."""
    limits = [p for p in t.problems if not p.startswith("it needs ")]
    head = f"{t.adapter.summary} ({t.precision})"
    if t.estimate is None:
        return f"{head}: {', '.join(limits)}"
    text = f"{head} needs {fmt_bytes(t.need)} and has {fmt_bytes(usable(t.adapter))} usable"
    return text + (f"; {', and '.join(limits)}" if limits else "")


def _size_arg(n: int) -> str:
    """A --gpu-memory value of at least n bytes."""
    return f"{math.ceil(n / GiB * 10) / 10:g}GiB" if n >= GiB else f"{math.ceil(n / MiB)}MiB"


def _fits_text(t: Trial) -> str:
    return f"fits on {t.adapter.summary} at {t.n_ctx} tokens ({fmt_bytes(t.need)} of {fmt_bytes(usable(t.adapter))})"


def _split_text(found, layout: ModelLayout) -> str:
    parts, _, n_ctx, _ = found
    where = ", ".join(f"{p.describe(layout.n_layers)} on {p.adapter.summary}" for p in parts)
    return f"fits split over {len(parts)} adapters at {n_ctx} tokens ({where})"


def alternatives(layout: ModelLayout, adapters, cands, ladder, precision: str, chunk: int | None = None) -> list[str]:
    """Configurations that fit (each checked), as plain phrases: smaller context, f16 KV,
    another adapter, a smaller quantization, a raised budget, a smaller catalog model."""
    out = []
    c = _pow2_below(ladder[-1])
    while c >= MIN_ALT_CTX:
        t, _, _ = _find(layout, cands, [c], precision, chunk)
        if t:
            out.append(f"--ctx {c}: {_fits_text(t) if isinstance(t, Trial) else _split_text(t, layout)}")
            break
        c //= 2
    if precision == "f32":
        t, _ = search(layout, cands, ladder, "f16", chunk)
        if t:
            out.append(f"--precision f16 (an f16 KV cache, half the size): {_fits_text(t)}")
    others = [a for a in _order(adapters, "auto") if a.index not in {b.index for b in cands}]
    t, _ = search(layout, others, ladder, precision, chunk)
    if t:
        out.append(f"--device {t.adapter.index}: {_fits_text(t)}")
    for lay in catalog.smaller_quantizations(layout):
        t, _ = search(lay, cands, ladder, precision, chunk)
        if t:
            out.append(f"the {lay.quantization} quantization of {lay.name} ({fmt_bytes(lay.weight_bytes)} of "
                       f"weights): {_fits_text(t)}")
            break
    out += _more_memory(layout, cands, ladder, precision, chunk)
    if not out:
        out += _smaller_model(layout, cands, ladder, precision, chunk)
    return out


def _more_memory(layout, cands, ladder, precision, chunk) -> list[str]:
    """--gpu-memory N for an adapter whose budget is assumed or capped, where limits allow."""
    for a in cands:
        if a.source not in ("unknown", "user-cap"):
            continue
        for act in precisions(precision, a):
            t = check(layout, a, act, ladder[0], chunk)
            if t.estimate and t.estimate.fits_limits(a.max_buffer_size, a.max_storage_binding):
                need = math.ceil(t.need / (1 - HEADROOM))
                why = "assumed, its memory being unknown" if a.source == "unknown" else "your cap"
                return [f"--gpu-memory {_size_arg(need)}, if {a.summary} really has that much free (its budget of "
                        f"{fmt_bytes(a.planning_budget)} is {why}): {ladder[0]} tokens in {act} need "
                        f"{fmt_bytes(t.need)}"]
    return []


def _smaller_model(layout, cands, ladder, precision, chunk) -> list[str]:
    """The largest runnable catalog model (default quantization) smaller than `layout` that fits."""
    for e in reversed(catalog.entries()):
        lay = catalog.catalog_layout(e.name)
        if lay.weight_bytes < layout.weight_bytes and runnable(lay)[0]:
            t, _ = search(lay, cands, ctx_ladder(lay, None), precision, chunk)
            if t:
                return [f"a smaller model, {e.title} {lay.quantization}: {_fits_text(t)}"]
    return []
