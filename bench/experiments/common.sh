# Shared by the experiments on kiln's synthetic world (fusion.sh, ablation.sh; sourced,
# not run): the options every one takes, the world and the setup record, and train_run.
#
# Before sourcing: `usage` (the script's usage line). Sourcing parses "$@": --quick,
# --report-dir DIR, --work DIR, and --pretrain-only when the script sets
# allow_pretrain_only=1; it sets root, kiln, py, quick, report_dir, work (a temporary
# directory removed at exit unless --work), pretrain_only, threads.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kiln=${KILN:-$root/build/kiln}
py=/usr/bin/python3
quick=0 report_dir=$root/docs/experiments work= pretrain_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --report-dir) report_dir=${2:?--report-dir needs a value}; shift ;;
    --work) work=${2:?--work needs a value}; shift ;;
    --pretrain-only) [ "${allow_pretrain_only:-0}" = 1 ] || { echo "usage: $usage" >&2; exit 2; }; pretrain_only=1 ;;
    *) echo "usage: $usage" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$work" ]; then work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
mkdir -p "$work" "$report_dir"
threads=${THREADS:-2}
now() { date +%s.%N; }

# make_world: the data, one world (seed 0) for every run (the seeds vary initialisation,
# order, dropout), from the arrays synth and model; sets `sets` (the world's --set list and
# the model's) and writes WORK/setup.txt's first lines from mode, model, synth, seeds,
# pre_steps, steps, every, pre_every, pre_lr, lr and threads.
make_world() {
  "$kiln" data synth -o "$work/world" --seed 0 "${synth[@]}" 2>"$work/synth.log"
  local world; mapfile -t world < <(sed 's/^/--set\n/' "$work/world/config.txt")
  sets=("${world[@]}" "${model[@]}")
  {
    echo "mode $mode"; echo "model ${model[*]}"; echo "data ${synth[*]}"; echo "seeds $seeds"
    echo "pre_steps $pre_steps"; echo "steps $steps"; echo "eval_every $every (pre-training $pre_every)"; echo "lr $pre_lr (pre-training), $lr (fine-tuning)"
    echo "threads $threads"; echo "machine $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
    echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "load_start $(cut -d' ' -f1-3 /proc/loadavg)"
  } >"$work/setup.txt"
}

task_sets() {  # the --set list of a task's data (DATA of train_run)
  case $1 in nlvr2) echo --set num_labels=2 ;; vcr) echo "${vcr_sets:-}" ;; *) ;; esac
}
# train_run DIR MODEL DATA START_FLAGS...: train models/MODEL.json on WORK/world/DATA-train,
# scoring the weights on the validation split every $every_now steps (kiln train
# --eval-data: one compilation, no checkpoints; pre-training data, pretrain and TASK-mlm,
# is scored on its static draw); DIR gets train.log (progress and "eval step K: ..." lines),
# time.txt (wall seconds) and cpu.txt (user + system seconds of the command).
train_run() {
  local dir=$1 m=$2 data=$3; shift 3
  local extra; read -ra extra <<<"$(task_sets "$data")"
  local eval_data=$data-val
  case $data in pretrain | *-mlm) eval_data=$data-static-val ;; esac
  mkdir -p "$dir"
  local t0; t0=$(now)
  /usr/bin/time -o "$dir/cpu.txt" -f "%U %S" \
    "$kiln" train "$root/models/$m.json" "${sets[@]}" "${extra[@]}" "$@" \
    --data "$work/world/$data-train.safetensors" -o "$dir/w.safetensors" --lr "$lr_now" \
    --steps "$steps_now" --eval-data "$work/world/$eval_data.safetensors" --eval-every "$every_now" \
    --threads "$threads" 2>"$dir/train.log"
  echo "$(now) $t0" | awk '{printf "%.3f\n", $1 - $2}' >"$dir/time.txt"
  awk '{printf "%.2f\n", $1 + $2}' "$dir/cpu.txt" >"$dir/cpu.tmp" && mv "$dir/cpu.tmp" "$dir/cpu.txt"
  grep "^eval step $steps_now:" "$dir/train.log" | sed "s/^/$(basename "$0"):   $(basename "$dir") /" >&2
}
