#!/usr/bin/env bash
# `kiln train --init W`: fine-tuning starts from pre-trained weights. A tiny pre-training
# model's weights (and a text-only model's: the BERT initialisation, whose missing visual
# tables start as copies of its text tables) start a VQA run (and a late-fusion NLVR2 run) with a learning rate that is
# 0 in f32 (1e-300, SGD), so the written weights are the starting point: every parameter W
# holds is copied bitwise, every parameter it lacks (cls.*, additional_layer.*) equals
# `kiln init` of the task model with the same --seed, bitwise; W's tensors the model lacks
# are reported (count and first names); a shape mismatch is an error naming the tensor
# (exit 1); --init with --weights is a bad command line (exit 2).
# usage: tests/train_init.sh KILN_BINARY
set -euo pipefail
source "$(dirname "$0")/lib.sh"
tiny=(--set layers=2 --set hidden=16 --set heads=2 --set intermediate=32 --set vocab=30
      --set visual_dim=12 --set text_len=5 --set regions=4 --set max_positions=8 --set batch=4)
exit_code() {  # exit_code WANT COMMAND...: the command fails with exactly WANT
  local want=$1; shift
  local rc=0; "$@" || rc=$?
  echo "exit $rc (want $want)"; [ "$rc" -eq "$want" ]
}
# same START OUT FRESH PREFIXES [COPIES]: every tensor of OUT equals START's of that name
# bitwise when START has it, else START's tensor B for each pair A=B of COPIES
# (comma-separated: A is initialised as a copy of B), else FRESH's; and at least one tensor
# of OUT starts with each of PREFIXES (comma-separated) and came from FRESH.
same() {
  "$py" - "$here/parity" "$@" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import safetensors_io as s
start, out, fresh = (s.read(p) for p in sys.argv[2:5])
prefixes = sys.argv[5].split(",")
copies = dict(p.split("=") for p in sys.argv[6].split(",")) if len(sys.argv) > 6 else {}
copied, init = 0, []
for name, v in out.items():
    src = start if name in start or name in copies else fresh
    ref = np.asarray(src[name] if name in src else start[copies[name]])
    if np.asarray(v).tobytes() != ref.astype(np.asarray(v).dtype).tobytes():
        sys.exit(f"{name}: differs from {'the --init file' if src is start else 'kiln init'}")
    if src is start: copied += 1
    else: init.append(name)
print(f"{copied} copied, {len(init)} initialised: {init}")
for p in prefixes:
    if not any(n.startswith(p) for n in init): sys.exit(f"no initialised parameter under {p}")
if copied < 10: sys.exit("too few copied parameters")
PY
}

"$kiln" init "$root/models/visualbert-pretrain.json" -o "$work/pre.safetensors" --seed 3 "${tiny[@]}" 2>/dev/null
for task in vqa nlvr2-late; do
  variant=${task%-late}
  extra=(); [ "$variant" = vqa ] && extra=(--set num_labels=7)
  "$py" "$here/parity/make_case.py" --variant "$task" --seed 5 -o "$work/$task-data.safetensors" \
    "${tiny[@]}" "${extra[@]}" >/dev/null
  "$kiln" init "$root/models/visualbert-$task.json" -o "$work/$task-fresh.safetensors" --seed 9 \
    "${tiny[@]}" "${extra[@]}" 2>/dev/null
  heads=cls.; [ "$task" = nlvr2-late ] && heads=cls.,visual_bert.additional_layer.
  check "$task: --init copies W bitwise, initialises the rest by --seed" bash -c '
    "$0" train "$1" --init "$2" --data "$3" -o "$4" --seed 9 --steps 1 --optimizer sgd --lr 1e-300 \
      --threads 2 "${@:5}" 2>"$4.log" && cat "$4.log" &&
    grep -q "parameters copied; .* not in the file, initialised (seed 9): " "$4.log" &&
    grep -q "tensors are not parameters of the model (ignored): cls.predictions" "$4.log"' \
    "$kiln" "$root/models/visualbert-$task.json" "$work/pre.safetensors" "$work/$task-data.safetensors" \
    "$work/$task-out.safetensors" "${tiny[@]}" "${extra[@]}"
  check "$task: weights after --init" same "$work/pre.safetensors" "$work/$task-out.safetensors" \
    "$work/$task-fresh.safetensors" "$heads"
done

# The BERT initialisation: a text-only model's weights (models/bert-pretrain.json, same
# names) start a VQA run; its visual embeddings' tables start as copies of the file's
# text tables (their initialisers are copy(...)), the projection, pooler and head from
# kiln init.
"$kiln" init "$root/models/bert-pretrain.json" -o "$work/bert.safetensors" --seed 4 "${tiny[@]}" 2>/dev/null
check "bert -> vqa: --init reports the copies" bash -c '
  "$0" train "$1" --init "$2" --data "$3" -o "$4" --seed 9 --steps 1 --optimizer sgd --lr 1e-300 \
    --threads 2 "${@:5}" 2>"$4.log" && cat "$4.log" &&
  grep -q "2 not in the file, copies of the file.s tensors they are initialised from: visual_bert.embeddings.visual_" "$4.log"' \
  "$kiln" "$root/models/visualbert-vqa.json" "$work/bert.safetensors" "$work/vqa-data.safetensors" \
  "$work/bert-vqa.safetensors" "${tiny[@]}" --set num_labels=7
e=visual_bert.embeddings
check "bert -> vqa: weights after --init" same "$work/bert.safetensors" "$work/bert-vqa.safetensors" \
  "$work/vqa-fresh.safetensors" "$e.visual_projection,visual_bert.pooler,cls." \
  "$e.visual_token_type_embeddings.weight=$e.token_type_embeddings.weight,$e.visual_position_embeddings.weight=$e.position_embeddings.weight"

# A shape mismatch names the tensor; --init with --weights is a bad command line.
"$kiln" init "$root/models/visualbert-pretrain.json" -o "$work/wide.safetensors" --seed 3 "${tiny[@]}" \
  --set hidden=32 --set intermediate=64 2>/dev/null
check "shape mismatch: exit 1 naming the tensor" bash -c '
  rc=0; "$0" train "$1" --init "$2" --data "$3" -o "$4" --steps 1 "${@:5}" 2>"$4.log" || rc=$?
  cat "$4.log"; [ $rc -eq 1 ] && grep -q "tensor \"visual_bert.[a-z_.]*\" has shape" "$4.log"' \
  "$kiln" "$root/models/visualbert-vqa.json" "$work/wide.safetensors" "$work/vqa-data.safetensors" \
  "$work/bad.safetensors" "${tiny[@]}" --set num_labels=7
check "--init with --weights: exit 2" exit_code 2 "$kiln" train "$root/models/visualbert-vqa.json" \
  --init "$work/pre.safetensors" --weights "$work/pre.safetensors" --data "$work/vqa-data.safetensors" \
  -o "$work/bad.safetensors" "${tiny[@]}" --set num_labels=7

echo "train_init: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
