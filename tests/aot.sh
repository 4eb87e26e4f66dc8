#!/usr/bin/env bash
# `kiln compile` end to end (docs/aot.md): executables built from the VQA, pre-training
# (forward outputs) and late-fusion models at a tiny config write bitwise the same files as
# `kiln run` (same CPU, same threads); --cpu x86-64-v3 equals `kiln run` on AVX2 code
# (KILN_CPU=haswell) bitwise and the native run within the JIT tolerance; embedded weights,
# weights given at run time and embedded ones overridden agree with kiln run; the library
# example compiles with cc, runs and matches; bad inputs to an executable fail with exit 1
# and kiln run's own message; bad command lines exit 2; no LLVM is linked in; --precision
# bf16 executables (native and x86-64-v3) and library equal kiln run --precision bf16.
# usage: tests/aot.sh KILN_BINARY
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export TMPDIR="$work"  # kiln compile's intermediate files
tiny=(--set layers=2 --set hidden=32 --set heads=4 --set intermediate=64 --set vocab=50
      --set visual_dim=24 --set text_len=6 --set regions=5 --set batch=2 --set max_positions=16)
avx2=(KILN_CPU=haswell
      KILN_CPU_FEATURES=+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+popcnt,+sse4.2,+sse4.1,+ssse3,+sse3,+sse2,+sse)
compare() { "$py" "$here/parity/compare.py" "$@"; }

# Model NAME (file, make_case variant, extra case flags): weights, inputs, kiln run's output.
setup() {
  local name=$1 model=$2 variant=$3 caseflags=$4; shift 4
  local d="$work/$name"; mkdir -p "$d"
  "$kiln" init "$root/models/$model" -o "$d/w.safetensors" --seed 7 "$@" 2>/dev/null
  "$kiln" init "$root/models/$model" -o "$d/w2.safetensors" --seed 8 "$@" 2>/dev/null
  "$py" "$here/parity/make_case.py" --variant "$variant" --seed 11 -o "$d/in.safetensors" $caseflags "$@" >/dev/null
  "$kiln" run "$root/models/$model" --weights "$d/w.safetensors" --inputs "$d/in.safetensors" \
    -o "$d/jit.safetensors" --threads 2 "$@"
}

same_as_run() {  # same_as_run NAME MODEL --set...: embedded weights, bitwise
  local name=$1 model=$2; shift 2
  local d="$work/$name"
  "$kiln" compile "$root/models/$model" -o "$d/exe" --weights "$d/w.safetensors" "$@"
  "$d/exe" --inputs "$d/in.safetensors" -o "$d/aot.safetensors" --threads 2
  compare "$d/aot.safetensors" "$d/jit.safetensors" --rtol 0
  cmp "$d/aot.safetensors" "$d/jit.safetensors"
}

setup vqa visualbert-vqa.json vqa "" "${tiny[@]}" --set num_labels=7
setup pretrain visualbert-pretrain.json pretrain --no-labels "${tiny[@]}"
setup late visualbert-vqa-late.json vqa-late "" "${tiny[@]}" --set num_labels=7
check "aot: vqa executable equals kiln run bitwise" same_as_run vqa visualbert-vqa.json "${tiny[@]}" --set num_labels=7
check "aot: pretrain executable (forward outputs) equals kiln run bitwise" \
  same_as_run pretrain visualbert-pretrain.json "${tiny[@]}"
check "aot: vqa-late executable equals kiln run bitwise" same_as_run late visualbert-vqa-late.json "${tiny[@]}" --set num_labels=7

no_llvm() {
  ldd "$work/vqa/exe"
  ! ldd "$work/vqa/exe" | grep -i llvm
}
check "aot: the executable links no LLVM" no_llvm

weights_at_run_time() {
  local d="$work/vqa"
  "$kiln" compile "$root/models/visualbert-vqa.json" -o "$d/bare" "${tiny[@]}" --set num_labels=7
  "$d/bare" --inputs "$d/in.safetensors" -o "$d/bare.safetensors" --weights "$d/w.safetensors" --threads 2
  cmp "$d/bare.safetensors" "$d/jit.safetensors"
  # Embedded weights overridden at run time: as kiln run with the other weights.
  "$kiln" run "$root/models/visualbert-vqa.json" --weights "$d/w2.safetensors" --inputs "$d/in.safetensors" \
    -o "$d/jit2.safetensors" --threads 2 "${tiny[@]}" --set num_labels=7
  "$d/exe" --inputs "$d/in.safetensors" -o "$d/over.safetensors" --weights "$d/w2.safetensors" --threads 2
  cmp "$d/over.safetensors" "$d/jit2.safetensors"
  ! cmp -s "$d/over.safetensors" "$d/jit.safetensors"
  # The bare executable is smaller by about the weights (22k f32 values here).
  local with without; with=$(stat -c %s "$d/exe"); without=$(stat -c %s "$d/bare")
  echo "with weights $with bytes, without $without"
  [ $((with - without)) -ge 80000 ]
}
check "aot: weights given at run time, and embedded ones overridden" weights_at_run_time

