#!/usr/bin/python3
"""Visual question answering with kiln from a Hugging Face VisualBERT VQA checkpoint.

  examples/vqa.py CHECKPOINT_DIR "what color is the cat?" FEATURES [--weights W] [--top K]

CHECKPOINT_DIR is a Hugging Face directory (config.json with id2label, vocab.txt,
model.safetensors or pytorch_model.bin). Its kiln weights are W (default
CHECKPOINT_DIR/kiln.safetensors), converted with kiln.convert_hf when W is absent (its
settings kept in W.sets, as `kiln convert-hf` writes them). FEATURES holds the image's region
features [regions, visual_embedding_dim] (or [1, regions, dim]): a .npy file, or a
safetensors file with a tensor "visual_embeds". Prints the top answers by id2label, one a
line: rank, answer, score (the sigmoid of its logit, as VQA's soft scores are trained).
"""
import argparse
import json
import os
import sys

import numpy as np

import kiln

MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "visualbert-vqa.json")


def settings(weights, checkpoint):
    """The --set values of a converted checkpoint: W.sets, or convert it now."""
    if os.path.exists(weights) and os.path.exists(weights + ".sets"):
        out = {}
        for line in open(weights + ".sets"):
            name, value = line.split(None, 1)[1].strip().split("=", 1)  # "--set NAME=VALUE"
            out[name] = value
        return out
    return kiln.convert_hf(checkpoint, weights)


def features(path):
    if path.endswith(".npy"):
        x = np.load(path)
    else:
        x = kiln.load_safetensors(path)["visual_embeds"]
    return np.asarray(x, np.float32).reshape(1, -1, x.shape[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("question")
    ap.add_argument("features")
    ap.add_argument("--weights", help="kiln weights (default CHECKPOINT/kiln.safetensors)")
    ap.add_argument("--model", default=MODEL, help="the kiln model file (default models/visualbert-vqa.json)")
    ap.add_argument("--top", type=int, default=5)
    a = ap.parse_args()
    weights = a.weights or os.path.join(a.checkpoint, "kiln.safetensors")
    sets = settings(weights, a.checkpoint)
    with open(os.path.join(a.checkpoint, "config.json")) as f:
        id2label = json.load(f)["id2label"]

    tok = kiln.Tokenizer(os.path.join(a.checkpoint, "vocab.txt"))
    ids = [tok.cls_id] + tok.encode(a.question) + [tok.sep_id]
    visual = features(a.features)
    m = kiln.Model(a.model, set=dict(sets, batch=1, text_len=len(ids), regions=visual.shape[1]))
    m.load_weights(weights)
    out = m.run({
        "input_ids": np.array([ids], np.int64),
        "token_type_ids": np.zeros((1, len(ids)), np.int64),
        "attention_mask": np.ones((1, len(ids)), np.float32),
        "visual_embeds": visual,
        "visual_token_type_ids": np.ones(visual.shape[:2], np.int64),
        "visual_attention_mask": np.ones(visual.shape[:2], np.float32),
    })
    logits = out["logits"][0]
    for rank, i in enumerate(np.argsort(-logits, kind="stable")[:a.top], 1):
        print(f"{rank} {id2label[str(i)]} {1 / (1 + np.exp(-logits[i])):.4f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except kiln.Error as e:
        sys.exit(f"vqa.py: {e}")
