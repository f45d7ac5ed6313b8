#!/bin/sh
# install_pkgconfig: stage `meson install` into a scratch DESTDIR, then build a small
# program the way a user would, `cc prog.c $(pkg-config --cflags --libs attnsink)`,
# run it against the staged libattnsink.so, and check the shared object itself:
# soname libattnsink.so.MAJOR, only asink_ symbols exported, each under the symbol version
# ATTNSINK_MAJOR.N (N: the minor release that added it). A static link through
# `pkg-config --static` checks that the .pc's private libraries are complete. The program
# attnsink is staged too: its RUNPATH must suit the configured prefix.
#
# usage: test_install.sh BUILD_ROOT SCRATCH_DIR VERSION
set -eu

build_root=$1
scratch=$2
version=$3
CC=${CC:-cc}

fail() { echo "FAIL: $*"; exit 1; }

rm -rf "$scratch"
mkdir -p "$scratch"
dest=$scratch/destdir

meson install -C "$build_root" --destdir "$dest" --no-rebuild --quiet \
  || fail "meson install --destdir --no-rebuild failed (is every installed target built? add it to this test's depends)"

pc=$(find "$dest" -name attnsink.pc | head -n 1)
[ -n "$pc" ] || fail "attnsink.pc was not installed"
echo "pkg-config file: ${pc#"$dest"}"

# pkg-config prepends the sysroot to every -I and -L it prints.
PKG_CONFIG_PATH=$(dirname "$pc")
PKG_CONFIG_SYSROOT_DIR=$dest
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR

pkg-config --exists attnsink || fail "pkg-config cannot find attnsink"
[ "$(pkg-config --modversion attnsink)" = "$version" ] \
  || fail "pkg-config version $(pkg-config --modversion attnsink), expected $version"
cflags=$(pkg-config --cflags attnsink)
libs=$(pkg-config --libs attnsink)
echo "cflags: $cflags"
echo "libs:   $libs"

