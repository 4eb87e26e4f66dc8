#!/bin/bash
# `kiln check --memory`: the memory plan's numbers on tiny VisualBERT inference and training
# graphs — arena between the lower bound and the sum of all buffers, within 10% of the
# lower bound; with --disable-pass memplan the arena is the sum; --memory only for check.
set -euo pipefail
kiln=$1
cd "$(dirname "$0")/.."
tiny=(--set layers=2 --set hidden=32 --set heads=4 --set intermediate=64 --set vocab=50
      --set visual_dim=24 --set text_len=6 --set regions=5 --set batch=2 --set max_positions=16)
fail() { echo "FAIL: $*"; exit 1; }
field() { awk -v k="$1:" '$1 == k { print $2 }' <<<"$2"; }

check() {  # model, extra flags...
  local out arena lower unplanned
  out=$("$kiln" check "$@" --memory)
  arena=$(field arena_bytes "$out"); lower=$(field lower_bound_bytes "$out")
  unplanned=$(field unplanned_bytes "$out")
  [[ -n $arena && -n $lower && -n $unplanned ]] || fail "$*: missing fields in: $out"
  ((lower > 0 && arena >= lower && arena <= unplanned)) || fail "$*: arena $arena lower $lower unplanned $unplanned"
  ((arena * 10 <= lower * 11)) || fail "$*: arena $arena more than 1.10 x lower bound $lower"
  ((arena < unplanned)) || fail "$*: the plan saves nothing ($arena of $unplanned)"
  if [[ " $* " == *" fuse "* ]]; then  # unfused: many short-lived intermediates to overlap
    ((arena * 2 < unplanned)) || fail "$*: the plan saves less than half ($arena of $unplanned)"
  fi
  out=$("$kiln" check "$@" --memory --disable-pass memplan)
  [[ $(field arena_bytes "$out") == "$unplanned" ]] || fail "$*: memplan disabled: $out"
  echo "ok: $* arena $arena lower $lower unplanned $unplanned"
}
check models/visualbert-vqa.json "${tiny[@]}" --set num_labels=7
check models/visualbert-vqa.json "${tiny[@]}" --set num_labels=7 --disable-pass fuse --disable-pass fuse_attention
check models/visualbert-pretrain.json "${tiny[@]}" --grad
# The targets of issue 5 at base size (lowering only, no JIT, no buffers: light).
check models/visualbert-vqa.json --set batch=8
check models/visualbert-pretrain.json --grad --set batch=8 --set text_len=32
check models/visualbert-pretrain.json "${tiny[@]}" --train

# check --memory --train (kiln train's program): its parts, and the prediction made of them
# (running: weights, optimiser state, arena, inputs; a training step packs in every run).
parts() {  # optimizer, state values per weight
  local out w s g a i o p
  out=$("$kiln" check models/visualbert-pretrain.json "${tiny[@]}" --memory --train --optimizer "$1")
  w=$(field weights_bytes "$out"); s=$(field optimizer_state_bytes "$out"); g=$(field gradients_bytes "$out")
  a=$(field arena_bytes "$out"); i=$(field inputs_bytes "$out"); o=$(field overhead_bytes "$out")
  p=$(field predicted_peak_rss_bytes "$out")
  [[ -n $w && -n $s && -n $g && -n $a && -n $i && -n $o && -n $p ]] || fail "--train $1: missing fields in: $out"
  ((s == $2 * w && g == w && g < a && i > 0)) || fail "--train $1: weights $w state $s gradients $g arena $a inputs $i"
  [[ $(field packed_bytes "$out") == 0 ]] || fail "--train $1: packed weights pinned: $out"
  ((p == o + w + s + a + i)) || fail "--train $1: predicted $p is not the sum of its parts"
  echo "ok: --train --optimizer $1: weights $w state $s gradients $g arena $a inputs $i overhead $o predicted $p"
}
parts adamw 2
parts sgd 1

set +e
"$kiln" check models/visualbert-pretrain.json "${tiny[@]}" --train >/dev/null 2>&1
[[ $? == 2 ]] || fail "check --train without --memory should be a command-line error (exit 2)"
"$kiln" run models/visualbert-vqa.json --memory >/dev/null 2>&1
[[ $? == 2 ]] || fail "run --memory should be a command-line error (exit 2)"
echo "all memory checks passed"
