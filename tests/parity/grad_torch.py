#!/usr/bin/env python3
"""Gradients from the independent PyTorch VisualBERT (float64 autograd), as the oracle for
`kiln grad`: writes `loss` and, for every parameter, d loss / d parameter under its own name
(zeros where the loss does not reach it). Dropout is off on both sides (kiln: --set dropout=0).

usage: grad_torch.py --variant V --weights W --inputs IN -o OUT [--set NAME=VALUE ...]
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_io  # noqa: E402
import visualbert_torch as vt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", required=True, choices=vt.VARIANTS)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    torch.set_num_threads(2)
    weights = safetensors_io.read(a.weights)
    inputs = safetensors_io.read(a.inputs)
    cfg = vt.infer_config(a.variant, weights, inputs, vt.parse_sets(a.set))
    vt.check_weights(weights, cfg, a.variant)
    wanted = vt.param_shapes(cfg, a.variant)
    W = {n: torch.from_numpy(np.asarray(v, dtype=np.float64)).requires_grad_(True)
         for n, v in weights.items() if n in wanted}
    inp = vt.prepare_inputs(inputs, cfg, a.variant, torch.float64)
    out = vt.forward(W, inp, a.variant, cfg)
    if "loss" not in out:
        raise SystemExit("grad_torch: the inputs give no loss (labels missing?)")
    out["loss"].backward()
    res = {"loss": out["loss"].detach().numpy().astype(np.float32)}
    for n, t in W.items():
        g = t.grad if t.grad is not None else torch.zeros_like(t)
        res[n] = g.numpy().astype(np.float32)
    safetensors_io.write(a.output, res)


if __name__ == "__main__":
    main()
