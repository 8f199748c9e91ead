#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .whl2 .whl3 .old .commit): the batched matvec
# tile (issue 16). A batched pass of 16 rows per type with MATVEC_TILE 1 (each token on its own),
# 8 and 16 (bench_linear --batched); single-token matvec of this tree against .old (matvec_ab,
# interleaved rounds); bench_batch's aggregate decode with tile 1 and 16; then the GPU tests of
# batched rows against solo ones. Usage: bash bench/device/tile_check.sh   (logs under $OUT)
set -u
source bench/device/setup.sh || exit 1
export WGLLM_REQUIRE_GPU=1
shapes="--shape Q4_0:4096x14336 --shape Q4_0:14336x4096 --shape Q4_1:576x1536 --shape Q8_0:4096x4096 \
  --shape Q4_K:4096x14336 --shape Q6_K:4096x14336 --shape Q6_K:4096x128256"
for tb in ${TILES:-1 8 16}; do
  echo "== batched T=16, tile $tb"
  timeout 120 python3 bench/bench_linear.py --T 16 --batched --tile $tb --iters 100 $shapes > "$OUT/linear_b16_t$tb.txt" 2>&1
  grep -E "^(Q|F)" "$OUT/linear_b16_t$tb.txt" | cut -c1-110
done
echo "== single-token matvec, .old vs this tree"
timeout 150 python3 bench/diag/matvec_ab.py --old .old/src/wgllm/kernels/matvec.wgsl --types "${AB_TYPES:-Q4_0,Q4_1,Q8_0,Q4_K,Q6_K}" \
  --rounds 3 > "$OUT/matvec_ab.txt" 2>&1; sed -n '/median/,$p' "$OUT/matvec_ab.txt"
mkdir -p /tmp/m
for spec in ${SHAPES:-llama-3-8b:Q4_0 smollm2-135m:Q4_1}; do
  shape=${spec%%:*}; types=${spec#*:}; f=/tmp/m/$shape.gguf
  python3 -c "from wgllm.testing import synth; synth.write_llama_gguf('$f', '$shape', types='$types', seed=0, fast=True)"
  for tb in ${BTILES:-1 16}; do
    echo "== bench_batch $shape $types tile $tb"
    timeout 200 python3 bench/bench_batch.py --shape $shape --types $types --model $f --npl ${NPL:-1,4,16} --pp 128 --tg 128 \
      --tile $tb --json "$OUT/$shape-batch-t$tb.json" 2>&1 | grep npl
  done
  rm -f $f
done
echo "== tests"
timeout ${TEST_S:-200} python3 -m pytest -q -p no:cacheprovider tests/kernels/test_linear.py -k "batched or T1of1" \
  tests/model/test_batch.py > "$OUT/tests.txt" 2>&1; tail -3 "$OUT/tests.txt"
