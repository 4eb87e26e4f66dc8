#!/usr/bin/env bash
# Training memory (docs/training.md, "Memory"): the plan of a training step pins no packed
# weights (packed in the run, into the arena: pinned are the gradients alone); and
# --recompute layers (activation checkpointing) gives the same gradients and the same
# trained weights bit for bit on the JIT and the reference, in a smaller arena.
# usage: tests/train_memory.sh KILN_BINARY
set -euo pipefail
source "$(dirname "$0")/lib.sh"
model="$root/models/visualbert-pretrain.json"
field() { awk -v k="$1:" '$1 == k { print $2 }' <<<"$2"; }

pins_gradients_only() {
  local out params pinned
  out=$("$kiln" check "$model" "${tiny[@]}" --grad --memory)
  params=$(field parameters "$out"); pinned=$(field pinned_bytes "$out")
  echo "parameters $params pinned_bytes $pinned"
  # The gradients (4 bytes a value, 64-byte aligned, a few small pinned outputs); packed
  # weights would add about 8 bytes a value (the forward's and the backward's copies).
  ((pinned >= 4 * params && pinned < 5 * params))
}
check "check --grad --memory: a training step pins the gradients, no packed weights" pins_gradients_only
# Recomputation: dropout on, so that the recomputed layers must draw the forward's masks.
sets=("${tiny[@]}" --set dropout=0.1)
"$kiln" init "$model" -o "$work/w.safetensors" --seed 3 "${sets[@]}" 2>/dev/null
"$py" "$here/parity/make_case.py" --variant pretrain --seed 5 -o "$work/in.safetensors" "${sets[@]}" >/dev/null
"$py" "$here/parity/make_case.py" --variant pretrain --seed 6 -o "$work/data.safetensors" "${sets[@]/batch=2/batch=8}" >/dev/null

same_gradients() {  # backend
  local g=("$kiln" grad "$model" --weights "$work/w.safetensors" --inputs "$work/in.safetensors" --seed 4
           --threads 2 --backend "$1" "${sets[@]}")
  "${g[@]}" -o "$work/g.safetensors"
  "${g[@]}" --recompute layers -o "$work/gr.safetensors"
  cmp "$work/g.safetensors" "$work/gr.safetensors"
}
check "grad --recompute layers: the same gradients, bitwise (jit)" same_gradients jit
check "grad --recompute layers: the same gradients, bitwise (ref)" same_gradients ref

same_training() {
  local t=("$kiln" train "$model" --weights "$work/w.safetensors" --data "$work/data.safetensors" --seed 1
           --threads 2 --steps 3 --lr 1e-2 --checkpoint-every 3 "${sets[@]}")
  "${t[@]}" -o "$work/t.safetensors" 2>/dev/null
  "${t[@]}" --recompute layers -o "$work/tr.safetensors" 2>/dev/null
  cmp "$work/t.step-3.safetensors" "$work/tr.step-3.safetensors"
}
check "train --recompute layers: 3 steps, the same checkpoint, bitwise" same_training

smaller_arena() {  # the layers' activations dominate at 4 layers, 48 tokens
  local big=("${tiny[@]}" --set layers=4 --set text_len=40 --set regions=8 --set max_positions=48)
  local a r
  a=$(field arena_bytes "$("$kiln" check "$model" "${big[@]}" --grad --memory)")
  r=$(field arena_bytes "$("$kiln" check "$model" "${big[@]}" --grad --memory --recompute layers)")
  echo "arena $a, with --recompute layers $r"
  ((r * 10 < a * 8))
}
check "check --grad --memory --recompute layers: the arena shrinks by over 20%" smaller_arena
check "--recompute takes only layers (exit 2)" refused 2 'takes "layers"' \
  "$kiln" grad "$model" --recompute blocks --weights "$work/w.safetensors" --inputs "$work/in.safetensors" -o "$work/x"

echo "train_memory: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
