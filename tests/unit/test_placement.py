"""Splitting a model over adapters in the planner (no GPU): --split parsing, the auto placement of
a capped Llama-3-8B against a hand-computed expectation, explicit placements, precision per
placement, shared memory pools, and the refusal when even a split does not fit."""

import pytest

from tests.unit.test_planner import GiB, MiB, adapter, cpu, laptop
from wgllm.errors import ModelTooLargeError, RequestError
from wgllm.plan.catalog import catalog_layout
from wgllm.plan.placement import parse_split
from wgllm.plan.planner import HEADROOM, make_plan, usable

L8B_Q4_0 = catalog_layout("llama-3-8b", "Q4_0")


def test_parse_split():
    assert parse_split(None) == "auto" and parse_split("none") == "none" and parse_split(" AUTO ") == "auto"
    assert parse_split("0:0-19,1:20-31", 32) == [(0, 0, 20), (1, 20, 32)]
    assert parse_split("1:0-0, 0:1-2, 2:3-3", 4) == [(1, 0, 1), (0, 1, 3), (2, 3, 4)]
    for bad in ("0:0-19,1:21-31", "0:0-19", "0:1-31", "0:5-3,1:4-31", "zero:0-31", "0:0:31", "0-31"):
        with pytest.raises(RequestError):
            parse_split(bad, 32)


def test_capped_8b_placement_matches_the_hand_computed_one():
    """Llama-3-8B Q4_0 (every layer the same) on a GPU capped to hold the embedding and 12.5
    layers, beside a large one. By hand (f16, 4096 tokens): a layer is q 4096x4096 + k, v 1024x4096
    + o 4096x4096 + gate, up 14336x4096 + down 4096x14336 in Q4_0 (18 bytes per 32 weights):
    122,683,392 bytes, 2 norms of 4096 f32: 32,768, and its K and V cache 2 x 4096 x 1024 x 2 bytes:
    16,777,216; the Q4_0 embedding 128256 x 4096: 295,501,824. The activations and parameters are
    a few MiB, well under half a layer, so 12 layers fit and the other 20 go to the second GPU with
    the output head."""
    layer = 122_683_392 + 32_768 + 16_777_216
    embd = 295_501_824
    usable_bytes = embd + int(12.5 * layer)
    budget = int(usable_bytes / (1 - HEADROOM)) + 1
    small = adapter(0, "NVIDIA GeForce RTX 3050 Laptop GPU", "discrete", budget=budget)
    big = adapter(1, "NVIDIA GeForce RTX 4090", "discrete", budget=20 * GiB)
    p = make_plan(L8B_Q4_0, [small, big], ctx=4096)  # the small one first: same kind, lower index
    assert [(q.adapter.index, q.layers) for q in p.parts] == [(1, (0, 32))]  # one GPU holds it all: no split
    p = make_plan(L8B_Q4_0, [small, adapter(1, "Intel(R) Iris(R) Xe Graphics", "integrated", budget=20 * GiB)],
                  ctx=4096)
    assert [(q.adapter.index, q.layers) for q in p.parts] == [(0, (0, 12)), (1, (12, 32))]
    assert p.precision == "f16" and p.n_ctx == 4096 and not p.ctx_reduced
    first, second = p.parts
    assert first.need <= usable(small) and first.need > embd + 12 * layer
    assert second.need > 20 * layer  # 20 layers, the final norm, the Q6_K output matrix, the logits
    assert p.estimate.total == first.need + second.need
    whole = make_plan(L8B_Q4_0, [big], ctx=4096)
    assert p.estimate.weights == whole.estimate.weights  # every weight once (untied output), chunked alike
    assert "takes as many layers as fit" in p.reasons["placement"] and "layers 0-11" in p.reasons["placement"]
    lines = p.explain()
    assert any(line.startswith("Part 1: layers 0-11 (+ embedding) on NVIDIA") for line in lines)
    assert any(line.startswith("Part 2: layers 12-31 (+ output head) on Intel") for line in lines)


def test_the_laptop_splits_the_8b_model_and_keeps_the_context():
    p = make_plan(catalog_layout("llama-3-8b", "Q4_K_M"), laptop())
    assert [q.adapter.kind for q in p.parts] == ["discrete", "integrated"] and p.n_ctx == 4096
    assert all(q.need <= usable(q.adapter) for q in p.parts)
    d = p.as_dict()
    assert d["split"] == "auto" and [q["layers"] for q in d["parts"]] == [list(q.layers) for q in p.parts]
    assert make_plan(catalog_layout("llama-3-8b", "Q4_K_M"), laptop(), split="none").adapter.kind == "integrated"


