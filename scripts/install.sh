#!/usr/bin/env bash
# One-command setup of the runtime: the software WebGPU adapter (Mesa lavapipe)
# when apt is available, then wgllm itself, editable, with its runtime
# dependencies only (no torch/transformers: `bash scripts/test.sh` adds those).
set -euo pipefail
. "$(dirname "$0")/_common.sh"
cd "$ROOT"
ensure_lavapipe
"$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$PY" -m pip install -q -e .
try='wgllm devices; wgllm run "What is the capital of France?"'
if [ -n "$VENV" ]; then
  echo "wgllm installed in $VENV. Activate it: . ${VENV#"$PWD"/}/bin/activate; then try: $try"
else
  echo "wgllm installed. Try: $try"
fi