threads() {  # thread counts: 1 thread equals kiln run with 1 thread
  local d="$work/vqa"
  "$kiln" run "$root/models/visualbert-vqa.json" --weights "$d/w.safetensors" --inputs "$d/in.safetensors" \
    -o "$d/jit1.safetensors" --threads 1 "${tiny[@]}" --set num_labels=7
  KILN_NUM_THREADS=1 "$d/exe" --inputs "$d/in.safetensors" -o "$d/aot1.safetensors"
  cmp "$d/aot1.safetensors" "$d/jit1.safetensors"
}
check "aot: one thread (KILN_NUM_THREADS) equals kiln run --threads 1" threads

arena() {  # the tables place computed buffers in the planned arena; memplan off: none, same bits
  local d="$work/vqa" tmp
  KILN_KEEP_TMP=1 "$kiln" compile "$root/models/visualbert-vqa.json" -o "$d/planned" "${tiny[@]}" \
    --set num_labels=7 2>"$d/planned.log" || return 1
  tmp=$(sed -n 's/^kiln: intermediate files kept in //p' "$d/planned.log")
  cp "$tmp/tables.c" "$d/planned.c" && rm -rf "$tmp" || return 1
  KILN_KEEP_TMP=1 "$kiln" compile "$root/models/visualbert-vqa.json" -o "$d/unplanned" "${tiny[@]}" \
    --set num_labels=7 --disable-pass memplan 2>"$d/unplanned.log" || return 1
  tmp=$(sed -n 's/^kiln: intermediate files kept in //p' "$d/unplanned.log")
  cp "$tmp/tables.c" "$d/unplanned.c" && rm -rf "$tmp" || return 1
  echo "arena buffers: $(grep -c RT_BUF_ARENA "$d/planned.c") planned, $(grep -c RT_BUF_ARENA "$d/unplanned.c") unplanned"
  grep -qE '\.arena_bytes = [1-9]' "$d/planned.c" && grep -q RT_BUF_ARENA "$d/planned.c" || return 1
  grep -q '\.arena_bytes = 0,' "$d/unplanned.c" && ! grep -q RT_BUF_ARENA "$d/unplanned.c" || return 1
  "$d/unplanned" --inputs "$d/in.safetensors" -o "$d/unplanned.safetensors" --weights "$d/w.safetensors" \
    --threads 2 && cmp "$d/unplanned.safetensors" "$d/jit.safetensors"
}
check "aot: buffers in the planned arena (--disable-pass memplan: none, same bits)" arena

avx2_target() {
  local d="$work/vqa"
  "$kiln" compile "$root/models/visualbert-vqa.json" -o "$d/v3" --cpu x86-64-v3 "${tiny[@]}" --set num_labels=7 \
    2>&1 | tee "$d/v3.log"
  grep -q "x86-64-v3, 8 lanes" "$d/v3.log"
  "$d/v3" --inputs "$d/in.safetensors" -o "$d/v3.safetensors" --weights "$d/w.safetensors" --threads 2
  env "${avx2[@]}" "$kiln" run "$root/models/visualbert-vqa.json" --weights "$d/w.safetensors" \
    --inputs "$d/in.safetensors" -o "$d/haswell.safetensors" --threads 2 "${tiny[@]}" --set num_labels=7
  cmp "$d/v3.safetensors" "$d/haswell.safetensors"
  compare "$d/v3.safetensors" "$d/jit.safetensors" --rtol 1e-5 --require logits,pooler_output,loss
}
check "aot: --cpu x86-64-v3 (AVX2) equals kiln run on haswell code, native within tolerance" avx2_target

