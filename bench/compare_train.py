#!/usr/bin/python3
"""Library against PyTorch tokens/s, measured in interleaved rounds.

    compare_train.py [--build build] [--models study60m,tiny] [--rounds 3] [--steps 5]
                     [--batch 4] [--threads 2]

This machine's speed drifts by up to 2x within minutes, so a library figure and a
PyTorch figure taken minutes apart can be off by that much. Each round here runs, per
model, bench_train (library, --threads), then torch_train.py --threads best with plain
malloc, then with the tuned GLIBC_TUNABLES (docs/performance.md), back to back. Every
JSON line of those runs is printed, then one line per (model, round) with the round's
ratios, then one summary line per model: "bench": "compare_train", model, rounds,
lib_tokens_per_s (median), torch_plain / torch_tuned (medians), ratio_plain /
ratio_tuned (median of the rounds' ratios) and their minimum over rounds.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TUNED = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"


def run_json(cmd, env_extra=None, want=None):
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    if env_extra:
        env.update(env_extra)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"compare_train.py: {' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    recs = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    for r in recs:
        print(json.dumps(r), flush=True)
    if want:
        recs = [r for r in recs if want(r)]
    if len(recs) != 1:
        sys.exit(f"compare_train.py: expected one result line from {' '.join(cmd)}")
    return recs[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default="build")
    p.add_argument("--models", default="study60m,tiny")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=4, help="batch of study60m (tiny: 32)")
    p.add_argument("--threads", type=int, default=2, help="library threads")
    a = p.parse_args()
    exe = os.path.join(a.build, "bench", "bench_train")
    if not os.access(exe, os.X_OK):
        sys.exit(f"compare_train.py: {exe} is missing: build first (ninja -C {a.build})")
    if a.rounds < 1 or a.steps < 1 or a.batch < 1 or a.threads < 1:
        sys.exit("compare_train.py: --rounds, --steps, --batch and --threads must be >= 1")
    torch_py = os.path.join(HERE, "torch_train.py")
    common = ["--steps", str(a.steps), "--batch", str(a.batch)]
    for model in a.models.split(","):
        rows = []
        for r in range(a.rounds):
            lib = run_json([exe, "--threads", str(a.threads), "--models", model] + common)
            best = lambda rec: rec.get("threads") == "best"
            plain = run_json([sys.executable, torch_py, "--models", model] + common, want=best)
            tuned = run_json([sys.executable, torch_py, "--models", model] + common,
                             env_extra={"GLIBC_TUNABLES": TUNED}, want=best)
            row = {"bench": "compare_train_round", "model": model, "round": r,
                   "lib_tokens_per_s": lib["tokens_per_s"],
                   "torch_plain": plain["tokens_per_s"], "torch_tuned": tuned["tokens_per_s"],
                   "ratio_plain": round(lib["tokens_per_s"] / plain["tokens_per_s"], 3),
                   "ratio_tuned": round(lib["tokens_per_s"] / tuned["tokens_per_s"], 3)}
            print(json.dumps(row), flush=True)
            rows.append(row)
        med = lambda k: round(statistics.median(x[k] for x in rows), 3)
        print(json.dumps({"bench": "compare_train", "model": model, "rounds": a.rounds,
                          "B": lib["B"], "T": lib["T"], "lib_threads": a.threads,
                          "lib_tokens_per_s": med("lib_tokens_per_s"),
                          "torch_plain": med("torch_plain"), "torch_tuned": med("torch_tuned"),
                          "ratio_plain": med("ratio_plain"), "ratio_tuned": med("ratio_tuned"),
                          "min_ratio_plain": min(x["ratio_plain"] for x in rows),
                          "min_ratio_tuned": min(x["ratio_tuned"] for x in rows)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
