#!/usr/bin/env bash
# A Hugging Face-format VisualBERT directory made from the PyTorch reference model
# (tests/parity/make_hf_dir.py: its weights under HF names saved with torch.save as
# pytorch_model.bin, an HF config.json with id2label, a vocab.txt) converted by `kiln
# convert-hf` and by kiln.convert_hf: kiln's outputs on the converted weights and settings
# equal the reference's (the parity tests' fp32 tolerance); the tensors the model lacks are
# reported, a wrong shape fails naming the tensor; examples/vqa.py answers from the directory.
# Skipped (77) without python3-torch; the Python checks need the module built (PYTHONPATH).
# usage: tests/convert_hf_torch.sh KILN_BINARY
set -euo pipefail
source "$(dirname "$0")/lib.sh"
"$py" -c 'import torch, numpy' 2>/dev/null || { echo "skipped: python3-torch is not installed"; exit 77; }
model="$root/models/visualbert-vqa.json"
arch=(--set layers=2 --set hidden=32 --set heads=4 --set intermediate=64 --set vocab=50
      --set visual_dim=24 --set max_positions=16 --set num_labels=7)
shape=(--set text_len=6 --set regions=5 --set batch=2)  # the inputs' sizes: not in config.json
"$py" "$here/parity/make_hf_dir.py" "$work/hf" --seed 5 "${arch[@]}"
"$py" "$here/parity/make_hf_dir.py" "$work/bad" --seed 5 "${arch[@]}" --bad-shape cls.bias
"$py" "$here/parity/make_case.py" --variant vqa --seed 9 -o "$work/in.safetensors" "${arch[@]}" "${shape[@]}" >/dev/null
"$py" "$here/parity/visualbert_torch.py" --variant vqa --weights "$work/hf/reference.safetensors" \
  --inputs "$work/in.safetensors" -o "$work/torch.safetensors" "${arch[@]}" "${shape[@]}" >/dev/null
mv "$work/hf/reference.safetensors" "$work"  # the directory as Hugging Face has it

cli_converts() {
  "$kiln" convert-hf "$work/hf" -o "$work/cli.safetensors" 2>"$work/err" || { cat "$work/err"; return 1; }
  cat "$work/err"
  grep -qF '"cls.predictions.decoder.weight" is not a parameter of the model: ignored (tied to the word embeddings)' "$work/err"
  grep -qF '"visual_bert.embeddings.position_ids" is not a parameter of the model: ignored' "$work/err"
  grep -qx -- "--set num_labels=7" "$work/cli.safetensors.sets"
  ! ls "$work" | grep -q torch-  # the temporary safetensors is gone
  # shellcheck disable=SC2046  # one word a setting
  "$kiln" run "$model" --weights "$work/cli.safetensors" --inputs "$work/in.safetensors" -o "$work/out.safetensors" \
    $(cat "$work/cli.safetensors.sets") "${shape[@]}"
  "$py" "$here/parity/compare.py" "$work/out.safetensors" "$work/torch.safetensors" --rtol 1e-5 \
    --require logits,pooler_output,loss
}
check "convert-hf: pytorch_model.bin of the reference model; kiln run equals the reference" cli_converts

wrong_shape() {
  local rc=0; "$kiln" convert-hf "$work/bad" -o "$work/x.safetensors" 2>"$work/err2" || rc=$?
  cat "$work/err2"
  [ "$rc" -eq 1 ] && grep -qF "$work/bad/pytorch_model.bin: tensor \"cls.bias\" has shape [6], the model's parameter [7]" "$work/err2"
  [ ! -e "$work/x.safetensors" ] && ! ls "$work" | grep -q torch-
}
check "convert-hf: a wrong shape in pytorch_model.bin fails naming the tensor, nothing left" wrong_shape

if PYTHONPATH=${PYTHONPATH:-} "$py" -c 'import kiln' 2>/dev/null; then
  py_converts() {
    "$py" - "$work" "$model" "$root/tests/parity" <<'PY'
import sys, warnings
import numpy as np
import kiln
work, model = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3]); import compare  # noqa
with warnings.catch_warnings(record=True) as ws:
    warnings.simplefilter("always")
    s = kiln.convert_hf(f"{work}/hf", f"{work}/py.safetensors")
