"""PyTorch front end of libattnsink: the attention op as an ``nn.Module`` with autograd, its
functional form, and sink metrics of any PyTorch model's attention maps.

Importing this module imports torch (``import attnsink`` alone does not)::

    from attnsink.torch import Attention, attention, SinkProbe
    att = Attention("softmax,kbias=head,vbias=head", n_head=8, n_kv_head=2, head_dim=64)
    out = att(q, k, v)                        # q (B,T,H,D), k/v (B,T,Hkv,D) float32 CPU tensors
    out, imp = att(q, k, v, importance=True)  # imp (B,H,Tk), no gradient
    out = attention(q, k, v, spec="softmax")  # functional form, no parameters
    out.sum().backward()                      # gradients to q, k, v and att's parameters

    probe = SinkProbe(model)                  # hooks the modules that return attention maps
    model(x)                                  # or probe.add_maps(layer, maps) by hand
    probe.stats()                             # the dict of attnsink.sink_stats

Copies: float32, C-contiguous CPU tensors go to the library by pointer, in both directions
(out, dq, dk, dv are allocated by torch and written by the library). Any other dtype or
layout is converted once by ``Tensor.to(torch.float32).contiguous()`` *outside* the autograd
function, so autograd carries the gradient back to the original dtype. The parameters
(k_bias, v_bias, sinks, relative_bias: a few hundred floats) are copied into the C op before
each forward and their gradients copied out after each backward.

Forward state: each call takes its own C op from a small pool (a new one when the pool is
empty) and the autograd graph holds it until that call's backward, which gives it back; so
any number of forwards may be differentiated in any order, a second backward through a
retained graph recomputes its forward, and a module has no C state of its own: it pickles,
deep-copies and ``state_dict``-round-trips like any torch module. Parameter gradients
accumulate into ``.grad`` as torch does (the C op's gradient buffers are zeroed before each
backward and copied out after it).
"""

import ctypes
import operator
import weakref

import numpy as np
import torch
from torch import nn

from . import (ArgumentError, Metric, StateError, Status, _Handle, _attn_param_shapes, _c_ints,
               _c_text, _check, _decode, _INT_MAX, _refuse_complex, _shape)
from ._lib import c_float_p, lib

__all__ = ["Attention", "attention", "SinkProbe"]


# ------------------------------------------------------------------------------ op info

class _OpInfo:
    """What a module needs to know about its op, as plain Python values (picklable): the
    canonical spec, the sizes, the parameters' names and shapes, whether keys get a virtual
    column. Built once per (spec, sizes) from a probe op."""

    __slots__ = ("spec", "n_head", "n_kv_head", "head_dim", "params", "virtual")

    def __init__(self, spec, n_head, n_kv_head, head_dim):
        spec_c = _c_text(spec, "spec")
        sizes = _c_ints(n_head=n_head, n_kv_head=n_kv_head, head_dim=head_dim)
        h = _new_handle(spec_c, *sizes)
        self.spec = _decode(lib.asink_attn_spec(h.ptr))
        self.n_head, self.n_kv_head, self.head_dim = sizes
        self.params = tuple(_attn_param_shapes(h))
        self.virtual = lib.asink_attn_key_count(h.ptr, 1) - 1
        h.close()

    def __getstate__(self):
        return {s: getattr(self, s) for s in self.__slots__}

    def __setstate__(self, state):
        for s, v in state.items():
            setattr(self, s, v)

    def new_op(self):
        return _new_handle(self.spec.encode("utf-8"), self.n_head, self.n_kv_head, self.head_dim)


_INFO_CACHE = {}


def _info(spec, n_head, n_kv_head, head_dim):
    key = (spec, n_head, n_kv_head, head_dim)
    info = _INFO_CACHE.get(key) if isinstance(spec, str) else None
    if info is None:
        info = _OpInfo(spec, n_head, n_kv_head, head_dim)
        if isinstance(spec, str) and len(_INFO_CACHE) < 256:
            _INFO_CACHE[key] = info
    return info


def _new_handle(spec_c, n_head, n_kv_head, head_dim):
    h = _Handle()
    _check(lib.asink_attn_create(ctypes.byref(h.ptr), spec_c, n_head, n_kv_head, head_dim),
           "asink_attn_create(%r, %d, %d, %d)" % (spec_c.decode("utf-8", "replace"), n_head,
                                                  n_kv_head, head_dim))
    return h


