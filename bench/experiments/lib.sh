# Sourced by the experiment scripts (grounding.sh, precision.sh) after `set -euo pipefail`
# with root set: experiment_args "$@" parses [--quick] [--report-dir DIR] [--work DIR] into
# quick (an array: empty or (--quick), to pass on to fusion.sh), report_dir (default
# docs/experiments) and work (default a temporary directory, removed when the script exits).
experiment_args() {
  quick=() report_dir=$root/docs/experiments work=
  while [ $# -gt 0 ]; do
    case $1 in
      --quick) quick=(--quick) ;;
      --report-dir) report_dir=${2:?--report-dir needs a value}; shift ;;
      --work) work=${2:?--work needs a value}; shift ;;
      *) echo "usage: $0 [--quick] [--report-dir DIR] [--work DIR]" >&2; exit 2 ;;
    esac
    shift
  done
  if [ -z "$work" ]; then work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
}
