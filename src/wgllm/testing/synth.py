"""Random-weight llama GGUF files, for correctness tests and benchmarks.

`write_llama_gguf` writes a llama-architecture GGUF with llama.cpp's tensor names and metadata
keys, random weights in any of `WEIGHT_TYPES`, and a small byte-level BPE tokenizer, such that
llama.cpp, HF transformers (`from_pretrained(dir, gguf_file=...)`) and our engine can all load it.
Only gguf and numpy are needed here (benchmark machines have nothing else).

Q/K layout: llama.cpp's converter permutes the rows of attn_q / attn_k so that rope in "normal"
mode rotates interleaved pairs (2i, 2i+1) of each head, where HF rotates (i, i + head_dim/2).
Our random Q/K are *defined* in GGUF layout (nothing is permuted on write): llama.cpp and our engine
use them as is, and transformers' GGUF loader (`LlamaTensorProcessor._reverse_permute_weights`)
un-permutes them into HF layout on load, which is an exact row reordering. That the two readings
agree is checked in tests/unit/test_synth.py: `oracle.numpy_llama_logits` (interleaved rope on the
GGUF rows) matches transformers' logits to ~1e-6 relative.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as QT

from wgllm.kernels import qtypes
from wgllm.plan.layout import ModelLayout, hparams, layout_for

__all__ = [
    "LlamaShape",
    "SHAPES",
    "WEIGHT_TYPES",
    "SPECIAL_TOKENS",
    "CHATML_TEMPLATE",
    "tensor_plan",
    "random_weight",
    "write_llama_gguf",
]


@dataclass
class LlamaShape:
    """Hyperparameters of a llama-architecture model (names as in llama.cpp's GGUF metadata)."""

    name: str
    n_vocab: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    ctx: int = 2048
    rope_base: float = 10000.0
    rms_eps: float = 1e-5
    tied_embeddings: bool = False
    head_dim: int = 0  # 0: dim // n_heads
    arch: str = "llama"  # a family of wgllm.model.arch: llama, qwen2, qwen3, gemma2, gemma3
    extra: dict = dataclasses.field(default_factory=dict)  # more `{arch}.*` metadata, e.g. {"attention.sliding_window": 8}
    # llama 3.1 rope scaling (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings):
    # written as llama.cpp's converter does, as the rope_freqs.weight factors
    rope_scaling: dict | None = None
    # phi3 longrope: random rope_factors_long/short.weight (the original context and attention factor
    # go in `extra`: "rope.scaling.original_context_length", "rope.scaling.attn_factor")
    longrope: bool = False

    def __post_init__(self):
        if not self.head_dim:
            self.head_dim = self.dim // self.n_heads
        if self.n_heads % self.n_kv_heads or self.head_dim % 2:
            raise ValueError(f"{self.name}: n_heads must be a multiple of n_kv_heads and head_dim even")

    def metadata(self) -> dict:
        """The GGUF metadata (`general.architecture` and `{arch}.*` keys) of this shape."""
        md = hparams(self.arch, n_vocab=self.n_vocab, dim=self.dim, n_layers=self.n_layers, n_heads=self.n_heads,
                     n_kv_heads=self.n_kv_heads, ffn_dim=self.ffn_dim, ctx=self.ctx, rope_base=self.rope_base,
                     rms_eps=self.rms_eps, head_dim=self.head_dim)
        return {**md, **{f"{self.arch}.{k}": v for k, v in self.extra.items()}}

    def layout(self, types="F32", strict: bool = False) -> ModelLayout:
        """The planning layout of a file of this shape (see `tensor_plan` for `types`)."""
        if isinstance(types, str):
            ftype, table = (None, types) if types in qtypes.TYPES else (types, "F32")
        else:
            ftype, table = types.get("ftype"), types
        optional = ("rope_freqs.weight",) if self.rope_scaling else ()
        optional += ("rope_factors_long.weight", "rope_factors_short.weight") if self.longrope else ()
        return layout_for(self.name, self.metadata(), tied=self.tied_embeddings, ftype=ftype, types=table,
                          strict=strict, optional=optional)

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """GGUF tensor name -> numpy shape (rows, cols) = (out features, in features), in file order."""
        return {t.name: tuple(reversed(t.shape)) for t in self.layout().tensors}

    @property
    def n_params(self) -> int:
        """Number of weights (elements) in the model."""
        return sum(int(np.prod(s)) for s in self.tensor_shapes().values())

    def replace(self, **changes) -> "LlamaShape":
        """A copy with some fields changed (head_dim is recomputed unless given)."""
        changes.setdefault("head_dim", 0 if "dim" in changes or "n_heads" in changes else self.head_dim)
        return dataclasses.replace(self, **changes)


SHAPES: dict[str, LlamaShape] = {s.name: s for s in [
    # real models (hyperparameters from their HF config.json)
    LlamaShape("smollm2-135m", 49152, 576, 30, 9, 3, 1536, 8192, 100000.0, 1e-5, True),
    LlamaShape("llama-3.2-1b", 128256, 2048, 16, 32, 8, 8192, 131072, 500000.0, 1e-5, True),
    LlamaShape("llama-3-8b", 128256, 4096, 32, 32, 8, 14336, 8192, 500000.0, 1e-5, False),
    # tiny ones for tests: GQA or not, tied or not, dims that are not multiples of 32/64/256
    LlamaShape("tiny-gqa", 300, 80, 2, 5, 1, 144, 256, 10000.0, 1e-5, False),
    LlamaShape("tiny-mha-tied", 288, 96, 2, 6, 6, 160, 256, 10000.0, 1e-6, True),
    LlamaShape("tiny-wide-heads", 320, 64, 2, 4, 2, 96, 256, 500000.0, 1e-5, False, head_dim=32),
    LlamaShape("tiny-256", 320, 256, 2, 4, 2, 512, 256, 10000.0, 1e-5, False),  # fits 256-blocks
    # mid-size: quick to write, realistic proportions (GQA 2, ffn not a multiple of 256)
    LlamaShape("mid-30m", 8192, 512, 6, 8, 4, 1408, 2048, 100000.0, 1e-5, False),
]}

WEIGHT_TYPES = tuple(sorted(qtypes.runnable_types()))
"""GGML types `write_llama_gguf` can write for 2-D weights (norms are always F32)."""

# gguf 0.19 quantizes F32/F16/BF16/Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 (+TQ1_0/TQ2_0/MXFP4) but not K-quants.
_GGUF_CAN_QUANTIZE = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"}
FAST_THRESHOLD = 200_000_000  # params; above it `fast=None` writes random blocks directly


def tensor_plan(shape: LlamaShape, types: dict[str, str] | str = "F32", strict: bool = False
                ) -> dict[str, tuple[tuple[int, ...], str]]:
    """GGUF tensor name -> (numpy shape, GGML type name), in file order: the architecture's declared
    tensors (wgllm.model.arch) in the types of `wgllm.plan.layout.tensor_type`.

    `types` is one type for every 2-D weight ("Q4_0"), a llama-quantize file type that is not a
    type name ("Q4_K_M": its mix, `wgllm.kernels.qtypes.ftype_tensor_type`), or a dict looked up
    by tensor base name ("blk.3.attn_v"), then role ("attn_v", "token_embd", "output", ...), then
    "default" (a key "ftype" picks a mix instead). A type whose block does not divide a row falls
    back like llama.cpp (Q4_K -> Q5_0, Q6_K -> Q8_0, else F16), or raises if `strict`.
    """
    tensors = shape.layout(types, strict).tensors
    for t in tensors:
        if t.ggml_type not in WEIGHT_TYPES:
            raise ValueError(f"unsupported weight type {t.ggml_type!r} for {t.name} (supported: {WEIGHT_TYPES})")
    return {t.name: (tuple(reversed(t.shape)), t.ggml_type) for t in tensors}


# ---------------------------------------------------------------- tensor data

def _std_for(shape: tuple[int, ...]) -> float:
    """Init scale like a trained net: rows of unit-ish norm, so activations and logits stay O(1)."""
    return 1.0 / np.sqrt(shape[-1])


def _f16_scales(rng, n: int, d: float) -> np.ndarray:
    """n f16 block scales around d (+-25%), kept normal (>= 2**-14) so no kernel meets subnormals."""
    s = np.maximum(d * rng.uniform(0.75, 1.25, n), 2.0 ** -14)
    return s.astype(np.float16).view(np.uint8).reshape(n, 2)


def _random_blocks(t: str, rows: int, cols: int, std: float, rng) -> np.ndarray:
    """Random but valid blocks of GGML type t, values ~zero-mean with roughly `std`; no float work."""
    bs, ts = gguf.GGML_QUANT_SIZES[QT[t]]
    n = rows * cols // bs
    raw = rng.integers(0, 256, size=(n, ts), dtype=np.uint8)
    if t == "Q8_0":  # f16 d, int8 q[32]: d*q
        raw[:, :2] = _f16_scales(rng, n, std / 73.9)
    elif t == "Q4_0":  # f16 d, 32 nibbles: d*(q-8)
        raw[:, :2] = _f16_scales(rng, n, std / 4.61)
    elif t == "Q5_0":  # f16 d, 32 high bits, 32 nibbles: d*(q-16)
        raw[:, :2] = _f16_scales(rng, n, std / 9.23)
    elif t == "Q4_1":  # f16 d, f16 m, 32 nibbles: d*q + m; m = -7.5 d centres it
        raw[:, :2] = _f16_scales(rng, n, std / 4.61)
        raw[:, 2:4] = (raw[:, :2].copy().view(np.float16) * -7.5).view(np.uint8)
    elif t == "Q4_K":
        raw[:, :16] = _q4_k_header(rng, n, std)
    elif t == "Q6_K":  # ql[128] qh[64] int8 scales[16] f16 d: d*sc*(q-32)
        sc = rng.integers(4, 25, size=(n, 16)) * rng.choice([-1, 1], size=(n, 16))
        raw[:, 192:208] = sc.astype(np.int8).view(np.uint8)
        raw[:, 208:210] = _f16_scales(rng, n, std / (15.5 * 18.47))
    elif t in _SCALED:
        _scaled_blocks(t, raw, std, rng)
    else:
        raise ValueError(f"no random block writer for {t}")
    return raw.reshape(rows, cols // bs * ts)


# The other block types: their f16 scale fields (byte offset, value relative to the block's d). The
# offsets make each block zero-mean: Q5_1 d*q + m with m = -15.5 d; Q2_K d*sc*q - dmin*m with m = sc
# and dmin = 1.5 d; Q5_K (Q4_K's header) with dmin = 15.5 d; Q3_K, IQ4_NL, IQ4_XS are centred as drawn.
_SCALED = {"Q5_1": ((0, 1.0), (2, -15.5)), "IQ4_NL": ((0, 1.0),), "Q2_K": ((80, 1.0), (82, 1.5)),
           "Q3_K": ((108, 1.0),), "Q5_K": ((0, 1.0), (2, 15.5)), "IQ4_XS": ((0, 1.0),)}


def _scaled_blocks(t: str, raw: np.ndarray, std: float, rng) -> None:
    """Fill the scale fields of random blocks `raw` [n, bytes] of type t (in `_SCALED`) so that the
    values have about `std`: drawn with d = 1, measured on a sample with gguf, then rescaled."""
    n = raw.shape[0]
    if t == "Q2_K":  # 4-bit sub-block scale and min: m = sc in 1..15
        sc = rng.integers(1, 16, size=(n, 16), dtype=np.uint8)
        raw[:, :16] = sc | (sc << 4)
    elif t == "Q5_K":
        raw[:, :16] = _q4_k_header(rng, n, 1.0)
    jitter = rng.uniform(0.75, 1.25, n)

    def set_fields(scale: np.ndarray) -> None:
        for off, rel in _SCALED[t]:
            raw[:, off:off + 2] = (scale * rel).astype(np.float16).view(np.uint8).reshape(n, 2)

    set_fields(jitter)
    sample = gguf.quants.dequantize(raw[:256], QT[t])
    set_fields(jitter * (std / max(float(sample.std()), 1e-30)))


def _q4_k_header(rng, n: int, std: float) -> np.ndarray:
    """Q4_K's f16 d, f16 dmin and 12 bytes of 6-bit (scale, min) for 8 sub-blocks: d*sc*q - dmin*m.
    With m = sc and dmin = 7.5 d each sub-block is d*sc*(q - 7.5), centred on zero."""
    v = rng.integers(8, 41, size=(n, 8), dtype=np.uint8)  # sc = m = v
    head = np.empty((n, 16), dtype=np.uint8)
    head[:, :2] = _f16_scales(rng, n, std / (25.5 * 4.61))
    head[:, 2:4] = (head[:, :2].copy().view(np.float16) * 7.5).view(np.uint8)
    lo = (v[:, :4] & 63) | ((v[:, 4:] >> 4) << 6)  # sc[0:4] / m[0:4] plus top bits of [4:8]
    head[:, 4:8], head[:, 8:12] = lo, lo
    head[:, 12:16] = (v[:, 4:] & 0xF) | ((v[:, 4:] & 0xF) << 4)
    return head


def random_weight(t: str, shape: tuple[int, ...], *, std: float, rng: np.random.Generator,
                  fast: bool = False) -> np.ndarray:
    """Random data for one tensor of GGML type `t`, as written to the file: float32/float16 for
    F32/F16, else uint8 blocks of shape (rows, bytes per row). Without `fast`, normal floats are
    quantized with gguf where gguf can; K-quants (and everything when `fast`) get random blocks."""
    if t in ("F32", "F16", "BF16"):
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= std
        if t == "BF16":  # the top half of each f32 (truncated), as bytes like gguf's quantize
            bf = (x.view(np.uint32) >> 16).astype(np.uint16)
            return bf.view(np.uint8).reshape(*shape[:-1], shape[-1] * 2)
        return x.astype(np.float16) if t == "F16" else x
    rows, cols = (1, shape[0]) if len(shape) == 1 else shape
    if fast or t not in _GGUF_CAN_QUANTIZE:
        return _random_blocks(t, rows, cols, std, rng)
    return gguf.quants.quantize(rng.standard_normal((rows, cols)).astype(np.float32) * std, QT[t])


def llama3_rope_factors(shape: LlamaShape) -> np.ndarray:
    """rope_freqs.weight of llama 3.1 scaling, as llama.cpp's converter computes it: per rotary
    pair, the divisor of its frequency (1 for short wavelengths, `factor` for long, smooth between)."""
    p = shape.rope_scaling
    factor, lo, hi = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
    old = p["original_max_position_embeddings"]
    freqs = 1.0 / shape.rope_base ** (np.arange(0, shape.head_dim, 2, dtype=np.float64) / shape.head_dim)
    out = []
    for f in freqs:
        wavelen = 2 * np.pi / f
        if wavelen < old / hi:
            out.append(1.0)
        elif wavelen > old / lo:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, np.float32)


def _tensor_data(name: str, shape: tuple[int, ...], t: str, rng, fast: bool, model: LlamaShape | None = None
                 ) -> np.ndarray:
    if name == "rope_freqs.weight":
        return llama3_rope_factors(model)
    if name.startswith("rope_factors_"):  # longrope: each frequency divided by a factor in [1, 4)
        return (1.0 + 3.0 * rng.random(shape)).astype(np.float32)
    if name.endswith("_norm.weight"):
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    if name.endswith(".bias"):
        return (0.5 * rng.standard_normal(shape)).astype(np.float32)
    return random_weight(t, shape, std=_std_for(shape), rng=rng, fast=fast)


# ---------------------------------------------------------------- tokenizer

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # ids 0, 1, 2 (as in SmolLM2)
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_MERGES = ["Ġ t", "h e", "i n", "Ġ a", "e r", "o n", "Ġt he", "r e", "Ġ s", "a t", "e n", "o u", "Ġ w",
           "i s", "Ġ o", "Ġ c", "o r", "e s", "a n", "Ġ b", "Ġ f", "i t", "Ġ p", "Ġ m", "l l", "Ġ i",
           "e d", "Ġ h", "a r", "Ġ d", "Ġ l", "Ġ n"]


def _byte_alphabet() -> list[str]:
    """GPT-2's bytes_to_unicode: the printable spelling of each byte 0..255."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def byte_bpe_vocab(n_vocab: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) of a gpt2-style byte-level BPE vocabulary of exactly n_vocab:
    the special tokens, the 256 byte tokens, as many merges as fit, then "[PADn]" (UNUSED) tokens."""
    tokens = [*SPECIAL_TOKENS, *_byte_alphabet()]
    if n_vocab < len(tokens):
        raise ValueError(f"n_vocab {n_vocab} < {len(tokens)} needed for a byte-level vocabulary")
    merges = _MERGES[: n_vocab - len(tokens)]
    tokens += [m.replace(" ", "") for m in merges]
    types = [int(gguf.TokenType.CONTROL)] * len(SPECIAL_TOKENS) + [int(gguf.TokenType.NORMAL)] * (
        len(tokens) - len(SPECIAL_TOKENS))
    pad = n_vocab - len(tokens)
    return tokens + [f"[PAD{i}]" for i in range(pad)], types + [int(gguf.TokenType.UNUSED)] * pad, merges


def _add_tokenizer(w: gguf.GGUFWriter, shape: LlamaShape, tokenizer: str, template: str) -> None:
    if tokenizer == "none":
        return
    if tokenizer != "byte":
        raise ValueError(f"tokenizer must be 'byte' or 'none', not {tokenizer!r}")
    tokens, types, merges = byte_bpe_vocab(shape.n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(template)


# ---------------------------------------------------------------- writer

def _add_metadata(w: gguf.GGUFWriter, s: LlamaShape, file_type: int) -> None:
    w.add_name(s.name)  # note: transformers reads a name containing "mistral" as a mistral model
    w.add_file_type(file_type)
    if file_type not in (0, 1):
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    write_metadata(w, s.metadata())


def write_metadata(w: gguf.GGUFWriter, metadata: dict) -> None:
    """Write hyperparameter keys (ints as uint32, floats as float32, as llama.cpp does); the
    architecture key is written by GGUFWriter itself."""
    for key, value in metadata.items():
        if key != "general.architecture":
            (w.add_float32 if isinstance(value, float) else w.add_uint32)(key, value)


def _file_type(types: dict[str, str] | str, plan) -> int:
    name = types if isinstance(types, str) else types.get("ftype") or types.get("default")
    if name is None:
        weights = [t for n, (_, t) in plan.items() if "_norm" not in n]
        name = max(set(weights), key=weights.count)
    return qtypes.FTYPES.get(name, (0,))[0]


def write_llama_gguf(path: str | Path, shape: LlamaShape | str, *, types: dict[str, str] | str = "F32",
                     seed: int = 0, tokenizer: str = "byte", fast: bool | None = None,
                     strict: bool = False, chat_template: str = CHATML_TEMPLATE) -> Path:
    """Write a llama-family GGUF (arch of `shape`: llama or qwen2) with random weights; returns the path.

    shape: a `LlamaShape` or a key of `SHAPES`. types: see `tensor_plan` (e.g. "Q4_0",
    {"default": "Q4_0", "token_embd": "Q8_0", "attn_v": "Q6_K"}, or "Q4_K_M"); norms are F32.
    seed: tensor i is drawn from `default_rng([seed, i])`. tokenizer: "byte" (gpt2-style byte-level
    BPE with ChatML specials and template, padded to n_vocab) or "none". fast: write random quantized
    blocks directly instead of quantizing floats (default: when the model has > 200M weights).
    general.file_type is the file type's id (a mix name, or types["ftype"]), else the default type's.
    Tensors are generated and written one at a time, so memory stays about one tensor.
    chat_template: the tokenizer.chat_template text (tests use hostile ones).
    """
    shape = SHAPES[shape] if isinstance(shape, str) else shape
    plan = tensor_plan(shape, types, strict)
    fast = shape.n_params > FAST_THRESHOLD if fast is None else fast
    w = gguf.GGUFWriter(str(path), shape.arch)
    _add_metadata(w, shape, _file_type(types, plan))
    _add_tokenizer(w, shape, tokenizer, chat_template)
    for name, (dims, t) in plan.items():
        _add_tensor_info(w, name, dims, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for i, (name, (dims, t)) in enumerate(plan.items()):
        w.write_tensor_data(_tensor_data(name, dims, t, np.random.default_rng([seed, i]), fast, shape))
    w.close()
    return Path(path)


def _add_tensor_info(w: gguf.GGUFWriter, name: str, dims: tuple[int, ...], t: str) -> None:
    if t in ("F32", "F16"):
        dtype = np.float32 if t == "F32" else np.float16
        w.add_tensor_info(name, dims, np.dtype(dtype), int(np.prod(dims)) * np.dtype(dtype).itemsize)
        return
    byte_shape = gguf.quant_shape_to_byte_shape(dims, QT[t])
    w.add_tensor_info(name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=QT[t])
