#!/bin/sh
# The shared library's ABI against the committed reference abi/libattnsink.abi
# (abigail's abidiff, DWARF of the -g build). Incompatible changes fail: they need a
# soname bump and a deliberate `make abi`. Additions pass with a reminder to refresh.
#   test_abi.sh LIBRARY SOURCE_ROOT
lib=$1
src=$2
if ! command -v abidiff >/dev/null 2>&1; then
  echo "abidiff not installed (Debian: abigail-tools): skipped"
  exit 77
fi
abidiff --headers-dir2 "$src/include" "$src/abi/libattnsink.abi" "$lib"
rc=$?
# abidiff's status bits: 1 error, 2 usage error, 4 ABI change, 8 incompatible change
if [ $((rc & 3)) -ne 0 ]; then
  echo "abidiff failed (status $rc)"
  exit 1
fi
if [ $((rc & 8)) -ne 0 ]; then
  echo "incompatible ABI change against abi/libattnsink.abi: bump the soname, then make abi"
  exit 1
fi
if [ $((rc & 4)) -ne 0 ]; then
  echo "compatible ABI change (additions): refresh the reference with make abi"
fi
echo "ABI check passed"
exit 0
