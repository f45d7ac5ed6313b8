"""Medians per build of bench/compare_builds.sh's JSON lines, as a Markdown table.

    compare_builds_summary.py RESULTS.jsonl BUILD_A BUILD_B
"""
import json
import statistics
import sys


def main():
    path, a, b = sys.argv[1:4]
    rows = {}
    for line in open(path):
        r = json.loads(line)
        if r["bench"] == "train":
            key, value, unit = ("train " + r["model"],), r["tokens_per_s"], "tokens/s"
        else:
            key = ("attention %s %s T=%d" % (r["op"], r["mode"], r["T"]),)
            value, unit = r["paired_roof_fraction"], "paired roof fraction"
        rows.setdefault(key + (unit,), {}).setdefault(r["build"], []).append(value)
    print("| benchmark | measure | A: median (min–max) | B: median (min–max) | B / A |")
    print("|---|---|---|---|---|")
    for (name, unit), by in rows.items():
        if a not in by or b not in by:
            continue
        ma, mb = statistics.median(by[a]), statistics.median(by[b])
        fmt = "%.0f" if unit == "tokens/s" else "%.3f"
        cell = lambda v, m: (fmt + " (" + fmt + "–" + fmt + ")") % (m, min(v), max(v))
        print("| %s | %s | %s | %s | %.2f |" % (name, unit, cell(by[a], ma), cell(by[b], mb),
                                                mb / ma))


if __name__ == "__main__":
    main()