def _fptr(t):
    return ctypes.cast(t.data_ptr(), c_float_p) if t is not None else None


def _storage(h, getter, name, numel):
    """(address, numel) of the op's storage for parameter or gradient `name`."""
    data = c_float_p()
    n = ctypes.c_size_t()
    _check(getter(h.ptr, name.encode(), ctypes.byref(data), ctypes.byref(n)), "parameter '%s'" % name)
    if n.value != numel:
        raise ArgumentError("parameter '%s': the library has %d elements, expected %d"
                            % (name, n.value, numel))
    return ctypes.cast(data, ctypes.c_void_p).value


# ---------------------------------------------------------------------- autograd function

_POOL = {}       # (spec, n_head, n_kv_head, head_dim) -> free C ops of that kind
_POOL_MAX = 8    # free ops kept per kind


def _acquire(info):
    free = _POOL.get((info.spec, info.n_head, info.n_kv_head, info.head_dim))
    if free:
        try:
            return free.pop()
        except IndexError:  # another thread took the last one
            pass
    return info.new_op()


def _release(info, h):
    free = _POOL.setdefault((info.spec, info.n_head, info.n_kv_head, info.head_dim), [])
    if len(free) < _POOL_MAX:
        free.append(h)
    else:
        h.close()


def _run_forward(h, info, q, k, v, params, imp):
    for (name, shape), p in zip(info.params, params):
        numel = int(np.prod(shape, dtype=np.int64))
        ctypes.memmove(_storage(h, lib.asink_attn_param, name, numel), p.data_ptr(), numel * 4)
    B, T = q.shape[0], q.shape[1]
    out = torch.empty((B, T, info.n_head, info.head_dim), dtype=torch.float32)
    _check(lib.asink_attn_forward(h.ptr, B, T, _fptr(q), _fptr(k), _fptr(v), _fptr(out),
                                  _fptr(imp)), "asink_attn_forward")
    return out


class _AttentionFunction(torch.autograd.Function):
    """out (, importance) = attention(q, k, v; params) on float32 C-contiguous CPU tensors.

    The C op of a call holds the row statistics of its forward until its backward; then it
    goes back to a small pool for later calls (a reused op keeps its workspaces, which saves
    their allocation and first touch). A second backward through the same graph
    (retain_graph=True) recomputes the forward into a fresh op first."""

    @staticmethod
    def forward(ctx, info, want_imp, needs_grad, q, k, v, *params):
        h = _acquire(info)
        imp = None
        if want_imp:
            imp = torch.empty((q.shape[0], info.n_head, q.shape[1] + info.virtual),
                              dtype=torch.float32)
        try:
            out = _run_forward(h, info, q, k, v, params, imp)
        except BaseException:
            _release(info, h)
            raise
        ctx.info = info
        if needs_grad:
            ctx.op = h
            ctx.save_for_backward(q, k, v, out, *params)
        else:
            ctx.op = None
            _release(info, h)
        if imp is not None:
            ctx.mark_non_differentiable(imp)
            return out, imp
        return out

    @staticmethod
    def backward(ctx, dout, *unused):
        q, k, v, out, *params = ctx.saved_tensors
        info = ctx.info
        h, ctx.op = ctx.op, None
        if h is None:  # a second backward: this call's op went back to the pool
            h = _acquire(info)
            try:
                out = _run_forward(h, info, q, k, v, params, None)
            except BaseException:
                _release(info, h)
                raise
        try:
            dout = dout.to(torch.float32).contiguous()
            dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
            lib.asink_attn_zero_grad(h.ptr)
            _check(lib.asink_attn_backward(h.ptr, q.shape[0], q.shape[1], k.shape[1], _fptr(q),
                                           _fptr(k), _fptr(v), _fptr(out), _fptr(dout),
                                           _fptr(dq), _fptr(dk), _fptr(dv)),
                   "asink_attn_backward")
            grads = []
            for name, shape in info.params:
                numel = int(np.prod(shape, dtype=np.int64))
                g = torch.empty(shape, dtype=torch.float32)
                ctypes.memmove(g.data_ptr(), _storage(h, lib.asink_attn_grad, name, numel),
                               numel * 4)
                grads.append(g)
        finally:
            _release(info, h)
        return (None, None, None, dq, dk, dv) + tuple(grads)


