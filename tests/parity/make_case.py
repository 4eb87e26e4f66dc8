#!/usr/bin/python3
"""Random, valid VisualBERT inputs for a parity case.

  make_case.py --variant {vqa,pretrain,nlvr2,vcr,flickr}[-late] --seed S -o IN.safetensors
               [--set name=value ...] [--float-masks] [--no-labels]
               [--id-dtype int64|int32] [--weights-out W.safetensors
               [--weight-std 0.02] [--weight-seed N]]

Config names and defaults are the same as visualbert_torch.py / kiln
(batch 1, text_len 20, regions 100, vocab 30522, visual_dim 2048 (nlvr2: 1024, vcr: 512),
num_labels 3129 (nlvr2: 2), type_vocab 2, ...), so the --set list given to
`kiln init` can be passed unchanged; names that do not affect inputs
(hidden, layers, heads, ...) are accepted and ignored.

Written tensors:
  input_ids [B,T] ids in [0,vocab) (0 at padded positions), token_type_ids [B,T]
  random in [0,type_vocab) (0 at padding), attention_mask [B,T] ones with
  trailing zeros (>= 2 ones per example; at least one example is padded when
  T > 2), visual_embeds [B,R,Dv] float32 N(0,1), visual_token_type_ids [B,R]
  (random; nlvr2: 0 for the first image's half, 1 for the second),
  visual_attention_mask [B,R] ones with a few zeros (>= 1 one).
  Labels (unless --no-labels): vqa/vqa-late labels [B,num_labels] float32 soft
  scores min(1, 0.3*count) on 1-4 answers; pretrain labels [B,T] int (~15% of
  real positions, >= 1 per example, others -100) and sentence_image_labels [B];
  nlvr2 labels [B] int in [0,num_labels).
  vcr: the six inputs above for B * num_choices sequences, shaped [B, num_choices, ...],
  labels [B] int in [0,num_choices). flickr: region_to_phrase_position [B,T+R] int (about
  half the slots a real text position, the others -1), labels [B,T+R,R] float32: per slot
  a distribution over the kept regions (some zero), 0 at masked regions.
  Masks are int64 (float32 with --float-masks); ids use --id-dtype.
--weights-out additionally writes random weights (HF names, HF-like init:
  normal(0, std), LayerNorm 1/0, bias 0) for the same config.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from visualbert_torch import VARIANTS, base, default_config, parse_sets, random_weights  # noqa: E402


def make_inputs(variant, seed, cfg, float_masks=False, labels=True, id_dtype=np.int64):
    if base(variant) == "vcr":
        return make_choices(seed, cfg, float_masks, labels, id_dtype)
    rng = np.random.default_rng(seed)
    B, T, R = cfg["batch"], cfg["text_len"], cfg["regions"]
    V, Dv, TV, NL = cfg["vocab"], cfg["visual_dim"], cfg["type_vocab"], cfg["num_labels"]
    if T < 2:
        raise SystemExit("make_case: text_len must be >= 2")
    if R < 1:
        raise SystemExit("make_case: regions must be >= 1")
    if T > cfg["max_positions"]:
        raise SystemExit("make_case: text_len exceeds max_positions")

    lo = max(2, T - max(1, T // 3))
    lengths = rng.integers(lo, T + 1, size=B)
    if T > 2 and np.all(lengths == T):
        lengths[-1] = T - 1
    amask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)

    ids = rng.integers(0, V, size=(B, T)) * amask
    tt = rng.integers(0, TV, size=(B, T)) * amask

    vmask = np.ones((B, R), dtype=np.int64)
    if R >= 2:
        for b in range(B):
            k = int(rng.integers(1, max(1, R // 8) + 1))
            vmask[b, rng.choice(R, size=k, replace=False)] = 0
    ve = rng.standard_normal((B, R, Dv)).astype(np.float32)
    if base(variant) == "nlvr2" and TV >= 2:
        vtt = np.broadcast_to((np.arange(R) >= (R + 1) // 2).astype(np.int64), (B, R)).copy()
    else:
        vtt = rng.integers(0, TV, size=(B, R))

    mdt = np.float32 if float_masks else np.int64
    out = {
        "input_ids": ids.astype(id_dtype),
        "token_type_ids": tt.astype(id_dtype),
        "attention_mask": amask.astype(mdt),
        "visual_embeds": ve,
        "visual_token_type_ids": vtt.astype(id_dtype),
        "visual_attention_mask": vmask.astype(mdt),
    }
    if not labels:
        return out
    if base(variant) == "vqa":
        lab = np.zeros((B, NL), dtype=np.float32)
        for b in range(B):
            k = int(rng.integers(1, min(4, NL) + 1))
            ans = rng.choice(NL, size=k, replace=False)
            counts = rng.integers(1, 5, size=k)
            lab[b, ans] = np.minimum(1.0, 0.3 * counts)
        out["labels"] = lab
    elif base(variant) == "nlvr2":
        out["labels"] = rng.integers(0, NL, size=B).astype(id_dtype)
    elif base(variant) == "pretrain":
        lab = np.full((B, T), -100, dtype=np.int64)
        for b in range(B):
            n = int(lengths[b])
            chosen = rng.random(n) < 0.15
            chosen[int(rng.integers(0, n))] = True
            pos = np.nonzero(chosen)[0]
            lab[b, pos] = rng.integers(0, V, size=pos.size)
        out["labels"] = lab.astype(id_dtype)
        out["sentence_image_labels"] = rng.integers(0, 2, size=B).astype(id_dtype)
    elif base(variant) == "flickr":
        N = T + R
        pos = np.where(rng.random((B, N)) < 0.5, rng.integers(0, T, size=(B, N)), -1)
        pos = np.minimum(pos, lengths[:, None] - 1)  # a real text position, or -1
        lab = rng.random((B, N, R)) * vmask[:, None, :]
        lab[lab < 0.3] = 0
        for b in range(B):
            kept = np.nonzero(vmask[b])[0]
            for n in range(N):
                if not lab[b, n].any():
                    lab[b, n, kept[int(rng.integers(0, kept.size))]] = 1
        out["region_to_phrase_position"] = pos.astype(id_dtype)
        out["labels"] = (lab / lab.sum(-1, keepdims=True)).astype(np.float32)
    return out


def make_choices(seed, cfg, float_masks, labels, id_dtype):
    """VCR: the single-sequence inputs of batch * num_choices sequences, as [B, C, ...]."""
    B, C = cfg["batch"], cfg["num_choices"]
    seqs = make_inputs("vqa", seed, dict(cfg, batch=B * C), float_masks, False, id_dtype)
    out = {n: a.reshape((B, C) + a.shape[1:]) for n, a in seqs.items()}
    if labels:
        out["labels"] = np.random.default_rng(seed + 1).integers(0, C, size=B).astype(id_dtype)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", required=True, choices=VARIANTS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--float-masks", action="store_true")
    ap.add_argument("--no-labels", action="store_true")
    ap.add_argument("--id-dtype", choices=("int64", "int32"), default="int64")
    ap.add_argument("--weights-out", metavar="W.safetensors")
    ap.add_argument("--weight-std", type=float, default=0.02)
    ap.add_argument("--weight-seed", type=int)
    a = ap.parse_args(argv)
    cfg = default_config(a.variant)
    cfg.update(parse_sets(a.set))
    out = make_inputs(a.variant, a.seed, cfg, a.float_masks, not a.no_labels,
                      np.int64 if a.id_dtype == "int64" else np.int32)
    safetensors_io.write(a.output, out, metadata={
        "producer": "tests/parity/make_case.py", "variant": a.variant, "seed": a.seed})
    if a.weights_out:
        ws = a.weight_seed if a.weight_seed is not None else a.seed + 1000003
        safetensors_io.write(a.weights_out, random_weights(cfg, a.variant, ws, a.weight_std),
                             metadata={"producer": "tests/parity/make_case.py"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
