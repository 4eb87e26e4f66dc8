#!/usr/bin/env bash
# `kiln train` end to end on a tiny pre-training config and a fixed 32-example dataset
# (tests/parity/make_case.py): 30 AdamW steps lower the loss over the whole dataset (kiln run,
# dropout off) by a clear margin; a 20-step run equals its step-10 checkpoint resumed for
# 10 more, bitwise; and bad data or flags fail with exit 1 or 2.
# usage: tests/train.sh KILN_BINARY
set -euo pipefail
kiln=${1:?usage: train.sh KILN_BINARY}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model="$root/models/visualbert-pretrain.json"
tiny=(--set layers=1 --set hidden=16 --set heads=2 --set intermediate=32 --set vocab=30
      --set visual_dim=12 --set text_len=5 --set regions=4 --set max_positions=8)
train=("$kiln" train "$model" --weights "$work/w.safetensors" --data "$work/data.safetensors"
       --seed 1 --threads 2 "${tiny[@]}" --set batch=4)
passed=0 failed=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  if "$@" >"$work/log" 2>&1; then echo "ok    $name"; passed=$((passed + 1))
  else echo "FAIL  $name"; tail -20 "$work/log"; failed=$((failed + 1)); fi
}
loss_of() {  # the loss over all 32 examples, dropout off
  "$kiln" run "$model" --weights "$1" --inputs "$work/data.safetensors" -o "$work/eval.safetensors" \
    "${tiny[@]}" --set batch=32 --set dropout=0 --threads 2 2>/dev/null
  "$py" -c 'import sys; sys.path.insert(0, sys.argv[1]); import safetensors_io as s
print(float(s.read(sys.argv[2])["loss"]))' "$here/parity" "$work/eval.safetensors"
}
exit_code() {  # exit_code WANT COMMAND...: the command fails with exactly WANT
  local want=$1; shift
  local rc=0; "$@" || rc=$?
  echo "exit $rc (want $want)"; [ "$rc" -eq "$want" ]
}

"$kiln" init "$model" -o "$work/w.safetensors" --seed 3 "${tiny[@]}" --set batch=4 2>/dev/null
"$py" "$here/parity/make_case.py" --variant pretrain --seed 5 -o "$work/data.safetensors" \
  "${tiny[@]}" --set batch=32 >/dev/null

learns() {
  "${train[@]}" --steps 30 --lr 1e-2 -o "$work/trained.safetensors" || return 1
  local before after; before=$(loss_of "$work/w.safetensors"); after=$(loss_of "$work/trained.safetensors")
  echo "loss before $before, after 30 steps $after"
  "$py" -c 'import sys; b, a = map(float, sys.argv[1:]); sys.exit(0 if a < b - 0.2 else 1)' "$before" "$after"
}
check "train: 30 adamw steps lower the loss" learns

learns_sgd() {
  "${train[@]}" --steps 30 --lr 0.1 --optimizer sgd -o "$work/sgd.safetensors" || return 1
  local before after; before=$(loss_of "$work/w.safetensors"); after=$(loss_of "$work/sgd.safetensors")
  echo "loss before $before, after 30 sgd steps $after"
  "$py" -c 'import sys; b, a = map(float, sys.argv[1:]); sys.exit(0 if a < b - 0.1 else 1)' "$before" "$after"
}
check "train: 30 sgd steps lower the loss" learns_sgd

resumes() {
  "${train[@]}" --steps 20 --lr 1e-2 --checkpoint-every 10 -o "$work/full.safetensors" || return 1
  "${train[@]}" --steps 20 --lr 1e-2 --resume "$work/full.step-10.safetensors" -o "$work/resumed.safetensors" || return 1
  cmp "$work/full.safetensors" "$work/resumed.safetensors"
}
check "train: 20 steps equal 10 steps + --resume for 10 more (bitwise)" resumes

# Bad data: a tensor with the wrong trailing shape, and fewer examples than a batch.
"$py" - "$here/parity" "$work" <<'PY'
import sys; sys.path.insert(0, sys.argv[1]); import safetensors_io as s
d = s.read(sys.argv[2] + "/data.safetensors")
bad = dict(d); bad["visual_embeds"] = d["visual_embeds"][:, :, :5].copy()
s.write(sys.argv[2] + "/bad-shape.safetensors", bad)
s.write(sys.argv[2] + "/few.safetensors", {k: v[:3].copy() for k, v in d.items()})
s.write(sys.argv[2] + "/no-labels.safetensors", {k: v for k, v in d.items() if k != "labels"})
PY
bad_data() { exit_code 1 "$kiln" train "$model" --weights "$work/w.safetensors" --data "$1" -o "$work/x.safetensors" \
  --steps 2 "${tiny[@]}" --set batch=4; }
check "train: wrong trailing shape in the data is exit 1" bad_data "$work/bad-shape.safetensors"
check "train: fewer examples than a batch is exit 1" bad_data "$work/few.safetensors"
check "train: a missing input is exit 1" bad_data "$work/no-labels.safetensors"
check "train: resuming with other --steps is exit 1" exit_code 1 "${train[@]}" --steps 30 \
  --resume "$work/full.step-10.safetensors" -o "$work/x.safetensors"
check "train: missing --data is exit 2" exit_code 2 "$kiln" train "$model" --weights "$work/w.safetensors" -o "$work/x.safetensors"
check "train: bad --optimizer is exit 2" exit_code 2 "${train[@]}" --optimizer adam -o "$work/x.safetensors"
check "train: bad --lr is exit 2" exit_code 2 "${train[@]}" --lr -1 -o "$work/x.safetensors"
check "train: bad --steps is exit 2" exit_code 2 "${train[@]}" --steps 0 -o "$work/x.safetensors"
echo "train: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
