#!/usr/bin/env bash
# Scale (issue 18): a model of 100,000 repeated layers (docs/examples/mlp.json, 4 nodes a
# layer, 400,000 nodes) loads, passes every pass and checks within a bound that only a
# pass linear or n log n in the node count meets (a quadratic one took minutes at 8,000
# layers); the default limit refuses it with a message that names the setting to raise.
set -uo pipefail
kiln=${1:?usage: scale.sh KILN_BINARY}
root=$(cd "$(dirname "$0")/.." && pwd)
small=(--set layers=100000 --set features=2 --set hidden=2)
passed=0 failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s)
if timeout 120 "$kiln" check "$root/docs/examples/mlp.json" "${small[@]}" --max-nodes 1000000 >"$out" 2>&1 &&
   grep -q '^parameters: 600015$' "$out"; then
  echo "ok    scale: 100,000 layers check in $(( $(date +%s) - start )) s"; passed=$((passed + 1))
else
  echo "FAIL  scale: 100,000 layers did not check within 120 s"; tail -5 "$out"; failed=$((failed + 1))
fi
"$kiln" check "$root/docs/examples/mlp.json" "${small[@]}" >"$out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q 'more than 100000 instances or nodes (raise the limit with --max-nodes N)' "$out"; then
  echo "ok    scale: the default limit refuses it, naming --max-nodes"; passed=$((passed + 1))
else
  echo "FAIL  scale: expected exit 1 naming --max-nodes, got $rc"; cat "$out"; failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
