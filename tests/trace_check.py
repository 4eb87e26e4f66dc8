"""Checks a Chrome trace written by `kiln ... --trace`: valid JSON; RUNS runs recorded; on
every thread's track the step and barrier spans do not overlap and each run has one span
per step (the same steps, in increasing order, on every thread and in every run, at most
STEPS of them); the arena counter is present and never negative.
usage: trace_check.py TRACE RUNS STEPS THREADS"""
import collections
import json
import sys

path, runs, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
doc = json.load(open(path))
ev = doc["traceEvents"]
assert doc["otherData"]["runs"] == runs, (doc["otherData"], runs)
spans = collections.defaultdict(list)  # tid -> [(ts, end, cat, step, run)]
for e in ev:
    if e["ph"] == "X":
        assert e["dur"] >= 0, e
        spans[e["tid"]].append((e["ts"], e["ts"] + e["dur"], e["cat"], e["args"]["step"], e["args"].get("run")))
assert sorted(spans) == list(range(threads)), sorted(spans)
expected = None
for tid, sp in spans.items():
    sp.sort()
    for a, b in zip(sp, sp[1:]):  # whole nanoseconds, printed in microseconds
        assert b[0] >= a[1] - 1e-6, f"thread {tid}: {a} overlaps {b}"
    per_run = collections.defaultdict(list)
    for s in sp:
        if s[2] == "step":
            per_run[s[4]].append(s[3])
    assert sorted(per_run) == list(range(runs)), (tid, sorted(per_run))
    for r, st in per_run.items():
        assert st == sorted(set(st)), f"thread {tid} run {r}: steps repeat or are out of order"
        assert 0 < len(st) <= steps, (len(st), steps)
        expected = expected or st
        assert st == expected, f"thread {tid} run {r}: other steps than the first run's"
    assert any(s[2] == "barrier" for s in sp) or threads == 1, f"thread {tid}: no barrier spans"
counters = [e["args"]["bytes"] for e in ev if e["ph"] == "C"]
assert len(counters) == runs * len(expected), (len(counters), runs, len(expected))
assert min(counters) >= 0 and max(counters) > 0
names = {e["name"] for e in ev if e["ph"] == "X" and e["cat"] == "step"}
print(f"trace ok: {runs} runs, {len(expected)} steps a run, {threads} threads, {len(names)} span names, "
      f"arena up to {max(counters)} bytes")
