#!/usr/bin/env bash
# On the GPU machine (device tool; carry .gl .whl .commit): whether WGSL cooperative matrices
# (tensor cores, wgpu-native's experimental `cooperative-matrix` feature) compile and run there,
# and how fast (bench/diag/coopmat_probe.py: raw f16, workgroup-tiled f16, Q4_0 dequantized into
# workgroup memory, each against numpy); then where a Llama-3-8B Q4_0 decode token's time goes
# (bench/profile_kernels.py), for issue 13.
# Usage: bash bench/device/coop_check.sh
source bench/device/setup.sh || exit 1
mkdir -p "$OUT"
python3 bench/diag/coopmat_probe.py 2>&1 | tee "$OUT/coop_512x4096x4096.txt" | grep -v "^features"
python3 bench/diag/coopmat_probe.py --m 64 --n 14336 --k 4096 2>&1 | grep RESULT | tee "$OUT/coop_64x14336x4096.txt"
python3 bench/diag/coopmat_probe.py --m 16 --n 14336 --k 4096 2>&1 | grep RESULT | tee "$OUT/coop_16x14336x4096.txt"
timeout 300 python3 bench/profile_kernels.py --shape llama-3-8b --types Q4_0 --precision f16 --prompt 64 --pos 64 \
  --reps 3 2>&1 | tail -45 | tee "$OUT/profile_llama3_8b_q4_0.txt"
