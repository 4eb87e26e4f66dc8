#!/usr/bin/env bash
# BF16 weights (docs/precision.md): `kiln init --dtype bf16` writes every float parameter
# as BF16, the f32 initial values rounded to nearest even; every command that reads weights
# (run on both backends and both precisions, grad, eval, train --weights and --init, bench,
# compile with embedded weights and the executable given them at run time) takes a BF16
# file and gives bitwise what it gives for the F32 file of the same (widened) values: the
# conversion bf16 -> f32 on load is exact. F32 weights in the other direction are the
# default everywhere. A bad --dtype is a bad command line (exit 2).
# usage: tests/weights_bf16.sh KILN_BINARY
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export TMPDIR="$work"  # kiln compile's intermediate files
model="$root/models/visualbert-vqa.json"
sets=("${tiny[@]}" --set num_labels=7 --set dropout=0)
plain=()
for a in "${sets[@]}"; do [[ $a == --set ]] || plain+=(--set "$a"); done
"$kiln" init "$model" -o "$work/w32.safetensors" --seed 3 "${sets[@]}"
"$kiln" init "$model" -o "$work/w16.safetensors" --seed 3 --dtype bf16 "${sets[@]}"
"$kiln" init "$model" -o "$work/wdef.safetensors" --seed 3 --dtype f32 "${sets[@]}"
cmp "$work/w32.safetensors" "$work/wdef.safetensors"
$py "$here/parity/make_case.py" --variant vqa --seed 5 -o "$work/in.safetensors" "${plain[@]}" >/dev/null
$py "$here/parity/make_case.py" --variant vqa --seed 6 -o "$work/data.safetensors" "${plain[@]}" \
  --set batch=8 >/dev/null
# The BF16 file: every tensor BF16, each the f32 value rounded to nearest even; its values
# widened to f32 (exactly) as an F32 file, the reference for every command below.
$py - "$here/parity" "$work" <<'PY'
import json, struct, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import safetensors_io as st
w = sys.argv[2]
raw = open(f"{w}/w16.safetensors", "rb").read()
header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
assert dtypes == {"BF16"}, dtypes
w32 = st.read(f"{w}/w32.safetensors")
body = raw[8 + struct.unpack("<Q", raw[:8])[0]:]
up, changed = {}, 0
for name, a in w32.items():
    lo, hi = header[name]["data_offsets"]
    bits = np.frombuffer(body[lo:hi], np.uint16).astype(np.uint32)
    assert bits.size == a.size, name
    x = a.astype(np.float32).ravel().view(np.uint32)
    rne = ((x + 0x7FFF + ((x >> 16) & 1)) >> 16).astype(np.uint32)  # no NaN in initial weights
    assert np.array_equal(bits, rne), f"{name}: not the f32 values rounded to nearest even"
    up[name] = (bits << 16).view(np.float32).reshape(a.shape)
    changed += int((up[name] != a).sum())
assert changed > 0, "bf16 rounding changed nothing"
st.write(f"{w}/up.safetensors", up)
print(f"{len(up)} BF16 tensors, {changed} values changed by the rounding")
PY

same() {  # same OUT1 OUT2: bitwise equal outputs
  cmp "$1" "$2" || fail "$1 and $2 differ"
}
run() { "$kiln" run "$model" --inputs "$work/in.safetensors" --threads 2 "${sets[@]}" "$@"; }
for w in w16 up; do
  run --weights "$work/$w.safetensors" -o "$work/run_$w.safetensors"
  run --weights "$work/$w.safetensors" -o "$work/run16_$w.safetensors" --precision bf16
  run --weights "$work/$w.safetensors" -o "$work/ref_$w.safetensors" --backend ref
  "$kiln" grad "$model" --weights "$work/$w.safetensors" --inputs "$work/in.safetensors" --backend jit \
    --threads 2 -o "$work/grad_$w.safetensors" "${sets[@]}"
  "$kiln" eval "$model" --weights "$work/$w.safetensors" --data "$work/data.safetensors" --threads 2 \
    "${sets[@]}" >"$work/eval_$w.txt"
  "$kiln" train "$model" --weights "$work/$w.safetensors" --data "$work/data.safetensors" --steps 2 \
    --threads 2 -o "$work/train_$w.safetensors" "${sets[@]}" 2>/dev/null
  "$kiln" train "$model" --init "$work/$w.safetensors" --data "$work/data.safetensors" --steps 2 \
    --threads 2 -o "$work/init_$w.safetensors" "${sets[@]}" 2>/dev/null
  "$kiln" bench "$model" --weights "$work/$w.safetensors" --inputs "$work/in.safetensors" --iters 1 \
    --threads 2 "${sets[@]}" >/dev/null
  "$kiln" compile "$model" -o "$work/exe_$w" --weights "$work/$w.safetensors" "${sets[@]}" 2>/dev/null
  "$work/exe_$w" --inputs "$work/in.safetensors" -o "$work/exe_$w.safetensors" --threads 2
  "$work/exe_w16" --inputs "$work/in.safetensors" -o "$work/exe_given_$w.safetensors" --threads 2 \
    --weights "$work/$w.safetensors"
done
for f in run run16 ref grad train init exe exe_given; do same "$work/${f}_w16.safetensors" "$work/${f}_up.safetensors"; done
same "$work/eval_w16.txt" "$work/eval_up.txt"
same "$work/run_w16.safetensors" "$work/exe_w16.safetensors"
! cmp -s "$work/run_w16.safetensors" "$work/run16_w16.safetensors" || fail "bf16 run gave fp32's bits"
# The F32 file of the unrounded values gives other outputs: the rounding is what is tested.
run --weights "$work/w32.safetensors" -o "$work/run_w32.safetensors"
! cmp -s "$work/run_w32.safetensors" "$work/run_up.safetensors" || fail "BF16 weights were not rounded"
rc=0; "$kiln" init "$model" -o "$work/x.safetensors" --dtype f16 2>"$work/err" || rc=$?
[[ $rc == 2 ]] && grep -q 'dtype must be f32 or bf16, not "f16"' "$work/err" || fail "--dtype f16: exit $rc"
echo "BF16 weights: every command equals the widened F32 file bitwise"
