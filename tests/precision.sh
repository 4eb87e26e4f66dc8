#!/usr/bin/env bash
# --precision bf16 end to end on VisualBERT VQA with initial weights (kiln init): the JIT's
# logits against the reference evaluator's, both rounding GEMM operands to bf16 (tight: only
# f32 vs double summation differs), and against the fp32 graph's double-precision reference
# (the bf16 error itself: max |logit error| / max |logit|, held to BF16_BOUND). Prints both
# ratios, the measurement docs/precision.md quotes (there at VisualBERT-base: --set-free).
# usage: tests/precision.sh KILN_BINARY BF16_BOUND [--set NAME=VALUE]...
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bound=${2:?usage: precision.sh KILN_BINARY BF16_BOUND [--set NAME=VALUE]...}
shift 2
vqa_case "$@"
# The pass marks every matmul; what is not done yet is refused (exit 1), a bad value is exit 2.
"$kiln" dump "$model" --precision bf16 --after precision "$@" >"$work/dump.txt"
grep -q "= matmul .* bf16=true" "$work/dump.txt"
! grep -q "= matmul .* bf16=false" "$work/dump.txt"
"$kiln" dump "$model" --after precision "$@" >"$work/dump32.txt"  # (no pipe: grep -q may close it)
grep -q "= matmul .* bf16=false" "$work/dump32.txt"
# ... and every fused attention (Q.K^T and P.V in bf16), not its f32 backward
grep -q "= attention .* bf16=true" "$work/dump.txt"
! grep -q "= attention .* bf16=false" "$work/dump.txt"
grep -q "= attention .* bf16=false" "$work/dump32.txt"
refused 2 "must be fp32, bf16 or int8" "$kiln" dump "$model" --precision fp16
run() { "$kiln" run "$model" --weights "$work/w.safetensors" --inputs "$work/in.safetensors" "$@"; }
run --backend ref -o "$work/ref32.safetensors" "$@"
run --backend ref --precision bf16 -o "$work/ref16.safetensors" "$@"
run --precision bf16 -o "$work/jit16.safetensors" "$@"
run -o "$work/jit32.safetensors" "$@"
$py - "$work" "$bound" "$root/tests/parity" <<'PY'
import sys
sys.path.insert(0, sys.argv[3])
import numpy as np
import safetensors_io as st
w, bound = sys.argv[1], float(sys.argv[2])
get = lambda n: st.read(f"{w}/{n}.safetensors")["logits"].astype(np.float64)
ref32, ref16, jit16, jit32 = get("ref32"), get("ref16"), get("jit16"), get("jit32")
big = np.abs(ref32).max()
assert big > 1e-3, big
rel = lambda a, b: float(np.abs(a - b).max() / big)
bf16_err, same_rule, fp32_err = rel(jit16, ref32), rel(jit16, ref16), rel(jit32, ref32)
print(f"max|logit| {big:.4g}  bf16 jit vs fp64 ref {bf16_err:.3e}  bf16 jit vs bf16 ref "
      f"{same_rule:.3e}  fp32 jit vs fp64 ref {fp32_err:.3e}")
assert same_rule <= 1e-4, f"bf16 JIT and bf16 reference differ: {same_rule:g}"
assert bf16_err <= bound, f"bf16 error {bf16_err:g} above the bound {bound:g}"
assert bf16_err > 10 * fp32_err, "bf16 shows no bf16 rounding: did the precision pass run?"
PY
