"""The memory estimate from a layout alone (no GPU, no weights): hand-computed totals, the KV
formula, monotonicity, precision, chunking against binding limits, a Llama-3-8B header."""

import subprocess
import sys

import pytest

from wgllm.kernels import constants as C
from wgllm.plan import memory
from wgllm.plan.layout import ModelLayout
from wgllm.plan.memory import estimate, kv_bytes_per_token
from wgllm.testing import synth


def layout_of(shape: synth.LlamaShape, types="F32") -> ModelLayout:
    """A ModelLayout of a synth shape: the tensor list a GGUF header of it would give (ggml order)."""
    return shape.layout(types)


TINY = synth.LlamaShape("hand", n_vocab=64, dim=64, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=64)


def test_tiny_layout_by_hand_f32():
    # vocab 64, dim 64, 1 layer, 2 q heads + 1 kv head of 32, ffn 64, all F32, untied; ctx 64, chunk 8.
    est = estimate(layout_of(TINY), n_ctx=64, act="f32", chunk=8)
    row = 64 * 4  # every weight row is 64 f32 = 256 bytes; each weight buffer has 16 bytes of PAD
    weights = ((64 * row + 16) * 2  # token_embd, output
               + 128 * row + 16  # q|k|v fused: 64 + 32 + 32 rows
               + 64 * row + 16  # attn_output
               + 128 * row + 16  # gate|up fused
               + 64 * row + 16  # ffn_down
               + 3 * 64 * 4)  # output_norm, attn_norm, ffn_norm
    kv = 2 * 64 * 1 * 32 * 4  # K and V: ctx x kv heads x head dim x f32
    act = 8 * 64 * 4 * 2 + 8 * 128 * 4 + 8 * 64 * 4 + 8 * 128 * 4 + 64 * 4  # x, xn, qkv, attn, gu, xlast
    scratch = 32 * 4 + 8  # one split (ctx 64 = one 64-key block): the minimal (part, ml) pair
    logits = 64 * 4
    staging = 4 * 4 + 64 * 4  # PIPELINE_DEPTH + 1 token slots, one logits row
    per_body = 16 + 16 * 2 + 32 * 4 + 32 * 4  # get_rows params, 2 rmsnorm params, 4 linear params, rope table
    other = (64 + 1) * 4 + 2 * C.STEP_BYTES + 2 * per_body + 16 + 32  # tokens, 2 steps, decode + prefill, head
    assert est.weights == weights
    assert est.kv_cache == kv
    assert est.activations == act + scratch
    assert est.logits == logits
    assert est.staging == staging
    assert est.other == other
    assert est.total == weights + kv + act + scratch + logits + staging + other
    assert est.largest_buffer == est.largest_binding == 128 * row + 16
    assert est.by_label["attn_scratch"] == scratch and est.by_label["rope"] == 2 * 32 * 4


def test_tiny_layout_by_hand_split_attention_scratch():
    # ctx 256: decode splits the keys 4 ways (1 row x 2 heads x 4 splits), then the prefill graph
    # (8 rows x 2 heads x 4 splits) needs larger scratch: a second pair; the first stays alive.
    est = estimate(layout_of(TINY), n_ctx=256, act="f32", chunk=8)
    decode = 1 * 2 * 4 * 32 * 4 + 1 * 2 * 4 * 8
    prefill = 8 * 2 * 4 * 32 * 4 + 8 * 2 * 4 * 8
    assert est.by_label["attn_scratch"] == decode + prefill


def test_chunk_one_builds_one_graph():
    one = estimate(layout_of(TINY), n_ctx=64, act="f32", chunk=1)
    eight = estimate(layout_of(TINY), n_ctx=64, act="f32", chunk=8)
    assert eight.other - one.other == 16 + 16 * 2 + 32 * 4 + 32 * 4  # the prefill graph's params + rope
    assert eight.activations - one.activations == 7 * (64 * 4 * 2 + 128 * 4 * 2 + 64 * 4)


def test_chunk_is_clamped_to_context():
    lay = layout_of(TINY)
    assert estimate(lay, n_ctx=16, act="f32", chunk=128) == estimate(lay, n_ctx=16, act="f32", chunk=16)


@pytest.mark.parametrize("name", ["smollm2-135m", "llama-3-8b", "tiny-wide-heads"])
@pytest.mark.parametrize("act", ["f32", "f16"])
def test_kv_formula(name, act):
    s = synth.SHAPES[name]
    lay = layout_of(s, "Q4_0" if s.dim % 32 == 0 else "F32")
    per_tok = kv_bytes_per_token(lay, act)
    assert per_tok == s.n_layers * s.n_kv_heads * s.head_dim * 2 * (2 if act == "f16" else 4)
    for n_ctx in (64, 1000, 4096):
        assert estimate(lay, n_ctx=n_ctx, act=act).kv_cache == n_ctx * per_tok


def test_monotonic_in_context_and_f16_smaller():
    lay = layout_of(synth.SHAPES["smollm2-135m"], "Q4_1")
    for act in ("f32", "f16"):
        totals = [estimate(lay, n_ctx=n, act=act).total for n in (64, 128, 512, 2048, 8192, 32768)]
        assert totals == sorted(totals) and len(set(totals)) == len(totals)
    for n in (64, 2048, 8192):
        f16, f32 = estimate(lay, n_ctx=n, act="f16"), estimate(lay, n_ctx=n, act="f32")
        assert f16.total < f32.total and f16.weights == f32.weights and 2 * f16.kv_cache == f32.kv_cache


