#!/bin/bash
# Every benchmark, library beside PyTorch, in one go; JSON lines into BUILD/bench-results.jsonl
# and Markdown tables (bench/bench_summary.py) on stdout.
#
#   bench/run_benchmarks.sh [BUILD]            (BUILD: a configured meson build dir, default build)
#
#   1. bench_attention, library threads (default 2)
#   2. torch_attention.py --threads best, plain, with GLIBC_TUNABLES (docs/performance.md), and
#      tuned with the BLAS given PyTorch's threads (--match-blas-threads): the system BLAS, and
#      OpenBLAS put first with LD_LIBRARY_PATH when TORCH_BLAS_DIR names its folder
#      (bench/setup_torch_best.sh prepares it and prints the variable)
#   3. bench_train, library threads
#   4. torch_train.py --threads best, plain, tuned, and the same two BLAS variants
#   5. bench_decode, library threads: cached single-token decoding, batch 1 and 8
#   6. torch_decode.py --threads best, plain and tuned (and tuned with another BLAS put first
#      with LD_LIBRARY_PATH when TORCH_BLAS_DIR names its folder, e.g. OpenBLAS's)
#   7. bench_gemm, 1 thread and library threads: the library's GEMM driver against BLIS's
#   8. bench_peak, library threads: the CPU's fp32 FMA and bf16 peaks beside the sgemm roof
#   9. bench_metric, library threads (when it was built)
# Library-against-PyTorch training ratios are best taken in interleaved rounds:
# bench/compare_train.py (see docs/performance.md).
#
# Environment (defaults are the full measurement; QUICK=1 is a smoke run of a minute or two):
#   THREADS=2  ATTN_T=256,1024,4096  ATTN_REPS=5  TRAIN_STEPS=5  TRAIN_BATCH=8  MODELS=study60m,tiny
#   DECODE_BATCH=1,8  DECODE_CACHE=2048  DECODE_STEPS=32  TORCH_BLAS_DIR=(unset)
#   METRIC_REPS=(bench_metric's default)  PYTHON=/usr/bin/python3
# Run it on a quiet machine: every figure is a best or a mean of a few repetitions, and the
# roofs (BLIS sgemm / torch.mm 1024^3) are measured in the same processes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${1:-build}
python=${PYTHON:-/usr/bin/python3}
tuned='glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184'

if [[ "${QUICK:-0}" == 1 ]]; then
  : "${ATTN_T:=256}" "${ATTN_REPS:=1}" "${TRAIN_STEPS:=1}" "${TRAIN_BATCH:=1}" "${METRIC_REPS:=3}"
  : "${DECODE_BATCH:=1}" "${DECODE_CACHE:=256}" "${DECODE_STEPS:=4}"
fi
threads=${THREADS:-2}
attn_t=${ATTN_T:-256,1024,4096}
attn_reps=${ATTN_REPS:-5}
steps=${TRAIN_STEPS:-5}
batch=${TRAIN_BATCH:-8}
models=${MODELS:-study60m,tiny}
decode_batch=${DECODE_BATCH:-1,8}
decode_cache=${DECODE_CACHE:-2048}
decode_steps=${DECODE_STEPS:-32}

for exe in bench_attention bench_train bench_decode; do
  if [[ ! -x "$build/bench/$exe" ]]; then
    echo "run_benchmarks.sh: $build/bench/$exe is missing: build first (ninja -C $build)" >&2
    exit 2
  fi
done
"$python" -c 'import torch' 2>/dev/null || {
  echo "run_benchmarks.sh: $python has no torch (apt-get install python3-torch)" >&2
  exit 2
}

out="$build/bench-results.jsonl"
tmp="$out.tmp"
: >"$tmp"
step() { echo "== $(date +%T) $*" >&2; }

# GLIBC_TUNABLES from the caller's environment would make the "plain" PyTorch runs tuned.
unset GLIBC_TUNABLES

failed=()
# run NAME [VAR=VALUE...] COMMAND...: prints its JSON lines into the results; a failure is
# noted and the next benchmark still runs.
run() {
  local name=$1
  shift
  step "$name"
  if ! env "$@" | tee -a "$tmp"; then
    echo "run_benchmarks.sh: $name failed" >&2
    failed+=("$name")
  fi
}

