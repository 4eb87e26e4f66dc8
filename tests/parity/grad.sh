#!/usr/bin/env bash
# Gradient parity: `kiln grad` (reverse-mode autodiff) against PyTorch autograd on the
# independent VisualBERT (tests/parity/grad_torch.py, float64), for the model files at
# a tiny configuration with dropout off, on both backends (ref, jit); and with dropout 0.1,
# `kiln grad --backend jit` against `--backend ref` at the same seed (the same masks).
# usage: tests/parity/grad.sh KILN_BINARY
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
tiny=(--set layers=2 --set hidden=16 --set heads=2 --set intermediate=32 --set vocab=30
      --set visual_dim=12 --set text_len=5 --set regions=4 --set batch=2 --set max_positions=8
      --set num_labels=5)
nodrop=(--set dropout=0)
drop=(--set dropout=0.1)
passed=0 failed=0
for variant in vqa pretrain vqa-late nlvr2 vcr vcr-late flickr flickr-late; do
  d="$work/$variant"; mkdir -p "$d"
  model="$root/models/visualbert-$variant.json"
  extra=(); [ "$variant" = nlvr2 ] && extra=(--set num_labels=2)
  if "$kiln" init "$model" -o "$d/w.safetensors" --seed 3 "${tiny[@]}" "${nodrop[@]}" "${extra[@]}" 2>"$d/log" &&
     "$py" "$here/make_case.py" --variant "$variant" --seed 5 -o "$d/in.safetensors" "${tiny[@]}" "${nodrop[@]}" "${extra[@]}" >>"$d/log" 2>&1 &&
     "$kiln" grad "$model" --weights "$d/w.safetensors" --inputs "$d/in.safetensors" \
        -o "$d/kiln.safetensors" "${tiny[@]}" "${nodrop[@]}" "${extra[@]}" 2>>"$d/log" &&
     "$py" "$here/grad_torch.py" --variant "$variant" --weights "$d/w.safetensors" \
        --inputs "$d/in.safetensors" -o "$d/torch.safetensors" "${tiny[@]}" "${nodrop[@]}" "${extra[@]}" >>"$d/log" 2>&1 &&
     # atol: gradients that are exactly zero in exact arithmetic (key biases) are ~1e-21 noise
     "$py" "$here/compare.py" "$d/kiln.safetensors" "$d/torch.safetensors" --rtol 1e-5 --atol 1e-9 \
        --require loss,visual_bert.embeddings.word_embeddings.weight >"$d/cmp" 2>&1; then
    echo "ok    grad $variant"; passed=$((passed + 1))
  else
    echo "FAIL  grad $variant"; tail -20 "$d/log" "$d/cmp" 2>/dev/null; failed=$((failed + 1))
  fi
  # The JIT in f32, dropout off: against PyTorch at f32 tolerances.
  if "$kiln" grad "$model" --backend jit --weights "$d/w.safetensors" --inputs "$d/in.safetensors" \
        -o "$d/jit.safetensors" "${tiny[@]}" "${nodrop[@]}" "${extra[@]}" 2>>"$d/log" &&
     "$py" "$here/compare.py" "$d/jit.safetensors" "$d/torch.safetensors" --rtol 1e-4 --atol 1e-7 \
        --require loss,visual_bert.embeddings.word_embeddings.weight >"$d/cmp-jit" 2>&1; then
    echo "ok    grad $variant --backend jit"; passed=$((passed + 1))
  else
    echo "FAIL  grad $variant --backend jit"; tail -20 "$d/log" "$d/cmp-jit" 2>/dev/null; failed=$((failed + 1))
  fi
  # Dropout 0.1 at seed 7: the JIT draws the reference's masks.
  if "$kiln" grad "$model" --backend ref --seed 7 --weights "$d/w.safetensors" --inputs "$d/in.safetensors" \
        -o "$d/ref-drop.safetensors" "${tiny[@]}" "${drop[@]}" "${extra[@]}" 2>>"$d/log" &&
     "$kiln" grad "$model" --backend jit --seed 7 --weights "$d/w.safetensors" --inputs "$d/in.safetensors" \
        -o "$d/jit-drop.safetensors" "${tiny[@]}" "${drop[@]}" "${extra[@]}" 2>>"$d/log" &&
     "$py" "$here/compare.py" "$d/jit-drop.safetensors" "$d/ref-drop.safetensors" --rtol 1e-4 --atol 1e-7 \
        --require loss,visual_bert.embeddings.word_embeddings.weight >"$d/cmp-drop" 2>&1; then
    echo "ok    grad $variant --backend jit, dropout 0.1 vs ref"; passed=$((passed + 1))
  else
    echo "FAIL  grad $variant --backend jit, dropout 0.1 vs ref"; tail -20 "$d/log" "$d/cmp-drop" 2>/dev/null
    failed=$((failed + 1))
  fi
done
echo "grad parity: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
