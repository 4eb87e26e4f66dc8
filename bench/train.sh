#!/usr/bin/env bash
# One VisualBERT pre-training step (forward, backward, AdamW update) in kiln (`kiln bench
# --train`) against PyTorch eager (bench/torch_train.py) on the same weights, inputs and
# thread count, in one run on this machine; RUNS alternating runs of each, medians of
# their medians, reported as torch/kiln (above 1: kiln is faster). Both without dropout
# (the PyTorch model is the parity oracle's inference graph). --precision bf16: kiln bench
# --train --precision bf16 against PyTorch under CPU autocast bf16 (torch_train.py
# --autocast bf16): mixed precision in both.
# usage: bench/train.sh [THREADS] [ITERS] [RUNS] [--precision fp32|bf16] [--set NAME=VALUE]...
#   default config: small (hidden 128, 2 layers, batch 8, text_len 32, regions 100);
#   base size: bench/train.sh 2 10 3 --set hidden=768 --set layers=12 --set heads=12 \
#              --set intermediate=3072   (several GB; not on a shared machine)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$root/build/kiln}
threads=${1:-2}; iters=${2:-10}; runs=${3:-3}
shift $(($# < 3 ? $# : 3))
precision=fp32
rest=()
while [ $# -gt 0 ]; do
  case $1 in
    --precision) precision=${2:-}; shift 2 || { echo "bench/train.sh: --precision needs a value" >&2; exit 2; } ;;
    *) rest+=("$1"); shift ;;
  esac
done
case $precision in
  fp32) autocast=none ;;
  bf16) autocast=bf16 ;;
  *) echo "bench/train.sh: --precision is fp32 or bf16, not '$precision'" >&2; exit 2 ;;
esac
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model=$root/models/visualbert-pretrain.json
sets=(--set batch=8 --set text_len=32 --set regions=100 --set hidden=128 --set layers=2
      --set heads=2 --set intermediate=512 --set dropout=0 ${rest[@]+"${rest[@]}"})

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $threads;" \
     "iters $iters; runs $runs; precision $precision (torch autocast $autocast); ${sets[*]}"
"$kiln" init "$model" -o "$work/w.safetensors" --seed 1 "${sets[@]}" 2>/dev/null
median() { sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
: >"$work/kiln"; : >"$work/torch"
for r in $(seq "$runs"); do
  k=$("$kiln" bench "$model" --train "${sets[@]}" --weights "$work/w.safetensors" \
      --threads "$threads" --iters "$iters" --precision "$precision")
  sed -n 's/^median_ms: //p' <<<"$k" >>"$work/kiln"
  kc=$(sed -n 's/^compile_ms: //p' <<<"$k")
  # PyTorch picks its best kernels only without the OpenBLAS overrides (this command only).
  t=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" "$root/bench/torch_train.py" \
      --weights "$work/w.safetensors" "${sets[@]}" --threads "$threads" --iters "$iters" \
      --autocast "$autocast")
  sed -n 's/^median_ms: //p' <<<"$t" >>"$work/torch"
  echo "run $r: kiln $(tail -1 "$work/kiln") ms (compile $kc ms), torch $(tail -1 "$work/torch") ms"
done
km=$(median <"$work/kiln"); tm=$(median <"$work/torch")
printf '%-12s %12s %12s %12s\n' step kiln_ms torch_ms torch/kiln
printf '%-12s %12s %12s %12.2f\n' train "$km" "$tm" "$(awk -v a="$tm" -v b="$km" 'BEGIN{print a/b}')"
