#!/usr/bin/env bash
# Entity grounding read from the attention heads (issue 17; the VisualBERT paper's Fig. 3)
# on kiln's synthetic world: the early and the late model pre-trained as
# bench/experiments/fusion.sh does (its --pretrain-only run: same data, sizes and steps),
# then bench/experiments/grounding.py scores every layer and head, pre-trained and initial
# weights, and writes REPORT_DIR/grounding.md with its SVG plot.
#
# usage: bench/experiments/grounding.sh [--quick] [--report-dir DIR] [--work DIR]
#   --quick: fusion.sh's tiny config (the slow test suite's tests/fusion_quick.sh runs it)
#   --report-dir DIR: default docs/experiments; --work DIR: default a temporary directory
# environment: KILN (default build/kiln), THREADS, PRE_STEPS as for fusion.sh
set -euo pipefail
usage="$0 [--quick] [--report-dir DIR] [--work DIR]"
source "$(dirname "$0")/common.sh"
quick_flag=(); [ $quick = 1 ] && quick_flag=(--quick)
"$root/bench/experiments/fusion.sh" ${quick_flag[@]+"${quick_flag[@]}"} --work "$work" --report-dir "$report_dir" --pretrain-only
/usr/bin/python3 "$root/bench/experiments/grounding.py" "$work" "$report_dir"
