#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .whl3 .old): matvec per type, this tree
# (and .whl2: transformers / tokenizers wheels, when the model tests run) against .old
# (`git archive BASE src bench`), then kernel-variant A/B and the tests (TEST_PATHS).
# Usage: bash bench/device/matvec_check.sh [AB_CONFIG...]   (each: matvec_ab's --config)
# Logs under $OUT.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl3/*.whl $(ls .whl2/*.whl 2>/dev/null) || exit 1
export PYTHONUNBUFFERED=1 XDG_RUNTIME_DIR=/tmp WGLLM_REQUIRE_GPU=1
nvidia-smi -L; git log -1 --format=%h 2>/dev/null
new() { PYTHONPATH=/tmp/site:$PWD/src timeout "$@"; }
old() { PYTHONPATH=/tmp/site:$PWD/.old/src timeout "$@"; }
new 150 python3 bench/bench_linear.py > "$OUT/bench_linear_new.txt" 2>&1; tail -16 "$OUT/bench_linear_new.txt"
old 150 python3 .old/bench/bench_linear.py > "$OUT/bench_linear_old.txt" 2>&1; tail -15 "$OUT/bench_linear_old.txt" | cut -c1-80
cfg=(); for c in "$@"; do cfg+=(--config "$c"); done
new 200 python3 bench/diag/matvec_ab.py --old .old/src/wgllm/kernels/matvec.wgsl --types "${AB_TYPES:-Q4_0,Q2_K,Q3_K,Q5_0}" \
  --rounds 3 "${cfg[@]}" > "$OUT/matvec_ab.txt" 2>&1; sed -n '/median/,$p' "$OUT/matvec_ab.txt"
if [ "${TESTS:-1}" = 1 ]; then
  new 300 python3 -m pytest -q -p no:cacheprovider ${TEST_PATHS:-tests/kernels} > "$OUT/tests.txt" 2>&1; tail -3 "$OUT/tests.txt"
fi
