#!/bin/sh
# python_install: the attnsink Python package installed the two supported ways, each used
# from outside the source tree with no PYTHONPATH and no ATTNSINK_LIB:
#
#  1. `meson install --destdir` (the package goes to the platform's site-packages with the
#     generated _paths.py): the package must find the staged library beside it, through the
#     relative library directory meson recorded;
#  2. `pip install --no-build-isolation --no-index` of python/ (pyproject.toml, setuptools)
#     into a virtual environment (python3 -m venv --system-site-packages, for numpy and
#     torch): the package must find the library through the system's loader
#     (LD_LIBRARY_PATH here), then through the environment's own lib directory once the
#     library is copied there, and must honour ATTNSINK_LIB over both.
#
# Each run loads the library, runs an attention op, and (if torch is there) one autograd
# step of attnsink.torch.Attention.
#
# usage: test_python_install.sh BUILD_ROOT SOURCE_ROOT SCRATCH_DIR VERSION [PYTHON]
set -eu

build_root=$1
source_root=$2
scratch=$3
version=$4
python=${5:-/usr/bin/python3}

fail() { echo "FAIL: $*"; exit 1; }

rm -rf "$scratch"
mkdir -p "$scratch/run"
dest=$scratch/destdir
unset PYTHONPATH ATTNSINK_LIB || true
export PYTHONDONTWRITEBYTECODE=1

cat > "$scratch/run/probe.py" <<'PROG'
import os, sys
import numpy as np
import attnsink
here = os.path.dirname(os.path.abspath(attnsink.__file__))
print("package", here)
print("library", attnsink.lib_path)
assert attnsink.version() == sys.argv[1], attnsink.version()
want_pkg, want_lib = sys.argv[2], sys.argv[3]
assert here.startswith(want_pkg), (here, want_pkg)
assert os.path.realpath(attnsink.lib_path).startswith(os.path.realpath(want_lib)), \
    (attnsink.lib_path, want_lib)
with attnsink.Attention("softmax,sink=head", 2, 1, 8) as op:
    out = op.forward(np.ones((1, 3, 2, 8)), np.ones((1, 3, 1, 8)), np.ones((1, 3, 1, 8)))
    assert out.shape == (1, 3, 2, 8)
try:
    import torch
except ImportError:
    torch = None
if torch is not None:
    from attnsink.torch import Attention
    att = Attention("softmax,sink=head", 2, 1, 8)
    q = torch.randn(1, 4, 2, 8, requires_grad=True)
    att(q, torch.randn(1, 4, 1, 8), torch.randn(1, 4, 1, 8)).sum().backward()
    assert q.grad is not None and att.sinks.grad is not None
    print("torch module: ok")
print("ok")
PROG

# --- 1. meson install into a staging directory
meson install -C "$build_root" --destdir "$dest" --no-rebuild --quiet \
  || fail "meson install --destdir failed"
paths=$(find "$dest" -path '*/attnsink/_paths.py' | head -n 1)
[ -n "$paths" ] || fail "meson install did not install attnsink/_paths.py (is -Dpython disabled?)"
pkg=$(dirname "$paths")
site=$(dirname "$pkg")
for f in __init__.py _lib.py metric.py model.py torch.py; do
  [ -f "$pkg/$f" ] || fail "attnsink/$f not installed in ${pkg#"$dest"}"
done
lib=$(find "$dest" -name libattnsink.so.1 | head -n 1)
[ -n "$lib" ] || fail "libattnsink.so.1 not installed"
libdir=$(dirname "$lib")
echo "meson install: package ${pkg#"$dest"}, library ${libdir#"$dest"}"
(cd "$scratch/run" && PYTHONPATH=$site "$python" probe.py "$version" "$pkg" "$libdir") \
  || fail "the meson-installed package did not find the library installed beside it"

# --- 2. pip install into a virtual environment (from a copy: setuptools writes build/ and
# *.egg-info next to pyproject.toml, which must not land in the source tree)
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "SKIP pip part: $python has no venv/ensurepip (Debian: apt-get install python3-venv)"
  exit 77
fi
"$python" -m venv --system-site-packages "$scratch/venv" || fail "python3 -m venv failed"
venv=$scratch/venv
cp -r "$source_root/python" "$scratch/src"
rm -rf "$scratch/src/meson.build" "$scratch/src/attnsink/__pycache__"
(cd "$scratch" && "$venv/bin/python" -m pip install --quiet --no-build-isolation --no-index \
   --disable-pip-version-check "$scratch/src") || fail "pip install --no-build-isolation --no-index failed"
vpkg=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/attnsink
[ -f "$vpkg/torch.py" ] || fail "pip did not install attnsink into $vpkg"
[ ! -e "$vpkg/_paths.py" ] || fail "pip installed a _paths.py"
"$venv/bin/python" -m pip show attnsink | grep "^Version: $version\$" >/dev/null \
  || fail "pip's attnsink is not version $version (python/pyproject.toml out of step with meson.build?)"

# 2a. the system's loader
(cd "$scratch/run" && LD_LIBRARY_PATH=$libdir "$venv/bin/python" probe.py "$version" "$vpkg" "$libdir") \
  || fail "the pip-installed package did not find the library through LD_LIBRARY_PATH"
# 2b. the environment's own lib directory, found from the package's location
cp -P "$libdir"/libattnsink.so* "$venv/lib/"
(cd "$scratch/run" && "$venv/bin/python" probe.py "$version" "$vpkg" "$venv/lib") \
  || fail "the pip-installed package did not find the library in its prefix's lib directory"
# 2c. ATTNSINK_LIB wins
(cd "$scratch/run" && ATTNSINK_LIB=$libdir/libattnsink.so.1 "$venv/bin/python" probe.py \
   "$version" "$vpkg" "$libdir") || fail "ATTNSINK_LIB was not honoured first"

rm -rf "$scratch"
echo "python_install: ok"
