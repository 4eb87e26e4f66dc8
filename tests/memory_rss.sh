#!/bin/bash
# `kiln check --memory` predicts the peak resident memory of a run (weights, packed copies,
# arena, inputs, the process): within 10% of the maximum RSS `kiln bench --weights`
# measures (getrusage through /usr/bin/time -v), with the compile cache warm, at two model
# sizes; and after the first
# run a weight only GEMMs read is held only in its packed form (the bigger model stays
# under its weights plus the arena's values, not weights twice).
set -euo pipefail
kiln=$1
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
[[ -x /usr/bin/time ]] || { echo "SKIP: no /usr/bin/time"; exit 77; }
field() { awk -v k="$1:" '$1 == k { print $2 }' <<<"$2"; }

for layers in 2 8; do
  size=(--set layers=$layers --set vocab=1000 --set batch=2)
  "$kiln" init models/visualbert-vqa.json "${size[@]}" -o "$work/w.safetensors" 2>/dev/null
  out=$("$kiln" check models/visualbert-vqa.json "${size[@]}" --memory)
  predicted=$(field predicted_peak_rss_bytes "$out"); weights=$(field weights_bytes "$out")
  [[ -n $predicted && -n $weights ]] || fail "layers=$layers: missing fields in: $out"
  "$kiln" bench models/visualbert-vqa.json "${size[@]}" --iters 1 >/dev/null  # the compile cache warm
  /usr/bin/time -v "$kiln" bench models/visualbert-vqa.json "${size[@]}" --weights "$work/w.safetensors" \
    --iters 2 --threads 2 >/dev/null 2>"$work/time"
  measured=$(( $(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time") * 1024 ))
  echo "layers=$layers: weights $weights predicted $predicted measured $measured"
  ((measured * 10 <= predicted * 11 && measured * 10 >= predicted * 9)) ||
    fail "layers=$layers: predicted $predicted, measured $measured: more than 10% apart"
  ((layers < 8 || measured < 2 * weights)) || fail "layers=$layers: $measured bytes: the weights are held twice ($weights)"
done
echo "memory predictions within 10%"
