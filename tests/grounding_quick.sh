#!/usr/bin/env bash
# Entity grounding (bench/experiments/grounding.sh, docs/experiments/grounding.md): the
# scoring on crafted attentions (a head peaked at the right region grounds, one peaked at a
# padded region is read over the real ones, one peaked at another region does not), then
# the --quick run end to end: a row per fusion x pre-training for each layer that sees
# regions (early: every layer; late: only the additional one), accuracies in [0, 1], every
# phrase of the validation split counted, and the plot with one curve per configuration.
# usage: tests/grounding_quick.sh KILN_BINARY
set -euo pipefail
source "$(dirname "$0")/lib.sh"
scoring() {
  "$py" - "$root/bench/experiments" <<'PY'
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from grounding import grounding_accuracy
T, R = 3, 4
att = np.full((1, 3, T + R, T + R), 0.01)
pos = np.array([[1, -1, -1, -1, -1, -1, -1]])            # token 1 names the object
labels = np.zeros((1, T + R, R)); labels[0, 0, 2] = 1     # ... in region 2
vmask = np.array([[1, 1, 1, 0]])                          # region 3 is padding
att[0, 0, 1, T + 2] = 0.9                                 # head 0: the right region
att[0, 1, 1, T + 3], att[0, 1, 1, T + 2] = 0.9, 0.5       # head 1: padding first, then right
att[0, 2, 1, T + 0] = 0.9                                 # head 2: another region
acc, phrases = grounding_accuracy(att, pos, labels, vmask, T)
assert phrases == 1 and acc.tolist() == [1.0, 1.0, 0.0], (acc, phrases)
PY
}
check "grounding: scoring on crafted attentions" scoring
quick() {
  KILN=$kiln "$root/bench/experiments/grounding.sh" --quick --report-dir "$work/report" --work "$work/run" \
    2>"$work/log" || { tail -20 "$work/log"; return 1; }
  "$py" - "$work/report" <<'PY'
import os, re, sys
rep = sys.argv[1]
md = open(os.path.join(rep, "grounding.md")).read()
rows = re.findall(r"^\| (early|late) \| (yes|no) \| ([0-9]+) \| ([0-9]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9]+) \|$", md, re.M)
assert sorted((f, p, int(l)) for f, p, l, *_ in rows) == [
    ("early", "no", 0), ("early", "yes", 0), ("late", "no", 1), ("late", "yes", 1)], rows
for *_, best, mean, phrases in rows:
    assert 0 <= float(mean) <= float(best) <= 1 and int(phrases) == 256, rows  # 128 examples x 2 phrases
svg = open(os.path.join(rep, "grounding", "accuracy-by-layer.svg")).read()
assert len(re.findall(r"<polyline ", svg)) == 4, svg
PY
}
check "grounding: --quick run writes the report and the plot" quick
