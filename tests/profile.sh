#!/bin/bash
# `kiln bench --profile`: every run step is timed once per run; the by-op table's steps add
# up to the plan's steps, its times to the total, and the slowest steps name real nodes.
set -euo pipefail
kiln=$1
cd "$(dirname "$0")/.."
fail() { echo "FAIL: $*"; exit 1; }
tiny=(--set layers=2 --set hidden=32 --set heads=4 --set intermediate=64 --set vocab=50
      --set visual_dim=24 --set text_len=6 --set regions=5 --set batch=2 --set max_positions=16)
out=$("$kiln" bench models/visualbert-vqa.json "${tiny[@]}" --iters 3 --threads 2 --profile)
echo "$out"
steps=$(awk '$1 == "steps:" {print $2}' <<<"$out")
total=$(sed -n 's/^profile: 3 runs, .*; \([0-9.]*\) ms a run$/\1/p' <<<"$out")
[[ -n $steps && -n $total ]] || fail "no steps or profile total"
# rows of the by-op table: NAME MS SHARE% STEPS (between the header and the step table)
table=$(sed -n '/^  op  /,/^  ms\/run/p' <<<"$out" | sed '1d;$d')
sum_steps=$(awk '{s += $4} END {print s}' <<<"$table")
sum_ms=$(awk '{s += $2} END {print s}' <<<"$table")
((sum_steps <= steps && sum_steps > 0)) || fail "by-op steps $sum_steps vs plan steps $steps"
awk -v a="$sum_ms" -v b="$total" 'BEGIN { exit !(a > 0 && (a - b) ^ 2 <= (0.01 * b + 0.01) ^ 2) }' ||
  fail "by-op times add to $sum_ms, total $total"
grep -q "^  fused.gemm " <<<"$table" || fail "no fused.gemm row"
grep -qE "^  [0-9.]+ +[0-9.]+%  [0-9]+: visual_bert\.encoder\.layer\.[01]" <<<"$out" || fail "no encoder step among the slowest"
# KILN_PERF_JIT=1: RuntimeDyld with LLVM's perf listener, which writes a jitdump that
# `perf inject --jit` reads (or a warning when this LLVM was built without it).
jd=$(mktemp -d)
trap 'rm -rf "$jd"' EXIT
perf_out=$(KILN_PERF_JIT=1 JITDUMPDIR=$jd "$kiln" bench models/visualbert-vqa.json "${tiny[@]}" \
  --iters 1 --threads 2 2>&1) || fail "KILN_PERF_JIT=1 bench failed: $perf_out"
grep -q "^median_ms:" <<<"$perf_out" || fail "KILN_PERF_JIT=1: no median_ms"
compgen -G "$jd/.debug/jit/*/jit-*.dump" >/dev/null || grep -q "no perf JIT listener" <<<"$perf_out" ||
  fail "KILN_PERF_JIT=1 wrote no jitdump under $jd"
set +e
"$kiln" run models/visualbert-vqa.json --profile >/dev/null 2>&1
[[ $? == 2 ]] || fail "run --profile should be a command-line error (exit 2)"
echo "profile checks passed"
