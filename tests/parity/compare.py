#!/usr/bin/python3
"""Compare two safetensors files tensor by tensor.

  compare.py A.safetensors B.safetensors [--rtol 1e-5] [--atol 0]
             [--require name,name,...] [--tol name=rtol[:atol] ...] [--quiet]

A is the candidate (kiln), B the reference (the torch oracle). Every tensor
present in both files is compared (in float64); names found in only one file
are listed but not compared, unless named by --require, which makes a
missing name a failure (in either file).

Metric (norm-wise, scaled by the reference tensor's magnitude):
    max_abs = max_i |a_i - b_i|
    scale   = max_i |b_i|
    err     = max_abs / max(scale, 1e-30)        ("scaled error")
    PASS iff max_abs <= atol + rtol * scale
i.e. the worst absolute deviation measured relative to the largest reference
entry of that tensor. Unlike element-wise relative error this does not blow up
on entries that are near zero by accident (logits, hidden states), and for a
scalar such as `loss` it is the ordinary relative error. Shapes must be equal;
non-finite values must occur at the same positions with the same value (NaN
matches NaN), otherwise the tensor fails. Also printed: the worst element's
index and both values, and the mean absolute error.
Exit status: 0 all compared tensors pass, 1 any failure (or nothing compared).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


def compare_tensor(a, b, rtol, atol):
    """Return (ok, info dict)."""
    info = {"shape": list(b.shape)}
    if a.shape != b.shape:
        info["why"] = f"shape {list(a.shape)} vs {list(b.shape)}"
        return False, info
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(fa, fb):
        info["why"] = (f"non-finite mismatch: {int((~fa).sum())} in A, "
                       f"{int((~fb).sum())} in B")
        return False, info
    nf = ~fa
    if nf.any():
        same = (np.isnan(a[nf]) & np.isnan(b[nf])) | (a[nf] == b[nf])
        if not same.all():
            info["why"] = "non-finite values differ"
            return False, info
    if b.size == 0:
        info.update(max_abs=0.0, scale=0.0, err=0.0, mean_abs=0.0)
        return True, info
    d = np.where(fa, np.abs(a - b), 0.0)
    bb = np.where(fb, np.abs(b), 0.0)
    max_abs = float(d.max())
    scale = float(bb.max())
    worst = np.unravel_index(int(np.argmax(d)), d.shape) if d.ndim else ()
    info.update(max_abs=max_abs, scale=scale, err=max_abs / max(scale, 1e-30),
                mean_abs=float(d.mean()), worst=tuple(int(i) for i in worst),
                a=float(a[worst]), b=float(b[worst]))
    ok = max_abs <= atol + rtol * scale
    if not ok:
        info["why"] = f"max_abs {max_abs:.3e} > atol + rtol*scale = {atol + rtol * scale:.3e}"
    return ok, info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="candidate (e.g. kiln output)")
    ap.add_argument("b", help="reference (e.g. torch oracle output)")
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("--atol", type=float, default=0.0)
    ap.add_argument("--require", action="append", default=[], metavar="NAMES",
                    help="comma-separated names that must be present in both")
    ap.add_argument("--tol", action="append", default=[], metavar="NAME=RTOL[:ATOL]",
                    help="per-tensor tolerance override")
    ap.add_argument("--quiet", action="store_true", help="print failures only")
    args = ap.parse_args(argv)

    A = safetensors_io.read(args.a)
    B = safetensors_io.read(args.b)
    tols = {}
    for t in args.tol:
        name, _, v = t.partition("=")
        r, _, at = v.partition(":")
        tols[name] = (float(r), float(at) if at else args.atol)
    required = [n for r in args.require for n in r.split(",") if n]

    failed = False
    for n in required:
        for label, d in (("A", A), ("B", B)):
            if n not in d:
                print(f"FAIL  {n}: required tensor missing from {label}")
                failed = True
    common = [n for n in B if n in A]
    only = sorted(set(A) ^ set(B))
    if only and not args.quiet:
        print("not compared (in one file only): " + ", ".join(
            f"{n}[{'A' if n in A else 'B'}]" for n in only))
    if not common:
        print("FAIL  no tensor names in common")
        return 1
    print(f"{'':5} {'tensor':28} {'shape':16} {'max_abs':>10} {'max|ref|':>10} "
          f"{'scaled':>10} {'mean_abs':>10}  worst (A vs B)")
    for n in common:
        rtol, atol = tols.get(n, (args.rtol, args.atol))
        ok, info = compare_tensor(A[n], B[n], rtol, atol)
        failed |= not ok
        if ok and args.quiet:
            continue
        tag = "ok" if ok else "FAIL"
        if "max_abs" in info:
            print(f"{tag:5} {n:28} {str(info['shape']):16} {info['max_abs']:10.3e} "
                  f"{info['scale']:10.3e} {info['err']:10.3e} {info['mean_abs']:10.3e}  "
                  f"{list(info.get('worst', ()))} {info.get('a', 0):.6g} vs {info.get('b', 0):.6g}"
                  f"  (rtol {rtol:g}, atol {atol:g})")
        if not ok:
            print(f"      {n}: {info['why']}")
    print("RESULT: " + ("FAIL" if failed else "PASS"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
