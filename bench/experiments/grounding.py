#!/usr/bin/env python3
"""Entity grounding read from attention heads (the VisualBERT paper's analysis, its Fig. 3),
on kiln's synthetic world: for each text token that names an object (the Flickr-like
split's phrase slots: region_to_phrase_position gives the token, labels the region), a head
grounds it when, among the image's regions, the one it attends to most from that token is
the right one. Accuracy per layer and head, best head per layer, for early and late fusion,
pre-trained and not; writes REPORT_DIR/grounding.md and grounding/accuracy-by-layer.svg.

usage: grounding.py WORK REPORT_DIR   (WORK: a fusion.sh --pretrain-only work directory)
"""
import os
import subprocess
import sys

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
sys.path.insert(0, os.path.join(root, "tests", "parity"))
sys.path.insert(0, here)
import safetensors_io  # noqa: E402
from fusion_report import read_setup, svg_plot  # noqa: E402

SEQ_INPUTS = ("input_ids", "token_type_ids", "attention_mask", "visual_embeds",
              "visual_token_type_ids", "visual_attention_mask")


def grounding_accuracy(att, pos, labels, vmask, text_len):
    """att [B, heads, S, S] (one layer), pos [B, S] (a token per phrase slot, -1: none),
    labels [B, S, R] (the slot's region), vmask [B, R]: hits / phrases for each head."""
    b, k = np.nonzero(pos >= 0)
    tok = pos[b, k]
    want = labels[b, k].argmax(-1)
    to_regions = att[b, :, tok, text_len:text_len + labels.shape[2]]          # [P, heads, R]
    to_regions = np.where(vmask[b][:, None, :] > 0, to_regions, -np.inf)       # real regions only
    return (to_regions.argmax(-1) == want[:, None]).mean(0), len(b)


def run_attentions(kiln, model, sets, weights, inputs, out):
    subprocess.run([kiln, "run", model, *sets, "--weights", weights, "--inputs", inputs, "-o", out,
                    "--output-attentions"], check=True, stderr=subprocess.DEVNULL)
    return safetensors_io.read(out)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    work, report_dir = sys.argv[1:]
    kiln = os.environ.get("KILN", os.path.join(root, "build", "kiln"))
    setup = read_setup(work)
    world = dict(l.split("=") for l in open(os.path.join(work, "world", "config.txt")).read().split())
    val = safetensors_io.read(os.path.join(work, "world", "flickr-val.safetensors"))
    n = val["input_ids"].shape[0]
    sets = [a for k, v in world.items() for a in ("--set", f"{k}={v}")]
    sets += setup["model"].split() + ["--set", f"batch={n}"]
    text_len = int(world["text_len"])
    inputs = os.path.join(work, "grounding-inputs.safetensors")
    safetensors_io.write(inputs, {k: val[k] for k in SEQ_INPUTS})
    rows, series = [], []
    colours = {("early", "yes"): "#1f77b4", ("early", "no"): "#9ecae1",
               ("late", "yes"): "#d62728", ("late", "no"): "#fc9272"}
    for fusion in ("early", "late"):
        model = os.path.join(root, "models", "visualbert-pretrain%s.json" % ("-late" if fusion == "late" else ""))
        for pre, weights in (("yes", os.path.join(work, "runs", f"pretrain-{fusion}", "w.safetensors")),
                             ("no", os.path.join(work, f"init-pretrain-{fusion}.safetensors"))):
            out = run_attentions(kiln, model, sets, weights, inputs, os.path.join(work, f"att-{fusion}-{pre}.safetensors"))
            layers = sorted(int(k.split(".")[1]) for k in out if k.startswith("attentions."))
            curve = []
            for layer in layers:
                att = out[f"attentions.{layer}"]
                if att.shape[-1] <= text_len:  # a late-fusion text layer: no region to attend to
                    continue
                acc, phrases = grounding_accuracy(att, val["region_to_phrase_position"], val["labels"],
                                                  val["visual_attention_mask"], text_len)
                best = int(acc.argmax())
                rows.append((fusion, pre, layer, best, acc[best], acc.mean(), phrases))
                curve.append((layer, float(acc[best])))
            series.append((f"{fusion}, pre-trained {pre}", colours[fusion, pre], curve))
    chance = float(np.mean(1.0 / val["visual_attention_mask"].sum(-1)))
    os.makedirs(os.path.join(report_dir, "grounding"), exist_ok=True)
    svg_plot(os.path.join(report_dir, "grounding", "accuracy-by-layer.svg"),
             "Entity grounding: best head per layer", "grounding accuracy", series, xlabel="layer")
    with open(os.path.join(report_dir, "grounding.md"), "w") as f:
        f.write("# Entity grounding in the attention heads (synthetic world)\n\n"
                "Written by `bench/experiments/grounding.sh` (%s mode) from one recorded run; every number "
                "below comes from it. The paper's analysis (Li et al. 2019, section 5.3, Fig. 3): for each "
                "text token that names an object, a head *grounds* it when, among the image's regions, the "
                "region it attends to most from that token is the object's. The phrases are the Flickr-like "
                "validation split's (`kiln data synth`: the caption's shape words and their regions), run "
                "through the pre-training model files with `kiln run --output-attentions`; weights: the "
                "pre-training of `bench/experiments/fusion.sh` (pre-trained yes) or its initial weights (no). "
                "Late fusion's text layers see no regions; only its additional layer (the last) is scored.\n\n"
                % setup.get("mode", "?"))
        f.write("Setup: model `%s`; pre-training %s steps; data `%s`; %s; commit %s.\n\n"
                % (setup["model"], setup["pre_steps"], setup["data"], setup["machine"], setup["commit"]))
        f.write("Chance (one region at random among the example's real ones): %.3f.\n\n" % chance)
        f.write("![grounding accuracy by layer](grounding/accuracy-by-layer.svg)\n\n")
        f.write("| fusion | pre-trained | layer | best head | its accuracy | mean over heads | phrases |\n"
                "| --- | --- | --- | --- | --- | --- | --- |\n")
        for fusion, pre, layer, best, acc, mean, phrases in rows:
            f.write(f"| {fusion} | {pre} | {layer} | {best} | {acc:.3f} | {mean:.3f} | {phrases} |\n")
    print(f"grounding.py: wrote {os.path.join(report_dir, 'grounding.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
