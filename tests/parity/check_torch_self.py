#!/usr/bin/python3
"""Self-test of the parity oracle (no kiln needed).

  check_torch_self.py [-v] [--keep DIR]

Tiny config: hidden 32, heads 4, layers 2, intermediate 64, vocab 50,
visual_dim 24, text_len 6, regions 5, batch 2 (nlvr2: num_labels 2, others 7).
Checks:
  * safetensors_io round trip (all dtypes, BF16, metadata, alignment);
  * parameter counts of the full-size models equal the spec's numbers;
  * one encoder layer == torch.nn.TransformerEncoderLayer (post-LN, exact GELU);
  * every variant == a separate NumPy float64 implementation (loops over batch
    and heads, explicit softmax / LayerNorm / erf GELU, losses by hand);
  * the CLI chain make_case -> visualbert_torch (float64 and float32) ->
    compare.py: float32 agrees with float64; compare.py fails on a perturbation;
    the CLI rejects missing weights and contradicting --set;
  * invariances: padded text tokens and masked regions do not affect real
    outputs; permuting regions (with masks/types) leaves pooler_output, logits
    and text states unchanged; late fusion: visual_embeds do not affect the
    text after the text layers (but do affect the outputs); batch examples are
    independent; float masks == int masks; real tokens/masks do matter.
Exit status 0 on success, 1 on any failure.
"""

import argparse
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io  # noqa: E402
import visualbert_torch as vb  # noqa: E402
from make_case import make_inputs  # noqa: E402

PY = sys.executable or "/usr/bin/python3"
TINY = dict(hidden=32, heads=4, layers=2, intermediate=64, vocab=50, visual_dim=24,
            text_len=6, regions=5, batch=2, num_labels=7)
FAILS = []
VERBOSE = False


def check(cond, what, detail=""):
    if cond:
        if VERBOSE:
            print(f"  ok    {what} {detail}")
    else:
        print(f"  FAIL  {what} {detail}")
        FAILS.append(what)
    return cond


def maxdiff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def tiny_cfg(variant):
    cfg = vb.default_config(variant)
    cfg.update(TINY)
    if vb.base(variant) == "nlvr2":
        cfg["num_labels"] = 2
    return cfg


def tiny_weights(cfg, variant, seed):
    # Larger-than-HF scales so attention is peaky and biases/LN params matter.
    return vb.random_weights(cfg, variant, seed, std=0.3, ln_noise=0.2, bias_std=0.1)


def sets_of(cfg):
    return [f"{k}={cfg[k]}" for k in ("batch", "text_len", "regions", "vocab", "hidden",
                                      "layers", "heads", "intermediate", "visual_dim",
                                      "num_labels")]


def run64(variant, W, inp, cfg, debug=True):
    out, _ = vb.run(variant, W, inp, {"heads": cfg["heads"]}, torch.float64, debug=debug)
    return out


def run64_full(variant, W, inp, cfg):
    """Like run64 but returns float64 numpy (no float32 rounding) for tight checks."""
    c = vb.infer_config(variant, W, inp, {"heads": cfg["heads"]})
    Wt = {n: torch.from_numpy(np.asarray(a, np.float64)) for n, a in W.items()}
    it = vb.prepare_inputs(inp, c, variant, torch.float64)
    with torch.no_grad():
        o = vb.forward(Wt, it, variant, c, debug=True)
    return {k: v.numpy() for k, v in o.items()}


# ------------------------------------------------------- numpy reference ---

_erf = np.vectorize(math.erf)


