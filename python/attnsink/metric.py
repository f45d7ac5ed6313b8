"""Sink statistics (docs/attention.md, docs/api.md) through the metric handle: fused into a model's forward
pass (:func:`sink_stats`, also ``Model.sink_stats``) or computed from attention maps the
caller supplies (:func:`sink_metric`); attached to a model by hand (:class:`Metric`), which
also records decoding::

    mt = attnsink.Metric(eps=0.3)
    m.attach_metric(mt)                 # or mt.attach(m)
    logits = cache.step(tokens)         # one record per decode call
    mt.decode_steps                     # records so far
    mt.sink_share()                     # (steps, L, H): attention on the cache's sink slots
    mt.stats()                          # the dict of sink_stats, from forward passes
    mt.reset(); m.attach_metric(None)
"""

import ctypes
import threading

import numpy as np

from ._lib import c_float_p, declare, lib
from ._lib import libc as _libc
from . import (_check, _locked, _ptr, _refuse_complex, _shape, ArgumentError, StateError, Status,
               _Closable)

__all__ = ["Metric", "sink_stats", "sink_metric"]

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
                 "qk_norm_product", "entropy", "window_importance", "window_sink"):
        protos["asink_metric_" + name] = (st, [_metric_p, c_float_p])
    declare(protos)


_declare()


class Metric(_Closable):
    """Owns one asink_metric handle: sink statistics accumulated over the passes of the model
    it is attached to (``model.attach_metric(mt)`` or ``mt.attach(model)``) until reset.

    ``Metric(eps=0.3)``: eps is the threshold of the Sink metric, in (0, 1).

    Forward passes (forward, loss, eval_loss) add sequences: ``dims()`` and ``stats()`` (the
    dict of :func:`sink_stats`). Decoding (``Cache.step``, ``Model.decode``,
    ``Model.generate``) adds one record per decode call: ``decode_steps`` counts them and
    ``sink_share()`` returns (steps, L, H) float32, the share of attention each layer and head
    put on the cache's sink slots (positions 0 .. n_sink-1 of the stream; for softmax the
    attention itself, otherwise the proxy-normalised map), averaged over the call's new
    positions and sequences.

    ``close()`` (or the end of a ``with`` block) detaches it from its model and frees it;
    later calls raise StateError."""

    def __init__(self, eps=0.3):
        self._lock = threading.RLock()
        self._ptr = _metric_p()
        if not isinstance(eps, (int, float, np.floating)) or not 0.0 < float(eps) < 1.0:
            raise ArgumentError("eps=%r must be a number in (0, 1)" % (eps,), Status.ERR_ARG)
        _check(lib.asink_metric_create(ctypes.byref(self._ptr), float(eps)), "asink_metric_create")
        self.eps = float(eps)

    def __del__(self):
        p = getattr(self, "_ptr", None)
        if p is not None and p.value:
            lib.asink_metric_free(p)
            self._ptr = _metric_p()

    @property
    def closed(self):
        return getattr(self, "_ptr", None) is None or not self._ptr.value

    @property
    def ptr(self):
        """The C handle (StateError once closed)."""
        p = getattr(self, "_ptr", None)
        if p is None or not p.value:
            raise StateError("the metric is closed", Status.ERR_STATE)
        return p

    @ptr.setter
    def ptr(self, value):
        self._ptr = value

    def close(self):
        """Detach from the model (if attached) and free the C metric now (idempotent); later
        calls raise StateError."""
        # the model's lock before this metric's, the order of every model call
        model = self._attached_to() if self._attached_to is not None else None
        if model is not None and model._metric is self and not model.closed:
            model.detach_metric()
        with self._lock:
            if not self.closed:
                self._close()

    def _close(self):
        p, self._ptr = self._ptr, _metric_p()
        lib.asink_metric_free(p)

    def __repr__(self):
        if self.closed:
            return "<attnsink.Metric (closed)>"
        n, layers, heads, T, _ = self.dims()
        return "<attnsink.Metric eps=%g sequences=%d layers=%d heads=%d T=%d decode_steps=%d>" % (
            self.eps, n, layers, heads, T, self.decode_steps)

    def attach(self, model):
        """Attach to model (the same as model.attach_metric(self))."""
        model.attach_metric(self)

    @_locked
    def reset(self):
        """Forget every accumulated sequence and decoding record (the attachment is kept)."""
        lib.asink_metric_reset(self.ptr)

    @_locked
    def dims(self):
        """[sequences, layers, heads, T, Tk] gathered so far (zeros before any)."""
        v = [ctypes.c_int() for _ in range(5)]
        lib.asink_metric_dims(self.ptr, *[ctypes.byref(x) for x in v])
        return [x.value for x in v]

    @_locked
    def read(self, name, shape):
        out = np.empty(shape, dtype=np.float32)
        _check(getattr(lib, "asink_metric_" + name)(self.ptr, _ptr(out)), "asink_metric_" + name)
        return out

    @_locked
    def stats(self):
        """The statistics of the forward passes so far, as the dict of :func:`sink_stats`.
        StateError before any."""
        N, L, H, T, Tk = self.dims()
        return {
            "importance": self.read("importance", (N, L, H, Tk)),
            "sink": self.read("sink", (Tk,)),
            "hidden_norm": self.read("hidden_norm", (L + 1, T)),
            "key_norm": self.read("key_norm", (L, T)),
            "value_norm": self.read("value_norm", (L, T)),
            "qk_cosine": self.read("qk_cosine", (L, H, T)),
            "qk_norm_product": self.read("qk_norm_product", (L, H, T)),
            "entropy": self.read("entropy", (L, H)),
        }

    @property
    @_locked
    def decode_steps(self):
        """Decode calls recorded since creation or the last reset (asink_metric_decode_steps)."""
        return int(lib.asink_metric_decode_steps(self.ptr))

    @_locked
    def sink_share(self):
        """(steps, L, H) float32 in [0, 1]: per recorded decode call, layer and head, the share
        of attention on the cache's sink slots (asink_metric_sink_share). StateError if no
        step was recorded."""
        steps = self.decode_steps
        if self._layers_heads is not None:
            L, H = self._layers_heads
        else:
            _, L, H, _, _ = self.dims()
        if steps > 0 and (L < 1 or H < 1):
            # the C API has no query for the record's (L, H): they come from attach_metric
            raise StateError("sink_share: the layer and head counts of the %d recorded steps are "
                             "unknown; attach the metric with Model.attach_metric" % steps,
                             Status.ERR_STATE)
        out = np.empty((max(steps, 0), max(L, 0), max(H, 0)), dtype=np.float32)
        _check(lib.asink_metric_sink_share(self.ptr, _ptr(out)), "asink_metric_sink_share")
        return out

    def window_importance(self):
        """(N, L, H) float32: per sequence, layer and head, the mean over queries of the share
        of the first key each query sees (key max(0, t - W + 1) under window=W; the first
        token's importance without a window). Needs a model's passes (StateError for supplied
        maps, or before any). docs/metrics.md, "Window-relative sink"."""
        N, L, H, _, _ = self.dims()
        return self.read("window_importance", (N, L, H))

    def window_sink(self):
        """Percent of (sequence, layer, head) triples whose window_importance is above eps."""
        return float(self.read("window_sink", (1,))[0])

    _layers_heads = None  # (L, H) of the model the metric was last attached to
    _attached_to = None   # weakref to the Model it is attached to (through attach_metric)


