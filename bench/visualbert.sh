#!/usr/bin/env bash
# kiln against PyTorch eager and ONNX Runtime on VisualBERT-base VQA, batch 1 and 8
# (text_len 20, regions 100, or the shapes given), same weights, same inputs, same thread
# count, in one run on this machine. Each engine is timed in ROUNDS rounds interleaved (kiln, torch, ort, kiln,
# ...) so a noisy neighbour hits all of them; each round prints a median of ITERS runs, and
# the table gives the median over rounds. ONNX Runtime (onnxruntime-node 1.30, CPU EP,
# graph optimisation level all) runs when bench/ort-install.sh has installed it; its
# logits are checked against kiln's (fp32). PRECISION bf16 runs kiln --precision bf16 and
# PyTorch under CPU autocast bf16 (torch_visualbert.py --autocast bf16); ONNX Runtime stays
# fp32 (the column to compare with).
# usage: bench/visualbert.sh [--shapes "TEXTxREGIONS ..."] [--batches "B ..."] [--no-torch]
#                            [THREADS] [ITERS] [ROUNDS] [PRECISION]   (needs build/kiln)
#   --shapes: text lengths and region counts to time (default "20x100"); the sequence-length
#             table of docs/benchmarks.md is --shapes "20x100 128x100 412x100 20x10 20x36"
#   --batches: batch sizes (default "1 8"); --no-torch: kiln and ONNX Runtime only
#   PRECISION: fp32 (default) or bf16
# The table gives each engine's median per batch and per example (ms/ex).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$root/build/kiln}
usage="usage: $0 [--shapes \"TEXTxREGIONS ...\"] [--batches \"B ...\"] [--no-torch] [THREADS] [ITERS] [ROUNDS] [fp32|bf16]"
shapes="20x100" batches="1 8" torch=1 pos=()
while [ $# -gt 0 ]; do
  case $1 in
    --shapes) shapes=${2:?--shapes needs a value}; shift ;;
    --batches) batches=${2:?--batches needs a value}; shift ;;
    --no-torch) torch=0 ;;
    -*) echo "$usage" >&2; exit 2 ;;
    *) pos+=("$1") ;;
  esac
  shift
done
for s in $shapes; do
  [[ $s =~ ^[0-9]+x[0-9]+$ ]] || { echo "$0: --shapes: '$s' is not TEXTxREGIONS (e.g. 20x100)" >&2; exit 2; }
done
threads=${pos[0]:-$(nproc)}
iters=${pos[1]:-20}
rounds=${pos[2]:-3}
precision=${pos[3]:-fp32}
case $precision in
  fp32) autocast=none ;;
  bf16) autocast=bf16 ;;
  *) echo "$usage" >&2; exit 2 ;;
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
printf '%-6s %5s %7s %10s %10s %10s %10s %10s %11s %9s %11s\n' batch text regions kiln_ms torch_ms \
  ort_ms kiln_ms/ex ort_ms/ex torch/kiln ort/kiln compile_ms
ratio() { if [ "$1" = NA ] || [ "$2" = NA ]; then echo NA; else awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; fi; }
per() { if [ "$1" = NA ]; then echo NA; else awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; fi; }
for shape in $shapes; do
 text=${shape%x*} regions=${shape#*x}
 sets=(--set text_len="$text" --set regions="$regions")
 for batch in $batches; do
  tag=$batch-$shape in=$work/in$tag.safetensors
  "$py" "$root/tests/parity/make_case.py" --variant vqa --seed 1 --no-labels --set batch=$batch \
    --set text_len="$text" --set regions="$regions" -o "$in" >/dev/null
  if [ $have_ort = 1 ]; then
    "$py" "$root/bench/ort_export.py" --weights "$work/w.safetensors" --inputs "$in" \
      -o "$work/vqa$tag.onnx" >/dev/null 2>&1
    "$kiln" run "$model" --set batch=$batch "${sets[@]}" --weights "$work/w.safetensors" \
      --inputs "$in" -o "$work/out$tag.safetensors" --threads "$threads"
  fi
  : >"$work/k" ; : >"$work/t" ; : >"$work/o"
  for r in $(seq "$rounds"); do
    k=$("$kiln" bench "$model" --set batch=$batch "${sets[@]}" --weights "$work/w.safetensors" \
        --inputs "$in" --threads "$threads" --iters "$iters" --precision "$precision")
    field median_ms <<<"$k" >>"$work/k"; kc=$(field compile_ms <<<"$k")
    if [ $torch = 1 ]; then
      # PyTorch picks its best kernels only without the OpenBLAS overrides (this command only).
      env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" "$root/bench/torch_visualbert.py" \
        --weights "$work/w.safetensors" --inputs "$in" --threads "$threads" --iters "$iters" \
        --autocast "$autocast" |
        field median_ms >>"$work/t"
    fi
    if [ $have_ort = 1 ]; then
      o=$(KILN_ORT_DIR=$ortdir node "$root/bench/ort_visualbert.mjs" "$work/vqa$tag.onnx" "$in" \
          --threads "$threads" --iters "$iters" --check "$work/out$tag.safetensors")
      field median_ms <<<"$o" >>"$work/o"
      [ "$r" = 1 ] && echo "  batch $batch, text $text, regions $regions: ONNX Runtime vs kiln $(field max_abs_diff_logits <<<"$o")" >&2
    fi
  done
  km=$(median <"$work/k"); tm=NA; om=NA
  [ $torch = 1 ] && tm=$(median <"$work/t")
  [ $have_ort = 1 ] && om=$(median <"$work/o")
  printf '%-6s %5s %7s %10s %10s %10s %10s %10s %11s %9s %11s\n' "$batch" "$text" "$regions" \
    "$km" "$tm" "$om" "$(per "$km" "$batch")" "$(per "$om" "$batch")" "$(ratio "$tm" "$km")" \
    "$(ratio "$om" "$km")" "$kc"
 done
done
