#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .whl3 .peers .commit): continuous batching (issue 16)
# side by side with llama.cpp CUDA: wgllm's bench_batch.py (aggregate decode at npl 1, 4, 16) and
# llama-batched-bench on the same GGUF files; SOLO=1: wgllm's single-stream bench_engine.py too;
# SERVE=1: the HTTP load test (bench_serve.py); WORKER=1: bench_batch through the supervised worker
# too; PEER=0: no llama.cpp (its build takes ~5 min of the call).
# Usage: bash bench/device/batch_bench.sh "smollm2-135m:Q4_1 llama-3-8b:Q4_0"   (JSON and logs under $OUT)
set -u
source bench/device/setup.sh || exit 1
mkdir -p /tmp/m
for spec in $1; do
  shape=${spec%%:*}; types=${spec#*:}; f=/tmp/m/$shape.gguf
  python3 -c "from wgllm.testing import synth; synth.write_llama_gguf('$f', '$shape', types='$types', seed=0, fast=True)"
  echo "== wgllm $shape $types"
  timeout 240 python3 bench/bench_batch.py --shape $shape --types $types --model $f --npl ${NPL:-1,4,16} --pp 128 --tg 128 \
    --json "$OUT/$shape-batch.json" 2>&1 | tail -4
  [ -n "${WORKER:-}" ] && timeout 240 python3 bench/bench_batch.py --shape $shape --types $types --model $f --npl ${NPL:-1,4,16} \
    --pp 128 --tg 128 --worker --json "$OUT/$shape-batch-worker.json" 2>&1 | tail -4 | sed "s/^/worker: /"
  [ -n "${SOLO:-}" ] && timeout 200 python3 bench/bench_engine.py --shape $shape --types $types --model $f --prompt 512 --gen 128 \
    --reps 3 --precision f16 --json "$OUT/$shape-solo.json" 2>&1 | tail -1
  [ -n "${SERVE:-}" ] && timeout 200 python3 bench/bench_serve.py --shape $shape --types $types --model $f --parallel 16 \
    --clients 1,4,16 --requests 2 --max-tokens 128 --json "$OUT/$shape-serve.json" 2>&1 | tail -3
done
[ "${PEER:-1}" = 0 ] && exit 0
# the peer is built after wgllm's runs: a build beside them slowed the host-bound ones 3x
bash .peers/build_llama_cuda.sh .peers/llama.cpp-src.tar.xz > $OUT/llama-build.log 2>&1; echo "llama.cpp build rc=$?"
B=/tmp/lc/llama.cpp/build/bin
for spec in $1; do
  shape=${spec%%:*}; f=/tmp/m/$shape.gguf
  python3 .peers/rename_pretokenizer.py $f
  echo "== llama.cpp $shape"
  timeout 200 $B/llama-batched-bench -m $f -ngl 99 -fa 1 -c 4096 -npp 128 -ntg 128 -npl ${NPL:-1,4,16} 2>&1 | tee $OUT/$shape-llama-batched.log | grep -E "^\|" 
done
