"""attnsink: a pure-ctypes binding of libattnsink (numpy arrays in and out).

The attention operation of docs/attention.md, selected by a spec string::

    import attnsink
    op = attnsink.Attention("softmax,kbias=head,vbias=head", n_head=8, n_kv_head=2, head_dim=64)
    op.params["k_bias"][:] = ...            # views of the op's own parameter memory
    out = op.forward(q, k, v, importance=True)   # q (B,T,H,D), k and v (B,T,Hkv,D)
    op.importance                           # (B, H, Tk), Tk = T (+1 with kbias)
    dq, dk, dv = op.backward(dout)          # gradients of sum(out * dout)
    op.grads                                # parameter gradients of that backward
    out = op.forward_at(q, k, v, q_pos, k_pos)  # Tq queries, Tk keys at absolute positions

The shared library is found through ``ATTNSINK_LIB`` (a path to the .so), then the library
installed beside the package, then the project's ``build/`` directory, then the system (see
``attnsink._lib`` and docs/python.md). PyTorch users: ``attnsink.torch`` (an nn.Module with
autograd, and SinkProbe for sink metrics of any torch model's maps).

Every handle class (Attention, Model, AdamW, Cache, Metric, Sampler) has ``close()`` and is
a context manager; any call after ``close()`` raises :class:`StateError`.

Threads: each handle has a lock, so one object may be shared by Python threads: calls on it
take turns (the library runs each call on its own threads). A model's optimizer and caches
share the model's lock, and a model's calls also hold its attached metric's. Separate
handles run in parallel (the binding releases the GIL inside every C call).

The decoder language model (docs/api.md) and its optimizer (see ``attnsink.model``)::

    m = attnsink.Model.load("ckpt/")        # or attnsink.Model.create(config_dict, seed=0)
    loss = m.loss(tokens, targets)          # int (B, T) each; targets -1 are ignored
    grads = m.backward()                    # dict HF name -> ndarray
    opt = attnsink.AdamW(m, 1e-3)
    opt.step()                              # returns the gradient norm before clipping
    m.save("ckpt/"); opt.save("ckpt/")

Incremental decoding with a key/value cache (see ``attnsink.model.Cache``)::

    logits = m.decode(tokens, cache="full")            # (B, T) one position at a time -> (B, T, V)
    out = m.generate(prompt, 32, cache="sink", n_sink=4, window=256, temperature=0.7, seed=1)
    with m.cache("window", window=256, batch=B) as c:  # or "full" (max_len=), "sink" (n_sink=)
        logits = c.step(tokens)                        # (B, n) -> (B, n, V)
    out = op.forward_at(q, k, v, q_pos, k_pos)          # attention at given absolute positions
    mt = attnsink.Metric(); m.attach_metric(mt)        # mt.sink_share() after decode calls

Errors: a bad spec, bad sizes or bad shapes raise ``ValueError`` (precisely
:class:`ArgumentError`, a subclass) whose message is the library's
``asink_last_error()`` or names the offending shapes; a malformed file or config
(ASINK_ERR_FORMAT) raises :class:`FormatError`, also a ``ValueError``; a call out of order
(``backward`` before ``forward``) raises :class:`StateError` (both a ``ValueError`` and a
``RuntimeError``); a file that cannot be read or written (ASINK_ERR_IO) raises
:class:`FileError`, an ``OSError``; an allocation failure ``MemoryError``; NaN or infinity
in a loss or a gradient (ASINK_ERR_NONFINITE) :class:`NonFiniteError`, a
``FloatingPointError``; anything else ``RuntimeError``. Complex arrays are refused with
``TypeError`` (converting them to float32 would drop the imaginary part).
"""

import contextlib
import ctypes
import functools
import operator
import threading

import numpy as np

from ._lib import Status, c_float_p, lib, lib_path

__all__ = [
    "Attention", "Model", "AdamW", "Cache", "Sampler", "Metric", "AttnsinkError",
    "ArgumentError", "FormatError", "StateError", "FileError", "OutOfMemory", "LibraryError",
    "NonFiniteError",
    "version", "version_number", "runtime_info", "simd_level", "init",
    "set_num_threads", "get_num_threads", "lib_path", "sink_stats", "sink_metric",
    "Tokenizer",
]

_INT_MAX = 2**31 - 1


# ----------------------------------------------------------------------------- errors

