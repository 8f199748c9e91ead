#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .whl2 .commit): matwide tilings timed in
# isolation (wide_probe --isolated: each call in its own pass, as in the engine's chain), plain x
# and the FFN down product's GLU input; then (FAM=1) the family tests against transformers.
set -u
. "$(dirname "$0")/setup.sh" || exit 1
C=${WIDE_CONFIGS:-32/4/128,32/4/128/lazy,32/2/128,32/2/128/lazy,32/1/128,16/4/128,16/4/128/lazy,16/2/128,16/1/128,8/2/128,8/1/128,4/1/128,32/1/256,16/1/64}
T=${WIDE_TYPES:-Q4_0,Q8_0}
timeout 200 python3 bench/diag/wide_probe.py --isolated --types $T --configs $C --rounds 2 --iters 100 > $OUT/iso.txt 2>&1
timeout 120 python3 bench/diag/wide_probe.py --isolated --glu --types $T --shapes 14336x4096 --configs $C --rounds 2 \
  --iters 100 > $OUT/iso_glu.txt 2>&1
cat $OUT/iso.txt $OUT/iso_glu.txt | grep -v "^adapter"
if [ -n "${FAM:-}" ]; then
  WGLLM_REQUIRE_GPU=1 timeout 300 python3 -m pytest -q -p no:cacheprovider tests/model/test_families.py 2>&1 | tail -8
fi
