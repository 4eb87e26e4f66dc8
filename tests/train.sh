#!/usr/bin/env bash
# `kiln train` end to end on a tiny pre-training config and a fixed 32-example dataset
# (tests/parity/make_case.py): 30 AdamW steps lower the loss over the whole dataset (kiln run,
# dropout off) by a clear margin; a 20-step run equals its step-10 checkpoint resumed for
# 10 more, bitwise; SIGINT (at a fixed step, and a real signal mid-run) checkpoints, exits
# 130 and resumes bitwise; the compiled optimiser matches the C oracle; parameters the loss
# does not reach are left alone; and bad data or flags fail with exit 1 or 2.
# usage: tests/train.sh KILN_BINARY
set -euo pipefail
source "$(dirname "$0")/lib.sh"
oracle=${2:?usage: train.sh KILN_BINARY TRAIN_ORACLE_BINARY}  # tests/train_oracle.c
model="$root/models/visualbert-pretrain.json"
tiny=(--set layers=1 --set hidden=16 --set heads=2 --set intermediate=32 --set vocab=30
      --set visual_dim=12 --set text_len=5 --set regions=4 --set max_positions=8)
train=("$kiln" train "$model" --weights "$work/w.safetensors" --data "$work/data.safetensors"
       --seed 1 --threads 2 "${tiny[@]}" --set batch=4)
loss_of() {  # the loss over all 32 examples, dropout off
  "$kiln" run "$model" --weights "$1" --inputs "$work/data.safetensors" -o "$work/eval.safetensors" \
    "${tiny[@]}" --set batch=32 --set dropout=0 --threads 2 2>/dev/null
  "$py" -c 'import sys; sys.path.insert(0, sys.argv[1]); import safetensors_io as s
print(float(s.read(sys.argv[2])["loss"]))' "$here/parity" "$work/eval.safetensors"
}
exit_code() {  # exit_code WANT COMMAND...: the command fails with exactly WANT
  local want=$1; shift
  local rc=0; "$@" || rc=$?
  echo "exit $rc (want $want)"; [ "$rc" -eq "$want" ]
}

"$kiln" init "$model" -o "$work/w.safetensors" --seed 3 "${tiny[@]}" --set batch=4 2>/dev/null
"$py" "$here/parity/make_case.py" --variant pretrain --seed 5 -o "$work/data.safetensors" \
  "${tiny[@]}" --set batch=32 >/dev/null

learns() {
  "${train[@]}" --steps 30 --lr 1e-2 -o "$work/trained.safetensors" || return 1
  local before after; before=$(loss_of "$work/w.safetensors"); after=$(loss_of "$work/trained.safetensors")
  echo "loss before $before, after 30 steps $after"
  "$py" -c 'import sys; b, a = map(float, sys.argv[1:]); sys.exit(0 if a < b - 0.2 else 1)' "$before" "$after"
}
check "train: 30 adamw steps lower the loss" learns

learns_sgd() {
  "${train[@]}" --steps 30 --lr 0.1 --optimizer sgd -o "$work/sgd.safetensors" || return 1
  local before after; before=$(loss_of "$work/w.safetensors"); after=$(loss_of "$work/sgd.safetensors")
  echo "loss before $before, after 30 sgd steps $after"
  "$py" -c 'import sys; b, a = map(float, sys.argv[1:]); sys.exit(0 if a < b - 0.1 else 1)' "$before" "$after"
}
check "train: 30 sgd steps lower the loss" learns_sgd

resumes() {
  "${train[@]}" --steps 20 --lr 1e-2 --checkpoint-every 10 -o "$work/full.safetensors" || return 1
  "${train[@]}" --steps 20 --lr 1e-2 --resume "$work/full.step-10.safetensors" -o "$work/resumed.safetensors" || return 1
  cmp "$work/full.safetensors" "$work/resumed.safetensors"
}
check "train: 20 steps equal 10 steps + --resume for 10 more (bitwise)" resumes

# Interrupted runs: SIGINT finishes the step, writes a checkpoint, says how to resume and
# exits with 130; resuming ends bitwise where an uninterrupted run (full, 20 steps) does.
# The signal comes at a fixed step so that the test does not race the loop: raised by the
# process itself (KILN_TEST_INTERRUPT_AT_STEP), and a real `kill -INT` from here while the
# process waits in step 12 (KILN_TEST_AWAIT_SIGNAL_AT_STEP).
need_full() {  # the uninterrupted 20-step run (made by the resume check above)
  [ -f "$work/full.safetensors" ] || "${train[@]}" --steps 20 --lr 1e-2 -o "$work/full.safetensors"
}
interrupted_at_7() {
  local rc=0
  need_full || return 1
  KILN_TEST_INTERRUPT_AT_STEP=7 "${train[@]}" --steps 20 --lr 1e-2 -o "$work/int.safetensors" 2>"$work/int.log" || rc=$?
  cat "$work/int.log"
  [ "$rc" -eq 130 ] && grep -q "interrupted after step 7 of 20" "$work/int.log" &&
    grep -q -- "--resume $work/int.step-7.safetensors" "$work/int.log" || return 1
  [ ! -f "$work/int.safetensors" ] || { echo "an interrupted run wrote -o"; return 1; }
  "${train[@]}" --steps 20 --lr 1e-2 --resume "$work/int.step-7.safetensors" -o "$work/int.safetensors" || return 1
  cmp "$work/full.safetensors" "$work/int.safetensors"
}
check "train: interrupted at step 7 (exit 130) and resumed equals 20 steps (bitwise)" interrupted_at_7

