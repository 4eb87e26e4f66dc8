#!/usr/bin/env bash
# kiln tokenize, kiln data synth, kiln run --text and kiln eval end to end on a tiny model:
# the generator's files are identical for a seed and differ for another; the tokenizer
# splits plurals into ## pieces with the generated vocabulary; --text builds the same
# inputs the generator wrote; eval's numbers do not depend on the batch size (a last
# partial batch included) and agree with the accuracy computed from kiln run's logits;
# kiln train --eval-data prints what kiln eval gives for the same weights;
# bad vocabularies, data and command lines give exit 1 / 2 with a message naming the place.
set -euo pipefail
kiln=${1:?usage: data.sh KILN_BINARY}
python3=/usr/bin/python3
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/kiln-data-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0
check() {  # check NAME COMMAND...: runs COMMAND, reports
  local name=$1; shift
  if "$@"; then echo "ok: $name"; else echo "FAIL: $name"; fail=1; fi
}
# exit_code N MESSAGE_PART COMMAND...: exits with N and stderr mentions MESSAGE_PART
exit_code() {
  local want=$1 part=$2; shift 2
  local rc=0
  "$@" >/dev/null 2>"$work/err" || rc=$?
  if [[ $rc != "$want" ]]; then echo "  exit $rc, wanted $want: $*"; cat "$work/err"; return 1; fi
  if ! grep -qF -- "$part" "$work/err"; then echo "  stderr lacks \"$part\":"; cat "$work/err"; return 1; fi
}

