"""Sink statistics (DESIGN §5) through the metric handle: fused into a model's forward
pass (:func:`sink_stats`, also ``Model.sink_stats``) or computed from attention maps the
caller supplies (:func:`sink_metric`)."""

import ctypes
import json

import numpy as np

from ._lib import lib, c_float_p
from . import _check, _ptr, _shape, ArgumentError, Status

__all__ = ["sink_stats", "sink_metric"]

_metric_p = ctypes.c_void_p
_c_int_p = ctypes.POINTER(ctypes.c_int)
_c_int32_p = ctypes.POINTER(ctypes.c_int32)


def _declare():
    st = ctypes.c_int
    protos = {
        "asink_metric_create": (st, [ctypes.POINTER(_metric_p), ctypes.c_float]),
        "asink_metric_free": (None, [_metric_p]),
        "asink_metric_reset": (None, [_metric_p]),
        "asink_model_attach_metric": (st, [ctypes.c_void_p, _metric_p]),
        "asink_metric_add_maps": (st, [_metric_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                       ctypes.c_int, ctypes.c_int, ctypes.c_int, c_float_p,
                                       ctypes.c_int]),
        "asink_metric_dims": (None, [_metric_p] + [_c_int_p] * 5),
        "asink_metric_json": (ctypes.c_void_p, [_metric_p]),
    }
    for name in ("importance", "sink", "hidden_norm", "key_norm", "value_norm", "qk_cosine",
                 "qk_norm_product", "entropy"):
        protos["asink_metric_" + name] = (st, [_metric_p, c_float_p])
    for name, (res, args) in protos.items():
        f = getattr(lib, name, None)
        if f is not None:
            f.restype, f.argtypes = res, args


_declare()
_libc = ctypes.CDLL(None)
_libc.free.argtypes = [ctypes.c_void_p]


class _Metric:
    """Owns one asink_metric handle."""

    def __init__(self, eps):
        self.ptr = _metric_p()
        if not isinstance(eps, (int, float, np.floating)) or not 0.0 < float(eps) < 1.0:
            raise ArgumentError("eps=%r must be a number in (0, 1)" % (eps,), Status.ERR_ARG)
        _check(lib.asink_metric_create(ctypes.byref(self.ptr), float(eps)), "asink_metric_create")

    def __del__(self):
        if getattr(self, "ptr", None) is not None and self.ptr.value:
            lib.asink_metric_free(self.ptr)
            self.ptr = _metric_p()

    def dims(self):
        v = [ctypes.c_int() for _ in range(5)]
        lib.asink_metric_dims(self.ptr, *[ctypes.byref(x) for x in v])
        return [x.value for x in v]

    def read(self, name, shape):
        out = np.empty(shape, dtype=np.float32)
        _check(getattr(lib, "asink_metric_" + name)(self.ptr, _ptr(out)), "asink_metric_" + name)
        return out


def sink_stats(model, tokens, eps=0.3, batch=16):
    """Statistics of ``model`` on int ``tokens`` (N, T), gathered inside its forward passes.

    Returns a dict: 'importance' (N, L, H, Tk), 'sink' (Tk,) percent, 'hidden_norm' (L+1, T),
    'key_norm' (L, T), 'value_norm' (L, T), 'qk_cosine' (L, H, T), 'qk_norm_product'
    (L, H, T), 'entropy' (L, H). Tk = T, or T+1 when the attention spec has a virtual key
    (column 0). With a sink-token model, T counts the sink token (position 0).
    Sequences go through the model ``batch`` at a time; no logits are computed."""
    from .model import _int32_grid
    tok = _int32_grid(tokens, "tokens")
    mt = _Metric(eps)
    _check(lib.asink_model_attach_metric(model._h.ptr, mt.ptr), "asink_model_attach_metric")
    try:
        for i in range(0, tok.shape[0], batch):
            part = np.ascontiguousarray(tok[i:i + batch])
            _check(lib.asink_model_forward(model._h.ptr, part.shape[0], part.shape[1],
                                           part.ctypes.data_as(_c_int32_p), None),
                   "asink_model_forward")
    finally:
        lib.asink_model_attach_metric(model._h.ptr, None)
    N, L, H, T, Tk = mt.dims()
    return {
        "importance": mt.read("importance", (N, L, H, Tk)),
        "sink": mt.read("sink", (Tk,)),
        "hidden_norm": mt.read("hidden_norm", (L + 1, T)),
        "key_norm": mt.read("key_norm", (L, T)),
        "value_norm": mt.read("value_norm", (L, T)),
        "qk_cosine": mt.read("qk_cosine", (L, H, T)),
        "qk_norm_product": mt.read("qk_norm_product", (L, H, T)),
        "entropy": mt.read("entropy", (L, H)),
    }


def sink_metric(maps, eps=0.3, normalized=True):
    """Importance and Sink_k^eps of attention maps (N, L, H, T, Tk) the caller computed
    (Tk = T, or T+1 with a virtual key in column 0). normalized=True: the maps are the
    attention itself (entries must be >= 0); False: each row is replaced by the proxy
    |A| / (sum |A| + 1e-8) first (DESIGN §5). Returns {'importance': (N, L, H, Tk),
    'sink': (Tk,) percent, 'entropy': (L, H)}."""
    a = np.asarray(maps, dtype=np.float32)
    if a.ndim != 5:
        raise ArgumentError("maps must have rank 5 (N, L, H, T, Tk); got shape %s"
                            % _shape(a.shape), Status.ERR_SHAPE)
    N, L, H, T, Tk = a.shape
    mt = _Metric(eps)
    for layer in range(L):
        block = np.ascontiguousarray(a[:, layer])
        _check(lib.asink_metric_add_maps(mt.ptr, layer, L, N, H, T, Tk, _ptr(block),
                                         1 if normalized else 0), "asink_metric_add_maps")
    return {
        "importance": mt.read("importance", (N, L, H, Tk)),
        "sink": mt.read("sink", (Tk,)),
        "entropy": mt.read("entropy", (L, H)),
    }
