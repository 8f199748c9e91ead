# Sourced by the GPU-machine scripts (device tool; carry .gl .whl and, where a script needs them,
# .whl3 .whl2 .commit): the Vulkan loader from .gl, the wheels of every carried wheel folder into
# /tmp/site, the environment (PYTHONPATH with this tree's src, WGLLM_COMMIT from .commit).
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  $(ls .whl/*.whl .whl3/*.whl .whl2/*.whl 2>/dev/null) || return 1
export PYTHONUNBUFFERED=1 XDG_RUNTIME_DIR=/tmp PYTHONPATH=/tmp/site:$PWD/src
export WGLLM_COMMIT=$(cat .commit 2>/dev/null || echo unknown)
nvidia-smi -L
