"""Finding and loading libattnsink, and the ctypes prototypes of what the binding calls.

Lookup order (the first that exists and loads wins):

1. the environment variable ``ATTNSINK_LIB``: a path to the shared object. If it is set
   but cannot be loaded, that is an error (no silent fall-back to another copy);
2. the library installed beside the package: ``meson install`` writes ``_paths.py`` next to
   this file with the library directory relative to the package (so a ``--destdir`` staging
   or a moved prefix still works); otherwise (``pip install``) the ``lib`` directories of the
   prefix the package lives in (``<prefix>/lib``, ``<prefix>/lib/<multiarch>``, ``lib64``,
   found by walking up from this file);
3. the project's build directory, ``<repo>/build/libattnsink.so``, found relative to this
   file (``<repo>/python/attnsink/_lib.py``) when the package is used from the source tree;
4. the system's loader: ``ctypes.util.find_library('attnsink')``, then ``libattnsink.so.1``
   (``LD_LIBRARY_PATH``, ldconfig's cache).
"""

import ctypes
import ctypes.util
import os
import sysconfig

__all__ = ["lib", "lib_path", "Status", "c_float_p", "declare", "libc"]

c_float_p = ctypes.POINTER(ctypes.c_float)


class Status:
    """The values of ``asink_status`` (include/attnsink.h)."""

    OK = 0
    ERR_ARG = -1
    ERR_SPEC = -2
    ERR_SHAPE = -3
    ERR_NOMEM = -4
    ERR_STATE = -5
    ERR_IO = -6
    ERR_FORMAT = -7
    ERR_UNSUPPORTED = -8
    ERR_NONFINITE = -9


def _candidates():
    """Yield (description, path-or-name, strict) in lookup order."""
    env = os.environ.get("ATTNSINK_LIB")
    if env:
        yield "ATTNSINK_LIB", env, True
    here = os.path.dirname(os.path.abspath(__file__))
    for path in _installed_beside(here):
        yield "the library installed beside the package", path, False
    repo = os.path.dirname(os.path.dirname(here))
    build = os.path.join(repo, "build", "libattnsink.so")
    if os.path.exists(build):
        yield "the project's build directory", build, False
    found = ctypes.util.find_library("attnsink")
    if found:
        yield "the system (find_library)", found, False
    yield "the system", "libattnsink.so.1", False


def _installed_beside(here):
    """Existing libattnsink.so.1 files in the library directories of the install prefix."""
    dirs = []
    try:
        from . import _paths  # written by meson install (python/meson.build)
        dirs.append(os.path.normpath(os.path.join(here, _paths.LIBDIR_FROM_PACKAGE)))
    except ImportError:
        pass
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    prefixes = []
    d = here
    while True:
        parent = os.path.dirname(d)
        if parent == d:
            break
        if os.path.basename(d) in ("lib", "lib64"):
            prefixes.append(parent)
        d = parent
    for prefix in prefixes:
        for sub in ("lib/" + multiarch if multiarch else None, "lib", "lib64"):
            if sub:
                dirs.append(os.path.join(prefix, sub))
    seen = set()
    for d in dirs:
        path = os.path.join(d, "libattnsink.so.1")
        if d not in seen and os.path.exists(path):
            seen.add(d)
            yield path


def _loaded_path(name):
    """The file the loader mapped for `name` (a bare soname when the system's loader found
    it), from /proc/self/maps; `name` itself if that cannot be told."""
    if os.path.isabs(name):
        return name
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rstrip("\n").split(None, 5)[-1]
                if os.path.basename(path).startswith("libattnsink.so"):
                    return path
    except OSError:
        pass
    return name


# The library major version this binding speaks: its soname is libattnsink.so.MAJOR, and a
# library of another major version is refused by name (its functions may differ).
MAJOR = 1


def _check_major(handle, path):
    try:
        fn = handle.asink_version_number
    except AttributeError:
        raise OSError("attnsink: %s is not libattnsink (no asink_version_number)" % path) from None
    fn.restype = ctypes.c_int
    fn.argtypes = []
    number = fn()
    if number // 10000 != MAJOR:
        raise OSError("attnsink: %s is libattnsink %d.%d.%d; this binding needs major version %d "
                      "(libattnsink.so.%d)" % (path, number // 10000, number // 100 % 100,
                                               number % 100, MAJOR, MAJOR))


