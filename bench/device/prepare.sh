#!/usr/bin/env bash
# Here (not on the GPU machine): the ignored folders the device scripts carry, as ../shared/DEVICE.md
# says, for a checkout that has none of them yet. Nothing can be downloaded on the GPU machine.
#   .gl     the Vulkan loader's Debian packages (amd64)
#   .whl    what wgllm imports that the GPU machine's python 3.12 lacks
#   .whl3   the server's stack (FastAPI, uvicorn, openai client) for bench_serve.py
#   .whl2   transformers / tokenizers as here, for the model tests there
#   .peers  llama.cpp's source and build script (../shared/peers)
#   .commit this tree's commit (figures name it)
# Usage: bash bench/device/prepare.sh   (again after a commit, for .commit)
set -euo pipefail
cd "$(dirname "$0")/../.."
for d in .gl .whl .whl2 .whl3 .peers .old .spy .commit; do
  grep -qx "/$d/\?" .git/info/exclude 2>/dev/null || echo "/$d" >> .git/info/exclude
done
if [ ! -d .gl ]; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update -qq
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
fi
wheels() {  # folder, packages
  local d=$1; shift
  [ -d "$d" ] && return 0
  mkdir -p "$d.part"
  for p in "$@"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d "$d.part" "$p"
  done
  mv "$d.part" "$d"
}
# NAME==the version installed here, or NAME alone where it is not (the test extra's packages
# are there only after scripts/test.sh has run)
pin() { python3 -c "import importlib.metadata as m
try: print('$1==' + m.version('$1'))
except m.PackageNotFoundError: print('$1')"; }
wheels .whl wgpu==0.32.0 cffi pycparser gguf llguidance "$(pin pydantic)" "$(pin pydantic-core)" \
  annotated-types typing-inspection
wheels .whl3 "$(pin fastapi)" "$(pin starlette)" "$(pin uvicorn)" opentelemetry-api \
  annotated-doc "$(pin openai)" jiter sniffio httpx2 httpcore2 truststore importlib-metadata
wheels .whl2 "$(pin transformers)" "$(pin tokenizers)" "$(pin huggingface-hub)"
mkdir -p .peers && cp -u ../shared/peers/* .peers/
git rev-parse --short HEAD > .commit
du -sh .gl .whl .whl2 .whl3 .peers
