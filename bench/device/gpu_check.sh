#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .old): the GPU path before and after a change,
# in one call. .old holds `git archive BASE src bench`. Writes JSON and logs under $OUT.
# Usage: bash bench/device/gpu_check.sh "smollm2-135m:Q4_1 llama-3.2-1b:Q4_0" [tests]
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONUNBUFFERED=1 XDG_RUNTIME_DIR=/tmp
nvidia-smi -L
mkdir -p /tmp/m
for spec in $1; do
  shape=${spec%%:*}; types=${spec##*:}
  PYTHONPATH=/tmp/site:$PWD/src python3 -c "from wgllm.testing import synth; synth.write_llama_gguf('/tmp/m/$shape.gguf', '$shape', types='$types', seed=0, fast=True)"
  for tree in old new old new; do
    src=$PWD/src; b=bench; [ "$tree" = old ] && src=$PWD/.old/src && b=.old/bench
    PYTHONPATH=/tmp/site:$src WGLLM_COMMIT=$tree timeout 240 python3 $b/bench_engine.py --shape "$shape" --types "$types" \
      --model /tmp/m/$shape.gguf --prompt 512 --gen ${GEN:-128} --reps 3 --precision f16 \
      --json "$OUT/$tree-$shape-$(date +%s%N).json" 2>&1 | tail -1
  done
  rm -f /tmp/m/$shape.gguf
done
if [ "${2:-}" = tests ]; then
  PYTHONPATH=/tmp/site:$PWD/src WGLLM_REQUIRE_GPU=1 timeout 400 python3 -m pytest -q -p no:cacheprovider \
    tests/kernels tests/unit/test_gguf_parser.py tests/model/test_llama_vs_reference.py -k "not real_model" 2>&1 | tail -8
fi
