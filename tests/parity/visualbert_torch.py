#!/usr/bin/python3
"""Independent plain-PyTorch VisualBERT: the parity oracle for kiln.

Follows /work/shared/visualbert.md (Hugging Face parameter names). All math is
written out with torch tensor ops; inference mode (dropout = identity).
Computes in float64 by default; outputs are written as float32.

  visualbert_torch.py --variant {vqa,pretrain,nlvr2,vcr,flickr}[-late] \
      --weights W.safetensors --inputs IN.safetensors -o OUT.safetensors \
      [--set name=value ...] [--dtype float64|float32] [--hidden] [--strict]

Config names (--set): batch text_len regions vocab hidden layers heads
intermediate visual_dim num_labels max_positions dropout type_vocab
layer_norm_eps num_choices alignment_dim. Everything except `heads` and `layer_norm_eps` is inferred from
the weights / inputs; a --set that contradicts them is an error.

Outputs: pooler_output [B,H] always;
  vqa, vqa-late: logits [B,num_labels] (token at sum(attention_mask)-2);
  nlvr2:         logits [B,num_labels] (= cls(pooler_output));
  vcr:           (HF VisualBertForMultipleChoice) inputs [B,C,T] / [B,C,R,Dv],
                 each (example, choice) its own sequence; logits [B,C] (= cls
                 Linear(H,1) of each pooled output), pooler_output [B,C,H];
                 labels [B] (the right choice), cross-entropy;
  flickr:        (HF VisualBertForRegionToPhraseAlignment) logits [B,T+R,R]:
                 encoder outputs at region_to_phrase_position (-1 read as 0)
                 against those at the regions through attention.query/key,
                 / sqrt(their width), + (1 - visual_attention_mask) * float32
                 min; labels [B,T+R,R] distributions, KL-divergence batchmean.
                 The width is read from the weights: HF's class has 64 (hidden /
                 heads) and an unused attention.value; kiln's file uses hidden;
  pretrain:      prediction_logits [B,T,vocab], seq_relationship_logits [B,2];
  loss []        when label inputs are present (pretrain: labels and/or
                 sentence_image_labels; the loss is the sum of the present
                 terms, which are also written as masked_lm_loss /
                 sentence_image_loss).
  --hidden adds last_hidden_state [B,T+R,H] (final sequence; for vqa-late the
  output of additional_layer) and embedding_output [B,T+R,H].
"""

import argparse
import math
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

VARIANTS = ("vqa", "pretrain", "vqa-late", "nlvr2", "nlvr2-late", "pretrain-late",
            "vcr", "vcr-late", "flickr", "flickr-late")


def base(variant):
    """The task of a variant: "nlvr2-late" -> "nlvr2" (late fusion only changes the encoder)."""
    return variant[:-5] if variant.endswith("-late") else variant

CONFIG_DEFAULTS = dict(
    batch=1, text_len=20, regions=100, vocab=30522, hidden=768, layers=12,
    heads=12, intermediate=3072, visual_dim=2048, num_labels=3129,
    max_positions=512, dropout=0.1, type_vocab=2, layer_norm_eps=1e-12,
    num_choices=4, alignment_dim=768)
VARIANT_DEFAULTS = {"nlvr2": dict(num_labels=2, visual_dim=1024), "vcr": dict(visual_dim=512)}
FLOAT_KEYS = ("dropout", "layer_norm_eps")

EMB = "visual_bert.embeddings."
LAYER_SUBNAMES = (
    ("attention.self.query", "hh"), ("attention.self.key", "hh"),
    ("attention.self.value", "hh"), ("attention.output.dense", "hh"),
    ("attention.output.LayerNorm", "ln"), ("intermediate.dense", "ih"),
    ("output.dense", "hi"), ("output.LayerNorm", "ln"))


# ----------------------------------------------------------------- config ---

def default_config(variant):
    cfg = dict(CONFIG_DEFAULTS)
    cfg.update(VARIANT_DEFAULTS.get(base(variant), {}))
    return cfg


def parse_sets(items):
    """['k=v', ...] -> dict with int/float values; unknown names are an error."""
    out = {}
    for it in items or []:
        for part in it.split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise SystemExit(f"--set expects name=value, got {part!r}")
            k, v = part.split("=", 1)
            k = k.strip()
            if k not in CONFIG_DEFAULTS:
                raise SystemExit(f"--set: unknown config name {k!r} "
                                 f"(known: {', '.join(CONFIG_DEFAULTS)})")
            try:
                out[k] = float(v) if k in FLOAT_KEYS else int(v)
            except ValueError:
                raise SystemExit(f"--set {k}: bad value {v!r}")
    return out


