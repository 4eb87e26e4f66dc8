#!/usr/bin/env bash
# --precision bf16 for gradients and training (mixed precision: every forward and backward
# matmul multiplies bf16 operands with f32 sums; master weights, AdamW state, gradient sums,
# LayerNorm, softmax, GELU and the loss stay f32) on a small VisualBERT VQA, dropout off:
# - the precision pass marks the backward matmuls too (dX = dY.W^T, dW = X^T.dY), and the
#   fused attention's backward (attention_grad);
# - kiln grad's bf16 JIT gradients against the reference evaluator's bf16 rule (tight: the
#   same roundings, f32 vs double sums) and against the fp32 graph's double reference (the
#   bf16 error itself, held to BF16_BOUND; and more than 10x fp32's, so the pass ran);
# - 20 AdamW steps of kiln train in bf16 track fp32's loss.
# Errors are per parameter: max |error| / max |fp64 gradient| of that parameter (those the
# loss barely reaches, such as attention key biases, whose gradient is zero but for
# rounding, are left out). Prints the ratios docs/precision.md quotes.
# usage: tests/precision_train.sh KILN_BINARY BF16_BOUND [--set NAME=VALUE]...
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bound=${2:?usage: precision_train.sh KILN_BINARY BF16_BOUND [--set NAME=VALUE]...}
shift 2
model="$root/models/visualbert-vqa.json"
sets=(--set dropout=0 "$@")
"$kiln" init "$model" -o "$work/w.safetensors" --seed 3 "${sets[@]}"
plain=()
for a in "${sets[@]}"; do [[ $a == --set ]] || plain+=(--set "$a"); done
$py "$root/tests/parity/make_case.py" --variant vqa --seed 5 -o "$work/in.safetensors" "${plain[@]}"
$py "$root/tests/parity/make_case.py" --variant vqa --seed 6 -o "$work/data.safetensors" \
  "${plain[@]}" --set batch=16 >/dev/null

"$kiln" dump "$model" --grad --precision bf16 --after precision "${sets[@]}" >"$work/dump.txt"
n_mm=$(grep -c "= matmul " "$work/dump.txt")
n_bf=$(grep -c "= matmul .* bf16=true" "$work/dump.txt")
"$kiln" dump "$model" --after precision --precision bf16 "${sets[@]}" >"$work/fwd.txt"
n_fwd=$(grep -c "= matmul " "$work/fwd.txt")
echo "matmuls: $n_fwd forward, $n_mm with the backward, $n_bf bf16"
[[ $n_bf == "$n_mm" && $n_mm -ge $((2 * n_fwd)) ]] || fail "the backward matmuls are not all bf16"
# the fused attention's backward too (fp32: bf16=false)
grep -q "= attention_grad .* bf16=true" "$work/dump.txt" || fail "no bf16 attention_grad"
! grep -q "= attention_grad .* bf16=false" "$work/dump.txt" || fail "an attention_grad stays f32 in bf16"
"$kiln" dump "$model" --grad --after precision "${sets[@]}" >"$work/dump32.txt"
grep -q "= attention_grad .* bf16=false" "$work/dump32.txt" || fail "fp32 attention_grad is not bf16=false"
! grep -q "bf16=true" "$work/dump32.txt" || fail "bf16 attributes in an fp32 graph"

for p in fp32 bf16; do
  for b in ref jit; do
    "$kiln" grad "$model" --weights "$work/w.safetensors" --inputs "$work/in.safetensors" \
      -o "$work/g_${p}_$b.safetensors" --backend $b --precision $p "${sets[@]}"
  done
done
$py - "$work" "$bound" "$root/tests/parity" <<'PY'
import sys
sys.path.insert(0, sys.argv[3])
import numpy as np
import safetensors_io as st
w, bound = sys.argv[1], float(sys.argv[2])
g = {k: st.read(f"{w}/g_{k}.safetensors") for k in ("fp32_ref", "fp32_jit", "bf16_ref", "bf16_jit")}
ref = {n: v.astype(np.float64) for n, v in g["fp32_ref"].items() if n != "loss"}
top = max(np.abs(v).max() for v in ref.values())
names = [n for n, v in ref.items() if np.abs(v).max() > 1e-6 * top]
assert len(names) > 30, names
def err(a, b):
    return max(float(np.abs(g[a][n].astype(np.float64) - g[b][n]).max() / np.abs(ref[n]).max())
               for n in names)
bf16_err, same_rule, fp32_err = err("bf16_jit", "fp32_ref"), err("bf16_jit", "bf16_ref"), err("fp32_jit", "fp32_ref")
print(f"gradients of {len(names)} parameters: bf16 jit vs fp64 ref {bf16_err:.3e}  bf16 jit vs "
      f"bf16 ref {same_rule:.3e}  fp32 jit vs fp64 ref {fp32_err:.3e}")
assert same_rule <= 1e-5, f"bf16 JIT and bf16 reference gradients differ: {same_rule:g}"
assert bf16_err <= bound, f"bf16 gradient error {bf16_err:g} above the bound {bound:g}"
assert bf16_err > 10 * fp32_err, "bf16 gradients show no bf16 rounding: did the precision pass run?"
PY

for p in fp32 bf16; do
  "$kiln" train "$model" --weights "$work/w.safetensors" --data "$work/data.safetensors" \
    -o "$work/t_$p.safetensors" --steps 20 --lr 1e-3 --seed 1 --threads 2 --precision $p \
    "${sets[@]}" --set batch=4 2>"$work/train_$p.log"
done
$py - "$work" <<'PY'
import re, sys
w = sys.argv[1]
loss = {p: [float(x) for x in re.findall(r"^step \d+/20 loss (\S+)", open(f"{w}/train_{p}.log").read(), re.M)]
        for p in ("fp32", "bf16")}
assert len(loss["fp32"]) == len(loss["bf16"]) >= 3, loss
rel = max(abs(a - b) / abs(a) for a, b in zip(loss["fp32"], loss["bf16"]))
print(f"training losses fp32 {loss['fp32']} bf16 {loss['bf16']}: max relative difference {rel:.2e}")
assert loss["fp32"][-1] < loss["fp32"][0] and loss["bf16"][-1] < loss["bf16"][0], "no learning"
assert 0 < rel <= 1e-3, f"bf16 training's loss is {rel:g} from fp32's"
PY
