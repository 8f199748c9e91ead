"""The llama architecture family (Llama 2/3, SmolLM2, TinyLlama, Mistral without
sliding window, Qwen2) on WebGPU.

`LlamaConfig` reads hyperparameters from GGUF metadata; `LlamaModel` uploads
the weights in their GGUF block layout, allocates the KV cache and the
activation buffers, and builds the forward pass as two reusable dispatch
lists: `decode` (one token) and `prefill` (up to `chunk` tokens). Both read
the token ids from the `tokens` buffer and the pass's T and position from the
`step` uniform (see kernels/step.wgsl); each ends with the greedy argmax that
writes the next token id into `tokens[pos + T]`, so a decode loop never needs
the host in between.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wgllm.errors import InvalidModelFileError, UnsupportedModelError
from wgllm.gpu.device import Device, Dispatch
from wgllm.kernels import linear as lin
from wgllm.kernels import ops
from wgllm.model.gguf import GGUFFile

ARCHES = ("llama", "qwen2")  # qwen2: q/k/v biases, neox rope


@dataclass(frozen=True)
class LlamaConfig:
    """Hyperparameters of a llama-family model, from GGUF metadata."""

    arch: str
    n_vocab: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    n_ctx_train: int
    rope_base: float
    rope_dim: int
    rope_mode: str  # "normal" (GGUF llama: interleaved pairs) or "neox"
    rms_eps: float
    tied_embeddings: bool
    qkv_bias: bool

    @property
    def qkv_dim(self) -> int:
        return (self.n_heads + 2 * self.n_kv_heads) * self.head_dim

    @classmethod
    def from_gguf(cls, g: GGUFFile) -> "LlamaConfig":
        arch = g.architecture
        if arch not in ARCHES:
            raise UnsupportedModelError(
                f"'{g.path.name}' uses the '{arch}' architecture, which wgllm does not run yet "
                f"(supported: {', '.join(ARCHES)}). Use a model of a supported family."
            )
        try:
            dim = int(g.arch_get("embedding_length"))
            n_heads = int(g.arch_get("attention.head_count"))
            head_dim = int(g.arch_get("attention.key_length", dim // n_heads))
            emb = g.tensors["token_embd.weight"]
            return cls(
                arch=arch,
                n_vocab=int(emb.shape[1]),
                dim=dim,
                n_layers=int(g.arch_get("block_count")),
                n_heads=n_heads,
                n_kv_heads=int(g.arch_get("attention.head_count_kv", n_heads)),
                head_dim=head_dim,
                ffn_dim=int(g.arch_get("feed_forward_length")),
                n_ctx_train=int(g.arch_get("context_length", 2048)),
                rope_base=float(g.arch_get("rope.freq_base", 10000.0)),
                rope_dim=int(g.arch_get("rope.dimension_count", head_dim)),
                rope_mode="neox" if arch == "qwen2" else "normal",
                rms_eps=float(g.arch_get("attention.layer_norm_rms_epsilon", 1e-5)),
                tied_embeddings="output.weight" not in g.tensors,
                qkv_bias="blk.0.attn_q.bias" in g.tensors,
            )
        except (TypeError, KeyError) as exc:
            raise InvalidModelFileError(
                f"'{g.path.name}' lacks llama metadata or tensors ({exc}); the file is "
                f"incomplete or not a llama-family model."
            ) from exc


@dataclass
class LayerWeights:
    attn_norm: object  # f32 buffer [dim]
    wqkv: list[lin.GpuWeight]  # [qkv_dim, dim]
    wo: list[lin.GpuWeight]  # [dim, n_heads*head_dim]
    ffn_norm: object  # f32 buffer [dim]
    wgu: list[lin.GpuWeight]  # [2*ffn, dim]: gate rows then up rows
    wdown: list[lin.GpuWeight]  # [dim, ffn]
    bqkv: object = None  # f32 [qkv_dim] (qwen2)


class Activations:
    """The activation buffers of a forward pass of up to `T` tokens."""

    def __init__(self, dev: Device, cfg: LlamaConfig, T: int, act: str):
        a = 2 if act == "f16" else 4
        self.x = dev.buffer(T * cfg.dim * 4, "act")  # x: [T, dim] f32 residual stream
        self.xn = dev.buffer(T * cfg.dim * a, "act")  # xn: [T, dim] normed
        self.qkv = dev.buffer(T * cfg.qkv_dim * a, "act")  # qkv: [T, (Hq+2Hkv)*hd]
        self.attn = dev.buffer(T * cfg.n_heads * cfg.head_dim * a, "act")  # attn: [T, Hq*hd]
        self.gu = dev.buffer(T * 2 * cfg.ffn_dim * a, "act")  # gu: [T, 2*ffn]
        self.xlast = dev.buffer(cfg.dim * a, "act")  # xlast: [1, dim] normed last row
        self.logits = dev.buffer(cfg.n_vocab * 4, "logits")  # logits: [vocab] f32


def _linear(dev: Device, ws: list[lin.GpuWeight], x, y, T: int, step, **kw) -> list[Dispatch]:
    """`lin.linear` over a weight made of one or more GpuWeights (see LlamaModel._weight)."""
    return [d for w in ws for d in lin.linear(dev, w, x, y, T, step, **kw)]


class LlamaModel:
    """A llama-family model resident on one device, with its KV cache and forward passes."""

    def __init__(self, dev: Device, g: GGUFFile, cfg: LlamaConfig, *, act: str, n_ctx: int, chunk: int):
        self.dev, self.cfg, self.act, self.n_ctx, self.chunk = dev, cfg, act, n_ctx, chunk
        self.tokens = dev.buffer((n_ctx + 1) * 4, "tokens")  # tokens: [n_ctx + 1] u32
        self.step = ops.step_buffer(dev)
        self.step_one = ops.step_buffer(dev, "step")  # T=1, pos=0: for one-row passes
        ops.write_step(dev, self.step_one, 1, 0)
        self._upload(g)
        kv_bytes = n_ctx * cfg.n_kv_heads * cfg.head_dim * (2 if act == "f16" else 4)
        self.k_cache = [dev.buffer(kv_bytes, "kv") for _ in range(cfg.n_layers)]
        self.v_cache = [dev.buffer(kv_bytes, "kv") for _ in range(cfg.n_layers)]
        self.acts = Activations(dev, cfg, chunk, act)
        self.decode = self.body(1)
        self.prefill = self.body(chunk) if chunk > 1 else self.decode
        self.head = self.logits_head()
        self._all_logits: tuple | None = None

    # --- weights ----------------------------------------------------------
    def _weight(self, g: GGUFFile, names: list[str], label: str) -> list[lin.GpuWeight]:
        """Tensors `names` (same row length) as one row-concatenated weight [sum N, K].

        Consecutive tensors of one type share buffers; where types differ (e.g. a
        Q6_K attn_v after Q4_K q/k) each group is its own GpuWeight whose chunks
        carry global row offsets, so together they fill one [T, sum N] output."""
        ts = [g.tensors[n] for n in names]
        n_total = sum(t.n_rows for t in ts)
        out, row = [], 0
        i = 0
        while i < len(ts):
            j = i
            while j < len(ts) and ts[j].ggml_type == ts[i].ggml_type:
                j += 1
            w = lin.upload_weight(self.dev, [t.data for t in ts[i:j]], ts[i].ggml_type, ts[i].row_len, label)
            chunks = [(buf, r0 + row, n) for buf, r0, n in w.chunks]
            out.append(lin.GpuWeight(w.qtype, w.K, n_total, chunks, w.nbytes))
            row += w.N
            i = j
        return out

    def _vector(self, g: GGUFFile, *names: str):
        """F32 vectors `names` concatenated into one buffer (norm weights, q|k|v biases)."""
        for n in names:
            if g.tensors[n].type_name != "F32":
                raise UnsupportedModelError(
                    f"tensor {n} is {g.tensors[n].type_name}; wgllm expects F32 norm weights and biases.")
        data = np.concatenate([g.tensors[n].data for n in names]) if len(names) > 1 else g.tensors[names[0]].data
        return self.dev.upload(data, "weights")

    def _upload(self, g: GGUFFile) -> None:
        cfg = self.cfg
        (self.token_embd,) = self._weight(g, ["token_embd.weight"], "weights")
        self.output_norm = self._vector(g, "output_norm.weight")
        self.output = [self.token_embd] if cfg.tied_embeddings else self._weight(g, ["output.weight"], "weights")
        self.layers = []
        for i in range(cfg.n_layers):
            b = f"blk.{i}."
            self.layers.append(
                LayerWeights(
                    attn_norm=self._vector(g, b + "attn_norm.weight"),
                    wqkv=self._weight(g, [b + "attn_q.weight", b + "attn_k.weight", b + "attn_v.weight"], "weights"),
                    wo=self._weight(g, [b + "attn_output.weight"], "weights"),
                    ffn_norm=self._vector(g, b + "ffn_norm.weight"),
                    wgu=self._weight(g, [b + "ffn_gate.weight", b + "ffn_up.weight"], "weights"),
                    wdown=self._weight(g, [b + "ffn_down.weight"], "weights"),
                    bqkv=self._vector(g, b + "attn_q.bias", b + "attn_k.bias", b + "attn_v.bias")
                    if cfg.qkv_bias else None,
                )
            )

    # --- forward pass -----------------------------------------------------
    def body(self, T: int) -> list[Dispatch]:
        """The dispatches of the layers over up to T tokens: x = layers(embed(tokens[pos:pos+T]))."""
        d = lin.get_rows(self.dev, self.token_embd, self.tokens, self.acts.x, T, self.step, y_type="f32")
        for i, L in enumerate(self.layers):
            d += self._layer(T, L, i)
        return d

    def logits_head(self) -> list[Dispatch]:
        """After a body pass: logits of the last row, and its argmax written to tokens[pos + T]."""
        dev, cfg, a, act = self.dev, self.cfg, self.acts, self.act
        # xlast: [1, dim] = rmsnorm(x[T-1]); logits: [vocab] = output @ xlast
        d = ops.rmsnorm(dev, a.x, self.output_norm, a.xlast, cfg.dim, 1, cfg.rms_eps, self.step,
                        in_type="f32", out_type=act, last_row_only=True)
        d += _linear(dev, self.output, a.xlast, a.logits, 1, self.step_one, x_type=act, y_type="f32")
        d += ops.argmax(dev, a.logits, self.tokens, self.step, V=cfg.n_vocab)
        return d

    def _layer(self, T: int, L: LayerWeights, i: int) -> list[Dispatch]:
        dev, cfg, a, act, st = self.dev, self.cfg, self.acts, self.act, self.step
        hd, Hq, Hkv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        d = ops.rmsnorm(dev, a.x, L.attn_norm, a.xn, cfg.dim, T, cfg.rms_eps, st, in_type="f32", out_type=act)
        d += _linear(dev, L.wqkv, a.xn, a.qkv, T, st, x_type=act, y_type=act)  # qkv: [T, (Hq+2Hkv)*hd]
        if L.bqkv is not None:
            d += ops.bias_add(dev, a.qkv, L.bqkv, st, T_max=T, n=cfg.qkv_dim, act=act)
        d += ops.rope_kv(dev, a.qkv, self.k_cache[i], self.v_cache[i], st, T_max=T, n_heads=Hq,
                         n_kv_heads=Hkv, head_dim=hd, rope_base=cfg.rope_base, rope_dim=cfg.rope_dim,
                         mode=cfg.rope_mode, act=act)
        d += ops.attention(dev, a.qkv, self.k_cache[i], self.v_cache[i], a.attn, st, T_max=T, n_heads=Hq,
                           n_kv_heads=Hkv, head_dim=hd, n_ctx=self.n_ctx, act=act)  # attn: [T, Hq*hd]
        d += _linear(dev, L.wo, a.attn, a.x, T, st, x_type=act, y_type="f32", add=True)  # x += attn @ wo
        d += ops.rmsnorm(dev, a.x, L.ffn_norm, a.xn, cfg.dim, T, cfg.rms_eps, st, in_type="f32", out_type=act)
        d += _linear(dev, L.wgu, a.xn, a.gu, T, st, x_type=act, y_type=act)  # gu: [T, 2*ffn]
        # x += (silu(gate) * up) @ wdown, the SwiGLU product formed as the kernel loads its input
        d += _linear(dev, L.wdown, a.gu, a.x, T, st, x_type=act, y_type="f32", add=True, glu=True)
        return d

    def all_logits(self) -> tuple[list[Dispatch], object]:
        """Extra dispatches (run after a prefill pass) giving logits of every row: [chunk, vocab] f32."""
        if self._all_logits is None:
            dev, cfg, a, T = self.dev, self.cfg, self.acts, self.chunk
            out = dev.buffer(T * cfg.n_vocab * 4, "logits")
            d = ops.rmsnorm(dev, a.x, self.output_norm, a.xn, cfg.dim, T, cfg.rms_eps, self.step,
                            in_type="f32", out_type=self.act)
            d += _linear(dev, self.output, a.xn, out, T, self.step, x_type=self.act, y_type="f32")
            self._all_logits = (d, out)
        return self._all_logits

    def write_tokens(self, ids, start: int) -> None:
        """Put token ids at positions start.. of the `tokens` buffer."""
        self.dev.write(self.tokens, np.asarray(ids, np.uint32), start * 4)
