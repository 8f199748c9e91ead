#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .whl2 .whl3 .commit, and .diag for the family
# check): decode matvec tilings per 8B product shape (bench/diag/matvec_ab.py: more invocations
# per row, fewer rows per workgroup, row sums through workgroup memory), bench/diag/wide_probe.py
# (weights read as aligned vec4 only), then, when .diag holds
# another machine's family logits, bench/diag/family_logits.py against them. Logs under $OUT.
# Usage: bash bench/device/tiling_check.sh [SHAPE...]   (KxN, default: the 8B's products)
set -u
. "$(dirname "$0")/setup.sh" || exit 1
T=${AB_TYPES:-Q4_0,Q4_K}
cfg=()
for c in "p1:Q4_0=1/1/32,Q4_K=1/1/32" "shared:sum=shared" \
         "t64:Q4_0=2/1/64,Q4_K=2/1/64,sum=shared" "t64p1:Q4_0=1/1/64,Q4_K=1/1/64,sum=shared" \
         "t128p1:Q4_0=1/1/128,Q4_K=1/1/128,sum=shared" "t64w256:Q4_0=2/1/64,Q4_K=2/1/64,sum=shared,wg=256" \
         ${AB_EXTRA:-}; do
  cfg+=(--config "$c")
done
if [ -d .diag ]; then
  for f in .diag/*.npz; do
    c=$(basename "$f" .npz)
    timeout 200 python3 bench/diag/family_logits.py --case "$c" --out "$OUT/fam" --ref .diag 2>&1 | grep -v Converting | tail -25
  done
fi
timeout 200 python3 bench/diag/wide_probe.py --types "$T" ${WIDE_ARGS:-} > "$OUT/wide.txt" 2>&1; grep -v "^adapter" "$OUT/wide.txt" | tail -80
for shape in ${@:-14336x4096 4096x4096 4096x1024 4096x6144 4096x28672}; do
  timeout 150 python3 bench/diag/matvec_ab.py --old src/wgllm/kernels/matvec.wgsl --types "$T" --shape "$shape" \
    --rounds 3 "${cfg[@]}" > "$OUT/ab_$shape.txt" 2>&1
  grep -E "WRONG|Error" "$OUT/ab_$shape.txt" | head -3
  sed -n '/median/,$p' "$OUT/ab_$shape.txt"
done
