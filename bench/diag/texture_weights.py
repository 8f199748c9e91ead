"""Probe (issue 10): the CPU-adapter kernel (rowdot) reading its weights from a texture instead of
a storage buffer. On lavapipe every storage-buffer load is a loop over the SIMD lanes; a
textureLoad goes through llvmpipe's texel fetch (a real gather). This runs a bench script
(profile_kernels.py, bench_engine.py) with rowdot's weight loads rewritten to textureLoad of an
rgba32uint texture holding the same bytes (made once per weight chunk by a copy from its buffer).

    python3 bench/diag/texture_weights.py 0|1 bench/profile_kernels.py [its arguments]
    # 0: as the engine is (storage), 1: rowdot's weights from textures

A probe, not the product: the weights are held twice (buffer and texture), outputs are the
same bits (the loads return the same words), only rowdot's binding 0 changes.
"""

import os
import re
import runpy
import sys

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

import wgpu  # noqa: E402

from wgllm.gpu import device as device_mod  # noqa: E402

WIDTH = 4096  # texels (16 bytes each) per texture row: 64 KiB, a multiple of 256 bytes

_specialise = device_mod.specialise
_dispatch = device_mod.Device.dispatch
_textures: dict[int, object] = {}

LOAD = f"""fn wload(i: u32) -> vec4<u32> {{
    return textureLoad(WT, vec2<u32>(i % {WIDTH}u, i / {WIDTH}u), 0);
}}"""


def specialise(name, consts):
    src = _specialise(name, consts)
    if name != "rowdot":
        return src
    decl = "@group(0) @binding(0) var<storage, read> W: array<vec4<u32>>;"
    assert decl in src
    src = src.replace(decl, "@group(0) @binding(0) var WT: texture_2d<u32>;\n" + LOAD)
    return re.sub(r"\bW\[([^;]*)\];", r"wload(\1);", src)


def texture_of(dev, buf):
    """An rgba32uint texture holding buf's bytes (rows of WIDTH texels; the tail zero)."""
    tex = _textures.get(id(buf))
    if tex is None:
        row = WIDTH * 16
        height = -(-buf.size // row)
        tex = dev.device.create_texture(size=(WIDTH, height, 1), format=wgpu.TextureFormat.rgba32uint,
                                        usage=wgpu.TextureUsage.TEXTURE_BINDING | wgpu.TextureUsage.COPY_DST)
        enc = dev.device.create_command_encoder()
        full = buf.size // row
        if full:
            enc.copy_buffer_to_texture({"buffer": buf, "offset": 0, "bytes_per_row": row, "rows_per_image": full},
                                       {"texture": tex}, (WIDTH, full, 1))
        rest = buf.size - full * row
        if rest:
            enc.copy_buffer_to_texture({"buffer": buf, "offset": full * row, "bytes_per_row": row},
                                       {"texture": tex, "origin": (0, full, 0)}, (rest // 16, 1, 1))
        dev.queue.submit([enc.finish()])
        _textures[id(buf)] = tex = (tex, tex.create_view())
    return tex[1]


def dispatch(self, name, bindings, groups, per_token=None, **consts):
    if name != "rowdot":
        return _dispatch(self, name, bindings, groups, per_token, **consts)
    w = bindings[0]
    pipe = self.pipeline(name, **consts)
    entries = [{"binding": 0, "resource": texture_of(self, w)}]
    for i, b in enumerate(bindings[1:], 1):
        buf, off, size = b if isinstance(b, tuple) else (b, 0, b.size)
        entries.append({"binding": i, "resource": {"buffer": buf, "offset": off, "size": size}})
    bg = self.device.create_bind_group(layout=pipe.get_bind_group_layout(0), entries=entries)
    groups = tuple(groups) + (1,) * (3 - len(tuple(groups)))
    if per_token is not None and per_token[0] == 0 and groups[1] > 1:
        per_token = None  # as Device.dispatch
    return device_mod.Dispatch(pipe, bg, groups, name, list(bindings), per_token)


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in ("0", "1"):
        raise SystemExit(__doc__)
    if sys.argv[1] == "1":
        device_mod.specialise = specialise
        device_mod.Device.dispatch = dispatch
    sys.argv = sys.argv[2:]
    sys.path.insert(0, os.path.dirname(sys.argv[0]))
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
