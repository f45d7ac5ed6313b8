"""Shared by compare_train.py and compare_attention.py: the PyTorch configurations a library
figure is compared with, and running one benchmark process for its JSON lines.

PyTorch configurations (docs/performance.md, "PyTorch configurations"):
  plain           Debian's PyTorch as installed: the system BLAS (libblas.so.3 alternative),
                  glibc malloc defaults, the BLAS's own thread count;
  tuned           plain + the GLIBC_TUNABLES that keep glibc from returning memory to the
                  kernel (no page-fault storm every step);
  blis-tuned      tuned + the system BLAS given PyTorch's thread count (BLIS_NUM_THREADS);
  openblas-tuned  tuned + OpenBLAS's libblas.so.3 put first with LD_LIBRARY_PATH for the
                  benchmark process only (folder from TORCH_BLAS_DIR or --blas-dir; prepared
                  by bench/setup_torch_best.sh) and given PyTorch's thread count.
"PyTorch at its best" is, per round, the fastest of the configurations measured (plain too:
on a noisy machine it sometimes wins, and the best column must not be slower than any other).
Every PyTorch record names the BLAS mapped into its process ("blas", from /proc/self/maps).
"""
import json
import os
import subprocess
import sys

TUNED = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"
CONFIGS = ("plain", "tuned", "blis-tuned", "openblas-tuned")
# Variables that would leak one configuration's settings into another's process.
_CLEARED = ("GLIBC_TUNABLES", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS")


def add_config_args(parser):
    parser.add_argument("--configs", default=None,
                        help="PyTorch configurations, comma-separated, from "
                             f"{','.join(CONFIGS)} (default: all, openblas-tuned only when "
                             "--blas-dir or TORCH_BLAS_DIR names a folder)")
    parser.add_argument("--blas-dir", default=os.environ.get("TORCH_BLAS_DIR"),
                        help="folder of OpenBLAS's libblas.so.3 (default $TORCH_BLAS_DIR; "
                             "bench/setup_torch_best.sh prints it)")


    parser.add_argument("--torch-threads", default="best",
                        help="PyTorch's --threads: 1, 2 or best (default: best of 1 and 2, "
                             "each in its own process)")


def torch_threads(args, prog):
    """(argv for the PyTorch script, predicate picking its result lines)."""
    t = args.torch_threads
    if t != "best" and not (t.isdigit() and int(t) >= 1):
        sys.exit(f"{prog}: --torch-threads must be a count >= 1 or 'best' (got '{t}')")
    want = "best" if t == "best" else int(t)
    return ["--threads", t], lambda rec: rec.get("threads") == want


def parse_configs(args, prog):
    """The configurations asked for, checked; exits with a message naming a bad one."""
    if args.configs is None:
        names = [c for c in CONFIGS if c != "openblas-tuned" or args.blas_dir]
    else:
        names = [c for c in args.configs.split(",") if c]
        for c in names:
            if c not in CONFIGS:
                sys.exit(f"{prog}: unknown configuration '{c}' ({', '.join(CONFIGS)})")
    if "openblas-tuned" in names:
        lib = os.path.join(args.blas_dir or "", "libblas.so.3")
        if not args.blas_dir or not os.path.isfile(lib):
            sys.exit(f"{prog}: openblas-tuned needs --blas-dir or TORCH_BLAS_DIR naming a folder "
                     f"with libblas.so.3 (got '{args.blas_dir or ''}'; run "
                     "bench/setup_torch_best.sh)")
    if not names:
        sys.exit(f"{prog}: --configs names no configuration")
    return names


def library_exe(build, name, prog):
    """Path of the library's benchmark program `name` in the build folder; exits when it is
    not built."""
    exe = os.path.join(build, "bench", name)
    if not os.access(exe, os.X_OK):
        sys.exit(f"{prog}: {exe} is missing: build first (ninja -C {build})")
    return exe


def config_run(name, blas_dir):
    """(environment additions, extra arguments) of a PyTorch benchmark process."""
    if name == "plain":
        return {}, []
    env = {"GLIBC_TUNABLES": TUNED}
    if name == "openblas-tuned":
        old = os.environ.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = blas_dir + (":" + old if old else "")
    # --match-blas-threads: the BLAS gets PyTorch's thread count (torch_bench_common.py).
    return env, ([] if name == "tuned" else ["--match-blas-threads"])


def run_json(prog, cmd, env_extra=None, want=None):
    """Runs cmd, prints its JSON lines, returns them (those `want` keeps). Exits on failure,
    naming the command and the end of its stderr."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(env_extra or {})
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{prog}: {' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    recs = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    for r in recs:
        print(json.dumps(r), flush=True)
    recs = [r for r in recs if want is None or want(r)]
    if not recs:
        sys.exit(f"{prog}: no result line from {' '.join(cmd)}")
    return recs


def blas_name(rec):
    """Short name of the BLAS a PyTorch record ran with: the folder of its libblas.so.3
    ("blis-openmp", "openblas-pthread") or the library's own file name."""
    for path in rec.get("blas") or []:
        if "libblas.so" in path:
            return path.rstrip("/").split("/")[-2]
    return ",".join(os.path.basename(p) for p in rec.get("blas") or []) or "unknown"


def best_of(speeds):
    """(config, speed) of the fastest configuration among {config: speed}."""
    return max((v, c) for c, v in speeds.items())[::-1]
