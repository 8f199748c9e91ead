"""A model's build (weights uploaded, passes built) with the weights written inline or by the
background thread of Device.uploading(background=True), in one process each.

    python3 bench/diag/load_ab.py FILE.gguf 0|1   # 0: inline, 1: background (the engine's way)

Prints the build's wall time (f32 activations, n_ctx 512, prefill chunk 64), excluding the GGUF
open and the device creation. Run the two alternately (page cache warm) to compare.
"""

import os
import sys
import time

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

from wgllm.gpu.device import Device  # noqa: E402
from wgllm.gpu.discovery import list_adapters  # noqa: E402
from wgllm.model import arch as arches  # noqa: E402
from wgllm.model.gguf import GGUFFile  # noqa: E402


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[2] not in ("0", "1"):
        raise SystemExit(__doc__)
    background = sys.argv[2] == "1"
    uploading = Device.uploading

    def forced(self, *args, **kwargs):
        kwargs["background"] = background
        return uploading(self, *args, **kwargs)

    Device.uploading = forced
    g = GGUFFile(sys.argv[1])
    cfg = arches.config_for(g)
    dev = Device(list_adapters()[0].adapter)
    t = time.perf_counter()
    arches.build(dev, g.tensors, cfg, act="f32", n_ctx=512, chunk=64)
    print("background" if background else "inline", f"{time.perf_counter() - t:.2f} s", flush=True)


if __name__ == "__main__":
    main()
