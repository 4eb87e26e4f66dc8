#!/usr/bin/env python3
"""Writes the ablation experiment's report from bench/experiments/ablation.sh's work directory.

usage: ablation_report.py WORK REPORT_DIR

Reads WORK/setup.txt and WORK/runs/*/ (train.log, time.txt, cpu.txt: see fusion_report.py
and common.sh) and writes REPORT_DIR/ablation.md: the pre-training stages, and per task the
final validation score of each configuration (mean ± sample standard deviation over seeds),
its change against the full recipe (per-seed paired differences: mean ± standard
deviation), the direction the paper reports and whether they agree; the text-only
baselines; REPORT_DIR/ablation/TASK.svg validation curves (mean over seeds).
"""
import collections
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fusion_report import (average_curves, mean_spread, open_report, origin, safetensors_io,  # noqa: E402
                           svg_plot, text_only_baseline)

METRIC = {"vqa": "vqa_accuracy", "nlvr2": "accuracy", "vcr": "accuracy", "flickr": "recall_at_1"}
METRIC_NAME = {"vqa": "VQA score", "nlvr2": "accuracy", "vcr": "accuracy (Q->A)", "flickr": "recall@1"}
# (name, what changes, the paper's reported change on NLVR2 dev (Table 4, from
# /work/shared/visualbert.md: full 66.7), or None when that reference lists no number)
ABLATIONS = [
    ("no-agnostic", "without task-agnostic pre-training (text-only init -> task-specific -> fine-tune)", -3.8),
    ("no-early-fusion", "without early fusion (late files at every stage)", -5.3),
    ("no-text-init", "without the text initialisation (task-agnostic stage from kiln init)", -2.0),
    ("no-sentence-image", "without the sentence-image objective (task-agnostic stage MLM alone)", -1.8),
    ("no-task-specific", "without task-specific pre-training", None),
    ("none", "no pre-training at all (fine-tuning from kiln init; reference, not a row of the paper)", None),
]
COLOURS = {"full": "#000000", "no-agnostic": "#1f77b4", "no-early-fusion": "#d62728", "no-text-init": "#2ca02c",
           "no-sentence-image": "#9467bd", "no-task-specific": "#ff7f0e", "none": "#8c8c8c"}


def vcr_text_only(work):
    """VCR from the text alone: each choice scored by how often its (question, answer) text
    was the right one in the train split (ties and unseen pairs: the first such choice)."""
    def rows(split):
        d = safetensors_io.read(os.path.join(work, "world", f"vcr-{split}.safetensors"))
        return [([tuple(c) for c in ex], int(y)) for ex, y in zip(d["input_ids"].tolist(), d["labels"].tolist())]
    right, shown = collections.Counter(), collections.Counter()
    for choices, y in rows("train"):
        for k, c in enumerate(choices):
            shown[c] += 1
            right[c] += k == y
    val = rows("val")
    score = lambda c: right[c] / shown[c] if shown[c] else 0.0
    hits = sum(max(range(len(ch)), key=lambda k: score(ch[k])) == y for ch, y in val)
    return hits / len(val)


def flickr_chance(work):
    """Flickr from the text alone: the regions come in random order, so the best is chance,
    1 / (real regions of the example) per phrase."""
    d = safetensors_io.read(os.path.join(work, "world", "flickr-val.safetensors"))
    n = d["visual_attention_mask"].sum(axis=1)
    phrases = (d["labels"].sum(axis=2) > 0).sum(axis=1)
    return float((phrases / n).sum() / phrases.sum())


def agreement(diffs):
    """The paper's direction is a drop: yes when every seed drops, no when every seed rises."""
    if not diffs:
        return "n/a"
    if all(x == 0 for x in diffs):
        return "no change"
    if all(x < 0 for x in diffs):
        return "yes"
    if all(x > 0 for x in diffs):
        return "no (opposite)"
    return "unclear (seeds differ)"


