#!/usr/bin/env bash
# Writes the seed corpora of the fuzz targets (tests/fuzz/) to OUT/<target>/, from the
# source tree SRC: every model of models/ and tests/bad/ with the files it includes (as
# parts "--- NAME", fuzz_util.h), VisualBERT at a tiny config through --set parts, small
# safetensors files of every dtype, data files for fuzz_data's model and a tiny vocabulary
# with texts. Usage: make_corpus.sh SRC OUT
set -euo pipefail
src=$1 out=$2
mkdir -p "$out"/fuzz_model "$out"/fuzz_safetensors "$out"/fuzz_wordpiece "$out"/fuzz_data

# fuzz_model: a model, then each file it includes and the files those include (two levels:
# the VisualBERT variants include visualbert-inputs.json, which includes the common file).
includes() { grep -o '"[^"]*\.json"' "$1" | tr -d '"'; }
for m in "$src"/models/*.json "$src"/tests/bad/*.json; do
  dir=$(dirname "$m") seed="$out/fuzz_model/$(basename "$(dirname "$m")")-$(basename "$m")"
  cat "$m" > "$seed"
  for inc in $( { includes "$m"; for i in $(includes "$m"); do [ -f "$dir/$i" ] && includes "$dir/$i"; done; } | sort -u); do
    [ -f "$dir/$inc" ] && [ "$dir/$inc" != "$m" ] && { printf '\n--- %s\n' "$inc"; cat "$dir/$inc"; } >> "$seed"
  done
done
tiny='layers=1\nhidden=8\nheads=2\nintermediate=16\ntext_len=3\nregions=2\nvisual_dim=4\nvocab=11\nnum_labels=3\nmax_positions=8'
for v in vqa nlvr2-late pretrain; do
  { cat "$src/models/visualbert-$v.json"; printf '\n--- visualbert-inputs.json\n'
    cat "$src/models/visualbert-inputs.json"; printf '\n--- visualbert-common.json\n'
    cat "$src/models/visualbert-common.json"; printf "\n--- --set\n$tiny\n"; } > "$out/fuzz_model/tiny-$v"
done
{ cat "$src/tests/bad/tiny_ok.json"; printf '\n--- --set\nbatch=dim * 2 - 1\nout=max(vocab, 3) %% 4 + out\n'; } \
  > "$out/fuzz_model/tiny_ok-set"

# fuzz_wordpiece: a vocabulary (BERT's specials, pieces, accents, CJK), then texts.
{ printf '[PAD]\n[UNK]\r\n[CLS]\n[SEP]\n[MASK]\nun\n##aff\n##able\nhello\n,\n!\nworld\ncafe\n'
  printf 'naive\n中\n##s\ncat\na\n##a\nstraße\necole\n?\nhello\n'
  printf '\n--- text\nUnaffable, hello world! [SEP] Café naïve 中文 cats?\n'
  printf '\n--- text\n\xc3\x28 \xf0\x9f\x98\x80 \xe2\x80\x8b ÉCOLE\tStraße [MASK]x %s\n' "$(printf 'a%.0s' {1..120})"
} > "$out/fuzz_wordpiece/hand"
cp "$src/tests/bad/vocab_no_unk.txt" "$out/fuzz_wordpiece/no_unk"

# fuzz_safetensors and fuzz_data: files written here (the format is the 8-byte header length,
# the JSON header and the data; see runtime/safetensors.h).
/usr/bin/python3 - "$out" <<'PY'
import json, struct, sys
out = sys.argv[1]
def write(path, tensors, meta=None):
    header, data = {}, b""
    if meta: header["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
def pack(fmt, vals): return struct.pack("<%d%s" % (len(vals), fmt), *vals)
st = out + "/fuzz_safetensors/"
write(st + "dtypes", [
    ("f32", "F32", [2, 3], pack("f", [0, 1.5, -2, 3e38, float("inf"), float("nan")])),
    ("f64", "F64", [2], pack("d", [1e300, -0.25])),
    ("i32", "I32", [3], pack("i", [-1, 0, 2**31 - 1])),
    ("i64", "I64", [1, 2], pack("q", [2**53 + 1, -7])),
    ("bf16", "BF16", [2], bytes.fromhex("803f80bf")),
    ("f16", "F16", [2], bytes.fromhex("003c00fc")),
    ("u8", "U8", [3], bytes([0, 7, 255])),
    ("bool", "BOOL", [2], bytes([0, 1])),
    ("scalar", "F32", [], pack("f", [4])),
    ("empty", "I64", [0, 5], b""),
], meta={"format": "pt"})
write(st + "one", [("w", "F32", [4], pack("f", [1, 2, 3, 4]))])
dt = out + "/fuzz_data/"  # fuzz_data.c's model: input_ids i64 (b, 4), attention_mask f32 (b, 4), labels i64 (b)
for n, (ids, mask, lab) in {2: ("I64", "F32", "I64"), 3: ("I32", "F64", "U8"), 0: ("I64", "F32", "I64")}.items():
    fmt = {"I64": "q", "I32": "i", "F32": "f", "F64": "d", "U8": "B"}
    write(dt + "n%d" % n, [
        ("input_ids", ids, [n, 4], pack(fmt[ids], [i % 8 for i in range(4 * n)])),
        ("attention_mask", mask, [n, 4], pack(fmt[mask], [1] * (4 * n))),
        ("labels", lab, [n], pack(fmt[lab], [i % 2 for i in range(n)])),
        ("extra", "F32", [1], pack("f", [0])),
    ])
PY