# --- the generator ----------------------------------------------------------------------
synth() { "$kiln" data synth -o "$work/$1" --seed "$2" --train 40 --val 30 --test 1 2>/dev/null; }
synth a 5; synth b 5; synth c 6
same_all() {
  for f in "$work"/a/*; do cmp -s "$f" "$work/b/$(basename "$f")" || { echo "  differs: $f"; return 1; }; done
}
differ_all() {
  for f in "$work"/a/*.safetensors; do
    if cmp -s "$f" "$work/c/$(basename "$f")"; then echo "  same for seeds 5 and 6: $f"; return 1; fi
  done
}
check "synth: same seed, same bytes (all $(ls "$work/a" | wc -l) files)" same_all
check "synth: another seed, other data" differ_all
help_names_tasks() {  # every task whose files synth writes is named in its help
  local h t base suffix; h=$("$kiln" data synth --help 2>&1) || true
  for t in $(ls "$work/a" | sed -n 's/-train\.safetensors$//p'); do
    base=${t%-mlm-static}; base=${base%-mlm}; suffix=${t#"$base"}  # TASK-mlm(-static)
    grep -q "[{,]$base[,}]" <<<"$h" || { echo "help does not name $t"; return 1; }
    [ -z "$suffix" ] || grep -q "TASK$suffix\b" <<<"$h" || { echo "help does not name $t"; return 1; }
  done
}
check "synth: --help names every task it writes" help_names_tasks
check "synth: config.txt lists the model settings" grep -qx "num_labels=20" "$work/a/config.txt"

# --- the tokenizer with the generated vocabulary ------------------------------------------
tok_is() { [[ $("$kiln" tokenize --vocab "$work/a/vocab.txt" "${@:2}") == "$1" ]]; }
check "tokenize: plural as ## piece, punctuation, case" \
  tok_is "how many circle ##s are there ?" --tokens "How many CIRCLES are there?"
check "tokenize: unknown word is [UNK]" tok_is "is there a [UNK] ?" --tokens "is there a giraffe?"
ids=$("$kiln" tokenize --vocab "$work/a/vocab.txt" "a red circle")
check "tokenize: ids are vocab line numbers" \
  test "$ids" == "$(grep -nx -e a -e red -e circle "$work/a/vocab.txt" | sort -t: -k2,2 -s | \
         awk -F: '{print $1 - 1, $2}' | awk '{id[$2]=$1} END {print id["a"], id["red"], id["circle"]}')"

# --- kiln run --text: the same inputs as the generator's ----------------------------------
tiny=(--set hidden=16 --set layers=1 --set heads=2 --set intermediate=32 --set vocab=54
      --set visual_dim=32 --set regions=8 --set text_len=24 --set max_positions=32)
nlvr2=("$src/models/visualbert-nlvr2.json" "${tiny[@]}" --set num_labels=2)
"$kiln" init "${nlvr2[@]}" --set batch=1 -o "$work/w1.safetensors" --seed 2 2>/dev/null
text=$("$python3" - "$work/a/nlvr2-test.safetensors" "$work/a/vocab.txt" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
t = h['input_ids']; s, e = t['data_offsets']; ids = struct.unpack('<%dq' % ((e - s) // 8), b[8 + n + s:8 + n + e])
vocab = open(sys.argv[2]).read().split('\n')
print(' '.join(vocab[i] for i in ids if vocab[i] not in ('[CLS]', '[SEP]', '[PAD]')).replace(' ##', '').upper())
EOF
)
"$kiln" run "${nlvr2[@]}" --set batch=1 --weights "$work/w1.safetensors" --inputs "$work/a/nlvr2-test.safetensors" \
  -o "$work/o1.safetensors" 2>/dev/null
"$kiln" run "${nlvr2[@]}" --set batch=1 --weights "$work/w1.safetensors" --inputs "$work/a/nlvr2-test.safetensors" \
  -o "$work/o2.safetensors" --text "$text" --vocab "$work/a/vocab.txt" 2>/dev/null
check "run --text \"$text\": the generator's input_ids, types and mask" cmp -s "$work/o1.safetensors" "$work/o2.safetensors"
check "run --text: too long is truncated with a warning" exit_code 0 "truncated to 22" \
  "$kiln" run "${nlvr2[@]}" --set batch=1 --weights "$work/w1.safetensors" --inputs "$work/a/nlvr2-test.safetensors" \
  -o "$work/o3.safetensors" --text "$text $text $text $text" --vocab "$work/a/vocab.txt"

# --- kiln eval ----------------------------------------------------------------------------
vqa=("$src/models/visualbert-vqa.json" "${tiny[@]}" --set num_labels=20)
"$kiln" init "${vqa[@]}" --set batch=4 -o "$work/wv.safetensors" --seed 4 2>/dev/null
for b in 1 4 30 64; do  # 30 examples: 30 batches of 1; 7 of 4 and one of 2; one of 30; one partial
  "$kiln" eval "${vqa[@]}" --set batch=$b --weights "$work/wv.safetensors" --data "$work/a/vqa-val.safetensors" \
    --threads 2 > "$work/eval.$b"
done
same_eval() {
  "$python3" - "$work"/eval.{1,4,30,64} <<'EOF'
import sys
runs = [dict(l.split(': ') for l in open(p).read().split('\n') if l) for p in sys.argv[1:]]
for r in runs[1:]:
    assert r.keys() == runs[0].keys(), (r, runs[0])
    for k in r:
        assert abs(float(r[k]) - float(runs[0][k])) <= 1e-5 * max(1, abs(float(runs[0][k]))), (k, r[k], runs[0][k])
assert runs[0]['examples'] == '30', runs[0]
EOF
}
check "eval: the same numbers for batch 1, 4 (partial last), 30 and 64 (one partial)" same_eval
"$kiln" run "${vqa[@]}" --set batch=30 --weights "$work/wv.safetensors" --inputs "$work/a/vqa-val.safetensors" \
  -o "$work/logits.safetensors" 2>/dev/null
eval_agrees() {
  "$python3" - "$work/logits.safetensors" "$work/a/vqa-val.safetensors" "$work/eval.4" <<'EOF'
import json, struct, sys
def load(p, name):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])[name]
    s, e = h['data_offsets']; return struct.unpack('<%df' % ((e - s) // 4), b[8 + n + s:8 + n + e]), h['shape']
(logits, (N, K)), (labels, _) = load(sys.argv[1], 'logits'), load(sys.argv[2], 'labels')
(loss, _) = load(sys.argv[1], 'loss')
row = lambda v, i: v[i * K:(i + 1) * K]
am = lambda r: max(range(K), key=lambda k: (r[k], -k))
acc = sum(am(row(logits, i)) == am(row(labels, i)) for i in range(N)) / N
soft = sum(row(labels, i)[am(row(logits, i))] for i in range(N)) / N
got = dict(l.split(': ') for l in open(sys.argv[3]).read().split('\n') if l)
assert abs(float(got['accuracy']) - acc) < 1e-6, (got, acc)
assert abs(float(got['vqa_accuracy']) - soft) < 1e-5, (got, soft)
assert abs(float(got['loss']) - loss[0]) < 1e-4, (got, loss)
EOF
}
check "eval: accuracy, vqa_accuracy and loss agree with kiln run's logits" eval_agrees
check "eval: nlvr2 prints accuracy" bash -c "'$kiln' eval ${nlvr2[*]} --set batch=4 --weights '$work/w1.safetensors' \
  --data '$work/a/nlvr2-val.safetensors' 2>/dev/null | grep -q '^accuracy: 0\.[0-9]*$'"

# --- bad inputs -----------------------------------------------------------------------------
printf '[PAD]\n[CLS]\nred\n' > "$work/nounk.txt"
check "tokenize: missing vocab file is exit 1 naming it" exit_code 1 "$work/missing.txt: cannot open" \
  "$kiln" tokenize --vocab "$work/missing.txt" "red"
check "tokenize: vocab without [UNK] is exit 1" exit_code 1 "nounk.txt: the vocabulary has no [UNK]" \
  "$kiln" tokenize --vocab "$work/nounk.txt" "red"
check "tokenize -- \"-red\": text starting with '-' after --" bash -c \
  "[ \"\$('$kiln' tokenize --vocab '$work/a/vocab.txt' --tokens -- '-red circle')\" = '[UNK] red circle' ]"
check "tokenize: a second TEXT after -- is exit 2" exit_code 2 "unexpected argument" \
  "$kiln" tokenize --vocab "$work/a/vocab.txt" -- red blue
check "tokenize: no --vocab is exit 2" exit_code 2 "--vocab" "$kiln" tokenize "red"
check "run: --text without --vocab is exit 2" exit_code 2 "--text needs --vocab" \
  "$kiln" run "${nlvr2[@]}" --weights "$work/w1.safetensors" --inputs "$work/a/nlvr2-test.safetensors" -o "$work/x" --text hi
check "run --text: vocab without [UNK] is exit 1" exit_code 1 "[UNK]" \
  "$kiln" run "${nlvr2[@]}" --set batch=1 --weights "$work/w1.safetensors" --inputs "$work/a/nlvr2-test.safetensors" \
  -o "$work/x.safetensors" --text hi --vocab "$work/nounk.txt"
# --- kiln train masks and mismatches pre-training batches on the fly ---------------------
# The clean file's labels are all ignored (-100) and every caption matches: unmasked, the
# MLM loss would be empty. Masked per step, the first loss is near ln(vocab) + ln 2.
pre=("$src/models/visualbert-pretrain.json" "${tiny[@]}" --set batch=8)
"$kiln" init "${pre[@]}" -o "$work/wp.safetensors" --seed 3 2>/dev/null
train_pre() {  # OUT: one-step-per-line log of 3 steps
  "$kiln" train "${pre[@]}" --weights "$work/wp.safetensors" --data "$work/a/pretrain-train.safetensors" \
    -o "$work/$1.safetensors" --steps 3 --threads 2 2>"$work/$1.log"
}
first_loss_masked() {
  train_pre p1 || return 1
  local loss
  loss=$(tr '\r' '\n' <"$work/p1.log" | sed -n 's/^step 1\/3 loss \([0-9.]*\).*/\1/p' | head -1)
  [[ -n $loss ]] || { echo "  no step-1 line in: $(cat "$work/p1.log")"; return 1; }
  awk -v l="$loss" 'BEGIN { exit !(l > 3.0 && l < 6.0) }' || { echo "  first loss $loss"; return 1; }
}
check "train: pre-training batches are masked per step (first loss near ln 54 + ln 2)" first_loss_masked
same_pre() { train_pre p2 && cmp -s "$work/p1.safetensors" "$work/p2.safetensors"; }
check "train: masking depends only on (seed, step): two runs give the same weights" same_pre

