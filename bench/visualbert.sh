#!/usr/bin/env bash
# kiln against PyTorch eager on VisualBERT-base VQA, batch 1 and 8 (text_len 20, regions
# 100), same weights, same inputs, same thread count, in one run on this machine.
# usage: bench/visualbert.sh [THREADS] [ITERS]     (needs build/kiln; see README)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$root/build/kiln}
threads=${1:-$(nproc)}
iters=${2:-20}
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model=$root/models/visualbert-vqa.json

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $threads; iters $iters"
"$kiln" init "$model" -o "$work/w.safetensors" --seed 1 2>/dev/null
printf '%-8s %14s %14s %12s %14s\n' batch kiln_ms torch_ms torch/kiln kiln_compile_ms
for batch in 1 8; do
  "$py" "$root/tests/parity/make_case.py" --variant vqa --seed 1 --no-labels --set batch=$batch \
    -o "$work/in$batch.safetensors" >/dev/null
  k=$("$kiln" bench "$model" --set batch=$batch --weights "$work/w.safetensors" \
      --inputs "$work/in$batch.safetensors" --threads "$threads" --iters "$iters")
  # PyTorch picks its best kernels only without the OpenBLAS overrides (this command only).
  t=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" "$root/bench/torch_visualbert.py" \
      --weights "$work/w.safetensors" --inputs "$work/in$batch.safetensors" \
      --threads "$threads" --iters "$iters")
  km=$(sed -n 's/^median_ms: //p' <<<"$k"); kc=$(sed -n 's/^compile_ms: //p' <<<"$k")
  tm=$(sed -n 's/^median_ms: //p' <<<"$t")
  printf '%-8s %14s %14s %12.2f %14s\n' "$batch" "$km" "$tm" "$(awk -v a="$tm" -v b="$km" 'BEGIN{print a/b}')" "$kc"
done
