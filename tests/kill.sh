#!/usr/bin/env bash
# `kill -9` during checkpoint writing (issue 18): a tiny pre-training run that checkpoints
# every step, so that writing dominates the loop, is killed 20 times at a random moment after
# its first checkpoint. Every checkpoint file left (OUT.step-N.safetensors; a killed write may
# leave only a temporary) is whole: it reads as safetensors and equals, byte for byte, the
# step-N checkpoint of an uninterrupted run; and --resume from the last one ends bitwise where
# the uninterrupted run does.
# usage: tests/kill.sh KILN_BINARY
set -euo pipefail
shopt -s nullglob
kiln=${1:?usage: kill.sh KILN_BINARY}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model="$root/models/visualbert-pretrain.json"
tiny=(--set layers=1 --set hidden=16 --set heads=2 --set intermediate=32 --set vocab=30
      --set visual_dim=12 --set text_len=5 --set regions=4 --set max_positions=8)
steps=40 kills=20
train=("$kiln" train "$model" --weights "$work/w.safetensors" --data "$work/data.safetensors"
       --seed 1 --threads 1 "${tiny[@]}" --set batch=4 --steps "$steps" --lr 1e-2)

"$kiln" init "$model" -o "$work/w.safetensors" --seed 3 "${tiny[@]}" --set batch=4 2>/dev/null
"$py" "$here/parity/make_case.py" --variant pretrain --seed 5 -o "$work/data.safetensors" \
  "${tiny[@]}" --set batch=32 >/dev/null
mkdir "$work/ref"
"${train[@]}" --checkpoint-every 1 -o "$work/ref/c.safetensors" 2>/dev/null

failed=0 hit_write=0
for i in $(seq 1 "$kills"); do
  d="$work/k$i"; mkdir "$d"
  "${train[@]}" --checkpoint-every 1 -o "$d/c.safetensors" 2>/dev/null &
  pid=$!
  until [ -f "$d/c.step-1.safetensors" ] || ! kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
  sleep "0.$(printf "%03d" $((RANDOM % 150)))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  tmps=("$d"/*.tmp.*)
  [ "${#tmps[@]}" -eq 0 ] || hit_write=$((hit_write + 1))
  last=0
  for f in "$d"/c.step-*.safetensors; do
    n=${f##*/c.step-}; n=${n%.safetensors}
    [ "$n" -gt "$last" ] && last=$n
    cmp -s "$f" "$work/ref/c.step-$n.safetensors" || { echo "kill $i: $f differs from the uninterrupted run's"; failed=1; }
  done
  [ "$last" -gt 0 ] || { echo "kill $i: no checkpoint"; failed=1; continue; }
  "$py" -c 'import sys; sys.path.insert(0, sys.argv[1]); import safetensors_io as s; s.read(sys.argv[2])' \
    "$here/parity" "$d/c.step-$last.safetensors" || { echo "kill $i: step $last does not read"; failed=1; }
  if [ ! -f "$d/c.safetensors" ]; then
    "${train[@]}" --resume "$d/c.step-$last.safetensors" -o "$d/c.safetensors" 2>/dev/null
  fi
  cmp "$d/c.safetensors" "$work/ref/c.safetensors" || { echo "kill $i: resumed from step $last differs"; failed=1; }
  echo "kill $i: killed after step $last of $steps; resumed bitwise"
  rm -rf "$d"
done
echo "kill: $kills kills, $hit_write left a temporary (killed while writing), failed=$failed"
[ "$failed" -eq 0 ]
