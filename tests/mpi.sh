#!/usr/bin/env bash
# Data-parallel `kiln train` under mpirun (docs/distributed.md), on tiny VisualBERT VQA and
# pre-training configs, dropout off unless said: 2 processes x batch 2 end 5 steps with the
# weights of 1 process x batch 4 (within 1e-5 of the largest value), AdamW and SGD, and MLM whose
# shares mask different counts (also --accumulate 2 on 1 process), and with dropout 0.2
# (masks keyed by the row in the step's global batch), with every
# process's parameters bit-identical after every step (--check-replicas); with
# --accumulate 2, 1 process x batch 4 and 2 processes x batch 2 equal 1 x batch 8;
# pre-training data masked on the fly trains with identical replicas to 1 process's
# weights; a bad data file ends every process with exit 1; a process killed mid-run ends the job non-zero within 30 s,
# and its step-2 checkpoint, resumed on 1 process at the same global batch, ends where the
# uninterrupted run does; kiln eval and --eval-data on 2 processes give 1 process's metrics,
# printed once; --bucket-mb 0, small and large give the same bits. A kiln built without
# MPI says so when started as one of several processes (exit 1), and the rest is skipped
# (exit 77).
# usage: tests/mpi.sh KILN_BINARY mpi|nompi [MPIRUN]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
built=${2:?usage: mpi.sh KILN_BINARY mpi|nompi [MPIRUN]}
mpirun=${3:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # CI runs as root
export OMPI_MCA_rmaps_base_oversubscribe=1 KILN_POISON_BUFFERS=1
tiny=(--set layers=1 --set hidden=16 --set heads=2 --set intermediate=32 --set vocab=30
      --set visual_dim=12 --set text_len=5 --set regions=4 --set max_positions=8 --set dropout=0)
vqa="$root/models/visualbert-vqa.json"
pre="$root/models/visualbert-pretrain.json"
"$kiln" init "$vqa" -o "$work/vqa-w.safetensors" --seed 3 "${tiny[@]}" --set num_labels=5 >/dev/null
"$py" "$here/parity/make_case.py" --variant vqa --seed 5 -o "$work/vqa.safetensors" \
  "${tiny[@]}" --set num_labels=5 --set batch=12 >/dev/null

without_mpi() {  # started as one of 2 processes by a launcher: a clear refusal
  local rc=0
  OMPI_COMM_WORLD_SIZE=2 "$kiln" train "$vqa" --weights "$work/vqa-w.safetensors" --data "$work/vqa.safetensors" \
    "${tiny[@]}" --set num_labels=5 -o "$work/x.safetensors" 2>"$work/err" || rc=$?
  cat "$work/err"; echo "exit $rc (want 1)"
  [ "$rc" -eq 1 ] && grep -q "built without MPI" "$work/err" && [ ! -e "$work/x.safetensors" ]
}
if [ "$built" != mpi ]; then
  check "a kiln without MPI under a launcher of 2 processes says so (exit 1)" without_mpi
  echo "mpi: SKIP the data-parallel cases: this kiln was built without MPI (meson -Dmpi=disabled or no MPI found)"
  [ "$failed" -eq 0 ] && exit 77 || exit 1
fi
if [ -z "$mpirun" ]; then
  echo "mpi: SKIP: kiln has MPI but mpirun was not found (apt-get install openmpi-bin)"
  exit 77
fi

# train MODEL_ARGS... -- PROCS [ARGS...]: kiln train on PROCS processes (1: without mpirun).
train() {
  local procs=$1; shift
  if [ "$procs" -eq 1 ]; then "$kiln" train "$@"; else "$mpirun" -np "$procs" "$kiln" train "$@"; fi
}
close() {  # close A B: every tensor within 1e-5 of the largest |value| of A
  "$py" - "$here/parity" "$1" "$2" <<'PY'
import sys, numpy as np
sys.path.insert(0, sys.argv[1]); import safetensors_io as s
a, b = s.read(sys.argv[2]), s.read(sys.argv[3])
assert sorted(a) == sorted(b), set(a) ^ set(b)
top = max(float(np.max(np.abs(a[k]))) for k in a)
diff = max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)
print("largest |w| %.4g, largest difference %.3g (%.3g of it)" % (top, diff, diff / top))
sys.exit(0 if diff <= 1e-5 * top else 1)
PY
}
vqa_run=("$vqa" --weights "$work/vqa-w.safetensors" --data "$work/vqa.safetensors" --steps 5 --lr 1e-2
         --threads 1 "${tiny[@]}" --set num_labels=5)