_Metric = Metric  # the name the tests of the fused statistics use


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
    with model._locks():  # the metric of this call is private; the model's is put back
        _check(lib.asink_model_attach_metric(model._h.ptr, mt.ptr), "asink_model_attach_metric")
        try:
            for i in range(0, tok.shape[0], batch):
                part = np.ascontiguousarray(tok[i:i + batch])
                _check(lib.asink_model_forward(model._h.ptr, part.shape[0], part.shape[1],
                                               part.ctypes.data_as(_c_int32_p), None),
                       "asink_model_forward")
        finally:
            # give the model back the metric the caller attached, if any
            prev = getattr(model, "_metric", None)
            lib.asink_model_attach_metric(model._h.ptr, prev.ptr if prev is not None else None)
    return mt.stats()


def sink_metric(maps, eps=0.3, normalized=True):
    """Importance and Sink_k^eps of attention maps (N, L, H, T, Tk) the caller computed
    (Tk = T, or T+1 with a virtual key in column 0). normalized=True: the maps are the
    attention itself (entries must be >= 0); False: each row is replaced by the proxy
    |A| / (sum |A| + 1e-8) first (docs/attention.md). Returns {'importance': (N, L, H, Tk),
    'sink': (Tk,) percent, 'entropy': (L, H)}."""
    _refuse_complex(maps, "maps")
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
