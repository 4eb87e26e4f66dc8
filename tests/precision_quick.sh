#!/usr/bin/env bash
# bench/experiments/precision.sh --quick end to end (a tiny config, a few minutes): the
# report is written with its per-seed rows (3 seeds x VQA and NLVR2) and mean rows,
# accuracies and VQA scores in [0, 1], int8 - fp32 differences that match the columns,
# a verdict for each goal, positive times per step; and the runs really differ in
# precision: bf16 training writes other weights than fp32 training, and int8 inference
# gives another validation loss than fp32 on the same weights. (At this size the goals
# themselves say nothing; the full run's report is docs/experiments/precision.md.)
# usage: tests/precision_quick.sh KILN_BINARY
set -euo pipefail
source "$(dirname "$0")/lib.sh"
KILN=$kiln "$root/bench/experiments/precision.sh" --quick --report-dir "$work/report" --work "$work/run" \
  2>"$work/log" || { tail -20 "$work/log"; exit 1; }
for s in 1 2 3; do
  for t in vqa nlvr2; do
    r=$work/run/runs/$t-fp32-s$s
    ! cmp -s "$r/w.safetensors" "$work/run/runs/$t-bf16-s$s/w.safetensors" || fail "$t seed $s: bf16 weights = fp32's"
    [ "$(grep '^loss:' "$r/eval-fp32.txt")" != "$(grep '^loss:' "$r/eval-int8.txt")" ] \
      || fail "$t seed $s: int8 loss = fp32's"
  done
done
$py - "$work/report" <<'PY'
import os, re, sys
md = open(os.path.join(sys.argv[1], "precision.md")).read()
num = r"([0-9]+\.[0-9]+)"
assert "QUICK run" in md
for task, ncols in (("vqa", 6), ("nlvr2", 3)):
    sec = md.split(f"## {task}\n")[1].split("\n## ")[0]
    rows = re.findall(r"^\| ([123]) \| " + r" \| ".join([num] * ncols) + r" \| ([-+][0-9.]+) \|$", sec, re.M)
    assert [r[0] for r in rows] == ["1", "2", "3"], (task, rows)
    for r in rows:
        vals = [float(x) for x in r[1:-1]]
        assert all(0 <= v <= 1 for v in vals), (task, r)
        assert abs(vals[2] - vals[0] - float(r[-1])) < 1e-3, ("int8 - fp32 column", task, r)
    mean = re.findall(r"^\| mean \| " + r" \| ".join([num + " ± " + num] * ncols) + r" \| [-+][0-9.]+ \|$", sec, re.M)
    assert len(mean) == 1, (task, "mean row")
    assert re.search(r"^Validation loss .*: fp32 " + num + ", bf16-trained " + num + ", int8 inference", sec, re.M)
    assert len(re.findall(r"goal \(within one standard deviation\) \*\*(met|not met)\*\*", sec)) == 1, task
    assert len(re.findall(r"goal \(within 1 point, 0\.01, on every checkpoint\) \*\*(met|not met)\*\*", sec)) == 1, task
    times = re.findall(r"^\| (fp32|bf16) \| 60 \| " + num + r" \| " + num + r" \|$", sec, re.M)
    assert [t[0] for t in times] == ["fp32", "bf16"] and all(float(x) > 0 for t in times for x in t[1:]), times
    assert re.search(r"^bf16 / fp32: " + num + r" \(wall\), " + num + r" \(CPU\)\.$", sec, re.M), task
assert md.count("\n- vqa: ") == 2 and md.count("\n- nlvr2: ") == 2, "goals section"
print("ok    report: 2 tasks x 3 seeds, means, goals, times; bf16 weights and int8 losses differ from fp32's")
PY