real_sigint() {
  need_full || return 1
  KILN_TEST_AWAIT_SIGNAL_AT_STEP=12 "${train[@]}" --steps 20 --lr 1e-2 -o "$work/sig.safetensors" 2>"$work/sig.log" &
  local pid=$! rc=0 waited=0
  until grep -q "awaiting a signal in step 12" "$work/sig.log"; do
    sleep 0.1; waited=$((waited + 1))
    if [ "$waited" -gt 3000 ] || ! kill -0 "$pid" 2>/dev/null; then echo "no hook line"; cat "$work/sig.log"; return 1; fi
  done
  kill -INT "$pid"
  wait "$pid" || rc=$?
  tail -3 "$work/sig.log"
  [ "$rc" -eq 130 ] && grep -q "interrupted after step 12 of 20" "$work/sig.log" || { echo "exit $rc, want 130"; return 1; }
  "${train[@]}" --steps 20 --lr 1e-2 --resume "$work/sig.step-12.safetensors" -o "$work/sig.safetensors" || return 1
  cmp "$work/full.safetensors" "$work/sig.safetensors"
}
check "train: a real SIGINT during step 12 exits 130; the checkpoint resumes bitwise" real_sigint

# The compiled optimiser (the default) against the first version's update in C
# (tests/train_oracle.c, the oracle, through the public API): 10 steps from the same weights, checkpoints with
# the optimiser state compared per kind (weights, adam.m, adam.v / sgd.m). Tolerance: the
# largest difference of a kind <= 1e-5 of the largest value of that kind. Both compute the
# same gradients from the same weights; they differ only in rounding (f32 graph ops vs the
# oracle's double intermediates), a few ulps per step, which 10 steps keep near 1e-7
# relative (measured 1.1e-7 for the weights, 3e-7 for adam.m), while a wrong formula (a
# missing bias correction, decay on a bias, no clipping) moves weights by ~lr = 1e-2.
graph_matches_c() {  # graph_matches_c OPTIMIZER
  "${train[@]}" --steps 10 --lr 1e-2 --optimizer "$1" --checkpoint-every 10 -o "$work/g-$1.safetensors" || return 1
  "$oracle" "${train[@]:2}" --steps 10 --lr 1e-2 --optimizer "$1" --checkpoint-every 10 \
    -o "$work/c-$1.safetensors" || return 1
  "$py" - "$here/parity" "$work/g-$1.step-10.safetensors" "$work/c-$1.step-10.safetensors" <<'PY'
import sys, numpy as np
sys.path.insert(0, sys.argv[1]); import safetensors_io as s
g, c = s.read(sys.argv[2]), s.read(sys.argv[3])
assert sorted(g) == sorted(c), "different tensors"
kinds = {}
for k in c:
    if k.startswith("train."):
        assert int(g[k]) == int(c[k]), k
        continue
    kind = k.split(".")[0] + "." + k.split(".")[1] if k.startswith(("adam.", "sgd.")) else "weights"
    diff = float(np.max(np.abs(g[k].astype(np.float64) - c[k].astype(np.float64))))
    big = float(np.max(np.abs(c[k].astype(np.float64))))
    d0, b0 = kinds.get(kind, (0.0, 0.0))
    kinds[kind] = (max(d0, diff), max(b0, big))
ok = True
for kind, (diff, big) in sorted(kinds.items()):
    print("%-8s max diff %.3g, max value %.3g, ratio %.3g" % (kind, diff, big, diff / big))
    ok &= diff <= 1e-5 * big
sys.exit(0 if ok and len(kinds) >= 2 else 1)
PY
}
check "train: compiled adamw matches the C optimiser over 10 steps (1e-5 of max)" graph_matches_c adamw
check "train: compiled sgd matches the C optimiser over 10 steps (1e-5 of max)" graph_matches_c sgd

# Parameters the loss does not reach (the VQA head reads the [MASK] token, not the pooler)
# keep their values and a zero state, as torch.optim skips them: no weight decay either.
vqa_model="$root/models/visualbert-vqa.json"
"$kiln" init "$vqa_model" -o "$work/wq.safetensors" --seed 3 "${tiny[@]}" --set batch=4 --set num_labels=6 2>/dev/null
"$py" "$here/parity/make_case.py" --variant vqa --seed 5 -o "$work/vqa-data.safetensors" \
  "${tiny[@]}" --set batch=16 --set num_labels=6 >/dev/null