class AttnsinkError(Exception):
    """Base class of the errors the binding raises. ``status`` holds the C status code
    (an ``asink_status`` value) or None for checks made in Python."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class ArgumentError(AttnsinkError, ValueError):
    """A bad spec, bad sizes or bad shapes (ASINK_ERR_ARG, ASINK_ERR_SPEC, ASINK_ERR_SHAPE)."""


class FormatError(AttnsinkError, ValueError):
    """A malformed file or config: bad config.json keys, missing, extra or misshaped tensors
    (ASINK_ERR_FORMAT). The message names the key or the tensor."""


class StateError(AttnsinkError, ValueError, RuntimeError):
    """A call out of order, such as backward before forward (ASINK_ERR_STATE)."""


class OutOfMemory(AttnsinkError, MemoryError):
    """The library could not allocate (ASINK_ERR_NOMEM)."""


class FileError(AttnsinkError, OSError):
    """A file or directory that could not be read or written (ASINK_ERR_IO)."""


class LibraryError(AttnsinkError, RuntimeError):
    """Any other library failure (an unsupported request, an unexpected status)."""


class NonFiniteError(AttnsinkError, FloatingPointError):
    """NaN or infinity in a loss or a gradient (ASINK_ERR_NONFINITE). The message names the
    tensor; an optimizer step that raises it changed nothing."""


_ERROR_CLASS = {
    Status.ERR_ARG: ArgumentError,
    Status.ERR_SPEC: ArgumentError,
    Status.ERR_SHAPE: ArgumentError,
    Status.ERR_FORMAT: FormatError,
    Status.ERR_STATE: StateError,
    Status.ERR_IO: FileError,
    Status.ERR_NOMEM: OutOfMemory,
    Status.ERR_NONFINITE: NonFiniteError,
}


def _decode(b):
    return b.decode("utf-8", "replace") if b is not None else ""


def _check(status, what):
    """Raise the exception matching a non-zero asink_status, carrying asink_last_error()."""
    if status == Status.OK:
        return
    msg = _decode(lib.asink_last_error())
    if not msg:
        msg = "%s failed: %s" % (what, _decode(lib.asink_status_string(status)))
    raise _ERROR_CLASS.get(status, LibraryError)(msg, status)


def _shape(a):
    return "(" + ", ".join(str(n) for n in a) + ")" if len(a) != 1 else "(%d,)" % a[0]


def _refuse_complex(x, label):
    """TypeError if x is complex: converting it to float32 would silently drop the
    imaginary part."""
    dtype = getattr(x, "dtype", None)
    if getattr(dtype, "kind", None) == "c" or (dtype is None and np.iscomplexobj(x)):
        raise TypeError("%s is complex (%s); the library computes on real numbers: pass "
                        "x.real or abs(x) explicitly"
                        % (label, dtype if dtype is not None else "complex values"))


def _f32(x, label="array"):
    """x as a float32 C-contiguous ndarray (copying only when needed). Like
    np.ascontiguousarray(x, dtype=np.float32) but a scalar stays 0-d, so that shape errors
    report the shape the caller passed. TypeError naming `label` for complex input."""
    _refuse_complex(x, label)
    return np.asarray(x, dtype=np.float32, order="C")


def _ptr(a):
    return a.ctypes.data_as(c_float_p) if a is not None else None


def _ptr64(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)) if a is not None else None


def _positions(pos, n, label):
    """None, or pos as an int64 C-contiguous 1-D array of length n (TypeError for a
    non-integer array, ArgumentError naming the shape otherwise). Whether the positions
    increase is the library's check."""
    if pos is None:
        return None
    a = np.asarray(pos)
    if a.dtype.kind not in "iu":
        raise TypeError("%s must hold integers, not %s" % (label, a.dtype))
    if a.shape != (n,):
        raise ArgumentError("%s has shape %s; expected (%d,), one position per %s"
                            % (label, _shape(a.shape), n,
                               "query" if label.startswith("q") else "key"))
    if a.dtype == np.uint64 and n and int(a.max()) > 2**63 - 1:
        raise ArgumentError("%s holds %d, outside the 64-bit integer range"
                            % (label, int(a.max())))
    return np.ascontiguousarray(a, dtype=np.int64)


