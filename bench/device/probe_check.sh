#!/usr/bin/env bash
# On the GPU machine (device tool; carry .gl .whl .commit .old): (1) whether WGSL cooperative
# matrices (tensor cores) run there (bench/diag/coopmat_probe.py); (2) A/B of matvec variants in
# .old/var/*.wgsl against this tree's kernel, each checked against float64 numpy
# (bench/diag/matvec_ab.py); (3) the 8B's per-kernel decode profile. Logs under $OUT.
# Usage: bash bench/device/probe_check.sh
source bench/device/setup.sh || exit 1
python3 bench/diag/coopmat_probe.py 2>&1 | tee "$OUT/coop_512x4096x4096.txt" | grep -v "^features" | tail -25
if grep -q "RESULT" "$OUT/coop_512x4096x4096.txt"; then
  python3 bench/diag/coopmat_probe.py --m 64 --n 14336 --k 4096 2>&1 | grep RESULT | tee "$OUT/coop_64x14336x4096.txt"
fi
ab() { timeout 200 python3 bench/diag/matvec_ab.py --old src/wgllm/kernels/matvec.wgsl --rounds 3 "$@"; }
ab --types Q4_0,Q2_K,Q3_K --config "t@.old/var/shuf_t.wgsl:" --config "q4@.old/var/q2_4rows.wgsl:" \
  --config "both@.old/var/both.wgsl:" > "$OUT/matvec_ab_q2.txt" 2>&1
grep WRONG "$OUT/matvec_ab_q2.txt"; sed -n '/median/,$p' "$OUT/matvec_ab_q2.txt"
ab --types Q4_0,Q4_K,Q6_K,Q8_0,Q5_0,IQ4_XS --config "t@.old/var/shuf_t.wgsl:" > "$OUT/matvec_ab_t.txt" 2>&1
grep WRONG "$OUT/matvec_ab_t.txt"; sed -n '/median/,$p' "$OUT/matvec_ab_t.txt"
timeout 240 python3 bench/profile_kernels.py --shape llama-3-8b --types Q4_0 --precision f16 --prompt 64 --pos 64 --batch 16 \
  --reps 3 2>&1 | tail -70 | tee "$OUT/profile_llama3_8b_q4_0.txt"