unreached_untouched() {  # OPTIMIZER [c]
  local cmd=("$kiln" train)
  [ "${2:-}" = c ] && cmd=("$oracle")
  "${cmd[@]}" "$vqa_model" --weights "$work/wq.safetensors" \
    --data "$work/vqa-data.safetensors" --seed 1 --threads 2 "${tiny[@]}" --set batch=4 --set num_labels=6 \
    --steps 5 --lr 1e-2 --optimizer "$1" --checkpoint-every 5 -o "$work/q.safetensors" || return 1
  "$py" - "$here/parity" "$work/wq.safetensors" "$work/q.step-5.safetensors" <<'PY'
import sys; sys.path.insert(0, sys.argv[1]); import numpy as np, safetensors_io as s
w0, ck = s.read(sys.argv[2]), s.read(sys.argv[3])
pooler = [n for n in w0 if n.startswith("visual_bert.pooler.")]
assert len(pooler) == 2, pooler
for n in pooler:
    assert np.array_equal(w0[n], ck[n]), f"{n} changed"
    for k in ck:
        if k.endswith("." + n) and k.split(".")[0] in ("adam", "sgd"):
            assert not ck[k].any(), f"{k} is not zero"
moved = [n for n in w0 if n not in pooler and not np.array_equal(w0[n], ck[n])]
assert "cls.weight" in moved and len(moved) > 20, moved
print(f"pooler unchanged; {len(moved)} of {len(w0) - 2} other parameters moved")
PY
}
check "train: adamw leaves the unreached pooler alone (compiled)" unreached_untouched adamw
check "train: adamw leaves the unreached pooler alone (C oracle)" unreached_untouched adamw c
check "train: sgd leaves the unreached pooler alone (compiled)" unreached_untouched sgd

# Bad data: a tensor with the wrong trailing shape, and fewer examples than a batch.
"$py" - "$here/parity" "$work" <<'PY'
import sys; sys.path.insert(0, sys.argv[1]); import safetensors_io as s
d = s.read(sys.argv[2] + "/data.safetensors")
bad = dict(d); bad["visual_embeds"] = d["visual_embeds"][:, :, :5].copy()
s.write(sys.argv[2] + "/bad-shape.safetensors", bad)
s.write(sys.argv[2] + "/few.safetensors", {k: v[:3].copy() for k, v in d.items()})
s.write(sys.argv[2] + "/no-labels.safetensors", {k: v for k, v in d.items() if k != "labels"})
PY
bad_data() { exit_code 1 "$kiln" train "$model" --weights "$work/w.safetensors" --data "$1" -o "$work/x.safetensors" \
  --steps 2 "${tiny[@]}" --set batch=4; }
check "train: wrong trailing shape in the data is exit 1" bad_data "$work/bad-shape.safetensors"
check "train: fewer examples than a batch is exit 1" bad_data "$work/few.safetensors"
check "train: a missing input is exit 1" bad_data "$work/no-labels.safetensors"
check "train: resuming with other --steps is exit 1" exit_code 1 "${train[@]}" --steps 30 \
  --resume "$work/full.step-10.safetensors" -o "$work/x.safetensors"
ckpt_not_regular() {  # a checkpoint path (OUT.step-N) that is a symlink or a FIFO: exit 1, kept
  local d="$work/ckpt"; mkdir -p "$d"
  ln -sf "$work/w.safetensors" "$d/c.step-1.safetensors"
  mkfifo "$d/c.step-2.safetensors"
  local rc=0; "${train[@]}" --steps 2 --checkpoint-every 1 -o "$d/c.safetensors" 2>"$d/err" || rc=$?
  cat "$d/err"; [ "$rc" -eq 1 ] && grep -q "c.step-1.safetensors: is a symbolic link" "$d/err" || return 1
  [ -L "$d/c.step-1.safetensors" ] && [ -p "$d/c.step-2.safetensors" ] && ! ls "$d"/*.tmp.* 2>/dev/null || return 1
  rm "$d/c.step-1.safetensors"; rc=0
  "${train[@]}" --steps 2 --checkpoint-every 1 -o "$d/c.safetensors" 2>"$d/err" || rc=$?
  cat "$d/err"; [ "$rc" -eq 1 ] && grep -q "c.step-2.safetensors: is a FIFO" "$d/err" && [ -p "$d/c.step-2.safetensors" ]
}
check "train: a checkpoint path that is a symlink or a FIFO is refused and left alone (exit 1)" ckpt_not_regular
check "train: missing --data is exit 2" exit_code 2 "$kiln" train "$model" --weights "$work/w.safetensors" -o "$work/x.safetensors"
check "train: bad --optimizer is exit 2" exit_code 2 "${train[@]}" --optimizer adam -o "$work/x.safetensors"
check "train: bad --lr is exit 2" exit_code 2 "${train[@]}" --lr -1 -o "$work/x.safetensors"
check "train: bad --steps is exit 2" exit_code 2 "${train[@]}" --steps 0 -o "$work/x.safetensors"
echo "train: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
