"""ApiSampler: logit bias, grammar masks, logprobs, OpenAI penalties (host-only, no GPU)."""

import math

import numpy as np
import pytest

from wgllm.api.sampling import ApiSampler
from wgllm.runtime.sampler import SamplingParams


class FakeGrammar:
    def __init__(self, allowed):
        self.allowed_ids = set(allowed)
        self.seen = []

    def allowed(self, n):
        m = np.zeros(n, bool)
        m[list(self.allowed_ids)] = True
        return m

    def advance(self, tok):
        self.seen.append(tok)


@pytest.fixture
def logits(rng):
    return rng.standard_normal(50).astype(np.float32)


def test_bias_minus_100_bans_and_plus_100_forces(logits):
    best = int(np.argmax(logits))
    s = ApiSampler(SamplingParams(), prompt_len=0, bias={best: -100})
    assert s.sample(logits) != best
    forced = int(np.argmin(logits))
    s = ApiSampler(SamplingParams(temperature=1.0, seed=1), prompt_len=0, bias={forced: 100})
    assert all(s.sample(logits) == forced for _ in range(20))


def test_grammar_mask_restricts_and_is_advanced(logits):
    g = FakeGrammar([3, 7])
    s = ApiSampler(SamplingParams(temperature=1.5, seed=2), prompt_len=0, grammar=g)
    picks = [s.sample(logits) for _ in range(30)]
    assert set(picks) <= {3, 7} and g.seen == picks


def test_logprobs_are_the_models_log_softmax(logits):
    s = ApiSampler(SamplingParams(), prompt_len=0, bias={0: 50}, top_logprobs=3)
    tok = s.sample(logits)
    x = logits.astype(np.float64)
    lsm = x - (x.max() + math.log(np.exp(x - x.max()).sum()))
    (step,) = s.steps
    assert tok == 0 and step.token == 0  # chosen with the bias ...
    assert step.logprob == pytest.approx(lsm[0])  # ... but reported as the model gave it
    assert [t for t, _ in step.top] == list(np.argsort(-x)[:3])
    assert [lp for _, lp in step.top] == pytest.approx(sorted(lsm, reverse=True)[:3])


def test_penalties_count_only_generated_tokens():
    logits = np.zeros(10, np.float32)
    logits[4] = 1.0
    # token 4 is all over the prompt: OpenAI's penalty ignores it, so greedy still picks it
    s = ApiSampler(SamplingParams(presence_penalty=2.0, repeat_last_n=-1), prompt_len=5)
    assert s.sample(logits, [4, 4, 4, 4, 4]) == 4
    # once generated, it is penalised (1.0 - 2.0 < 0)
    assert s.sample(logits, [4, 4, 4, 4, 4, 4]) != 4


def test_needs_logits():
    assert ApiSampler(SamplingParams(), prompt_len=0).needs_logits


class RollbackGrammar(FakeGrammar):
    def __init__(self, allowed):
        super().__init__(allowed)
        self.consumed = 0

    def advance(self, tok):
        super().advance(tok)
        self.consumed += 1

    def rollback_to(self, n):
        del self.seen[n:]
        self.consumed = n


def test_state_snapshot_replays_rng_grammar_and_logprobs(logits):
    """What the engine does when it recovers from a device loss: restore, sample the step again."""
    g = RollbackGrammar(range(0, 50, 2))
    s = ApiSampler(SamplingParams(temperature=1.0, seed=5), prompt_len=0, grammar=g, top_logprobs=1)
    first = [s.sample(logits) for _ in range(3)]
    snap = s.state()
    after = [s.sample(logits) for _ in range(4)]
    s.set_state(snap)
    assert [s.sample(logits) for _ in range(4)] == after
    assert len(s.steps) == 7 and [st.token for st in s.steps] == first + after and g.seen == first + after