def test_big_embedding_splits_under_max_binding():
    lay = layout_of(synth.SHAPES["llama-3-8b"], "Q4_0")
    emb = lay.tensor("token_embd.weight")  # 128256 x 4096 Q4_0: 2304-byte rows, 295 MB
    assert emb.nbytes == 128256 * 2304
    small = 128 << 20  # lavapipe's max-storage-buffer-binding-size
    est = estimate(lay, n_ctx=2048, act="f16", max_binding=small)
    assert est.largest_binding <= small and est.largest_buffer <= small
    chunks = [b.size for b in memory.engine_buffers(lay, n_ctx=2048, act="f16", max_binding=small)
              if b.label == "weights" and b.size > 64 << 20]  # token_embd's and output's chunks
    assert len(chunks) == 6 and max(chunks) - min(chunks) <= 2304
    big = estimate(lay, n_ctx=2048, act="f16")  # default 2 GiB - 4: one buffer per weight
    assert big.largest_binding == emb.nbytes + C.PAD
    assert est.weights - big.weights == C.PAD * (2 + 2)  # token_embd and output: 2 extra chunks each
    assert est.limit_problems(2**31 - 1, small) == []
    assert big.limit_problems(2**31 - 1, small) and not big.fits_limits(2**31 - 1, small)


def test_kv_cache_is_one_binding_per_layer():
    lay = layout_of(synth.SHAPES["llama-3-8b"], "Q4_0")
    est = estimate(lay, n_ctx=131072, act="f32")
    kv_layer = 131072 * 8 * 128 * 4  # 512 MiB: larger than any weight chunk
    assert est.largest_binding == kv_layer
    assert est.limit_problems(2**32, 128 << 20)  # too big for lavapipe's 128 MiB bindings


def test_llama3_8b_q4_0_weights():
    lay = layout_of(synth.SHAPES["llama-3-8b"], "Q4_0")  # every 2-D weight Q4_0
    est = estimate(lay, n_ctx=8192, act="f16")
    assert 4.3e9 < est.weights < 4.7e9
    assert est.weights - lay.weight_bytes == C.PAD * (2 + 4 * 32)  # PAD per buffer, norms unpadded
    assert est.kv_cache == 8192 * 32 * 8 * 128 * 2 * 2  # 1 GiB at f16
    assert est.total < est.weights + est.kv_cache + 200e6  # the rest is small


def test_qwen2_biases_counted():
    s = synth.LlamaShape("qw", n_vocab=64, dim=64, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=64, arch="qwen2")
    plain = estimate(layout_of(s.replace(arch="llama")), n_ctx=64, act="f32")
    qwen = estimate(layout_of(s), n_ctx=64, act="f32")
    assert qwen.weights - plain.weights == 2 * (64 + 32 + 32) * 4  # q|k|v biases per layer


def test_all_logits_adds_the_rows_buffer():
    lay = layout_of(TINY)
    base = estimate(lay, n_ctx=64, act="f32", chunk=8)
    extra = estimate(lay, n_ctx=64, act="f32", chunk=8, all_logits=True)
    assert extra.logits - base.logits == 8 * 64 * 4
    assert extra.other - base.other == 16 + 32  # rmsnorm and one linear params buffer


def test_as_dict_and_fields():
    est = estimate(layout_of(TINY), n_ctx=64, act="f16")
    d = est.as_dict()
    assert d["total"] == est.total == sum(est.by_label.values())
    assert est.n_buffers == len(memory.engine_buffers(layout_of(TINY), n_ctx=64, act="f16"))
    with pytest.raises(ValueError):
        estimate(layout_of(TINY), n_ctx=64, act="bf16")


def test_plan_does_not_import_wgpu():
    code = ("import sys, wgllm.plan.memory, wgllm.plan.layout, wgllm.gpu.inventory, wgllm.kernels.constants;"
            "assert 'wgpu' not in sys.modules, 'wgpu imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the mirror's numbers agree with the engine's own (these imports need wgpu, not a GPU) ---


def test_constants_agree_with_engine():
    pytest.importorskip("wgpu")
    from wgllm.kernels import linear, ops
    from wgllm.runtime import engine

    assert linear.PAD == C.PAD and linear.K_ALIGN == C.K_ALIGN and linear._LINEAR_PARAMS == C.LINEAR_PARAMS
    assert ops.STEP_BYTES == C.STEP_BYTES
    for k in ("ATTN_WG", "ATTN_MINK", "ATTN_TARGET_GROUPS", "ATTN_MAX_SPLITS", "ATTN_MAX_ROWS"):
        assert getattr(ops, k) == getattr(C, k), k


@pytest.mark.parametrize("T", [1, 7, 64, 128, 512])
@pytest.mark.parametrize("heads", [(9, 3, 64), (32, 8, 128), (6, 6, 16), (4, 2, 32), (32, 32, 256)])
@pytest.mark.parametrize("n_ctx", [16, 64, 1000, 8192, 131072])
def test_attention_plan_agrees_with_ops(T, heads, n_ctx):
    pytest.importorskip("wgpu")
    from wgllm.kernels import ops

    assert C.attention_plan(T, *heads, n_ctx) == ops.attention_plan(T, *heads, n_ctx)


