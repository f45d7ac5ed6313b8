"""The metric handle against the study's formulas computed in numpy on
maps and activations that PyTorch produced from the same model and the same tokens.

torch_model.py (the model oracle) gives logits only, so this file has its own small float64
forward of the llama family (pre-norm, RoPE, SwiGLU, GQA; the attention of docs/attention.md
for the specs used here) that also returns, per layer, the hidden states, q / k / v after RoPE
and the dense attention map A. Its logits are checked against torch_model.TorchModel (to
1e-12: the same formulas) and against the library (1e-4), so the activations below are those
of the model the library runs.

Reference statistics (docs/metrics.md, written out in numpy from A, q, k, v and h):
  Â = A / alpha (softmax family), else Â[t,j] = |A[t,j]| / (Σ_j' |A[t,j']| + 1e-8);
  importance α_j = Σ_t Â[t,j] / (T − j) for real key j; α_* = Σ_t Â[t,*] / T (column 0);
  sink_k = 100 · #{(n, l, h): α_k > eps} / (N L H) (strict);
  hidden_norm[l,t] = mean_n ||h_t^l|| (l = 0 the embedding, l = L the last block's output,
  before the final norm); key_norm / value_norm[l,t] = mean over n and kv heads of ||k_t|| /
  ||v_t|| (keys after RoPE); qk_cosine[l,h,t] = mean_n cos(q_t^h, k_0^{g(h)}) and
  qk_norm_product = mean_n ||q_t^h|| ||k_0^{g(h)}||, g(h) = h // (H / Hkv);
  entropy[l,h] = mean over n and t of −Σ_j Â[t,j] log Â[t,j].

Tolerance. For a tensor, err = max|lib − ref| / max|ref| <= 1e-4 (the infinity-norm relative
error of test_model.py; elementwise relative errors are meaningless where entries are ~0). The
library computes the forward in float32 from float32 parameters; the reference in float64 from
the same float32 values. The difference is float32 rounding through two layers of 32-long dot
products and a softmax: ~1e-6 here. A wrong formula (a wrong divisor T − j vs t + 1, a missing
virtual key, alpha not divided out, keys before RoPE, the wrong kv head, the norm taken after the
final norm) is off by 1e-2 or more. The Sink percentages are counts: they must be equal, and
the test checks first that no reference α lies within 1e-4 of eps (otherwise float32 rounding
could legitimately flip a comparison and the case would be ill-posed).
"""

import ctypes
import json
import math

import numpy as np
import pytest
import torch

import attnsink
from attnsink import StateError
from attnsink._lib import Status, lib
from attnsink.metric import _Metric, _c_int32_p
from reference import visibility
from torch_model import TorchModel, is_norm_weight, resolve, rmsnorm, rope

TOL = 1e-4
MARGIN = 1e-4

torch.set_num_threads(1)

V, C, L, H, KV, FF, T, N, MAXPOS = 37, 32, 2, 4, 2, 48, 9, 6, 16
D = C // H


def llama(attn=None, n_layer=L):
    cfg = {
        "model_type": "llama", "vocab_size": V, "hidden_size": C, "intermediate_size": FF,
        "num_hidden_layers": n_layer, "num_attention_heads": H, "num_key_value_heads": KV,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": MAXPOS,
        "tie_word_embeddings": False,
    }
    if attn is not None:
        cfg["attnsink"] = {"attn": attn}
    return cfg


SPECS = {
    "softmax": "softmax",
    "kvbias": "softmax,kbias=head,vbias=head",
    "sigmoid": "sigmoid",
    "alpha2": "softmax,alpha=2",
}


