#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .peers .commit): issue 13's side-by-side table.
# llama.cpp CUDA is built here (.peers, ~5 min on 16 cores) while the random-weight GGUF files in
# real shapes are written (wgllm.testing.synth); then, on an idle host, wgllm's bench_engine.py
# (f16, --prompt 512 --gen 128) and llama.cpp's `llama-bench -fa 1 -p 512 -n 128 -o json` run on
# the same files, one after the other; bench/compare.py prints the table. JSON and logs under $OUT.
# PROFILES: space-separated "name:--set~A=B" (~ for spaces inside one variant).
# Usage: bash bench/device/compare.sh "llama-3-8b:Q4_0 llama-3-8b:Q4_K_M smollm2-135m:Q4_1"
set -u
. "$(dirname "$0")/setup.sh" || exit 1
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
(bash .peers/build_llama_cuda.sh .peers/llama.cpp-src.tar.xz > /tmp/llama-build.log 2>&1; echo "rc=$?" >> /tmp/llama-build.log) &
build=$!
mkdir -p /tmp/m
for spec in $1; do
  shape=${spec%%:*}; types=${spec#*:}; f=/tmp/m/$shape-$types.gguf
  python3 -c "from wgllm.testing import synth; synth.write_llama_gguf('$f', '$shape', types='$types', seed=0, fast=True)"
  el "wrote $f"
done
# PROFILES="name:--set A=B ...": per-kernel decode profiles of the first file meanwhile (GPU timestamps)
first=${1%% *}; ff=/tmp/m/${first%%:*}-${first#*:}.gguf
for v in ${PROFILES:-}; do
  timeout 90 python3 bench/profile_kernels.py --model $ff --precision f16 --prompt 64 --pos 64 --reps 3 \
    $(echo "${v#*:}" | tr '~' ' ') > /tmp/profile-${v%%:*}.md 2>&1
  echo "== profile ${v%%:*} ${v#*:}"; sed -n '/^decode/,/^prefill/p' /tmp/profile-${v%%:*}.md | grep -v "^|---" | head -14
done
el "profiles done"
wait $build; el "llama.cpp build: $(tail -3 /tmp/llama-build.log)"
B=/tmp/lc/llama.cpp/build/bin
for spec in $1; do
  shape=${spec%%:*}; types=${spec#*:}; name=$shape-$types; f=/tmp/m/$name.gguf
  timeout 200 python3 bench/bench_engine.py --shape $shape --types $types --model $f --prompt 512 --gen 128 --reps 3 \
    --precision f16 ${WGLLM_ARGS:-} --json "$OUT/$name.wgllm.json" 2>&1 | tail -1
  python3 .peers/rename_pretokenizer.py $f > /dev/null
  timeout 200 $B/llama-bench -m $f -ngl 99 -fa 1 -p 512 -n 128 -o json > "$OUT/$name.llama.json" 2> /tmp/$name.llama.log || tail -5 /tmp/$name.llama.log
  el "$name done"
done
python3 bench/compare.py "$OUT" | tee $OUT/table.md