cpu_alone() {  # KILN_CPU without KILN_CPU_FEATURES is that CPU, not the host's features renamed
  local d="$work/vqa"
  KILN_CPU=x86-64-v3 "$kiln" run "$root/models/visualbert-vqa.json" --weights "$d/w.safetensors" \
    --inputs "$d/in.safetensors" -o "$d/v3run.safetensors" --threads 2 --no-cache --dump-llvm "$d/v3ll" \
    "${tiny[@]}" --set num_labels=7
  ! grep -q '<16 x float>' "$d/v3ll/kiln.ll"
  grep -q '<8 x float>' "$d/v3ll/kiln.ll"
  cmp "$d/v3.safetensors" "$d/v3run.safetensors"
}
check "aot: KILN_CPU=x86-64-v3 alone runs AVX2 code, bitwise the --cpu x86-64-v3 executable" cpu_alone

library() {  # library DIR [--precision P]
  local d="$work/$1"; shift; mkdir -p "$d/out"
  cp "$work/vqa/w.safetensors" "$d/"
  "$kiln" compile "$root/models/visualbert-vqa.json" --emit lib -o "$d/model" --weights "$d/w.safetensors" \
    "${tiny[@]}" --set num_labels=7 "$@"
  ls "$d/model/libkiln_model.a" "$d/model/libkiln_rt.a" "$d/model/kiln_model.h" "$d/model/link_flags"
  cc -std=c11 -Wall -Wextra -Werror -pedantic "$root/examples/aot_lib_example.c" -I "$d/model" \
    "$d/model/libkiln_model.a" "$d/model/libkiln_rt.a" $(cat "$d/model/link_flags") -o "$d/example"
  "$d/example" - "$d/out" 2
  # The same inputs as a tensor file, through kiln run; then every output byte for byte.
  "$py" - "$here/parity" "$d/in.safetensors" "${tiny[@]}" --set num_labels=7 <<'EOF'
import math, sys
sys.path.insert(0, sys.argv[1])
import numpy as np, safetensors_io as st
cfg = dict(s.split("=") for s in sys.argv[3:] if s != "--set")
b, t, r, v, n = (int(cfg[k]) for k in ("batch", "text_len", "regions", "visual_dim", "num_labels"))
def ints(shape): return (np.arange(int(np.prod(shape))) % 2).astype(np.int64).reshape(shape)
def floats(shape): return (0.5 * np.sin(0.1 * np.arange(int(np.prod(shape))))).astype(np.float32).reshape(shape)
ones = lambda shape: np.ones(shape, np.float32)
st.write(sys.argv[2], {"input_ids": ints((b, t)), "token_type_ids": ints((b, t)),
    "attention_mask": ones((b, t)), "visual_embeds": floats((b, r, v)),
    "visual_token_type_ids": ints((b, r)), "visual_attention_mask": ones((b, r)),
    "labels": floats((b, n))})
EOF
  "$kiln" run "$root/models/visualbert-vqa.json" --weights "$d/w.safetensors" --inputs "$d/in.safetensors" \
    -o "$d/jit.safetensors" --threads 2 "${tiny[@]}" --set num_labels=7 "$@"
  "$py" - "$here/parity" "$d/jit.safetensors" "$d/out" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, safetensors_io as st
ref = st.read(sys.argv[2])
assert set(ref) == {"logits", "pooler_output", "loss"}, sorted(ref)
for name, a in ref.items():
    got = open(f"{sys.argv[3]}/{name}.bin", "rb").read()
    assert got == a.astype(np.float32).tobytes(), f"{name} differs"
    print("same", name, a.shape)
EOF
  # Weights from a file, and a clear error code and message for a missing one.
  "$d/example" "$d/w.safetensors" "$d/out" 1
  local rc=0; "$d/example" "$d/no_such.safetensors" "$d/out" 2>"$d/err" || rc=$?
  cat "$d/err"; [ "$rc" -eq 1 ] && grep -q "code 2.*no_such.safetensors: cannot open" "$d/err"
}
check "aot: the library example compiles with cc, runs and matches kiln run" library lib

