"""The decoder language model (DESIGN §6) and its AdamW optimizer, over asink_model_* and
asink_adamw_*.

    m = attnsink.Model.load(path)                  # HF-style directory: config.json + model.safetensors
    m = attnsink.Model.create(config_dict, seed=0) # a new model, initialised from seed
    m.config                                       # dict, the model's config.json
    m.parameters()                                 # dict HF name -> float32 ndarray (copies)
    m.set_parameter(name, array)                   # copies array into the model
    logits = m.forward(tokens)                     # int (B, T) -> float32 (B, T, V)
    loss = m.loss(tokens, targets)                 # float; targets -1 are ignored
    grads = m.backward()                           # dict HF name -> ndarray (copies)
    m.zero_grad(); m.save(path)

    opt = attnsink.AdamW(m, lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, clip=1.0)
    opt.schedule("cosine", warmup=100, total_steps=10000, min_lr=0.0)
    norm = opt.step()                              # gradient norm before clipping
    opt.steps, opt.lr; opt.save(path); opt.load(path)

Gradients accumulate in the model until zeroed: ``backward()`` adds the gradients of the last
``loss()`` to them and returns the accumulated values; ``opt.step()`` applies them and zeroes
them; ``zero_grad()`` zeroes them by hand.

Errors follow the rest of the package: bad arguments, shapes, token ids, configs and tensors
raise ValueError (ArgumentError or FormatError) with the library's message, which names the
key, token or tensor; a directory that cannot be read or written raises OSError (FileError);
a call out of order (backward without loss) StateError.
"""

import ctypes
import json
import operator
import os
from collections.abc import Mapping

import numpy as np

from . import ArgumentError, _Handle, _INT_MAX, _c_ints, _c_text, _check, _decode, _ptr, _shape, _view
from ._lib import Status, lib

__all__ = ["Model", "AdamW"]

_INT32_MIN = -(2**31)
_c_int32_p = ctypes.POINTER(ctypes.c_int32)


class _ModelHandle(_Handle):
    """Owns one asink_model pointer; freed when the last reference goes. Optimizer handles
    keep a reference to it, so a model is never freed before an optimizer that updates it."""

    __slots__ = ()

    def __init__(self):
        super().__init__(lib.asink_model_free)


class _OptHandle(_Handle):
    """Owns one asink_adamw pointer and keeps the model handle it updates alive."""

    __slots__ = ()

    def __init__(self, model_handle):
        super().__init__(lib.asink_adamw_free, keep=model_handle)


def _path(path, what):
    """A path argument as bytes for the C library (str, bytes or os.PathLike)."""
    try:
        p = os.fsencode(os.fspath(path))
    except TypeError:
        raise TypeError("%s must be a path (str, bytes or os.PathLike), not %s"
                        % (what, type(path).__name__)) from None
    if b"\0" in p:
        raise ArgumentError("%s %r contains a NUL character" % (what, path))
    if not p:
        raise ArgumentError("%s is empty" % what)
    return p


def _int32_grid(x, label):
    """x as an int32 C-contiguous 2-D array (B, T), checking its shape and range."""
    a = np.asarray(x)
    if a.ndim != 2:
        raise ArgumentError("%s must be 2-D (B, T), got shape %s" % (label, _shape(a.shape)))
    B, T = a.shape
    if B < 1 or T < 1:
        raise ArgumentError("%s has shape %s: B and T must be at least 1" % (label, _shape(a.shape)))
    if a.dtype.kind not in "iu":
        raise TypeError("%s must hold integers, not %s" % (label, a.dtype))
    if B > _INT_MAX or T > _INT_MAX or B * T > _INT_MAX:
        raise ArgumentError("%s has shape %s: too large for the library" % (label, _shape(a.shape)))
    if a.dtype.itemsize > 4 or (a.dtype.kind == "u" and a.dtype.itemsize == 4):
        lo, hi = int(a.min()), int(a.max())
        if lo < _INT32_MIN or hi > _INT_MAX:
            bad = lo if lo < _INT32_MIN else hi
            where = tuple(int(i) for i in np.argwhere(a == bad)[0])
            raise ArgumentError("%s[%d, %d] = %d is outside the 32-bit integer range"
                                % ((label,) + where + (bad,)))
    return np.ascontiguousarray(a, dtype=np.int32)