def _load():
    tried = []
    for where, name, strict in _candidates():
        try:
            handle = ctypes.CDLL(name)
            path = _loaded_path(name)
            _check_major(handle, path)
            return handle, path
        except OSError as e:
            if strict:
                raise OSError(
                    "attnsink: ATTNSINK_LIB=%r cannot be loaded: %s" % (name, e)) from e
            tried.append("%s (%s): %s" % (name, where, e))
    raise OSError("attnsink: libattnsink not found; set ATTNSINK_LIB to the path of "
                  "libattnsink.so or build the project (meson setup build && ninja -C build). "
                  "Tried: " + "; ".join(tried))


def _missing(name):
    def call(*args):
        raise OSError("attnsink: %s is missing from %s (a partial or outdated build?)"
                      % (name, lib_path))
    call.__name__ = name
    return call


def _declare(lib):
    """Set argtypes/restype for every C function the binding uses."""
    c_int, c_char_p, c_void_p = ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p
    status = c_int
    attn_p = c_void_p  # asink_attn * (opaque)

    def proto(name, restype, *argtypes):
        try:
            f = getattr(lib, name)
        except AttributeError:
            # An older or partial build: fail when the function is used, not at import,
            # so that the rest of the binding still works.
            setattr(lib, name, _missing(name))
            return
        f.restype = restype
        f.argtypes = list(argtypes)

    proto("asink_version", c_char_p)
    proto("asink_version_number", c_int)
    proto("asink_status_string", c_char_p, c_int)
    proto("asink_last_error", c_char_p)
    proto("asink_init", status)
    proto("asink_runtime_info", c_char_p)
    proto("asink_simd_level", c_char_p)
    proto("asink_set_num_threads", status, c_int)
    proto("asink_get_num_threads", c_int)

    proto("asink_attn_create", status, ctypes.POINTER(attn_p), c_char_p, c_int, c_int, c_int)
    proto("asink_attn_free", None, attn_p)
    proto("asink_attn_spec", c_char_p, attn_p)
    proto("asink_attn_key_count", c_int, attn_p, c_int)
    proto("asink_attn_param_count", c_int, attn_p)
    proto("asink_attn_param_info", status, attn_p, c_int, ctypes.POINTER(c_char_p),
          ctypes.POINTER(c_int), ctypes.POINTER(ctypes.c_int64))
    proto("asink_attn_param", status, attn_p, c_char_p, ctypes.POINTER(c_float_p),
          ctypes.POINTER(ctypes.c_size_t))
    proto("asink_attn_grad", status, attn_p, c_char_p, ctypes.POINTER(c_float_p),
          ctypes.POINTER(ctypes.c_size_t))
    proto("asink_attn_zero_grad", None, attn_p)
    proto("asink_attn_forward", status, attn_p, c_int, c_int, c_float_p, c_float_p, c_float_p,
          c_float_p, c_float_p)
    proto("asink_attn_backward", status, attn_p, c_int, c_int, c_int, c_float_p, c_float_p,
          c_float_p, c_float_p, c_float_p, c_float_p, c_float_p, c_float_p)
    c_int64_p = ctypes.POINTER(ctypes.c_int64)
    proto("asink_attn_forward_at", status, attn_p, c_int, c_int, c_int, c_int64_p, c_int64_p,
          c_float_p, c_float_p, c_float_p, c_float_p, c_float_p)

    model_p = c_void_p  # asink_model * (opaque)
    adamw_p = c_void_p  # asink_adamw * (opaque)
    c_int_p = ctypes.POINTER(c_int)
    c_int32_p = ctypes.POINTER(ctypes.c_int32)
    proto("asink_model_create", status, ctypes.POINTER(model_p), c_char_p, ctypes.c_uint64)
    proto("asink_model_load", status, ctypes.POINTER(model_p), c_char_p)
    proto("asink_model_load_opts", status, ctypes.POINTER(model_p), c_char_p, c_char_p)
    proto("asink_model_create_opts", status, ctypes.POINTER(model_p), c_char_p, ctypes.c_uint64,
          c_char_p)
    proto("asink_model_weights", c_char_p, model_p)
    proto("asink_model_precision", c_char_p, model_p)
    proto("asink_model_save", status, model_p, c_char_p)
    proto("asink_model_free", None, model_p)
    proto("asink_model_config", c_char_p, model_p)
    proto("asink_model_dims", None, model_p, c_int_p, c_int_p, c_int_p, c_int_p, c_int_p,
          c_int_p)
    proto("asink_model_param_count", c_int, model_p)
    proto("asink_model_param_info", status, model_p, c_int, ctypes.POINTER(c_char_p), c_int_p,
          ctypes.POINTER(ctypes.c_int64))
    proto("asink_model_param", status, model_p, c_char_p, ctypes.POINTER(c_float_p),
          ctypes.POINTER(ctypes.c_size_t))
    proto("asink_model_grad", status, model_p, c_char_p, ctypes.POINTER(c_float_p),
          ctypes.POINTER(ctypes.c_size_t))
    proto("asink_model_param_read", status, model_p, c_char_p, ctypes.POINTER(c_float_p),
          ctypes.POINTER(ctypes.c_size_t))
    proto("asink_model_set_param", status, model_p, c_char_p, c_float_p, ctypes.c_size_t)
    proto("asink_model_zero_grad", None, model_p)
    proto("asink_model_forward", status, model_p, c_int, c_int, c_int32_p, c_float_p)
    proto("asink_model_loss", status, model_p, c_int, c_int, c_int32_p, c_int32_p, c_float_p)
    proto("asink_model_eval_loss", status, model_p, c_int, c_int, c_int32_p, c_int32_p,
          c_float_p)
    proto("asink_model_backward", status, model_p)

    proto("asink_adamw_create", status, ctypes.POINTER(adamw_p), model_p, ctypes.c_float,
          ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_float)
    proto("asink_adamw_free", None, adamw_p)
    proto("asink_adamw_schedule", status, adamw_p, c_char_p, c_int, c_int, ctypes.c_float)
    proto("asink_adamw_step", status, adamw_p, c_float_p)
    proto("asink_adamw_steps", ctypes.c_int64, adamw_p)
    proto("asink_adamw_lr", ctypes.c_float, adamw_p)
    proto("asink_adamw_save", status, adamw_p, c_char_p)
    proto("asink_adamw_load", status, adamw_p, c_char_p)

    # decoding: caches, incremental decode, sampling, generation
    cache_p = c_void_p  # asink_cache * (opaque)
    sampler_p = c_void_p  # asink_sampler * (opaque)
    metric_p = c_void_p  # asink_metric * (opaque)
    proto("asink_cache_create", status, ctypes.POINTER(cache_p), model_p, c_char_p, c_int, c_int,
          c_int, c_int)
    proto("asink_cache_free", None, cache_p)
    proto("asink_cache_reset", None, cache_p)
    proto("asink_cache_set_chunk", status, cache_p, c_int)
    proto("asink_cache_fed", ctypes.c_int64, cache_p, c_int)
    proto("asink_cache_held", c_int, cache_p, c_int)
    proto("asink_cache_batch", c_int, cache_p)
    proto("asink_cache_bytes", ctypes.c_size_t, cache_p)
    proto("asink_model_decode", status, model_p, cache_p, c_int, c_int32_p, c_float_p)
    proto("asink_model_decode_ragged", status, model_p, cache_p, c_int_p, c_int, c_int32_p,
          c_float_p)
    proto("asink_sampler_create", status, ctypes.POINTER(sampler_p), ctypes.c_float, c_int,
          ctypes.c_float, ctypes.c_uint64)
    proto("asink_sampler_free", None, sampler_p)
    proto("asink_sampler_pick", status, sampler_p, c_float_p, c_int, c_int32_p)
    proto("asink_model_generate", status, model_p, cache_p, sampler_p, c_int, c_int32_p, c_int,
          c_int32_p)
    # the metric's decoding record (the rest of asink_metric_* is declared in metric.py)
    proto("asink_metric_decode_steps", c_int, metric_p)
    proto("asink_metric_sink_share", status, metric_p, c_float_p)


lib, lib_path = _load()
_declare(lib)


def declare(protos):
    """Set restype and argtypes from {name: (restype, [argtypes])}; a function the loaded
    library lacks fails when called, not at import."""
    for name, (restype, argtypes) in protos.items():
        f = getattr(lib, name, None)
        if f is None:
            setattr(lib, name, _missing(name))
        else:
            f.restype, f.argtypes = restype, argtypes


# the C library's free(), for the buffers the library malloc's for the caller
libc = ctypes.CDLL(None)
libc.free.argtypes = [ctypes.c_void_p]

