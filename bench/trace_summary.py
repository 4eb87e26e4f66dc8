#!/usr/bin/env python3
"""Summarises a Chrome trace written by `kiln ... --trace FILE` (docs/trace.md): per thread,
the share of the recorded time spent in kernels and in barrier waits; the ops (span names
without the node) by total kernel time; the longest single spans; and the arena counter's
peak. usage: bench/trace_summary.py TRACE [--top N]"""
import argparse
import collections
import json


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=10)
    a = ap.parse_args()
    doc = json.load(open(a.trace))
    ev = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    runs = doc["otherData"]["runs"]
    print(f"{a.trace}: {doc['otherData']['model']}, {runs} runs recorded")
    by_thread = collections.defaultdict(lambda: [0.0, 0.0, float("inf"), 0.0])
    by_op = collections.defaultdict(lambda: [0.0, 0])
    for e in ev:
        t = by_thread[e["tid"]]
        t[0 if e["cat"] == "step" else 1] += e["dur"]
        t[2] = min(t[2], e["ts"])
        t[3] = max(t[3], e["ts"] + e["dur"])
        if e["cat"] == "step":
            op = e["name"].split(" ")[0]
            by_op[op][0] += e["dur"]
            by_op[op][1] += 1
    for tid, (kern, wait, t0, t1) in sorted(by_thread.items()):
        span = t1 - t0
        print(f"thread {tid}: {span / 1e3 / runs:.3f} ms a run; kernels {100 * kern / span:.1f}%, "
              f"barrier waits {100 * wait / span:.1f}%, other {100 * (span - kern - wait) / span:.1f}%")
    total = sum(v[0] for v in by_op.values())
    print(f"ops by kernel time (all threads, ms a run):")
    for op, (us, n) in sorted(by_op.items(), key=lambda kv: -kv[1][0])[:a.top]:
        print(f"  {op:28s} {us / 1e3 / runs:9.3f} {100 * us / total:6.1f}%  {n // runs:5d} spans a run")
    print(f"longest spans:")
    for e in sorted((e for e in ev if e["cat"] == "step"), key=lambda e: -e["dur"])[:a.top]:
        print(f"  {e['dur'] / 1e3:8.3f} ms  thread {e['tid']}  step {e['args']['step']}: {e['name']}")
    counters = [e["args"]["bytes"] for e in doc["traceEvents"] if e["ph"] == "C"]
    if counters:
        print(f"arena bytes in use: peak {max(counters) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