def test_a_tied_embedding_is_uploaded_on_both_ends():
    lay = catalog_layout("llama-3.2-1b", "Q4_K_M")  # tied: the output matrix is the embedding
    two = [cpu(8 * GiB, index=0), cpu(8 * GiB, index=1)]
    p = make_plan(lay, two, split="0:0-7,1:8-15")
    whole = make_plan(lay, two, split="none")
    emb = next(t for t in lay.tensors if t.name == "token_embd.weight").n_bytes
    extra = p.estimate.weights - whole.estimate.weights  # the second copy, in its buffers (rows + padding)
    assert emb <= extra < emb + 64 * 1024


def test_explicit_placement_is_kept_or_refused_with_per_part_needs():
    two = [adapter(0, "GPU A", "discrete", budget=3 * GiB), adapter(1, "GPU B", "discrete", budget=3 * GiB)]
    p = make_plan(L8B_Q4_0, two, split="0:0-15,1:16-31", ctx=2048)
    assert [q.layers for q in p.parts] == [(0, 16), (16, 32)] and "as asked" in p.reasons["placement"]
    with pytest.raises(ModelTooLargeError) as exc:
        make_plan(L8B_Q4_0, two, split="0:0-29,1:30-31", ctx=2048)
    msg = exc.value.message
    assert "layers 0-29 (+ embedding) on GPU A" in msg and "needs" in msg and "Nothing was allocated" in msg
    assert [n[0] for n in exc.value.needs] == [a.summary for a in two]
    with pytest.raises(RequestError):
        make_plan(L8B_Q4_0, two, split="0:0-15,1:16-30")  # layer 31 left out


def test_two_parts_on_one_adapter_share_its_budget():
    one = [adapter(0, "GPU A", "discrete", budget=4 * GiB)]
    with pytest.raises(ModelTooLargeError, match="other parts on this adapter"):
        make_plan(L8B_Q4_0, one, split="0:0-15,0:16-31", ctx=512)


def test_f16_only_where_every_part_has_it():
    gpus = [adapter(0, "GPU A", "discrete", budget=3 * GiB), adapter(1, "GPU B", "discrete", budget=4 * GiB,
                                                                       f16=False)]
    p = make_plan(L8B_Q4_0, gpus, ctx=1024)
    assert p.is_split and p.precision == "f32" and "GPU B" in p.reasons["precision"]


def test_adapters_sharing_system_ram_are_not_split_over():
    """An integrated GPU and a CPU adapter draw on the same RAM: a split between them gains nothing."""
    igpu = adapter(0, "Intel(R) UHD Graphics", "integrated", budget=3 * GiB)
    igpu.physical, igpu.source = "system-ram", "system-ram"
    c = cpu(3 * GiB, index=1)
    c.physical, c.source = "system-ram", "system-ram"
    with pytest.raises(ModelTooLargeError):
        make_plan(L8B_Q4_0, [igpu, c], ctx=512)
    igpu.source = c.source = "user-cap"  # capped by the user: each cap is its own
    assert make_plan(L8B_Q4_0, [igpu, c], ctx=512).is_split


def test_refusal_says_how_far_a_split_got():
    small = [adapter(0, "GPU A", "discrete", budget=2 * GiB), adapter(1, "GPU B", "discrete", budget=1 * GiB)]
    with pytest.raises(ModelTooLargeError) as exc:
        make_plan(L8B_Q4_0, small)
    msg = exc.value.message
    assert "Split over the adapters" in msg and "on GPU A" in msg and "of the 32 layers" in msg
    assert "GPU A" in exc.value.needs[0][0]


def test_a_chosen_adapter_is_never_split():
    p = make_plan(catalog_layout("llama-3.2-1b", "Q4_K_M"), laptop(), policy=0)
    assert not p.is_split and p.adapter.index == 0
    with pytest.raises(ModelTooLargeError):
        make_plan(catalog_layout("llama-3-8b", "Q4_K_M"), laptop(), policy=0)


def test_size_caps_accept_colons():
    from wgllm.gpu.inventory import parse_caps

    assert parse_caps("0:4GiB,1:512MiB") == {0: 4 * GiB, 1: 512 * MiB} == parse_caps("0=4GiB,1=512MiB")
