#!/usr/bin/env bash
# Peak resident memory (/usr/bin/time -v, max RSS) of VisualBERT-base VQA inference, batch 1
# and 8 (text_len 20, regions 100), fp32, on one set of weights and inputs: `kiln bench`,
# `kiln check --memory`'s prediction, an executable from `kiln compile` (weights embedded,
# and given with --weights), PyTorch eager (bench/torch_visualbert.py) and ONNX Runtime
# (bench/ort_visualbert.mjs, when bench/ort-install.sh has installed it); then the
# pre-training step (kiln bench --train, with and without --recompute layers, each beside
# kiln check --memory --train's prediction, and PyTorch eager, bench/torch_train.py) at base
# size, batch 8, regions 100, text 32 and 412. RSS does not depend on the machine's load,
# so this may run beside other jobs (slowly).
# usage: bench/memory.sh [THREADS]                      (needs build/kiln; see README)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$root/build/kiln} threads=${1:-2} py=/usr/bin/python3 model=$root/models/visualbert-vqa.json
ortdir=${KILN_ORT_DIR:-$HOME/.cache/kiln-ort}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rss() { "$@" >/dev/null 2>"$work/time" || { cat "$work/time" >&2; return 1; }
        awk '/Maximum resident/ { printf "%.3f", $NF / 1048576 }' "$work/time"; }  # GiB
"$kiln" init "$model" -o "$work/w.safetensors" --seed 1 2>/dev/null
printf '%-6s %9s %9s %9s %9s %9s %9s\n' batch kiln predicted aot aot_w torch ort
for batch in 1 8; do
  in=$work/in$batch.safetensors
  "$py" "$root/tests/parity/make_case.py" --variant vqa --seed 1 --no-labels --set batch=$batch -o "$in" >/dev/null
  "$kiln" bench "$model" --set batch=$batch --iters 1 >/dev/null  # the compile cache warm
  k=$(rss /usr/bin/time -v "$kiln" bench "$model" --set batch=$batch --weights "$work/w.safetensors" \
      --inputs "$in" --threads "$threads" --iters 3)
  p=$("$kiln" check "$model" --set batch=$batch --memory |
      awk '$1 == "predicted_peak_rss_bytes:" { printf "%.3f", $2 / 1073741824 }')
  "$kiln" compile "$model" --set batch=$batch --weights "$work/w.safetensors" -o "$work/exe$batch" 2>/dev/null
  a=$(rss /usr/bin/time -v "$work/exe$batch" --inputs "$in" -o "$work/o.safetensors" --threads "$threads")
  aw=$(rss /usr/bin/time -v "$work/exe$batch" --weights "$work/w.safetensors" --inputs "$in" \
       -o "$work/o.safetensors" --threads "$threads")
  t=$(rss /usr/bin/time -v env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" "$root/bench/torch_visualbert.py" \
      --weights "$work/w.safetensors" --inputs "$in" --threads "$threads" --iters 3)
  o=NA
  if [ -f "$ortdir/node_modules/onnxruntime-node/package.json" ] && command -v node >/dev/null; then
    "$py" "$root/bench/ort_export.py" --weights "$work/w.safetensors" --inputs "$in" -o "$work/vqa.onnx" >/dev/null 2>&1
    o=$(KILN_ORT_DIR=$ortdir rss /usr/bin/time -v node "$root/bench/ort_visualbert.mjs" "$work/vqa.onnx" "$in" \
        --threads "$threads" --iters 3)
  fi
  printf '%-6s %9s %9s %9s %9s %9s %9s\n' "$batch" "$k" "$p" "$a" "$aw" "$t" "$o"
done
echo "(GiB, max RSS of the whole process; predicted: kiln check --memory)"

# Training: one timed step after the warm-up (--iters 1), the same weights for both.
pre=$root/models/visualbert-pretrain.json
tsets=(--set hidden=768 --set layers=12 --set heads=12 --set intermediate=3072 --set batch=8
       --set regions=100 --set dropout=0)
"$kiln" init "$pre" "${tsets[@]}" -o "$work/p.safetensors" --seed 1 2>/dev/null
predict() { "$kiln" check "$pre" --memory --train "$@" |
            awk '$1 == "predicted_peak_rss_bytes:" { printf "%.3f", $2 / 1073741824 }'; }
printf '%-6s %9s %9s %9s %9s %9s\n' text kiln predicted recompute predicted torch
for text in 32 412; do
  p=$(predict "${tsets[@]}" --set text_len=$text)
  pr=$(predict "${tsets[@]}" --set text_len=$text --recompute layers)
  k=$(rss /usr/bin/time -v "$kiln" bench "$pre" --train "${tsets[@]}" --set text_len=$text \
      --weights "$work/p.safetensors" --threads "$threads" --iters 1)
  r=$(rss /usr/bin/time -v "$kiln" bench "$pre" --train "${tsets[@]}" --set text_len=$text \
      --weights "$work/p.safetensors" --threads "$threads" --iters 1 --recompute layers)
  t=$(rss /usr/bin/time -v env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" "$root/bench/torch_train.py" \
      --weights "$work/p.safetensors" "${tsets[@]}" --set text_len=$text --threads "$threads" --iters 1)
  printf '%-6s %9s %9s %9s %9s %9s\n' "$text" "$k" "$p" "$r" "$pr" "$t"
done
echo "(GiB: pre-training step, base, batch 8, regions 100; recompute: kiln --recompute layers;"
echo " predicted: kiln check --memory --train)"