def layer_shapes(prefix, cfg):
    H, I = cfg["hidden"], cfg["intermediate"]
    dims = {"hh": (H, H), "ih": (I, H), "hi": (H, I)}
    out = {}
    for sub, kind in LAYER_SUBNAMES:
        if kind == "ln":
            out[f"{prefix}{sub}.weight"] = (H,)
            out[f"{prefix}{sub}.bias"] = (H,)
        else:
            o, i = dims[kind]
            out[f"{prefix}{sub}.weight"] = (o, i)
            out[f"{prefix}{sub}.bias"] = (o,)
    return out


def param_shapes(cfg, variant):
    """Expected parameter names -> shapes (HF VisualBERT naming)."""
    H, V = cfg["hidden"], cfg["vocab"]
    P, TV = cfg["max_positions"], cfg["type_vocab"]
    s = {
        EMB + "word_embeddings.weight": (V, H),
        EMB + "position_embeddings.weight": (P, H),
        EMB + "token_type_embeddings.weight": (TV, H),
        EMB + "LayerNorm.weight": (H,),
        EMB + "LayerNorm.bias": (H,),
        EMB + "visual_token_type_embeddings.weight": (TV, H),
        EMB + "visual_position_embeddings.weight": (P, H),
        EMB + "visual_projection.weight": (H, cfg["visual_dim"]),
        EMB + "visual_projection.bias": (H,),
    }
    for i in range(cfg["layers"]):
        s.update(layer_shapes(f"visual_bert.encoder.layer.{i}.", cfg))
    s["visual_bert.pooler.dense.weight"] = (H, H)
    s["visual_bert.pooler.dense.bias"] = (H,)
    if variant.endswith("-late"):
        s.update(layer_shapes("visual_bert.additional_layer.", cfg))
    if base(variant) in ("vqa", "nlvr2"):
        s["cls.weight"] = (cfg["num_labels"], H)
        s["cls.bias"] = (cfg["num_labels"],)
    elif base(variant) == "vcr":
        s["cls.weight"] = (1, H)
        s["cls.bias"] = (1,)
    if base(variant) == "flickr":
        A = cfg["alignment_dim"]
        for n in ("query", "key"):
            s[f"attention.{n}.weight"] = (A, H)
            s[f"attention.{n}.bias"] = (A,)
    if base(variant) in ("pretrain", "flickr"):
        s["cls.predictions.transform.dense.weight"] = (H, H)
        s["cls.predictions.transform.dense.bias"] = (H,)
        s["cls.predictions.transform.LayerNorm.weight"] = (H,)
        s["cls.predictions.transform.LayerNorm.bias"] = (H,)
        s["cls.predictions.bias"] = (V,)
        s["cls.seq_relationship.weight"] = (2, H)
        s["cls.seq_relationship.bias"] = (2,)
    if base(variant) not in ("vqa", "nlvr2", "vcr", "pretrain", "flickr"):
        raise ValueError(f"unknown variant {variant!r}")
    return s


