"""The sampler of the OpenAI API: logit bias, grammar mask, logprobs, OpenAI penalties.

`ApiSampler` extends `wgllm.runtime.sampler.Sampler`. For each step it gets
the raw logits row from the engine, records the log-probabilities the model
gave (before bias and mask, like OpenAI's and vLLM's default), adds
`logit_bias`, sets tokens the grammar forbids to -inf, and samples from what
is left with the base class. Presence / frequency penalties follow OpenAI:
they count only the generated tokens (`repeat_last_n=-1` over the history
past the prompt), not the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wgllm.api.grammar import GrammarMask
from wgllm.runtime.sampler import Sampler, SamplingParams, logprobs


@dataclass
class StepLogprobs:
    """What the model gave one generated token: its log-probability and the best alternatives."""

    token: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


class ApiSampler(Sampler):
    """Sampler with logit bias, an optional grammar mask and logprob recording.

    prompt_len: tokens of the prompt at the start of the history the engine passes
    (penalties look only past it). bias: {token id: value added to its logit}.
    grammar: a `GrammarMask` or None. top_logprobs: None (record nothing) or how
    many alternatives to record per step (0: only the chosen token's)."""

    def __init__(self, params: SamplingParams, *, prompt_len: int, bias: dict[int, float] | None = None,
                 grammar: GrammarMask | None = None, top_logprobs: int | None = None):
        super().__init__(params)
        self.prompt_len = prompt_len
        self.bias = dict(bias or {})
        self.grammar = grammar
        self.top_logprobs = top_logprobs
        self.steps: list[StepLogprobs] = []  # one per sampled token, in order

    @property
    def needs_logits(self) -> bool:
        return True

    def sample(self, logits: np.ndarray, history: Sequence[int] = ()) -> int:
        """Bias, mask, then sample; record the chosen token's log-probability."""
        x = np.asarray(logits, dtype=np.float64)
        if self.bias:
            x = x.copy()
            ids = np.fromiter(self.bias.keys(), dtype=np.int64)
            x[ids] += np.fromiter(self.bias.values(), dtype=np.float64)
        if self.grammar is not None:
            allowed = self.grammar.allowed(x.shape[0])
            if allowed.any():
                x = np.where(allowed, x, -np.inf)
        token = super().sample(x, list(history)[self.prompt_len:])
        if self.grammar is not None:
            self.grammar.advance(token)
        if self.top_logprobs is not None:
            self.steps.append(self._record(logits, token))
        return token

    def advance(self, tokens: Sequence[int]) -> None:
        """Feed `tokens` (chosen by a copy of this sampler in a worker that died) to the grammar."""
        if self.grammar is not None:
            for t in tokens:
                self.grammar.advance(t)

    def state(self) -> dict[str, Any]:
        """The RNG, grammar and logprob positions, for `set_state`: when the engine recovers from a
        device loss it restores the state of its last emitted token and samples the next step again."""
        return {"rng": super().state(), "steps": len(self.steps),
                "grammar": self.grammar.consumed if self.grammar is not None else 0}

    def set_state(self, state: dict[str, Any]) -> None:
        """Go back to a `state()` snapshot: later samples repeat those taken after it."""
        super().set_state(state["rng"])
        del self.steps[state["steps"]:]
        if self.grammar is not None:
            self.grammar.rollback_to(state["grammar"])

    def _record(self, logits: np.ndarray, token: int) -> StepLogprobs:
        raw = np.asarray(logits, dtype=np.float64)
        mx = float(np.max(raw))
        lse = mx + float(np.log(np.exp(raw - mx).sum()))
        return StepLogprobs(token, float(raw[token] - lse), logprobs(raw, self.top_logprobs))
