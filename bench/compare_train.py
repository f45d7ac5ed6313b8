#!/usr/bin/python3
"""Library against PyTorch tokens/s, measured in interleaved rounds.

    compare_train.py [--build build] [--models study60m,tiny,study] [--rounds 3] [--steps 5]
                     [--batch 4] [--threads 2] [--torch-threads best|N] [--blas-dir DIR]
                     [--configs plain,tuned,blis-tuned,openblas-tuned]

This machine's speed drifts by up to 2x within minutes, so a library figure and a
PyTorch figure taken minutes apart can be off by that much. Each round here runs, per
model, bench_train (library, --threads), then torch_train.py (--threads from
--torch-threads) in each PyTorch configuration (compare_common.py: plain, tuned malloc, BLIS
or OpenBLAS given PyTorch's threads), back to back. Every JSON line of those runs is
printed, then one line per (model, round) with the round's figures, then one summary line
per model: "bench": "compare_train", model, rounds, lib_tokens_per_s (median),
torch_<config> (medians), ratio_<config> (median of the rounds' library / PyTorch ratios)
and min_ratio_<config> (the worst round), and the same for "best": per round the fastest
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

PROG = "compare_train.py"


def summary(rows, configs, extra):
    """The per-model summary line of rows (one per round)."""
    med = lambda k: round(statistics.median(x[k] for x in rows), 3)
    out = dict(extra, lib_tokens_per_s=med("lib_tokens_per_s"))
    for c in configs + ["best"]:
        key = c.replace("-", "_")
        out[f"torch_{key}"] = med(f"torch_{key}")
        out[f"ratio_{key}"] = med(f"ratio_{key}")
        out[f"min_ratio_{key}"] = min(x[f"ratio_{key}"] for x in rows)
    out["best_configs"] = sorted({x["best_config"] for x in rows})
    out["torch_blas"] = {c: sorted({x["blas"][c] for x in rows}) for c in configs}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default="build")
    p.add_argument("--models", default="study60m,tiny")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=4, help="batch of study60m (tiny: 32)")
    p.add_argument("--threads", type=int, default=2, help="library threads")
    cc.add_config_args(p)
    a = p.parse_args()
    exe = cc.library_exe(a.build, "bench_train", PROG)
    if a.rounds < 1 or a.steps < 1 or a.batch < 1 or a.threads < 1:
        sys.exit(f"{PROG}: --rounds, --steps, --batch and --threads must be >= 1")
    configs = cc.parse_configs(a, PROG)
    torch_py = os.path.join(HERE, "torch_train.py")
    common = ["--steps", str(a.steps), "--batch", str(a.batch)]
    tthreads, picked = cc.torch_threads(a, PROG)
    for model in a.models.split(","):
        rows = []
        lib_cmd = [exe, "--threads", str(a.threads), "--models", model] + common
        torch_cmd = [sys.executable, torch_py, "--models", model] + common + tthreads
        for r in range(a.rounds):
            lib = cc.run_json(PROG, lib_cmd)[0]
            row = {"bench": "compare_train_round", "model": model, "round": r,
                   "lib_tokens_per_s": lib["tokens_per_s"], "blas": {}}
            tps = {}
            for c in configs:
                env, extra = cc.config_run(c, a.blas_dir)
                t = cc.run_json(PROG, torch_cmd + extra, env_extra=env, want=picked)[0]
                key = c.replace("-", "_")
                tps[c] = t["tokens_per_s"]
                row["blas"][c] = cc.blas_name(t)
                row[f"torch_{key}"] = t["tokens_per_s"]
                row[f"ratio_{key}"] = round(lib["tokens_per_s"] / t["tokens_per_s"], 3)
            row["best_config"], row["torch_best"] = cc.best_of(tps)
            row["ratio_best"] = round(lib["tokens_per_s"] / row["torch_best"], 3)
            print(json.dumps(row), flush=True)
            rows.append(row)
        print(json.dumps(summary(rows, configs, {
            "bench": "compare_train", "model": model, "rounds": a.rounds, "B": lib["B"],
            "T": lib["T"], "lib_threads": a.threads, "torch_threads": a.torch_threads})),
            flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
