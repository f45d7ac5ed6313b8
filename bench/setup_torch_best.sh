#!/bin/bash
# Prepares "PyTorch at its best" for benchmarking: OpenBLAS's libblas.so.3 unpacked from
# Debian's libopenblas0-pthread into a cache folder (apt-get download + dpkg-deb -x: nothing
# is installed and the machine's libblas.so.3 alternative is left as it is), checked by
# loading PyTorch with it, then prints the environment to use.
#
#   bench/setup_torch_best.sh [CACHE_DIR]     (default ${XDG_CACHE_HOME:-~/.cache}/attnsink/openblas)
#   eval "$(bench/setup_torch_best.sh)"       # exports TORCH_BLAS_DIR
#
# TORCH_BLAS_DIR is read by bench/compare_train.py, bench/compare_attention.py (configuration
# openblas-tuned) and bench/run_benchmarks.sh. The folder is put first in LD_LIBRARY_PATH of
# the PyTorch benchmark processes only. Benchmarking only: no test uses it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-/usr/bin/python3}
cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/attnsink/openblas}
pkg=libopenblas0-pthread
arch=$(dpkg --print-architecture)
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
dir="$cache/root/usr/lib/$triplet/openblas-pthread"

die() { echo "setup_torch_best.sh: $*" >&2; exit 1; }

if [[ ! -f "$dir/libblas.so.3" ]]; then
  mkdir -p "$cache"
  (cd "$cache" && rm -f "${pkg}"_*.deb && apt-get download "$pkg" >&2) ||
    die "apt-get download $pkg failed (package lists missing? run apt-get update)"
  deb=$(ls "$cache/${pkg}"_*_"$arch".deb 2>/dev/null | head -n1)
  [[ -n "$deb" ]] || die "apt-get download left no ${pkg}_*_$arch.deb in $cache"
  rm -rf "$cache/root"
  dpkg-deb -x "$deb" "$cache/root" || die "dpkg-deb -x $deb failed"
  [[ -f "$dir/libblas.so.3" ]] || die "$deb has no $dir/libblas.so.3"
fi

# The check that matters: PyTorch, started with the folder first, maps OpenBLAS.
mapped=$(LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$python" -c "
import sys; sys.path.insert(0, '$here')
import torch, torch_bench_common as t
print(' '.join(t.blas_in_use()))") || die "$python could not import torch with $dir first"
[[ "$mapped" == *"$dir"* ]] ||
  die "PyTorch did not map $dir/libblas.so.3 (mapped: $mapped); does it link libblas.so.3?"

echo "setup_torch_best.sh: PyTorch maps $mapped" >&2
echo "export TORCH_BLAS_DIR=$dir"
echo "# PyTorch at its best for one process (tuned malloc, OpenBLAS first, BLAS threads = torch threads):"
echo "#   env GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184 \\"
echo "#     LD_LIBRARY_PATH=\$TORCH_BLAS_DIR $python bench/torch_train.py --match-blas-threads ..."
