"""Shared blocks of decoder layers, built from the kernels: pre-norm attention and a gated FFN.

An architecture file composes a layer from these (see wgllm.model.arch);
each block reads the layer's weights (`LayerWeights`) and the model's
activation buffers and returns its dispatches. The model's config flags pick
the variants (q/k/v bias, rope kind and factors); while the model builds its batched
pass (`m.batched`: one decode row per sequence) the projections and attention are built
per row, so each row equals the same token decoded alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from wgllm.gpu.dispatch import Dispatch
from wgllm.kernels import linear as lin
from wgllm.kernels import ops


@dataclass
class LayerWeights:
    attn_norm: object  # f32 buffer [dim]
    wqkv: list[lin.GpuWeight]  # [qkv_dim, dim]: q rows, k rows, v rows
    wo: list[lin.GpuWeight]  # [dim, n_heads*head_dim]
    ffn_norm: object  # f32 buffer [dim]
    wgu: list[lin.GpuWeight]  # [2*ffn, dim]: gate rows then up rows
    wdown: list[lin.GpuWeight]  # [dim, ffn]
    bqkv: object = None  # f32 [qkv_dim] (q/k/v biases)
    qk_norm: object = None  # f32 [2, head_dim]: q norm then k norm weights (qk-norm)
    attn_post_norm: object = None  # f32 [dim] (post-norms)
    ffn_post_norm: object = None  # f32 [dim] (post-norms)


def linear(dev, ws: list[lin.GpuWeight], x, y, T: int, step, **kw) -> list[Dispatch]:
    """`lin.linear` over a weight made of one or more GpuWeights (see Transformer.weight)."""
    return [d for w in ws for d in lin.linear(dev, w, x, y, T, step, **kw)]


def attention(m, L: LayerWeights, i: int, T: int) -> list[Dispatch]:
    """x += [post-norm] wo @ attention(rope([qk-norm] wqkv @ rmsnorm(x))), appending layer i's
    K/V to its cache; the config's flags pick bias, qk-norm, window, scale, soft cap, post-norm."""
    dev, cfg, a, act, st, bt = m.dev, m.cfg, m.acts, m.act, m.step, m.batched
    hd, Hq, Hkv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
    d = _normed(m, L.wqkv, L.attn_norm, a.qkv, T)  # qkv: [T, (Hq+2Hkv)*hd]
    if L.bqkv is not None:
        d += ops.bias_add(dev, a.qkv, L.bqkv, st, T_max=T, n=cfg.qkv_dim, act=act)
    if L.qk_norm is not None:
        d += ops.head_norm(dev, a.qkv, L.qk_norm, st, T_max=T, n_heads=Hq, n_kv_heads=Hkv, head_dim=hd,
                           eps=cfg.rms_eps, act=act)
    base, scale = cfg.rope_of(i)
    d += ops.rope_kv(dev, a.qkv, m.k_cache[i], m.v_cache[i], st, T_max=T, n_heads=Hq, n_kv_heads=Hkv,
                     head_dim=hd, rope_base=base, rope_dim=cfg.rope_dim, mode=cfg.rope_mode, act=act,
                     n_ctx=m.n_ctx, freq_scale=scale, freq_factors=m.rope_factors, mscale=cfg.rope_mscale)
    d += ops.attention(dev, a.qkv, m.k_cache[i], m.v_cache[i], a.attn, st, T_max=T, n_heads=Hq,
                       n_kv_heads=Hkv, head_dim=hd, n_ctx=m.n_ctx, act=act, scale=cfg.attn_scale or None,
                       softcap=cfg.attn_softcap, window=cfg.sliding_window if cfg.is_swa(i) else 0, batched=bt)
    return d + _residual(m, L.wo, a.attn, L.attn_post_norm, T)  # x += attn @ wo


def gated_ffn(m, L: LayerWeights, T: int) -> list[Dispatch]:
    """x += [post-norm] wdown @ (act(gate) * up), [gate | up] = wgu @ rmsnorm(x); the GLU product
    (SwiGLU, or GELU for Gemma) is formed as the down projection loads its input, or, where the
    adapter can (lin.fuses_glu: the CPU adapters' kernel), as the [gate | up] product writes it."""
    dev, cfg, a, act, st = m.dev, m.cfg, m.acts, m.act, m.step
    if len(L.wgu) == 1 and lin.fuses_glu(dev, L.wgu[0]):  # gu: [T, ffn] = act(gate) * up
        d = ops.rmsnorm(dev, a.x, L.ffn_norm, a.xn, cfg.dim, T, cfg.rms_eps, st, in_type="f32", out_type=act)
        d += lin.linear(dev, L.wgu[0], a.xn, a.gu, T, st, x_type=act, y_type=act, glu_out=cfg.ffn_act)
        return d + _residual(m, L.wdown, a.gu, L.ffn_post_norm, T)
    d = _normed(m, L.wgu, L.ffn_norm, a.gu, T)  # gu: [T, 2*ffn]
    return d + _residual(m, L.wdown, a.gu, L.ffn_post_norm, T, glu=cfg.ffn_act)


def _normed(m, ws: list[lin.GpuWeight], norm, y, T: int) -> list[Dispatch]:
    """y = ws @ rmsnorm(x_resid) * norm: the norm done inside the product where every part of ws
    can (lin.fuses_norm: GPU decode, off by default), else by rmsnorm into xn first."""
    dev, cfg, a, act, st, bt = m.dev, m.cfg, m.acts, m.act, m.step, m.batched
    if all(lin.fuses_norm(dev, w, T, bt) for w in ws):
        return linear(dev, ws, a.x, y, T, st, x_type="f32", y_type=act, batched=bt, norm=(norm, cfg.rms_eps))
    d = ops.rmsnorm(dev, a.x, norm, a.xn, cfg.dim, T, cfg.rms_eps, st, in_type="f32", out_type=act)
    return d + linear(dev, ws, a.xn, y, T, st, x_type=act, y_type=act, batched=bt)


def _residual(m, w, x, post_norm, T: int, glu=False) -> list[Dispatch]:
    """x_resid += w @ x, or with a post-norm x_resid += rmsnorm(w @ x) (through the f32 buffer h)."""
    dev, cfg, a, act, st, bt = m.dev, m.cfg, m.acts, m.act, m.step, m.batched
    if post_norm is None:
        return linear(dev, w, x, a.x, T, st, x_type=act, y_type="f32", add=True, glu=glu, batched=bt)
    d = linear(dev, w, x, a.h, T, st, x_type=act, y_type="f32", glu=glu, batched=bt)  # h: [T, dim] f32
    return d + ops.rmsnorm(dev, a.h, post_norm, a.x, cfg.dim, T, cfg.rms_eps, st, in_type="f32",
                           out_type="f32", add=True)