def _as_input(x, label):
    if not isinstance(x, torch.Tensor):
        raise TypeError("%s must be a torch.Tensor, not %s" % (label, type(x).__name__))
    if x.device.type != "cpu":
        raise ArgumentError("%s is on %s; libattnsink computes on the CPU (move it with .cpu())"
                            % (label, x.device))
    if x.dtype != torch.float32:
        if not x.is_floating_point():
            raise TypeError("%s must be a floating-point tensor, not %s" % (label, x.dtype))
        x = x.to(torch.float32)
    return x.contiguous()


def _apply(info, q, k, v, params, importance):
    q, k, v = _as_input(q, "q"), _as_input(k, "k"), _as_input(v, "v")
    H, Hkv, D = info.n_head, info.n_kv_head, info.head_dim
    if q.dim() != 4:
        raise ArgumentError("q must be 4-D (B, T, H=%d, D=%d), got shape %s"
                            % (H, D, _shape(tuple(q.shape))))
    B, T = q.shape[0], q.shape[1]
    if tuple(q.shape[2:]) != (H, D):
        raise ArgumentError("q has shape %s; expected (B, T, %d, %d) for n_head=%d, head_dim=%d"
                            % (_shape(tuple(q.shape)), H, D, H, D))
    want = (B, T, Hkv, D)
    for label, x in (("k", k), ("v", v)):
        if tuple(x.shape) != want:
            raise ArgumentError("%s has shape %s; expected %s to match q %s with n_kv_head=%d"
                                % (label, _shape(tuple(x.shape)), _shape(want),
                                   _shape(tuple(q.shape)), Hkv))
    if B < 1 or T < 1 or B > _INT_MAX or T > _INT_MAX:
        raise ArgumentError("q has shape %s: B and T must be in 1 .. 2**31-1"
                            % _shape(tuple(q.shape)))
    ps = []
    for (name, shape), p in zip(info.params, params):
        p = _as_input(p, name)
        if tuple(p.shape) != shape:
            raise ArgumentError("parameter %s has shape %s; expected %s"
                                % (name, _shape(tuple(p.shape)), _shape(shape)))
        ps.append(p)
    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in [q, k, v] + ps)
    return _AttentionFunction.apply(info, bool(importance), needs_grad, q, k, v, *ps)


# ------------------------------------------------------------------------------ public API

def attention(q, k, v, spec="softmax", importance=False, params=None):
    """Functional attention: q (B,T,H,D), k and v (B,T,Hkv,D) tensors -> out (B,T,H,D)
    float32 (and (B,H,Tk) importance with importance=True, without gradient). n_head,
    n_kv_head and head_dim come from the shapes. A spec with learnable parameters takes them
    from ``params`` (dict name -> tensor, differentiable); missing ones are zero."""
    if q.dim() != 4 or k.dim() != 4:
        raise ArgumentError("q and k must be 4-D: q (B,T,H,D), k (B,T,Hkv,D); got %s and %s"
                            % (_shape(tuple(q.shape)), _shape(tuple(k.shape))))
    info = _info(spec, q.shape[2], k.shape[2], q.shape[3])
    params = dict(params or {})
    unknown = set(params) - {n for n, _ in info.params}
    if unknown:
        raise ArgumentError("spec %r has no parameter %s" % (info.spec, ", ".join(sorted(unknown))))
    vals = [params[n] if n in params else torch.zeros(s, dtype=torch.float32)
            for n, s in info.params]
    return _apply(info, q, k, v, vals, importance)


