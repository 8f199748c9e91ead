#!/usr/bin/env bash
# On the GPU machine (carry .gl .whl .whl3 .old .commit): single-stream decode of this tree against
# an older one in .old (git archive REV src bench), in turns in the same call: "no GPU path slowed".
# Usage: bash bench/device/ab_engine.sh "smollm2-135m:Q4_1 llama-3-8b:Q4_0" [ROUNDS]   (JSON under $OUT)
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl3/*.whl || exit 1
export PYTHONUNBUFFERED=1 XDG_RUNTIME_DIR=/tmp
export WGLLM_COMMIT=$(cat .commit 2>/dev/null || echo unknown)
mkdir -p /tmp/m
for spec in $1; do
  shape=${spec%%:*}; types=${spec#*:}; f=/tmp/m/$shape.gguf
  PYTHONPATH=/tmp/site:$PWD/src python3 -c "from wgllm.testing import synth; synth.write_llama_gguf('$f', '$shape', types='$types', seed=0, fast=True)"
  for r in $(seq ${2:-2}); do
    for tree in old new; do
      root=$PWD; [ $tree = old ] && root=$PWD/.old
      (cd $root && PYTHONPATH=/tmp/site:$root/src timeout 150 python3 bench/bench_engine.py --shape $shape --types $types \
        --model $f --prompt 512 --gen 128 --reps 3 --precision f16 --json "$OUT/$shape-$tree-$r.json" 2>&1 | tail -1 | sed "s/^/$tree: /")
    done
  done
  rm -f $f
done