same_as_one() {  # same_as_one NAME ARGS...: 2 x batch 2 against 1 x batch 4
  local name=$1; shift
  train 1 "$@" --set batch=4 -o "$work/$name-1.safetensors" || return 1
  train 2 "$@" --set batch=2 -o "$work/$name-2.safetensors" --check-replicas || return 1
  close "$work/$name-1.safetensors" "$work/$name-2.safetensors"
}
check "vqa, adamw: 2 processes x batch 2 equal 1 x batch 4 after 5 steps" same_as_one adamw "${vqa_run[@]}"
check "vqa, sgd: 2 processes x batch 2 equal 1 x batch 4 after 5 steps" \
  same_as_one sgd "${vqa_run[@]}" --optimizer sgd

# Pre-training with fixed labels, one masked token a row: every process's MLM mean is over
# as many tokens, so their average is the global mean (see docs/distributed.md).
"$kiln" init "$pre" -o "$work/pre-w.safetensors" --seed 3 "${tiny[@]}" >/dev/null
"$py" "$here/parity/make_case.py" --variant pretrain --seed 5 -o "$work/pre.safetensors" \
  "${tiny[@]}" --set batch=12 >/dev/null
"$py" - "$here/parity" "$work/pre.safetensors" <<'PY'
import sys, numpy as np
sys.path.insert(0, sys.argv[1]); import safetensors_io as s
t = s.read(sys.argv[2])
lab = np.full_like(t["labels"], -100); lab[:, 1] = t["input_ids"][:, 1]; t["labels"] = lab
s.write(sys.argv[2], t)
PY
check "pre-training, adamw: 2 processes x batch 2 equal 1 x batch 4 after 5 steps" \
  same_as_one pre "$pre" --weights "$work/pre-w.safetensors" --data "$work/pre.safetensors" --steps 5 \
  --lr 1e-2 --threads 1 "${tiny[@]}"

# MLM labels on 1 to 4 positions a row: the processes' and micro-batches' shares of a step
# have different counts; the loss divides by the step's global count (the loss_denominator
# pass), so the shares still make the whole batch's gradient (without it: 3 % apart).
"$py" - "$here/parity" "$work/pre.safetensors" "$work/mlm.safetensors" <<'PY'
import sys, numpy as np
sys.path.insert(0, sys.argv[1]); import safetensors_io as s
t = s.read(sys.argv[2])
lab = np.full_like(t["labels"], -100)
for e in range(lab.shape[0]):
    n = 1 + (e * 7) % 4
    lab[e, :n] = t["input_ids"][e, :n]
t["labels"] = lab; s.write(sys.argv[3], t)
PY
mlm_run=("$pre" --weights "$work/pre-w.safetensors" --data "$work/mlm.safetensors" --steps 5 --lr 1e-2 --threads 1
         "${tiny[@]}")
check "MLM with different label counts: 2 processes x batch 2 equal 1 x batch 4 after 5 steps" \
  same_as_one mlm "${mlm_run[@]}"
