#!/usr/bin/env python3
"""PyTorch baseline for `bench/train.sh`: one VisualBERT pre-training step (forward, backward,
AdamW update) in float32 with tests/parity/visualbert_torch.py's model, timed like
`kiln bench --train`: the same optimiser (betas 0.9/0.999, eps 1e-6, weight decay 0.01
except biases and LayerNorm weights, global grad-norm clipping at 1.0, linear warm-up and
decay), the same fixed inputs (ids and labels 0, masks and visual features 1) and the same
weights. Dropout: none (the parity model is the inference graph; run kiln with dropout=0).
With --autocast bf16 the forward (and so the backward of its bf16 ops) runs under
torch.autocast("cpu", dtype=torch.bfloat16), f32 weights and AdamW: mixed precision, beside
kiln bench --train --precision bf16.

usage: torch_train.py --weights W [--set k=v]... [--threads N] [--iters N] [--autocast none|bf16]
prints median_ms: X (and min_ms)
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "parity"))
import safetensors_io  # noqa: E402
import visualbert_torch as vb  # noqa: E402


def fixed_inputs(cfg):
    """The inputs kiln bench --train binds: integers 0, floats 1."""
    B, T, R = cfg["batch"], cfg["text_len"], cfg["regions"]
    z = lambda *s: np.zeros(s, dtype=np.int64)  # noqa: E731
    o = lambda *s: np.ones(s, dtype=np.float32)  # noqa: E731
    return {"input_ids": z(B, T), "token_type_ids": z(B, T), "attention_mask": o(B, T),
            "visual_embeds": o(B, R, cfg["visual_dim"]), "visual_token_type_ids": z(B, R),
            "visual_attention_mask": o(B, R), "labels": z(B, T), "sentence_image_labels": z(B)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sets = vb.parse_sets(a.set)
    weights_np = safetensors_io.read(a.weights)
    cfg = vb.default_config("pretrain")
    cfg.update(sets)
    inputs_np = fixed_inputs(cfg)
    cfg = vb.infer_config("pretrain", weights_np, inputs_np, sets)
    wanted = vb.param_shapes(cfg, "pretrain")
    W = {n: torch.from_numpy(np.asarray(v, dtype=np.float32)).requires_grad_(True)
         for n, v in weights_np.items() if n in wanted}
    inp = vb.prepare_inputs(inputs_np, cfg, "pretrain", torch.float32)
    decay = [p for n, p in W.items() if not n.endswith(".bias") and "LayerNorm" not in n]
    no_decay = [p for n, p in W.items() if n.endswith(".bias") or "LayerNorm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999), eps=1e-6)
    total = a.iters + 3
    warm = max(total // 10, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(total - s, 0) / max(total - warm, 1))
    params = list(W.values())

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast == "bf16"):
            loss = vb.forward(W, inp, "pretrain", cfg)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        return loss

    for _ in range(3):
        step()
    ts = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        step()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    n = len(ts)
    med = ts[n // 2] if n % 2 else 0.5 * (ts[n // 2 - 1] + ts[n // 2])
    print(f"threads: {torch.get_num_threads()}")
    print(f"autocast: {a.autocast}")
    print(f"median_ms: {med:.3f}\nmin_ms: {ts[0]:.3f}")


if __name__ == "__main__":
    main()
