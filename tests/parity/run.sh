#!/usr/bin/env bash
# Parity: kiln (JIT and reference backends) against the independent PyTorch VisualBERT
# (tests/parity/visualbert_torch.py, float64) on the same weights and inputs, for every
# model file at small configurations, or (with --base) VQA, VCR (two choices) and Flickr30K
# at the full base size.
# usage: tests/parity/run.sh KILN_BINARY [--base]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
base=${2:-}
"$py" -c 'import torch, numpy' || { echo "parity: python3-torch and python3-numpy are needed (apt-get install python3-torch)"; exit 1; }

tiny=(--set layers=2 --set hidden=32 --set heads=4 --set intermediate=64 --set vocab=50
      --set visual_dim=24 --set text_len=6 --set regions=5 --set batch=2 --set max_positions=16)
passed=0 failed=0
check() {  # name, variant, model, extra make_case flags, then --set list
  local name=$1 variant=$2 model=$3 caseflags=$4; shift 4
  local d="$work/$name"; mkdir -p "$d"
  if "$kiln" init "$root/models/$model" -o "$d/w.safetensors" --seed 7 "$@" 2>"$d/log" &&
     "$py" "$here/make_case.py" --variant "$variant" --seed 11 -o "$d/in.safetensors" $caseflags "$@" >>"$d/log" 2>&1 &&
     "$kiln" run "$root/models/$model" --weights "$d/w.safetensors" --inputs "$d/in.safetensors" \
        -o "$d/jit.safetensors" --backend jit ${kflags[@]+"${kflags[@]}"} "$@" 2>>"$d/log" &&
     "$kiln" run "$root/models/$model" --weights "$d/w.safetensors" --inputs "$d/in.safetensors" \
        -o "$d/ref.safetensors" --backend ref ${kflags[@]+"${kflags[@]}"} "$@" 2>>"$d/log" &&
     "$py" "$here/visualbert_torch.py" --variant "$variant" --weights "$d/w.safetensors" \
        --inputs "$d/in.safetensors" -o "$d/torch.safetensors" ${tflags[@]+"${tflags[@]}"} "$@" 2>>"$d/log" >>"$d/log" &&
     "$py" "$here/compare.py" "$d/jit.safetensors" "$d/torch.safetensors" --rtol 1e-5 \
        --require "$(req "$variant")" >"$d/cmp" 2>&1 &&
     "$py" "$here/compare.py" "$d/ref.safetensors" "$d/torch.safetensors" --rtol 1e-5 \
        --require "$(req "$variant")" >>"$d/cmp" 2>&1 &&
     "$py" "$here/compare.py" "$d/jit.safetensors" "$d/ref.safetensors" --rtol 1e-5 \
        --require "$(req "$variant")" >>"$d/cmp" 2>&1; then
    echo "ok    $name"; passed=$((passed + 1))
  else
    echo "FAIL  $name"; cat "$d/log" "$d/cmp" 2>/dev/null | tail -20; failed=$((failed + 1))
  fi
}
req() {
  case $1 in
    pretrain|pretrain-late) echo prediction_logits,seq_relationship_logits,pooler_output,loss,sentence_image_loss$also ;;
    *) echo logits,pooler_output,loss$also ;;
  esac
}
kflags=() tflags=() also=""  # extra kiln run and PyTorch flags, extra outputs to compare

if [ "$base" = --base ]; then
  check vqa-base vqa visualbert-vqa.json ""
  check vcr-base vcr visualbert-vcr.json "" --set num_choices=2
  check flickr-base flickr visualbert-flickr.json ""
  echo "parity: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
fi
check vqa-tiny vqa visualbert-vqa.json "" "${tiny[@]}" --set num_labels=7
check vqa-tiny-float-masks-i32 vqa visualbert-vqa.json "--float-masks --id-dtype int32" "${tiny[@]}" --set num_labels=7
check pretrain-tiny pretrain visualbert-pretrain.json "" "${tiny[@]}"
check vqa-late-tiny vqa-late visualbert-vqa-late.json "" "${tiny[@]}" --set num_labels=7
check nlvr2-tiny nlvr2 visualbert-nlvr2.json "" "${tiny[@]}"
check nlvr2-late-tiny nlvr2-late visualbert-nlvr2-late.json "" "${tiny[@]}"
check pretrain-late-tiny pretrain-late visualbert-pretrain-late.json "" "${tiny[@]}"
check vcr-tiny vcr visualbert-vcr.json "" "${tiny[@]}"
check vcr-late-tiny-3-choices-float-masks vcr-late visualbert-vcr-late.json "--float-masks" "${tiny[@]}" --set num_choices=3
check flickr-tiny flickr visualbert-flickr.json "" "${tiny[@]}"
check flickr-late-tiny flickr-late visualbert-flickr-late.json "" "${tiny[@]}"
# --output-attentions: each layer's probabilities (late fusion: the text layers', then the
# additional layer's; VCR: one a sequence), against the PyTorch model's softmax outputs.
kflags=(--output-attentions) tflags=(--attentions) also=,attentions.0,attentions.1
check vqa-tiny-attentions vqa visualbert-vqa.json "" "${tiny[@]}" --set num_labels=7
check vcr-tiny-attentions vcr visualbert-vcr.json "" "${tiny[@]}"
also=,attentions.0,attentions.1,attentions.2
check vqa-late-tiny-attentions vqa-late visualbert-vqa-late.json "" "${tiny[@]}" --set num_labels=7
kflags=() tflags=() also=""
check vqa-batch1-3layers vqa visualbert-vqa.json "" --set layers=3 --set hidden=48 --set heads=3 \
  --set intermediate=96 --set vocab=80 --set visual_dim=40 --set text_len=9 --set regions=13 \
  --set num_labels=11
echo "parity: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
