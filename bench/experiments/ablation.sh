#!/usr/bin/env bash
# The VisualBERT paper's ablation table (issue 17) on kiln's synthetic grounded world, in one
# command. The full recipe: text-only MLM pre-training (the "BERT initialisation",
# models/bert-pretrain.json) -> task-agnostic pre-training (MLM + sentence-image on the
# pretrain split, kiln train --init from the text-only weights) -> task-specific pre-training
# (MLM alone, --loss masked_lm_loss, on the task's own text and images: TASK-mlm splits of
# kiln data synth) -> fine-tuning, for VQA, NLVR2, VCR and Flickr30K. The ablations each
# change one thing: without task-agnostic pre-training (text-only -> task-specific), without
# early fusion (the late files at every stage), without the text initialisation (the
# task-agnostic stage starts from kiln init), without the sentence-image objective (the
# task-agnostic stage with --loss masked_lm_loss, every caption pair matched), without
# task-specific pre-training; plus "none" (fine-tuning from kiln init) for reference.
# Pre-training runs once per variant (seed 0); fine-tuning per seed. Then
# bench/experiments/ablation_report.py writes REPORT_DIR/ablation.md: per task and
# ablation the change of the validation score against the full recipe (mean and spread
# over the seeds), the direction the paper reports, and whether they agree.
# Shares the options, the world and train_run with fusion.sh (bench/experiments/common.sh).
#
# usage: bench/experiments/ablation.sh [--quick] [--report-dir DIR] [--work DIR]
#   default: fusion.sh's model (hidden 128, 4 layers, 4 heads, batch 32; VCR batch 8, i.e.
#            32 sequences), dropout 0, AdamW; 1000 steps for the text-only and each
#            task-agnostic pre-training (lr 1e-3), 400 for task-specific pre-training (1e-3),
#            500 for fine-tuning (3e-4), 2 seeds: 1 + 4 + 20 pre-training and 56 fine-tuning
#            runs, about 4000 s of CPU time (user + system, measured per step on a loaded
#            machine: docs/experiments/ablation-notes.md), i.e. about 35 minutes on 2 idle
#            cores. Half of fusion.sh's 2000/1000 steps, to fit 45 minutes.
#   --quick: a tiny config (hidden 32, 1 layer, 40 steps a stage) for the end-to-end test
#            (tests/ablation_quick.sh)
#   --report-dir DIR: where ablation.md goes (default docs/experiments)
#   --work DIR: data, weights and logs (default: a temporary directory, removed at the end)
# environment: KILN (default build/kiln), THREADS (2), SEEDS ("1 2"), PRE_STEPS, TS_STEPS,
#   STEPS, EVAL_EVERY, PRE_EVAL_EVERY override the sizes below; TASKS ("vqa nlvr2 vcr
#   flickr") the tasks.
set -euo pipefail
usage="$0 [--quick] [--report-dir DIR] [--work DIR]"
source "$(dirname "$0")/common.sh"
if [ $quick = 1 ]; then
  mode=quick
  model=(--set hidden=32 --set layers=1 --set heads=2 --set intermediate=64 --set batch=16 --set dropout=0)
  vcr_sets="--set batch=4"
  synth=(--train 256 --val 64 --test 16)
  seeds=${SEEDS:-1 2}; pre_steps=${PRE_STEPS:-40}; ts_steps=${TS_STEPS:-20}; steps=${STEPS:-40}
  every=${EVAL_EVERY:-20}; pre_every=${PRE_EVAL_EVERY:-20}
  pre_lr=2e-3 lr=2e-3
else
  mode=full
  model=(--set hidden=128 --set layers=4 --set heads=4 --set intermediate=512 --set batch=32
         --set dropout=0)
  vcr_sets="--set batch=8"
  synth=(--train 4000 --val 512 --test 512)
  seeds=${SEEDS:-1 2}; pre_steps=${PRE_STEPS:-1000}; ts_steps=${TS_STEPS:-400}; steps=${STEPS:-500}
  every=${EVAL_EVERY:-100}; pre_every=${PRE_EVAL_EVERY:-250}
  pre_lr=1e-3 lr=3e-4
fi
tasks=${TASKS:-vqa nlvr2 vcr flickr}
t_start=$(now)
make_world
echo "ts_steps $ts_steps" >>"$work/setup.txt"
echo "tasks $tasks" >>"$work/setup.txt"
runs=$work/runs

