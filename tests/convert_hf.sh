#!/usr/bin/env bash
# kiln convert-hf: a Hugging Face-format VisualBERT directory (config.json, model.safetensors
# under HF names, fp16 and bf16 tensors, a position_ids buffer) made from kiln init's weights
# converts to those weights (rounded as stored) and settings with which kiln run gives the
# outputs of the original config bitwise; missing and misshapen tensors, a missing
# checkpoint and an unknown architecture fail with exit 1 naming them.
# usage: tests/convert_hf.sh KILN_BINARY
set -euo pipefail
source "$(dirname "$0")/lib.sh"
model="$root/models/visualbert-vqa.json"
arch=(--set hidden=16 --set layers=1 --set heads=2 --set intermediate=32 --set vocab=30
      --set visual_dim=12 --set max_positions=8 --set num_labels=6)
shape=(--set text_len=5 --set regions=4 --set batch=2)  # the inputs' sizes: not in config.json
passed=0 failed=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  if "$@" >"$work/log" 2>&1; then echo "ok    $name"; passed=$((passed + 1))
  else echo "FAIL  $name"; tail -20 "$work/log"; failed=$((failed + 1)); fi
}
fails_with() {  # fails_with TEXT COMMAND...: exit 1 and TEXT in the message
  local text=$1; shift
  local rc=0; "$@" 2>"$work/err" || rc=$?
  cat "$work/err"; [ "$rc" -eq 1 ] && grep -qF -- "$text" "$work/err"
}

"$kiln" init "$model" -o "$work/w.safetensors" --seed 3 "${arch[@]}" "${shape[@]}" 2>/dev/null
# The HF directory, and the weights as it stores them (fp16 and bf16 rounded), for kiln run.
"$py" - "$here/parity" "$work" <<'PY'
import json, os, sys
import numpy as np
sys.path.insert(0, sys.argv[1]); import safetensors_io as st
work = sys.argv[2]
w = st.read(f"{work}/w.safetensors")
half, brain = "visual_bert.embeddings.word_embeddings.weight", "cls.weight"
w[half] = w[half].astype(np.float16)
hf = dict(w, **{"visual_bert.embeddings.position_ids": np.arange(8, dtype=np.int64)[None]})
def make(d, tensors, arch="VisualBertForQuestionAnswering", **extra):
    os.makedirs(d, exist_ok=True)
    cfg = {"architectures": [arch], "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
           "intermediate_size": 32, "visual_embedding_dim": 12, "vocab_size": 30, "max_position_embeddings": 8,
           "type_vocab_size": 2, "layer_norm_eps": 1e-12, "id2label": {str(i): f"a{i}" for i in range(6)}, **extra}
    json.dump(cfg, open(f"{d}/config.json", "w"))
    if tensors is not None:
        st.write(f"{d}/model.safetensors", tensors, bf16=[brain])
make(f"{work}/hf", hf)
back = st.read(f"{work}/hf/model.safetensors")  # what the file holds, widened to f32
st.write(f"{work}/expected.safetensors", {k: back[k].astype(np.float32) for k in w})
missing = dict(hf); del missing["cls.bias"]
make(f"{work}/missing", missing)
bad = dict(hf, **{"cls.bias": np.zeros(5, np.float32)})
make(f"{work}/misshapen", bad)
make(f"{work}/bin", None)
open(f"{work}/bin/pytorch_model.bin", "wb").write(b"not read")
make(f"{work}/other", hf, arch="BertModel")
PY

converts() {
  "$kiln" convert-hf "$work/hf" -o "$work/conv.safetensors" 2>"$work/err" || { cat "$work/err"; return 1; }
  cat "$work/err" "$work/conv.safetensors.sets"
  grep -q '"visual_bert.embeddings.position_ids" is not a parameter of the model: ignored (a buffer' "$work/err"
  grep -qx -- "--set num_labels=6" "$work/conv.safetensors.sets"
  "$py" - "$here/parity" "$work" <<'PY'
import sys
sys.path.insert(0, sys.argv[1]); import safetensors_io as st
a, b = st.read(f"{sys.argv[2]}/expected.safetensors"), st.read(f"{sys.argv[2]}/conv.safetensors")
assert sorted(a) == sorted(b), (sorted(a), sorted(b))
for k in a:
    assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k
PY
}
check "convert-hf: the weights as stored (fp16, bf16 widened), extras ignored, settings written" converts

runs_alike() {
  "$py" "$root/tests/parity/make_case.py" --variant vqa --seed 2 -o "$work/in.safetensors" \
    "${arch[@]}" "${shape[@]}" >/dev/null
  # shellcheck disable=SC2046  # one word a setting
  "$kiln" run "$model" --weights "$work/conv.safetensors" --inputs "$work/in.safetensors" -o "$work/a.safetensors" \
    $(cat "$work/conv.safetensors.sets") "${shape[@]}"
  "$kiln" run "$model" --weights "$work/expected.safetensors" --inputs "$work/in.safetensors" \
    -o "$work/b.safetensors" "${arch[@]}" "${shape[@]}"
  cmp "$work/a.safetensors" "$work/b.safetensors"
}
check "convert-hf: kiln run with its settings equals the original config (bitwise)" runs_alike

check "convert-hf: a missing tensor is named" \
  fails_with '1 parameter of' "$kiln" convert-hf "$work/missing" -o "$work/x.safetensors"
check "convert-hf: ... by name" \
  fails_with '"cls.bias"' "$kiln" convert-hf "$work/missing" -o "$work/x.safetensors"
check "convert-hf: a misshapen tensor is named with both shapes" \
  fails_with 'tensor "cls.bias" has shape [5], the model'"'"'s parameter [6]' \
  "$kiln" convert-hf "$work/misshapen" -o "$work/x.safetensors"
check "convert-hf: a pytorch_model.bin torch cannot load is named, no temporary left" \
  fails_with "$work/bin/pytorch_model.bin: not a PyTorch file" "$kiln" convert-hf "$work/bin" -o "$work/bin/x.safetensors"
check "convert-hf: ... nothing written beside it" test "$(ls "$work/bin")" = "$(printf 'config.json\npytorch_model.bin')"
check "convert-hf: an architecture without a model file needs --model" \
  fails_with 'give the model file (--model MODEL' "$kiln" convert-hf "$work/other" -o "$work/x.safetensors"
check "convert-hf: ... and converts with it" \
  "$kiln" convert-hf "$work/other" -o "$work/y.safetensors" --model "$model"
check "convert-hf: no config.json" \
  fails_with "$work/none/config.json" "$kiln" convert-hf "$work/none" -o "$work/x.safetensors"
usage() { local rc=0; "$kiln" convert-hf -o "$work/x.safetensors" 2>/dev/null || rc=$?; [ "$rc" -eq 2 ]; }
check "convert-hf: without DIR, exit 2" usage

echo "passed $passed, failed $failed"
[ "$failed" -eq 0 ]