def infer_config(variant, weights, inputs=None, sets=None):
    """Defaults <- --set <- shapes found in weights/inputs (conflicts are errors)."""
    sets = dict(sets or {})
    cfg = default_config(variant)
    cfg.update(sets)
    found = {}

    def shape(name):
        if name not in weights:
            raise SystemExit(f"weights: missing required tensor {name}")
        return tuple(weights[name].shape)

    found["vocab"], found["hidden"] = shape(EMB + "word_embeddings.weight")
    found["max_positions"] = shape(EMB + "position_embeddings.weight")[0]
    found["type_vocab"] = shape(EMB + "token_type_embeddings.weight")[0]
    found["visual_dim"] = shape(EMB + "visual_projection.weight")[1]
    found["intermediate"] = shape("visual_bert.encoder.layer.0.intermediate.dense.weight")[0]
    idx = set()
    for n in weights:
        m = re.match(r"visual_bert\.encoder\.layer\.(\d+)\.", n)
        if m:
            idx.add(int(m.group(1)))
    found["layers"] = len(idx)
    if idx != set(range(len(idx))):
        raise SystemExit(f"weights: encoder layer indices not contiguous: {sorted(idx)}")
    if base(variant) in ("vqa", "nlvr2"):
        found["num_labels"] = shape("cls.weight")[0]
    if base(variant) == "flickr":
        found["alignment_dim"] = shape("attention.query.weight")[0]
    if inputs is not None:
        if "input_ids" not in inputs or "visual_embeds" not in inputs:
            raise SystemExit("inputs: input_ids and visual_embeds are required")
        ids_shape, ve_shape = inputs["input_ids"].shape, inputs["visual_embeds"].shape
        if base(variant) == "vcr":  # a choice axis after the batch
            if len(ids_shape) != 3 or len(ve_shape) != 4 or ids_shape[1] != ve_shape[1]:
                raise SystemExit(f"vcr: input_ids {list(ids_shape)} / visual_embeds "
                                 f"{list(ve_shape)}, expected [B,C,T] / [B,C,R,Dv]")
            found["num_choices"] = ids_shape[1]
            ids_shape, ve_shape = ids_shape[:1] + ids_shape[2:], ve_shape[:1] + ve_shape[2:]
        found["batch"], found["text_len"] = ids_shape
        b2, found["regions"], dv = ve_shape
        if b2 != found["batch"]:
            raise SystemExit(f"inputs: batch mismatch input_ids {found['batch']} "
                             f"vs visual_embeds {b2}")
        if dv != found["visual_dim"]:
            raise SystemExit(f"inputs: visual_embeds last dim {dv} != weights "
                             f"visual_dim {found['visual_dim']}")
    for k, v in found.items():
        if k in sets and sets[k] != v:
            raise SystemExit(f"--set {k}={sets[k]} contradicts weights/inputs ({v})")
        cfg[k] = v
    if cfg["hidden"] % cfg["heads"]:
        raise SystemExit(f"hidden {cfg['hidden']} not divisible by heads {cfg['heads']}")
    if cfg["text_len"] > cfg["max_positions"]:
        raise SystemExit("text_len exceeds max_positions")
    return cfg


def check_weights(weights, cfg, variant, strict=False):
    exp = param_shapes(cfg, variant)
    errs = []
    for n, s in exp.items():
        if n not in weights:
            errs.append(f"missing {n} {list(s)}")
        elif tuple(weights[n].shape) != tuple(s):
            errs.append(f"{n}: shape {list(weights[n].shape)}, expected {list(s)}")
    extra = sorted(set(weights) - set(exp))
    if extra:
        msg = f"{len(extra)} unused weight tensor(s): " + ", ".join(extra[:8]) + \
            (" ..." if len(extra) > 8 else "")
        if strict:
            errs.append(msg)
        else:
            print("visualbert_torch: note: " + msg, file=sys.stderr)
    if errs:
        raise SystemExit("weights do not match variant %s:\n  " % variant + "\n  ".join(errs))


# ------------------------------------------------------------------ model ---

def linear(x, W, name):
    return torch.matmul(x, W[name + ".weight"].transpose(0, 1)) + W[name + ".bias"]


def layer_norm(x, W, name, eps):
    return F.layer_norm(x, (x.shape[-1],), W[name + ".weight"], W[name + ".bias"], eps)


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def additive_mask(mask, dtype):
    """[B,N] (1 = attend) -> [B,1,1,N] additive mask over keys."""
    return ((1.0 - mask.to(dtype)) * -10000.0)[:, None, None, :]


ATTENTIONS = None  # with --attentions: a list, each encoder layer's probabilities in order


def encoder_layer(x, mask_add, W, p, heads, eps):
    B, N, H = x.shape
    d = H // heads

    def split(t):  # [B,N,H] -> [B,heads,N,d]
        return t.reshape(B, N, heads, d).permute(0, 2, 1, 3)

    q = split(linear(x, W, p + "attention.self.query"))
    k = split(linear(x, W, p + "attention.self.key"))
    v = split(linear(x, W, p + "attention.self.value"))
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d) + mask_add
    probs = torch.softmax(scores, dim=-1)
    if ATTENTIONS is not None:
        ATTENTIONS.append(probs)
    ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).reshape(B, N, H)
    a = layer_norm(x + linear(ctx, W, p + "attention.output.dense"), W,
                   p + "attention.output.LayerNorm", eps)
    inter = gelu(linear(a, W, p + "intermediate.dense"))
    return layer_norm(a + linear(inter, W, p + "output.dense"), W,
                      p + "output.LayerNorm", eps)


