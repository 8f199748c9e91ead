#!/usr/bin/env bash
# One-command setup: the software WebGPU adapter (Mesa lavapipe) when apt is
# available, then wgllm itself (editable) with the test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libvulkan_lvp; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
python3 -m pip install -q --upgrade pip >/dev/null 2>&1 || true
python3 -m pip install -q -e ".[test]"
echo "wgllm installed. Try: wgllm devices; wgllm run \"What is the capital of France?\""