# --- kiln train --eval-data: the numbers kiln eval gives for the same weights -------------
# Batch 4 over 30 validation examples: the evaluator's partial last batch is used too.
train_eval() {
  "$kiln" train "${vqa[@]}" --set batch=4 --weights "$work/wv.safetensors" --data "$work/a/vqa-train.safetensors" \
    -o "$work/te.safetensors" --steps 5 --checkpoint-every 2 --threads 2 --lr 1e-3 \
    --eval-data "$work/a/vqa-val.safetensors" --eval-every 2 2>"$work/te.log"
}
eval_line() {  # STEP WEIGHTS: kiln eval's output as the one-line form kiln train prints
  printf 'eval step %s:' "$1"
  "$kiln" eval "${vqa[@]}" --set batch=4 --weights "$2" --data "$work/a/vqa-val.safetensors" --threads 2 |
    sed 's/^\([a-z_]*\): /\1 /' | tr '\n' ' ' | sed 's/ $//; s/^/ /'
  echo
}
train_eval_agrees() {
  train_eval || { cat "$work/te.log"; return 1; }
  grep '^eval step' "$work/te.log" >"$work/te.got"
  { eval_line 0 "$work/wv.safetensors"; eval_line 2 "$work/te.step-2.safetensors"
    eval_line 4 "$work/te.step-4.safetensors"; eval_line 5 "$work/te.safetensors"; } >"$work/te.want"
  diff "$work/te.want" "$work/te.got" || return 1
  grep -q '^step 5/5 loss' "$work/te.log" || { echo "  no progress line"; return 1; }
}
check "train --eval-data: at steps 0, 2, 4 and 5 the numbers kiln eval gives for those weights" train_eval_agrees
check "train --eval-data: data of another task is exit 1 naming the option and the tensor" exit_code 1 \
  "--eval-data: $work/a/nlvr2-val.safetensors: tensor \"labels\" has shape [30]" \
  "$kiln" train "${vqa[@]}" --set batch=4 --weights "$work/wv.safetensors" --data "$work/a/vqa-train.safetensors" \
  -o "$work/te2.safetensors" --steps 2 --eval-data "$work/a/nlvr2-val.safetensors"
