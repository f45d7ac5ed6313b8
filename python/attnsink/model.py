"""The decoder language model (docs/api.md, docs/formats.md) and its AdamW optimizer, over asink_model_* and
asink_adamw_*.

    m = attnsink.Model.load(path)                  # HF-style directory: config.json + model.safetensors
    m = attnsink.Model.create(config_dict, seed=0) # a new model, initialised from seed
    m = attnsink.Model.load(path, precision="bf16")  # bf16 mixed precision; m.precision
    m.config                                       # dict, the model's config.json
    m.parameters()                                 # dict HF name -> float32 ndarray (copies)
    m.set_parameter(name, array)                   # copies array into the model
    logits = m.forward(tokens)                     # int (B, T) -> float32 (B, T, V)
    loss = m.loss(tokens, targets)                 # float; targets -1 are ignored
    grads = m.backward()                           # dict HF name -> ndarray (copies)
    g = m.grad_block(); p = m.param_block()        # every gradient / parameter: one float32 view
    m.zero_grad(); m.save(path)

    logits = m.decode(tokens, cache="full")        # (B, T) fed one position at a time -> (B, T, V)
    out = m.generate(prompt, n_new, cache="sink", n_sink=4, window=256, temperature=0.0)
    with m.cache("sink", n_sink=4, window=256, batch=B) as c:
        logits = c.step(tokens)                    # (B, n) new tokens -> (B, n, V)
        logits = c.step_ragged(tokens, lengths)    # lengths[b] new tokens for sequence b
        c.fed(0), c.held(0), c.nbytes; c.reset()

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

import contextlib
import ctypes
import json
import operator
import os
import threading
import weakref
from collections.abc import Mapping

import numpy as np

from . import (ArgumentError, StateError, _Closable, _ClosedHandle, _Handle, _INT_MAX, _c_ints, _c_text, _check, _decode,
               _locked, _ptr, _refuse_complex, _shape, _view)
from ._lib import Status, lib

__all__ = ["Model", "AdamW", "Cache", "Sampler"]

_INT32_MIN = -(2**31)
_c_int32_p = ctypes.POINTER(ctypes.c_int32)


class _ModelHandle(_Handle):
    """Owns one asink_model pointer; freed when the last reference goes. Optimizer handles
    keep a reference to it, so a model is never freed before an optimizer that updates it."""

    __slots__ = ()

    def __init__(self):
        super().__init__(lib.asink_model_free)


class _CacheHandle(_Handle):
    """Owns one asink_cache pointer. A cache holds no pointer to its model's data, so it
    keeps no model alive (the Cache object keeps its Model for step())."""

    __slots__ = ()

    def __init__(self):
        super().__init__(lib.asink_cache_free)


class _SamplerHandle(_Handle):
    """Owns one asink_sampler pointer."""

    __slots__ = ()

    def __init__(self):
        super().__init__(lib.asink_sampler_free)


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


def _block_functions():
    """asink_model_grad_block, _param_block and _param_offset (library 1.1), typed on first use.
    A 1.0 library lacks them: OSError naming the function."""
    fns = getattr(_block_functions, "fns", None)
    if fns is None:
        out = ctypes.POINTER(ctypes.POINTER(ctypes.c_float)), ctypes.POINTER(ctypes.c_size_t)
        fns = {}
        for key, name, args in (("grad", "asink_model_grad_block", out),
                                ("param", "asink_model_param_block", out),
                                ("offset", "asink_model_param_offset",
                                 (ctypes.c_int, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)))):
            try:
                fn = getattr(lib, name)
            except AttributeError:
                raise OSError("the loaded libattnsink %s has no %s (added in 1.1)"
                              % (_decode(lib.asink_version()), name)) from None
            fn.restype = ctypes.c_int
            fn.argtypes = (ctypes.c_void_p,) + tuple(args)
            fns[key] = fn
        _block_functions.fns = fns
    return fns


def _model_options(weights, precision):
    """The options string of asink_model_load_opts / create_opts: weights=fp32|bf16 and
    precision=fp32|bf16 (the library checks the values and names a bad one)."""
    parts = []
    for key, value in (("weights", weights), ("precision", precision)):
        if not isinstance(value, str):
            raise TypeError("%s must be a str ('fp32' or 'bf16'), not %s" % (key, type(value).__name__))
        if "," in value or "\0" in value:
            raise ArgumentError("%s=%r is not 'fp32' or 'bf16'" % (key, value))
        parts.append("%s=%s" % (key, value))
    return ",".join(parts).encode("utf-8")


class Model(_Closable):
    """A decoder language model (llama, mistral, qwen2, gpt2, gpt_neox or opt family, with the
    study's variants).

    Create one with :meth:`Model.load` or :meth:`Model.create`, not with the constructor.
    ``close()`` (or the end of a ``with`` block) detaches its metric and drops the C model:
    freed at once unless an optimizer still updates it; later calls raise StateError.
    """

    def __init__(self, _handle=None):
        if not isinstance(_handle, _ModelHandle) or not _handle.ptr.value:
            raise TypeError("use attnsink.Model.load(path) or attnsink.Model.create(config)")
        self._lock = threading.RLock()
        self._h = _handle
        self._metric = None  # the attached Metric, kept alive while the C model points to it
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
    def load(cls, path, weights="fp32", precision="fp32"):
        """Load an HF-style directory (config.json + model.safetensors, or the shards listed by
        model.safetensors.index.json; F32/F16/BF16; families in docs/models.md).
        weights="bf16" keeps the weight matrices in bf16 (half the memory; inference only:
        forward, logits, metrics and decoding; training raises).
        precision="bf16" runs the linear layers' and the head's GEMMs, forward and backward, on
        operands rounded to bf16 with float32 sums, the master weights staying float32 (bf16
        mixed precision, docs/precision.md); saved checkpoints stay float32.
        A bad config, or a missing, extra or misshaped tensor: ValueError naming it;
        a directory or file that cannot be read: OSError."""
        p = _path(path, "model directory")
        h = _ModelHandle()
        _check(lib.asink_model_load_opts(ctypes.byref(h.ptr), p, _model_options(weights, precision)),
               "asink_model_load(%r)" % (path,))
        return cls(h)

    @classmethod
    def create(cls, config, seed=0, weights="fp32", precision="fp32"):
        """A new model from a config dict (the keys of config.json, with an optional
        "attnsink" object) or config.json text, initialised from seed (0 <= seed < 2**64).
        weights="bf16": the weight matrices kept in bf16, as in load(); precision="bf16": bf16
        mixed precision, as in load().
        A missing or bad key: ValueError naming the key."""
        option = _model_options(weights, precision)
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
        _check(lib.asink_model_create_opts(ctypes.byref(h.ptr), text.encode("utf-8"), seed, option),
               "asink_model_create")
        return cls(h)

    @contextlib.contextmanager
    def _locks(self):
        """The model's lock, then its attached metric's (a pass of the model writes into the
        metric). Its optimizer and caches take the same: they share the model's C state."""
        with self._lock:
            metric = self._metric
            if metric is None:
                yield
            else:
                with metric._lock:
                    yield

    def _close(self):
        if self._metric is not None:
            self.detach_metric()
        self._h = _ClosedHandle("model")

    def __repr__(self):
        if self.closed:
            return "<attnsink.Model (closed)>"
        d = self._dims
        return ("<attnsink.Model %s layers=%d hidden=%d heads=%d/%d vocab=%d params=%d>"
                % (self.config.get("model_type", "?"), d["n_layer"], d["hidden"], d["n_head"],
                   d["n_kv_head"], d["vocab"], len(self._shapes)))

    # -- description

    @property
    @_locked
    def weights(self):
        """How the model keeps its weight matrices: "fp32" or "bf16"."""
        return _decode(lib.asink_model_weights(self._h.ptr))

    @property
    def precision(self):
        """The precision of the model's GEMMs: "fp32", or "bf16" (mixed precision, chosen at
        load() or create())."""
        return _decode(lib.asink_model_precision(self._h.ptr))

    @property
    @_locked
    def config(self):
        """The model's config.json as a dict (canonical: every "attnsink" field spelled out).
        A fresh dict on every access."""
        return json.loads(_decode(lib.asink_model_config(self._h.ptr)))

    def _view(self, getter, name):
        return _view(self._h, getter, name, self._shapes[name])

    @_locked
    def parameters(self):
        """dict HF name -> float32 ndarray, copies of the parameters, in the library's order.
        Read through a read-only view (asink_model_param_read): with precision="bf16" the
        model keeps trusting its bf16 copies."""
        return {name: self._view(lib.asink_model_param_read, name).copy() for name in self._shapes}

    @_locked
    def set_parameter(self, name, array):
        """Copy array (any float dtype, the parameter's exact shape) into parameter `name`
        (asink_model_set_param: a parameter kept in bf16, weights="bf16", gets the values
        rounded to bf16; with precision="bf16" the copies are remade once, at the next pass).
        ValueError for an unknown name or a wrong shape."""
        if not isinstance(name, str):
            raise TypeError("parameter name must be a str, not %s" % type(name).__name__)
        if name not in self._shapes:
            known = list(self._shapes)
            shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
            raise ArgumentError("unknown parameter '%s' (the model has %d: %s)"
                                % (name, len(known), shown), Status.ERR_ARG)
        _refuse_complex(array, "parameter '%s'" % name)
        a = np.asarray(array, dtype=np.float32)
        want = self._shapes[name]
        if a.shape != want:
            raise ArgumentError("parameter '%s' has shape %s; got an array of shape %s"
                                % (name, _shape(want), _shape(a.shape)), Status.ERR_SHAPE)
        a = np.ascontiguousarray(a)
        _check(lib.asink_model_set_param(self._h.ptr, name.encode(), _ptr(a), a.size),
               "parameter '%s'" % name)

    # -- compute

    @_locked
    def forward(self, tokens):
        """Logits (B, T, vocab) float32 for int tokens (B, T). A token outside the vocabulary,
        or T beyond the learned positions: ValueError."""
        tok = _int32_grid(tokens, "tokens")
        B, T = tok.shape
        logits = np.empty((B, T, self._vocab), dtype=np.float32)
        _check(lib.asink_model_forward(self._h.ptr, B, T, tok.ctypes.data_as(_c_int32_p),
                                       _ptr(logits)), "asink_model_forward")
        return logits

    @_locked
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

    @_locked
    def backward(self):
        """Add the gradients of the last loss() to the model's gradients and return them all:
        dict HF name -> float32 ndarray (copies), shapes as parameters(). StateError (a
        ValueError) if there was no loss() since the last backward()."""
        _check(lib.asink_model_backward(self._h.ptr), "asink_model_backward")
        return self.grads()

    @_locked
    def grads(self):
        """dict HF name -> float32 ndarray: copies of the accumulated gradients."""
        return {name: self._view(lib.asink_model_grad, name).copy() for name in self._shapes}

    @_locked
    def zero_grad(self):
        """Zero every accumulated gradient."""
        lib.asink_model_zero_grad(self._h.ptr)

    # -- the parameter and gradient blocks (data-parallel training, docs/python.md)

    def _block(self, which):
        fn = _block_functions()[which]
        data, numel = ctypes.POINTER(ctypes.c_float)(), ctypes.c_size_t()
        _check(fn(self._h.ptr, ctypes.byref(data), ctypes.byref(numel)), fn.__name__)
        buf = (ctypes.c_float * numel.value).from_address(ctypes.cast(data, ctypes.c_void_p).value)
        buf._attnsink_handle = self._h  # keeps the model (and so this memory) alive
        return np.ctypeslib.as_array(buf)

    def grad_block(self):
        """Every gradient as one float32 ndarray (n,), a view of the model's own storage: writing
        it changes the gradients. Parameters follow each other in the order of parameters(),
        each row-major, with no gaps (block_offsets() says where each lies). Sum it over workers
        (torch.distributed.all_reduce, mpi4py's Allreduce) between backward() and the
        optimizer's step()."""
        return self._block("grad")

    def param_block(self):
        """Every parameter as one float32 ndarray (n,) viewing the model's storage, laid out as
        grad_block(): writing it changes the weights."""
        return self._block("param")

    def block_offsets(self):
        """dict HF name -> (offset, numel): where each parameter lies in grad_block() and
        param_block(), in the library's order."""
        fn = _block_functions()["offset"]
        out = {}
        for i, name in enumerate(self._shapes):
            off, n = ctypes.c_size_t(), ctypes.c_size_t()
            _check(fn(self._h.ptr, i, ctypes.byref(off), ctypes.byref(n)), "asink_model_param_offset")
            out[name] = (off.value, n.value)
        return out

    # -- decoding

    def _attn_options(self):
        """The options of the model's attention spec as a dict (key -> value text)."""
        spec = (self.config.get("attnsink") or {}).get("attn") or "softmax"
        opts = {}
        for part in spec.split(",")[1:]:
            if "=" in part:
                key, val = part.split("=", 1)
                opts[key.strip()] = val.strip()
        return opts

    def _prefix(self):
        """P of a prefix-LM spec (prefix=P), else 0."""
        try:
            return int(self._attn_options().get("prefix", "0"))
        except ValueError:
            return 0

    @property
    def max_positions(self):
        """The config's max_position_embeddings (llama) or n_positions (gpt2): the default
        max_len of a "full" cache, and the length limit of learned positions."""
        c = self.config
        for key in ("max_position_embeddings", "n_positions", "n_ctx"):
            if c.get(key):
                return int(c[key])
        raise ArgumentError("the model's config has no max_position_embeddings / n_positions")

    @property
    def vocab_size(self):
        """The vocabulary size (the last dimension of the logits)."""
        return self._vocab

    def cache(self, policy="sink", n_sink=4, window=256, batch=1, max_len=None, chunk=None):
        """A fresh key/value cache of this model for `batch` independent sequences
        (asink_cache_create; see :class:`Cache`).

        policy "full": every position up to max_len (default: the model's max_positions);
        "window": the `window` most recent positions; "sink": the first `n_sink` plus the
        `window` most recent (StreamingLLM; 1 <= n_sink < window). n_sink is also what the
        metric's sink share counts for a "full" cache. chunk: the tokens per sequence one
        decode call runs through the layers at once (default: the library's 128).

        A bad value (unknown policy, n_sink >= window, ...) raises ValueError naming it; a
        policy the model cannot decode consistently (window or sink with learned or sinusoidal
        positions, a prefix longer than the cache, a sink cache of a RoPE model with the MLP
        kernel) raises LibraryError (a RuntimeError)."""
        return Cache(self, policy, n_sink=n_sink, window=window, batch=batch, max_len=max_len,
                     chunk=chunk)

    @_locked
    def decode(self, tokens, cache="full", n_sink=4, window=256):
        """Logits of every step of incremental decoding: int tokens (B, T), fed as given (no BOS
        is added) one position at a time through a fresh cache of the policy `cache` ("full",
        "window" or "sink", with n_sink / window as in :meth:`cache`); returns float32
        (B, T, vocab), row t the logits after position t.

        For "full" the cache's max_len is T, and the logits equal forward(tokens)'s up to float
        rounding. With a sink-token model the sink token is position 0 of the stream, as in
        forward. Exception to one position at a time: a prefix-LM spec (prefix=P) feeds its
        first P positions in one call (the prefix attends to itself bidirectionally), then one
        at a time; T < P then raises StateError, since no call can hold the whole prefix.
        `cache` may also be a :class:`Cache` of this model with B sequences: it is reset first
        and left open."""
        tok = _int32_grid(tokens, "tokens")
        B, T = tok.shape
        own = not isinstance(cache, Cache)
        if own:
            full = isinstance(cache, str) and cache == "full"
            c = Cache(self, cache, n_sink=n_sink, window=window, batch=B,
                      max_len=T if full else None)
        else:
            c = cache
            if c.batch != B:
                raise ArgumentError("tokens has shape %s; the cache holds batch=%d sequences"
                                    % (_shape(tok.shape), c.batch), Status.ERR_SHAPE)
            c.reset()
        try:
            logits = np.empty((B, T, self._vocab), dtype=np.float32)
            P = self._prefix()
            t = 0
            if P > 0:
                t = min(P, T)
                logits[:, :t] = c.step(tok[:, :t])
            while t < T:
                logits[:, t:t + 1] = c.step(tok[:, t:t + 1])
                t += 1
            return logits
        finally:
            if own:
                c.close()

    @_locked
    def generate(self, prompt, n_new, cache="sink", n_sink=4, window=256, temperature=0.0,
                 top_k=0, seed=0, top_p=1.0, max_len=None):
        """Feed int prompt (B, T0) into a fresh cache, then sample n_new tokens per sequence
        (asink_model_generate); returns int32 (B, T0 + n_new): the prompt followed by them.

        cache: a policy name ("full", "window", "sink"; n_sink and window as in
        :meth:`cache`; a "full" cache gets max_len, default T0 + n_new) or a :class:`Cache` of
        this model with B sequences (it is reset first). Sampling: temperature 0 is greedy
        (the lowest id among equal maxima); otherwise softmax(logits / temperature) restricted
        to the top_k largest (0: all), then to the smallest set whose probability reaches
        top_p (1: all), drawn from a generator seeded with seed: the same seed gives the same
        tokens."""
        tok = _int32_grid(prompt, "prompt")
        B, T0 = tok.shape
        n_new = operator.index(n_new)
        if not 0 <= n_new <= _INT_MAX - T0:
            raise ArgumentError("n_new=%d must be in 0 .. %d" % (n_new, _INT_MAX - T0))
        own = not isinstance(cache, Cache)
        if own:
            full = isinstance(cache, str) and cache == "full"
            if max_len is None and full:
                max_len = T0 + n_new
            c = Cache(self, cache, n_sink=n_sink, window=window, batch=B, max_len=max_len)
        else:
            c = cache
            if c.batch != B:
                raise ArgumentError("prompt has shape %s; the cache holds batch=%d sequences"
                                    % (_shape(tok.shape), c.batch))
        try:
            smp = Sampler(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
            out = np.empty((B, T0 + n_new), dtype=np.int32)
            _check(lib.asink_model_generate(self._h.ptr, c._cptr(), smp._h.ptr, T0,
                                            tok.ctypes.data_as(_c_int32_p), n_new,
                                            out.ctypes.data_as(_c_int32_p)),
                   "asink_model_generate")
            smp.close()
            return out
        finally:
            if own:
                c.close()

    def attach_metric(self, metric):
        """Attach an :class:`attnsink.Metric` (asink_model_attach_metric): every forward, loss,
        eval_loss and decode of this model then adds to it; None detaches. The model keeps
        the metric alive while attached. ValueError if the metric holds statistics of a model
        with another layer or head count."""
        from .metric import Metric
        if metric is not None and not isinstance(metric, Metric):
            raise TypeError("attach_metric needs an attnsink.Metric or None, not %s"
                            % type(metric).__name__)
        if metric is not None:
            # taken from its model first, under that model's locks (never two models' at once)
            prev = metric._attached_to() if metric._attached_to is not None else None
            if prev is not None and prev is not self and prev._metric is metric and not prev.closed:
                prev.detach_metric()
        with self._locks(), (metric._lock if metric is not None else contextlib.nullcontext()):
            self._attach(metric)

    def _attach(self, metric):
        _check(lib.asink_model_attach_metric(self._h.ptr,
                                             metric.ptr if metric is not None else None),
               "asink_model_attach_metric")
        # a model holds one metric and a metric observes one model: the library detached
        # whatever this model and this metric were attached to before
        old = self._metric
        if old is not None and old is not metric:
            old._attached_to = None
        if metric is not None:
            prev = metric._attached_to() if metric._attached_to is not None else None
            if prev is not None and prev is not self:
                prev._metric = None
            metric._layers_heads = (self._dims["n_layer"], self._dims["n_head"])
            metric._attached_to = weakref.ref(self)
        self._metric = metric

    @_locked
    def detach_metric(self):
        """Detach the attached metric (if any) and return it."""
        metric = self._metric
        self.attach_metric(None)
        return metric

    @property
    def metric(self):
        """The attached Metric, or None."""
        return self._metric

    # -- files

    @_locked
    def save(self, path):
        """Write path/config.json and path/model.safetensors (F32), each atomically; creates
        the directory if needed. OSError if it cannot be written."""
        _check(lib.asink_model_save(self._h.ptr, _path(path, "model directory")),
               "asink_model_save(%r)" % (path,))


class AdamW(_Closable):
    """AdamW with decoupled weight decay (as torch.optim.AdamW) on 2-D ".weight" matrices and
    embeddings, global-norm gradient clipping (clip <= 0: off) and a learning-rate schedule.
    Keeps a reference to its model. ``close()`` (or ``with``) frees the C optimizer and lets
    the model go; later calls raise StateError."""

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
        self._model = model
        with model._locks():
            h = _OptHandle(model._h)
            _check(lib.asink_adamw_create(ctypes.byref(h.ptr), model._h.ptr, *values),
                   "asink_adamw_create")
        self._h = h

    def _locks(self):
        """The model's locks: a step writes the model's weights and gradients."""
        return self._model._locks() if getattr(self, "_model", None) is not None \
            else contextlib.nullcontext()

    def _close(self):
        h, self._h = self._h, _ClosedHandle("optimizer")
        h.close()

    def __repr__(self):
        if self._h is None:
            return "<attnsink.AdamW (not created)>"
        if self.closed:
            return "<attnsink.AdamW (closed)>"
        return "<attnsink.AdamW steps=%d lr=%g>" % (self.steps, self.lr)

    @property
    def model(self):
        """The model this optimizer updates."""
        return self._model

    @_locked
    def schedule(self, kind="constant", warmup=0, total_steps=0, min_lr=0.0):
        """Learning rate: linear warm-up over `warmup` steps, then "constant" or "cosine"
        (down to min_lr at total_steps)."""
        kind_c = _c_text(kind, "schedule kind")
        ints = _c_ints(warmup=warmup, total_steps=total_steps)
        _check(lib.asink_adamw_schedule(self._h.ptr, kind_c, ints[0], ints[1],
                                        float(min_lr)), "asink_adamw_schedule")

    @_locked
    def step(self):
        """Apply one update from the model's accumulated gradients (then zeroed); returns the
        global gradient norm before clipping."""
        norm = ctypes.c_float()
        _check(lib.asink_adamw_step(self._h.ptr, ctypes.byref(norm)), "asink_adamw_step")
        return float(norm.value)

    @property
    @_locked
    def steps(self):
        """Steps taken so far."""
        return int(lib.asink_adamw_steps(self._h.ptr))

    @property
    @_locked
    def lr(self):
        """The learning rate the next step will use."""
        return float(lib.asink_adamw_lr(self._h.ptr))

    @_locked
    def save(self, path):
        """Write path/optimizer.safetensors (moments; step and settings in its metadata),
        atomically."""
        _check(lib.asink_adamw_save(self._h.ptr, _path(path, "optimizer directory")),
               "asink_adamw_save(%r)" % (path,))

    @_locked
    def load(self, path):
        """Restore moments, step and settings from path/optimizer.safetensors. The file must
        belong to a model with the same parameters: ValueError naming a mismatch."""
        _check(lib.asink_adamw_load(self._h.ptr, _path(path, "optimizer directory")),
               "asink_adamw_load(%r)" % (path,))


_POLICIES = ("full", "window", "sink")


class Cache(_Closable):
    """A key/value cache for incremental decoding of `batch` independent sequences by one
    model (asink_cache_*). Create it with ``model.cache(...)`` (or ``Cache(model, ...)``).

    Per layer it keeps keys (after RoPE) and values of the positions its policy keeps:
    "full" every position up to max_len; "window" the `window` most recent; "sink" the first
    `n_sink` plus the `window` most recent. Inside the cache positions are ranks (the kept
    positions, oldest first, numbered 0, 1, ...): masks, ALiBi and relative biases see those
    numbers, RoPE keys keep their rotation and a sink cache re-rotates its sink keys so that
    their distance to the newest position is their rank distance (include/attnsink.h).

        logits = cache.step(tokens)                 # (B, n) -> (B, n, vocab) float32
        logits = cache.step_ragged(tokens, lengths) # (B, n_max), lengths (B,) -> (B, n_max, V)
        cache.fed(b), cache.held(b)                 # positions fed / held for sequence b
        cache.reset(); cache.nbytes; cache.close()  # or: with model.cache(...) as cache:

    A failed step (a token outside the vocabulary, a step past a full cache's max_len or a
    learned model's positions, a cache of another model) raises and leaves the cache as it
    was. The cache keeps its model alive; close() (or the end of a with block) frees the C
    cache at once, after which every call raises StateError."""

    def __init__(self, model, policy="sink", n_sink=4, window=256, batch=1, max_len=None,
                 chunk=None):
        self._h = None
        if not isinstance(model, Model):
            raise TypeError("Cache needs an attnsink.Model, not %s" % type(model).__name__)
        policy_c = _c_text(policy, "cache policy")
        policy = policy_c.decode("utf-8")
        if max_len is None:
            max_len = model.max_positions if policy == "full" else 0
        n_sink, window, batch, max_len = _c_ints(n_sink=n_sink, window=window, batch=batch,
                                                 max_len=max_len)
        self._model = model
        h = _CacheHandle()
        with model._locks():
            _check(lib.asink_cache_create(ctypes.byref(h.ptr), model._h.ptr, policy_c, batch,
                                          n_sink, window, max_len),
                   "asink_cache_create(policy=%r, batch=%d, n_sink=%d, window=%d, max_len=%d)"
                   % (policy, batch, n_sink, window, max_len))
        self._h = h
        self._policy = policy
        self._n_sink, self._window, self._batch, self._max_len = n_sink, window, batch, max_len
        self._chunk = None
        if chunk is not None:
            self.chunk = chunk

    # -- lifetime

    def _cptr(self):
        if self._h is None or not self._h.ptr.value:
            raise StateError("the cache (policy %r) is closed" % getattr(self, "_policy", "?"),
                             Status.ERR_STATE)
        return self._h.ptr

    def _locks(self):
        """The model's locks: decoding writes the cache, the model's pass state and metric."""
        return self._model._locks() if getattr(self, "_model", None) is not None \
            else contextlib.nullcontext()

    def _close(self):
        """Free the C cache now (close(): idempotent; later calls raise StateError)."""
        self._h.close()

    @property
    def closed(self):
        return self._h is None or not self._h.ptr.value

    def __repr__(self):
        if self.closed:
            return "<attnsink.Cache %r (closed)>" % getattr(self, "_policy", "?")
        extra = {"full": "max_len=%d" % self._max_len, "window": "window=%d" % self._window,
                 "sink": "n_sink=%d window=%d" % (self._n_sink, self._window)}
        return "<attnsink.Cache %r %s batch=%d fed=%s bytes=%d>" % (
            self._policy, extra.get(self._policy, ""), self._batch,
            list(self.fed()), self.nbytes)

    # -- description

    @property
    def model(self):
        """The model this cache belongs to."""
        return self._model

    @property
    def policy(self):
        return self._policy

    @property
    def n_sink(self):
        return self._n_sink

    @property
    def window(self):
        return self._window

    @property
    def max_len(self):
        """max_len of a "full" cache (0 for the other policies)."""
        return self._max_len

    @property
    @_locked
    def batch(self):
        """The number of sequences (asink_cache_batch)."""
        return int(lib.asink_cache_batch(self._cptr()))

    @property
    @_locked
    def nbytes(self):
        """Bytes of keys and values allocated now (asink_cache_bytes)."""
        return int(lib.asink_cache_bytes(self._cptr()))

    @property
    def chunk(self):
        """Tokens per sequence one decode call runs through the layers at once (None: the
        library's default, 128). Setting it calls asink_cache_set_chunk (1 .. 65536)."""
        return self._chunk

    @chunk.setter
    @_locked
    def chunk(self, k):
        (k,) = _c_ints(chunk=k)
        _check(lib.asink_cache_set_chunk(self._cptr(), k), "asink_cache_set_chunk(%d)" % k)
        self._chunk = k

    @_locked
    def _seq(self, fn, b, what):
        ptr = self._cptr()
        if b is None:
            return np.array([fn(ptr, i) for i in range(self._batch)], dtype=np.int64)
        b = operator.index(b)
        v = fn(ptr, b) if -_INT_MAX - 1 <= b <= _INT_MAX else -1
        if v < 0:
            raise ArgumentError("%s(%d): b=%d is not a sequence of this cache (0 .. %d)"
                                % (what, b, b, self._batch - 1), Status.ERR_ARG)
        return int(v)

    def fed(self, b=None):
        """Positions fed to sequence b so far (b None: an int64 array over the batch)."""
        return self._seq(lib.asink_cache_fed, b, "fed")

    def held(self, b=None):
        """Positions sequence b's cache holds now (b None: an int64 array over the batch)."""
        return self._seq(lib.asink_cache_held, b, "held")

    # -- compute

    @_locked
    def reset(self):
        """Empty every sequence (memory is kept for reuse)."""
        lib.asink_cache_reset(self._cptr())

    def _decoder(self, model):
        if model is None:
            return self._model
        if not isinstance(model, Model):
            raise TypeError("model must be an attnsink.Model, not %s" % type(model).__name__)
        return model

    def _tokens(self, tokens, label="tokens"):
        tok = _int32_grid(tokens, label)
        if tok.shape[0] != self._batch:
            raise ArgumentError("%s has shape %s; this cache holds batch=%d sequences"
                                % (label, _shape(tok.shape), self._batch), Status.ERR_SHAPE)
        return tok

    @_locked
    def step(self, tokens, logits=True, model=None):
        """Feed n new tokens (B, n) to every sequence (asink_model_decode); returns their logits
        (B, n, vocab) float32, or None with logits=False (prefill without the head).
        model: the model to decode with (default: the cache's; the library refuses a cache of
        another model with ValueError, leaving the cache as it was)."""
        m = self._decoder(model)
        tok = self._tokens(tokens)
        B, n = tok.shape
        out = np.empty((B, n, m._vocab), dtype=np.float32) if logits else None
        _check(lib.asink_model_decode(m._h.ptr, self._cptr(), n, tok.ctypes.data_as(_c_int32_p),
                                      _ptr(out)), "asink_model_decode")
        return out

    @_locked
    def step_ragged(self, tokens, lengths, logits=True, model=None):
        """Feed lengths[b] new tokens to sequence b (asink_model_decode_ragged): tokens
        (B, n_max) int (entries past a sequence's length are ignored), lengths (B,) ints in
        0 .. n_max; returns (B, n_max, vocab) float32 logits with the rows past a sequence's
        length set to 0 (or None with logits=False)."""
        m = self._decoder(model)
        tok = self._tokens(tokens)
        B, n_max = tok.shape
        ln = np.asarray(lengths)
        if ln.dtype.kind not in "iu":
            raise TypeError("lengths must hold integers, not %s" % ln.dtype)
        if ln.shape != (B,):
            raise ArgumentError("lengths has shape %s; expected (%d,), one per sequence"
                                % (_shape(ln.shape), B), Status.ERR_SHAPE)
        bad = np.flatnonzero((ln < 0) | (ln > n_max))
        if bad.size:
            i = int(bad[0])
            raise ArgumentError("lengths[%d] = %d is outside 0 .. n_max=%d"
                                % (i, int(ln[i]), n_max), Status.ERR_ARG)
        ln = np.ascontiguousarray(ln, dtype=np.intc)
        out = np.empty((B, n_max, m._vocab), dtype=np.float32) if logits else None
        _check(lib.asink_model_decode_ragged(m._h.ptr, self._cptr(),
                                             ln.ctypes.data_as(ctypes.POINTER(ctypes.c_int)),
                                             n_max, tok.ctypes.data_as(_c_int32_p), _ptr(out)),
               "asink_model_decode_ragged")
        return out


class Sampler(_Closable):
    """Picks tokens from logits (asink_sampler_*): temperature 0 is greedy (the lowest id
    among equal maxima); otherwise softmax(logits / temperature) restricted to the top_k
    largest (0: all), then to the smallest set whose probability reaches top_p (1: all),
    drawn from a xoshiro256** generator seeded with seed. ``close()`` (or ``with``) frees it;
    later picks raise StateError."""

    def __init__(self, temperature=0.0, top_k=0, top_p=1.0, seed=0):
        self._h = None
        try:
            temperature, top_p = float(temperature), float(top_p)
        except (TypeError, ValueError):
            raise TypeError("temperature and top_p must be numbers, not %r, %r"
                            % (temperature, top_p)) from None
        (top_k,) = _c_ints(top_k=top_k)
        seed = operator.index(seed)
        if not 0 <= seed < 2**64:
            raise ArgumentError("seed=%d must be in 0 .. 2**64-1" % seed)
        self._lock = threading.RLock()
        h = _SamplerHandle()
        _check(lib.asink_sampler_create(ctypes.byref(h.ptr), temperature, top_k, top_p, seed),
               "asink_sampler_create(temperature=%g, top_k=%d, top_p=%g)"
               % (temperature, top_k, top_p))
        self._h = h
        self.temperature, self.top_k, self.top_p, self.seed = temperature, top_k, top_p, seed

    def _close(self):
        h, self._h = self._h, _ClosedHandle("sampler")
        h.close()

    @_locked
    def pick(self, logits):
        """A token id for logits (V,) (an int), or int32 ids of shape (...) for logits
        (..., V), rows taken in C order."""
        _refuse_complex(logits, "logits")
        a = np.ascontiguousarray(logits, dtype=np.float32)
        if a.ndim < 1 or a.shape[-1] < 1:
            raise ArgumentError("logits has shape %s; expected (..., vocab)" % _shape(a.shape))
        if self.closed or not self._h.ptr.value:
            raise StateError("the sampler is closed", None)
        V = a.shape[-1]
        rows = a.reshape(-1, V)
        out = np.empty(rows.shape[0], dtype=np.int32)
        tok = ctypes.c_int32()
        for i in range(rows.shape[0]):
            _check(lib.asink_sampler_pick(self._h.ptr, _ptr(rows[i]), V, ctypes.byref(tok)),
                   "asink_sampler_pick")
            out[i] = tok.value
        return int(out[0]) if a.ndim == 1 else out.reshape(a.shape[:-1])