def embeddings(W, inp, eps):
    ids = inp["input_ids"]
    B, T = ids.shape
    we = W[EMB + "word_embeddings.weight"]
    e = we[ids] + W[EMB + "token_type_embeddings.weight"][inp["token_type_ids"]] \
        + W[EMB + "position_embeddings.weight"][:T][None]
    f = linear(inp["visual_embeds"], W, EMB + "visual_projection") \
        + W[EMB + "visual_position_embeddings.weight"][0][None, None] \
        + W[EMB + "visual_token_type_embeddings.weight"][inp["visual_token_type_ids"]]
    return layer_norm(torch.cat([e, f], dim=1), W, EMB + "LayerNorm", eps)


def vqa_gather_index(attention_mask):
    s = attention_mask.to(torch.float64).sum(1)
    idx = torch.round(s).to(torch.long) - 2
    if (idx < 0).any():
        raise SystemExit("vqa: sum(attention_mask) - 2 < 0 for some example")
    return idx


def forward(W, inp, variant, cfg, debug=False):
    """W, inp: dicts of torch tensors (floats already in the compute dtype,
    ids/labels int64). Returns dict of torch tensors."""
    if base(variant) == "vcr":
        return forward_multiple_choice(W, inp, variant, cfg, debug)
    eps, heads = cfg["layer_norm_eps"], cfg["heads"]
    dtype = W[EMB + "word_embeddings.weight"].dtype
    T = inp["input_ids"].shape[1]
    L = cfg["layers"]
    out = {}

    x = embeddings(W, inp, eps)
    full_mask = torch.cat([inp["attention_mask"].to(dtype),
                           inp["visual_attention_mask"].to(dtype)], dim=1)
    if debug:
        out["embedding_output"] = x
    if variant.endswith("-late"):
        t = x[:, :T]
        vis = x[:, T:]
        tmask = additive_mask(inp["attention_mask"], dtype)
        for i in range(L):
            t = encoder_layer(t, tmask, W, f"visual_bert.encoder.layer.{i}.", heads, eps)
        if debug:
            out["text_hidden_state"] = t
        h = torch.cat([t, vis], dim=1)
        h = encoder_layer(h, additive_mask(full_mask, dtype), W,
                          "visual_bert.additional_layer.", heads, eps)
    else:
        h = x
        m = additive_mask(full_mask, dtype)
        for i in range(L):
            h = encoder_layer(h, m, W, f"visual_bert.encoder.layer.{i}.", heads, eps)
    if debug:
        out["last_hidden_state"] = h
    pooled = torch.tanh(linear(h[:, 0], W, "visual_bert.pooler.dense"))
    out["pooler_output"] = pooled

    if base(variant) == "vqa":
        idx = vqa_gather_index(inp["attention_mask"])
        tok = h[torch.arange(h.shape[0]), idx]
        logits = linear(tok, W, "cls")
        out["logits"] = logits
        if "labels" in inp:
            target = inp["labels"].to(dtype)
            out["loss"] = F.kl_div(torch.log_softmax(logits, dim=-1), target,
                                   reduction="batchmean")
    elif base(variant) == "nlvr2":
        logits = linear(pooled, W, "cls")
        out["logits"] = logits
        if "labels" in inp:
            out["loss"] = F.cross_entropy(logits, inp["labels"].reshape(-1))
    elif base(variant) == "flickr":
        # HF VisualBertForRegionToPhraseAlignment: phrase slots gather sequence outputs,
        # regions are the outputs after the text; one head of the width of attention.query.
        pos = inp["region_to_phrase_position"]
        pos = pos * (pos != -1).to(pos.dtype)
        phrases = torch.gather(h, 1, pos[:, :, None].expand(-1, -1, h.shape[-1]))
        regions = h[:, T:]
        q = linear(phrases, W, "attention.query")
        k = linear(regions, W, "attention.key")
        vmask = inp["visual_attention_mask"].to(dtype)[:, None, :]
        logits = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1]) \
            + (1.0 - vmask) * torch.finfo(torch.float32).min
        out["logits"] = logits
        if "labels" in inp:
            out["loss"] = F.kl_div(torch.log_softmax(logits, dim=-1), inp["labels"].to(dtype),
                                   reduction="batchmean")
    elif base(variant) == "pretrain":
        p = "cls.predictions."
        tr = gelu(linear(h[:, :T], W, p + "transform.dense"))
        tr = layer_norm(tr, W, p + "transform.LayerNorm", eps)
        pred = torch.matmul(tr, W[EMB + "word_embeddings.weight"].transpose(0, 1)) \
            + W[p + "bias"]
        out["prediction_logits"] = pred
        seq = linear(pooled, W, "cls.seq_relationship")
        out["seq_relationship_logits"] = seq
        terms = []
        if "labels" in inp:
            lab = inp["labels"]
            if tuple(lab.shape) != tuple(inp["input_ids"].shape):
                raise SystemExit(f"pretrain: labels shape {list(lab.shape)} != [B,T]")
            mlm = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), lab.reshape(-1),
                                  ignore_index=-100)
            out["masked_lm_loss"] = mlm
            terms.append(mlm)
        if "sentence_image_labels" in inp:
            sil = F.cross_entropy(seq, inp["sentence_image_labels"].reshape(-1))
            out["sentence_image_loss"] = sil
            terms.append(sil)
        if terms:
            out["loss"] = sum(terms)
    else:
        raise ValueError(variant)
    return out


