#!/usr/bin/env python3
"""Two builds' attention side by side: bench_attention of the build before and of the build
after, alternating in pairs (the order swapped every pair, so neither always runs on the
warmer machine), then one Markdown row per case: each build's paired roof fraction (median
of the pairs, range) and the median of the per-pair ratios after / before, which the drift of
the machine's speed disturbs least (docs/performance.md, "Keys and values packed once").

    bench/ab_attention.py BEFORE_BUILD AFTER_BUILD [--pairs 4] [--jsonl FILE] [-- BENCH_ARGS...]

BENCH_ARGS go to both bench_attention runs (default: --threads 2 --T 1024,4096 --reps 5).
Every run's JSON line, tagged with "build" and "pair", goes to --jsonl when given."""
import argparse
import json
import os
import statistics
import subprocess
import sys


def run(build, args):
    exe = os.path.join(build, "bench", "bench_attention")
    out = subprocess.run([exe] + args, check=True, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    argv = sys.argv[1:]
    bench_args = ["--threads", "2", "--T", "1024,4096", "--reps", "5"]
    if "--" in argv:
        i = argv.index("--")
        argv, bench_args = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", help="build folder of the build before (holds bench/bench_attention)")
    ap.add_argument("after", help="build folder of the build after")
    ap.add_argument("--pairs", type=int, default=4, help="pairs of runs (default 4)")
    ap.add_argument("--jsonl", help="file for every run's JSON line")
    a = ap.parse_args(argv)
    if a.pairs < 1:
        ap.error("--pairs must be at least 1, got %d" % a.pairs)
    for b in (a.before, a.after):
        if not os.access(os.path.join(b, "bench", "bench_attention"), os.X_OK):
            ap.error("%s has no bench/bench_attention" % b)
    rows = []
    for p in range(a.pairs):
        order = [("before", a.before), ("after", a.after)]
        for name, build in (order if p % 2 == 0 else order[::-1]):
            for r in run(build, bench_args):
                r.update(build=name, pair=p)
                rows.append(r)
    if a.jsonl:
        with open(a.jsonl, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    cases = []
    for r in rows:
        key = (r["op"], r["mode"], r["T"])
        if key not in cases:
            cases.append(key)
    print("| op | mode | T | before | after | after / before |")
    print("|---|---|---|---|---|---|")
    for key in cases:
        frac = {b: {r["pair"]: r["paired_roof_fraction"] for r in rows
                    if (r["op"], r["mode"], r["T"]) == key and r["build"] == b}
                for b in ("before", "after")}
        pairs = sorted(set(frac["before"]) & set(frac["after"]))
        ratio = [frac["after"][p] / frac["before"][p] for p in pairs if frac["before"][p] > 0]
        cell = lambda v: "%.3f (%.2f–%.2f)" % (statistics.median(v), min(v), max(v))
        print("| %s | %s | %d | %s | %s | %s |" % (
            key[0], key[1], key[2], cell([frac["before"][p] for p in pairs]),
            cell([frac["after"][p] for p in pairs]), cell(ratio) if ratio else "-"))


if __name__ == "__main__":
    main()
