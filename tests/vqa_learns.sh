#!/usr/bin/env bash
# Issue 7's learning test: a tiny VisualBERT VQA model (hidden 32, 1 layer) trained for 120
# steps (fixed seeds) on `kiln data synth`'s VQA-like task reaches a validation accuracy
# (kiln eval's argmax accuracy) clearly above chance, where chance is the best constant
# answer's rate on the same validation split (computed from its labels), and above the
# untrained model's accuracy.
# usage: tests/vqa_learns.sh KILN_BINARY
set -euo pipefail
source "$(dirname "$0")/lib.sh"
model=$root/models/visualbert-vqa.json
"$kiln" data synth -o "$work/world" --seed 3 --train 1024 --val 256 --test 16 2>/dev/null
mapfile -t sets < <(sed 's/^/--set\n/' "$work/world/config.txt")
sets+=(--set hidden=32 --set layers=1 --set heads=2 --set intermediate=64 --set batch=16)
"$kiln" init "$model" "${sets[@]}" --seed 1 -o "$work/w0.safetensors" 2>/dev/null
"$kiln" train "$model" "${sets[@]}" --weights "$work/w0.safetensors" --seed 1 --steps 120 \
  --lr 2e-3 --threads 2 --data "$work/world/vqa-train.safetensors" -o "$work/w.safetensors" 2>"$work/log" ||
  { cat "$work/log"; exit 1; }
acc() {
  "$kiln" eval "$model" "${sets[@]}" --weights "$1" --threads 2 \
    --data "$work/world/vqa-val.safetensors" 2>/dev/null | sed -n 's/^accuracy: //p'
}
before=$(acc "$work/w0.safetensors")
after=$(acc "$work/w.safetensors")
chance=$("$py" - "$here/parity" "$work/world/vqa-val.safetensors" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import safetensors_io as s
best = np.asarray(s.read(sys.argv[2])["labels"]).argmax(1)
print(np.bincount(best).max() / len(best))
PY
)
echo "validation accuracy: untrained $before, trained $after; chance (best constant answer) $chance"
awk -v a="$after" -v b="$before" -v c="$chance" 'BEGIN { exit !(a > c + 0.05 && a > b + 0.05) }' ||
  { echo "FAIL: not clearly above chance"; tail -5 "$work/log"; exit 1; }
echo "ok    vqa accuracy rises above chance"
