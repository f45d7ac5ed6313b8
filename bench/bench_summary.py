#!/usr/bin/python3
"""Markdown tables from the JSON lines of run_benchmarks.sh (library beside PyTorch).

    bench_summary.py build/bench-results.jsonl

Attention: the library's time per case beside PyTorch's best of 1 and 2 threads, plain and
with GLIBC_TUNABLES (docs/performance.md), and the speed-up over each. Training: tokens/s and MFU the
same way. Decoding: tokens/s and bandwidth fractions beside each PyTorch variant (malloc,
BLAS folder). GEMM: paired roof fractions of the library's driver and BLIS's. Metric: the
overhead lines as they are. Standard library only.
"""
import json
import sys


def load(path):
    recs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                recs.append(json.loads(line))
    return recs


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def blas_label(r):
    """The folder of the BLAS a PyTorch record ran with ("blis-openmp", "openblas-pthread")."""
    for path in r.get("blas") or []:
        if "blas.so" in path:
            return path.rstrip("/").split("/")[-2]
    return "blas?"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench_summary.py RESULTS.jsonl")
    recs = load(sys.argv[1])

    lib = {(r["op"], r["mode"], r["T"]): r for r in recs if r["bench"] == "attention"}
    tor = {(r["malloc"], r["op"], r["mode"], r["T"]): r for r in recs
           if r["bench"] == "torch_attention" and r["threads"] == "best"}
    if lib:
        print("| op | mode | T | library s | roof fraction | torch plain s | torch tuned s "
              "| × plain | × tuned |")
        print("|---|---|---|---|---|---|---|---|---|")
        for k, r in lib.items():
            p, t = tor.get(("plain",) + k), tor.get(("tuned",) + k)
            ps, ts = p and p["seconds"], t and t["seconds"]
            print(f"| {k[0]} | {k[1]} | {k[2]} | {r['seconds']:.4f} | {r['roof_fraction']:.2f} "
                  f"| {fmt(ps, '.4f')} | {fmt(ts, '.4f')} | {fmt(ratio(ps, r['seconds']), '.1f')} "
                  f"| {fmt(ratio(ts, r['seconds']), '.1f')} |")
        roofs = sorted({r["roof_gflops"] for r in lib.values()})
        print(f"\nlibrary sgemm roof (threads {next(iter(lib.values()))['threads']}): "
              f"{', '.join(f'{x:.1f}' for x in roofs)} GFLOP/s\n")

    lib = {r["model"]: r for r in recs if r["bench"] == "train"}
    tor = {(r["malloc"], r["model"]): r for r in recs
           if r["bench"] == "torch_train" and r["threads"] == "best"}
    if lib:
        print("| model | B | T | library tok/s | MFU | torch plain tok/s | torch tuned tok/s "
              "| × plain | × tuned | torch tuned MFU |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for k, r in lib.items():
            p, t = tor.get(("plain", k)), tor.get(("tuned", k))
            pt, tt = p and p["tokens_per_s"], t and t["tokens_per_s"]
            print(f"| {k} | {r['B']} | {r['T']} | {r['tokens_per_s']:.1f} | {r['mfu']:.2f} "
                  f"| {fmt(pt, '.1f')} | {fmt(tt, '.1f')} | {fmt(ratio(r['tokens_per_s'], pt), '.1f')} "
                  f"| {fmt(ratio(r['tokens_per_s'], tt), '.1f')} | {fmt(t and t['mfu'], '.2f')} |")
        print()

    lib = {(r["model"], r["B"]): r for r in recs if r["bench"] == "decode"}
    tor, variants = {}, []
    for r in recs:
        if r["bench"] == "torch_decode" and r["threads"] == "best":
            v = (r["malloc"], blas_label(r))
            if v not in variants:
                variants.append(v)
            tor[v + (r["model"], r["B"])] = r
    if lib:
        heads = [f"torch {m} ({b}) tok/s (fraction) | ×" for m, b in variants]
        print("| model | B | cache | library tok/s | bandwidth fraction | "
              + " | ".join(heads) + " |")
        print("|---|---|---|---|---|" + "---|---|" * len(variants))
        for k, r in lib.items():
            cells = []
            for v in variants:
                t = tor.get(v + k)
                cells.append(f"{fmt(t and t['tokens_per_s'], '.1f')} "
                             f"({fmt(t and t['bandwidth_fraction'], '.2f')}) "
                             f"| {fmt(ratio(r['tokens_per_s'], t and t['tokens_per_s']), '.1f')}")
            print(f"| {k[0]} | {k[1]} | {r['cache_len']} | {r['tokens_per_s']:.1f} "
                  f"| {r['bandwidth_fraction']:.2f} | " + " | ".join(cells) + " |")
        roofs = sorted({r["roof_gbs"] for r in lib.values()})
        print(f"\nlibrary read roof (threads {next(iter(lib.values()))['threads']}): "
              f"{', '.join(f'{x:.1f}' for x in roofs)} GB/s\n")

    gemm = {}
    for r in recs:
        if r["bench"] == "gemm":
            gemm.setdefault((r["shape"], r["m"], r["n"], r["k"]), {})[(r["threads"], r["driver"])] = r
    if gemm:
        counts = sorted({t for v in gemm.values() for t, _ in v})
        print("| shape | m | n | k | " + " | ".join(f"{t} thr: library / BLIS" for t in counts) + " |")
        print("|---|---|---|---|" + "---|" * len(counts))
        for (name, m, n, k), v in gemm.items():
            cells = []
            for t in counts:
                a, b = v.get((t, "packed")), v.get((t, "blis"))
                cells.append(f"{fmt(a and a['paired_roof_fraction'], '.2f')} / "
                             f"{fmt(b and b['paired_roof_fraction'], '.2f')}")
            print(f"| {name} | {m} | {n} | {k} | " + " | ".join(cells) + " |")
        print()

    for r in recs:
        if r["bench"] == "metric":
            print("metric:", json.dumps(r))


if __name__ == "__main__":
    main()
