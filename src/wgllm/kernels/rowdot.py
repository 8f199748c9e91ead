"""The generated body of rowdot.wgsl: the CPU-adapter kernel of `linear` (see that file).

For one weight type and row length the body is straight-line WGSL: for each of
the R rows of an invocation it loads the vec4s of a group of G blocks (G * block
bytes is a multiple of 16, so the pattern of offsets repeats from group to
group and every field sits at a constant position), dequantizes each block once
and takes its dot product with TT token rows of x. Groups run in a loop; the
blocks after the last whole group are written out after it. A type whose group
would be too long to unroll (Q6_K: 8 blocks of 210 bytes) runs one block per loop
step instead, its words realigned at run time (`_realigned`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from wgllm.kernels import qtypes

XYZW = "xyzw"


@dataclass(frozen=True)
class BlockType:
    """How rowdot reads one weight type: block bytes and the WGSL of its dot product."""

    name: str
    bytes: int  # bytes per block
    uses_xsum: bool  # the dot needs sum(x) over each 32 elements (a zero point or min)
    units: int = 1  # 32-element units per block (8: the 256-element super-blocks of K-quants)
    rows: int | None = None  # a realign type's rows per invocation (others: rows_per_invocation)
    realign: bool = False  # one block per loop step, its words realigned at run time (see _realigned)


def _bt(name: str, uses_xsum: bool, **kw) -> BlockType:
    """Type `name`'s block (bytes per 32-element unit from the quant table, qtypes)."""
    q = qtypes.TYPES[name.upper()]
    units = q.block // 32 if q.block > 32 else 1
    return BlockType(name, q.block_bytes * 32 * units // q.block, uses_xsum, units, **kw)


# rowdot reads F16 / F32 in 32-element blocks too (64 / 128 bytes). Q6_K's 210-byte blocks
# repeat their offsets only every 8 blocks, too long a body to unroll (lavapipe took 10-50 s
# to compile one): one block per loop step, realigned at run time, 2 rows per invocation.
TYPES = {bt.name: bt for bt in [
    _bt("q4_0", True), _bt("q4_1", True), _bt("q5_0", True), _bt("q5_1", True), _bt("q8_0", False),
    _bt("q4_k", True),
    _bt("q6_k", True, rows=2, realign=True), _bt("f16", False), _bt("f32", False)]}


def rows_per_invocation(row_bytes: int, rows: int = 4) -> int:
    """R: at least `rows`, and a multiple of 16 / gcd(row_bytes, 16) so that every R-row
    group starts on a vec4."""
    m = 16 // math.gcd(row_bytes, 16)
    return max(rows, m) // m * m


class _Row:
    """Word reads of one row of a group at constant byte offsets from its vec4 base."""

    def __init__(self, j: int, off: int):
        self.j, self.off, self.vecs = j, off, set()

    def word(self, o: int) -> str:
        """The u32 at byte o (even) of the row's current block group (o relative to the group)."""
        o += self.off
        if o % 4 == 0:
            return self._w(o)
        return f"(({self._w(o - 2)} >> 16u) | ({self._w(o + 2)} << 16u))"

    def half(self, o: int) -> str:
        """The f16 at byte o (even), as the low half of a u32."""
        o += self.off
        return self._w(o) if o % 4 == 0 else f"({self._w(o - 2)} >> 16u)"

    def _w(self, o: int) -> str:
        self.vecs.add(o // 16)
        return f"w{self.j}_{o // 16}.{XYZW[o // 4 % 4]}"


@dataclass
class Parts:
    """A block's dequantization inputs as WGSL expressions: q[u][c] the vec4<f32> of quant values
    (or weights, for F16 / F32) of elements 32 u + 4 c .. + 3, k the block's scales (scalars, or a
    vec2 d / m pair). `_combine` forms the dot from them; the tiled body inlines them, resident
    rows bind them to names once, so both forms do the same arithmetic, bit for bit."""

    q: list[list[str]]
    k: list[str]


def _parts(bt: BlockType, row, p: int) -> Parts:
    """The Parts of the block at byte p of `row` (a _Row or _Aligned)."""
    if bt.name == "q4_k":
        return _q4k_parts(row, p)
    if bt.name == "q6_k":
        return _q6k_parts(row, p)
    if bt.name in ("q4_0", "q4_1", "q5_0", "q5_1"):  # d f16 (| m f16) | (qh u32 |) qs[16]
        q0 = p + (2 if bt.name in ("q4_0", "q5_0") else 4)
        if bt.name.startswith("q5"):  # qh bit j: element j's fifth bit
            qh = row.word(q0)
            ws = [row.word(q0 + 4 + 4 * k) for k in range(4)]
            qs = [f"q5({ws[c % 4]}, {0 if c < 4 else 4}u, {qh}, {4 * c}u)" for c in range(8)]
        else:
            ws = [row.word(q0 + 4 * k) for k in range(4)]
            qs = [f"{'nib_lo' if c < 4 else 'nib_hi'}({ws[c % 4]})" for c in range(8)]
        d = f"half({row.half(p)})" if bt.name in ("q4_0", "q5_0") else f"unpack2x16float({row.word(p)})"
        return Parts([qs], [d])
    if bt.name == "q8_0":
        return Parts([[f"i8x4({row.word(p + 2 + 4 * c)})" for c in range(8)]], [f"half({row.half(p)})"])
    if bt.name == "f16":
        return Parts([[f"h4({row.word(p + 8 * c)}, {row.word(p + 8 * c + 4)})" for c in range(8)]], [])
    if bt.name == "f32":
        return Parts([[f"bitcast<vec4<f32>>(vec4<u32>({', '.join(row.word(p + 16 * c + 4 * i) for i in range(4))}))"
                       for c in range(8)]], [])
    raise KeyError(bt.name)


def _qdot(q: list[str], xs: list[str]) -> str:
    """sum_c dot(q[c], xs[c]), left to right."""
    return " + ".join(f"dot({a}, {b})" for a, b in zip(q, xs))


def _combine(bt: BlockType, parts: Parts, xs: list[list[str]], xsum: list[str] | None) -> str:
    """WGSL expression: the dot of a block (its Parts) with x: xs[u] are the 8 x vec4s of its
    32-element unit u, xsum[u] their sum (types with a zero point or min)."""
    if bt.name == "q4_k":
        return _q4k_combine(parts, xs, xsum)
    if bt.name == "q6_k":
        return _q6k_combine(parts, xs, xsum)
    k = parts.k
    s = _qdot(parts.q[0], xs[0])
    if bt.name in ("q4_0", "q5_0"):
        return f"{k[0]} * ({s} - {'8.0' if bt.name == 'q4_0' else '16.0'} * {xsum[0]})"
    if bt.name in ("q4_1", "q5_1"):  # (written out: dot(d / m, vec2(s, xsum)) and fma() rounded by form on lavapipe)
        return f"{k[0]}.x * ({s}) + {k[0]}.y * {xsum[0]}"
    if bt.name == "q8_0":
        return f"{k[0]} * ({s})"
    return s


def _block_dot(bt: BlockType, row, p: int, xs: list[list[str]], xsum: list[str] | None) -> str:
    """WGSL expression: the dot of the block at byte p of `row` with x (see _combine)."""
    return _combine(bt, _parts(bt, row, p), xs, xsum)


def _q4k_scale_mins(row: _Row, p: int) -> list[tuple[str, str]]:
    """Q4_K's 8 (scale, min) u32 expressions of the super-block at byte p (gguf's get_scale_min_k4)."""
    sw = [row.word(p + 4 + 4 * i) for i in range(3)]

    def sb(i: int) -> str:  # scales[i]
        return f"(({sw[i // 4]} >> {8 * (i % 4)}u) & 0xffu)"

    out = []
    for s in range(8):
        if s < 4:
            out.append((f"({sb(s)} & 63u)", f"({sb(s + 4)} & 63u)"))
        else:
            out.append((f"(({sb(s + 4)} & 15u) | (({sb(s - 4)} >> 6u) << 4u))",
                        f"(({sb(s + 4)} >> 4u) | (({sb(s)} >> 6u) << 4u))"))
    return out


def _q4k_parts(row: _Row, p: int) -> Parts:
    """Q4_K, 144-byte super-block of 256: d f16 | dmin f16 | scales[12] | qs[128]. Unit s (32
    elements) has a 6-bit scale sc and min mn packed in scales[] (as gguf's get_scale_min_k4);
    its quants are the low (s even) or high (s odd) nibbles of qs[32 (s / 2) ..].
    k: [d / dmin, sc_0 .. sc_7, mn_0 .. mn_7] (as f32)."""
    sm = _q4k_scale_mins(row, p)
    q = [[f"{'nib_lo' if s % 2 == 0 else 'nib_hi'}({row.word(p + 16 + 32 * (s // 2) + 4 * c)})" for c in range(8)]
         for s in range(8)]
    return Parts(q, [f"unpack2x16float({row.word(p)})"] + [f"f32({sc})" for sc, _ in sm] + [f"f32({mn})" for _, mn in sm])


def _q4k_combine(parts: Parts, xs: list[list[str]], xsum: list[str]) -> str:
    """x = d * sc * q - dmin * mn, so the dot is d * sum_s sc_s * sum(q x) - dmin * sum_s mn_s * sum(x)
    (written as a sum of two products: "- dmin * ..." was contracted differently by form on lavapipe)."""
    dm, k = parts.k[0], parts.k[1:]
    terms = " + ".join(f"{k[s]} * ({_qdot(parts.q[s], xs[s])})" for s in range(8))
    mins = " + ".join(f"{k[8 + s]} * {xsum[s]}" for s in range(8))
    return f"{dm}.x * ({terms}) + (-{dm}.y) * ({mins})"


def _q6k_parts(row, p: int) -> Parts:
    """Q6_K, 210-byte super-block of 256: ql[128] | qh[64] | scales[16] (int8) | d f16. Element
    128 n + 32 g + l (n < 2, g < 4, l < 32) is q = (the low (g < 2) or high nibble of ql[64 n +
    32 (g % 2) + l]) | (bits 2 g, 2 g + 1 of qh[32 n + l]) << 4 and weighs d * scales[8 n + 2 g +
    l / 16] * (q - 32). k: [d, scales[0] .. scales[15]]."""
    q = []
    for u in range(8):
        n, g = divmod(u, 4)
        q.append([f"q6({row.word(p + 64 * n + 32 * (g % 2) + 4 * c)}, {row.word(p + 128 + 32 * n + 4 * c)}, "
                  f"{4 * (g // 2)}u, {2 * g}u)" for c in range(8)])
    return Parts(q, [f"half({row.half(p + 208)})"] + [f"i8b({row.word(p + 192 + i // 4 * 4)}, {i % 4}u)"
                                                      for i in range(16)])


def _q6k_combine(parts: Parts, xs: list[list[str]], xsum: list[str]) -> str:
    """Unit u = 4 n + g: d * the sum over its two 16-element halves of sc * (sum(q x) - 32 sum(x))."""
    d, sc = parts.k[0], parts.k[1:]
    terms = []
    for u in range(8):
        n, g = divmod(u, 4)
        h = f"dot(({xs[u][0]} + {xs[u][1]}) + ({xs[u][2]} + {xs[u][3]}), vec4<f32>(1.0))"
        terms.append(f"{sc[8 * n + 2 * g]} * ({_qdot(parts.q[u][:4], xs[u][:4])} - 32.0 * {h})")
        terms.append(f"{sc[8 * n + 2 * g + 1]} * ({_qdot(parts.q[u][4:], xs[u][4:])} - 32.0 * ({xsum[u]} - {h}))")
    return f"{d} * ({' + '.join(terms)})"


class _Aligned:
    """Word reads of one row's current block after its run-time realignment (see _realigned):
    A{j}_{m} is the u32 at byte 4 m of the block."""

    def __init__(self, j: int):
        self.j, self.used = j, set()

    def word(self, o: int) -> str:
        assert o % 4 == 0, o
        self.used.add(o // 4)
        return f"A{self.j}_{o // 4}"

    def half(self, o: int) -> str:
        """The f16 at byte o (a multiple of 4 here), as the low half of a u32."""
        return self.word(o)


def _realigned(bt: BlockType, rb: int, R: int, TT: int, glu: bool, f16: bool, split: int) -> list[str]:
    """The loop over blocks for a `realign` type: each step loads the vec4s under block b of each
    of the R rows from wherever it starts (row n0 + j's block b at byte (n0 + j) rb + b bt.bytes,
    2-byte aligned), then realigns its words: A_m = the u32 at block byte 4 m, picked out of the loaded
    words by the block's word offset q (selects) and shifted by 16 bits where it starts at 2 mod 4."""
    xper = (4 if f16 else 8) * bt.units
    out = []
    for t in range(TT):
        for u in range(bt.units):
            out += _x_unit(bt, t, u, f"b * {xper}u", glu, f16)
    nv = -(-(bt.bytes + 12 + 8) // 16)  # vec4s under a block at any 2-byte offset, and one word more
    for j in range(R):
        row = _Aligned(j)
        acc = []
        for t in range(TT):
            xs, sums = _x_names(bt, t, list(range(bt.units)))
            acc.append(f"a{j}_{t} += {_block_dot(bt, row, 0, xs, sums)};")
        out.append(f"let g{j} = (n0 + {_row_of(j, R, split)}u) * {rb}u + b * {bt.bytes}u;")
        out.append(f"let q{j} = (g{j} >> 2u) & 3u;")
        out.append(f"let h{j} = (g{j} & 2u) != 0u;")
        out += [f"let v{j}_{k} = W[(g{j} >> 4u) + {k}u];" for k in range(nv)]
        w = [f"v{j}_{i // 4}.{XYZW[i % 4]}" for i in range(4 * nv)]
        need = sorted(row.used | {m + 1 for m in row.used})
        out += [f"let u{j}_{m} = sel4(q{j}, {w[m]}, {w[m + 1]}, {w[m + 2]}, {w[m + 3]});" for m in need]
        out += [f"let A{j}_{m} = select(u{j}_{m}, (u{j}_{m} >> 16u) | (u{j}_{m + 1} << 16u), h{j});"
                for m in sorted(row.used)]
        out += acc
    return out


def _row_of(j: int, R: int, split: int) -> int:
    """Invocation row j's row number after n0: j, or with a split (the fused GLU output) the
    first R / 2 rows from n0 and the other R / 2 `split` rows further."""
    if not split:
        return j
    h = R // 2
    return j % h + (split if j >= h else 0)


def _x_unit(bt: BlockType, t: int, u: int, x0: str, glu: bool, f16: bool) -> list[str]:
    """Statements defining unit u's 32 x elements for token tile row t (_x_loads) and, for types
    that need it, their sum s{t}_{u}."""
    out = _x_loads(t, u, x0, glu, f16)
    if bt.uses_xsum:
        out.append(f"let s{t}_{u} = dot(((x{t}_{u}_0 + x{t}_{u}_1) + (x{t}_{u}_2 + x{t}_{u}_3)) + "
                   f"((x{t}_{u}_4 + x{t}_{u}_5) + (x{t}_{u}_6 + x{t}_{u}_7)), vec4<f32>(1.0));")
    return out


def _x_names(bt: BlockType, t: int, units: list[int]) -> tuple[list[list[str]], list[str] | None]:
    """The names _x_unit defines for token tile row t and x units `units`: (xs[i][c], the 8 x vec4s
    of unit units[i]; their sums, for types that need them, else None), as _block_dot / _combine take them."""
    return ([[f"x{t}_{u}_{c}" for c in range(8)] for u in units],
            [f"s{t}_{u}" for u in units] if bt.uses_xsum else None)


def _x_loads(t: int, b: int, x0: str, glu: bool, f16: bool) -> list[str]:
    """Statements defining x{t}_{b}_{c} (c < 8): the 32 x elements of block b for token tile row t.
    f32 x: 8 vec4 loads (xv); f16 x: 4 loads of 8 halves (x0 then counts such vec4)."""
    if not f16:
        return [f"let x{t}_{b}_{c} = xv(xr{t} + {x0} + {8 * b + c}u);" for c in range(8)]
    out = []
    for k in range(4):
        i = f"xr{t} + {x0} + {4 * b + k}u"
        out.append(f"let p{t}_{b}_{k} = X[{i}];")
        if glu:
            out.append(f"let u{t}_{b}_{k} = X[{i} + HALFX];")
        for c in (2 * k, 2 * k + 1):
            hi = "true" if c % 2 else "false"
            v = f"xh(p{t}_{b}_{k}, {hi})"
            out.append(f"let x{t}_{b}_{c} = " + (f"silu_mul({v}, xh(u{t}_{b}_{k}, {hi}));" if glu else f"{v};"))
    return out


def _group(bt: BlockType, rb: int, R: int, TT: int, nblocks: int, gv: int, group: str, x0: str, glu: bool,
           f16: bool, split: int, lazy: bool = False) -> list[str]:
    """Statements for `nblocks` blocks of every row: row j's blocks start at vec4
    vb + (r_j * rb - off_j) / 16 + `group` * gv (r_j: _row_of); x's first element of them is at
    x vec4 `x0`. (With a split, split * rb is a multiple of 16: off_j depends on j % (R / 2) only.)
    The weight loads come first, or with `lazy` each just before the first dot that reads it (the
    same arithmetic in the same order: fewer values live at once)."""
    rows = [_Row(j, (_row_of(j, R, split) * rb) % 16) for j in range(R)]
    base = {row.j: (_row_of(row.j, R, split) * rb - row.off) // 16 for row in rows}
    done: dict[int, set] = {row.j: set() for row in rows}

    def loads(row) -> list[str]:
        new = sorted(row.vecs - done[row.j])
        done[row.j] |= row.vecs
        return [f"let w{row.j}_{v} = W[vb + {base[row.j] + v}u + {group} * {gv}u];" for v in new]

    body = []
    for b in range(nblocks):
        units = [b * bt.units + s for s in range(bt.units)]  # the block's 32-element units of x
        for t in range(TT):
            for u in units:
                body += _x_unit(bt, t, u, x0, glu, f16)
        for row in rows:
            for t in range(TT):
                xs, sums = _x_names(bt, t, units)
                dot = _block_dot(bt, row, b * bt.bytes, xs, sums)
                body += (loads(row) if lazy else []) + [f"a{row.j}_{t} += {dot};"]
    return [s for row in rows for s in loads(row)] + body


@lru_cache(maxsize=None)
def body(qt: str, K: int, rb: int, R: int, TT: int, glu: bool = False, f16: bool = False, split: int = 0) -> str:
    """The {{BODY}} of rowdot.wgsl for rows of K elements of type `qt` (rb bytes each); x of
    f16 (read as vec4<u32> of 8 halves) or f32, with the SwiGLU input (glu) or not.
    split > 0: the fused GLU output; the invocation's rows are R / 2 rows from n0 and the R / 2
    rows `split` further, and it writes act(row j) * (row j + split) for its first R / 2 rows."""
    bt = TYPES[qt]
    nb = K // (32 * bt.units)
    G = 16 // math.gcd(bt.bytes, 16)  # blocks per group: G * bytes % 16 == 0
    ng, tail = (0, 0) if bt.realign else divmod(nb, G)
    gv = G * bt.bytes // 16
    xper = (4 if f16 else 8) * bt.units  # x vec4 per block
    lines = [f"let xr{t} = min(t0 + {t}u, T - 1u) * XROW;" for t in range(TT)]
    lines += [f"var a{j}_{t} = 0.0;" for j in range(R) for t in range(TT)]
    if bt.realign:
        lines.append(f"for (var b = 0u; b < {nb}u; b++) {{")
        lines += ["    " + s for s in _realigned(bt, rb, R, TT, glu, f16, split)]
        lines.append("}")
    if ng:
        lines.append(f"for (var gi = 0u; gi < {ng}u; gi++) {{")
        lines += ["    " + s for s in _group(bt, rb, R, TT, G, gv, "gi", f"gi * {xper * G}u", glu, f16, split)]
        lines.append("}")
    if tail:
        lines.append("{")
        lines += ["    " + s for s in _group(bt, rb, R, TT, tail, gv, f"{ng}u", f"{ng * xper * G}u", glu, f16,
                                                   split)]
        lines.append("}")
    h = R // 2 if split else R
    for t in range(TT):
        for j in range(h):
            v = f"glu_out(a{j}_{t}, a{j + h}_{t})" if split else f"a{j}_{t}"
            lines.append(f"if (t0 + {t}u < T && n0 + {j}u < P.rows) {{ put(t0 + {t}u, n0 + {j}u, {v}); }}")
    return "\n".join("        " + s for s in lines)


# --- resident rows: prefill passes with x in a uniform binding ---------------------------
# The body above reloads and dequantizes each weight for every TT tokens of the pass. In a
# prefill pass whose x is a uniform array (one scalar load and a broadcast per x vector), the
# weight loads are then most of the work (lavapipe loops over the lanes for each). Here an
# invocation loads and dequantizes its R rows once, keeps the f32 weights (R * K values, in
# registers and spills), and walks the pass's tokens in a loop: per token, only x's loads and a
# multiply-add per weight. Types with constant block offsets only (not Q6_K's realigned ones).
RESIDENT = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "f16", "f32")
RESIDENT_FLOATS = 2304  # R * K at most (4 rows of 576): more spills, and compiles take longer


def resident_rows(qt: str, K: int, rb: int, parts: int) -> int | None:
    """Rows per kind (RN) of a resident-rows invocation for rows of K elements (rb bytes), or None
    where the type has no resident body or even the fewest rows would hold too many weights."""
    if qt not in RESIDENT:
        return None
    rn = rows_per_invocation(rb, max(1, RESIDENT_FLOATS // (K * parts)))
    return rn if rn * parts * K <= RESIDENT_FLOATS else None


@lru_cache(maxsize=None)
def resident(qt: str, K: int, rb: int, R: int, glu: bool = False, f16: bool = False, split: int = 0) -> tuple[str, str]:
    """(PRE, BODY) of rowdot.wgsl's resident-rows form (TT = 1): PRE loads the invocation's R rows
    (as `body`'s rows: split, the fused GLU output) and binds each block's Parts to names; BODY,
    run per token t0, forms each block's dot from them exactly as `body` does (same expressions,
    same order: a token's sums are the same bits in every form) and writes the outputs."""
    bt = TYPES[qt]
    rows = [_Row(j, (_row_of(j, R, split) * rb) % 16) for j in range(R)]
    nb = K // (32 * bt.units)
    pre, named = [], {}
    for row in rows:
        for b in range(nb):
            parts = _parts(bt, row, b * bt.bytes)
            q = [[f"r{row.j}_{b}_{u}_{c}" for c in range(8)] for u in range(bt.units)]
            k = [f"k{row.j}_{b}_{i}" for i in range(len(parts.k))]
            pre += [f"let {q[u][c]} = {e};" for u, es in enumerate(parts.q) for c, e in enumerate(es)]
            pre += [f"let {k[i]} = {e};" for i, e in enumerate(parts.k)]
            named[row.j, b] = Parts(q, k)
    loads = []
    for row in rows:
        base = (_row_of(row.j, R, split) * rb - row.off) // 16
        loads += [f"let w{row.j}_{v} = W[vb + {base + v}u];" for v in sorted(row.vecs)]
    body = ["let xr0 = t0 * XROW;"] + [f"var a{j}_0 = 0.0;" for j in range(R)]
    for b in range(nb):
        units = [b * bt.units + s for s in range(bt.units)]
        for u in units:
            body += _x_unit(bt, 0, u, "0u", glu, f16)
        xs, sums = _x_names(bt, 0, units)
        body += [f"a{j}_0 += {_combine(bt, named[j, b], xs, sums)};" for j in range(R)]
    h = R // 2 if split else R
    for j in range(h):
        v = f"glu_out(a{j}_0, a{j + h}_0)" if split else f"a{j}_0"
        body.append(f"if (n0 + {j}u < P.rows) {{ put(t0, n0 + {j}u, {v}); }}")
    return ("\n".join("    " + s for s in loads + pre), "\n".join("        " + s for s in body))


# --- wide rows: the GPU decode matvec of aligned types (matwide.wgsl) ---------------------
# The same block groups as `body` (every field at a constant offset in aligned vec4 loads), run
# GPU-style: a row group of TPR invocations shares R rows and invocation l takes the block groups
# l, l + TPR, ... of them (the row group reads consecutive 16-byte words), then the TPR partial
# sums of each row are added across the row group.


def wide_fits(qt: str, K: int, rb: int, R: int) -> bool:
    """Whether rows of K elements of `qt` (rb bytes) split into whole 16-byte block groups and
    R rows start on a vec4 (matwide.wgsl has no tail)."""
    bt = TYPES.get(qt)
    if bt is None or bt.realign:
        return False
    G = 16 // math.gcd(bt.bytes, 16)
    nb, rem = divmod(K, 32 * bt.units)
    return rem == 0 and nb % G == 0 and (R * rb) % 16 == 0


@lru_cache(maxsize=None)
def wide(qt: str, K: int, rb: int, R: int, glu: bool, f16: bool, shuffle: bool, lazy: bool = False) -> dict[str, str]:
    """matwide.wgsl's generated constants for rows of K elements of `qt` (rb bytes, wide_fits):
    ACCS (row accumulators), BODY (one block group gi of the R rows), REDUCE (the row group's sums
    by subgroup shuffles, or through workgroup memory, and the writes), NG (block groups a row).
    lazy: each weight vec4 loaded just before its first use (see _group)."""
    bt = TYPES[qt]
    G = 16 // math.gcd(bt.bytes, 16)
    xper = (4 if f16 else 8) * bt.units  # x vec4 per block
    body = _group(bt, rb, R, 1, G, G * bt.bytes // 16, "gi", f"gi * {xper * G}u", glu, f16, 0, lazy)
    accs = [f"var a{j}_0 = 0.0;" for j in range(R)]
    if shuffle:  # every lane of the row group ends with the sums; lane l < R writes row l's
        v = "a0_0" if R == 1 else f"vec{R}<f32>({', '.join(f'a{j}_0' for j in range(R))})"
        red = [f"var s = {v};", "for (var m = TPR / 2u; m > 0u; m >>= 1u) { s += subgroupShuffleXor(s, m); }",
               f"if (l < {R}u && n0 + l < P.rows) {{ put(t, n0 + l, {'s' if R == 1 else 's[l]'}); }}"]
    else:  # sums through workgroup memory: lane l < R adds row l's TPR partial sums in lane order
        red = [f"red[{j}u * WG + lid] = a{j}_0;" for j in range(R)] + ["workgroupBarrier();"]
        red += [f"if (l < {R}u && n0 + l < P.rows) {{",
                "    var v = 0.0;",
                "    for (var i = 0u; i < TPR; i++) { v += red[l * WG + rg * TPR + i]; }",
                "    put(t, n0 + l, v);", "}"]
    ind = "\n".join
    return dict(ACCS=ind("    " + s for s in accs), BODY=ind("        " + s.strip() for s in body),
                REDUCE=ind("    " + s for s in red), NG=str(K // (32 * bt.units) // G))