mlm_accumulates() {  # on one process: --accumulate 2 x batch 2 is one step of 4 (the same file)
  train 1 "${mlm_run[@]}" --set batch=2 --accumulate 2 -o "$work/mlm-acc.safetensors" || return 1
  close "$work/mlm-1.safetensors" "$work/mlm-acc.safetensors"
}
check "MLM with different label counts: --accumulate 2 x batch 2 equals batch 4 on 1 process" mlm_accumulates
with_dropout() {  # dropout masks keyed by the row in the step's global batch (cg_dropout_key's share)
  train 1 "${mlm_run[@]}" --set dropout=0.2 --set batch=4 -o "$work/drop-1.safetensors" || return 1
  train 2 "${mlm_run[@]}" --set dropout=0.2 --set batch=2 --check-replicas -o "$work/drop-2.safetensors" || return 1
  close "$work/drop-1.safetensors" "$work/drop-2.safetensors" || return 1  # rank-keyed masks: 5 % apart
  train 1 "${mlm_run[@]}" --set dropout=0.2 --set batch=2 --accumulate 2 -o "$work/drop-acc.safetensors" || return 1
  close "$work/drop-1.safetensors" "$work/drop-acc.safetensors"
}
check "dropout 0.2: 2 processes x batch 2 and --accumulate 2 x batch 2 equal 1 x batch 4" with_dropout
buckets() {  # the gradients' all-reduce in buckets: one per gradient, ~4 KiB (several), 25 MiB (one)
  for mb in 0 0.004 25; do
    train 2 "${vqa_run[@]}" --set batch=2 --bucket-mb $mb --check-replicas -o "$work/bucket-$mb.safetensors" \
      2>"$work/err" || return 1
    grep -o "in [0-9]* buckets\?" "$work/err" | tee "$work/buckets-$mb"
  done
  # 27 gradients (the pooler is not reached) of 14.1 KB in all: 27, several, one
  [ "$(cat "$work/buckets-0")" = "in 27 buckets" ] && [ "$(cat "$work/buckets-25")" = "in 1 bucket" ] &&
    [ "$(cut -d' ' -f2 "$work/buckets-0.004")" -gt 1 ] && [ "$(cut -d' ' -f2 "$work/buckets-0.004")" -lt 27 ] || return 1
  cmp "$work/bucket-0.safetensors" "$work/bucket-0.004.safetensors" &&
    cmp "$work/bucket-0.safetensors" "$work/bucket-25.safetensors" &&
    close "$work/adamw-1.safetensors" "$work/bucket-25.safetensors"
}
check "--bucket-mb 0, 0.004 and 25: bitwise the same weights, 1 process's" buckets

masked_on_the_fly() {  # kiln data synth's pre-training data: each process masks its rows
  "$kiln" data synth -o "$work/syn" --seed 5 --train 16 --val 1 --test 1 >/dev/null 2>&1 || return 1
  local syn=(--set hidden=16 --set layers=1 --set heads=2 --set intermediate=32 --set vocab=54
             --set visual_dim=32 --set regions=8 --set text_len=24 --set max_positions=32 --set dropout=0)
  "$kiln" init "$pre" -o "$work/syn-w.safetensors" --seed 3 "${syn[@]}" >/dev/null || return 1
  local run=("$pre" --weights "$work/syn-w.safetensors" --data "$work/syn/pretrain-train.safetensors" --steps 3
             --threads 1 "${syn[@]}")
  train 2 "${run[@]}" --set batch=2 -o "$work/syn-2.safetensors" --check-replicas || return 1
  train 1 "${run[@]}" --set batch=4 -o "$work/syn-1.safetensors" || return 1
  close "$work/syn-1.safetensors" "$work/syn-2.safetensors"
}
check "pre-training data masked on the fly: identical replicas, the weights of 1 x batch 4" masked_on_the_fly

bad_data() {  # one process's failure ends them all with exit 1, not a hang
  local rc=0
  timeout 60 "$mpirun" -np 2 "$kiln" train "${vqa_run[@]}" --set batch=2 --data "$work/missing.safetensors" \
    -o "$work/bad.safetensors" 2>"$work/err" || rc=$?
  grep "kiln:" "$work/err"; echo "exit $rc (want 1)"
  [ "$rc" -eq 1 ] && grep -q "missing.safetensors" "$work/err"
}
check "a missing data file: exit 1 on every process" bad_data