def np_ln(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def np_gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def np_lin(x, W, n):
    return x @ W[n + ".weight"].T + W[n + ".bias"]


def np_layer(x, mask, W, p, heads, eps):
    B, N, H = x.shape
    d = H // heads
    out = np.empty_like(x)
    for b in range(B):
        q = np_lin(x[b], W, p + "attention.self.query")
        k = np_lin(x[b], W, p + "attention.self.key")
        v = np_lin(x[b], W, p + "attention.self.value")
        ctx = np.empty((N, H))
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            s = q[:, sl] @ k[:, sl].T / math.sqrt(d) + (1.0 - mask[b])[None, :] * -10000.0
            s = np.exp(s - s.max(-1, keepdims=True))
            ctx[:, sl] = (s / s.sum(-1, keepdims=True)) @ v[:, sl]
        a = np_ln(x[b] + np_lin(ctx, W, p + "attention.output.dense"),
                  W[p + "attention.output.LayerNorm.weight"],
                  W[p + "attention.output.LayerNorm.bias"], eps)
        f = np_lin(np_gelu(np_lin(a, W, p + "intermediate.dense")), W, p + "output.dense")
        out[b] = np_ln(a + f, W[p + "output.LayerNorm.weight"],
                       W[p + "output.LayerNorm.bias"], eps)
    return out


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_model(variant, W32, inp, cfg):
    if vb.base(variant) == "vcr":  # every (example, choice) pair its own sequence
        B, C = inp["input_ids"].shape[:2]
        flat = {k: v.reshape((B * C,) + v.shape[2:]) for k, v in inp.items() if k != "labels"}
        seq = np_model(variant.replace("vcr", "nlvr2"), W32, flat, dict(cfg, num_labels=1))
        out = {k: v.reshape((B, C) + v.shape[1:]) for k, v in seq.items() if k != "logits"}
        out["logits"] = seq["logits"].reshape(B, C)
        if "labels" in inp:
            lp = np_log_softmax(out["logits"])
            out["loss"] = np.array(-np.mean([lp[b, int(inp["labels"][b])] for b in range(B)]))
        return out
    W = {k: v.astype(np.float64) for k, v in W32.items()}
    eps, heads, L = cfg["layer_norm_eps"], cfg["heads"], cfg["layers"]
    E = "visual_bert.embeddings."
    ids, tt = inp["input_ids"], inp["token_type_ids"]
    B, T = ids.shape
    R = inp["visual_embeds"].shape[1]
    am = inp["attention_mask"].astype(np.float64)
    vm = inp["visual_attention_mask"].astype(np.float64)
    x = np.zeros((B, T + R, cfg["hidden"]))
    for b in range(B):
        for t in range(T):
            x[b, t] = (W[E + "word_embeddings.weight"][ids[b, t]]
                       + W[E + "position_embeddings.weight"][t]
                       + W[E + "token_type_embeddings.weight"][tt[b, t]])
        for r in range(R):
            x[b, T + r] = (W[E + "visual_projection.weight"] @ inp["visual_embeds"][b, r].astype(np.float64)
                           + W[E + "visual_projection.bias"]
                           + W[E + "visual_position_embeddings.weight"][0]
                           + W[E + "visual_token_type_embeddings.weight"][inp["visual_token_type_ids"][b, r]])
    x = np_ln(x, W[E + "LayerNorm.weight"], W[E + "LayerNorm.bias"], eps)
    full = np.concatenate([am, vm], 1)
    if variant.endswith("-late"):
        t = x[:, :T]
        for i in range(L):
            t = np_layer(t, am, W, f"visual_bert.encoder.layer.{i}.", heads, eps)
        h = np_layer(np.concatenate([t, x[:, T:]], 1), full, W,
                     "visual_bert.additional_layer.", heads, eps)
    else:
        h = x
        for i in range(L):
            h = np_layer(h, full, W, f"visual_bert.encoder.layer.{i}.", heads, eps)
    out = {"last_hidden_state": h}
    pooled = np.tanh(np_lin(h[:, 0], W, "visual_bert.pooler.dense"))
    out["pooler_output"] = pooled
    if vb.base(variant) == "vqa":
        logits = np.stack([np_lin(h[b, int(round(am[b].sum())) - 2], W, "cls") for b in range(B)])
        out["logits"] = logits
        if "labels" in inp:
            lp = np_log_softmax(logits)
            t_ = inp["labels"].astype(np.float64)
            tot = 0.0
            for b in range(B):
                for j in range(t_.shape[1]):
                    if t_[b, j] > 0:
                        tot += t_[b, j] * (math.log(t_[b, j]) - lp[b, j])
            out["loss"] = np.array(tot / B)
    elif vb.base(variant) == "nlvr2":
        logits = np_lin(pooled, W, "cls")
        out["logits"] = logits
        if "labels" in inp:
            lp = np_log_softmax(logits)
            out["loss"] = np.array(-np.mean([lp[b, int(inp["labels"][b])] for b in range(B)]))
    elif vb.base(variant) == "flickr":
        pos = inp["region_to_phrase_position"]
        S, fmin = pos.shape[1], float(np.finfo(np.float32).min)
        logits = np.zeros((B, S, R))
        for b in range(B):
            for s in range(S):
                q = np_lin(h[b, max(int(pos[b, s]), 0)], W, "attention.query")
                for r in range(R):
                    k = np_lin(h[b, T + r], W, "attention.key")
                    logits[b, s, r] = q @ k / math.sqrt(q.shape[0]) + (1.0 - vm[b, r]) * fmin
        out["logits"] = logits
        if "labels" in inp:
            lp, t_ = np_log_softmax(logits), inp["labels"].astype(np.float64)
            out["loss"] = np.array(sum(t_[i] * (math.log(t_[i]) - lp[i]) for i in zip(*np.nonzero(t_ > 0))) / B)
    else:
        p = "cls.predictions."
        tr = np_ln(np_gelu(np_lin(h[:, :T], W, p + "transform.dense")),
                   W[p + "transform.LayerNorm.weight"], W[p + "transform.LayerNorm.bias"], eps)
        pred = tr @ W[E + "word_embeddings.weight"].T + W[p + "bias"]
        seq = np_lin(pooled, W, "cls.seq_relationship")
        out["prediction_logits"] = pred
        out["seq_relationship_logits"] = seq
        if "labels" in inp:
            lp = np_log_softmax(pred)
            terms = [-lp[b, t, int(inp["labels"][b, t])] for b in range(B) for t in range(T)
                     if inp["labels"][b, t] != -100]
            mlm = float(np.mean(terms))
            ls = np_log_softmax(seq)
            sil = -np.mean([ls[b, int(inp["sentence_image_labels"][b])] for b in range(B)])
            out["loss"] = np.array(mlm + sil)
    return out


# ------------------------------------------------------------------ tests ---

def test_safetensors(tmp):
    print("safetensors_io round trip")
    rng = np.random.default_rng(1)
    d = {
        "f64": rng.standard_normal((3, 4)),
        "f32": rng.standard_normal((2, 3, 5)).astype(np.float32),
        "f16": rng.standard_normal((7,)).astype(np.float16),
        "i64": rng.integers(-10**12, 10**12, size=(4,)),
        "i32": rng.integers(-1000, 1000, size=(2, 2)).astype(np.int32),
        "scalar": np.array(3.25, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "u8": np.arange(5, dtype=np.uint8),
    }
    p = os.path.join(tmp, "rt.safetensors")
    safetensors_io.write(p, d, metadata={"format": "pt", "x": 1})
    r, meta = safetensors_io.read(p, with_metadata=True)
    check(meta == {"format": "pt", "x": "1"}, "metadata round trip", str(meta))
    for k, v in d.items():
        check(k in r and r[k].dtype == v.dtype and r[k].shape == v.shape and np.array_equal(r[k], v),
              f"round trip {k}")
    with open(p, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    check((8 + n) % 8 == 0, "header padded to 8-byte alignment")
    x = np.array([1.0, -2.5, 3.140625, 1e-3, 65504.0, 1.00390625, 1.01171875], np.float32)
    p2 = os.path.join(tmp, "bf.safetensors")
    safetensors_io.write(p2, {"x": x}, bf16=["x"])
    hdr, _, _ = safetensors_io.read_header(p2)
    y = safetensors_io.read(p2)["x"]
    # 1.00390625 = 1 + 2^-8 is a tie -> even (1.0); 1.01171875 = 1 + 3*2^-8 -> 1.015625
    expect = np.array([1.0, -2.5, 3.140625, 0.00099945068359375, 65536.0, 1.0, 1.015625], np.float32)
    check(hdr["x"]["dtype"] == "BF16" and y.dtype == np.float32 and np.array_equal(y, expect),
          "bf16 write/read (round to nearest even)", str(y))


def test_param_counts():
    print("parameter counts (full-size, spec)")
    for variant, n_exp in (("core", 111450624), ("vqa", 113856825), ("pretrain", 112074812)):
        cfg = vb.default_config("vqa")
        shapes = vb.param_shapes(cfg, "vqa" if variant == "core" else variant)
        if variant == "core":
            shapes = {k: s for k, s in shapes.items() if not k.startswith("cls.")}
        n = sum(int(np.prod(s)) for s in shapes.values())
        check(n == n_exp, f"param count {variant}", f"{n} vs {n_exp}")
    for variant, n_exp in (("vcr", 110271745), ("flickr", 113255996)):
        n = sum(int(np.prod(s)) for s in vb.param_shapes(vb.default_config(variant), variant).values())
        check(n == n_exp, f"param count {variant}", f"{n} vs {n_exp}")
    cfg = vb.default_config("vqa-late")
    extra = sum(int(np.prod(s)) for k, s in vb.param_shapes(cfg, "vqa-late").items()
                if "additional_layer" in k)
    check(extra == 7087872, "additional_layer params = one BERT layer", str(extra))


def test_vs_torch_layer():
    print("encoder layer vs torch.nn.TransformerEncoderLayer")
    cfg = tiny_cfg("vqa")
    W = tiny_weights(cfg, "vqa", 11)
    Wt = {k: torch.from_numpy(v.astype(np.float64)) for k, v in W.items()}
    p = "visual_bert.encoder.layer.1."
    H, heads = cfg["hidden"], cfg["heads"]
    ref = torch.nn.TransformerEncoderLayer(H, heads, cfg["intermediate"], dropout=0.0,
                                           activation="gelu", layer_norm_eps=cfg["layer_norm_eps"],
                                           batch_first=True, norm_first=False).double()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(torch.cat([Wt[p + f"attention.self.{n}.weight"]
                                                      for n in ("query", "key", "value")]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([Wt[p + f"attention.self.{n}.bias"]
                                                    for n in ("query", "key", "value")]))
        ref.self_attn.out_proj.weight.copy_(Wt[p + "attention.output.dense.weight"])
        ref.self_attn.out_proj.bias.copy_(Wt[p + "attention.output.dense.bias"])
        ref.linear1.weight.copy_(Wt[p + "intermediate.dense.weight"])
        ref.linear1.bias.copy_(Wt[p + "intermediate.dense.bias"])
        ref.linear2.weight.copy_(Wt[p + "output.dense.weight"])
        ref.linear2.bias.copy_(Wt[p + "output.dense.bias"])
        ref.norm1.weight.copy_(Wt[p + "attention.output.LayerNorm.weight"])
        ref.norm1.bias.copy_(Wt[p + "attention.output.LayerNorm.bias"])
        ref.norm2.weight.copy_(Wt[p + "output.LayerNorm.weight"])
        ref.norm2.bias.copy_(Wt[p + "output.LayerNorm.bias"])
    ref.train()  # dropout is 0; train mode avoids the fused fast path
    g = torch.Generator().manual_seed(3)
    B, N = 3, 9
    x = torch.randn(B, N, H, generator=g, dtype=torch.float64)
    mask = torch.ones(B, N, dtype=torch.float64)
    mask[0, 7:] = 0
    mask[2, 3] = 0
    add = vb.additive_mask(mask, torch.float64)  # [B,1,1,N]
    with torch.no_grad():
        ours = vb.encoder_layer(x, add, Wt, p, heads, cfg["layer_norm_eps"])
        src_mask = add.expand(B, heads, N, N).reshape(B * heads, N, N)
        theirs = ref(x, src_mask=src_mask)
    e = maxdiff(ours.numpy(), theirs.numpy())
    check(e < 1e-12, "layer == nn.TransformerEncoderLayer", f"max diff {e:.2e}")


def make_tiny_case(variant, seed, float_masks=False):
    cfg = tiny_cfg(variant)
    inp = make_inputs(variant, seed, cfg, float_masks=float_masks, labels=True)
    # force different text lengths per example (exercises per-example VQA index)
    if vb.base(variant) == "vcr":  # [batch, choices, text_len]: the masks as made
        return cfg, inp
    am = np.zeros((cfg["batch"], cfg["text_len"]), dtype=inp["attention_mask"].dtype)
    am[0, :] = 1
    am[1, :4] = 1
    inp["attention_mask"] = am
    inp["input_ids"] = inp["input_ids"].copy()
    inp["input_ids"][1, 4:] = 0
    if vb.base(variant) == "pretrain":
        lab = inp["labels"].copy()
        lab[1, 4:] = -100
        lab[1, 1] = 7
        inp["labels"] = lab
    return cfg, inp


# The variants the command-line and invariance checks below run (VCR's inputs have a
# choices dimension those checks do not build; VCR and Flickr30K are held to kiln by the
# parity tests and to NumPy by test_vs_numpy).
NUMPY_VARIANTS = tuple(v for v in vb.VARIANTS if vb.base(v) in ("vqa", "nlvr2", "pretrain"))


def test_vs_numpy():
    print("torch oracle vs NumPy reference (float64)")
    for variant in vb.VARIANTS:
        cfg, inp = make_tiny_case(variant, 5)
        W = tiny_weights(cfg, variant, 21)
        o = run64_full(variant, W, inp, cfg)
        r = np_model(variant, W, inp, cfg)
        for k in r:
            # Flickr30K's logits at padded regions hold the most negative float32: they are
            # compared for being there, the rest (and the scale) on their own.
            real = np.abs(r[k]) < 1e30
            check(o[k].shape == r[k].shape and np.array_equal(real, np.abs(o[k]) < 1e30),
                  f"{variant}: {k}: the same padded entries")
            scale = max(1.0, float(np.max(np.abs(r[k][real]), initial=0)))
            e = maxdiff(o[k][real], r[k][real]) / scale
            check(e < 1e-10, f"{variant}: {k} vs numpy", f"scaled diff {e:.2e}")
        check(set(o) >= {"pooler_output", "loss"}, f"{variant}: outputs present", str(sorted(o)))


def cli(args, expect_ok=True):
    r = subprocess.run([PY] + args, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    if (r.returncode == 0) != expect_ok and VERBOSE:
        print(r.stdout + r.stderr)
    return r


def test_cli(tmp):
    print("CLI: make_case -> visualbert_torch (f64, f32) -> compare")
    for variant in NUMPY_VARIANTS:
        cfg = tiny_cfg(variant)
        sets = sets_of(cfg)
        setargs = [a for s in sets for a in ("--set", s)]
        fin = os.path.join(tmp, f"{variant}_in.safetensors")
        fw = os.path.join(tmp, f"{variant}_w.safetensors")
        f64 = os.path.join(tmp, f"{variant}_64.safetensors")
        f32 = os.path.join(tmp, f"{variant}_32.safetensors")
        r = cli(["make_case.py", "--variant", variant, "--seed", "7", "-o", fin] + setargs)
        check(r.returncode == 0, f"{variant}: make_case", r.stderr[-300:])
        safetensors_io.write(fw, tiny_weights(cfg, variant, 99))
        base = ["visualbert_torch.py", "--variant", variant, "--weights", fw, "--inputs", fin,
                "--set", f"heads={cfg['heads']}"]
        r = cli(base + ["-o", f64])
        check(r.returncode == 0, f"{variant}: oracle float64", r.stderr[-500:])
        r = cli(base + ["-o", f32, "--dtype", "float32"])
        check(r.returncode == 0, f"{variant}: oracle float32", r.stderr[-500:])
        req = {"vqa": "pooler_output,logits,loss", "vqa-late": "pooler_output,logits,loss",
               "nlvr2": "pooler_output,logits,loss",
               "pretrain": "pooler_output,prediction_logits,seq_relationship_logits,loss"}[vb.base(variant)]
        r = cli(["compare.py", f32, f64, "--rtol", "1e-4", "--require", req])
        check(r.returncode == 0, f"{variant}: float32 agrees with float64 (rtol 1e-4)",
              "\n" + r.stdout)
        o64 = safetensors_io.read(f64)
        ins = safetensors_io.read(fin)
        B, T = cfg["batch"], cfg["text_len"]
        shapes = {"pooler_output": (B, cfg["hidden"]), "loss": ()}
        if vb.base(variant) == "pretrain":
            shapes.update(prediction_logits=(B, T, cfg["vocab"]), seq_relationship_logits=(B, 2))
        else:
            shapes.update(logits=(B, cfg["num_labels"]))
        for k, s in shapes.items():
            check(k in o64 and o64[k].shape == s and o64[k].dtype == np.float32,
                  f"{variant}: output {k} shape {list(s)} float32")
        check(ins["attention_mask"].dtype == np.int64 and ins["visual_embeds"].dtype == np.float32,
              f"{variant}: make_case dtypes")
        check(np.all(ins["attention_mask"].sum(1) >= 2), f"{variant}: >= 2 real tokens")
        # perturbation must be detected
        bad = dict(o64)
        bad["pooler_output"] = bad["pooler_output"].copy()
        bad["pooler_output"][0, 0] += 1e-3
        fb = os.path.join(tmp, f"{variant}_bad.safetensors")
        safetensors_io.write(fb, bad)
        r = cli(["compare.py", fb, f64], expect_ok=False)
        check(r.returncode == 1, f"{variant}: compare.py detects perturbation")
        r = cli(["compare.py", f64, f64, "--require", "nonexistent"], expect_ok=False)
        check(r.returncode == 1, f"{variant}: compare.py --require missing fails")
        # same result with float masks and no labels -> no loss
        fin2 = os.path.join(tmp, f"{variant}_in_fm.safetensors")
        fo2 = os.path.join(tmp, f"{variant}_fm.safetensors")
        cli(["make_case.py", "--variant", variant, "--seed", "7", "-o", fin2, "--float-masks",
             "--no-labels"] + setargs)
        r = cli(base[:6] + [fin2, "--set", f"heads={cfg['heads']}", "-o", fo2])
        o2 = safetensors_io.read(fo2)
        check(r.returncode == 0 and "loss" not in o2 and
              maxdiff(o2["pooler_output"], o64["pooler_output"]) == 0.0,
              f"{variant}: float masks == int masks; no labels -> no loss")
    # error handling
    cfg = tiny_cfg("vqa")
    W = tiny_weights(cfg, "vqa", 1)
    del W["visual_bert.encoder.layer.1.output.dense.bias"]
    fw = os.path.join(tmp, "broken_w.safetensors")
    safetensors_io.write(fw, W)
    r = cli(["visualbert_torch.py", "--variant", "vqa", "--weights", fw, "--inputs",
             os.path.join(tmp, "vqa_in.safetensors"), "-o", os.path.join(tmp, "x.safetensors"),
             "--set", "heads=4"], expect_ok=False)
    check(r.returncode != 0 and "missing" in r.stderr, "CLI rejects missing weight")
    r = cli(["visualbert_torch.py", "--variant", "vqa", "--weights",
             os.path.join(tmp, "vqa_w.safetensors"), "--inputs",
             os.path.join(tmp, "vqa_in.safetensors"), "-o", os.path.join(tmp, "x.safetensors"),
             "--set", "heads=4", "--set", "hidden=64"], expect_ok=False)
    check(r.returncode != 0 and "contradicts" in r.stderr, "CLI rejects contradicting --set")


def test_invariances():
    print("invariances (float64)")
    for variant in NUMPY_VARIANTS:
        cfg, inp = make_tiny_case(variant, 13)
        T = cfg["text_len"]
        W = tiny_weights(cfg, variant, 31)
        base = run64_full(variant, W, inp, cfg)
        heads_out = [k for k in ("pooler_output", "logits", "seq_relationship_logits", "loss")
                     if k in base]

        # 1. padded text positions (example 1, positions 4..5) do not matter
        alt = {k: v.copy() for k, v in inp.items()}
        alt["input_ids"][1, 4:] = [17, 33]
        alt["token_type_ids"][1, 4:] = [1, 0]
        o = run64_full(variant, W, alt, cfg)
        real = np.concatenate([inp["attention_mask"], inp["visual_attention_mask"]], 1) > 0
        e = max([maxdiff(o[k], base[k]) for k in heads_out] +
                [maxdiff(o["last_hidden_state"][real], base["last_hidden_state"][real])])
        if vb.base(variant) == "pretrain":
            e = max(e, maxdiff(o["prediction_logits"][inp["attention_mask"] > 0],
                               base["prediction_logits"][inp["attention_mask"] > 0]))
        check(e < 1e-12, f"{variant}: padded text ids do not change real outputs", f"{e:.1e}")

        # 2. masked regions do not matter
        alt = {k: v.copy() for k, v in inp.items()}
        vm = inp["visual_attention_mask"] == 0
        check(vm.any(), f"{variant}: case has masked regions")
        alt["visual_embeds"][vm] = 5.0
        alt["visual_token_type_ids"][vm] = 1 - alt["visual_token_type_ids"][vm]
        o = run64_full(variant, W, alt, cfg)
        e = max([maxdiff(o[k], base[k]) for k in heads_out] +
                [maxdiff(o["last_hidden_state"][real], base["last_hidden_state"][real])])
        check(e < 1e-12, f"{variant}: masked regions do not change real outputs", f"{e:.1e}")

        # 3. permuting regions (with masks/types) leaves outputs unchanged
        perm = np.array([3, 0, 4, 2, 1])
        alt = {k: v.copy() for k, v in inp.items()}
        for k in ("visual_embeds", "visual_token_type_ids", "visual_attention_mask"):
            alt[k] = inp[k][:, perm]
        o = run64_full(variant, W, alt, cfg)
        e = max([maxdiff(o[k], base[k]) for k in heads_out] +
                [maxdiff(o["last_hidden_state"][:, :T], base["last_hidden_state"][:, :T]),
                 maxdiff(o["last_hidden_state"][:, T:], base["last_hidden_state"][:, T:][:, perm])])
        check(e < 1e-11, f"{variant}: region permutation invariance", f"{e:.1e}")

        # 4. batch independence
        one = {k: v[1:2].copy() for k, v in inp.items()}
        o = run64_full(variant, W, one, cfg)
        ks = [k for k in heads_out if k != "loss"] + ["last_hidden_state"]
        e = max(maxdiff(o[k][0], base[k][1]) for k in ks)
        check(e < 1e-12, f"{variant}: batch examples independent", f"{e:.1e}")

        # 5. sensitivity: a real token and the masks matter
        alt = {k: v.copy() for k, v in inp.items()}
        alt["input_ids"][0, 2] = (alt["input_ids"][0, 2] + 1) % cfg["vocab"]
        o = run64_full(variant, W, alt, cfg)
        check(maxdiff(o["pooler_output"], base["pooler_output"]) > 1e-6,
              f"{variant}: real token changes pooler_output")
        alt = {k: v.copy() for k, v in inp.items()}
        alt["visual_attention_mask"] = np.ones_like(alt["visual_attention_mask"])
        o = run64_full(variant, W, alt, cfg)
        check(maxdiff(o["pooler_output"], base["pooler_output"]) > 1e-6,
              f"{variant}: visual mask is used")

        if variant == "vqa-late":
            alt = {k: v.copy() for k, v in inp.items()}
            alt["visual_embeds"] = alt["visual_embeds"] * -2.0 + 1.0
            alt["visual_token_type_ids"] = 1 - alt["visual_token_type_ids"]
            o = run64_full(variant, W, alt, cfg)
            e = maxdiff(o["text_hidden_state"], base["text_hidden_state"])
            check(e == 0.0, "vqa-late: visual_embeds do not change text after text layers",
                  f"{e:.1e}")
            check(maxdiff(o["pooler_output"], base["pooler_output"]) > 1e-6 and
                  maxdiff(o["logits"], base["logits"]) > 1e-6,
                  "vqa-late: visual_embeds do change the fused outputs")
            # text layers see only text: equals running them on the text part alone
            c = vb.infer_config(variant, W, inp, {"heads": cfg["heads"]})
            Wt = {n: torch.from_numpy(np.asarray(a, np.float64)) for n, a in W.items()}
            it = vb.prepare_inputs(inp, c, variant, torch.float64)
            with torch.no_grad():
                x = vb.embeddings(Wt, it, c["layer_norm_eps"])
                # the joint LayerNorm is per token: embedding text alone gives the same rows
                check(maxdiff(x[:, T:].numpy(), base["embedding_output"][:, T:]) == 0.0,
                      "vqa-late: un-encoded visual part = embedding rows")
                fused_in = torch.cat([torch.from_numpy(base["text_hidden_state"]), x[:, T:]], 1)
                m = torch.cat([it["attention_mask"], it["visual_attention_mask"]], 1)
                y = vb.encoder_layer(fused_in, vb.additive_mask(m, torch.float64), Wt,
                                     "visual_bert.additional_layer.", c["heads"], c["layer_norm_eps"])
            check(maxdiff(y.numpy(), base["last_hidden_state"]) == 0.0,
                  "vqa-late: final = additional_layer([text enc; visual emb])")
        if variant == "vqa":
            lens = inp["attention_mask"].sum(1)
            check(lens[0] != lens[1], "vqa: case has different text lengths per example")


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--keep", metavar="DIR", help="keep the CLI test files in DIR")
    a = ap.parse_args()
    VERBOSE = a.verbose
    torch.set_num_threads(2)
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
        tmp = a.keep
        ctx = None
    else:
        ctx = tempfile.TemporaryDirectory(prefix="kiln_parity_self_")
        tmp = ctx.name
    try:
        test_safetensors(tmp)
        test_param_counts()
        test_vs_torch_layer()
        test_vs_numpy()
        test_invariances()
        test_cli(tmp)
    finally:
        if ctx is not None:
            ctx.cleanup()
    if FAILS:
        print(f"SELF-TEST FAILED: {len(FAILS)} check(s): " + "; ".join(FAILS))
        return 1
    print("SELF-TEST PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
