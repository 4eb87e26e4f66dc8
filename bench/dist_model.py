#!/usr/bin/env python3
"""Data-parallel scaling on paper (docs/distributed.md): the step time and efficiency that
`mpirun -np N kiln train` would have on N machines like this one, predicted from a measured
compute time per example and a ring all-reduce of the gradients.

Model, per step, with B examples per machine:
  compute   T_c = B * t_example  (measured: forward + backward + AdamW on one machine)
  forward   T_f = f_forward * T_c; the backward and update take the rest
  all-reduce, ring: every machine sends and receives 2 (N-1)/N of the gradient bytes G,
            T_ar = 2 (N-1)/N * G / bandwidth + 2 (N-1) * messages * latency
  no overlap:   T = T_c + T_ar
  overlap (each gradient's all-reduce starts when the backward finishes it, as kiln does):
            T = max(T_c, T_f + T_ar) + T_last, T_last = the all-reduce of the last
            gradient the backward makes (the word embeddings', 93.8 MB), which cannot hide
  efficiency = T_c / T.
usage: bench/dist_model.py [--example-s S] [--params P] [--tensors M] [--batch B]
                           [--latency-us A] [--bucket-mb MB] [--bytes-per-value 4|2]
"""
import argparse

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--example-s", type=float, default=2.446 / 8,
               help="compute seconds per example (default: the 2-core Zen 5 pre-training step, "
                    "batch 8, 2446 ms, docs/benchmarks.md 2026-12-03)")
p.add_argument("--params", type=float, default=112074812, help="parameters (kiln check: pre-training)")
p.add_argument("--tensors", type=int, default=210, help="gradient tensors = messages without buckets")
p.add_argument("--batch", type=int, default=8, help="examples per machine per step")
p.add_argument("--latency-us", type=float, default=25.0, help="per message and ring step (TCP-class)")
p.add_argument("--bucket-mb", type=float, default=0.0, help="bucket size (0: one message per tensor)")
p.add_argument("--bytes-per-value", type=int, default=4, help="4: fp32 gradients, 2: bf16")
p.add_argument("--forward", type=float, default=1 / 3, help="forward's share of the compute")
p.add_argument("--last-mb", type=float, default=30522 * 768 * 4 / 1e6,
               help="the last gradient's MB (default: the word embeddings, 30522 x 768 fp32)")
a = p.parse_args()

G = a.params * a.bytes_per_value
messages = a.tensors if a.bucket_mb <= 0 else max(1, round(G / (a.bucket_mb * 2**20)))
Tc = a.batch * a.example_s
Tf = a.forward * Tc
print(f"compute {Tc * 1e3:.0f} ms a step ({a.batch} examples x {a.example_s * 1e3:.0f} ms); "
      f"gradients {G / 1e6:.1f} MB in {messages} messages; latency {a.latency_us:g} us")
print("| machines | network | all-reduce ms | step ms, no overlap | efficiency | step ms, overlap | efficiency |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for n in (4, 16, 64):
    for gbit in (10, 25, 100):
        bw = gbit * 1e9 / 8
        Tar = 2 * (n - 1) / n * G / bw + 2 * (n - 1) * messages * a.latency_us * 1e-6
        Tlast = 2 * (n - 1) / n * a.last_mb * 1e6 * a.bytes_per_value / 4 / bw
        plain = Tc + Tar
        over = max(Tc, Tf + Tar) + Tlast
        print(f"| {n} | {gbit} Gb/s | {Tar * 1e3:.0f} | {plain * 1e3:.0f} | {Tc / plain:.0%} "
              f"| {over * 1e3:.0f} | {Tc / over:.0%} |")