# run_blas_variants SCRIPT ARGS...: SCRIPT, tuned, with the BLAS given PyTorch's thread count:
# the system BLAS, then OpenBLAS from TORCH_BLAS_DIR when set (for this process only; never
# the machine's alternatives).
run_blas_variants() {
  local script=$1
  shift
  run "$script --threads best --match-blas-threads (tuned malloc, system BLAS)" \
    GLIBC_TUNABLES=$tuned "$python" "$here/$script" --threads best --match-blas-threads "$@"
  if [[ -n "${TORCH_BLAS_DIR:-}" ]]; then
    run "$script --threads best --match-blas-threads (tuned malloc, BLAS from $TORCH_BLAS_DIR)" \
      GLIBC_TUNABLES=$tuned LD_LIBRARY_PATH="$TORCH_BLAS_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
      "$python" "$here/$script" --threads best --match-blas-threads "$@"
  fi
}

run "bench_attention --threads $threads" \
  "$build/bench/bench_attention" --threads "$threads" --T "$attn_t" --reps "$attn_reps"
run "torch_attention.py --threads best (plain malloc)" \
  "$python" "$here/torch_attention.py" --threads best --T "$attn_t" --reps "$attn_reps"
run "torch_attention.py --threads best (tuned malloc)" GLIBC_TUNABLES=$tuned \
  "$python" "$here/torch_attention.py" --threads best --T "$attn_t" --reps "$attn_reps"
run_blas_variants torch_attention.py --T "$attn_t" --reps "$attn_reps"

run "bench_train --threads $threads" \
  "$build/bench/bench_train" --threads "$threads" --models "$models" --steps "$steps" --batch "$batch"
run "torch_train.py --threads best (plain malloc)" \
  "$python" "$here/torch_train.py" --threads best --models "$models" --steps "$steps" --batch "$batch"
run "torch_train.py --threads best (tuned malloc)" GLIBC_TUNABLES=$tuned \
  "$python" "$here/torch_train.py" --threads best --models "$models" --steps "$steps" --batch "$batch"
run_blas_variants torch_train.py --models "$models" --steps "$steps" --batch "$batch"

decode_args=(--models "$models" --batch "$decode_batch" --cache "$decode_cache" --steps "$decode_steps")
run "bench_decode --threads $threads" \
  "$build/bench/bench_decode" --threads "$threads" "${decode_args[@]}"
run "torch_decode.py --threads best (plain malloc)" \
  "$python" "$here/torch_decode.py" --threads best "${decode_args[@]}"
run "torch_decode.py --threads best (tuned malloc)" GLIBC_TUNABLES=$tuned \
  "$python" "$here/torch_decode.py" --threads best "${decode_args[@]}"
if [[ -n "${TORCH_BLAS_DIR:-}" ]]; then
  # Another BLAS for this process only (never the machine's alternatives): e.g. the folder of
  # OpenBLAS's libblas.so.3 (libopenblas0-pthread: /usr/lib/x86_64-linux-gnu/openblas-pthread).
  run "torch_decode.py --threads best (tuned malloc, BLAS from $TORCH_BLAS_DIR)" \
    GLIBC_TUNABLES=$tuned LD_LIBRARY_PATH="$TORCH_BLAS_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$python" "$here/torch_decode.py" --threads best "${decode_args[@]}"
fi

if [[ -x "$build/bench/bench_gemm" ]]; then
  run "bench_gemm --threads 1" "$build/bench/bench_gemm" --threads 1
  run "bench_gemm --threads $threads" "$build/bench/bench_gemm" --threads "$threads"
fi

if [[ -x "$build/bench/bench_peak" ]]; then
  run "bench_peak --threads $threads" "$build/bench/bench_peak" --threads "$threads"
fi

if [[ -x "$build/bench/bench_metric" ]]; then
  run "bench_metric --threads $threads" \
    "$build/bench/bench_metric" --threads "$threads" ${METRIC_REPS:+--reps "$METRIC_REPS"}
else
  step "no $build/bench/bench_metric: metric overhead skipped"
fi

mv "$tmp" "$out"
step "wrote $out"
echo
"$python" "$here/bench_summary.py" "$out"
if ((${#failed[@]})); then
  printf 'run_benchmarks.sh: failed: %s\n' "${failed[@]}" >&2
  exit 1
fi