class Model:
    """A decoder language model (llama or gpt2 family with the study's variants).

    Create one with :meth:`Model.load` or :meth:`Model.create`, not with the constructor.
    """

    def __init__(self, _handle=None):
        if not isinstance(_handle, _ModelHandle) or not _handle.ptr.value:
            raise TypeError("use attnsink.Model.load(path) or attnsink.Model.create(config)")
        self._h = _handle
        n_layer, n_head, n_kv, head_dim, hidden, vocab = (ctypes.c_int() for _ in range(6))
        lib.asink_model_dims(_handle.ptr, ctypes.byref(n_layer), ctypes.byref(n_head),
                             ctypes.byref(n_kv), ctypes.byref(head_dim), ctypes.byref(hidden),
                             ctypes.byref(vocab))
        self._vocab = vocab.value
        self._dims = {"n_layer": n_layer.value, "n_head": n_head.value,
                      "n_kv_head": n_kv.value, "head_dim": head_dim.value,
                      "hidden": hidden.value, "vocab": vocab.value}
        self._shapes = {}  # name -> shape, in the library's order
        for i in range(lib.asink_model_param_count(_handle.ptr)):
            name = ctypes.c_char_p()
            ndim = ctypes.c_int()
            shape = (ctypes.c_int64 * 4)()
            _check(lib.asink_model_param_info(_handle.ptr, i, ctypes.byref(name),
                                              ctypes.byref(ndim), shape),
                   "asink_model_param_info")
            self._shapes[_decode(name.value)] = tuple(int(shape[d]) for d in range(ndim.value))

    # -- construction

    @classmethod
    def load(cls, path):
        """Load an HF-style directory (config.json + model.safetensors, F32/F16/BF16).
        A bad config, or a missing, extra or misshaped tensor: ValueError naming it;
        a directory or file that cannot be read: OSError."""
        p = _path(path, "model directory")
        h = _ModelHandle()
        _check(lib.asink_model_load(ctypes.byref(h.ptr), p), "asink_model_load(%r)" % (path,))
        return cls(h)

    @classmethod
    def create(cls, config, seed=0):
        """A new model from a config dict (the keys of config.json, with an optional
        "attnsink" object) or config.json text, initialised from seed (0 <= seed < 2**64).
        A missing or bad key: ValueError naming the key."""
        if isinstance(config, Mapping):
            text = json.dumps(dict(config))
        elif isinstance(config, (str, bytes)):
            text = config.decode("utf-8") if isinstance(config, bytes) else config
        else:
            raise TypeError("config must be a dict or JSON text, not %s" % type(config).__name__)
        if "\0" in text:
            raise ArgumentError("config contains a NUL character")
        seed = operator.index(seed)
        if not 0 <= seed < 2**64:
            raise ArgumentError("seed=%d must be in 0 .. 2**64-1" % seed)
        h = _ModelHandle()
        _check(lib.asink_model_create(ctypes.byref(h.ptr), text.encode("utf-8"), seed),
               "asink_model_create")
        return cls(h)

    def __repr__(self):
        d = self._dims
        return ("<attnsink.Model %s layers=%d hidden=%d heads=%d/%d vocab=%d params=%d>"
                % (self.config.get("model_type", "?"), d["n_layer"], d["hidden"], d["n_head"],
                   d["n_kv_head"], d["vocab"], len(self._shapes)))

    # -- description

    @property
    def config(self):
        """The model's config.json as a dict (canonical: every "attnsink" field spelled out).
        A fresh dict on every access."""
        return json.loads(_decode(lib.asink_model_config(self._h.ptr)))

    def _view(self, getter, name):
        return _view(self._h, getter, name, self._shapes[name])

    def parameters(self):
        """dict HF name -> float32 ndarray, copies of the parameters, in the library's order."""
        return {name: self._view(lib.asink_model_param, name).copy() for name in self._shapes}

    def set_parameter(self, name, array):
        """Copy array (any float dtype, the parameter's exact shape) into parameter `name`.
        ValueError for an unknown name or a wrong shape."""
        if not isinstance(name, str):
            raise TypeError("parameter name must be a str, not %s" % type(name).__name__)
        if name not in self._shapes:
            known = list(self._shapes)
            shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
            raise ArgumentError("unknown parameter '%s' (the model has %d: %s)"
                                % (name, len(known), shown), Status.ERR_ARG)
        a = np.asarray(array, dtype=np.float32)
        want = self._shapes[name]
        if a.shape != want:
            raise ArgumentError("parameter '%s' has shape %s; got an array of shape %s"
                                % (name, _shape(want), _shape(a.shape)), Status.ERR_SHAPE)
        self._view(lib.asink_model_param, name)[...] = a

    # -- compute

    def forward(self, tokens):
        """Logits (B, T, vocab) float32 for int tokens (B, T). A token outside the vocabulary,
        or T beyond the learned positions: ValueError."""
        tok = _int32_grid(tokens, "tokens")
        B, T = tok.shape
        logits = np.empty((B, T, self._vocab), dtype=np.float32)
        _check(lib.asink_model_forward(self._h.ptr, B, T, tok.ctypes.data_as(_c_int32_p),
                                       _ptr(logits)), "asink_model_forward")
        return logits

    def _loss(self, fn, tokens, targets):
        tok = _int32_grid(tokens, "tokens")
        tgt = _int32_grid(targets, "targets")
        if tgt.shape != tok.shape:
            raise ArgumentError("targets have shape %s; expected %s, the shape of tokens"
                                % (_shape(tgt.shape), _shape(tok.shape)))
        B, T = tok.shape
        out = ctypes.c_float()
        _check(fn(self._h.ptr, B, T, tok.ctypes.data_as(_c_int32_p),
                  tgt.ctypes.data_as(_c_int32_p), ctypes.byref(out)), fn.__name__)
        return float(out.value)

    def loss(self, tokens, targets):
        """Mean cross-entropy (a float) of targets (B, T) given tokens (B, T); targets < 0 are
        ignored. Keeps what backward() needs."""
        return self._loss(lib.asink_model_loss, tokens, targets)

    def eval_loss(self, tokens, targets):
        """The same loss without keeping anything for backward (evaluation)."""
        return self._loss(lib.asink_model_eval_loss, tokens, targets)

    def backward(self):
        """Add the gradients of the last loss() to the model's gradients and return them all:
        dict HF name -> float32 ndarray (copies), shapes as parameters(). StateError (a
        ValueError) if there was no loss() since the last backward()."""
        _check(lib.asink_model_backward(self._h.ptr), "asink_model_backward")
        return self.grads()

    def grads(self):
        """dict HF name -> float32 ndarray: copies of the accumulated gradients."""
        return {name: self._view(lib.asink_model_grad, name).copy() for name in self._shapes}

    def zero_grad(self):
        """Zero every accumulated gradient."""
        lib.asink_model_zero_grad(self._h.ptr)

    # -- files

    def save(self, path):
        """Write path/config.json and path/model.safetensors (F32), each atomically; creates
        the directory if needed. OSError if it cannot be written."""
        _check(lib.asink_model_save(self._h.ptr, _path(path, "model directory")),
               "asink_model_save(%r)" % (path,))


