#!/usr/bin/env bash
# On the GPU machine (device tool; carry .gl .whl .commit): where the load time of an 8B goes
# (issue 13: >= 2 GB/s from a warm page cache). Writes the Llama-3-8B Q4_0 synthetic file,
# runs bench/diag/upload_probe.py on it (upload paths, GB/s) and cProfile of Engine(). Logs under $OUT.
# Usage: bash bench/device/load_check.sh [shape:type]
source bench/device/setup.sh || exit 1
spec=${1:-llama-3-8b:Q4_0}; shape=${spec%%:*}; types=${spec##*:}
mkdir -p /tmp/m
python3 -c "from wgllm.testing import synth; synth.write_llama_gguf('/tmp/m/$shape.gguf', '$shape', types='$types', seed=0, fast=True)"
ls -la /tmp/m
timeout 300 python3 bench/diag/upload_probe.py /tmp/m/$shape.gguf --gb 4 --rounds 2 --profile 2>&1 | tee "$OUT/upload_probe_$shape.txt" | head -70
# Engine() load, the tree in .old against this one, in turns (a fresh process each)
for tree in old new old new; do
  src=$PWD/src; [ "$tree" = old ] && src=$PWD/.old/src
  PYTHONPATH=/tmp/site:$src timeout 120 python3 -c "
import time; t = time.perf_counter()
from wgllm.runtime.engine import Engine
e = Engine('/tmp/m/$shape.gguf'); print('$tree Engine() load', round(time.perf_counter() - t, 2), 's')" 2>&1 | tail -1 | tee -a "$OUT/load_$shape.txt"
done