def forward_multiple_choice(W, inp, variant, cfg, debug=False):
    """HF VisualBertForMultipleChoice: every (example, choice) pair is a sequence of its own
    (inputs viewed as [B*C, ...]); cls(pooled) per sequence, viewed as [B, C]."""
    B, C = inp["input_ids"].shape[:2]
    flat = {n: t.reshape((B * C,) + tuple(t.shape[2:])) for n, t in inp.items() if n != "labels"}
    seq = forward(W, flat, variant.replace("vcr", "nlvr2"), dict(cfg, num_labels=1), debug)
    out = {k: v.reshape((B, C) + tuple(v.shape[1:])) for k, v in seq.items() if k != "logits"}
    logits = seq["logits"].reshape(B, C)
    out["logits"] = logits
    if "labels" in inp:
        out["loss"] = F.cross_entropy(logits, inp["labels"].reshape(-1))
    return out


# ----------------------------------------------------------------- driver ---

def prepare_inputs(inputs_np, cfg, variant, dtype):
    """numpy inputs -> torch tensors, filling HF defaults for missing optionals."""
    B, T, R = cfg["batch"], cfg["text_len"], cfg["regions"]
    lead = (B, cfg["num_choices"]) if base(variant) == "vcr" else (B,)
    inp = {}

    def ids(name, default, shape):
        if name not in inputs_np:
            if default is None:
                raise SystemExit(f"inputs: missing {name}")
            print(f"visualbert_torch: note: {name} absent, using {default}s",
                  file=sys.stderr)
            a = np.full(shape, default, dtype=np.int64)
        else:
            a = inputs_np[name]
            if tuple(a.shape) != tuple(shape):
                raise SystemExit(f"inputs: {name} shape {list(a.shape)}, expected {list(shape)}")
            if a.dtype.kind == "f":
                if not np.all(a == np.round(a)):
                    raise SystemExit(f"inputs: {name} has non-integer values")
            a = a.astype(np.int64)
        return torch.from_numpy(np.ascontiguousarray(a))

    inp["input_ids"] = ids("input_ids", None, lead + (T,))
    inp["token_type_ids"] = ids("token_type_ids", 0, lead + (T,))
    inp["visual_token_type_ids"] = ids("visual_token_type_ids", 1, lead + (R,))
    for n, hi in (("input_ids", cfg["vocab"]), ("token_type_ids", cfg["type_vocab"]),
                  ("visual_token_type_ids", cfg["type_vocab"])):
        t = inp[n]
        if t.numel() and (t.min() < 0 or t.max() >= hi):
            raise SystemExit(f"inputs: {n} out of range [0,{hi})")
    for n, shape in (("attention_mask", lead + (T,)), ("visual_attention_mask", lead + (R,))):
        if n not in inputs_np:
            print(f"visualbert_torch: note: {n} absent, using ones", file=sys.stderr)
            inp[n] = torch.ones(shape, dtype=dtype)
        else:
            a = inputs_np[n]
            if tuple(a.shape) != tuple(shape):
                raise SystemExit(f"inputs: {n} shape {list(a.shape)}, expected {list(shape)}")
            inp[n] = torch.from_numpy(np.ascontiguousarray(a.astype(np.float64))).to(dtype)
    ve = inputs_np["visual_embeds"]
    inp["visual_embeds"] = torch.from_numpy(np.ascontiguousarray(ve.astype(np.float64))).to(dtype)

    if "labels" in inputs_np:
        lab = inputs_np["labels"]
        if base(variant) == "vqa":
            if tuple(lab.shape) != (B, cfg["num_labels"]):
                raise SystemExit(f"inputs: labels shape {list(lab.shape)}, expected "
                                 f"{[B, cfg['num_labels']]}")
            inp["labels"] = torch.from_numpy(lab.astype(np.float64)).to(dtype)
        elif base(variant) == "flickr":
            if tuple(lab.shape) != (B, T + R, R):
                raise SystemExit(f"inputs: labels shape {list(lab.shape)}, expected {[B, T + R, R]}")
            inp["labels"] = torch.from_numpy(lab.astype(np.float64)).to(dtype)
        elif base(variant) in ("nlvr2", "vcr"):
            lab = lab.reshape(-1)
            if lab.shape[0] != B:
                raise SystemExit(f"inputs: labels shape {list(inputs_np['labels'].shape)}, expected [{B}]")
            inp["labels"] = torch.from_numpy(lab.astype(np.int64))
        else:
            if tuple(lab.shape) != (B, T):
                raise SystemExit(f"inputs: labels shape {list(lab.shape)}, expected {[B, T]}")
            inp["labels"] = torch.from_numpy(lab.astype(np.int64))
    if base(variant) == "flickr":
        pos = ids("region_to_phrase_position", None, (B, T + R))
        if pos.numel() and (pos.min() < -1 or pos.max() >= T + R):
            raise SystemExit(f"inputs: region_to_phrase_position out of range [-1,{T + R})")
        inp["region_to_phrase_position"] = pos
    if "sentence_image_labels" in inputs_np and base(variant) == "pretrain":
        sil = inputs_np["sentence_image_labels"].reshape(-1)
        if sil.shape[0] != B:
            raise SystemExit("inputs: sentence_image_labels must be [B]")
        inp["sentence_image_labels"] = torch.from_numpy(sil.astype(np.int64))
    return inp


