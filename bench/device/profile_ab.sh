#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .whl3 .commit .old): per-kernel decode profiles
# (bench/profile_kernels.py, timestamps per dispatch) of .old (git archive REV src bench) and of
# this tree with each variant given as "name:--set A=B --set C=D" (default: as is). Logs under $OUT.
# Usage: bash bench/device/profile_ab.sh "llama-3-8b:Q4_0" ["fused:--set linear.DECODE_NORM=True" ...]
set -u
. "$(dirname "$0")/setup.sh" || exit 1
spec=${1:-llama-3-8b:Q4_0}; shift
shape=${spec%%:*}; types=${spec#*:}; f=/tmp/m/$shape-$types.gguf
mkdir -p /tmp/m
python3 -c "from wgllm.testing import synth; synth.write_llama_gguf('$f', '$shape', types='$types', seed=0, fast=True)"
for v in "old:" "new:" "$@"; do
  name=${v%%:*}; set=${v#*:}; root=$PWD; [ "$name" = old ] && root=$PWD/.old
  [ "$name" = old ] && set=
  (cd $root && PYTHONPATH=/tmp/site:$root/src timeout 120 python3 bench/profile_kernels.py --model $f --precision f16 \
    --prompt 64 --pos 64 --reps 3 $set --json "$OUT/profile-$name.json" > "$OUT/profile-$name.md" 2>&1)
  echo "== $name $set"; sed -n '/^decode/,$p' "$OUT/profile-$name.md" | head -${LINES_SHOWN:-48}
done
# PROBE="--glu --types Q4_0 --shapes 14336x4096 ...": wide_probe with these arguments afterwards
if [ -n "${PROBE:-}" ]; then
  timeout 150 python3 bench/diag/wide_probe.py $PROBE > "$OUT/probe.txt" 2>&1; cat "$OUT/probe.txt"
fi
