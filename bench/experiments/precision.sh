#!/usr/bin/env bash
# Reduced precision on trained models (issue 14): is bf16 training as good as fp32, and
# does int8 inference keep a trained fp32 model's accuracy? The early-fusion model is
# pre-trained once as the fusion experiment does (bench/experiments/fusion.sh
# --pretrain-only with FUSIONS=early: same data, sizes, steps and learning rate); then for
# each task (VQA, NLVR2) and seed it is fine-tuned (kiln train --init, fusion.sh's
# fine-tuning steps and learning rate) in fp32 and in bf16 (--precision bf16); kiln eval
# scores every fp32 checkpoint on the validation split in fp32 and in int8
# (--precision int8), and every bf16 checkpoint in fp32. bench/experiments/precision_report.py
# writes REPORT_DIR/precision.md. Every number in the report comes from this run.
#
# usage: bench/experiments/precision.sh [--quick] [--report-dir DIR] [--work DIR]
#   default: fusion.sh's full sizes (hidden 128, 4 layers, 2000 pre-training and 1000
#            fine-tuning steps), seeds 1 2 3, tasks vqa and nlvr2: 13 kiln train commands
#            (14,000 steps) and 18 kiln eval commands
#   --quick: fusion.sh's tiny config (hidden 32, 1 layer, 60 steps) for the end-to-end
#            test (tests/precision_quick.sh), a few minutes
#   --report-dir DIR: where precision.md goes (default docs/experiments)
#   --work DIR: data, weights and logs (default: a temporary directory, removed at the end)
# environment: KILN (default build/kiln), THREADS (2), SEEDS ("1 2 3"), TASKS ("vqa nlvr2");
#   PRE_STEPS and STEPS as for fusion.sh.
set -euo pipefail
usage="$0 [--quick] [--report-dir DIR] [--work DIR]"
source "$(dirname "$0")/common.sh"
quick_flag=(); [ $quick = 1 ] && quick_flag=(--quick)
seeds=${SEEDS:-1 2 3} tasks=${TASKS:-vqa nlvr2}
t_start=$(date +%s.%N)


# Pre-training, and the fine-tuning settings, from fusion.sh (its setup.txt records them).
FUSIONS=early KILN=$kiln "$root/bench/experiments/fusion.sh" ${quick_flag[@]+"${quick_flag[@]}"} --work "$work" \
  --report-dir "$work" --pretrain-only
setting() { sed -n "s/^$1 //p" "$work/setup.txt"; }
read -ra model <<<"$(setting model)"
steps=$(setting steps)
lr=$(setting lr | sed 's/.*, \([^ ]*\) (fine-tuning)$/\1/')
threads=$(setting threads)
mapfile -t world < <(sed 's/^/--set\n/' "$work/world/config.txt")
pre=$work/runs/pretrain-early/w.safetensors
{ echo "seeds $seeds"; echo "tasks $tasks"; } >>"$work/setup.txt"

# The CPU and wall time of a command: "wall user sys" in FILE.
timed() { local out=$1; shift; /usr/bin/time -f "%e %U %S" -o "$out" "$@"; }

for task in $tasks; do
  extra=(); [ "$task" = nlvr2 ] && extra=(--set num_labels=2)
  m=("$root/models/visualbert-$task.json" "${world[@]}" "${model[@]}" "${extra[@]}")
  for seed in $seeds; do
    for prec in fp32 bf16; do
      dir=$work/runs/$task-$prec-s$seed
      mkdir -p "$dir"
      echo "precision.sh: $task, seed $seed: fine-tuning in $prec ($steps steps)" >&2
      timed "$dir/time.txt" "$kiln" train "${m[@]}" --init "$pre" --seed "$seed" --precision "$prec" \
        --data "$work/world/$task-train.safetensors" -o "$dir/w.safetensors" --lr "$lr" --steps "$steps" \
        --threads "$threads" 2>"$dir/train.log" || { tail -5 "$dir/train.log" >&2; exit 1; }
      evals=(fp32); [ $prec = fp32 ] && evals=(fp32 int8)
      for ev in "${evals[@]}"; do
        "$kiln" eval "${m[@]}" --weights "$dir/w.safetensors" --data "$work/world/$task-val.safetensors" \
          --precision "$ev" --threads "$threads" >"$dir/eval-$ev.txt" 2>"$dir/eval-$ev.log" \
          || { cat "$dir/eval-$ev.log" >&2; exit 1; }
        echo "precision.sh:   eval in $ev: $(grep -E '^(accuracy|vqa_accuracy): ' "$dir/eval-$ev.txt" | tr '\n' ' ')" >&2
      done
    done
  done
done
{
  echo "$(date +%s.%N) $t_start" | awk '{printf "total_seconds %.1f\n", $1 - $2}'
  echo "load_end $(cut -d' ' -f1-3 /proc/loadavg)"
} >>"$work/setup.txt"
/usr/bin/python3 "$root/bench/experiments/precision_report.py" "$work" "$report_dir"
echo "precision.sh: wrote $report_dir/precision.md" >&2
