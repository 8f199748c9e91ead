#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl): the supervised worker on a real GPU, in one call.
# The worker's cost per token vs in-process (SmolLM2 Q4_1 and 8B Q4_0 shapes), a killed worker's
# memory (NVML), the rebuild-cap churn through the worker, and the worker tests. Logs under $OUT.
# Usage: WGLLM_COMMIT=abc1234 bash bench/device/worker_check.sh [churn-count]
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONUNBUFFERED=1 XDG_RUNTIME_DIR=/tmp PYTHONPATH=/tmp/site:$PWD/src
nvidia-smi -L
for spec in smollm2-135m:Q4_1 llama-3-8b:Q4_0; do
  shape=${spec%%:*}; types=${spec##*:}
  timeout 300 python3 bench/bench_worker.py --shape "$shape" --types "$types" --prompt 64 --gen 256 --reps 5 \
    --precision f16 --json "$OUT/worker-$shape.json" 2>&1 | tail -3
done
timeout 400 python3 bench/diag/device_churn.py lost@decode:3 "${1:-200}" 2>&1 | tail -6 | tee "$OUT/churn.log"
WGLLM_REQUIRE_GPU=1 timeout 300 python3 -m pytest -q -p no:cacheprovider tests/recovery/test_worker.py \
  -k "not chaos" 2>&1 | tail -6
