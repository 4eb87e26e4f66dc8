#!/usr/bin/env python3
"""Exports bench/torch_visualbert.py's VisualBERT VQA forward (float32, the same weights
and input shapes kiln runs) to ONNX with torch.onnx.export, so ONNX Runtime can be timed
on the same machine (bench/ort_visualbert.mjs). Weights become ONNX initializers.

usage: ort_export.py --weights W --inputs IN -o model.onnx [--heads 12]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "parity"))
import safetensors_io  # noqa: E402
import torch_visualbert  # noqa: E402

NAMES = ["input_ids", "token_type_ids", "attention_mask", "visual_embeds",
         "visual_token_type_ids", "visual_attention_mask"]


class VqaModule(torch.nn.Module):
    def __init__(self, W, heads):
        super().__init__()
        self.keys = sorted(W)
        for i, k in enumerate(self.keys):
            self.register_buffer(f"w{i}", W[k])
        self.heads = heads

    def forward(self, *xs):
        W = {k: getattr(self, f"w{i}") for i, k in enumerate(self.keys)}
        return torch_visualbert.forward(W, dict(zip(NAMES, xs)), self.heads)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--heads", type=int, default=12)
    a = ap.parse_args()
    W = {k: torch.from_numpy(v.astype("float32")) for k, v in safetensors_io.read(a.weights).items()}
    raw = safetensors_io.read(a.inputs)
    xs = tuple(torch.from_numpy(raw[n]).long() if "ids" in n else torch.from_numpy(raw[n]).float()
               for n in NAMES)
    m = VqaModule(W, a.heads).eval()
    with torch.no_grad():
        torch.onnx.export(m, xs, a.output, input_names=NAMES, output_names=["logits", "pooled"],
                          opset_version=14, do_constant_folding=True)
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