class AdamW:
    """AdamW with decoupled weight decay (as torch.optim.AdamW) on 2-D ".weight" matrices and
    embeddings, global-norm gradient clipping (clip <= 0: off) and a learning-rate schedule.
    Keeps a reference to its model."""

    def __init__(self, model, lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, clip=1.0):
        self._h = None
        if not isinstance(model, Model):
            raise TypeError("AdamW needs an attnsink.Model, not %s" % type(model).__name__)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ArgumentError("betas must be a pair (beta1, beta2), got %r" % (betas,)) from None
        values = []
        for label, x in (("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps),
                         ("weight_decay", weight_decay), ("clip", clip)):
            try:
                values.append(float(x))
            except (TypeError, ValueError):
                raise TypeError("%s must be a number, not %r" % (label, x)) from None
        h = _OptHandle(model._h)
        _check(lib.asink_adamw_create(ctypes.byref(h.ptr), model._h.ptr, *values),
               "asink_adamw_create")
        self._h = h
        self._model = model

    def __repr__(self):
        if self._h is None:
            return "<attnsink.AdamW (not created)>"
        return "<attnsink.AdamW steps=%d lr=%g>" % (self.steps, self.lr)

    @property
    def model(self):
        """The model this optimizer updates."""
        return self._model

    def schedule(self, kind="constant", warmup=0, total_steps=0, min_lr=0.0):
        """Learning rate: linear warm-up over `warmup` steps, then "constant" or "cosine"
        (down to min_lr at total_steps)."""
        kind_c = _c_text(kind, "schedule kind")
        ints = _c_ints(warmup=warmup, total_steps=total_steps)
        _check(lib.asink_adamw_schedule(self._h.ptr, kind_c, ints[0], ints[1],
                                        float(min_lr)), "asink_adamw_schedule")

    def step(self):
        """Apply one update from the model's accumulated gradients (then zeroed); returns the
        global gradient norm before clipping."""
        norm = ctypes.c_float()
        _check(lib.asink_adamw_step(self._h.ptr, ctypes.byref(norm)), "asink_adamw_step")
        return float(norm.value)

    @property
    def steps(self):
        """Steps taken so far."""
        return int(lib.asink_adamw_steps(self._h.ptr))

    @property
    def lr(self):
        """The learning rate the next step will use."""
        return float(lib.asink_adamw_lr(self._h.ptr))

    def save(self, path):
        """Write path/optimizer.safetensors (moments; step and settings in its metadata),
        atomically."""
        _check(lib.asink_adamw_save(self._h.ptr, _path(path, "optimizer directory")),
               "asink_adamw_save(%r)" % (path,))

    def load(self, path):
        """Restore moments, step and settings from path/optimizer.safetensors. The file must
        belong to a model with the same parameters: ValueError naming a mismatch."""
        _check(lib.asink_adamw_load(self._h.ptr, _path(path, "optimizer directory")),
               "asink_adamw_load(%r)" % (path,))
