#!/usr/bin/env bash
# On the GPU machine (carry .gl .whl .whl3 .spy: a py-spy wheel): where the host time of a batched
# SmolLM2 pass goes (py-spy raw stacks of bench_batch at npl 16 and 1, under $OUT).
# Usage: bash bench/device/spy_batch.sh (the .spy wheel: pip download py-spy for manylinux x86_64, cp312)
source bench/device/setup.sh >/dev/null || exit 1
python3 -m pip install -q --no-index --no-deps --upgrade --target /tmp/spy .spy/*.whl
mkdir -p /tmp/m; f=/tmp/m/s.gguf
python3 -c "from wgllm.testing import synth; synth.write_llama_gguf('$f', 'smollm2-135m', types='Q4_1', seed=0, fast=True)"
/tmp/spy/bin/py-spy record -r 250 -t -f raw -o $OUT/spy16.txt -- python3 bench/bench_batch.py --shape smollm2-135m --types Q4_1 --model $f --npl 16 --pp 128 --tg 256 --reps 1 2>&1 | tail -3
/tmp/spy/bin/py-spy record -r 250 -t -f raw -o $OUT/spy1.txt -- python3 bench/bench_batch.py --shape smollm2-135m --types Q4_1 --model $f --npl 1 --pp 128 --tg 256 --reps 1 2>&1 | tail -3
ls -la $OUT
