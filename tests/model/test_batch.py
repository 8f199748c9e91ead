"""Continuous batching (issue 16) on lavapipe: an engine with parallel=N slots serves generations
from many threads at once; each one's tokens equal its solo run (greedy and seeded sampling,
more requests than slots, batch sizes 1..16), with the CPU kernels and with the GPU ones; one
stream left early leaves the others exact; device losses mid-batch leave every stream exact;
a shared prefix is reused; admission is FIFO and a late request starts while others stream."""

import pytest

from tests.conftest import in_threads
from wgllm.gpu.device import Device
from wgllm.model.transformer import STAGING_SLOTS
from wgllm.runtime.engine import Engine
from wgllm.runtime.recovery import RecoveryPolicy
from wgllm.runtime.sampler import SamplingParams
from wgllm.testing import synth

FAST = RecoveryPolicy(backoff_s=0.0, hang_timeout_s=10.0)
N = 24  # tokens per generation

TINY = [
    ("llama-tied-q4_1", dict(n_vocab=300, dim=64, n_layers=3, n_heads=4, n_kv_heads=2, ffn_dim=96,
                             tied_embeddings=True), "Q4_1"),
    ("gemma2-swa-softcap-q8_0", dict(n_vocab=300, dim=128, n_layers=3, n_heads=4, n_kv_heads=1, ffn_dim=256,
                                     head_dim=32, arch="gemma2", extra={"attention.sliding_window": 6}), "Q8_0"),
]


@pytest.fixture(scope="module", params=TINY, ids=[t[0] for t in TINY])
def tiny(request, tmp_path_factory):
    name, kw, types = request.param
    shape = synth.LlamaShape(name=name, ctx=4096, **kw)
    return synth.write_llama_gguf(tmp_path_factory.mktemp(name) / f"{name}.gguf", shape, types=types, seed=7)


def _prompts(n: int) -> list[list[int]]:
    """n different prompts of different lengths (some longer than a prefill chunk of 8)."""
    return [[(7 * i + 3 * j + 1) % 290 + 5 for j in range(3 + 5 * (i % 5))] for i in range(n)]


def _sampling(i: int):
    """Every third request samples (seeded), the rest are greedy."""
    return SamplingParams(temperature=0.8, top_k=40, seed=100 + i) if i % 3 == 2 else None


def _engine(path, parallel=1, precision="f32", **kw):
    return Engine(str(path), device=0, ctx=128, chunk=8, precision=precision, recovery=FAST, parallel=parallel, **kw)


def _solo(path, prompts, precision="f32", max_tokens=N):
    e = _engine(path, precision=precision)
    try:
        return [list(e.generate(p, max_tokens=max_tokens, stop_ids=[], sampling=_sampling(i)))
                for i, p in enumerate(prompts)]
    finally:
        e.close()


def _together(e, prompts, max_tokens=N, hold=None):
    """Every prompt generated from a thread of its own, all at once (`hold`: index -> tokens after
    which that consumer leaves its stream)."""
    def run(i):
        got = []
        for tok in e.generate(prompts[i], max_tokens=max_tokens, stop_ids=[], sampling=_sampling(i)):
            got.append(tok)
            if hold and hold.get(i) == len(got):
                break
        return got

    return in_threads(run, len(prompts))


@pytest.fixture(params=["native", "gpu-kernels"])
def kernels(request, monkeypatch, device):
    """The adapter's own kernel variants, then the GPU ones (on lavapipe: the matvec, the split
    attention and its combine)."""
    if request.param == "gpu-kernels" and device.kind == "cpu":
        init = Device.__init__

        def gpu_kind(self, *args, **kwargs):
            init(self, *args, **kwargs)
            self.kind = "gpu"

        monkeypatch.setattr(Device, "__init__", gpu_kind)
    return request.param


@pytest.mark.parametrize("precision", ["f32", "f16"])
def test_batched_output_equals_solo(tiny, kernels, precision):
    prompts = _prompts(7)
    want = _solo(tiny, prompts, precision)
    assert len({tuple(w) for w in want}) == len(want)  # different outputs: the comparison can fail
    e = _engine(tiny, parallel=3, precision=precision)
    try:
        assert e.n_seq == 3 and e.plan.n_seq == 3
        assert _together(e, prompts) == want  # 7 requests through 3 slots
        assert e._batch.steps < 7 * N  # the sequences were decoded together, not one after another
    finally:
        e.close()


@pytest.mark.parametrize("k", [1, 2, 5, 16])
def test_batch_sizes_1_to_16(tiny, k):
    prompts = _prompts(k)
    want = _solo(tiny, prompts, max_tokens=12)
    e = _engine(tiny, parallel=16)
    try:
        assert _together(e, prompts, max_tokens=12) == want
    finally:
        e.close()


