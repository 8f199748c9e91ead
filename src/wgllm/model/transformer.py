"""A decoder-only transformer resident on one device: weights, KV cache, activations, passes.

`Transformer` uploads the weights in their GGUF block layout, allocates the
KV cache, the activation buffers and the read-back staging, and builds the
forward pass as two reusable dispatch lists: `decode` (one token) and
`prefill` (up to `chunk` tokens). A model split over adapters is a chain of
Transformers, one per part, each holding a range of layers (`layers`): the
first part also the embedding, the last the output head; the hidden state `x`
crosses each cut through the host (`x_staging`). The architecture (`family`, a module of
wgllm.model.arch) supplies each layer's weights and dispatches from the
shared blocks of wgllm.model.blocks, so a pass is a list of per-layer
segments (`segments`). Both passes read the token ids from the `tokens`
buffer and the pass's T and position from the `step` uniform (see
kernels/step.wgsl); the logits head ends with the greedy argmax that writes
the next token id into `tokens[pos + T]`, so a decode loop never needs the
host in between.

With `n_seq` > 1 (continuous batching) the KV cache holds n_seq slots of n_ctx positions,
the single-sequence passes run on the slot the Step names, and `batch` is a third pass:
one decode row per sequence (up to n_seq rows, each its own slot and position: a batched
Step, kernels/step.wgsl), reading the rows' tokens from `btok` and ending with every row's
logits ([n_seq, vocab]) and argmax, written back into `btok`. Each batched row is computed
exactly as the same token decoded alone (the matrix-vector kernel per row, the one-token
attention tiling), so a batched sequence's tokens and K/V equal those of a solo run.

The device may be a real `wgllm.gpu.device.Device` or the planner's
`wgllm.gpu.meter.MeterDevice`: building against the latter records every
buffer the engine will allocate, which is the planner's memory estimate.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from gguf import GGMLQuantizationType

from wgllm.errors import UnsupportedModelError
from wgllm.gpu.dispatch import Dispatch
from wgllm.kernels import linear as lin
from wgllm.kernels import ops
from wgllm.kernels.constants import MAX_BATCH
from wgllm.model import blocks
from wgllm.model.config import ModelConfig

STAGING_SLOTS = 4  # 4-byte token read-back buffers: decode steps queued ahead of the one read, + 1


class Activations:
    """The activation buffers of a forward pass of up to `T` tokens (`head`: with the logits)."""

    def __init__(self, dev, cfg: ModelConfig, T: int, act: str, head: bool = True, n_seq: int = 1):
        a = 2 if act == "f16" else 4
        self.x = dev.buffer(T * cfg.dim * 4, "act")  # x: [T, dim] f32 residual stream
        self.xn = dev.buffer(T * cfg.dim * a, "act")  # xn: [T, dim] normed
        self.qkv = dev.buffer(T * cfg.qkv_dim * a, "act")  # qkv: [T, (Hq+2Hkv)*hd]
        self.attn = dev.buffer(T * cfg.n_heads * cfg.head_dim * a, "act")  # attn: [T, Hq*hd]
        self.gu = dev.buffer(T * 2 * cfg.ffn_dim * a, "act")  # gu: [T, 2*ffn]
        if cfg.post_norms:
            self.h = dev.buffer(T * cfg.dim * 4, "act")  # h: [T, dim] f32 block output before its post-norm
        if head:
            self.xlast = dev.buffer(cfg.dim * a, "act")  # xlast: [1, dim] normed last row
            self.logits = dev.buffer(n_seq * cfg.n_vocab * 4, "logits")  # logits: [n_seq, vocab] f32


class Transformer:
    """A model on one device with its KV cache and forward passes (see module doc).

    tensors: name -> tensor (a GGUF TensorInfo, or for planning a layout's TensorSpec:
    name, type_name, shape, n_rows, row_len, n_bytes, and no data). layers: the
    (start, stop) layer range of this part (None: every layer); the part starting at
    layer 0 embeds the tokens, the one ending at the last layer has the output head
    (`first`, `last`), and a part that is not last reads its x back (`x_staging`). n_seq:
    sequences the KV cache holds (slots of n_ctx positions each) and the batched pass decodes."""

    def __init__(self, dev, tensors: Mapping[str, Any], cfg: ModelConfig, family, *, act: str, n_ctx: int,
                 chunk: int, layers: tuple[int, int] | None = None, n_seq: int = 1):
        self.dev, self.cfg, self.family, self.act, self.n_ctx, self.chunk = dev, cfg, family, act, n_ctx, chunk
        self.n_seq = int(n_seq)
        if not 1 <= self.n_seq <= MAX_BATCH:
            raise ValueError(f"n_seq must be 1..{MAX_BATCH}, not {n_seq}")
        self.batched = False  # True while the batched pass is built (read by wgllm.model.blocks)
        self.tensors = tensors
        self.layer_range = range(*(layers or (0, cfg.n_layers)))
        if not (0 <= self.layer_range.start < self.layer_range.stop <= cfg.n_layers):
            raise ValueError(f"layers {layers} is not a non-empty range of the model's {cfg.n_layers} layers")
        self.first, self.last = self.layer_range.start == 0, self.layer_range.stop == cfg.n_layers
        if self.first or self.last:  # tokens: [n_ctx + 1] u32 (read by the embedding, written by the argmax)
            self.tokens = dev.buffer((n_ctx + 1) * 4, "tokens")
            if self.n_seq > 1:  # btok: [n_seq] u32, the batched pass's tokens (one per row)
                self.btok = dev.buffer(self.n_seq * 4, "tokens")
        self.step = ops.step_buffer(dev)
        self.step_one = ops.step_buffer(dev, "step")  # T=1, pos=0: for one-row passes
        ops.write_step(dev, self.step_one, 1, 0)
        # the weights' bytes are written by a thread while the passes are built (kernels compiled)
        with dev.uploading(background=True):
            self._upload()
            # k_cache, v_cache per layer: [n_seq, n_ctx, Hkv, hd] (act)
            self.kv_row = cfg.n_kv_heads * cfg.head_dim * (2 if act == "f16" else 4)  # bytes per position
            kv_bytes = self.n_seq * n_ctx * self.kv_row
            self.k_cache = [dev.buffer(kv_bytes, "kv") if i in self.layer_range else None for i in range(cfg.n_layers)]
            self.v_cache = [dev.buffer(kv_bytes, "kv") if i in self.layer_range else None for i in range(cfg.n_layers)]
            rows = max(chunk, self.n_seq)  # the activations serve the prefill and the batched pass
            self.acts = Activations(dev, cfg, rows, act, head=self.last, n_seq=self.n_seq)
            self.decode = self.body(1)
            self.prefill = self.body(chunk) if chunk > 1 else self.decode
            self.head = self.logits_head() if self.last else []
            self.batch = self.batch_body() if self.n_seq > 1 else []
            self.slot_copy = self._slot_copy(kv_bytes // self.n_seq) if self.n_seq > 1 else []
        if self.last:
            self.staging = [dev.staging(4) for _ in range(STAGING_SLOTS)]  # token ids read back
            self.logit_staging = dev.staging(cfg.n_vocab * 4)  # one logits row read back
            if self.n_seq > 1:  # the batched pass's tokens [n_seq] (a ring: passes queued ahead) and logits
                self.batch_staging = [dev.staging(self.n_seq * 4) for _ in range(STAGING_SLOTS)]
                self.batch_logit_staging = dev.staging(self.n_seq * cfg.n_vocab * 4)
        else:
            self.x_staging = dev.staging(rows * cfg.dim * 4)  # x: [rows, dim] f32 read back at the cut
        self._all_logits: tuple | None = None
        self._all_hidden: tuple | None = None

    # --- weights ----------------------------------------------------------
    def weight(self, names: list[str], label: str = "weights") -> list[lin.GpuWeight]:
        """Tensors `names` (same row length) as one row-concatenated weight [sum N, K].

        Consecutive tensors of one type share buffers; where types differ (e.g. a
        Q6_K attn_v after Q4_K q/k) each group is its own GpuWeight whose chunks
        carry global row offsets, so together they fill one [T, sum N] output."""
        ts = [self.tensors[n] for n in names]
        n_total = sum(t.n_rows for t in ts)
        out, row, i = [], 0, 0
        while i < len(ts):
            j = i
            while j < len(ts) and ts[j].type_name == ts[i].type_name:
                j += 1
            qtype = GGMLQuantizationType[ts[i].type_name]
            w = lin.upload_weight(self.dev, [_data(t) for t in ts[i:j]], qtype, ts[i].row_len, label)
            chunks = [(buf, r0 + row, n) for buf, r0, n in w.chunks]
            out.append(lin.GpuWeight(w.qtype, w.K, n_total, chunks, w.nbytes))
            row += w.N
            i = j
        return out

    def vector(self, *names: str):
        """F32 vectors `names` concatenated into one buffer (norm weights, biases)."""
        ts = [self.tensors[n] for n in names]
        for t in ts:
            if t.type_name != "F32":
                raise UnsupportedModelError(
                    f"tensor {t.name} is {t.type_name}; wgllm expects F32 norm weights and biases.")
        total = sum(t.n_bytes for t in ts)
        buf = self.dev.buffer(total, "weights")
        self.dev.write_parts(buf, [_data(t) for t in ts], 0, total)
        return buf

    def _upload(self) -> None:
        """This part's weights: the embedding (first part), its layers, the output head (last part;
        a tied output matrix is the embedding, uploaded again when the first part is elsewhere)."""
        tied = self.cfg.tied_embeddings
        if self.first or (self.last and tied):
            (self.token_embd,) = self.weight(["token_embd.weight"])
        if self.last:
            self.output_norm = self.vector("output_norm.weight")
            self.output = [self.token_embd] if tied else self.weight(["output.weight"])
        name = self.cfg.rope_factors_tensor(self.n_ctx)
        factors = self.tensors.get(name) if name else None
        data = getattr(factors, "data", None)  # none when planning: the rope tables' size is the same
        self.rope_factors = None if data is None else np.asarray(data).view(np.float32)  # [rope_dim / 2]
        self.layers = [self.family.layer_weights(self, i) if i in self.layer_range else None
                       for i in range(self.cfg.n_layers)]

    # --- forward pass -----------------------------------------------------
    def segments(self, T: int) -> list[list[Dispatch]]:
        """The dispatches of a pass over up to T tokens, per segment: the embedding (first part),
        then one segment per layer of the part (x = layers(embed(tokens[pos:pos+T])))."""
        layers = [self.family.layer(self, i, T) for i in self.layer_range]
        if not self.first:
            return layers
        ids = self.btok if self.batched else self.tokens  # a batched Step's pos is 0: row t reads btok[t]
        embed = lin.get_rows(self.dev, self.token_embd, ids, self.acts.x, T, self.step, y_type="f32")
        if self.cfg.embed_scale != 1.0:
            embed += ops.rowmap(self.dev, self.acts.x, self.step, D=self.cfg.dim, rows=T, op="scale",
                                c=self.cfg.embed_scale)
        return [embed] + layers

    def body(self, T: int) -> list[Dispatch]:
        """`segments(T)` as one list."""
        return [d for seg in self.segments(T) for d in seg]

    def batch_body(self) -> list[Dispatch]:
        """The batched pass (see module doc): up to n_seq rows, one decode token per sequence;
        the last part adds every row's logits [rows, vocab] and argmax into `btok`."""
        self.batched = True
        try:
            d = self.body(self.n_seq)
        finally:
            self.batched = False
        if not self.last:
            return d
        dev, cfg, a, act, B = self.dev, self.cfg, self.acts, self.act, self.n_seq
        # xn: [B, dim] = rmsnorm(x); logits: [B, vocab] = output @ xn (each row as alone)
        d += ops.rmsnorm(dev, a.x, self.output_norm, a.xn, cfg.dim, B, cfg.rms_eps, self.step, in_type="f32",
                         out_type=act)
        d += blocks.linear(dev, self.output, a.xn, a.logits, B, self.step, x_type=act, y_type="f32", batched=True)
        if cfg.final_softcap:
            d += ops.rowmap(dev, a.logits, self.step, D=cfg.n_vocab, rows=B, op="softcap", c=cfg.final_softcap)
        return d + ops.argmax(dev, a.logits, self.btok, self.step, V=cfg.n_vocab, rows=B)

    def _slot_copy(self, slot_bytes: int) -> list[Dispatch]:
        """The dispatches of `copy_prefix` (one per K and V cache of the part's layers)."""
        self.copy_params = self.dev.buffer(16, "params")  # (src, dst, n, 0) u32 words
        caches = [c for c in self.k_cache + self.v_cache if c is not None]
        return ops.kv_copy(self.dev, caches, self.copy_params, slot_bytes // 4)

    def copy_prefix(self, src: int, dst: int, n: int) -> None:
        """Submit the copy of positions 0 .. n - 1 of KV-cache slot `src` into slot `dst`, every layer
        of this part (a sequence starting from another's cached prefix)."""
        row = self.kv_row // 4  # u32 words per position
        slot = self.n_ctx * row
        self.dev.write(self.copy_params, np.array([src * slot, dst * slot, n * row, 0], np.uint32))
        self.dev.run(self.slot_copy)

    def logits_head(self) -> list[Dispatch]:
        """After a body pass: logits of the last row, and its argmax written to tokens[pos + T]."""
        dev, cfg, a, act = self.dev, self.cfg, self.acts, self.act
        # xlast: [1, dim] = rmsnorm(x[T-1]); logits: [vocab] = output @ xlast
        d = ops.rmsnorm(dev, a.x, self.output_norm, a.xlast, cfg.dim, 1, cfg.rms_eps, self.step,
                        in_type="f32", out_type=act, last_row_only=True)
        d += blocks.linear(dev, self.output, a.xlast, a.logits, 1, self.step_one, x_type=act, y_type="f32")
        d += self._softcap(a.logits, 1)
        d += ops.argmax(dev, a.logits, self.tokens, self.step, V=cfg.n_vocab)
        return d

    def _softcap(self, logits, rows: int) -> list[Dispatch]:
        """The final-logit soft cap (Gemma 2) over `rows` rows of logits, if the model has one."""
        if not self.cfg.final_softcap:
            return []
        return ops.rowmap(self.dev, logits, self.step, D=self.cfg.n_vocab, rows=rows, op="softcap",
                          c=self.cfg.final_softcap, per_token=rows > 1)

    def all_logits(self) -> tuple[list[Dispatch], object]:
        """Extra dispatches (run after a prefill pass) giving logits of every row: [chunk, vocab] f32."""
        if self._all_logits is None:
            dev, cfg, a, T = self.dev, self.cfg, self.acts, self.chunk
            out = dev.buffer(T * cfg.n_vocab * 4, "logits")
            d = ops.rmsnorm(dev, a.x, self.output_norm, a.xn, cfg.dim, T, cfg.rms_eps, self.step,
                            in_type="f32", out_type=self.act)
            d += blocks.linear(dev, self.output, a.xn, out, T, self.step, x_type=self.act, y_type="f32")
            d += self._softcap(out, T)
            self._all_logits = (d, out)
        return self._all_logits

    def all_hidden(self) -> tuple[list[Dispatch], object]:
        """Extra dispatches (run after a prefill pass) giving the final-normed hidden state of every
        row (what the logits are computed from; embeddings pool it): [chunk, dim] f32."""
        if self._all_hidden is None:
            dev, cfg, T = self.dev, self.cfg, self.chunk
            out = dev.buffer(T * cfg.dim * 4, "act")
            d = ops.rmsnorm(dev, self.acts.x, self.output_norm, out, cfg.dim, T, cfg.rms_eps, self.step,
                            in_type="f32", out_type="f32")
            self._all_hidden = (d, out)
        return self._all_hidden

    def write_tokens(self, ids, start: int) -> None:
        """Put token ids at positions start.. of the `tokens` buffer."""
        self.dev.write(self.tokens, np.asarray(ids, np.uint32), start * 4)

    def write_batch_tokens(self, ids) -> None:
        """The batched pass's input tokens, one per row (`btok`)."""
        self.dev.write(self.btok, np.asarray(ids, np.uint32))


def _data(t):
    """A tensor's bytes (a memory-mapped GGUF view), or the data-less spec itself when planning."""
    data = getattr(t, "data", None)
    return t if data is None else data
