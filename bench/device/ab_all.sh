#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .whl3 .commit .old): in one call, per-kernel
# profiles (profile_ab.sh: .old, this tree, each variant), then bench_engine's prefill / decode
# (--prompt 512 --gen 16) of .old, this tree and the variant in BENCH_SET, then the kernel tests
# on the GPU (TESTS=0 skips them). Logs under $OUT.
# Usage: BENCH_SET="--set linear.MATMUL_TOKENS=128" bash bench/device/ab_all.sh "llama-3-8b:Q4_0" ["name:--set A=B" ...]
set -u
spec=$1
LINES_SHOWN=60 bash "$(dirname "$0")/profile_ab.sh" "$@" 2>&1 | grep -v "^|---" \
  | grep -i "==\|rmsnorm\|decode:\|prefill:\|matmul\|splitk\|argmax\|matvec\|attn\|rror" | cut -c1-150
. "$(dirname "$0")/setup.sh" > /dev/null || exit 1
shape=${spec%%:*}; types=${spec#*:}; f=/tmp/m/$shape-$types.gguf
for v in old new var; do
  r=$PWD; s=; [ $v = old ] && r=$PWD/.old; [ $v = var ] && s=${BENCH_SET:-}
  [ $v = var ] && [ -z "$s" ] && continue
  (cd $r && PYTHONPATH=/tmp/site:$r/src timeout 100 python3 bench/bench_engine.py --model $f --shape $shape --types $types \
    --prompt 512 --gen 16 --reps 2 --precision f16 $s --json $OUT/bench-$v.json 2>&1 | tail -1 | cut -c1-240)
done
if [ "${TESTS:-1}" != 0 ]; then
  WGLLM_REQUIRE_GPU=1 timeout ${TESTS_S:-170} python3 -m pytest -q -x -p no:cacheprovider tests/kernels 2>&1 | tail -4
fi
