"""Probe (issue 13): a decode matvec that reads weights as aligned vec4<u32> only, against
this tree's matvec, per product shape of the 8B.

The kernel ("wide") takes rowdot's generated body (kernels/rowdot.py: a group of G blocks
whose bytes are a multiple of 16, every field at a constant offset in the loaded vec4s) and
runs it GPU-style: a row group of TPR invocations shares R rows, invocation l takes block
groups l, l + TPR, ... (so the row group reads consecutive 16-byte words: coalesced), then the
TPR partial sums of each row are added by subgroup shuffles. matvec reads a Q4_0 block with
six u32 loads and funnel shifts (18-byte blocks); here 8 blocks are 9 vec4 loads.

    python3 bench/diag/wide_probe.py [--types Q4_0,Q4_1,Q8_0,Q4_K] [--shapes 14336x4096,...]
        [--configs TPR/R/WG,...] [--precision f16|f32] [--rounds 3]

Needs rows of whole 16-byte groups (K a multiple of 256 for Q4_0) and, for the shuffles,
subgroups of at least TPR invocations (checked). Each configuration is checked once against
float64 numpy ("WRONG" past 1e-5 of the largest output) and timed as bench_linear times
(GPU timestamps over many calls, weight copies cycled past the L2), interleaved rounds.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import bench_linear as B  # noqa: E402

from wgllm.gpu.device import Device  # noqa: E402
from wgllm.gpu.discovery import choose_adapter  # noqa: E402
from wgllm.kernels import linear as L  # noqa: E402
from wgllm.kernels import ops, registry, rowdot  # noqa: E402
from wgllm.kernels.linear import row_bytes  # noqa: E402

MAIN = """
var<workgroup> red: array<f32, {{R}} * WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = wid.z;
    if (t >= S.T) { return; }  // uniform per workgroup
    let rg = lid / TPR;
    let l = lid % TPR;
    let n0 = ((wid.x + wid.y * nwg.x) * (WG / TPR) + rg) * R;
    let vb = (n0 / R) * ROWV;   // (rows past the chunk read whatever bounds checks give, never written)
    let xr0 = t * XROW;
{{ACCS}}
    for (var gi = l; gi < NG; gi += TPR) {
{{BODY}}
    }
{{REDUCE}}
}
"""


def _source(qt: str, K: int, rb: int, R: int, f16: bool, shuffle: bool) -> tuple[str, dict]:
    """rowdot.wgsl's declarations and helpers with the wide main; its constants."""
    bt = rowdot.TYPES[qt]
    G = 16 // math.gcd(bt.bytes, 16)
    nb = K // (32 * bt.units)
    assert nb % G == 0 and (R * rb) % 16 == 0, f"{qt} K={K}: rows of whole 16-byte block groups only"
    xper = (4 if f16 else 8) * bt.units
    body = rowdot._group(bt, rb, R, 1, G, G * bt.bytes // 16, "gi", f"gi * {xper * G}u", False, f16, 0)
    src = registry.load_source("rowdot")
    src = src[: src.index("@compute")] + MAIN
    accs = "\n".join(f"    var a{j}_0 = 0.0;" for j in range(R))
    if shuffle:
        red = [f"    for (var m = TPR / 2u; m > 0u; m >>= 1u) {{ " +
               " ".join(f"a{j}_0 += subgroupShuffleXor(a{j}_0, m);" for j in range(R)) + " }"]
        pick = " ".join(f"if (l == {j}u) {{ v = a{j}_0; }}" for j in range(R))
        red += ["    var v = 0.0;", f"    {pick}",
                "    if (l < R && n0 + l < P.rows) { put(t, n0 + l, v); }"]
    else:
        red = [f"    red[{j}u * WG + lid] = a{j}_0;" for j in range(R)] + ["    workgroupBarrier();"]
        red += ["    if (l < R && n0 + l < P.rows) {", "        var v = 0.0;",
                "        for (var i = 0u; i < TPR; i++) { v += red[l * WG + rg * TPR + i]; }",
                "        put(t, n0 + l, v);", "    }"]
    src = src.replace("{{ACCS}}", accs).replace("{{BODY}}", "\n".join("        " + s.strip() for s in body))
    src = src.replace("{{REDUCE}}", "\n".join(red))
    src = src.replace("const WG: u32 = {{WG}}u;", "const WG: u32 = {{WG}}u;\nconst TPR: u32 = {{TPR}}u;\nconst NG: u32 = {{NG}}u;")
    consts = dict(R=R, RN=R, GLU=0, GLUO=0, TT=1, XROW=K // (8 if f16 else 4), HALFX=K // (8 if f16 else 4),
                  ROWV=R * rb // 16, NG=nb // G, PRE="", XW="u32" if f16 else "f32", XSPACE="storage, read",
                  XLEN="")
    return src, consts


def run_wide(dev, w, xb, yb, step, qt, K, N, tpr, R, wg, f16, shuffle):
    rb = row_bytes(w.qtype, K)
    src, consts = _source(qt, K, rb, R, f16, shuffle)
    name = f"wide_{qt}_{K}_{R}_{tpr}_{wg}_{int(f16)}_{int(shuffle)}"
    _SOURCES[name] = src
    buf, row0, rows = w.chunks[0]
    u = dev.uniform(np.array([K, N, row0, rows, rb, 0, 0, 0], np.uint32), "wide params")
    act = "f16" if f16 else "f32"
    groups = dev.grid(-(-rows // (wg // tpr * R)))
    return [dev.dispatch(name, [buf, xb, yb, u, step], (*groups, 1), WG=wg, TPR=tpr, YT="f32", ACT=act, XT=act,
                         UNI="storage, read", **consts)]


_SOURCES: dict[str, str] = {}
_LOAD = registry.load_source


def _load(name: str) -> str:
    return _SOURCES[name] if name in _SOURCES else _LOAD(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default="Q4_0,Q4_K")
    ap.add_argument("--shapes", default="14336x4096,4096x4096,4096x1024,4096x6144,4096x28672")
    ap.add_argument("--configs", default="32/4/128,32/2/128,32/1/128,16/4/128,16/2/128,8/4/128,32/2/256")
    ap.add_argument("--precision", default="f16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--gpu-kernels", action="store_true", help="on a CPU adapter: time matvec, not rowdot")
    a = ap.parse_args()
    registry.load_source = _load
    info = choose_adapter(None)
    has_ts = "timestamp-query" in info.adapter.features
    dev = Device(B._TimestampAdapter(info.adapter) if has_ts else info.adapter)
    dev.timestamps = has_ts
    dev._sync = dev.buffer(4, "bench sync")
    if a.gpu_kernels:
        dev.kind = "gpu"
    sg = ops.subgroup_size(dev)
    f16 = a.precision == "f16"
    print(f"adapter: {info.summary}; subgroup size {sg}; {a.precision} x; timing: "
          f"{'GPU timestamps' if has_ts else 'wall clock'}", flush=True)
    rng = np.random.default_rng(0)
    configs = [tuple(int(v) for v in c.split("/")) for c in a.configs.split(",")]
    for shape in a.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        for name in a.types.split(","):
            qt = Q[name]
            raw = L.random_weight_bytes(rng, qt, N, K)
            xh = rng.standard_normal((1, K)).astype(np.float16 if f16 else np.float32)
            ref = dequantize(raw.reshape(N, -1), qt).reshape(N, K).astype(np.float64) @ xh[0].astype(np.float64)
            copies = min(B.MAX_COPIES, max(1, -(-B.COLD_BYTES // raw.nbytes)))
            ws = [L.upload_weight(dev, [raw], qt, K, "wide w") for _ in range(copies)]
            xb, yb = dev.upload(xh, "wide x"), dev.buffer(N * 4, "wide y")
            step = ops.step_buffer(dev, "wide step")
            ops.write_step(dev, step, 1, 0)
            runs = {"matvec": lambda w: L.linear(dev, w, xb, yb, 1, step, x_type=a.precision, y_type="f32")}
            for tpr, R, wg in configs:
                shuffle = 0 < tpr <= sg
                runs[f"wide t{tpr}/r{R}/wg{wg}{'' if shuffle else '/shared'}"] = (
                    lambda w, c=(tpr, R, wg, shuffle): run_wide(dev, w, xb, yb, step, name.lower(), K, N, c[0], c[1],
                                                                 c[2], f16, c[3]))
            res: dict = {}
            for r in range(a.rounds):
                for label, make in runs.items():
                    try:
                        per_w = [make(w) for w in ws]
                    except Exception as e:  # noqa: BLE001 (a probe: report and go on)
                        if r == 0:
                            print(f"{shape} {name} {label}: {type(e).__name__}: {str(e)[:200]}", flush=True)
                        continue
                    if r == 0:
                        dev.run(per_w[0])
                        got = dev.read_array(yb, np.float32, N).astype(np.float64)
                        err = float(np.abs(got - ref).max() / np.abs(ref).max())
                        if not err < 1e-5:
                            print(f"{shape} {name} {label}: WRONG, max rel. error {err:.2e}", flush=True)
                    ds = [d for i in range(a.iters) for d in per_w[i % len(per_w)]]
                    res.setdefault(label, []).append(B.timed(dev, ds) / a.iters)
            for label, ts in res.items():
                dt = statistics.median(ts)
                print(f"{shape:>11s} {name:5s} {label:28s} {dt * 1e6:7.1f} us {raw.nbytes / dt / 1e9:7.1f} GB/s",
                      flush=True)
            for w in ws:
                for buf, _, _ in w.chunks:
                    dev.release(buf)
            for b in (xb, yb, step):
                dev.release(b)


if __name__ == "__main__":
    main()