# --precision bf16 (docs/precision.md): the executables and the library run kiln run
# --precision bf16's program: bitwise equal on the same target (vdpbf16ps natively here, the
# FMA fallback on x86-64-v3), and different from fp32's bits.
bf16() {
  local d="$work/vqa"
  "$kiln" run "$root/models/visualbert-vqa.json" --weights "$d/w.safetensors" --inputs "$d/in.safetensors" \
    -o "$d/jit16.safetensors" --threads 2 --precision bf16 "${tiny[@]}" --set num_labels=7
  "$kiln" compile "$root/models/visualbert-vqa.json" -o "$d/exe16" --weights "$d/w.safetensors" \
    --precision bf16 "${tiny[@]}" --set num_labels=7
  "$d/exe16" --inputs "$d/in.safetensors" -o "$d/aot16.safetensors" --threads 2
  cmp "$d/aot16.safetensors" "$d/jit16.safetensors"
  ! cmp -s "$d/aot16.safetensors" "$d/jit.safetensors"
  "$kiln" compile "$root/models/visualbert-vqa.json" -o "$d/v3_16" --cpu x86-64-v3 --precision bf16 \
    "${tiny[@]}" --set num_labels=7
  "$d/v3_16" --inputs "$d/in.safetensors" -o "$d/v3_16.safetensors" --weights "$d/w.safetensors" --threads 2
  env "${avx2[@]}" "$kiln" run "$root/models/visualbert-vqa.json" --weights "$d/w.safetensors" \
    --inputs "$d/in.safetensors" -o "$d/haswell16.safetensors" --threads 2 --precision bf16 "${tiny[@]}" \
    --set num_labels=7
  cmp "$d/v3_16.safetensors" "$d/haswell16.safetensors"
}
check "aot: --precision bf16 executables (native, x86-64-v3) equal kiln run --precision bf16" bf16
check "aot: a --precision bf16 library matches kiln run --precision bf16" library lib16 --precision bf16

# --- bad inputs: the executable says what kiln run says (exit 1) -----------------------------
bad_setup() {
  local d="$work/bad"; mkdir -p "$d"
  "$kiln" init "$root/tests/bad/tiny_ok.json" -o "$d/w.safetensors" --seed 1 2>/dev/null
  "$kiln" compile "$root/tests/bad/tiny_ok.json" -o "$d/exe" --weights "$d/w.safetensors"
  "$kiln" compile "$root/tests/bad/tiny_ok.json" -o "$d/bare"
  "$py" - "$here/parity" "$d" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, safetensors_io as st
d = sys.argv[2]
x = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
ids = np.array([1, 4], np.int64)
w = st.read(f"{d}/w.safetensors")
st.write(f"{d}/in_ok.safetensors", {"x": x, "ids": ids})
st.write(f"{d}/in_x_transposed.safetensors", {"x": x.T.copy(), "ids": ids})
st.write(f"{d}/in_ids_fractional.safetensors", {"x": x, "ids": np.array([1.0, 3.5], np.float32)})
st.write(f"{d}/in_ids_f32_whole.safetensors", {"x": x, "ids": np.array([1.0, 4.0], np.float32)})
st.write(f"{d}/in_missing_x.safetensors", {"ids": ids})
st.write(f"{d}/in_id_out_of_range.safetensors", {"x": x, "ids": np.array([1, 7], np.int64)})
st.write(f"{d}/w_missing_table.safetensors", {"w": w["w"]})
st.write(f"{d}/w_misshaped.safetensors", {"w": w["w"].T.copy(), "table": w["table"]})
st.write(f"{d}/empty.safetensors", {})
st.write(f"{d}/in_a_big.safetensors", {"a": np.array([2**31 - 1, 3], np.int32)})
lp = np.full((2, 2), -1, np.float32)
st.write(f"{d}/in_kl_negative.safetensors", {"lp": lp, "t": np.array([[.5, .5], [-.5, .5]], np.float32)})
st.write(f"{d}/in_kl_nan.safetensors", {"lp": lp, "t": np.array([[.5, .5], [np.nan, .5]], np.float32)})
EOF
}
bad_setup
library_errors() {  # error codes and messages of the API (tests/aot_api_errors.c)
  local d="$work/liberr" b="$work/bad"; mkdir -p "$d"
  "$kiln" compile "$root/tests/bad/tiny_ok.json" --emit lib -o "$d/model"
  cc -std=c11 -Wall -Wextra -Werror -pedantic "$here/aot_api_errors.c" -I "$d/model" \
    "$d/model/libkiln_model.a" "$d/model/libkiln_rt.a" $(cat "$d/model/link_flags") -o "$d/t"
  "$d/t" "$b/w.safetensors" "$b/w_missing_table.safetensors" "$d/z.bin"
  "$kiln" run "$root/tests/bad/tiny_ok.json" --weights "$b/w.safetensors" --inputs "$b/in_ok.safetensors" \
    -o "$d/r.safetensors"
  "$py" -c 'import sys; sys.path.insert(0, sys.argv[1]); import safetensors_io as s, numpy as np
assert s.read(sys.argv[2])["z"].astype(np.float32).tobytes() == open(sys.argv[3], "rb").read()' \
    "$here/parity" "$d/r.safetensors" "$d/z.bin"
}

