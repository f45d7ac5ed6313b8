#!/bin/sh
# The shared library's ABI against the committed reference abi/libattnsink.abi
# (abigail's abidiff, DWARF of the -g build, opaque structs' private members kept out with
# --headers-dir2). Any change but an addition fails: a removed function, a changed
# parameter or return type, a changed enum value or struct layout. Additions pass, with a
# reminder to refresh the reference (make abi). tests/test_abi_guard.py shows that each
# kind of break is caught.
#   test_abi.sh LIBRARY SOURCE_ROOT
lib=$1
src=$2
if ! command -v abidiff >/dev/null 2>&1; then
  echo "abidiff not installed (Debian: abigail-tools): skipped"
  exit 77
fi
abidiff --no-added-syms --headers-dir2 "$src/include" "$src/abi/libattnsink.abi" "$lib"
rc=$?
# abidiff's status bits: 1 error, 2 usage error, 4 ABI change, 8 incompatible change
if [ "$rc" -ne 0 ]; then
  echo "ABI change against abi/libattnsink.abi (abidiff status $rc): only additions may change"
  echo "the ABI of a released soname; a deliberate break needs a new soname, then make abi"
  exit 1
fi
if ! abidiff --headers-dir2 "$src/include" "$src/abi/libattnsink.abi" "$lib" >/dev/null 2>&1; then
  echo "additions since the reference: refresh it with make abi"
fi
echo "ABI check passed"
exit 0