def _c_text(value, what):
    """A str (or UTF-8 bytes) argument as bytes for the C library; TypeError for other
    types, ArgumentError naming it if it holds a NUL (C would silently cut it there)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        raise TypeError("%s must be a str, not %s" % (what, type(value).__name__))
    if "\0" in value:
        raise ArgumentError("%s %r contains a NUL character" % (what, value))
    return value.encode("utf-8")


def _c_ints(**values):
    """Integer arguments checked against C int's range, in the order given."""
    out = []
    for label, n in values.items():
        n = operator.index(n)
        if not -_INT_MAX - 1 <= n <= _INT_MAX:
            raise ArgumentError("%s=%d is out of range" % (label, n))
        out.append(n)
    return out


# ---------------------------------------------------------------------------- runtime

def version():
    """The version string of the loaded library, "MAJOR.MINOR.PATCH"."""
    return _decode(lib.asink_version())


def version_number():
    """The loaded library's version as MAJOR*10000 + MINOR*100 + PATCH."""
    return lib.asink_version_number()


def init():
    """Initialise the runtime now (SIMD level, GEMM driver). Every other entry point does
    this lazily; raises if ASINK_SIMD names an unknown level or one this CPU lacks, or
    ASINK_GEMM or BLIS_ARCH_TYPE a bad value."""
    _check(lib.asink_init(), "asink_init")


def runtime_info():
    """One line describing the runtime: version, simd=, gemm= (the GEMM micro-kernel, or
    blis), blis= (BLIS's own kernel set and how it was chosen), threads=."""
    return _decode(lib.asink_runtime_info())


def simd_level():
    """The SIMD level in use: "scalar", "avx2" or "avx512"."""
    return _decode(lib.asink_simd_level())


def set_num_threads(n):
    """Set the number of threads of the library's parallel regions (1 <= n <= 1024);
    ValueError otherwise."""
    n = operator.index(n)
    if not -_INT_MAX - 1 <= n <= _INT_MAX:
        raise ArgumentError("set_num_threads(%d): out of range (1 .. 1024)" % n)
    _check(lib.asink_set_num_threads(n), "asink_set_num_threads")


def get_num_threads():
    """The number of threads the library uses."""
    return lib.asink_get_num_threads()


# ----------------------------------------------------------------------- attention op

class _Handle:
    """Owns one C handle pointer and frees it with ``free`` when the last reference goes;
    ``keep`` is another handle that must outlive this one (an optimizer's model).

    The parameter arrays of ``Attention.params`` keep a reference to this object (through
    the ctypes buffer they view), so the C memory they view stays valid as long as any of
    them is alive, even after the Attention object itself has gone."""

    __slots__ = ("ptr", "_free", "keep", "__weakref__")

    def __init__(self, free=None, keep=None):
        self.ptr = ctypes.c_void_p()
        # kept on the object so that __del__ works during interpreter shutdown
        self._free = free if free is not None else lib.asink_attn_free
        self.keep = keep

    def close(self):
        """Free the C object now (idempotent); the pointer becomes NULL."""
        ptr = getattr(self, "ptr", None)
        free = getattr(self, "_free", None)
        if ptr is not None and ptr.value and free is not None:
            try:
                free(ptr)
            except Exception:  # interpreter shutdown: nothing sensible left to do
                pass
            self.ptr = ctypes.c_void_p()
        self.keep = None  # only now may what it keeps go

    def __del__(self):
        self.close()


class _ClosedHandle:
    """Stands in for the handle of a closed object: any use of ``.ptr`` raises StateError."""

    __slots__ = ("what",)

    def __init__(self, what):
        self.what = what

    @property
    def ptr(self):
        raise StateError("the %s is closed" % self.what, Status.ERR_STATE)

    def close(self):
        pass


