"""The generated body of rowdot.wgsl: the CPU-adapter kernel of `linear` (see that file).

For one weight type and row length the body is straight-line WGSL: for each of
the R rows of an invocation it loads the vec4s of a group of G blocks (G * block
bytes is a multiple of 16, so the pattern of offsets repeats from group to
group and every field sits at a constant position), dequantizes each block once
and takes its dot product with TT token rows of x. Groups run in a loop; the
blocks after the last whole group are written out after it.
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


def _bt(name: str, uses_xsum: bool) -> BlockType:
    """Type `name`'s block (bytes per 32-element unit from the quant table, qtypes)."""
    q = qtypes.TYPES[name.upper()]
    units = q.block // 32 if q.block > 32 else 1
    return BlockType(name, q.block_bytes * 32 * units // q.block, uses_xsum, units)


# rowdot reads F16 / F32 in 32-element blocks too (64 / 128 bytes).
TYPES = {n: _bt(n, x) for n, x in [("q4_0", True), ("q4_1", True), ("q5_0", True), ("q8_0", False),
                                     ("q4_k", True), ("f16", False), ("f32", False)]}


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


def _block_dot(bt: BlockType, row: _Row, p: int, xs: list[list[str]], xsum: list[str] | None) -> str:
    """WGSL expression: the dot of the block at byte p of `row` with x: xs[u] are the 8 x vec4s
    of its 32-element unit u, xsum[u] their sum (types with a zero point or min)."""
    if bt.name == "q4_k":
        return _q4k_dot(row, p, xs, xsum)
    xs, xsum = xs[0], xsum[0] if xsum else None
    if bt.name in ("q4_0", "q4_1"):
        q0 = p + (2 if bt.name == "q4_0" else 4)
        ws = [row.word(q0 + 4 * k) for k in range(4)]
        terms = [f"dot(nib_lo({ws[k]}), {xs[k]})" for k in range(4)]
        terms += [f"dot(nib_hi({ws[k]}), {xs[4 + k]})" for k in range(4)]
        s = " + ".join(terms)
        if bt.name == "q4_0":
            return f"half({row.half(p)}) * ({s} - 8.0 * {xsum})"
        dm = f"unpack2x16float({row.word(p)})"
        return f"dot({dm}, vec2<f32>({s}, {xsum}))"
    if bt.name == "q5_0":  # d f16 | qh u32 (bit j: element j's fifth bit) | qs[16] as Q4_0's
        qh = row.word(p + 2)
        ws = [row.word(p + 6 + 4 * k) for k in range(4)]
        terms = [f"dot(q5_lo({ws[k]}, {qh}, {4 * k}u), {xs[k]})" for k in range(4)]
        terms += [f"dot(q5_hi({ws[k]}, {qh}, {16 + 4 * k}u), {xs[4 + k]})" for k in range(4)]
        return f"half({row.half(p)}) * ({' + '.join(terms)} - 16.0 * {xsum})"
    if bt.name == "q8_0":
        terms = [f"dot(i8x4({row.word(p + 2 + 4 * k)}), {xs[k]})" for k in range(8)]
        return f"half({row.half(p)}) * ({' + '.join(terms)})"
    if bt.name == "f16":
        return " + ".join(f"dot(h4({row.word(p + 8 * k)}, {row.word(p + 8 * k + 4)}), {xs[k]})" for k in range(8))
    if bt.name == "f32":
        return " + ".join(f"dot(bitcast<vec4<f32>>(vec4<u32>({', '.join(row.word(p + 16 * k + 4 * c) for c in range(4))})), {xs[k]})"
                          for k in range(8))
    raise KeyError(bt.name)


def _q4k_dot(row: _Row, p: int, xs: list[list[str]], xsum: list[str]) -> str:
    """Q4_K, 144-byte super-block of 256: d f16 | dmin f16 | scales[12] | qs[128]. Unit s (32
    elements) has a 6-bit scale sc and min mn packed in scales[] (as gguf's get_scale_min_k4);
    its quants are the low (s even) or high (s odd) nibbles of qs[32 (s / 2) ..].
    x = d * sc * q - dmin * mn, so the dot is d * sum_s sc_s * sum(q x) - dmin * sum_s mn_s * sum(x)."""
    sw = [row.word(p + 4 + 4 * i) for i in range(3)]

    def sb(i: int) -> str:  # scales[i]
        return f"(({sw[i // 4]} >> {8 * (i % 4)}u) & 0xffu)"

    terms, mins = [], []
    for s in range(8):
        if s < 4:
            sc, mn = f"({sb(s)} & 63u)", f"({sb(s + 4)} & 63u)"
        else:
            sc = f"(({sb(s + 4)} & 15u) | (({sb(s - 4)} >> 6u) << 4u))"
            mn = f"(({sb(s + 4)} >> 4u) | (({sb(s)} >> 6u) << 4u))"
        nib = "nib_lo" if s % 2 == 0 else "nib_hi"
        q = " + ".join(f"dot({nib}({row.word(p + 16 + 32 * (s // 2) + 4 * k)}), {xs[s][k]})" for k in range(8))
        terms.append(f"f32({sc}) * ({q})")
        mins.append(f"f32({mn}) * {xsum[s]}")
    dm = f"unpack2x16float({row.word(p)})"
    return f"{dm}.x * ({' + '.join(terms)}) - {dm}.y * ({' + '.join(mins)})"


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
           f16: bool) -> list[str]:
    """Statements for `nblocks` blocks of every row: row j's blocks start at vec4
    vb + (j * rb - off_j) / 16 + `group` * gv; x's first element of them is at x vec4 `x0`."""
    rows = [_Row(j, (j * rb) % 16) for j in range(R)]
    body = []
    for b in range(nblocks):
        units = [b * bt.units + s for s in range(bt.units)]  # the block's 32-element units of x
        for t in range(TT):
            for u in units:
                body += _x_loads(t, u, x0, glu, f16)
                if bt.uses_xsum:
                    body.append(f"let s{t}_{u} = dot(((x{t}_{u}_0 + x{t}_{u}_1) + (x{t}_{u}_2 + x{t}_{u}_3)) + "
                                f"((x{t}_{u}_4 + x{t}_{u}_5) + (x{t}_{u}_6 + x{t}_{u}_7)), vec4<f32>(1.0));")
        for row in rows:
            for t in range(TT):
                xs = [[f"x{t}_{u}_{c}" for c in range(8)] for u in units]
                sums = [f"s{t}_{u}" for u in units] if bt.uses_xsum else None
                body.append(f"a{row.j}_{t} += {_block_dot(bt, row, b * bt.bytes, xs, sums)};")
    loads = []
    for row in rows:
        base = (row.j * rb - row.off) // 16
        for v in sorted(row.vecs):
            loads.append(f"let w{row.j}_{v} = W[vb + {base + v}u + {group} * {gv}u];")
    return loads + body