def run(variant, weights_np, inputs_np, sets=None, dtype=torch.float64,
        debug=False, strict=False):
    """numpy in, numpy (float32) out. Used by the CLI and the self-test."""
    cfg = infer_config(variant, weights_np, inputs_np, sets)
    check_weights(weights_np, cfg, variant, strict=strict)
    wanted = param_shapes(cfg, variant)
    W = {n: torch.from_numpy(np.asarray(a, dtype=np.float64)).to(dtype)
         for n, a in weights_np.items() if n in wanted}
    inp = prepare_inputs(inputs_np, cfg, variant, dtype)
    with torch.no_grad():
        out = forward(W, inp, variant, cfg, debug=debug)
    return {k: v.detach().to(torch.float64).numpy().astype(np.float32) for k, v in out.items()}, cfg


def random_weights(cfg, variant, seed=0, std=0.02, ln_noise=0.0, bias_std=0.0):
    """Random weights in HF naming. Defaults mimic HF init (normal(0,std),
    LayerNorm 1/0, Linear bias 0); ln_noise/bias_std perturb those for sharper tests."""
    rng = np.random.default_rng(seed)
    out = {}
    for n, s in param_shapes(cfg, variant).items():
        if "LayerNorm" in n and n.endswith(".weight"):
            a = 1.0 + ln_noise * rng.standard_normal(s)
        elif n.endswith(".bias"):
            a = bias_std * rng.standard_normal(s)
        else:
            a = std * rng.standard_normal(s)
        out[n] = np.asarray(a, dtype=np.float32)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", required=True, choices=VARIANTS)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--hidden", action="store_true",
                    help="also write last_hidden_state and embedding_output")
    ap.add_argument("--strict", action="store_true",
                    help="unused weight tensors are an error")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attentions", action="store_true",
                    help="also write attentions.{i}, each layer's softmax probabilities")
    a = ap.parse_args(argv)
    global ATTENTIONS
    ATTENTIONS = [] if a.attentions else None
    torch.set_num_threads(max(1, a.threads))
    sets = parse_sets(a.set)
    weights = safetensors_io.read(a.weights)
    inputs = safetensors_io.read(a.inputs)
    dtype = torch.float64 if a.dtype == "float64" else torch.float32
    out, cfg = run(a.variant, weights, inputs, sets, dtype, debug=a.hidden, strict=a.strict)
    if a.hidden:
        out.pop("text_hidden_state", None)
    for i, p in enumerate(ATTENTIONS or []):
        out[f"attentions.{i}"] = p
    safetensors_io.write(a.output, out, metadata={
        "producer": "tests/parity/visualbert_torch.py", "variant": a.variant,
        "dtype": a.dtype, "config": " ".join(f"{k}={v}" for k, v in cfg.items())})
    return 0


if __name__ == "__main__":
    sys.exit(main())