# init FILE OUT SEED [SETS...]: kiln init of models/FILE.json
init() {
  local m=$1 out=$2 seed=$3; shift 3
  "$kiln" init "$root/models/$m.json" "${sets[@]}" "$@" --seed "$seed" -o "$out" 2>/dev/null
}
pre() {  # pre DIR MODEL DATA START_FLAGS...: a pre-training stage ($pre_steps steps, seed 0)
  echo "ablation.sh: pre-training $(basename "$1") ($pre_steps steps)" >&2
  steps_now=$pre_steps every_now=$pre_every lr_now=$pre_lr train_run "$@" --seed 0
}
ts() {  # ts DIR MODEL TASK FROM: task-specific pre-training (MLM alone) from FROM's weights
  echo "ablation.sh: task-specific pre-training $(basename "$1") ($ts_steps steps)" >&2
  steps_now=$ts_steps every_now=$ts_steps lr_now=$pre_lr train_run "$1" "$2" "$3-mlm" \
    --init "$4/w.safetensors" --loss masked_lm_loss --seed 0
}

# Text-only (the "BERT initialisation") and the task-agnostic stage's four variants.
init bert-pretrain "$work/init-bert.safetensors" 0
pre "$runs/pre-text" bert-pretrain pretrain --weights "$work/init-bert.safetensors"
pre "$runs/pre-agnostic" visualbert-pretrain pretrain --init "$runs/pre-text/w.safetensors"
pre "$runs/pre-agnostic-late" visualbert-pretrain-late pretrain --init "$runs/pre-text/w.safetensors"
init visualbert-pretrain "$work/init-pretrain.safetensors" 0
pre "$runs/pre-agnostic-no-text" visualbert-pretrain pretrain --weights "$work/init-pretrain.safetensors"
pre "$runs/pre-agnostic-no-si" visualbert-pretrain pretrain --init "$runs/pre-text/w.safetensors" \
  --loss masked_lm_loss

# Per task: task-specific pre-training of each variant, then fine-tuning per seed. Each
# configuration: its fine-tuning's start (a pre-training run, or "none": kiln init) and
# whether it uses the late files.
configs=(full no-agnostic no-early-fusion no-text-init no-sentence-image no-task-specific none)
for task in $tasks; do
  ts "$runs/ts-$task" visualbert-pretrain "$task" "$runs/pre-agnostic"
  ts "$runs/ts-$task-no-agnostic" visualbert-pretrain "$task" "$runs/pre-text"
  ts "$runs/ts-$task-late" visualbert-pretrain-late "$task" "$runs/pre-agnostic-late"
  ts "$runs/ts-$task-no-text" visualbert-pretrain "$task" "$runs/pre-agnostic-no-text"
  ts "$runs/ts-$task-no-si" visualbert-pretrain "$task" "$runs/pre-agnostic-no-si"
  read -ra extra <<<"$(task_sets "$task")"
  for seed in $seeds; do
    echo "ablation.sh: $task, seed $seed: fine-tuning ${#configs[@]} configurations ($steps steps)" >&2
    for c in "${configs[@]}"; do
      m=visualbert-$task start=
      case $c in
        full) start=ts-$task ;;
        no-agnostic) start=ts-$task-no-agnostic ;;
        no-early-fusion) start=ts-$task-late m=visualbert-$task-late ;;
        no-text-init) start=ts-$task-no-text ;;
        no-sentence-image) start=ts-$task-no-si ;;
        no-task-specific) start=pre-agnostic ;;
      esac
      if [ -n "$start" ]; then from=(--init "$runs/$start/w.safetensors")
      else init "$m" "$work/init-$task-$seed.safetensors" "$seed" "${extra[@]}"; from=(--weights "$work/init-$task-$seed.safetensors")
      fi
      steps_now=$steps every_now=$every lr_now=$lr train_run "$runs/ft-$task-$c-s$seed" "$m" "$task" \
        "${from[@]}" --seed "$seed"
      echo "$start" >"$runs/ft-$task-$c-s$seed/start.txt"
    done
  done
done
echo "$(now) $t_start" | awk '{printf "total_seconds %.1f\n", $1 - $2}' >>"$work/setup.txt"
echo "load_end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$work/setup.txt"
"$py" "$root/bench/experiments/ablation_report.py" "$work" "$report_dir"
echo "ablation.sh: wrote $report_dir/ablation.md ($(sed -n 's/^total_seconds //p' "$work/setup.txt") s)" >&2