killed() {  # kill -9 one process while the other waits in a step: the job ends within 30 s
  KILN_TEST_AWAIT_SIGNAL_AT_STEP=3 "$mpirun" -np 2 "$kiln" train "${vqa_run[@]}" --set batch=2 \
    --checkpoint-every 1 -o "$work/k.safetensors" >"$work/kout" 2>&1 &
  local job=$! rc=0 start
  for _ in $(seq 600); do
    [ "$(grep -c "awaiting a signal" "$work/kout")" -ge 1 ] && break
    sleep 0.1
  done
  local victim; victim=$(pgrep -n -f "$kiln train" -P "$job" || pgrep -n -f "$kiln train")
  start=$(date +%s)
  kill -9 "$victim"
  wait "$job" || rc=$?
  local took=$(($(date +%s) - start))
  echo "job exit $rc after $took s"
  [ "$rc" -ne 0 ] && [ "$took" -le 30 ]
}
check "a process killed in step 3: the job ends non-zero within 30 s" killed
accumulates() {  # --accumulate 2: one step of 8 examples, on 1 and on 2 processes
  train 1 "${vqa_run[@]}" --set batch=8 -o "$work/acc-ref.safetensors" || return 1
  train 1 "${vqa_run[@]}" --set batch=4 --accumulate 2 -o "$work/acc-1.safetensors" || return 1
  close "$work/acc-ref.safetensors" "$work/acc-1.safetensors" || return 1
  train 2 "${vqa_run[@]}" --set batch=2 --accumulate 2 --check-replicas -o "$work/acc-2.safetensors" || return 1
  close "$work/acc-ref.safetensors" "$work/acc-2.safetensors"
}
check "--accumulate 2: 1 x batch 4 and 2 processes x batch 2 equal 1 x batch 8" accumulates

resumed_on_one() {  # its step-2 checkpoint, resumed on 1 process: the uninterrupted adamw run
  train 1 "${vqa_run[@]}" --set batch=4 --resume "$work/k.step-2.safetensors" -o "$work/resumed.safetensors" ||
    return 1
  close "$work/adamw-1.safetensors" "$work/resumed.safetensors"
}
check "its step-2 checkpoint resumed on 1 process at the same global batch: the uninterrupted run" resumed_on_one
same_metrics() {  # same_metrics A B: the same lines; the loss (summed in another order) within 1e-6
  "$py" - "$1" "$2" <<'PY'
import sys
a, b = (dict(l.split(": ", 1) for l in open(p).read().split("\n") if ": " in l) for p in sys.argv[1:3])
print(a, b, sep="\n")
assert a.keys() == b.keys() and "accuracy" in a, "different metrics"
assert all(a[k] == b[k] for k in a if k != "loss"), "different values"
assert abs(float(a["loss"]) - float(b["loss"])) <= 1e-6 * max(1.0, abs(float(a["loss"]))), "different loss"
PY
}
eval_sharded() {  # kiln eval on 2 processes: each scores its share; rank 0 prints the sums
  local ev=("$vqa" --weights "$work/vqa-w.safetensors" --data "$work/vqa.safetensors" --threads 1 "${tiny[@]}"
            --set num_labels=5)
  for b in 4 5; do  # 12 examples: 3 full batches; 2 full batches and a rest of 2
    "$kiln" eval "${ev[@]}" --set batch=$b >"$work/e1" || return 1
    "$mpirun" -np 2 "$kiln" eval "${ev[@]}" --set batch=$b >"$work/e2" || return 1
    same_metrics "$work/e1" "$work/e2" || return 1
  done
}
check "kiln eval on 2 processes: the metrics of 1 process, printed once" eval_sharded
eval_in_training() {  # --eval-data on 2 processes: one line a time, the numbers of 1 process
  train 1 "${vqa_run[@]}" --steps 2 --set batch=4 --eval-data "$work/vqa.safetensors" --eval-every 1 \
    -o "$work/ev-1.safetensors" 2>"$work/ev1" || return 1
  train 2 "${vqa_run[@]}" --steps 2 --set batch=2 --eval-data "$work/vqa.safetensors" --eval-every 1 \
    -o "$work/ev-2.safetensors" 2>"$work/ev2" || return 1
  grep "eval step" "$work/ev1" "$work/ev2"
  [ "$(grep -c "eval step 0:" "$work/ev2")" -eq 1 ] && [ "$(grep -c "eval step 2:" "$work/ev2")" -eq 1 ] || return 1
  for s in 0 2; do  # " name value" pairs -> "name: value" lines
    for n in 1 2; do
      grep -o "eval step $s:.*" "$work/ev$n" | cut -d: -f2- | xargs -n2 | sed 's/ /: /' >"$work/m$n"
    done
    same_metrics "$work/m1" "$work/m2" || return 1
  done
}
check "--eval-data on 2 processes: one line each time, the numbers of 1 process" eval_in_training
echo "mpi: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
