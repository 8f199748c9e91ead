#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .whl2 .whl3 .commit .old): matwide (issue 13)
# checked and measured: its kernel tests, wide_probe's tilings per 8B shape for every `wide`
# type, then single-stream decode of this tree with matwide on (and the fused norms) against .old
# (git archive REV src bench) in turns,
# then (FAM=1) the family tests against transformers. Logs and JSON under $OUT.
# Usage: bash bench/device/wide_check.sh ["llama-3-8b:Q4_0 ..."] [ROUNDS]
set -u
. "$(dirname "$0")/setup.sh" || exit 1
WGLLM_REQUIRE_GPU=1 timeout 240 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_linear.py \
  -k "matwide or batched or matches_numpy" 2>&1 | tail -3
timeout 240 python3 bench/diag/wide_probe.py --types ${WIDE_TYPES:-Q4_0,Q4_1,Q5_0,Q5_1,Q8_0} --rounds 2 \
  --configs ${WIDE_CONFIGS:-32/4/128,32/1/128,16/4/128,16/2/128} > "$OUT/wide.txt" 2>&1
grep -v "^adapter" "$OUT/wide.txt" | tail -100
mkdir -p /tmp/m
for spec in ${1:-llama-3-8b:Q4_0}; do
  shape=${spec%%:*}; types=${spec#*:}; f=/tmp/m/$shape-$types.gguf
  python3 -c "from wgllm.testing import synth; synth.write_llama_gguf('$f', '$shape', types='$types', seed=0, fast=True)"
  for r in $(seq ${2:-2}); do
    for tree in old matwide fused; do
      root=$PWD; set=(--set linear.MATWIDE=True); [ $tree = old ] && root=$PWD/.old && set=()
      [ $tree = fused ] && set+=(--set linear.DECODE_NORM=True)
      (cd $root && PYTHONPATH=/tmp/site:$root/src timeout 150 python3 bench/bench_engine.py --shape $shape --types $types \
        --model $f --prompt 512 --gen 128 --reps 3 --precision f16 "${set[@]}" --json "$OUT/$shape-$types-$tree-$r.json" \
        2>&1 | tail -1 | sed "s/^/$tree: /")
    done
  done
  rm -f $f
done
if [ -n "${FAM:-}" ]; then
  WGLLM_REQUIRE_GPU=1 timeout 300 python3 -m pytest -q -p no:cacheprovider tests/model/test_families.py 2>&1 | tail -8
fi