@lru_cache(maxsize=None)
def body(qt: str, K: int, rb: int, R: int, TT: int, glu: bool = False, f16: bool = False) -> str:
    """The {{BODY}} of rowdot.wgsl for rows of K elements of type `qt` (rb bytes each); x of
    f16 (read as vec4<u32> of 8 halves) or f32, with the SwiGLU input (glu) or not."""
    bt = TYPES[qt]
    nb = K // (32 * bt.units)
    G = 16 // math.gcd(bt.bytes, 16)  # blocks per group: G * bytes % 16 == 0
    ng, tail = divmod(nb, G)
    gv = G * bt.bytes // 16
    xper = (4 if f16 else 8) * bt.units  # x vec4 per block
    lines = [f"let xr{t} = min(t0 + {t}u, T - 1u) * XROW;" for t in range(TT)]
    lines += [f"var a{j}_{t} = 0.0;" for j in range(R) for t in range(TT)]
    if ng:
        lines.append(f"for (var gi = 0u; gi < {ng}u; gi++) {{")
        lines += ["    " + s for s in _group(bt, rb, R, TT, G, gv, "gi", f"gi * {xper * G}u", glu, f16)]
        lines.append("}")
    if tail:
        lines.append("{")
        lines += ["    " + s for s in _group(bt, rb, R, TT, tail, gv, f"{ng}u", f"{ng * xper * G}u", glu, f16)]
        lines.append("}")
    for t in range(TT):
        for j in range(R):
            lines.append(f"if (t0 + {t}u < T && n0 + {j}u < P.rows) {{ put(t0 + {t}u, n0 + {j}u, a{j}_{t}); }}")
    return "\n".join("        " + s for s in lines)
