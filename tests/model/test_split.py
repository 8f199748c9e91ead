"""A model split over adapters (issue 14) on lavapipe: one adapter presented as two or three
(WGLLM_ADAPTERS=0,0,0: a device each), output token for token equal to the unsplit model,
device losses on each part recovered exactly, and each part's memory estimate equal to its
device's allocation."""

import pytest

from wgllm.model.gguf import GGUFFile
from wgllm.plan.layout import ModelLayout
from wgllm.plan.memory import estimate
from wgllm.runtime.engine import Engine
from wgllm.runtime.recovery import RecoveryPolicy
from wgllm.runtime.sampler import SamplingParams
from wgllm.testing import synth

PROMPT = list(range(5, 45))
N = 64
FAST = RecoveryPolicy(backoff_s=0.0, hang_timeout_s=5.0)

# (name, shape kwargs, weight types): the layer count sets the cuts below
TINY = [
    ("llama-tied-q4_1", dict(n_vocab=300, dim=64, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=96,
                             tied_embeddings=True), "Q4_1"),
    ("gemma3-swa-q8_0", dict(n_vocab=300, dim=128, n_layers=5, n_heads=4, n_kv_heads=1, ffn_dim=256, head_dim=32,
                             arch="gemma3", extra={"attention.sliding_window": 5}), "Q8_0"),
]


def placements(n: int) -> dict[str, str]:
    """Explicit placements over adapters 0, 1, 2 of an n-layer model: cut after the first layer,
    before the last, and three parts."""
    return {"first": f"0:0-0,1:1-{n - 1}", "last": f"0:0-{n - 2},1:{n - 1}-{n - 1}",
            "three": f"0:0-0,1:1-{n - 2},2:{n - 1}-{n - 1}"}


@pytest.fixture(autouse=True)
def three_adapters(monkeypatch, device):
    """Adapter 0 (lavapipe) presented three times."""
    monkeypatch.setenv("WGLLM_ADAPTERS", "0,0,0")


@pytest.fixture(scope="module", params=TINY, ids=[t[0] for t in TINY])
def tiny(request, tmp_path_factory):
    name, kw, types = request.param
    shape = synth.LlamaShape(name=name, ctx=4096, **kw)
    return synth.write_llama_gguf(tmp_path_factory.mktemp(name) / f"{name}.gguf", shape, types=types, seed=5), kw


def _engine(path, split="none", **kw):
    return Engine(str(path), device=0 if split == "none" else None, ctx=256, chunk=16, precision="f32",
                  split=split, recovery=FAST, **kw)


def _run(e, sampled=False):
    sampling = SamplingParams(temperature=0.8, seed=3) if sampled else None
    return list(e.generate(PROMPT, max_tokens=N, stop_ids=[], sampling=sampling))


@pytest.fixture(scope="module")
def reference(tiny):
    path, _ = tiny
    e = _engine(path)
    out = _run(e), _run(e, sampled=True)
    e.close()
    assert len(set(out[0])) > 5
    return out


@pytest.mark.parametrize("where", ["first", "last", "three"])
def test_split_output_equals_unsplit(tiny, reference, where):
    path, kw = tiny
    spec = placements(kw["n_layers"])[where]
    e = _engine(path, spec)
    try:
        assert e.plan.is_split and [p.layers for p in e.plan.parts] == [
            (int(a.split(":")[1].split("-")[0]), int(a.split("-")[1]) + 1) for a in spec.split(",")]
        assert _run(e) == reference[0]
        assert _run(e, sampled=True) == reference[1]
        _check_memory(e)  # (before logits(), which allocates its all-position buffer on first use)
        assert e.logits(PROMPT[:20]).shape == (20, kw["n_vocab"])
    finally:
        e.close()


def test_logits_of_a_split_model_equal_unsplit(tiny):
    path, kw = tiny
    whole, split = _engine(path), _engine(path, placements(kw["n_layers"])["three"])
    try:
        assert (whole.logits(PROMPT) == split.logits(PROMPT)).all()
    finally:
        whole.close()
        split.close()


def _check_memory(e):
    """Each part's planned estimate equals what its device allocated, label by label."""
    layout = ModelLayout.from_gguf(GGUFFile(e.path))
    for link, part in zip(e.chain.links, e.plan.parts):
        est = estimate(layout, n_ctx=e.n_ctx, act=e.precision, chunk=e.chunk, max_binding=link.dev.max_binding,
                       max_buffer=link.dev.max_buffer, kind=link.dev.kind, layers=part.layers)
        assert dict(link.dev.allocated) == est.by_label
        assert link.dev.allocated_bytes == est.total == part.need


@pytest.mark.parametrize("fault", ["lost@prefill#1", "lost@decode:5#0", "lost@decode:9#1", "lost@decode:3#2",
                                   "lost@load#2", "hang@decode:7#1", "lost@prefill#0,lost@decode:20#2"])
def test_a_loss_on_each_part_leaves_output_exact(tiny, reference, fault):
    path, kw = tiny
    e = _engine(path, placements(kw["n_layers"])["three"], faults=fault)
    try:
        assert _run(e) == reference[0]
        assert e.faults.fired and not e.faults
        assert e.events.recoveries == len(e.faults.fired)
        named = {int(f.split("#")[1]) for f in fault.split(",")}
        assert {ev.adapter for ev in e.events if ev.action == "detected"} == {e.adapters[k].summary for k in named}
        _check_memory(e)
    finally:
        e.close()


def test_seeded_sampling_survives_a_loss_on_a_part(tiny, reference):
    path, kw = tiny
    e = _engine(path, placements(kw["n_layers"])["first"], faults="lost@decode:6#1")
    try:
        assert _run(e, sampled=True) == reference[1] and e.events.recoveries == 1
    finally:
        e.close()


def test_auto_split_when_one_adapter_is_capped_small(tiny, reference):
    """Caps below the model's need on every adapter: auto puts what fits on adapter 0 and the rest
    on adapter 1 (one adapter holding it all would be taken first, without a split)."""
    path, kw = tiny
    whole = _engine(path)
    need = whole.plan.estimate.total
    whole.close()
    e = _engine(path, "auto", gpu_memory=f"{int(need * 0.75)}B")
    try:
        assert e.plan.is_split and [p.adapter.index for p in e.plan.parts] == [0, 1]
        assert e.plan.parts[0].need <= int(need * 0.75 * 0.9) and "placement" in e.plan.reasons
        assert _run(e) == reference[0]
        _check_memory(e)
    finally:
        e.close()


def test_real_smollm2_split_equals_unsplit(smollm2_path):
    layout = ModelLayout.from_gguf(GGUFFile(smollm2_path))
    n = layout.n_layers
    outs = []
    for split in ("none", f"0:0-0,1:1-{n - 2},2:{n - 1}-{n - 1}", f"0:0-{n // 2 - 1},1:{n // 2}-{n - 1}"):
        e = Engine(str(smollm2_path), device=0 if split == "none" else None, ctx=256, precision="f32", split=split)
        try:
            outs.append(list(e.generate(e.chat_prompt([{"role": "user", "content": "Name three colours."}]),
                                        max_tokens=N, stop_ids=[])))
        finally:
            e.close()
    assert outs[0] == outs[1] == outs[2] and len(set(outs[0])) > 5