def _locked(method):
    """Runs `method` holding its object's locks (``_locks()``): two Python threads calling
    one handle take turns instead of racing inside the C library (which releases the GIL)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._locks():
            return method(self, *args, **kwargs)
    return run


class _Closable:
    """close() and the context-manager protocol of every handle class: ``with X(...) as x:``
    closes x at the end of the block. ``_close()`` does the class's own work.

    ``_lock`` (a re-entrant lock, set by each class's __init__) guards the C handle: every
    method that calls the library holds it (``@_locked``), close() too, so a handle is never
    freed while another thread is inside a call on it."""

    _lock = None

    def _locks(self):
        """A context holding what a call on this object must hold: its lock."""
        return self._lock if self._lock is not None else contextlib.nullcontext()

    def close(self):
        """Release the C object now (idempotent); later calls raise StateError."""
        with self._locks():
            if not self.closed:
                self._close()

    @property
    def closed(self):
        h = getattr(self, "_h", None)
        return h is None or isinstance(h, _ClosedHandle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _view(handle, getter, name, shape):
    """A float32 ndarray of the given shape viewing the op's storage for `name`."""
    data = c_float_p()
    numel = ctypes.c_size_t()
    _check(getter(handle.ptr, name.encode(), ctypes.byref(data), ctypes.byref(numel)),
           "parameter '%s'" % name)
    want = int(np.prod(shape, dtype=np.int64))
    if numel.value != want or not data:
        raise LibraryError("parameter '%s': library gave %d elements at %s, shape %s needs %d"
                           % (name, numel.value, hex(ctypes.cast(data, ctypes.c_void_p).value or 0),
                              _shape(shape), want))
    buf = (ctypes.c_float * want).from_address(ctypes.cast(data, ctypes.c_void_p).value)
    buf._attnsink_handle = handle  # keeps the op (and so this memory) alive
    return np.ctypeslib.as_array(buf).reshape(shape)


def _attn_param_shapes(h):
    """[(name, shape)] of an op's learnable parameters, in the library's order."""
    out = []
    for i in range(lib.asink_attn_param_count(h.ptr)):
        name = ctypes.c_char_p()
        ndim = ctypes.c_int()
        shape = (ctypes.c_int64 * 2)()
        _check(lib.asink_attn_param_info(h.ptr, i, ctypes.byref(name), ctypes.byref(ndim), shape),
               "asink_attn_param_info")
        out.append((_decode(name.value), tuple(int(shape[d]) for d in range(ndim.value))))
    return out


class Attention(_Closable):
    """An attention operation selected by a spec string (docs/attention.md).

    ``Attention(spec, n_head, n_kv_head, head_dim)``: spec is ``base[,key=value...]`` with base
    softmax, sigmoid, elu, linear or elu-kernel; n_head must be a multiple of n_kv_head (GQA,
    MQA). A bad spec or bad sizes raise ValueError with the library's message.

    Attributes:
      params      dict name -> float32 ndarray viewing the op's own parameter memory (writing
                  into it changes the op): 'k_bias', 'v_bias' (n, head_dim) and 'sinks'
                  (n_head,) as the spec has them; {} for a plain op. They start at zero.
      importance  (B, H, Tk) float32 importance of the last forward(..., importance=True),
                  else None. Tk = key_count(T).
      grads       dict name -> ndarray, copies of the parameter gradients of the last backward.
      spec        the canonical spec string (every option spelled out).

    ``close()`` (or the end of a ``with`` block) drops the op: its C memory is freed at once
    unless arrays of ``params`` are still alive (they keep it until they go); later calls
    raise StateError.
    """

    def __init__(self, spec, n_head, n_kv_head, head_dim):
        self._h = None  # so that a failure below leaves a well-defined object
        self._lock = threading.RLock()
        self._params = {}
        self._grads = {}
        self._importance = None
        self._saved = None
        spec_c = _c_text(spec, "spec")
        spec = spec_c.decode("utf-8")
        sizes = _c_ints(n_head=n_head, n_kv_head=n_kv_head, head_dim=head_dim)
        h = _Handle()
        _check(lib.asink_attn_create(ctypes.byref(h.ptr), spec_c, *sizes),
               "asink_attn_create(%r, %d, %d, %d)" % ((spec,) + tuple(sizes)))
        self._h = h
        self.n_head, self.n_kv_head, self.head_dim = sizes
        self._param_shapes = dict(_attn_param_shapes(h))
        for pname, pshape in self._param_shapes.items():
            self._params[pname] = _view(h, lib.asink_attn_param, pname, pshape)

    def __del__(self):
        # The C handle is freed by _Handle once neither this object nor any params view
        # refers to it; dropping our reference is all that is needed here. getattr guards
        # against an object whose __init__ failed before setting _h.
        if getattr(self, "_h", None) is not None:
            self._h = None

    def _close(self):
        self._h = _ClosedHandle("attention op")
        self._params = {}
        self._saved = None

    def __repr__(self):
        if getattr(self, "_h", None) is None:
            return "<attnsink.Attention (not created)>"
        if self.closed:
            return "<attnsink.Attention (closed)>"
        return "<attnsink.Attention %r n_head=%d n_kv_head=%d head_dim=%d>" % (
            self.spec, self.n_head, self.n_kv_head, self.head_dim)

    # -- properties

    @property
    @_locked
    def spec(self):
        """The spec in canonical form (every option spelled out), from asink_attn_spec."""
        return _decode(lib.asink_attn_spec(self._h.ptr))

    @property
    def params(self):
        """dict name -> float32 ndarray viewing the op's parameters (writable)."""
        return self._params

    @property
    def grads(self):
        """dict name -> ndarray: the parameter gradients of the last backward (copies)."""
        return self._grads

    @property
    def importance(self):
        """(B, H, Tk) float32 importance of the last forward with importance=True, else None."""
        return self._importance

    @_locked
    def key_count(self, T):
        """Number of key columns of the maps for T tokens: T, or T+1 with kbias."""
        return lib.asink_attn_key_count(self._h.ptr, operator.index(T))

    # -- compute

    @_locked
    def forward(self, q, k, v, importance=False):
        """out = attention(q, k, v): q (B,T,H,D), k and v (B,T,Hkv,D) -> new float32
        C-contiguous (B,T,H,D). With importance=True, op.importance receives (B,H,Tk).
        C-contiguous float32 arrays are passed to the library as they are (no copy); anything
        else is converted once. backward reads q, k, v and out where they are, as the C API
        does: leave them unchanged until backward has run (it combines them with statistics
        of this forward). A failed forward leaves no forward to differentiate."""
        self._saved = None
        self._importance = None
        q, k, v = _f32(q, "q"), _f32(k, "k"), _f32(v, "v")
        H, Hkv, D = self.n_head, self.n_kv_head, self.head_dim
        if q.ndim != 4:
            raise ArgumentError("q must be 4-D (B, T, H=%d, D=%d), got shape %s"
                                % (H, D, _shape(q.shape)))
        B, T = q.shape[0], q.shape[1]
        if q.shape[2:] != (H, D):
            raise ArgumentError("q has shape %s; expected (B, T, %d, %d) for n_head=%d, "
                                "head_dim=%d" % (_shape(q.shape), H, D, H, D))
        want = (B, T, Hkv, D)
        for label, x in (("k", k), ("v", v)):
            if x.shape != want:
                raise ArgumentError("%s has shape %s; expected %s to match q %s with n_kv_head=%d"
                                    % (label, _shape(x.shape), _shape(want), _shape(q.shape), Hkv))
        if B < 1 or T < 1:
            raise ArgumentError("q has shape %s: B and T must be at least 1" % _shape(q.shape))
        if B > _INT_MAX or T > _INT_MAX:
            raise ArgumentError("q has shape %s: B and T must fit in a C int" % _shape(q.shape))
        out = np.empty((B, T, H, D), dtype=np.float32)
        imp = None
        if importance:
            tk = self.key_count(T)
            imp = np.empty((B, H, tk), dtype=np.float32)
        _check(lib.asink_attn_forward(self._h.ptr, B, T, _ptr(q), _ptr(k), _ptr(v), _ptr(out),
                                      _ptr(imp)), "asink_attn_forward")
        self._saved = (q, k, v, out)
        self._importance = imp
        return out

    @_locked
    def forward_at(self, q, k, v, q_pos=None, k_pos=None, importance=False):
        """Tq queries against Tk keys at given absolute positions (a key/value cache, a chunk
        of a long sequence): q (B,Tq,H,D), k and v (B,Tk,Hkv,D) -> new float32 (B,Tq,H,D).

        q_pos (Tq,) and k_pos (Tk,) are 1-D integer arrays of absolute positions (0 .. 2**31-1),
        each strictly increasing and shared by the batch; every mask, ALiBi slope and relative
        bias of the spec is computed on them (docs/attention.md). k_pos None: keys at
        0 .. Tk-1; q_pos None: queries at Tk-Tq .. Tk-1 (with k_pos None too, the newest Tq of
        the keys; needs Tq <= Tk). Give q_pos explicitly when k_pos has gaps.
        importance=True: op.importance receives (B, H, key_count(Tk)), each key's column sum
        divided by the number of queries at or after its position.

        Positions that do not increase, or a query that sees no key, raise ValueError
        (ArgumentError) with the library's message. backward() differentiates this call like
        a forward: it returns (dq, dk, dv) with the shapes of q, k, v."""
        self._saved = None
        self._importance = None
        q, k, v = _f32(q, "q"), _f32(k, "k"), _f32(v, "v")
        H, Hkv, D = self.n_head, self.n_kv_head, self.head_dim
        if q.ndim != 4:
            raise ArgumentError("q must be 4-D (B, Tq, H=%d, D=%d), got shape %s"
                                % (H, D, _shape(q.shape)))
        B, Tq = q.shape[0], q.shape[1]
        if q.shape[2:] != (H, D):
            raise ArgumentError("q has shape %s; expected (B, Tq, %d, %d) for n_head=%d, "
                                "head_dim=%d" % (_shape(q.shape), H, D, H, D))
        if k.ndim != 4 or k.shape[0] != B or k.shape[2:] != (Hkv, D):
            raise ArgumentError("k has shape %s; expected (%d, Tk, %d, %d) to match q %s with "
                                "n_kv_head=%d" % (_shape(k.shape), B, Hkv, D, _shape(q.shape),
                                                  Hkv))
        Tk = k.shape[1]
        if v.shape != k.shape:
            raise ArgumentError("v has shape %s; expected %s, the shape of k"
                                % (_shape(v.shape), _shape(k.shape)))
        if B < 1 or Tq < 1 or Tk < 1:
            raise ArgumentError("q has shape %s and k %s: B, Tq and Tk must be at least 1"
                                % (_shape(q.shape), _shape(k.shape)))
        if B > _INT_MAX or Tq > _INT_MAX or Tk > _INT_MAX:
            raise ArgumentError("q has shape %s and k %s: sizes must fit in a C int"
                                % (_shape(q.shape), _shape(k.shape)))
        qp = _positions(q_pos, Tq, "q_pos")
        kp = _positions(k_pos, Tk, "k_pos")
        if qp is None and kp is None and Tq > Tk:
            raise ArgumentError("q_pos not given: the queries are the newest Tq=%d of the Tk=%d "
                                "keys, so Tq <= Tk is needed" % (Tq, Tk))
        out = np.empty((B, Tq, H, D), dtype=np.float32)
        imp = None
        if importance:
            imp = np.empty((B, H, self.key_count(Tk)), dtype=np.float32)
        _check(lib.asink_attn_forward_at(self._h.ptr, B, Tq, Tk, _ptr64(qp), _ptr64(kp),
                                         _ptr(q), _ptr(k), _ptr(v), _ptr(out), _ptr(imp)),
               "asink_attn_forward_at")
        self._saved = (q, k, v, out)
        self._importance = imp
        return out

    @_locked
    def backward(self, dout):
        """Gradients of sum(out * dout) for the last forward: returns (dq, dk, dv) with the
        shapes of q, k, v, and fills op.grads with the parameter gradients of this call
        (they are zeroed first). dout must have the shape of out."""
        if self._saved is None:
            raise StateError("backward() called before forward(): op %s has no forward to "
                             "differentiate" % self.spec, Status.ERR_STATE)
        q, k, v, out = self._saved
        dout = _f32(dout, "dout")
        if dout.shape != out.shape:
            raise ArgumentError("dout has shape %s; expected %s, the shape of out"
                                % (_shape(dout.shape), _shape(out.shape)))
        dq = np.empty_like(q)
        dk = np.empty_like(k)
        dv = np.empty_like(v)
        lib.asink_attn_zero_grad(self._h.ptr)
        _check(lib.asink_attn_backward(self._h.ptr, q.shape[0], q.shape[1], k.shape[1], _ptr(q),
                                       _ptr(k), _ptr(v), _ptr(out), _ptr(dout), _ptr(dq),
                                       _ptr(dk), _ptr(dv)),
               "asink_attn_backward")
        self._grads = {name: _view(self._h, lib.asink_attn_grad, name, shape).copy()
                       for name, shape in self._param_shapes.items()}
        return dq, dk, dv


# The model and its optimizer live in their own module; it uses the helpers above.
from .model import AdamW, Cache, Model, Sampler  # noqa: E402
from .metric import Metric, sink_metric, sink_stats  # noqa: E402
from .tokenizer import Tokenizer  # noqa: E402

Model.sink_stats = lambda self, tokens, eps=0.3, batch=16: sink_stats(self, tokens, eps, batch)
Model.sink_stats.__doc__ = sink_stats.__doc__
