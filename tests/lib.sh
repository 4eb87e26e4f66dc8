# Sourced by the shell tests after `set -euo pipefail`: kiln (the binary: the test's first
# argument), here (the test's folder), root (the source tree), py (Debian's python3, which
# has torch and numpy) and work (a fresh directory, removed when the test exits); fail MSG
# (print it, exit 1) and tiny (the --set flags of a 2-layer VisualBERT that compiles fast).
kiln=${1:?usage: $(basename "$0") KILN_BINARY ...}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
# check NAME COMMAND...: runs COMMAND (usually a function of the test) in a subshell where
# `set -e` holds, so any failing command in it fails the check. (Run as an `if` condition,
# as the tests used to, bash ignores `set -e` inside the function and only its last command
# counted.) Prints "ok" or "FAIL" with the end of its output; counts them.
check() {
  local name=$1 rc=0; shift
  ("$@") >"$work/log" 2>&1 &
  wait $! || rc=$?
  if [ "$rc" -eq 0 ]; then echo "ok    $name"; passed=$((passed + 1))
  else echo "FAIL  $name (exit $rc)"; tail -20 "$work/log"; failed=$((failed + 1)); fi
}
fail() { echo "FAIL: $*"; exit 1; }
tiny=(--set layers=2 --set hidden=32 --set heads=4 --set intermediate=64 --set vocab=50
      --set visual_dim=24 --set text_len=6 --set regions=5 --set batch=2 --set max_positions=16)
# refused CODE TEXT COMMAND...: COMMAND exits with CODE and says TEXT on stderr, else fail.
refused() {
  local want=$1 text=$2 rc=0
  shift 2
  "$@" >/dev/null 2>"$work/err" || rc=$?
  [[ $rc == "$want" ]] && grep -q "$text" "$work/err" || { echo "FAIL: $*: exit $rc"; cat "$work/err"; exit 1; }
}
# vqa_case [--set NAME=VALUE]...: VisualBERT VQA initial weights $work/w.safetensors (seed 3)
# and random valid inputs $work/in.safetensors (seed 5) at that config; sets $model.
vqa_case() {
  model="$root/models/visualbert-vqa.json"
  "$kiln" init "$model" -o "$work/w.safetensors" --seed 3 "$@"
  local sets=() a
  for a in "$@"; do [[ $a == --set ]] || sets+=(--set "$a"); done
  $py "$root/tests/parity/make_case.py" --variant vqa --seed 5 --no-labels -o "$work/in.safetensors" \
    "${sets[@]}"
}