check "aot: library API errors: codes, messages, a data error leaves the model usable" library_errors
same_error() {  # same_error INPUTS [WEIGHTS]: exit 1 and kiln run's message, for both builds
  local d="$work/bad" in=$1 w=${2:-}
  local rc=0
  "$kiln" run "$root/tests/bad/tiny_ok.json" --weights "$d/${w:-w.safetensors}" --inputs "$d/$in" \
    -o "$d/out.safetensors" 2>"$d/run.err" || rc=$?
  [ "$rc" -eq 1 ] || { echo "kiln run: exit $rc"; return 1; }
  for exe in exe bare; do
    local args=(--inputs "$d/$in" -o "$d/out.safetensors")
    [ -n "$w" ] || [ $exe = bare ] && args+=(--weights "$d/${w:-w.safetensors}")
    rc=0; "$d/$exe" "${args[@]}" 2>"$d/aot.err" || rc=$?
    echo "$exe: exit $rc: $(cat "$d/aot.err")"
    [ "$rc" -eq 1 ] || return 1
    diff <(sed 's/^kiln: //' "$d/run.err") <(sed "s/^$exe: //" "$d/aot.err") || return 1
  done
}
check "aot: a missing inputs file" same_error no_such.safetensors
check "aot: an input of the wrong shape" same_error in_x_transposed.safetensors
check "aot: an input of the wrong dtype (3.5 as ids)" same_error in_ids_fractional.safetensors
check "aot: a missing input tensor" same_error in_missing_x.safetensors
check "aot: an index out of range while running names the node" same_error in_id_out_of_range.safetensors
check "aot: a missing parameter at run time" same_error in_ok.safetensors w_missing_table.safetensors
check "aot: a misshaped parameter at run time" same_error in_ok.safetensors w_misshaped.safetensors
# A data error of a kernel: kiln run on the JIT and on the reference, and an executable, all
# exit 1 with one message (issue 18: the reference decides, the others say the same).
backends_agree() {  # backends_agree MODEL INPUTS (a model of tests/bad/ without parameters)
  local d="$work/bad" m="$root/tests/bad/$1" in="$work/bad/$2" rc
  "$kiln" compile "$m" -o "$d/agree"
  for b in jit ref; do
    rc=0; "$kiln" run "$m" --backend $b --weights "$d/empty.safetensors" --inputs "$in" \
      -o "$d/out.safetensors" 2>"$d/$b.err" || rc=$?
    echo "$b: exit $rc: $(cat "$d/$b.err")"; [ "$rc" -eq 1 ] || return 1
  done
  rc=0; "$d/agree" --weights "$d/empty.safetensors" --inputs "$in" -o "$d/out.safetensors" 2>"$d/aot.err" || rc=$?
  echo "aot: exit $rc: $(cat "$d/aot.err")"; [ "$rc" -eq 1 ] || return 1
  diff "$d/jit.err" "$d/ref.err" && diff <(sed 's/^kiln: //' "$d/jit.err") <(sed 's/^agree: //' "$d/aot.err")
}
check "aot: i32 mul overflow: jit, ref and executable say the same" backends_agree i32_overflow.json in_a_big.safetensors
check "aot: i32 reduce_sum overflow: jit, ref and executable say the same" backends_agree reduce_sum_overflow.json in_a_big.safetensors
check "aot: a negative kl_div target: jit, ref and executable say the same" backends_agree kl_div_target.json in_kl_negative.safetensors
check "aot: a NaN kl_div target: jit, ref and executable say the same" backends_agree kl_div_target.json in_kl_nan.safetensors
converts() {  # a safe conversion (whole f32 ids) is accepted, as by kiln run
  local d="$work/bad"
  "$kiln" run "$root/tests/bad/tiny_ok.json" --weights "$d/w.safetensors" --inputs "$d/in_ids_f32_whole.safetensors" -o "$d/r.safetensors"
  "$d/exe" --inputs "$d/in_ids_f32_whole.safetensors" -o "$d/a.safetensors"
  cmp "$d/r.safetensors" "$d/a.safetensors"
}
check "aot: whole f32 ids convert as in kiln run" converts

