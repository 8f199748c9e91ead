#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .commit): the worker's cost per token vs in-process, SmolLM2.
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONUNBUFFERED=1 XDG_RUNTIME_DIR=/tmp PYTHONPATH=/tmp/site:$PWD/src WGLLM_COMMIT=$(cat .commit)
timeout 400 python3 bench/bench_worker.py --shape smollm2-135m --types Q4_1 --prompt 64 --gen 256 --reps 5 --rounds 3 --precision f16 --json "$OUT/worker-smollm2-sep.json" 2>&1 | tail -3
