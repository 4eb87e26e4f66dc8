#!/usr/bin/env bash
# bench/experiments/fusion.sh --quick end to end (a tiny config, a few minutes): the report
# is written; its tables hold the 2 pre-training rows and the 8 fine-tuning rows (2 tasks x
# early/late x with/without pre-training) with accuracies in [0, 1] and positive times; the
# 5 SVG plots exist with one non-empty curve per configuration; the model-file diffs show
# the late_fusion block line; the dropout control's line and plot are there.
# usage: tests/fusion_quick.sh KILN_BINARY
set -euo pipefail
source "$(dirname "$0")/lib.sh"
KILN=$kiln "$root/bench/experiments/fusion.sh" --quick --report-dir "$work/report" --work "$work/run" \
  2>"$work/log" || { tail -20 "$work/log"; exit 1; }
/usr/bin/python3 - "$work/report" <<'PY'
import os, re, sys
rep = sys.argv[1]
md = open(os.path.join(rep, "fusion.md")).read()
num = r"([0-9]+\.[0-9]+)"
pre = re.findall(r"^\| (early|late) \| " + num + r" \| " + num + r" \| " + num + r" \| " + num + r" \|$", md, re.M)
ft = re.findall(r"^\| (vqa|nlvr2) \| (early|late) \| (yes|no) \| 1 \| " + num + r" \| (" + num + r"|—) \| " + num + r" \|$", md, re.M)
assert len(pre) == 2, f"pre-training rows: {pre}"
assert sorted(set((t, f, p) for t, f, p, *_ in ft)) == sorted(
    (t, f, p) for t in ("vqa", "nlvr2") for f in ("early", "late") for p in ("yes", "no")), ft
for row in pre:
    assert 0 <= float(row[2]) <= 1 and 0 <= float(row[3]) <= 1 and float(row[4]) > 0, row
for t, f, p, acc, vqa, _, time in ft:
    assert 0 <= float(acc) <= 1 and float(time) > 0, (t, f, p, acc, time)
    assert (vqa != "—") == (t == "vqa"), (t, vqa)
    if t == "vqa": assert 0 <= float(vqa) <= 1
for name, curves in (("pretrain-loss", 2), ("vqa-loss", 4), ("vqa-accuracy", 4), ("nlvr2-loss", 4),
                     ("nlvr2-accuracy", 4)):
    svg = open(os.path.join(rep, "fusion", name + ".svg")).read()
    pts = re.findall(r'<polyline [^>]*points="([^"]*)"', svg)
    assert len(pts) == curves and all(len(p.split()) >= 2 for p in pts), (name, pts)
    assert f"](fusion/{name}.svg)" in md, name
assert md.count('+    {"block": "late_fusion"},') == 3, "model-file diffs"
assert "QUICK run" in md
ctl = re.findall(r"^Control \(why dropout is off\).*dropout=0\.1`: val accuracy " + num, md, re.M)
assert len(ctl) == 1 and 0 <= float(ctl[0]) <= 1, "dropout control line"
assert os.path.exists(os.path.join(rep, "fusion", "dropout-control.svg")), "dropout control plot"
print(f"ok    report: {len(pre)} pre-training rows, {len(ft)} fine-tuning rows, 5 plots, 3 diffs")
PY
