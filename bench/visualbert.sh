#!/usr/bin/env bash
# kiln against PyTorch eager and ONNX Runtime on VisualBERT-base VQA, batch 1 and 8
# (text_len 20, regions 100), same weights, same inputs, same thread count, in one run on
# this machine. Each engine is timed in ROUNDS rounds interleaved (kiln, torch, ort, kiln,
# ...) so a noisy neighbour hits all of them; each round prints a median of ITERS runs, and
# the table gives the median over rounds. ONNX Runtime (onnxruntime-node 1.30, CPU EP,
# graph optimisation level all) runs when bench/ort-install.sh has installed it; its
# logits are checked against kiln's (fp32). PRECISION bf16 runs kiln --precision bf16 and
# PyTorch under CPU autocast bf16 (torch_visualbert.py --autocast bf16); ONNX Runtime stays
# fp32 (the column to compare with).
# usage: bench/visualbert.sh [THREADS] [ITERS] [ROUNDS] [PRECISION]   (fp32 or bf16; needs
#        build/kiln; see README)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$root/build/kiln}
threads=${1:-$(nproc)}
iters=${2:-20}
rounds=${3:-3}
precision=${4:-fp32}
case $precision in
  fp32) autocast=none ;;
  bf16) autocast=bf16 ;;
  *) echo "usage: bench/visualbert.sh [THREADS] [ITERS] [ROUNDS] [fp32|bf16]" >&2; exit 2 ;;
esac
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model=$root/models/visualbert-vqa.json
ortdir=${KILN_ORT_DIR:-$HOME/.cache/kiln-ort}
have_ort=0
[ -f "$ortdir/node_modules/onnxruntime-node/package.json" ] && command -v node >/dev/null && have_ort=1

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { sed -n "s/^$1: //p"; }

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $threads; iters $iters; rounds $rounds"
echo "precision: kiln $precision, torch autocast $autocast, ONNX Runtime fp32"
[ $have_ort = 1 ] || echo "(ONNX Runtime not installed: bash bench/ort-install.sh adds its column)"
"$kiln" init "$model" -o "$work/w.safetensors" --seed 1 2>/dev/null
printf '%-6s %10s %10s %10s %11s %9s %11s\n' batch kiln_ms torch_ms ort_ms torch/kiln ort/kiln compile_ms
for batch in 1 8; do
  in=$work/in$batch.safetensors
  "$py" "$root/tests/parity/make_case.py" --variant vqa --seed 1 --no-labels --set batch=$batch \
    -o "$in" >/dev/null
  if [ $have_ort = 1 ]; then
    "$py" "$root/bench/ort_export.py" --weights "$work/w.safetensors" --inputs "$in" \
      -o "$work/vqa$batch.onnx" >/dev/null 2>&1
    "$kiln" run "$model" --set batch=$batch --weights "$work/w.safetensors" --inputs "$in" \
      -o "$work/out$batch.safetensors" --threads "$threads"
  fi
  : >"$work/k" ; : >"$work/t" ; : >"$work/o"
  for r in $(seq "$rounds"); do
    k=$("$kiln" bench "$model" --set batch=$batch --weights "$work/w.safetensors" \
        --inputs "$in" --threads "$threads" --iters "$iters" --precision "$precision")
    field median_ms <<<"$k" >>"$work/k"; kc=$(field compile_ms <<<"$k")
    # PyTorch picks its best kernels only without the OpenBLAS overrides (this command only).
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" "$root/bench/torch_visualbert.py" \
      --weights "$work/w.safetensors" --inputs "$in" --threads "$threads" --iters "$iters" \
      --autocast "$autocast" |
      field median_ms >>"$work/t"
    if [ $have_ort = 1 ]; then
      o=$(KILN_ORT_DIR=$ortdir node "$root/bench/ort_visualbert.mjs" "$work/vqa$batch.onnx" "$in" \
          --threads "$threads" --iters "$iters" --check "$work/out$batch.safetensors")
      field median_ms <<<"$o" >>"$work/o"
      [ "$r" = 1 ] && echo "  batch $batch: ONNX Runtime vs kiln $(field max_abs_diff_logits <<<"$o")" >&2
    fi
  done
  km=$(median <"$work/k"); tm=$(median <"$work/t")
  om=NA; orat=NA
  if [ $have_ort = 1 ]; then
    om=$(median <"$work/o"); orat=$(awk -v a="$om" -v b="$km" 'BEGIN{printf "%.2f", a/b}')
  fi
  printf '%-6s %10s %10s %10s %11.2f %9s %11s\n' "$batch" "$km" "$tm" "$om" \
    "$(awk -v a="$tm" -v b="$km" 'BEGIN{print a/b}')" "$orat" "$kc"
done