# pkgconf prefixes the sysroot to variables as well; freedesktop pkg-config does not.
staged() { case "$1" in "$dest"/*) echo "$1" ;; *) echo "$dest$1" ;; esac; }
libdir=$(staged "$(pkg-config --variable=libdir attnsink)")
includedir=$(staged "$(pkg-config --variable=includedir attnsink)")
[ -f "$includedir/attnsink.h" ] || fail "attnsink.h not installed in $includedir"

cat > "$scratch/prog.c" <<'PROG'
#include <stdio.h>
#include <string.h>
#include <attnsink.h>

int main(void) {
  const char *v = asink_version();
  const char *info = asink_runtime_info();
  if (!v || !info || !*info) return 2;
  if (asink_version_number() != ASINK_VERSION_NUMBER) return 3;
  printf("version %s\n%s\n", v, info);
  return 0;
}
PROG

# Shared link: exactly the command a user would type.
# shellcheck disable=SC2086
$CC -std=c11 -Wall -Wextra -Werror "$scratch/prog.c" -o "$scratch/prog" $cflags $libs \
  || fail "compiling prog.c against the staged library failed"

out=$(LD_LIBRARY_PATH=$libdir "$scratch/prog") || fail "prog exited with status $?"
echo "$out"
echo "$out" | grep -q "^version $version\$" || fail "output does not name version $version"

# It must have loaded the staged library, not one installed elsewhere.
loaded=$(LD_LIBRARY_PATH=$libdir ldd "$scratch/prog" | awk '$1 == "libattnsink.so.1" { print $3 }')
case "$loaded" in
  "$libdir"/*) echo "loaded: ${loaded#"$dest"}" ;;
  *) fail "prog resolved libattnsink.so.1 to '$loaded', not the staged $libdir" ;;
esac

# The header is also valid C++ (extern "C" guard) when a C++ compiler is there.
if command -v c++ >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  printf '#include <attnsink.h>\nint main() { return asink_version() ? 0 : 1; }\n' \
    | c++ -x c++ -Wall -Wextra -Werror -fsyntax-only $cflags - \
    || fail "attnsink.h does not compile as C++"
fi

# ASINK_DEPRECATED makes the compiler warn where a marked declaration is used.
printf '#include <attnsink.h>\nASINK_DEPRECATED("use g") int f(void);\nint main(void) { return f(); }\n' \
  > "$scratch/dep.c"
# shellcheck disable=SC2086
if $CC -std=c11 -Werror=deprecated-declarations -c "$scratch/dep.c" -o "$scratch/dep.o" $cflags 2>/dev/null; then
  fail "ASINK_DEPRECATED did not make the compiler warn"
fi
echo "ASINK_DEPRECATED: warns"

# Soname and the symlink chain.
so=$libdir/libattnsink.so
[ -L "$so" ] || fail "libattnsink.so (development symlink) missing"
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ "$soname" = "libattnsink.so.${version%%.*}" ] || fail "soname is '$soname', expected libattnsink.so.${version%%.*}"
[ -e "$libdir/$soname" ] || fail "$soname symlink missing"
[ -f "$libdir/libattnsink.so.$version" ] || fail "libattnsink.so.$version missing"
echo "soname: $soname"

# Only asink_ symbols exported (plus the linker's own section markers).
extra=$(nm -D --defined-only "$so" | awk '{ print $NF }' \
  | grep -v -e '^asink_' -e '^ATTNSINK_' -e '^_init$' -e '^_fini$' -e '^_edata$' -e '^_end$' -e '^__bss_start$' || true)
if [ -n "$extra" ]; then
  echo "exported symbols without the asink_ prefix:"
  echo "$extra"
  fail "non-asink_ symbols exported"
fi
echo "exported: $(nm -D --defined-only "$so" | grep -c ' asink_') asink_ symbols, nothing else"

# Every exported function carries a symbol version of the soname (lib/attnsink.map):
# ATTNSINK_MAJOR.0, or the minor release that added it.
major=${version%%.*}
unversioned=$(objdump -T "$so" | awk '$NF ~ /^asink_/ && $(NF-1) !~ /^ATTNSINK_'"$major"'\.[0-9]+$/ { print $NF }')
[ -z "$unversioned" ] || fail "functions without a version ATTNSINK_$major.N: $unversioned"
echo "symbol version: ATTNSINK_$major.N on every function"

# Static link: libattnsink.a plus the private libraries from the .pc.
static=$libdir/libattnsink.a
[ -f "$static" ] || fail "libattnsink.a not installed"
slibs=$(pkg-config --static --libs attnsink | sed 's/\(^\| \)-lattnsink\( \|$\)/ /')
# shellcheck disable=SC2086
$CC -std=c11 "$scratch/prog.c" -o "$scratch/prog_static" $cflags "$static" $slibs \
  || fail "static link with 'pkg-config --static --libs' failed"
out=$("$scratch/prog_static") || fail "statically linked prog exited with status $?"
echo "$out" | grep -q "^version $version\$" || fail "static prog output does not name the version"
echo "static link: ok"

# The installed program's RUNPATH follows the prefix the tree was configured for: none
# under /usr and /usr/local (the loader's own directories), else relative to the program,
# so the staged copy runs as it is, with an empty environment.
bin=$(find "$dest" -path '*/bin/attnsink' | head -n 1)
if [ -n "$bin" ]; then
  prefix=${bin#"$dest"}
  prefix=${prefix%/bin/attnsink}
  runpath=$(readelf -d "$bin" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]/\2/p')
  case $prefix in
    /usr | /usr/local)
      [ -z "$runpath" ] || fail "bin/attnsink under the system prefix $prefix has a RUNPATH: $runpath"
      echo "bin/attnsink: no RUNPATH (prefix $prefix)" ;;
    *)
      case $runpath in '$ORIGIN/'*) ;; *) fail "bin/attnsink under $prefix has RUNPATH '$runpath', not \$ORIGIN-relative" ;; esac
      env -i "$bin" --version >/dev/null || fail "the staged bin/attnsink does not run under env -i"
      echo "bin/attnsink: RUNPATH $runpath, runs under env -i" ;;
  esac
fi

rm -rf "$scratch"
echo "install_pkgconfig: ok"
