#!/usr/bin/python3
"""Library attention against PyTorch's, measured in interleaved rounds.

    compare_attention.py [--build build] [--T 1024] [--ops softmax,sigmoid] [--rounds 3]
                         [--reps 5] [--threads 2]
                         [--torch-threads best|N] [--blas-dir DIR]
                         [--configs plain,tuned,blis-tuned,openblas-tuned]

Each round runs bench_attention (library, --threads) and then torch_attention.py (--threads
from --torch-threads) in each PyTorch configuration (compare_common.py), back to back, on the
same cases (causal, B=1, H=8, D=64, modes fwd and fwdbwd; best of --reps runs each). Every
JSON line of those runs is printed, then one line per (round, case) and one summary line per
case: "bench": "compare_attention", op, mode, T, rounds, lib_seconds (median), torch_<config>
(median seconds), speedup_<config> (median over rounds of PyTorch seconds / library seconds)
and min_speedup_<config> (the worst round), and the same for "best": per round the fastest
configuration, named in best_configs.
"""
import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare_common as cc  # noqa: E402

PROG = "compare_attention.py"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default="build")
    p.add_argument("--T", default="1024")
    p.add_argument("--ops", default="softmax,sigmoid")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="library threads")
    cc.add_config_args(p)
    a = p.parse_args()
    exe = cc.library_exe(a.build, "bench_attention", PROG)
    if a.rounds < 1 or a.reps < 1 or a.threads < 1:
        sys.exit(f"{PROG}: --rounds, --reps and --threads must be >= 1")
    configs = cc.parse_configs(a, PROG)
    case = lambda r: (r["op"], r["mode"], r["T"])
    cases = ["--T", a.T, "--ops", a.ops, "--reps", str(a.reps)]
    torch_py = os.path.join(HERE, "torch_attention.py")
    tthreads, picked = cc.torch_threads(a, PROG)
    rows = {}
    for rnd in range(a.rounds):
        lib = {case(r): r for r in cc.run_json(PROG, [exe, "--threads", str(a.threads)] + cases)}
        tor = {}
        for c in configs:
            env, extra = cc.config_run(c, a.blas_dir)
            recs = cc.run_json(PROG, [sys.executable, torch_py] + cases + tthreads + extra,
                               env_extra=env, want=picked)
            tor[c] = {case(r): r for r in recs}
        for k, lr in lib.items():
            row = {"bench": "compare_attention_round", "op": k[0], "mode": k[1], "T": k[2],
                   "round": rnd, "lib_seconds": lr["seconds"],
                   "lib_paired_roof_fraction": lr["paired_roof_fraction"], "blas": {}}
            speed = {}
            for c in configs:
                t = tor[c].get(k)
                if t is None:
                    sys.exit(f"{PROG}: torch_attention.py ({c}) gave no line for {k}")
                key = c.replace("-", "_")
                row[f"torch_{key}"] = t["seconds"]
                row[f"speedup_{key}"] = round(t["seconds"] / lr["seconds"], 2)
                row["blas"][c] = cc.blas_name(t)
                speed[c] = 1.0 / t["seconds"]
            row["best_config"], _ = cc.best_of(speed)
            row["torch_best"] = row[f"torch_{row['best_config'].replace('-', '_')}"]
            row["speedup_best"] = round(row["torch_best"] / lr["seconds"], 2)
            print(json.dumps(row), flush=True)
            rows.setdefault(k, []).append(row)
    for k, rs in rows.items():
        med = lambda f: round(statistics.median(x[f] for x in rs), 6)
        out = {"bench": "compare_attention", "op": k[0], "mode": k[1], "T": k[2],
               "rounds": a.rounds, "lib_threads": a.threads, "torch_threads": a.torch_threads,
               "lib_seconds": med("lib_seconds"),
               "lib_paired_roof_fraction": med("lib_paired_roof_fraction")}
        for c in configs + ["best"]:
            key = c.replace("-", "_")
            out[f"torch_{key}"] = med(f"torch_{key}")
            out[f"speedup_{key}"] = round(statistics.median(x[f"speedup_{key}"] for x in rs), 2)
            out[f"min_speedup_{key}"] = min(x[f"speedup_{key}"] for x in rs)
        out["best_configs"] = sorted({x["best_config"] for x in rs})
        out["torch_blas"] = {c: sorted({x["blas"][c] for x in rs}) for c in configs}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
