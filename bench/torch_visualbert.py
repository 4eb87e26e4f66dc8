#!/usr/bin/env python3
"""PyTorch eager baseline for `bench/visualbert.sh`: VisualBERT VQA inference in float32
with the fused eager ops a PyTorch user would write (F.linear, F.gelu, torch.softmax,
F.layer_norm), on the same weights and inputs as kiln, timed like `kiln bench`. With
--autocast bf16 the forward runs under torch.autocast("cpu", dtype=torch.bfloat16) (CPU
autocast, in Debian's torch 1.13: linear and matmul in bf16), beside kiln --precision bf16.

usage: torch_visualbert.py --weights W --inputs IN [--threads N] [--iters N] [--autocast none|bf16]
prints median_ms: X (and min_ms)
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "parity"))
import safetensors_io  # noqa: E402

P = "visual_bert."


def forward(W, inp, heads, eps=1e-12):
    ids = inp["input_ids"]
    B, T = ids.shape
    e = (F.embedding(ids, W[P + "embeddings.word_embeddings.weight"])
         + W[P + "embeddings.position_embeddings.weight"][:T][None]
         + F.embedding(inp["token_type_ids"], W[P + "embeddings.token_type_embeddings.weight"]))
    f = (F.linear(inp["visual_embeds"], W[P + "embeddings.visual_projection.weight"],
                  W[P + "embeddings.visual_projection.bias"])
         + W[P + "embeddings.visual_position_embeddings.weight"][0]
         + F.embedding(inp["visual_token_type_ids"],
                       W[P + "embeddings.visual_token_type_embeddings.weight"]))
    x = torch.cat([e, f], 1)
    H = x.shape[-1]
    x = F.layer_norm(x, (H,), W[P + "embeddings.LayerNorm.weight"], W[P + "embeddings.LayerNorm.bias"], eps)
    mask = torch.cat([inp["attention_mask"], inp["visual_attention_mask"]], 1).float()
    mask = ((1.0 - mask) * -10000.0)[:, None, None, :]
    N, d = x.shape[1], H // heads
    i = 0
    while P + f"encoder.layer.{i}.attention.self.query.weight" in W:
        p = P + f"encoder.layer.{i}."

        def lin(t, n):
            return F.linear(t, W[p + n + ".weight"], W[p + n + ".bias"])

        def split(t):
            return t.view(B, N, heads, d).transpose(1, 2)

        q, k, v = (split(lin(x, "attention.self." + n)) for n in ("query", "key", "value"))
        s = torch.matmul(q, k.transpose(-1, -2)) / (d ** 0.5) + mask
        c = torch.matmul(torch.softmax(s, -1), v).transpose(1, 2).reshape(B, N, H)
        a = F.layer_norm(x + lin(c, "attention.output.dense"), (H,),
                         W[p + "attention.output.LayerNorm.weight"], W[p + "attention.output.LayerNorm.bias"], eps)
        h = F.gelu(lin(a, "intermediate.dense"))
        x = F.layer_norm(a + lin(h, "output.dense"), (H,), W[p + "output.LayerNorm.weight"],
                         W[p + "output.LayerNorm.bias"], eps)
        i += 1
    pooled = torch.tanh(F.linear(x[:, 0], W[P + "pooler.dense.weight"], W[P + "pooler.dense.bias"]))
    idx = inp["attention_mask"].sum(1).long() - 2
    tok = x[torch.arange(B), idx]
    return F.linear(tok, W["cls.weight"], W["cls.bias"]), pooled


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    W = {k: torch.from_numpy(v.astype("float32")) for k, v in safetensors_io.read(a.weights).items()}
    raw = safetensors_io.read(a.inputs)
    inp = {}
    for k, v in raw.items():
        t = torch.from_numpy(v)
        inp[k] = t.long() if "ids" in k else t.float()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast == "bf16"):
        for _ in range(3):
            forward(W, inp, a.heads)
        ts = []
        for _ in range(a.iters):
            t0 = time.perf_counter()
            forward(W, inp, a.heads)
            ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    n = len(ts)
    med = ts[n // 2] if n % 2 else 0.5 * (ts[n // 2 - 1] + ts[n // 2])
    print(f"threads: {torch.get_num_threads()}")
    print(f"autocast: {a.autocast}")
    print(f"median_ms: {med:.3f}\nmin_ms: {ts[0]:.3f}")


if __name__ == "__main__":
    main()