def rel_err(lib_val, ref):
    lib_val = np.asarray(lib_val, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert lib_val.shape == ref.shape, (lib_val.shape, ref.shape)
    if not np.all(np.isfinite(lib_val)):
        return math.inf
    return float(np.max(np.abs(lib_val - ref)) / max(float(np.max(np.abs(ref))), 1e-30))


def make(cfg, seed=1):
    """A library model with random parameters (std 0.3; norm gains 1 + 0.1 N(0,1)) set through
    set_parameter; returns it and the float32 parameters it holds."""
    m = attnsink.Model.create(cfg, seed=seed)
    rng = np.random.default_rng(seed + 100)
    params = {}
    for name, a in m.parameters().items():
        v = (1.0 + 0.1 * rng.standard_normal(a.shape)) if is_norm_weight(name) \
            else 0.3 * rng.standard_normal(a.shape)
        m.set_parameter(name, v)
        params[name] = v.astype(np.float32)
    return m, params


def tokens_for(seed=7, n=N, t=T):
    return np.random.default_rng(seed).integers(0, V, size=(n, t)).astype(np.int32)


# --------------------------------------------------------------- the traced forward

def attend(o, q, k, v, extra):
    """docs/attention.md for the specs of this file: q (B,T,H,D), k, v (B,T,Hkv,D) ->
    (out (B,T,H,D), A (B,H,T,Tk)), A the map applied to the values (alpha included)."""
    assert o["base"] in ("softmax", "sigmoid") and not o["alibi"] and o["norm"] == "none", o
    B, T_, H_, D_ = q.shape
    g = H_ // k.shape[2]
    Q = q.permute(0, 2, 1, 3)
    K = k.permute(0, 2, 1, 3).repeat_interleave(g, dim=1)
    Vv = v.permute(0, 2, 1, 3).repeat_interleave(g, dim=1)
    s = o["scale"] * (Q @ K.transpose(-1, -2)) + o["bias"]
    vis = visibility(o, T_).view(1, 1, T_, T_).expand(B, H_, T_, T_)
    kb = o["kbias"] is not None

    def per_head(p):
        return p.expand(H_, p.shape[1]) if p.shape[0] == 1 else p

    if kb:
        s0 = o["scale"] * torch.einsum("bhtd,hd->bht", Q, per_head(extra["k_bias"])) + o["bias"]
        s = torch.cat([s0.unsqueeze(-1), s], dim=-1)
        vis = torch.cat([torch.ones(B, H_, T_, 1, dtype=torch.bool), vis], dim=-1)
    if o["base"] == "softmax":
        logit = torch.where(vis, s, torch.tensor(-math.inf, dtype=s.dtype))
        if o["sink"] is not None:
            col = (extra["sinks"].view(1, H_, 1, 1).expand(B, H_, T_, 1) if o["sink"] == "head"
                   else torch.zeros(B, H_, T_, 1, dtype=s.dtype))
            A = torch.softmax(torch.cat([logit, col], dim=-1), dim=-1)[..., :-1]
        else:
            A = torch.softmax(logit, dim=-1)
        A = o["alpha"] * A
    else:
        A = torch.sigmoid(s) * vis.to(s.dtype)
    if kb:
        out = A[..., 1:] @ Vv
        if o["vbias"] is not None:
            out = out + A[..., :1] * per_head(extra["v_bias"]).view(1, H_, 1, D_)
    else:
        out = A @ Vv
        if o["vbias"] is not None:
            out = out + per_head(extra["v_bias"]).view(1, H_, 1, D_)
    return out.permute(0, 2, 1, 3), A


def trace(cfg, params, tokens):
    """Float64 forward of a pre-norm RoPE SwiGLU llama: logits and, per layer, everything the
    metric looks at. Returns dict: logits (B,T,V), hidden [L+1 x (B,T,C)], and layers, a list of
    dicts q (B,T,H,D), k, v (B,T,Hkv,D) (after RoPE), A (B,H,T,Tk); numpy float64."""
    r = resolve(cfg)
    assert r["norm"] == "pre" and r["pos"] == "rope" and r["ffn"] == "swiglu"
    assert not r["sink_token"]
    o = r["o"]
    p = {n: torch.tensor(np.asarray(a, dtype=np.float64)) for n, a in params.items()}
    tok = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
    B, T_ = tok.shape
    Hh, Hkv, Dh, eps = r["H"], r["Hkv"], r["D"], r["eps"]
    x = p["model.embed_tokens.weight"][tok]
    hidden, layers = [x], []
    for n in range(r["L"]):
        pre = "model.layers.%d." % n
        h = rmsnorm(x, p[pre + "input_layernorm.weight"], eps)
        q = (h @ p[pre + "self_attn.q_proj.weight"].T).view(B, T_, Hh, Dh)
        k = (h @ p[pre + "self_attn.k_proj.weight"].T).view(B, T_, Hkv, Dh)
        v = (h @ p[pre + "self_attn.v_proj.weight"].T).view(B, T_, Hkv, Dh)
        q, k = rope(q, r["theta"]), rope(k, r["theta"])
        extra = {e: p[pre + "self_attn." + e] for e in ("k_bias", "v_bias", "sinks")
                 if pre + "self_attn." + e in p}
        att, A = attend(o, q, k, v, extra)
        x = x + att.reshape(B, T_, Hh * Dh) @ p[pre + "self_attn.o_proj.weight"].T
        h2 = rmsnorm(x, p[pre + "post_attention_layernorm.weight"], eps)
        gate = h2 @ p[pre + "mlp.gate_proj.weight"].T
        z = gate * torch.sigmoid(gate) * (h2 @ p[pre + "mlp.up_proj.weight"].T)
        x = x + z @ p[pre + "mlp.down_proj.weight"].T
        hidden.append(x)
        layers.append({"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "A": A.numpy()})
    head = p["model.embed_tokens.weight"] if r["tie"] else p["lm_head.weight"]
    logits = rmsnorm(x, p["model.norm.weight"], eps) @ head.T
    return {"logits": logits.numpy(), "hidden": [t.numpy() for t in hidden], "layers": layers,
            "o": o}


# ------------------------------------------------------------ the study's formulas

def stat_map(o, A):
    """Â of docs/metrics.md from the applied map A (..., T, Tk)."""
    if o["base"] == "softmax":
        return A / o["alpha"]
    a = np.abs(A)
    return a / (a.sum(axis=-1, keepdims=True) + 1e-8)


def importance_of(Ahat):
    """(..., T, Tk) -> (..., Tk): column sums over all queries divided by T − j (real keys)
    or T (the virtual key, column 0 when Tk = T + 1)."""
    T_, Tk = Ahat.shape[-2:]
    div = np.concatenate([np.full(Tk - T_, float(T_)), T_ - np.arange(T_, dtype=np.float64)])
    return Ahat.sum(axis=-2) / div


def sink_of(imp, eps):
    """imp (N, L, H, Tk) -> percent of (n, l, h) with α > eps, per key column."""
    return 100.0 * (imp > eps).reshape(-1, imp.shape[-1]).mean(axis=0)


def entropy_of(Ahat):
    """(N, L, H, T, Tk) -> (L, H): mean over sequences and rows of −Σ Â log Â."""
    with np.errstate(divide="ignore", invalid="ignore"):
        e = -np.where(Ahat > 0, Ahat * np.log(Ahat), 0.0).sum(axis=-1)
    return e.mean(axis=(0, 3))


def reference_stats(tr, eps):
    o = tr["o"]
    maps = np.stack([ly["A"] for ly in tr["layers"]], axis=1)  # (N, L, H, T, Tk)
    Ahat = stat_map(o, maps)
    imp = importance_of(Ahat)
    hid = np.stack([np.linalg.norm(h, axis=-1).mean(axis=0) for h in tr["hidden"]])
    kn, vn, cos, qk = [], [], [], []
    for ly in tr["layers"]:
        q, k, v = ly["q"], ly["k"], ly["v"]
        kn.append(np.linalg.norm(k, axis=-1).mean(axis=(0, 2)))
        vn.append(np.linalg.norm(v, axis=-1).mean(axis=(0, 2)))
        g = q.shape[2] // k.shape[2]
        k0 = np.repeat(k[:, 0], g, axis=1)[:, None]  # (B, 1, H, D): the first key of kv head h//g
        nq, nk = np.linalg.norm(q, axis=-1), np.linalg.norm(k0, axis=-1)
        cos.append(((q * k0).sum(-1) / (nq * nk)).mean(axis=0).T)  # (H, T)
        qk.append((nq * nk).mean(axis=0).T)
    return {"importance": imp, "sink": sink_of(imp, eps), "hidden_norm": hid,
            "key_norm": np.stack(kn), "value_norm": np.stack(vn), "qk_cosine": np.stack(cos),
            "qk_norm_product": np.stack(qk), "entropy": entropy_of(Ahat), "maps": maps}


def assert_well_posed(imp, eps):
    gap = float(np.min(np.abs(imp - eps)))
    assert gap > MARGIN, "a reference importance is within %g of eps=%g: choose another" % (gap, eps)


def assert_stats_match(got, ref, eps, keys):
    for key in keys:
        assert got[key].dtype == np.float32, key
        if key == "sink":
            assert_well_posed(ref["importance"], eps)
            assert got[key].shape == ref[key].shape
            np.testing.assert_allclose(got[key], ref[key], atol=1e-3, err_msg="sink")
        else:
            e = rel_err(got[key], ref[key])
            assert e <= TOL, (key, e)


ALL_KEYS = ("importance", "sink", "hidden_norm", "key_norm", "value_norm", "qk_cosine",
            "qk_norm_product", "entropy")

_CACHE = {}


def case(name):
    """Model, parameters, tokens and traced reference of case `name`, built once."""
    if name not in _CACHE:
        cfg = llama(SPECS[name])
        m, params = make(cfg)
        tok = tokens_for()
        tr = trace(cfg, params, tok)
        _CACHE[name] = (cfg, m, params, tok, tr)
    return _CACHE[name]


# ------------------------------------------------------------------- the traced model

@pytest.mark.parametrize("name", list(SPECS))
def test_trace_is_the_model(name):
    """The traced forward is the model of torch_model.py and the model the library runs."""
    cfg, m, params, tok, tr = case(name)
    ref = TorchModel(cfg, params).forward(tok).detach().numpy()
    assert rel_err(tr["logits"], ref) <= 1e-12
    assert rel_err(m.forward(tok), tr["logits"]) <= TOL
    # the maps are what docs/attention.md says: rows of a softmax map sum to alpha
    o = tr["o"]
    Tk = T + 1 if o["kbias"] else T
    for ly in tr["layers"]:
        assert ly["A"].shape == (N, H, T, Tk)
        if o["base"] == "softmax":
            np.testing.assert_allclose(ly["A"].sum(-1), o["alpha"], rtol=1e-12)


# ------------------------------------------------------------ fused: every statistic

@pytest.mark.parametrize("eps", [0.3, 0.15])
@pytest.mark.parametrize("name", list(SPECS))
def test_sink_stats_match_formulas(name, eps):
    cfg, m, params, tok, tr = case(name)
    ref = reference_stats(tr, eps)
    got = m.sink_stats(tok, eps=eps)
    Tk = T + 1 if tr["o"]["kbias"] else T
    shapes = {"importance": (N, L, H, Tk), "sink": (Tk,), "hidden_norm": (L + 1, T),
              "key_norm": (L, T), "value_norm": (L, T), "qk_cosine": (L, H, T),
              "qk_norm_product": (L, H, T), "entropy": (L, H)}
    assert {k: v.shape for k, v in got.items()} == shapes
    assert_stats_match(got, ref, eps, ALL_KEYS)
    # the case exercises something: some but not all triples are sinks at this eps
    assert 0 < ref["sink"].max() and ref["sink"].min() < 100


def test_sink_stats_nontrivial_cases():
    """Sanity of the cases themselves: the kbias model's virtual key draws attention, the
    sigmoid map is not normalised (the proxy matters) and alpha=2 doubles the map."""
    tr = case("kvbias")[4]
    assert tr["layers"][0]["A"][..., 0].mean() > 0.02
    tr = case("sigmoid")[4]
    rows = tr["layers"][0]["A"].sum(-1)
    assert rows.max() > 1.5  # far from a probability row: Â differs from A
    tr = case("alpha2")[4]
    np.testing.assert_allclose(tr["layers"][1]["A"].sum(-1), 2.0, rtol=1e-12)


def test_module_function_and_batching():
    """attnsink.sink_stats(model, ...) is Model.sink_stats; batching inside it (several forward
    passes on one metric) changes nothing."""
    cfg, m, params, tok, tr = case("softmax")
    a = m.sink_stats(tok, eps=0.3)
    b = attnsink.sink_stats(m, tok, eps=0.3, batch=4)  # passes of 4 and 2 sequences
    c = m.sink_stats(tok, 0.3, 1)
    for key in ALL_KEYS:
        assert rel_err(b[key], a[key]) <= 1e-6, key
        assert rel_err(c[key], a[key]) <= 1e-6, key


# ----------------------------------------------------------- accumulation and reset

def _forward(m, tok, logits=False):
    tok = np.ascontiguousarray(tok, dtype=np.int32)
    out = np.empty(tok.shape + (V,), dtype=np.float32) if logits else None
    st = lib.asink_model_forward(m._h.ptr, tok.shape[0], tok.shape[1],
                                 tok.ctypes.data_as(_c_int32_p),
                                 out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
                                 if logits else None)
    assert st == Status.OK, attnsink._decode(lib.asink_last_error())


def _read_all(mt, Tk):
    return {
        "importance": mt.read("importance", (N, L, H, Tk)), "sink": mt.read("sink", (Tk,)),
        "hidden_norm": mt.read("hidden_norm", (L + 1, T)), "key_norm": mt.read("key_norm", (L, T)),
        "value_norm": mt.read("value_norm", (L, T)), "qk_cosine": mt.read("qk_cosine", (L, H, T)),
        "qk_norm_product": mt.read("qk_norm_product", (L, H, T)),
        "entropy": mt.read("entropy", (L, H)),
    }


@pytest.mark.parametrize("name", ["softmax", "kvbias"])
def test_two_halves_equal_one_call_and_reset(name):
    cfg, m, params, tok, tr = case(name)
    Tk = T + 1 if tr["o"]["kbias"] else T
    eps = 0.3
    whole = m.sink_stats(tok, eps=eps)
    mt = _Metric(eps)
    assert lib.asink_model_attach_metric(m._h.ptr, mt.ptr) == Status.OK
    try:
        _forward(m, tok[:3])                 # logits NULL: layers only
        assert mt.dims() == [3, L, H, T, Tk]
        _forward(m, tok[3:], logits=True)    # the logits path gathers the same
        assert mt.dims() == [N, L, H, T, Tk]
        halves = _read_all(mt, Tk)
        for key in ALL_KEYS:
            assert rel_err(halves[key], whole[key]) <= 1e-6, key
        assert_stats_match(halves, reference_stats(tr, eps), eps, ALL_KEYS)
        js = ctypes.c_void_p(lib.asink_metric_json(mt.ptr))
        assert js.value
        d = json.loads(ctypes.string_at(js).decode())
        attnsink.metric._libc.free(js)
        assert d["samples"] == N and d["layers"] == L and d["heads"] == H and d["tokens"] == T
        for key in ALL_KEYS:
            assert rel_err(np.array(d[key]), halves[key]) <= 1e-6, key

        lib.asink_metric_reset(mt.ptr)
        assert mt.dims() == [0, 0, 0, 0, 0]
        for stat, shape in (("importance", (N, L, H, Tk)), ("sink", (Tk,)),
                            ("hidden_norm", (L + 1, T)), ("entropy", (L, H))):
            with pytest.raises(StateError) as e:
                mt.read(stat, shape)
            assert isinstance(e.value, ValueError) and isinstance(e.value, RuntimeError)
            assert e.value.status == Status.ERR_STATE and "no sequences" in str(e.value)
        # still attached after reset: new passes start from zero
        _forward(m, tok)
        again = _read_all(mt, Tk)
        for key in ALL_KEYS:
            assert rel_err(again[key], whole[key]) <= 1e-6, key
        # loss and eval_loss feed an attached metric too
        lib.asink_metric_reset(mt.ptr)
        targets = np.zeros_like(tok)
        m.eval_loss(tok[:3], targets[:3])
        m.loss(tok[3:], targets[3:])
        assert mt.dims()[0] == N
        via_loss = _read_all(mt, Tk)
        for key in ALL_KEYS:
            assert rel_err(via_loss[key], whole[key]) <= 1e-6, key
    finally:
        lib.asink_model_attach_metric(m._h.ptr, None)
    # detached: a further forward adds nothing
    _forward(m, tok[:1])
    assert mt.dims()[0] == N


def test_supplied_maps_two_halves_and_reset():
    """asink_metric_add_maps on the same maps in two halves (by sequence) equals one call."""
    tr = case("softmax")[4]
    maps = np.ascontiguousarray(np.stack([ly["A"] for ly in tr["layers"]], axis=1),
                                dtype=np.float32)
    one = attnsink.sink_metric(maps, eps=0.3)
    mt = _Metric(0.3)
    fp = ctypes.POINTER(ctypes.c_float)
    for part in (maps[:4], maps[4:]):
        for layer in range(L):
            block = np.ascontiguousarray(part[:, layer])
            st = lib.asink_metric_add_maps(mt.ptr, layer, L, part.shape[0], H, T, T,
                                           block.ctypes.data_as(fp), 1)
            assert st == Status.OK
    assert mt.dims() == [N, L, H, T, T]
    assert np.array_equal(mt.read("importance", (N, L, H, T)), one["importance"])
    assert np.array_equal(mt.read("sink", (T,)), one["sink"])
    assert rel_err(mt.read("entropy", (L, H)), one["entropy"]) <= 1e-6
    # supplied maps carry no activations
    with pytest.raises(StateError, match="attached to a model"):
        mt.read("hidden_norm", (L + 1, T))
    lib.asink_metric_reset(mt.ptr)
    with pytest.raises(StateError):
        mt.read("importance", (N, L, H, T))


# ------------------------------------------------------------ supplied maps: sink_metric

@pytest.mark.parametrize("name", ["softmax", "kvbias", "alpha2"])
def test_sink_metric_normalized_torch_maps(name):
    """The model's own attention maps from torch, given as normalized maps (the probabilities
    P = A / alpha; column 0 the virtual key for kbias), give sink_stats' importance and Sink."""
    cfg, m, params, tok, tr = case(name)
    eps = 0.3
    ref = reference_stats(tr, eps)
    P = ref["maps"] / tr["o"]["alpha"]
    got = attnsink.sink_metric(P, eps=eps, normalized=True)
    assert set(got) >= {"importance", "sink"}
    assert_stats_match(got, ref, eps, ("importance", "sink", "entropy"))
    fused = m.sink_stats(tok, eps=eps)
    assert rel_err(got["importance"], fused["importance"]) <= TOL
    assert np.array_equal(got["sink"], fused["sink"])
    assert rel_err(got["entropy"], fused["entropy"]) <= TOL


def test_sink_metric_unnormalized_sigmoid_maps():
    """Sigmoid maps as they are (rows do not sum to one) with normalized=False: the proxy rule."""
    cfg, m, params, tok, tr = case("sigmoid")
    ref = reference_stats(tr, 0.3)
    for eps in (0.3, 0.15):
        ref["sink"] = sink_of(ref["importance"], eps)
        got = attnsink.sink_metric(ref["maps"], eps=eps, normalized=False)
        assert_stats_match(got, ref, eps, ("importance", "sink", "entropy"))
        fused = m.sink_stats(tok, eps=eps)
        assert rel_err(got["importance"], fused["importance"]) <= TOL
        assert np.array_equal(got["sink"], fused["sink"])
    # normalized=True takes the same maps literally: α_j = Σ_t A[t,j] / (T − j), not the proxy
    lit = attnsink.sink_metric(ref["maps"], eps=0.3, normalized=True)
    assert rel_err(lit["importance"], importance_of(ref["maps"])) <= TOL
    assert rel_err(lit["importance"], ref["importance"]) > 0.1


def test_sink_metric_proxy_signed_and_virtual_column():
    """The proxy on signed rows (|A|, the 1e-8 in the denominator) with a virtual-key column,
    on random maps, including an all-zero row (Â = 0 there, entropy 0)."""
    rng = np.random.default_rng(5)
    n, l, h, t = 3, 2, 2, 5
    maps = rng.standard_normal((n, l, h, t, t + 1)).astype(np.float32)
    maps[1, 0, 1, 2] = 0.0
    Ahat = np.abs(maps.astype(np.float64))
    Ahat /= Ahat.sum(-1, keepdims=True) + 1e-8
    imp = importance_of(Ahat)
    for eps in (0.35, 0.5):
        assert_well_posed(imp, eps)
        got = attnsink.sink_metric(maps, eps=eps, normalized=False)
        assert got["importance"].shape == (n, l, h, t + 1) and got["sink"].shape == (t + 1,)
        assert rel_err(got["importance"], imp) <= TOL
        np.testing.assert_allclose(got["sink"], sink_of(imp, eps), atol=1e-3)
        assert rel_err(got["entropy"], entropy_of(Ahat)) <= TOL
    # the virtual key's divisor is T, real key j's is T − j
    np.testing.assert_allclose(got["importance"][..., 0], Ahat[..., 0].sum(-1) / t, rtol=1e-5)
    np.testing.assert_allclose(got["importance"][..., -1], Ahat[..., -1].sum(-1) / 1, rtol=1e-5)


# -------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("eps", [0, 1, -0.1, 1.5, 0.0, 1.0, float("nan")])
def test_bad_eps(eps):
    cfg, m, params, tok, tr = case("softmax")
    with pytest.raises(ValueError, match="eps"):
        m.sink_stats(tok, eps=eps)
    with pytest.raises(ValueError, match="eps"):
        attnsink.sink_metric(np.full((1, 1, 1, 2, 2), 0.5, dtype=np.float32), eps=eps)
    # the C library itself refuses it, naming eps
    p = ctypes.c_void_p(1)
    st = lib.asink_metric_create(ctypes.byref(p), float(eps))
    assert st == Status.ERR_ARG and not p.value
    assert "eps" in attnsink._decode(lib.asink_last_error())


@pytest.mark.parametrize("shape", [(2, 3, 3), (1, 2, 3, 3), (1, 1, 1, 1, 3, 3), ()])
def test_maps_wrong_rank(shape):
    with pytest.raises(ValueError) as e:
        attnsink.sink_metric(np.full(shape, 0.1, dtype=np.float32))
    want = "(" + ", ".join(str(s) for s in shape) + ")"
    assert want in str(e.value) and "rank" in str(e.value), str(e.value)


def test_maps_wrong_key_count():
    with pytest.raises(ValueError, match="Tk=5"):
        attnsink.sink_metric(np.full((1, 1, 1, 3, 5), 0.1, dtype=np.float32))
    with pytest.raises(ValueError, match="Tk=2"):
        attnsink.sink_metric(np.full((1, 1, 1, 3, 2), 0.1, dtype=np.float32))


def test_maps_negative_when_normalized():
    maps = np.full((2, 1, 1, 3, 3), 0.2, dtype=np.float32)
    maps[1, 0, 0, 2, 1] = -0.1
    with pytest.raises(ValueError, match="< 0"):
        attnsink.sink_metric(maps, normalized=True)
    got = attnsink.sink_metric(maps, normalized=False)  # the proxy takes |A|
    assert np.all(np.isfinite(got["importance"]))
    bad = maps.copy()
    bad[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        attnsink.sink_metric(bad, normalized=False)


def test_attach_to_model_with_other_layer_count():
    m2, _ = make(llama(n_layer=2))
    m3, _ = make(llama(n_layer=3), seed=2)
    tok = tokens_for(n=2)
    mt = _Metric(0.3)
    assert lib.asink_model_attach_metric(m2._h.ptr, mt.ptr) == Status.OK
    _forward(m2, tok)
    with pytest.raises(ValueError) as e:
        attnsink._check(lib.asink_model_attach_metric(m3._h.ptr, mt.ptr),
                        "asink_model_attach_metric")
    assert e.value.status == Status.ERR_SHAPE
    msg = str(e.value)
    assert "2 layers" in msg and "3" in msg, msg
    # the failed attach left the statistics and the old model alone
    assert mt.dims()[:2] == [2, 2]
    # after a reset it may go to the 3-layer model
    lib.asink_metric_reset(mt.ptr)
    assert lib.asink_model_attach_metric(m3._h.ptr, mt.ptr) == Status.OK
    _forward(m3, tok)
    assert mt.dims()[:2] == [2, 3]
    lib.asink_model_attach_metric(m3._h.ptr, None)
    lib.asink_model_attach_metric(m2._h.ptr, None)