def test_leaving_one_stream_leaves_the_others_exact(tiny):
    prompts = _prompts(5)
    want = _solo(tiny, prompts)
    e = _engine(tiny, parallel=4)
    try:
        got = _together(e, prompts, hold={1: 3, 3: 1})
        assert got[1] == want[1][:3] and got[3] == want[3][:1]
        assert [g for i, g in enumerate(got) if i not in (1, 3)] == [w for i, w in enumerate(want) if i not in (1, 3)]
        assert _together(e, prompts[:2]) == want[:2]  # and the engine goes on serving
    finally:
        e.close()


@pytest.mark.parametrize("faults", ["lost@decode:5", "lost@prefill", "lost@decode:2,lost@decode:9,oom@decode:14"])
def test_device_loss_mid_batch_leaves_every_stream_exact(tiny, faults):
    prompts = _prompts(5)
    want = _solo(tiny, prompts)
    e = _engine(tiny, parallel=4, faults=faults)
    try:
        assert _together(e, prompts) == want
        assert e.events.recoveries == faults.count("@")
    finally:
        e.close()


def test_a_shared_prefix_is_reused(tiny):
    system = [(11 * j) % 280 + 9 for j in range(30)]
    first, second = system + [5, 6, 7], system + [8, 9]
    want = _solo(tiny, [first, second])
    e = _engine(tiny, parallel=2)
    try:
        a = e.generate(first, max_tokens=N, stop_ids=[])
        assert list(a) == want[0]
        b = e.generate(second, max_tokens=N, stop_ids=[])
        assert list(b) == want[1]
        assert a.stats.cached_tokens == 0 and b.stats.cached_tokens == len(system)
        c = e.generate(second, max_tokens=N, stop_ids=[])  # the same prompt again: all but its last token
        assert list(c) == want[1] and c.stats.cached_tokens == len(second) - 1
    finally:
        e.close()


def test_a_shared_prefix_is_copied_from_a_busy_slot(tiny):
    """A request whose prompt starts with what another running sequence cached gets that prefix
    copied into its own slot (kv_copy) and equals its solo run."""
    system = [(13 * j) % 280 + 9 for j in range(30)]
    prompts = [system + [5, 6, 7], system + [8, 9, 10, 11]]
    want = _solo(tiny, prompts, max_tokens=40)
    e = _engine(tiny, parallel=2)
    try:
        a = e.generate(prompts[0], max_tokens=40, stop_ids=[])
        first = [next(a) for _ in range(5)]  # the first sequence is decoding: its prompt is cached
        b = e.generate(prompts[1], max_tokens=40, stop_ids=[])
        assert first + list(a) == want[0]
        assert list(b) == want[1] and b.stats.cached_tokens == len(system)
    finally:
        e.close()


def test_fifo_and_a_late_request_starts_while_others_stream(tiny):
    e = _engine(tiny, parallel=3)
    try:
        longs = [e.generate(p, max_tokens=100, stop_ids=[]) for p in _prompts(2)]
        heads = [next(s) for s in longs]  # both stream
        assert len(heads) == 2
        steps = e._batch.steps
        late = e.generate(_prompts(3)[2], max_tokens=4, stop_ids=[])
        next(late)
        # its prompt (two chunks) ran between the others' passes: at most the passes queued when it
        # came, and one pass per chunk
        assert e._batch.steps - steps <= (STAGING_SLOTS - 1) + 2
        rest = [list(s) for s in longs]
        assert all(len(h) == 99 for h in rest)
    finally:
        e.close()


def test_device_loss_in_passes_queued_ahead(tiny, monkeypatch):
    """All greedy: decode passes are queued back to back (Batcher._depth); a loss among them
    reruns them all, exactly."""
    import tests.model.test_batch as me

    monkeypatch.setattr(me, "_sampling", lambda i: None)
    prompts = _prompts(3)
    want = _solo(tiny, prompts)
    e = _engine(tiny, parallel=4, faults="lost@decode:8,lost@decode:13")
    try:
        assert _together(e, prompts) == want
        assert e.events.recoveries == 2
    finally:
        e.close()


def test_reset_keeps_the_running_sequences(tiny):
    """reset() on a parallel engine forgets the idle slots' caches, not the running ones'."""
    prompts = _prompts(2)
    want = _solo(tiny, prompts, max_tokens=40)
    e = _engine(tiny, parallel=3)
    try:
        done = e.generate(prompts[0], max_tokens=40, stop_ids=[])
        assert list(done) == want[0]
        running = e.generate(prompts[1], max_tokens=40, stop_ids=[])
        head = [next(running) for _ in range(3)]
        e.reset()
        assert head + list(running) == want[1]
        again = e.generate(prompts[0], max_tokens=40, stop_ids=[])
        assert list(again) == want[0] and again.stats.cached_tokens == 0  # its slot was forgotten
    finally:
        e.close()