check "train --eval-every 0 is exit 2" exit_code 2 "--eval-every must be an integer" \
  "$kiln" train "${vqa[@]}" --weights "$work/wv.safetensors" --data "$work/a/vqa-train.safetensors" -o "$work/x" \
  --eval-data "$work/a/vqa-val.safetensors" --eval-every 0

# --- VCR and Flickr30K: the rows, and the model files train and evaluate on them ------------
vcr_rows() {
  "$python3" - "$work/a/vcr-val.safetensors" "$work/a/vocab.txt" "$work/a/answers.txt" <<'EOF'
import json, struct, sys
import numpy as np
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
dt = {'I64': np.int64, 'F32': np.float32}
t = {k: np.frombuffer(b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]], dt[v['dtype']]).reshape(v['shape'])
     for k, v in h.items() if k != '__metadata__'}
voc = open(sys.argv[2]).read().split()
answers = set(open(sys.argv[3]).read().split())
N, C, T = t['input_ids'].shape
assert (N, C) == (30, 4) and t['visual_embeds'].shape[:3] == (30, 4, 8) and t['labels'].shape == (30,), h
assert set(t['labels'].tolist()) <= {0, 1, 2, 3} and len(set(t['labels'].tolist())) > 1
for e in range(N):
    rows = [' '.join(voc[i] for i in t['input_ids'][e, c] if i) for c in range(C)]
    q = {r.split(' [SEP]')[0] for r in rows}
    a = [r.split(' [SEP]')[1].strip() for r in rows]
    assert len(q) == 1 and len(set(a)) == C and set(a) <= answers, rows
    for k in ('visual_embeds', 'visual_attention_mask', 'visual_token_type_ids'):
        assert (t[k][e] == t[k][e, :1]).all(), k  # one image for every choice
EOF
}
check "synth: VCR rows: one question, 4 distinct answers, the same image in each choice" vcr_rows
flickr_rows() {
  "$python3" - "$work/a/flickr-val.safetensors" "$work/a/vocab.txt" <<'EOF'
import json, struct, sys
import numpy as np
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
dt = {'I64': np.int64, 'F32': np.float32}
t = {k: np.frombuffer(b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]], dt[v['dtype']]).reshape(v['shape'])
     for k, v in h.items() if k != '__metadata__'}
voc = open(sys.argv[2]).read().split()
pos, lab, vam = t['region_to_phrase_position'], t['labels'], t['visual_attention_mask']
assert pos.shape == (30, 32) and lab.shape == (30, 32, 8), h
for e in range(30):
    shape_at = [i for i, x in enumerate(t['input_ids'][e]) if voc[x] in ('circle', 'square', 'triangle', 'star')]
    assert pos[e, :2].tolist() == shape_at and (pos[e, 2:] == -1).all(), (pos[e], shape_at)
    for k in range(2):  # one-hot on a real region
        r = int(lab[e, k].argmax())
        assert lab[e, k].sum() == 1 and lab[e, k, r] == 1 and vam[e, r] == 1
    assert (lab[e, 2:] == 0).all()
