#!/usr/bin/env bash
# `kiln train` on all six VisualBERT model files at a tiny configuration (a 1-layer model,
# 8 examples, batch 2, 4 AdamW steps, dropout on): each run succeeds and writes every
# parameter, finite, with the ones the loss reaches changed; and `kiln bench --train`
# prints compile_ms and median_ms. (`kiln grad --backend jit` on the four files is held to
# PyTorch in tests/parity/grad.sh.)
# usage: tests/train_models.sh KILN_BINARY
set -euo pipefail
source "$(dirname "$0")/lib.sh"
tiny=(--set layers=1 --set hidden=16 --set heads=2 --set intermediate=32 --set vocab=30
      --set visual_dim=12 --set text_len=5 --set regions=4 --set max_positions=8)

trains() {  # trains VARIANT
  local v=$1 d="$work/$1" model="$root/models/visualbert-$1.json" extra=()
  [ "${v%-late}" = nlvr2 ] || extra=(--set num_labels=5)
  mkdir -p "$d"
  "$kiln" init "$model" -o "$d/w.safetensors" --seed 3 "${tiny[@]}" "${extra[@]}" || return 1
  "$py" "$here/parity/make_case.py" --variant "$v" --seed 5 -o "$d/data.safetensors" \
    "${tiny[@]}" "${extra[@]}" --set batch=8 >/dev/null || return 1
  "$kiln" train "$model" --weights "$d/w.safetensors" --data "$d/data.safetensors" --steps 4 \
    --lr 1e-2 --threads 2 "${tiny[@]}" "${extra[@]}" --set batch=2 -o "$d/out.safetensors" || return 1
  "$py" - "$here/parity" "$d/w.safetensors" "$d/out.safetensors" <<'PY'
import sys, numpy as np
sys.path.insert(0, sys.argv[1]); import safetensors_io as s
w, o = s.read(sys.argv[2]), s.read(sys.argv[3])
assert sorted(w) == sorted(o), "parameters differ: %s" % (set(w) ^ set(o))
assert all(np.all(np.isfinite(o[k])) for k in o), "non-finite weights"
changed = [k for k in o if not np.array_equal(w[k], o[k])]
print("%d of %d parameters changed" % (len(changed), len(o)))
assert "visual_bert.embeddings.word_embeddings.weight" in changed
assert len(changed) >= len(o) // 2
PY
}
for v in vqa pretrain vqa-late nlvr2 nlvr2-late pretrain-late; do
  check "train: 4 steps of $v at a tiny config" trains "$v"
done

bench_train() {
  local out
  out=$("$kiln" bench "$root/models/visualbert-nlvr2.json" --train "${tiny[@]}" --set batch=2 \
        --iters 3 --threads 2) || return 1
  echo "$out"
  grep -Eq '^compile_ms: [0-9.]+$' <<<"$out" && grep -Eq '^median_ms: [0-9.]+$' <<<"$out" &&
    grep -q '^mode: train (adamw)$' <<<"$out"
}
check "bench --train prints compile_ms and median_ms" bench_train
bench_inputs() {
  local rc=0
  "$kiln" bench "$root/models/visualbert-nlvr2.json" --train --inputs x.safetensors "${tiny[@]}" || rc=$?
  echo "exit $rc (want 2)"; [ "$rc" -eq 2 ]
}
check "bench --train with --inputs is exit 2" bench_inputs
echo "train_models: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
