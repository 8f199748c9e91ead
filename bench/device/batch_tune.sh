#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .whl3 .whl2 .commit): the batched matvec's tokens per
# workgroup (MATVEC_TOKENS) swept with bench_batch.py, after the batched-pass tests on the GPU.
# Usage: TB="1 4 8 16" bash bench/device/batch_tune.sh "llama-3-8b:Q4_0"   (JSON under $OUT)
set -u
source bench/device/setup.sh || exit 1
if [ -n "${TESTS:-}" ]; then
  WGLLM_REQUIRE_GPU=1 timeout 300 python3 -m pytest -q -p no:cacheprovider $TESTS 2>&1 | tail -3
fi
mkdir -p /tmp/m
for spec in $1; do
  shape=${spec%%:*}; types=${spec#*:}; f=/tmp/m/$shape.gguf
  python3 -c "from wgllm.testing import synth; synth.write_llama_gguf('$f', '$shape', types='$types', seed=0, fast=True)"
  for tb in ${TB:-1 4 8 16}; do
    echo "== wgllm $shape $types MATVEC_TOKENS=$tb"
    timeout 200 python3 bench/bench_batch.py --shape $shape --types $types --model $f --npl ${NPL:-1,4,16} --pp 128 \
      --tg 128 --reps 1 --matvec-tokens $tb --json "$OUT/$shape-batch-tb$tb.json" 2>&1 | tail -3
  done
done
