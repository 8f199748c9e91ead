#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .peers .commit): issue 13's side-by-side table.
# wgllm's bench_engine.py (f16, --prompt 512 --gen 128) on random-weight GGUF files in real shapes
# (wgllm.testing.synth), then llama.cpp CUDA built here (.peers, ~5 min) with `llama-bench -fa 1
# -p 512 -n 128 -o json` on the same files; bench/compare.py prints the table. JSON under $OUT.
# Usage: bash bench/device/compare.sh "llama-3-8b:Q4_0 llama-3-8b:Q4_K_M smollm2-135m:Q4_1"
set -u
. "$(dirname "$0")/setup.sh" || exit 1
mkdir -p /tmp/m
for spec in $1; do
  shape=${spec%%:*}; types=${spec#*:}; name=$shape-$types; f=/tmp/m/$name.gguf
  python3 -c "from wgllm.testing import synth; synth.write_llama_gguf('$f', '$shape', types='$types', seed=0, fast=True)"
  timeout 200 python3 bench/bench_engine.py --shape $shape --types $types --model $f --prompt 512 --gen 128 --reps 3 \
    --precision f16 ${WGLLM_ARGS:-} --json "$OUT/$name.wgllm.json" 2>&1 | tail -1
done
# the peer is built after wgllm's runs (a build beside them slows the host-bound ones)
bash .peers/build_llama_cuda.sh .peers/llama.cpp-src.tar.xz > $OUT/llama-build.log 2>&1; echo "llama.cpp build rc=$?"
B=/tmp/lc/llama.cpp/build/bin
for spec in $1; do
  shape=${spec%%:*}; types=${spec#*:}; name=$shape-$types; f=/tmp/m/$name.gguf
  python3 .peers/rename_pretokenizer.py $f
  timeout 200 $B/llama-bench -m $f -ngl 99 -fa 1 -p 512 -n 128 -o json > "$OUT/$name.llama.json" 2> "$OUT/$name.llama.log"
done
python3 bench/compare.py "$OUT"