def main():
    work, report_dir, setup, plots, runs = open_report(__doc__, "ablation")
    tasks = setup["tasks"].split()
    quick = setup["mode"] == "quick"
    md = ["# The VisualBERT ablation table on the synthetic world" + (" (QUICK run)" if quick else ""), ""]
    if quick:
        md += ["**These are the numbers of a `--quick` run** (a tiny model, a few dozen steps a stage, for",
               "the end-to-end test): they show the pipeline works, not the ablation's result.", ""]
    md += origin(report_dir, "ablation-notes.md", "How each stage and ablation is built, and the time budget: "
                 "[ablation-notes.md](ablation-notes.md) (written by hand).", "ablation.sh", quick,
                 "(every number on this page comes from that command; the script's header gives the options). "
                 "Reproduce after building kiln (under `nice` on a shared machine):", setup,
                 ("model", "data", "seeds", "tasks", "pre_steps", "ts_steps", "steps", "eval_every", "lr", "threads",
                  "machine", "commit", "load_start", "load_end"))
    cpu = sum(r["cpu"] for r in runs.values())
    md.append(f"- total wall time: {float(setup['total_seconds']):.0f} s on a shared machine (see the load); "
              f"CPU time (user + system) of the {len(runs)} kiln train commands: {cpu:.0f} s, "
              f"{cpu / 2 / 60:.1f} min if spread over 2 idle cores")
    md += ["", "The recipe (the paper's, on `kiln data synth --seed 0`): **text-only** MLM pre-training "
           "(`models/bert-pretrain.json` on the text of the `pretrain` split, caption pairs always matched; "
           "the paper's BERT initialisation) -> **task-agnostic** pre-training (MLM + sentence-image on the "
           "`pretrain` split, `kiln train --init` from the text-only weights; the visual tables start as copies "
           "of the trained text tables) -> **task-specific** pre-training (MLM alone, `--loss masked_lm_loss`, "
           "on the task's own text and images: the `TASK-mlm` splits) -> **fine-tuning**. Pre-training stages "
           "run once (seed 0); fine-tuning once per seed. Scores are on the validation split after the last "
           "step. The change against the full recipe is the mean ± sample standard deviation of the per-seed "
           "differences (the seeds pair up: same fine-tuning seed). The paper's numbers are its NLVR2 dev "
           "ablation (Table 4; all removals lower the score); \"agrees\" says whether every seed moved the "
           "paper's way.", ""]

    md += ["## Pre-training stages", "", "| run | objective | final MLM accuracy | sentence-image accuracy | "
           "train time (s) | CPU (s) |", "|---|---|---|---|---|---|"]
    for name, r in runs.items():
        if name.startswith("ft-"):
            continue
        ev = {k: v[-1][1] for k, v in r["evals"].items()}
        with_si = name.startswith("pre-agnostic") and not name.endswith("no-si")
        objective = "MLM + sentence-image" if with_si else "MLM"
        sia = f"{ev['sentence_image_accuracy']:.3f}" if with_si and "sentence_image_accuracy" in ev else "—"
        md.append(f"| {name} | {objective} | {ev.get('mlm_accuracy', float('nan')):.3f} | {sia} | "
                  f"{r['time']:.1f} | {r['cpu']:.1f} |")
    md += ["", "(`pre-*`: scored on `pretrain-static-val`, where half the caption pairs are mismatched; "
           "`ts-TASK*`: on `TASK-mlm-static-val`.)", ""]

    summary = []
    for task in tasks:
        key = METRIC[task]
        final = {}
        curves = collections.defaultdict(list)
        for n, r in runs.items():
            if n.startswith(f"ft-{task}-") and key in r["evals"]:
                c, sd = n[len(f"ft-{task}-"):].rsplit("-s", 1)
                final[(c, sd)] = r["evals"][key][-1][1]
                curves[c].append(r["evals"][key])
        seeds = sorted({sd for _, sd in final})
        full = [final[("full", sd)] for sd in seeds if ("full", sd) in final]
        md += [f"## {task}: validation {METRIC_NAME[task]}", "",
               "| configuration | seeds | score | change vs full | per seed | paper (NLVR2) | agrees |",
               "|---|---|---|---|---|---|---|",
               f"| full | {len(full)} | {mean_spread(full)} | — | — | 66.7 | — |"]
        for c, what, paper in ABLATIONS:
            xs = [final[(c, sd)] for sd in seeds if (c, sd) in final]
            diffs = [final[(c, sd)] - final[("full", sd)] for sd in seeds if (c, sd) in final and ("full", sd) in final]
            if not xs:
                continue
            change = (f"{statistics.mean(diffs):+.3f}" + (f" ± {statistics.stdev(diffs):.3f}" if len(diffs) > 1 else "")
                      if diffs else "n/a")
            per = ", ".join(f"{x:+.3f}" for x in diffs)
            if c == "none":
                ptxt, agree = "—", "—"
            elif paper is None:
                ptxt, agree = "lower (assumed; no number in the reference)", agreement(diffs)
            else:
                ptxt, agree = f"{paper:+.1f} points (lower)", agreement(diffs)
            md.append(f"| {c}: {what} | {len(xs)} | {mean_spread(xs)} | {change} | {per} | {ptxt} | {agree} |")
            if c != "none":
                summary.append((task, c, agree))
        series = [(c, COLOURS[c], average_curves(cs)) for c, cs in sorted(curves.items())]
        if series:
            svg_plot(os.path.join(plots, f"{task}.svg"), f"{task}: validation {METRIC_NAME[task]} (mean over seeds)",
                     METRIC_NAME[task], series)
            md += ["", f"![{task} curves](ablation/{task}.svg)"]
        md.append("")

    md += ["## Text-only baselines (validation split, no model)", "",
           "A model that does not look at the regions cannot beat these (VQA, NLVR2: the train split's most "
           "frequent answer to the same text, as in fusion.md; VCR: each choice scored by how often that "
           "question-answer text was right in the train split; Flickr30K: chance, the regions come in random "
           "order).", ""]
    for task in tasks:
        if task in ("vqa", "nlvr2"):
            lookup, top = text_only_baseline(work, task)
            md.append(f"- {task}: {lookup:.3f} (most frequent answer: {top:.3f})")
        elif task == "vcr":
            md.append(f"- vcr: {vcr_text_only(work):.3f}")
        elif task == "flickr":
            md.append(f"- flickr: {flickr_chance(work):.3f}")
    counts = collections.Counter(a for _, _, a in summary)
    md += ["", "## In short", "",
           f"Of {len(summary)} (task, ablation) cells, {counts['yes']} agree with the paper's direction in every "
           f"seed, {counts['no (opposite)']} go the other way in every seed, {counts['unclear (seeds differ)']} "
           f"differ between seeds, {counts['no change']} do not change.", ""]
    with open(os.path.join(report_dir, "ablation.md"), "w") as f:
        f.write("\n".join(md))


if __name__ == "__main__":
    main()
