#!/usr/bin/python3
"""PyTorch eager twin of bench_attention: one JSON line per case.

    torch_attention.py [--threads N|best] [--match-blas-threads] [--reps R] [--T 256,1024,4096]
                       [--ops softmax,sigmoid]

Cases as bench_attention.c: causal, B=1, H=8, D=64, float32, modes fwd and fwdbwd (forward
then backward of sum(out * dout)); best of R timed repetitions after one untimed one.
  softmax: scaled_dot_product_attention(q, k, v, is_causal=True) (torch >= 2.0; Debian's
           1.13 has it as F._scaled_dot_product_attention, used then);
  sigmoid: what the library computes for the spec "sigmoid": sigmoid(q k^T / sqrt(D)) with
           the invisible (future) entries set to 0, then @ v, no normalisation.
FLOPs as bench_attention.c: the visible (causal) part only, T (T+1) / 2 pairs per head,
forward 4 D per pair, forward+backward 12 D, whatever PyTorch actually computes (it does
the full T x T products). The roof is torch.mm 1024^3 float32 in the same run with the
same thread count. --threads best (the default) runs 1 and 2 threads in subprocesses.
Each record names the BLAS mapped into the process ("blas") and its thread setting
("blas_threads"; --match-blas-threads gives the BLAS the same thread count as PyTorch).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_bench_common as tbc  # noqa: E402

B, H, D = 1, 8, 64


def sdpa_causal(q, k, v):
    import torch.nn.functional as F
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F._scaled_dot_product_attention(q, k, v, is_causal=True)[0]


def make_sigmoid(T, scale):
    import torch
    future = torch.ones(T, T, dtype=torch.bool).triu_(1)  # built once, outside the timing

    def sigmoid_causal(q, k, v):
        a = torch.sigmoid(torch.matmul(q, k.transpose(-1, -2)) * scale)
        return torch.matmul(a.masked_fill(future, 0.0), v)
    return sigmoid_causal


def run_cases(args, threads):
    tbc.match_blas_threads(args, threads)
    import torch
    tbc.set_threads(threads)
    roof = tbc.torch_roof(threads)
    print(f"torch {torch.__version__}, BLAS {','.join(tbc.blas_in_use())}: torch.mm roof "
          f"{roof:.2f} GFLOP/s with {threads} threads, malloc {tbc.malloc_mode()}", file=sys.stderr)
    g = torch.Generator().manual_seed(0)
    for op in args.ops.split(","):
        if op not in ("softmax", "sigmoid"):
            sys.exit(f"unknown op '{op}' (softmax, sigmoid)")
        for T in (int(t) for t in args.T.split(",")):
            # (B, H, T, D): the layout the torch kernels want; the library takes (B, T, H, D).
            q, k, v, dout = (torch.rand(B, H, T, D, generator=g) * 2 - 1 for _ in range(4))
            f = sdpa_causal if op == "softmax" else make_sigmoid(T, D ** -0.5)
            visible = T * (T + 1) / 2 * B * H
            for mode in ("fwd", "fwdbwd"):
                for t in (q, k, v):
                    t.requires_grad_(mode == "fwdbwd")
                best = float("inf")
                for r in range(args.reps + 1):
                    for t in (q, k, v):
                        t.grad = None
                    t0 = time.perf_counter()
                    if mode == "fwd":
                        with torch.no_grad():
                            f(q, k, v)
                    else:
                        f(q, k, v).backward(dout)
                    dt = time.perf_counter() - t0
                    if r and dt < best:
                        best = dt
                gf = visible * D * (12.0 if mode == "fwdbwd" else 4.0) / best / 1e9
                rec = {"bench": "torch_attention", "op": op, "mode": mode, "B": B, "H": H, "T": T,
                       "D": D, "seconds": round(best, 6), "gflops": round(gf, 2),
                       "roof_gflops": round(roof, 2), "roof_fraction": round(gf / roof, 3)}
                rec.update(tbc.common_fields(threads))
                tbc.dump(rec)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    tbc.add_threads_arg(p)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--T", default="256,1024,4096")
    p.add_argument("--ops", default="softmax,sigmoid")
    args = p.parse_args()
    if args.threads == "best":
        argv = ["--reps", str(args.reps), "--T", args.T, "--ops", args.ops] + tbc.best_argv(args)
        return tbc.run_best(os.path.abspath(__file__), argv,
                            key=lambda r: (r["op"], r["mode"], r["T"]),
                            better=lambda a, b: a["seconds"] < b["seconds"])
    run_cases(args, int(args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