unused_input() {  # a given input that no computable output uses is not checked (kiln run)
  local d="$work/unused"; mkdir -p "$d"
  cat >"$d/m.json" <<'EOF'
{"format": "kiln-model/1", "config": {},
 "inputs": [{"name": "x", "dtype": "f32", "shape": [2, 4]}, {"name": "ids", "dtype": "i64", "shape": [2]},
            {"name": "m", "dtype": "f32", "shape": [2, 3]}],
 "params": [{"name": "w", "shape": [4, 3], "init": "normal(0.02)"},
            {"name": "table", "shape": [5, 3], "init": "normal(0.02)"}],
 "nodes": [{"op": "matmul", "in": ["x", "w"], "out": "y"}, {"op": "gather", "in": ["table", "ids"], "out": "e"},
           {"op": "add", "in": ["e", "m"], "out": "z"}],
 "outputs": ["y", "z"]}
EOF
  "$kiln" init "$d/m.json" -o "$d/w.safetensors" 2>/dev/null
  "$py" - "$here/parity" "$d" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, safetensors_io as st
st.write(f"{sys.argv[2]}/in.safetensors", {"x": np.ones((2, 4), np.float32), "ids": np.array([1.5, 2, 3], np.float32)})
EOF
  "$kiln" compile "$d/m.json" -o "$d/exe"
  "$kiln" run "$d/m.json" --weights "$d/w.safetensors" --inputs "$d/in.safetensors" -o "$d/r.safetensors"
  "$d/exe" --weights "$d/w.safetensors" --inputs "$d/in.safetensors" -o "$d/a.safetensors"
  cmp "$d/r.safetensors" "$d/a.safetensors"
  "$py" -c 'import sys; sys.path.insert(0, sys.argv[1]); import safetensors_io as s
assert sorted(s.read(sys.argv[2])) == ["y"]' "$here/parity" "$d/a.safetensors"
}
check "aot: outputs whose inputs are missing are skipped and their inputs not checked" unused_input

scatter_range() {  # a scatter_add index out of range: the output axis (5 rows), in both builds
  local d="$work/scatter"; mkdir -p "$d"
  cat >"$d/m.json" <<'EOF'
{"format": "kiln-model/1", "config": {},
 "inputs": [{"name": "u", "dtype": "f32", "shape": [2, 3]}, {"name": "ids", "dtype": "i64", "shape": [2]}],
 "params": [{"name": "b", "shape": [5, 3], "init": "normal(0.02)"}],
 "nodes": [{"op": "scatter_add", "in": ["u", "ids"], "out": "s", "attrs": {"size": 5}},
           {"op": "add", "in": ["s", "b"], "out": "z"}],
 "outputs": ["z"]}
EOF
  "$kiln" init "$d/m.json" -o "$d/w.safetensors" 2>/dev/null
  "$py" - "$here/parity" "$d" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, safetensors_io as st
st.write(f"{sys.argv[2]}/in.safetensors", {"u": np.ones((2, 3), np.float32), "ids": np.array([1, 7], np.int64)})
EOF
  "$kiln" compile "$d/m.json" -o "$d/exe"
  local rc=0
  "$kiln" run "$d/m.json" --weights "$d/w.safetensors" --inputs "$d/in.safetensors" -o "$d/r.safetensors" \
    2>"$d/run.err" || rc=$?
  [ "$rc" -eq 1 ] || { echo "kiln run: exit $rc"; return 1; }
  rc=0; "$d/exe" --weights "$d/w.safetensors" --inputs "$d/in.safetensors" -o "$d/a.safetensors" \
    2>"$d/aot.err" || rc=$?
  [ "$rc" -eq 1 ] || { echo "exe: exit $rc"; return 1; }
  cat "$d/run.err" "$d/aot.err"
  grep -q 'scatter_add: index 7 out of range \[0, 5) at element 1' "$d/run.err" || return 1
  diff <(sed 's/^kiln: //' "$d/run.err") <(sed 's/^exe: //' "$d/aot.err")
}
check "aot: a scatter_add index out of range: the same message as kiln run (the output axis)" scatter_range

