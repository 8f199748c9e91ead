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

XYZW = "xyzw"


@dataclass(frozen=True)
class BlockType:
    """How rowdot reads one weight type: block bytes and the WGSL of its dot product."""

    name: str
    bytes: int  # bytes per block of 32 elements
    uses_xsum: bool  # the dot needs sum(x) over the block (a zero point)


TYPES = {
    "q4_0": BlockType("q4_0", 18, True),
    "q4_1": BlockType("q4_1", 20, True),
    "q8_0": BlockType("q8_0", 34, False),
    "f16": BlockType("f16", 64, False),
    "f32": BlockType("f32", 128, False),
}


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


def _block_dot(bt: BlockType, row: _Row, p: int, xs: list[str], xsum: str | None) -> str:
    """WGSL expression: the dot of the block at byte p of `row` with x vec4s `xs` (8 of them)."""
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
    if bt.name == "q8_0":
        terms = [f"dot(i8x4({row.word(p + 2 + 4 * k)}), {xs[k]})" for k in range(8)]
        return f"half({row.half(p)}) * ({' + '.join(terms)})"
    if bt.name == "f16":
        return " + ".join(f"dot(h4({row.word(p + 8 * k)}, {row.word(p + 8 * k + 4)}), {xs[k]})" for k in range(8))
    if bt.name == "f32":
        return " + ".join(f"dot(bitcast<vec4<f32>>(vec4<u32>({', '.join(row.word(p + 16 * k + 4 * c) for c in range(4))})), {xs[k]})"
                          for k in range(8))
    raise KeyError(bt.name)


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
        xs = {}
        for t in range(TT):
            xs[t] = [f"x{t}_{b}_{c}" for c in range(8)]
            body += _x_loads(t, b, x0, glu, f16)
            if bt.uses_xsum:
                body.append(f"let s{t}_{b} = dot(((x{t}_{b}_0 + x{t}_{b}_1) + (x{t}_{b}_2 + x{t}_{b}_3)) + "
                            f"((x{t}_{b}_4 + x{t}_{b}_5) + (x{t}_{b}_6 + x{t}_{b}_7)), vec4<f32>(1.0));")
        for row in rows:
            for t in range(TT):
                dot = _block_dot(bt, row, b * bt.bytes, xs[t], f"s{t}_{b}" if bt.uses_xsum else None)
                body.append(f"a{row.j}_{t} += {dot};")
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
    nb = K // 32
    G = 16 // math.gcd(bt.bytes, 16)  # blocks per group: G * bytes % 16 == 0
    ng, tail = divmod(nb, G)
    gv = G * bt.bytes // 16
    xper = 4 if f16 else 8  # x vec4 per block of 32
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
