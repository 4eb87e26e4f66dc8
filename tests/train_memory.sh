#!/usr/bin/env bash
# Training memory (docs/training.md, "Memory"): the plan of a training step pins no packed
# weights (packed in the run, into the arena: pinned are the gradients alone).
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
echo "train_memory: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