text = "".join(str(w.message) for w in ws)
assert '"cls.predictions.decoder.weight" is not a parameter of the model: ignored' in text, text
assert s == {"hidden": 32, "layers": 2, "heads": 4, "intermediate": 64, "visual_dim": 24, "vocab": 50,
             "max_positions": 16, "type_vocab": 2, "layer_norm_eps": 1e-12, "num_labels": 7}, s
assert open(f"{work}/py.safetensors", "rb").read() == open(f"{work}/cli.safetensors", "rb").read()
assert open(f"{work}/py.safetensors.sets").read() == open(f"{work}/cli.safetensors.sets").read()
m = kiln.Model(model, set=dict(s, text_len=6, regions=5, batch=2))
m.load_weights(f"{work}/py.safetensors")
out = m.run({k: v for k, v in kiln.load_safetensors(f"{work}/in.safetensors").items() if k in m.inputs})
ref = kiln.load_safetensors(f"{work}/torch.safetensors")
for k in ("logits", "pooler_output", "loss"):
    ok, info = compare.compare_tensor(out[k], ref[k], 1e-5, 0.0)
    assert ok, (k, info)
try:
    kiln.convert_hf(f"{work}/bad", f"{work}/y.safetensors")
    raise SystemExit("no kiln.Error for a wrong shape")
except kiln.Error as e:
    assert 'tensor "cls.bias" has shape [6]' in str(e), e
print("ok")
PY
  }
  check "kiln.convert_hf: the same file and settings, Model.run equals the reference; kiln.Error on a wrong shape" py_converts

  example() {  # examples/vqa.py's top 5 (converting the directory itself) are the reference's
    "$py" -c 'import numpy as np, sys; np.save(sys.argv[1], np.random.default_rng(4).standard_normal((5, 24)).astype(np.float32))' \
      "$work/regions.npy"
    "$py" "$root/examples/vqa.py" "$work/hf" "What color is the cat on the table?" "$work/regions.npy" >"$work/top5"
    cat "$work/top5"
    [ -e "$work/hf/kiln.safetensors.sets" ]
    "$py" "$root/examples/vqa.py" "$work/hf" "What color is the cat on the table?" "$work/regions.npy" | cmp - "$work/top5"
    "$py" - "$work" "$root/tests/parity" <<'PY'
import json, sys
import numpy as np
import kiln
work = sys.argv[1]
sys.path.insert(0, sys.argv[2]); import safetensors_io, visualbert_torch as vt  # noqa
tok = kiln.Tokenizer(f"{work}/hf/vocab.txt")
ids = [tok.cls_id] + tok.encode("What color is the cat on the table?") + [tok.sep_id]
regions = np.load(f"{work}/regions.npy")[None]
inputs = {"input_ids": np.array([ids]), "token_type_ids": np.zeros((1, len(ids)), np.int64),
          "attention_mask": np.ones((1, len(ids)), np.int64), "visual_embeds": regions,
          "visual_token_type_ids": np.ones((1, 5), np.int64), "visual_attention_mask": np.ones((1, 5), np.int64)}
out, _ = vt.run("vqa", safetensors_io.read(f"{work}/reference.safetensors"), inputs, {"heads": 4})
logits = out["logits"][0].astype(np.float64)
id2label = json.load(open(f"{work}/hf/config.json"))["id2label"]
want = [id2label[str(i)] for i in np.argsort(-logits, kind="stable")[:5]]
got = [line.split()[1] for line in open(f"{work}/top5")]
assert got == want, (got, want)
scores = [float(line.split()[2]) for line in open(f"{work}/top5")]
assert np.allclose(scores, 1 / (1 + np.exp(-np.sort(logits)[::-1][:5])), atol=1e-4), scores
PY
  }
  check "examples/vqa.py: question + region features -> the reference's top 5 answers by id2label" example
else
  echo "note: the kiln Python module is not importable here: kiln.convert_hf not checked"
fi

echo "passed $passed, failed $failed"
[ "$failed" -eq 0 ]
