#!/usr/bin/python3
"""Markdown tables from the JSON lines of run_benchmarks.sh (library beside PyTorch).

    bench_summary.py build/bench-results.jsonl

Attention: the library's time per case beside PyTorch's best of 1 and 2 threads in each
variant run (malloc plain or tuned with GLIBC_TUNABLES, the BLAS folder, "BLAS threads" when
the BLAS was given PyTorch's thread count; docs/performance.md), the speed-up over each, and
over the fastest variant ("best"). Training: tokens/s the same way. Decoding: tokens/s and
bandwidth fractions beside each PyTorch variant. GEMM: paired roof fractions of the library's driver and BLIS's. Peak: the CPU's fp32
FMA and bf16 peaks and the sgemm roof's fraction of the fp32 one. Metric: the overhead
lines as they are. Standard library only.
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


def variant(r):
    """How a PyTorch record ran: malloc mode, BLAS folder, and whether the BLAS was given
    PyTorch's thread count."""
    v = f"{r['malloc']}, {blas_label(r)}"
    return v + ", BLAS threads" if r.get("blas_threads", "default") != "default" else v


def by_variant(recs, bench, key):
    """{(variant, key): record} of the "best"-threads records of one PyTorch benchmark, and
    the variants in the order they first appear."""
    tor, variants = {}, []
    for r in recs:
        if r["bench"] == bench and r["threads"] == "best":
            v = variant(r)
            if v not in variants:
                variants.append(v)
            tor[(v,) + key(r)] = r
    return tor, variants


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench_summary.py RESULTS.jsonl")
    recs = load(sys.argv[1])

    case = lambda r: (r["op"], r["mode"], r["T"])
    lib = {case(r): r for r in recs if r["bench"] == "attention"}
    tor, variants = by_variant(recs, "torch_attention", case)
    if lib:
        print("| op | mode | T | library s | roof fraction | "
              + " | ".join(f"torch {v} s | ×" for v in variants) + " | × best |")
        print("|---|---|---|---|---|" + "---|---|" * len(variants) + "---|")
        for k, r in lib.items():
            secs = [tor.get((v,) + k) and tor[(v,) + k]["seconds"] for v in variants]
            cells = [f"{fmt(x, '.4f')} | {fmt(ratio(x, r['seconds']), '.1f')}" for x in secs]
            best = min((x for x in secs if x is not None), default=None)
            print(f"| {k[0]} | {k[1]} | {k[2]} | {r['seconds']:.4f} | {r['roof_fraction']:.2f} | "
                  + " | ".join(cells) + f" | {fmt(ratio(best, r['seconds']), '.1f')} |")
        roofs = sorted({r["roof_gflops"] for r in lib.values()})
        print(f"\nlibrary sgemm roof (threads {next(iter(lib.values()))['threads']}): "
              f"{', '.join(f'{x:.1f}' for x in roofs)} GFLOP/s\n")

    lib = {r["model"]: r for r in recs if r["bench"] == "train"}
    tor, variants = by_variant(recs, "torch_train", lambda r: (r["model"],))
    if lib:
        print("| model | B | T | library tok/s | MFU | "
              + " | ".join(f"torch {v} tok/s (MFU) | ×" for v in variants) + " | × best |")
        print("|---|---|---|---|---|" + "---|---|" * len(variants) + "---|")
        for k, r in lib.items():
            ts = [tor.get((v, k)) for v in variants]
            cells = [f"{fmt(t and t['tokens_per_s'], '.1f')} ({fmt(t and t['mfu'], '.2f')}) "
                     f"| {fmt(ratio(r['tokens_per_s'], t and t['tokens_per_s']), '.1f')}"
                     for t in ts]
            best = max((t["tokens_per_s"] for t in ts if t), default=None)
            print(f"| {k} | {r['B']} | {r['T']} | {r['tokens_per_s']:.1f} | {r['mfu']:.2f} | "
                  + " | ".join(cells) + f" | {fmt(ratio(r['tokens_per_s'], best), '.1f')} |")
        print()

    lib = {(r["model"], r["B"]): r for r in recs if r["bench"] == "decode"}
    tor, variants = by_variant(recs, "torch_decode", lambda r: (r["model"], r["B"]))
    if lib:
        heads = [f"torch {v} tok/s (fraction) | ×" for v in variants]
        print("| model | B | cache | library tok/s | bandwidth fraction | "
              + " | ".join(heads) + " |")
        print("|---|---|---|---|---|" + "---|---|" * len(variants))
        for k, r in lib.items():
            cells = []
            for v in variants:
                t = tor.get((v,) + k)
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

    peak = [r for r in recs if r["bench"] == "peak"]
    if peak:
        print("| peak | isa | instruction | threads | GFLOP/s |")
        print("|---|---|---|---|---|")
        for r in peak:
            if r["kind"] == "sgemm_roof":
                frac = r.get("fraction_of_fp32_peak")
                print(f"| sgemm 1024³ roof (BLIS) | | | {r['threads']} | {r['gflops']:.1f} "
                      f"({fmt(frac, '.2f')} of the fp32 peak) |")
            else:
                gf = fmt(r.get("gflops"), ".1f") if r["available"] else r["note"]
                print(f"| {r['kind']} | {r['isa']} | {r['instruction']} | {r['threads']} | {gf} |")
        print()

    for r in recs:
        if r["bench"] == "metric":
            print("metric:", json.dumps(r))


if __name__ == "__main__":
    main()
