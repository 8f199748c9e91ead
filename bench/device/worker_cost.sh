#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .commit): the worker's cost per token vs in-process,
# a killed worker's memory, and the time a restart takes, for each "shape:types" given.
# Usage: bash bench/device/worker_cost.sh "smollm2-135m:Q4_1 llama-3-8b:Q4_0" [rounds]
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONUNBUFFERED=1 XDG_RUNTIME_DIR=/tmp PYTHONPATH=/tmp/site:$PWD/src WGLLM_COMMIT=$(cat .commit)
for spec in ${1:-smollm2-135m:Q4_1}; do
  shape=${spec%%:*}; types=${spec##*:}
  timeout 500 python3 bench/bench_worker.py --shape "$shape" --types "$types" --prompt 64 --gen 256 --reps 5 \
    --rounds "${2:-3}" --precision f16 --json "$OUT/worker-$shape-sep.json" 2>&1 | tail -4
done
