#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .whl3): decode of a model unsplit (queued
# ahead, and one step at a time) and split over two devices on the one GPU (issue 14).
# Usage: bash bench/device/split_bench.sh "llama-3-8b:Q4_0:0:0-15,1:16-31 smollm2-135m:Q4_1:0:0-14,1:15-29"
# JSON and logs under $OUT.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl3/*.whl || exit 1
export PYTHONUNBUFFERED=1 XDG_RUNTIME_DIR=/tmp PYTHONPATH=/tmp/site:$PWD/src
export WGLLM_COMMIT=${WGLLM_COMMIT:-unknown}  # the device's copy has no history of ours: pass the commit
nvidia-smi -L
mkdir -p /tmp/m
for spec in $1; do
  shape=${spec%%:*}; rest=${spec#*:}; types=${rest%%:*}; split=${rest#*:}
  python3 -c "from wgllm.testing import synth; synth.write_llama_gguf('/tmp/m/$shape.gguf', '$shape', types='$types', seed=0, fast=True)"
  b="python3 bench/bench_engine.py --shape $shape --types $types --model /tmp/m/$shape.gguf --prompt 512 --gen ${GEN:-128} --reps 3 --precision f16"
  timeout 200 $b --json "$OUT/$shape-unsplit.json" 2>&1 | tail -1
  timeout 200 $b --depth 1 --json "$OUT/$shape-unsplit-depth1.json" 2>&1 | tail -1
  timeout 200 $b --adapters 0,0 --split "$split" --json "$OUT/$shape-split.json" 2>&1 | tail -1
  rm -f /tmp/m/$shape.gguf
done
