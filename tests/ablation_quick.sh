#!/usr/bin/env bash
# bench/experiments/ablation.sh --quick end to end (a tiny config, minutes): the report is
# written; it has the 25 pre-training stages (text-only, 4 task-agnostic variants, 5
# task-specific per task) with MLM accuracies in [0, 1] and a sentence-image accuracy only
# where that objective is on; per task (VQA, NLVR2, VCR, Flickr30K) the full row and the 6
# configuration rows over 2 seeds, scores in [0, 1], each change equal to the mean of its
# per-seed differences, the paper's direction and an agreement verdict on every ablation;
# 4 SVGs with 7 curves; 4 text-only baselines in [0, 1]. From the work directory: the
# task-agnostic stage started from the text-only weights (its visual tables as copies), and
# the MLM-only stages trained masked_lm_loss.
# usage: tests/ablation_quick.sh KILN_BINARY
set -euo pipefail
source "$(dirname "$0")/lib.sh"
KILN=$kiln "$root/bench/experiments/ablation.sh" --quick --report-dir "$work/report" --work "$work/run" \
  2>"$work/ablation.log" || { tail -20 "$work/ablation.log"; exit 1; }
runs=$work/run/runs
check "task-agnostic stage from the text-only weights" \
  grep -q "pre-text/w.safetensors: 26 parameters copied; 2 not in the file, copies of the file's tensors" \
  "$runs/pre-agnostic/train.log"
check "no-text-init: task-agnostic stage from kiln init" bash -c '! grep -q "parameters copied" "$0"' \
  "$runs/pre-agnostic-no-text/train.log"
check "late fusion: the late file's additional layer initialised" \
  grep -q "initialised (seed 0): .*visual_bert.additional_layer" "$runs/pre-agnostic-late/train.log"
/usr/bin/python3 - "$work/report" <<'PY'
import os, re, statistics, sys
rep = sys.argv[1]
md = open(os.path.join(rep, "ablation.md")).read()
num = r"([0-9]+\.[0-9]+)"
pre = re.findall(r"^\| ((?:pre|ts)-[a-z0-9-]+) \| (MLM|MLM \+ sentence-image) \| " + num + r" \| (" + num + r"|—) \| "
                 + num + r" \| " + num + r" \|$", md, re.M)
assert len(pre) == 25, f"pre-training rows: {len(pre)}"
for name, obj, mlm, si, _, t, c in pre:
    assert 0 <= float(mlm) <= 1 and float(t) > 0 and float(c) > 0, name
    with_si = name in ("pre-agnostic", "pre-agnostic-late", "pre-agnostic-no-text")
    assert (si != "—") == with_si and (obj != "MLM") == with_si, name
    if si != "—": assert 0 <= float(si) <= 1, name
for task in ("vqa", "nlvr2", "vcr", "flickr"):
    sec = md.split(f"## {task}: validation")[1].split("\n## ")[0]
    full = re.findall(r"^\| full \| 2 \| " + num + r" ± " + num + r" \|", sec, re.M)
    assert len(full) == 1 and 0 <= float(full[0][0]) <= 1, (task, full)
    rows = re.findall(r"^\| ([a-z-]+): [^|]+ \| 2 \| " + num + r" ± " + num + r" \| ([-+][0-9.]+) ± " + num
                      + r" \| ([-+][0-9.]+), ([-+][0-9.]+) \| ([^|]+) \| ([^|]+) \|$", sec, re.M)
    assert [r[0] for r in rows] == ["no-agnostic", "no-early-fusion", "no-text-init", "no-sentence-image",
                                    "no-task-specific", "none"], (task, rows)
    for c, score, _, change, _, d1, d2, paper, agree in rows:
        assert 0 <= float(score) <= 1, (task, c)
        assert abs(float(change) - statistics.mean([float(d1), float(d2)])) < 1.5e-3, (task, c, change, d1, d2)
        if c == "none": continue
        assert "lower" in paper, (task, c, paper)
        want = ("yes" if float(d1) < 0 and float(d2) < 0 else "no (opposite)" if float(d1) > 0 and float(d2) > 0
                else "no change" if float(d1) == 0 == float(d2) else "unclear (seeds differ)")
        assert agree.strip() == want, (task, c, agree, d1, d2)
    svg = open(os.path.join(rep, "ablation", task + ".svg")).read()
    pts = re.findall(r'<polyline [^>]*points="([^"]*)"', svg)
    assert len(pts) == 7 and all(len(p.split()) >= 2 for p in pts), (task, len(pts))
    assert f"](ablation/{task}.svg)" in md, task
base = re.findall(r"^- (vqa|nlvr2|vcr|flickr): " + num, md, re.M)
assert sorted(b[0] for b in base) == ["flickr", "nlvr2", "vcr", "vqa"], base
assert all(0 <= float(b[1]) <= 1 for b in base), base
assert "QUICK run" in md and re.search(r"Of 20 \(task, ablation\) cells", md)
print(f"ok    report: {len(pre)} pre-training rows, 4 tasks x 7 configurations, 4 plots, 4 baselines")
PY
echo "ablation_quick: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
