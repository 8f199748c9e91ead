#!/usr/bin/env bash
# On the GPU machine (device tool, carry .gl .whl .commit and, for "old", .old = git archive REV src
# bench): bench_engine.py (f16, --prompt 512 --gen 128 --reps 3) of each variant in turns, ROUNDS
# rounds per shape in one call, then the median decode, prefill and load time per variant. A variant is "old"
# (the tree in .old), "new" (this tree) or "name:--set~A=B" (this tree with kernel constants; ~ for
# spaces). Lines and a summary under $OUT.
# Usage: bash bench/device/turns.sh "smollm2-135m:Q4_1 llama-3-8b:Q4_0" ROUNDS old new "nofew:--set~linear.MATVEC_FEW_ROWS=None"
set -u
. "$(dirname "$0")/setup.sh" > /dev/null || exit 1
specs=$1; rounds=$2; shift 2
mkdir -p /tmp/m /tmp/turns
for spec in $specs; do
  shape=${spec%%:*}; types=${spec#*:}; f=/tmp/m/$shape-$types.gguf
  [ -f $f ] || python3 -c "from wgllm.testing import synth; synth.write_llama_gguf('$f', '$shape', types='$types', seed=0, fast=True)"
  for r in $(seq $rounds); do
    for v in "$@"; do
      name=${v%%:*}; set=; root=$PWD
      [ "$name" = old ] && root=$PWD/.old
      [ "$v" != "$name" ] && set=$(echo "${v#*:}" | tr '~' ' ')
      (cd $root && PYTHONPATH=/tmp/site:$root/src timeout 100 python3 bench/bench_engine.py --shape $shape --types $types \
        --model $f --prompt 512 --gen 128 --reps 3 --precision f16 $set --json /tmp/turns/$shape-$types~$name~$r.json \
        2>&1 | tail -1 | cut -c1-150 | sed "s/^/$name $r: /")
    done
  done
done | tee $OUT/turns.txt
python3 - "$@" <<'PY' | tee -a $OUT/turns.txt
import glob, json, statistics, sys
print("| shape | variant | decode tok/s (median) | prefill tok/s (median) | load s (median) | runs |")
print("|---|---|---|---|---|---|")
runs = {}
for p in sorted(glob.glob("/tmp/turns/*.json")):
    shape, name = p.split("/")[-1].split("~")[:2]
    runs.setdefault((shape, name), []).append(json.load(open(p)))
for (shape, name), rs in runs.items():
    d = statistics.median(r["decode_tok_s"] for r in rs); pf = statistics.median(r["prefill_tok_s"] for r in rs)
    ld = statistics.median(r["load_s"] for r in rs)
    print(f"| {shape} | {name} | {d:.1f} | {pf:,.0f} | {ld:.2f} | {len(rs)} |")
PY