EOF
}
check "synth: Flickr rows: slots 0, 1 at the caption's shape words, one-hot on a real region; the rest -1, no label" flickr_rows
train_task() {  # TASK: 3 steps on its train split, then kiln eval on its val split
  local m=("$src/models/visualbert-$1.json" "${tiny[@]}" --set batch=4)
  "$kiln" init "${m[@]}" -o "$work/w-$1.safetensors" --seed 2 2>/dev/null &&
  "$kiln" train "${m[@]}" --weights "$work/w-$1.safetensors" --data "$work/a/$1-train.safetensors" \
    -o "$work/t-$1.safetensors" --steps 3 --threads 2 --lr 1e-3 2>"$work/t-$1.log" &&
  tr '\r' '\n' <"$work/t-$1.log" | grep -q 'step 3/3 loss [0-9]' &&
  "$kiln" eval "${m[@]}" --weights "$work/t-$1.safetensors" --data "$work/a/$1-val.safetensors" >"$work/e-$1" &&
  grep -qx 'examples: 30' "$work/e-$1" && grep -q '^loss: [0-9]' "$work/e-$1" ||
    { cat "$work/t-$1.log" "$work/e-$1"; return 1; }
}
check "train, eval: the VCR model on its synth splits" train_task vcr
check "eval: VCR accuracy is the right choice's rate" grep -q '^accuracy: 0\.[0-9]*$' "$work/e-vcr"
check "train, eval: the Flickr30K model on its synth splits" train_task flickr
flickr_recall() {  # recall@1 from kiln run's logits and the labels, against kiln eval's
  local m=("$src/models/visualbert-flickr.json" "${tiny[@]}" --set batch=30)
  "$kiln" run "${m[@]}" --weights "$work/t-flickr.safetensors" --inputs "$work/a/flickr-val.safetensors" \
    -o "$work/flickr-out.safetensors" 2>/dev/null
  "$python3" - "$work/flickr-out.safetensors" "$work/a/flickr-val.safetensors" "$work/e-flickr" <<'EOF'
import json, struct, sys
import numpy as np
def load(p, name):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])[name]
    s, e = h['data_offsets']
    return np.frombuffer(b[8 + n + s:8 + n + e], np.float32).reshape(h['shape'])
logits, labels = load(sys.argv[1], 'logits'), load(sys.argv[2], 'labels')
phrase = labels.sum(-1) > 0
hits = np.take_along_axis(labels, logits.argmax(-1)[..., None], -1)[..., 0] > 0
got = dict(l.split(': ') for l in open(sys.argv[3]).read().split('\n') if l)
assert int(got['phrases']) == phrase.sum() == 60, (got, phrase.sum())
assert abs(float(got['recall_at_1']) - hits[phrase].mean()) < 1e-6, (got, hits[phrase].mean())
EOF
}
check "eval: Flickr30K recall_at_1 over the 60 phrases, as recomputed from kiln run's logits" flickr_recall

check "synth: unknown --set is exit 2" exit_code 2 "--set hidden: unknown" "$kiln" data synth -o "$work/x" --set hidden=3
check "synth: text_len too short is exit 1" exit_code 1 "text_len=12 is too short" \
  "$kiln" data synth -o "$work/x" --set text_len=12 --train 5 --val 1 --test 1
check "data: unknown subcommand is exit 2" exit_code 2 "unknown data subcommand" "$kiln" data fetch -o "$work/x"
"$python3" - "$work/a/vqa-val.safetensors" "$work/nolabels.safetensors" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
del h['labels']  # its bytes stay in the data section, unreferenced
hj = json.dumps(h).encode(); hj += b' ' * (-len(hj) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(hj)) + hj + b[8 + n:])
EOF
check "eval: data without labels is exit 1 naming the tensor" exit_code 1 "nolabels.safetensors: input \"labels\" is missing" \
  "$kiln" eval "${vqa[@]}" --set batch=4 --weights "$work/wv.safetensors" --data "$work/nolabels.safetensors"
check "eval: NLVR2 data for the VQA model (wrong shape) is exit 1" exit_code 1 "tensor \"labels\" has shape [30]" \
  "$kiln" eval "${vqa[@]}" --set batch=4 --weights "$work/wv.safetensors" --data "$work/a/nlvr2-val.safetensors"
check "eval: weights as data is exit 1" exit_code 1 "no examples of the model's inputs" \
  "$kiln" eval "${vqa[@]}" --set batch=4 --weights "$work/wv.safetensors" --data "$work/wv.safetensors"
check "eval: no --data is exit 2" exit_code 2 "--data" "$kiln" eval "${vqa[@]}" --weights "$work/wv.safetensors"
exit $fail
