#!/usr/bin/env python3
"""Writes the fusion experiment's report from bench/experiments/fusion.sh's work directory.

usage: fusion_report.py WORK REPORT_DIR

Reads WORK/setup.txt, WORK/diff-*.txt and WORK/runs/*/ (train.log: kiln train's progress
lines and its "eval step K: name value ..." lines from --eval-data; time.txt: the training
command's wall seconds) and writes REPORT_DIR/fusion.md with the accuracy table
(mean ± sample standard deviation over seeds), training times, the model-file diffs, and
REPORT_DIR/fusion/*.svg learning curves (a small SVG writer: no plotting library needed).
"""
import collections
import math
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "parity"))
import safetensors_io  # noqa: E402

COLOURS = {("early", "pretrained"): "#1f77b4", ("early", "scratch"): "#9ecae1",
           ("late", "pretrained"): "#d62728", ("late", "scratch"): "#fc9272"}
STEP_RE = re.compile(r"^step (\d+)/(\d+) loss ([-+0-9.eE]+|nan|inf)")
EVAL_RE = re.compile(r"^eval step (\d+):((?: \S+ \S+)+)$")


def read_setup(work):
    setup = {}
    with open(os.path.join(work, "setup.txt")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition(" ")
            setup[k] = v
    return setup


def read_run(d):
    run = {"loss": [], "evals": {}, "time": None}
    with open(os.path.join(d, "train.log")) as f:
        for line in f:
            m = STEP_RE.search(line)
            if m:
                run["loss"].append((int(m.group(1)), float(m.group(3))))
            m = EVAL_RE.search(line.rstrip("\n"))
            if m:
                words = m.group(2).split()
                for name, value in zip(words[::2], words[1::2]):
                    run["evals"].setdefault(name, []).append((int(m.group(1)), float(value)))
    for v in run["evals"].values():
        v.sort()
    with open(os.path.join(d, "time.txt")) as f:
        run["time"] = float(f.read())
    if os.path.exists(os.path.join(d, "cpu.txt")):  # user + system seconds (common.sh)
        with open(os.path.join(d, "cpu.txt")) as f:
            run["cpu"] = float(f.read())
    if not run["loss"] or not run["evals"]:
        sys.exit(f"fusion_report.py: {d}: no progress lines or no evaluations")
    return run


def text_only_baseline(work, task):
    """Validation accuracy of answering from the text alone: the train split's most frequent
    answer for the exact same question or statement (else the most frequent answer)."""
    def examples(split):
        d = safetensors_io.read(os.path.join(work, "world", f"{task}-{split}.safetensors"))
        labels = d["labels"]
        answers = labels.argmax(axis=1) if labels.ndim == 2 else labels
        return [(tuple(ids), int(a)) for ids, a in zip(d["input_ids"].tolist(), answers.tolist())]
    by_text = collections.defaultdict(collections.Counter)
    overall = collections.Counter()
    for text, a in examples("train"):
        by_text[text][a] += 1
        overall[a] += 1
    top = overall.most_common(1)[0][0]
    val = examples("val")
    right = sum((by_text[t].most_common(1)[0][0] if t in by_text else top) == a for t, a in val)
    return right / len(val), overall[top] / sum(overall.values())


def mean_spread(xs):
    if not xs:
        return "n/a"
    m = statistics.mean(xs)
    if len(xs) < 2:
        return f"{m:.3f}"
    return f"{m:.3f} ± {statistics.stdev(xs):.3f}"


def average_curves(curves):
    """Mean over seeds at the steps every curve has."""
    steps = sorted(set.intersection(*(set(s for s, _ in c) for c in curves)))
    return [(s, statistics.mean(dict(c)[s] for c in curves)) for s in steps]


def svg_plot(path, title, ylabel, series, xlabel="step"):
    """series: list of (label, colour, [(x, y)...]). A line plot with axes and a legend."""
    W, H, L, R, T, B = 640, 400, 70, 180, 40, 50
    pts = [p for _, _, s in series for p in s if math.isfinite(p[1])]
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0: x1 = x0 + 1
    if y1 == y0: y1 = y0 + 1
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad
    sx = lambda x: L + (x - x0) / (x1 - x0) * (W - L - R)
    sy = lambda y: H - B - (y - y0) / (y1 - y0) * (H - T - B)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>']
    for i in range(6):
        xv, yv = x0 + (x1 - x0) * i / 5, y0 + (y1 - y0) * i / 5
        out.append(f'<text x="{sx(xv):.1f}" y="{H - B + 16}" text-anchor="middle">{xv:.0f}</text>')
        out.append(f'<text x="{L - 6}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
        out.append(f'<line x1="{L}" y1="{sy(yv):.1f}" x2="{W - R}" y2="{sy(yv):.1f}" stroke="#eee"/>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">{xlabel}</text>')
    out.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(T + H - B) / 2})">{ylabel}</text>')
    for i, (label, colour, s) in enumerate(series):
        p = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s if math.isfinite(y))
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{p}"/>')
        ly = T + 10 + 18 * i
        out.append(f'<line x1="{W - R + 10}" y1="{ly}" x2="{W - R + 30}" y2="{ly}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{W - R + 36}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def open_report(doc, plots_name):
    """The command line WORK REPORT_DIR (else exits with doc): work, report_dir, the setup,
    REPORT_DIR/plots_name (created) and every run of WORK/runs by name."""
    if len(sys.argv) != 3:
        sys.exit(doc)
    work, report_dir = sys.argv[1], sys.argv[2]
    plots = os.path.join(report_dir, plots_name)
    os.makedirs(plots, exist_ok=True)
    runs = {name: read_run(os.path.join(work, "runs", name))
            for name in sorted(os.listdir(os.path.join(work, "runs")))}
    return work, report_dir, read_setup(work), plots, runs


def origin(report_dir, notes, notes_text, script, quick, generated, setup, keys):
    """The lines after a report's title: notes_text when REPORT_DIR/notes (written by hand)
    exists, the command that generated the page (bench/experiments/script) with `generated`
    after it, and the setup's values of keys as a list."""
    md = [notes_text, ""] if os.path.exists(os.path.join(report_dir, notes)) else []
    cmd = f"bench/experiments/{script}" + (" --quick" if quick else "")
    md += [f"Generated by `{cmd}` {generated}", "", "```sh", cmd, "```", "", "Setup of this run:", ""]
    return md + [f"- {k}: `{setup.get(k, '?')}`" for k in keys]


def main():
    work, report_dir, setup, plots, runs = open_report(__doc__, "fusion")
    quick = setup["mode"] == "quick"
    md = ["# Early vs late fusion on the synthetic world" + (" (QUICK run)" if quick else ""), ""]
    if quick:
        md += ["**These are the numbers of a `--quick` run** (a tiny model, a few dozen steps,",
               "for the end-to-end test): they show the pipeline works, not the ablation's",
               "result. The full numbers come from the next run of the command below on a quiet",
               "machine.", ""]
    md += origin(report_dir, "fusion-notes.md", "What the run below shows, and what was tried before it: "
                 "[fusion-notes.md](fusion-notes.md) (written by hand; it names the run it discusses).",
                 "fusion.sh", quick, "(every number and plot on this page comes from that command; see the "
                 "script's\nheader for the options). Reproduce on a fresh machine after building kiln:", setup,
                 ("model", "data", "seeds", "pre_steps", "steps", "eval_every", "lr", "threads", "machine", "commit",
                  "load_start", "load_end"))
    md.append(f"- total wall time: {float(setup['total_seconds']):.0f} s (noisy: a shared machine "
              "unless said otherwise)")
    md += ["", "Data: `kiln data synth --seed 0` (docs/data.md). Pre-training: MLM + "
           "sentence-image prediction on the `pretrain` split, one run per fusion (seed 0), "
           "evaluated on `pretrain-static-val`. Fine-tuning: from the pre-trained weights "
           "(`kiln train --init`, heads initialised) or from `kiln init` (\"scratch\"), per seed; "
           "accuracies are on the validation split after the last step, mean ± sample standard "
           "deviation over the seeds (no ± with one seed). VQA: `vqa_accuracy` is the soft "
           "VQA score, `accuracy` the argmax-equals-argmax rate; NLVR2: `accuracy`.", ""]

    md += ["## Pre-training", "", "| fusion | final loss | MLM accuracy | sentence-image accuracy "
           "| train time (s) |", "|---|---|---|---|---|"]
    for fusion in ("early", "late"):
        r = runs.get(f"pretrain-{fusion}")
        if not r:
            continue
        ev = {k: v[-1][1] for k, v in r["evals"].items()}
        md.append(f"| {fusion} | {ev.get('loss', float('nan')):.4f} | "
                  f"{ev.get('mlm_accuracy', float('nan')):.3f} | "
                  f"{ev.get('sentence_image_accuracy', float('nan')):.3f} | {r['time']:.1f} |")
    pre_series = [(f"{fusion} loss", COLOURS[(fusion, "pretrained")], runs[f"pretrain-{fusion}"]["loss"])
                  for fusion in ("early", "late") if f"pretrain-{fusion}" in runs]
    svg_plot(os.path.join(plots, "pretrain-loss.svg"), "pre-training loss (train batches)", "loss",
             pre_series)
    md += ["", "![pre-training loss](fusion/pretrain-loss.svg)", ""]

    md += ["## Fine-tuning", "", "| task | fusion | pre-training | seeds | val accuracy | "
           "val VQA score | train time (s) |", "|---|---|---|---|---|---|---|"]
    for task in ("vqa", "nlvr2"):
        loss_series, acc_series = [], []
        for fusion in ("early", "late"):
            for pre in ("pretrained", "scratch"):
                rs = [r for n, r in runs.items() if n.startswith(f"{task}-{fusion}-{pre}-s")]
                if not rs:
                    continue
                acc = [r["evals"]["accuracy"][-1][1] for r in rs]
                vqa = [r["evals"]["vqa_accuracy"][-1][1] for r in rs if "vqa_accuracy" in r["evals"]]
                times = [r["time"] for r in rs]
                md.append(f"| {task} | {fusion} | {'yes' if pre == 'pretrained' else 'no'} | {len(rs)} | "
                          f"{mean_spread(acc)} | {mean_spread(vqa) if vqa else '—'} | "
                          f"{statistics.mean(times):.1f} |")
                label = f"{fusion}, {'pre-trained' if pre == 'pretrained' else 'scratch'}"
                colour = COLOURS[(fusion, pre)]
                loss_series.append((label, colour, average_curves([r["loss"] for r in rs])))
                key = "vqa_accuracy" if task == "vqa" else "accuracy"
                acc_series.append((label, colour, average_curves([r["evals"][key] for r in rs])))
        name = {"vqa": "VQA-like", "nlvr2": "NLVR2-like"}[task]
        svg_plot(os.path.join(plots, f"{task}-loss.svg"), f"{name}: training loss (mean over seeds)",
                 "loss", loss_series)
        svg_plot(os.path.join(plots, f"{task}-accuracy.svg"),
                 f"{name}: validation {'VQA score' if task == 'vqa' else 'accuracy'} (mean over seeds)",
                 "VQA score" if task == "vqa" else "accuracy", acc_series)
    md += ["", "Text-only baselines on the validation split (no model: the train split's most "
           "frequent answer to the exact same question or statement, else its most frequent "
           "answer; in brackets that most frequent answer's share of the train split). Compare them "
           "with the \"val accuracy\" column: a model that does not look at the regions cannot "
           "do better than the first number.", ""]
    for task in ("vqa", "nlvr2"):
        lookup, top = text_only_baseline(work, task)
        md.append(f"- {task}: {lookup:.3f} (most frequent answer: {top:.3f})")
    md += ["", "Effects (differences of the final validation accuracy, VQA score for VQA; mean "
           "over seeds, and the per-seed differences when the seeds pair up):", "",
           "| task | comparison | difference | per seed | same sign in every seed |", "|---|---|---|---|---|"]
    summary = {}  # (task, "pre" | "pre-trained" | "from scratch") -> per-seed differences
    for task in ("vqa", "nlvr2"):
        key = "vqa_accuracy" if task == "vqa" else "accuracy"
        final = {}
        for n, r in runs.items():
            m = re.match(rf"{task}-(early|late)-(pretrained|scratch)-s(\d+)$", n)
            if m and key in r["evals"]:
                final[(m.group(1), m.group(2), m.group(3))] = r["evals"][key][-1][1]
        seeds = sorted({k[2] for k in final})
        pairs = [("early − late, pre-trained", ("early", "pretrained"), ("late", "pretrained")),
                 ("early − late, from scratch", ("early", "scratch"), ("late", "scratch")),
                 ("pre-trained − scratch, early", ("early", "pretrained"), ("early", "scratch")),
                 ("pre-trained − scratch, late", ("late", "pretrained"), ("late", "scratch"))]
        for label, a_, b_ in pairs:
            d = [final[a_ + (sd,)] - final[b_ + (sd,)] for sd in seeds
                 if a_ + (sd,) in final and b_ + (sd,) in final]
            key2 = "pre" if label.startswith("pre") else label.split(", ")[1]
            summary.setdefault((task, key2), []).extend(d)
            if d:
                agree = "yes" if all(x > 0 for x in d) or all(x < 0 for x in d) else "no"
                md.append(f"| {task} | {label} | {statistics.mean(d):+.3f} | "
                          + ", ".join(f"{x:+.3f}" for x in d) + f" | {agree} |")
    def tally(d):
        return (f"{sum(x > 0 for x in d)} of {len(d)} paired runs (mean {statistics.mean(d):+.3f})"
                if d else "no paired runs")
    md += ["", "In short (counted from the per-seed differences above):", ""]
    for task in ("vqa", "nlvr2"):
        md.append(f"- {task}: pre-training ahead in {tally(summary.get((task, 'pre'), []))}; early fusion "
                  f"ahead of late after pre-training in {tally(summary.get((task, 'pre-trained'), []))}, "
                  f"from scratch in {tally(summary.get((task, 'from scratch'), []))}.")
    ctl = [(n, r) for n, r in runs.items() if n.startswith("control-vqa-early-scratch-dropout-s")]
    for n, r in ctl:
        sd = n.rsplit("-s", 1)[1]
        base = runs.get(f"vqa-early-scratch-s{sd}")
        ev = r["evals"]
        md += ["", f"Control (why dropout is off): the early-fusion VQA run of seed {sd} from scratch "
               f"again with `--set dropout=0.1`: val accuracy {ev['accuracy'][-1][1]:.3f}, VQA score "
               f"{ev['vqa_accuracy'][-1][1]:.3f}"
               + (f" (dropout 0: {base['evals']['accuracy'][-1][1]:.3f} and "
                  f"{base['evals']['vqa_accuracy'][-1][1]:.3f})." if base else ".")]
        if base:
            acc_series_ctl = [("dropout 0", COLOURS[("early", "scratch")], base["evals"]["vqa_accuracy"]),
                              ("dropout 0.1", "#555555", ev["vqa_accuracy"])]
            svg_plot(os.path.join(plots, "dropout-control.svg"),
                     f"VQA-like, early fusion, scratch, seed {sd}: validation VQA score", "VQA score",
                     acc_series_ctl)
            md += ["", "![dropout control](fusion/dropout-control.svg)"]
    md += ["", "Training time: the `kiln train` command's wall time (compilation included), "
           "on the machine above; noisy when other work shares it.", ""]
    for task in ("vqa", "nlvr2"):
        md += [f"![{task} loss](fusion/{task}-loss.svg) ![{task} accuracy](fusion/{task}-accuracy.svg)", ""]

    md += ["## The model files", "", "Each late-fusion file differs from its early-fusion file in "
           "its description and the one block that does the fusion (`late_fusion`, defined in "
           "`models/visualbert-common.json`: the layers read the text alone, one new layer "
           "`visual_bert.additional_layer` reads [encoded text; visual embeddings]).", ""]
    for t in ("vqa", "nlvr2", "pretrain"):
        with open(os.path.join(work, f"diff-{t}.txt")) as f:
            md += ["```diff", f.read().rstrip("\n"), "```", ""]
    with open(os.path.join(report_dir, "fusion.md"), "w") as f:
        f.write("\n".join(md))


if __name__ == "__main__":
    main()