class Attention(nn.Module):
    """The attention op of docs/attention.md as a torch module.

    ``Attention(spec, n_head, n_kv_head, head_dim)``; its learnable parameters (k_bias,
    v_bias, sinks, relative_bias, as the spec has them) are ``nn.Parameter`` attributes of
    those names, starting at zero like the C op's. ``att(q, k, v, importance=False)``:
    q (B,T,H,D), k and v (B,T,Hkv,D) CPU tensors -> out (B,T,H,D) float32, or
    (out, importance (B,H,Tk)) with importance=True (no gradient through importance)."""

    def __init__(self, spec, n_head, n_kv_head, head_dim):
        super().__init__()
        self._info = _info(spec, n_head, n_kv_head, head_dim)
        self.n_head, self.n_kv_head, self.head_dim = (self._info.n_head, self._info.n_kv_head,
                                                      self._info.head_dim)
        for name, shape in self._info.params:
            self.register_parameter(name, nn.Parameter(torch.zeros(shape, dtype=torch.float32)))

    @property
    def spec(self):
        """The canonical spec (every option spelled out)."""
        return self._info.spec

    def key_count(self, T):
        """Key columns of the maps for T tokens: T, or T+1 with kbias."""
        return operator.index(T) + self._info.virtual

    def forward(self, q, k, v, importance=False):
        params = [getattr(self, name) for name, _ in self._info.params]
        return _apply(self._info, q, k, v, params, importance)

    def extra_repr(self):
        return "%r, n_head=%d, n_kv_head=%d, head_dim=%d" % (self.spec, self.n_head,
                                                              self.n_kv_head, self.head_dim)


# ---------------------------------------------------------------------------- sink probe

def _default_maps(module, inputs, output):
    """The attention maps in a module's output, or None: the first 4-D tensor (N, H, T, Tk)
    after the first element of a tuple output with Tk in (T, T+1); a 3-D (N, T, Tk) one (as
    nn.MultiheadAttention's head-averaged weights) counts as one head."""
    if not isinstance(output, (tuple, list)):
        return None
    for x in output[1:]:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            if x.dim() == 3:
                x = x.unsqueeze(1)
            if x.dim() == 4 and x.shape[3] in (x.shape[2], x.shape[2] + 1):
                return x
    return None


def _attention_modules(model):
    """nn.MultiheadAttention modules and modules whose class name ends in 'Attention'
    (HF's LlamaAttention, GPT2Attention, ...), outermost only, in registration order;
    attnsink.torch.Attention (which returns no maps) is skipped."""
    found = []
    inside = set()
    for name, m in model.named_modules():
        if any(name.startswith(p + ".") for p in inside):
            continue
        if isinstance(m, Attention):
            continue
        if isinstance(m, nn.MultiheadAttention) or type(m).__name__.endswith("Attention"):
            found.append(m)
            inside.add(name)
    return found


