#!/bin/sh
# install_prefix: `make install PREFIX=DIR` into a directory of one's own, used from a
# clean environment (env -i: no LD_LIBRARY_PATH, no PKG_CONFIG_PATH, no PYTHONPATH set):
#
#  - a build directory configured for another prefix installs into DIR all the same
#    (make install sets the prefix on it), and nothing lands in the first prefix;
#  - DIR/bin/attnsink runs through its $ORIGIN-relative RUNPATH, also after DIR is moved;
#  - a program built with `pkg-config --cflags --libs attnsink` plus the documented
#    -Wl,-rpath,$(pkg-config --variable=libdir attnsink) runs;
#  - the Python package installed with it imports and loads the library beside it;
#  - a system prefix (/usr) gets no RUNPATH at all.
#
# It configures and builds its own small tree (scalar kernels, no tests or benchmarks,
# no optimisation: seconds), since the prefix of the tree under test is not its to change.
#
# usage: test_install_prefix.sh SOURCE_ROOT SCRATCH_DIR VERSION
set -eu

src=$1
scratch=$2
version=$3
CC=${CC:-cc}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

fail() { echo "FAIL: $*"; exit 1; }

# not the outer make's jobserver or the test runner's library paths
unset MAKEFLAGS MFLAGS MAKELEVEL LD_LIBRARY_PATH PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR PYTHONPATH ATTNSINK_LIB || true

rm -rf "$scratch"
mkdir -p "$scratch"
build=$scratch/build
first=$scratch/first
prefix=$scratch/prefix

meson setup "$build" "$src" --prefix="$first" -Dtests=false -Dbench=false -Dsimd=scalar \
  -Dbuildtype=plain >"$scratch/setup.log" 2>&1 || { cat "$scratch/setup.log"; fail "meson setup failed"; }

# --- make install PREFIX=DIR on a tree configured for another prefix
make -s -C "$src" install BUILD="$build" PREFIX="$prefix" JOBS=2 >"$scratch/install.log" 2>&1 \
  || { tail -n 30 "$scratch/install.log"; fail "make install PREFIX=$prefix failed"; }
grep "make install: installed under $prefix\$" "$scratch/install.log" >/dev/null \
  || fail "make install did not say it installed under $prefix"
[ ! -e "$first" ] || fail "make install PREFIX=... still installed into the prefix configured first ($first)"
[ -x "$prefix/bin/attnsink" ] || fail "$prefix/bin/attnsink not installed"
lib=$(find "$prefix" -name libattnsink.so.1 | head -n 1)
[ -n "$lib" ] || fail "libattnsink.so.1 not installed under $prefix"
libdir=$(dirname "$lib")
echo "installed: bin/attnsink, ${libdir#"$prefix"/}/libattnsink.so.1"

# --- the program: RUNPATH relative to itself, runs with an empty environment
runpath=$(readelf -d "$prefix/bin/attnsink" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
rel=$("$PY" -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$libdir" "$prefix/bin")
[ "$runpath" = "\$ORIGIN/$rel" ] || fail "bin/attnsink RUNPATH is '$runpath', expected '\$ORIGIN/$rel'"
echo "RUNPATH: $runpath"
out=$(env -i "$prefix/bin/attnsink" --version) || fail "env -i bin/attnsink --version failed: $out"
[ "$out" = "attnsink (libattnsink $version)" ] || fail "attnsink --version printed '$out'"
echo "env -i attnsink --version: $out"

# --- a consumer program, built the documented way
cat >"$scratch/prog.c" <<'PROG'
#include <stdio.h>
#include <attnsink.h>

int main(void) {
  asink_attn *op;
  if (asink_attn_create(&op, "softmax,window=4", 2, 1, 8) != ASINK_OK) {
    fprintf(stderr, "%s\n", asink_last_error());
    return 1;
  }
  asink_attn_free(op);
  printf("version %s\n", asink_version());
  return 0;
}
PROG
PKG_CONFIG_PATH=$libdir/pkgconfig
export PKG_CONFIG_PATH
[ "$(pkg-config --variable=prefix attnsink)" = "$prefix" ] \
  || fail "attnsink.pc has prefix $(pkg-config --variable=prefix attnsink), not $prefix"
# shellcheck disable=SC2046
$CC -std=c11 -Wall -Werror "$scratch/prog.c" -o "$scratch/prog" $(pkg-config --cflags --libs attnsink) \
  -Wl,-rpath,"$(pkg-config --variable=libdir attnsink)" || fail "building prog.c with pkg-config failed"
out=$(env -i "$scratch/prog") || fail "env -i prog failed: $out"
[ "$out" = "version $version" ] || fail "prog printed '$out'"
echo "env -i consumer built with pkg-config: $out"

# --- the Python package, installed with the library
paths=$(find "$prefix" -path '*/attnsink/_paths.py' | head -n 1)
if [ -n "$paths" ] && "$PY" -c 'import numpy' 2>/dev/null; then
  site=$(dirname "$(dirname "$paths")")
  pycheck='import os, sys, numpy as np, attnsink
assert attnsink.version() == sys.argv[1], attnsink.version()
assert os.path.realpath(attnsink.lib_path).startswith(os.path.realpath(sys.argv[2])), attnsink.lib_path
with attnsink.Attention("softmax", 2, 1, 8) as op:
    assert op.forward(np.ones((1, 3, 2, 8)), np.ones((1, 3, 1, 8)), np.ones((1, 3, 1, 8))).shape == (1, 3, 2, 8)
print("python:", attnsink.lib_path)'
  (cd "$scratch" && env -i PYTHONPATH="$site" "$PY" -c "$pycheck" "$version" "$prefix") \
    || fail "the installed Python package did not load the library installed with it"
else
  echo "python: not installed under the prefix (no python3 found at setup) or no numpy; not checked"
fi

# --- the whole tree moved: the RUNPATH and the package's library path are relative
mv "$prefix" "$scratch/moved"
out=$(env -i "$scratch/moved/bin/attnsink" --version) || fail "attnsink of a moved prefix failed: $out"
echo "moved prefix: $out"
if [ -n "${site:-}" ]; then
  moved_site=$scratch/moved${site#"$prefix"}
  (cd "$scratch" && env -i PYTHONPATH="$moved_site" "$PY" -c "$pycheck" "$version" "$scratch/moved") \
    || fail "the Python package of a moved prefix did not find its library"
fi

# --- a system prefix: no RUNPATH (the loader's directories; Debian's rule)
meson configure "$build" -Dprefix=/usr >/dev/null || fail "meson configure -Dprefix=/usr failed"
ninja -C "$build" >/dev/null || fail "ninja after the prefix change failed"
meson install -C "$build" --destdir "$scratch/stage" --no-rebuild --quiet || fail "staged install for /usr failed"
[ -x "$scratch/stage/usr/bin/attnsink" ] || fail "staged /usr/bin/attnsink missing"
if readelf -d "$scratch/stage/usr/bin/attnsink" | grep -E '\((RUNPATH|RPATH)\)'; then
  fail "a /usr install has a RUNPATH"
fi
echo "prefix /usr: no RUNPATH"

rm -rf "$scratch"
echo "install_prefix: ok"
