#!/bin/bash
# --trace FILE (docs/trace.md): kiln bench, bench --train and train write Chrome trace-event
# JSON with one span per step per thread and run, non-overlapping on each thread, barrier
# waits and the arena counter (tests/trace_check.py); a trace file that is an input or -o is
# a bad command line, one that is a FIFO is refused; --trace on run is a usage error.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
vqa=$root/models/visualbert-vqa.json
out=$("$kiln" bench "$vqa" "${tiny[@]}" --iters 3 --threads 2 --trace "$work/b.json")
steps=$(awk '$1 == "steps:" {print $2}' <<<"$out")
"$py" "$here/trace_check.py" "$work/b.json" 3 "$steps" 2 || fail "bench trace"
out=$("$kiln" bench "$vqa" "${tiny[@]}" --train --iters 2 --threads 2 --trace "$work/t.json")
steps=$(awk '$1 == "steps:" {print $2}' <<<"$out")
"$py" "$here/trace_check.py" "$work/t.json" 2 "$steps" 2 || fail "bench --train trace"
# kiln train: the first 20 steps of 25 are recorded, on one thread
"$kiln" init "$vqa" "${tiny[@]}" --set num_labels=6 -o "$work/w.safetensors"
"$py" "$root/tests/parity/make_case.py" --variant vqa --seed 5 -o "$work/data.safetensors" \
  "${tiny[@]}" --set batch=8 --set num_labels=6 >/dev/null
"$kiln" train "$vqa" "${tiny[@]}" --set num_labels=6 --weights "$work/w.safetensors" --data "$work/data.safetensors" \
  --steps 25 --threads 1 -o "$work/out.safetensors" --trace "$work/train.json" 2>"$work/err" || { cat "$work/err"; fail "train --trace"; }
grep -q "trace of 20 runs written to $work/train.json" "$work/err" || fail "train: no trace note: $(cat "$work/err")"
steps=$("$kiln" bench "$vqa" "${tiny[@]}" --set num_labels=6 --train --iters 1 --threads 1 | awk '$1 == "steps:" {print $2}')
"$py" "$here/trace_check.py" "$work/train.json" 20 "$steps" 1 || fail "train trace"
"$py" -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["otherData"]["runs_not_recorded"] == 5, d["otherData"]' \
  "$work/train.json" || fail "train: the 5 steps after the 20th are not counted"
# bad places for a trace
code() { set +e; "$@" >/dev/null 2>"$work/err"; echo $?; set -e; }
[[ $(code "$kiln" bench "$vqa" "${tiny[@]}" --iters 1 --weights "$work/w.safetensors" --trace "$work/w.safetensors") == 2 ]] ||
  fail "--trace equal to --weights should exit 2"
grep -q "same file as --weights" "$work/err" || fail "message: $(cat "$work/err")"
[[ $(code "$kiln" train "$vqa" "${tiny[@]}" --set num_labels=6 --weights "$work/w.safetensors" --data "$work/data.safetensors" \
  -o "$work/o2.safetensors" --trace "$work/o2.safetensors") == 2 ]] || fail "--trace equal to -o should exit 2"
mkfifo "$work/fifo"
[[ $(code "$kiln" bench "$vqa" "${tiny[@]}" --iters 1 --trace "$work/fifo") == 1 ]] || fail "--trace to a FIFO should exit 1"
grep -q "FIFO" "$work/err" || fail "message: $(cat "$work/err")"
[[ $(code "$kiln" run "$vqa" --trace "$work/x.json") == 2 ]] || fail "run --trace should exit 2"
echo "trace checks passed"