class SinkProbe:
    """Sink statistics (docs/attention.md, docs/api.md) of a PyTorch model's attention maps, through the library's
    metric (asink_metric_add_maps).

    ``SinkProbe(model=None, modules=None, eps=0.3, normalized=True, maps=None, n_layer=None)``

    - With a model: forward hooks on ``modules`` (default: its nn.MultiheadAttention modules
      and modules whose class name ends in 'Attention', outermost only) take the maps from
      each module's output (``maps(module, inputs, output)``, default: the first (N,H,T,Tk)
      tensor after output[0] of a tuple; (N,T,Tk) counts as one head). Module i is layer i;
      each forward pass of the model adds its N sequences once every layer has reported.
      The module must return its maps (nn.MultiheadAttention: need_weights=True, and
      average_attn_weights=False for per-head maps; HF: output_attentions=True).
    - Without hooks: ``probe.add_maps(layer, maps)`` with maps (N, H, T, Tk) (tensor or
      array) for layer 0, 1, ..., n_layer-1 in turn, or ``probe.add_maps(maps_list)`` with
      all layers at once (HF's ``outputs.attentions``).

    normalized=True: maps are the attention itself (entries >= 0); False: the proxy
    |A| / (sum |A| + 1e-8) is taken per row first. ``stats(eps=None)`` returns the dict of
    :func:`attnsink.sink_stats`; the statistics only a model's own pass can gather
    (hidden_norm, key_norm, value_norm, qk_cosine, qk_norm_product) are None. ``close()``
    removes the hooks and frees the metric (also at the end of a ``with`` block)."""

    def __init__(self, model=None, modules=None, eps=0.3, normalized=True, maps=None,
                 n_layer=None):
        self._metric = Metric(eps)
        self.eps = float(eps)
        self.normalized = bool(normalized)
        self._extract = maps if maps is not None else _default_maps
        self._hooks = []
        self._pending = {}
        if modules is None and model is not None:
            modules = _attention_modules(model)
        modules = list(modules or [])
        self.n_layer = len(modules) if modules else (operator.index(n_layer) if n_layer else None)
        for i, m in enumerate(modules):
            self._hooks.append(m.register_forward_hook(self._hook(i)))

    def _hook(self, layer):
        ref = weakref.ref(self)

        def hook(module, inputs, output):
            probe = ref()
            if probe is None:
                return
            maps = probe._extract(module, inputs, output)
            if maps is None:
                raise ArgumentError("SinkProbe: module %s (layer %d) returned no attention maps "
                                    "(need_weights / output_attentions?)"
                                    % (type(module).__name__, layer))
            probe.add_maps(layer, maps)
        return hook

    def add_maps(self, layer, maps=None):
        """Add one layer's maps (N, H, T, Tk), or with one argument a sequence of every
        layer's maps. Layers may arrive in any order within a pass; the pass's sequences are
        added when all n_layer layers are there."""
        if maps is None:
            all_maps = list(layer)
            if self.n_layer is None:
                self.n_layer = len(all_maps)
            for i, m in enumerate(all_maps):
                self.add_maps(i, m)
            return
        if self.n_layer is None:
            raise ArgumentError("SinkProbe: n_layer is unknown; give n_layer= or a model")
        layer = operator.index(layer)
        if not 0 <= layer < self.n_layer:
            raise ArgumentError("layer=%d is outside [0, n_layer=%d)" % (layer, self.n_layer))
        if isinstance(maps, torch.Tensor):
            if maps.is_complex():
                raise TypeError("maps is complex (%s); the library computes on real numbers: "
                                "pass maps.real or maps.abs() explicitly" % maps.dtype)
            a = maps.detach().to("cpu", torch.float32).contiguous().numpy()
        else:
            _refuse_complex(maps, "maps")
            a = np.ascontiguousarray(maps, dtype=np.float32)
        if a.ndim == 3:
            a = a[:, None]
        if a.ndim != 4:
            raise ArgumentError("maps must be (N, H, T, Tk); got shape %s" % _shape(a.shape))
        if layer in self._pending:
            raise StateError("SinkProbe: layer %d given twice before the pass was complete"
                             % layer, Status.ERR_STATE)
        self._pending[layer] = a
        if len(self._pending) == self.n_layer:
            pending, self._pending = self._pending, {}
            for i in range(self.n_layer):
                a = pending[i]
                N, H, T, Tk = a.shape
                _check(lib.asink_metric_add_maps(self._metric.ptr, i, self.n_layer, N, H, T, Tk,
                                                 a.ctypes.data_as(c_float_p),
                                                 1 if self.normalized else 0),
                       "asink_metric_add_maps")

    def dims(self):
        """[sequences, layers, heads, T, Tk] gathered so far."""
        return self._metric.dims()

    def reset(self):
        """Forget the gathered sequences (hooks stay)."""
        self._pending = {}
        self._metric.reset()

    def stats(self, eps=None):
        """The dict of attnsink.sink_stats: importance (N, L, H, Tk), sink (Tk,) percent of
        (sequence, layer, head) triples with importance > eps (eps None: the probe's),
        entropy (L, H); the model-only statistics are None. StateError before any pass."""
        N, L, H, T, Tk = self._metric.dims()
        imp = self._metric.read("importance", (N, L, H, Tk))
        if eps is None or float(eps) == self.eps:
            sink = self._metric.read("sink", (Tk,))
        else:
            if not 0.0 < float(eps) < 1.0:
                raise ArgumentError("eps=%r must be in (0, 1)" % (eps,), Status.ERR_ARG)
            sink = (100.0 * (imp > float(eps)).reshape(-1, Tk).mean(axis=0)).astype(np.float32)
        return {"importance": imp, "sink": sink, "hidden_norm": None, "key_norm": None,
                "value_norm": None, "qk_cosine": None, "qk_norm_product": None,
                "entropy": self._metric.read("entropy", (L, H))}

    def close(self):
        """Remove the hooks and free the metric (idempotent)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        if self._metric is not None:
            self._metric.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
