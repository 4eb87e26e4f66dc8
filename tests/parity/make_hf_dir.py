#!/usr/bin/python3
"""A Hugging Face-format VisualBertForQuestionAnswering directory from the PyTorch reference
model's weights (visualbert_torch.random_weights: HF names), as transformers saves one:

  make_hf_dir.py DIR --seed S [--set name=value ...] [--bad-shape NAME]

DIR/config.json (HF keys, id2label), DIR/vocab.txt, DIR/pytorch_model.bin (torch.save of
the state dict, with the position_ids buffer and a cls.predictions.decoder.weight that the
VQA model does not have), and DIR/reference.safetensors: the same weights for
visualbert_torch.py. --bad-shape NAME drops the last row of that tensor in the .bin.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
import visualbert_torch as vt  # noqa: E402

WORDS = ["what", "color", "is", "the", "cat", "dog", "how", "many", "are", "there", "?", "on", "table",
         "red", "blue", "two", "##s", "a", "in", "picture"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--bad-shape")
    a = ap.parse_args()
    cfg = vt.default_config("vqa")
    cfg.update(vt.parse_sets(a.set))
    w = vt.random_weights(cfg, "vqa", seed=a.seed, ln_noise=0.1, bias_std=0.05)
    os.makedirs(a.dir, exist_ok=True)
    safetensors_io.write(f"{a.dir}/reference.safetensors", w)
    state = {k: torch.from_numpy(v.copy()) for k, v in w.items()}
    state["visual_bert.embeddings.position_ids"] = torch.arange(cfg["max_positions"])[None]
    state["cls.predictions.decoder.weight"] = state["visual_bert.embeddings.word_embeddings.weight"]
    if a.bad_shape:
        state[a.bad_shape] = state[a.bad_shape][:-1].clone()
    torch.save(state, f"{a.dir}/pytorch_model.bin")
    labels = ["yes", "no", "red", "blue", "two", "cat", "dog", "table", "one"]
    config = {
        "architectures": ["VisualBertForQuestionAnswering"], "model_type": "visual_bert",
        "hidden_size": cfg["hidden"], "num_hidden_layers": cfg["layers"], "num_attention_heads": cfg["heads"],
        "intermediate_size": cfg["intermediate"], "visual_embedding_dim": cfg["visual_dim"],
        "vocab_size": cfg["vocab"], "max_position_embeddings": cfg["max_positions"], "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "id2label": {str(i): (labels[i] if i < len(labels) else f"answer{i}") for i in range(cfg["num_labels"])},
    }
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    with open(f"{a.dir}/config.json", "w") as f:
        json.dump(config, f, indent=2)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = (specials + WORDS + [f"[unused{i}]" for i in range(cfg["vocab"])])[:cfg["vocab"]]
    with open(f"{a.dir}/vocab.txt", "w") as f:
        f.write("\n".join(vocab) + "\n")


if __name__ == "__main__":
    main()
