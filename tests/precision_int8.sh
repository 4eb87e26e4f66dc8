#!/usr/bin/env bash
# --precision int8 end to end on VisualBERT VQA with initial weights (kiln init): the JIT's
# logits against the reference evaluator's int8 rule (the same quantisation and exact
# integer sums: only f32 vs double activations differ, held to SAME_BOUND), and against the
# fp32 graph's double-precision reference (the int8 error itself: max |logit error| /
# max |logit|, held to INT8_BOUND); `kiln compile --precision int8` executables give kiln
# run's bits. Prints the ratios, the measurement docs/precision.md
# quotes (there at VisualBERT-base: --set-free).
# usage: tests/precision_int8.sh KILN_BINARY INT8_BOUND SAME_BOUND [--set NAME=VALUE]...
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bound=${2:?usage: precision_int8.sh KILN_BINARY INT8_BOUND SAME_BOUND [--set NAME=VALUE]...}
same=${3:?usage: precision_int8.sh KILN_BINARY INT8_BOUND SAME_BOUND [--set NAME=VALUE]...}
shift 3
vqa_case "$@"
# The pass marks the linear layers' matmuls (a parameter on the right), no others.
"$kiln" dump "$model" --precision int8 --after precision "$@" >"$work/dump.txt"
grep -q ":q:xw: .* = matmul .* int8=true" "$work/dump.txt"
grep -q ":inter:xw: .* = matmul .* int8=true" "$work/dump.txt"
grep -q "logits:xw: .* = matmul .* int8=true" "$work/dump.txt"
! grep -q "= matmul .* int8=false" "$work/dump.txt"
! grep -q "bf16=true" "$work/dump.txt"
refused 1 "int8 is not yet supported for training" "$kiln" train "$model" --precision int8 \
  --weights "$work/w.safetensors" --data "$work/in.safetensors" -o "$work/w2.safetensors"
refused 1 "int8 is not yet supported for training" "$kiln" bench "$model" --train --precision int8
run() { "$kiln" run "$model" --weights "$work/w.safetensors" --inputs "$work/in.safetensors" "$@"; }
run --backend ref -o "$work/ref32.safetensors" "$@"
run --backend ref --precision int8 -o "$work/ref8.safetensors" "$@"
run --precision int8 -o "$work/jit8.safetensors" --threads 2 "$@"
# AOT: the executable (weights embedded, and given at run time) writes kiln run's bits.
TMPDIR="$work" "$kiln" compile "$model" --precision int8 -o "$work/exe" --weights "$work/w.safetensors" "$@"
"$work/exe" --inputs "$work/in.safetensors" -o "$work/aot8.safetensors" --threads 2
cmp "$work/aot8.safetensors" "$work/jit8.safetensors"
TMPDIR="$work" "$kiln" compile "$model" --precision int8 -o "$work/bare" "$@"
"$work/bare" --inputs "$work/in.safetensors" --weights "$work/w.safetensors" -o "$work/bare8.safetensors" --threads 2
cmp "$work/bare8.safetensors" "$work/jit8.safetensors"
run -o "$work/jit32.safetensors" "$@"
$py - "$work" "$bound" "$same" "$root/tests/parity" <<'PY'
import sys
sys.path.insert(0, sys.argv[4])
import numpy as np
import safetensors_io as st
w, bound, same = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
get = lambda n: st.read(f"{w}/{n}.safetensors")["logits"].astype(np.float64)
ref32, ref8, jit8, jit32 = get("ref32"), get("ref8"), get("jit8"), get("jit32")
big = np.abs(ref32).max()
assert big > 1e-3, big
rel = lambda a, b: float(np.abs(a - b).max() / big)
int8_err, same_rule, fp32_err = rel(jit8, ref32), rel(jit8, ref8), rel(jit32, ref32)
print(f"max|logit| {big:.4g}  int8 jit vs fp64 ref {int8_err:.3e}  int8 jit vs int8 ref "
      f"{same_rule:.3e}  int8 ref vs fp64 ref {rel(ref8, ref32):.3e}  fp32 jit vs fp64 ref {fp32_err:.3e}")
assert same_rule <= same, f"int8 JIT and int8 reference differ: {same_rule:g} > {same:g}"
assert int8_err <= bound, f"int8 error {int8_err:g} above the bound {bound:g}"
assert int8_err > 10 * fp32_err, "int8 shows no int8 rounding: did the precision pass run?"
PY
