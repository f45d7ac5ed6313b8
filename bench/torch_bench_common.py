"""Shared by the PyTorch benchmark twins (torch_attention.py, torch_train.py).

- torch_roof(threads): torch.mm 1024^3 float32 GFLOP/s in the same run, best of 5 after one
  warm-up, the counterpart of bench_sgemm_roof in bench_common.h;
- malloc_mode(): "tuned" when GLIBC_TUNABLES keeps glibc from returning memory to the
  kernel (docs/performance.md: then PyTorch stops paying a page fault per 4 KiB every step), else
  "plain". GLIBC_TUNABLES is read by glibc at process start, so it must be set in the
  environment of the python process (run_benchmarks.sh does that);
- blas_in_use(): the BLAS libraries mapped into the process (every record carries them as
  "blas");
- --match-blas-threads (add_threads_arg, match_blas_threads): give the BLAS PyTorch's thread
  count (OPENBLAS_NUM_THREADS, BLIS_NUM_THREADS, unless set). Without it the BLAS keeps its
  own default, as installed: Debian's BLIS runs one thread whatever torch.set_num_threads says;
- run_best(): --threads best runs the script with --threads 1 and --threads 2 in
  subprocesses, prints every line and one more per case with "threads": "best".
"""
import json
import os
import subprocess
import sys
import time


def add_threads_arg(parser):
    parser.add_argument("--threads", default="best",
                        help="thread count for torch.set_num_threads, or 'best' (best of 1 and 2, "
                             "each in its own process; default)")
    parser.add_argument("--match-blas-threads", action="store_true",
                        help="give the BLAS the same thread count (OPENBLAS_NUM_THREADS, "
                             "BLIS_NUM_THREADS, unless set); default: the BLAS's own default")


def match_blas_threads(args, threads):
    """Sets the BLAS thread variables when --match-blas-threads asks; must run before torch
    is imported (the BLAS reads them when it loads)."""
    if args.match_blas_threads:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
        os.environ.setdefault("BLIS_NUM_THREADS", str(threads))


def best_argv(args):
    """The options a --threads best run passes on to its per-thread-count children."""
    return ["--match-blas-threads"] if args.match_blas_threads else []


def set_threads(n):
    import torch
    torch.set_num_threads(n)
    # Keep the inter-op pool at one thread: eager training runs its ops one after another.
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set (it can be set once per process)


def torch_roof(threads, n=1024):
    import torch
    a = torch.rand(n, n, dtype=torch.float32)
    b = torch.rand(n, n, dtype=torch.float32)
    c = torch.empty(n, n, dtype=torch.float32)
    best = float("inf")
    for r in range(6):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        dt = time.perf_counter() - t0
        if r and dt < best:  # the first run pays for first touches, as bench_sgemm_roof
            best = dt
    return 2.0 * n ** 3 / best / 1e9


def malloc_mode():
    t = os.environ.get("GLIBC_TUNABLES", "")
    return "tuned" if "mmap_max=0" in t or "trim_threshold" in t else "plain"


def common_fields(threads):
    import torch
    return {"threads": threads, "malloc": malloc_mode(), "torch_version": torch.__version__,
            "blas": blas_in_use(),
            "blas_threads": {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS")
                             if k in os.environ} or "default"}


def blas_in_use():
    """The BLAS libraries mapped into this process (real paths), e.g. Debian's
    libblas.so.3 alternative or an OpenBLAS put first with LD_LIBRARY_PATH."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and any(k in os.path.basename(parts[5]).lower()
                                           for k in ("blas", "blis", "mkl")):
                    libs.add(os.path.realpath(parts[5]))
    except OSError:
        return ["unknown"]
    return sorted(libs) or ["none mapped"]


def dump(rec):
    print(json.dumps(rec), flush=True)


def run_best(script, argv, key, better, thread_counts=(1, 2)):
    """Runs `script argv --threads n` for each n; prints every JSON line, then per case
    (key(rec)) the better of the runs (better(a, b) is True when a beats b) with
    "threads": "best" and "best_threads": n. Returns the exit status."""
    best = {}
    order = []
    rc = 0
    for n in thread_counts:
        cmd = [sys.executable, script] + list(argv) + ["--threads", str(n)]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        rc = rc or p.returncode
        for line in p.stdout.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            rec = json.loads(line)
            dump(rec)
            k = key(rec)
            if k not in best:
                order.append(k)
                best[k] = rec
            elif better(rec, best[k]):
                best[k] = rec
    for k in order:
        rec = dict(best[k])
        rec["best_threads"] = rec["threads"]
        rec["threads"] = "best"
        dump(rec)
    return rc