exit_code() {  # exit_code WANT PATTERN COMMAND...: exits WANT and stderr matches PATTERN
  local want=$1 pattern=$2; shift 2
  local rc=0; "$@" 2>"$work/err" >/dev/null || rc=$?
  echo "exit $rc (want $want): $(head -c 300 "$work/err")"
  [ "$rc" -eq "$want" ] && grep -q -- "$pattern" "$work/err"
}
b="$work/bad"
check "aot: executable without weights embedded or given exits 2" \
  exit_code 2 "needs --weights" "$b/bare" --inputs "$b/in_ok.safetensors" -o "$b/o.safetensors"
check "aot: executable with --threads 0 exits 2" \
  exit_code 2 "threads must be" "$b/exe" --inputs "$b/in_ok.safetensors" -o "$b/o.safetensors" --threads 0
check "aot: executable with an unknown option exits 2" \
  exit_code 2 "unknown option \"--frob\"" "$b/exe" --frob
check "aot: executable without -o exits 2" exit_code 2 "needs -o" "$b/exe" --inputs "$b/in_ok.safetensors"
check "aot: executable over --max-memory exits 1 before reading anything, naming the limit" \
  exit_code 1 "the program needs .* bytes of memory .*more than the limit of 100 bytes (--max-memory); raise it with --max-memory SIZE" \
  "$b/exe" --inputs "$b/missing.safetensors" -o "$b/o.safetensors" --max-memory 100
check "aot: executable with --max-memory 1.5G exits 2" \
  exit_code 2 "max-memory must be a size" "$b/exe" --inputs "$b/in_ok.safetensors" -o "$b/o.safetensors" --max-memory 1.5G
check "aot: executable within --max-memory runs as without it" bash -c '
  "$1/exe" --inputs "$1/in_ok.safetensors" -o "$1/lim.safetensors" --max-memory 64M &&
  "$1/exe" --inputs "$1/in_ok.safetensors" -o "$1/nolim.safetensors" && cmp "$1/lim.safetensors" "$1/nolim.safetensors"' _ "$b"
check "aot: executable with -o the same file as --inputs exits 2 and keeps it" bash -c '
  cp "$1/in_ok.safetensors" "$1/in_copy.safetensors"; ln -f "$1/in_copy.safetensors" "$1/in_link.safetensors"
  rc=0; "$1/exe" --inputs "$1/in_copy.safetensors" -o "$1/in_link.safetensors" 2>"$1/err" || rc=$?
  cat "$1/err"; [ "$rc" -eq 2 ] && grep -q "in_link.safetensors is the same file as --inputs" "$1/err" &&
  cmp "$1/in_ok.safetensors" "$1/in_copy.safetensors"' _ "$b"
check "aot: executable with -o a directory exits 1 before running" \
  exit_code 1 "is a directory" "$b/exe" --inputs "$b/in_ok.safetensors" -o "$b"
check "aot: executable --help lists inputs and outputs" \
  bash -c '"$1" --help | grep -q "ids  *i64\[2\]" && "$1" --help | grep -q "z  *f32\[2,3\]"' _ "$b/exe"
tiny_model="$root/tests/bad/tiny_ok.json"
check "aot: compile without -o exits 2" exit_code 2 "needs -o" "$kiln" compile "$tiny_model"
check "aot: compile --cpu of an unknown CPU exits 2" exit_code 2 "does not know this CPU" \
  "$kiln" compile "$tiny_model" -o "$b/x" --cpu pentium9
check "aot: compile --emit of an unknown kind exits 2" exit_code 2 "emit must be exe or lib" \
  "$kiln" compile "$tiny_model" -o "$b/x" --emit dll
check "aot: compile with a run-only option exits 2" exit_code 2 "does not apply" \
  "$kiln" compile "$tiny_model" -o "$b/x" --threads 2
check "aot: compile with weights missing a parameter exits 1" exit_code 1 "parameter \"table\" is missing" \
  "$kiln" compile "$tiny_model" -o "$b/x" --weights "$b/w_missing_table.safetensors"
check "aot: compile without a C compiler says so" exit_code 1 "no C compiler" \
  env -u CC PATH=/nonexistent "$kiln" compile "$tiny_model" -o "$b/x"
check "aot: compile without the runtime library says so" exit_code 1 "KILN_RT_LIB=/nonexistent" \
  env KILN_RT_LIB=/nonexistent "$kiln" compile "$tiny_model" -o "$b/x"
check "aot: compile leaves no temporary files" bash -c '! ls "$1"/kiln-compile-* 2>/dev/null' _ "$work"

echo "aot: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
