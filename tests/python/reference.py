"""A plain PyTorch model of docs/attention.md, the oracle of the attention tests.

Written from the document alone and deliberately naive: dense T x T (or T x (T+1)) maps per
(batch, head), masks as boolean tensors applied with torch.where / multiplication, float64
throughout. Gradients come from torch autograd on this computation.

    ref = reference(spec, q, k, v, params, dout)
    ref["out"], ref["importance"], ref["dq"], ref["dk"], ref["dv"], ref["grads"][name]
"""

import math

import numpy as np
import torch

BASES = ("softmax", "sigmoid", "elu", "linear", "elu-kernel")


def parse_spec(spec, head_dim):
    """The spec string as a dict with every default of docs/attention.md filled in.
    Only for valid specs (the tests of bad specs go to the library)."""
    parts = [p.strip() for p in spec.split(",")]
    base = parts[0]
    assert base in BASES, base
    o = {"base": base, "norm": "none", "scale": 1.0 / math.sqrt(head_dim), "bias": 0.0,
         "causal": 1, "window": 0, "prefix": 0, "alibi": 0, "kbias": None, "vbias": None,
         "sink": None, "alpha": 1.0}
    for p in parts[1:]:
        key, val = p.split("=", 1)
        key, val = key.strip(), val.strip()
        assert key in o and key != "base", key
        if key in ("norm", "kbias", "vbias", "sink"):
            o[key] = val
        elif key in ("causal", "window", "prefix", "alibi"):
            o[key] = int(val)
        else:
            o[key] = float(val)
    return o


def visibility(o, T):
    """Boolean (T, T) mask: entry [t, j] says whether query t sees real key j."""
    t = torch.arange(T).view(T, 1)
    j = torch.arange(T).view(1, T)
    if not o["causal"]:
        return torch.ones(T, T, dtype=torch.bool)
    vis = j <= t
    if o["window"]:
        vis = vis & (j > t - o["window"])
    if o["prefix"]:
        vis = vis | ((j < o["prefix"]) & (t < o["prefix"]))
    return vis


def _per_head(p, H):
    """(n, D) parameter -> (H, D): row 0 for every head when shared (n = 1), row h when per head."""
    return p.expand(H, p.shape[1]) if p.shape[0] == 1 else p


def _elu1(x):
    return torch.nn.functional.elu(x) + 1.0


def reference(spec, q, k, v, params, dout):
    """Forward, importance and autograd gradients of docs/attention.md in float64.

    q (B,T,H,D), k and v (B,T,Hkv,D), dout (B,T,H,D): numpy arrays (any float dtype).
    params: dict name -> numpy array ('k_bias', 'v_bias' (n, D), 'sinks' (H,)).
    Returns numpy float64 arrays: out (B,T,H,D), importance (B,H,Tk), dq, dk, dv, and
    grads (dict name -> array of the parameter's shape).
    """
    B, T, H, D = q.shape
    Hkv = k.shape[2]
    o = parse_spec(spec, D)
    f64 = torch.float64

    def leaf(x):
        return torch.tensor(np.asarray(x, dtype=np.float64), dtype=f64, requires_grad=True)

    qt, kt, vt = leaf(q), leaf(k), leaf(v)
    pt = {name: leaf(val) for name, val in params.items()}

    # (B, H, T, D) views; query head h reads kv head h // (H / Hkv).
    group = H // Hkv
    Q = qt.permute(0, 2, 1, 3)
    K = kt.permute(0, 2, 1, 3).repeat_interleave(group, dim=1)
    V = vt.permute(0, 2, 1, 3).repeat_interleave(group, dim=1)

    # Scores of the real keys: s = scale * phi(q).phi(k) + bias + alibi_h * (j - t).
    if o["base"] == "elu-kernel":
        s = o["scale"] * (_elu1(Q) @ _elu1(K).transpose(-1, -2))
    else:
        s = o["scale"] * (Q @ K.transpose(-1, -2))
    s = s + o["bias"]
    if o["alibi"]:
        slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / H) for h in range(H)], dtype=f64)
        dist = (torch.arange(T).view(1, T) - torch.arange(T).view(T, 1)).to(f64)  # j - t
        s = s + slopes.view(1, H, 1, 1) * dist.view(1, 1, T, T)
    vis = visibility(o, T).view(1, 1, T, T).expand(B, H, T, T)

    # Virtual key in column 0: s* = scale * (phi(q) . k*) + bias, always visible, no alibi;
    # k* lives in feature space, so no phi on it.
    kbias = o["kbias"] is not None
    vstar = _per_head(pt["v_bias"], H) if o["vbias"] is not None else None  # (H, D)
    if kbias:
        kstar = _per_head(pt["k_bias"], H)  # (H, D)
        phiQ = _elu1(Q) if o["base"] == "elu-kernel" else Q
        s_star = o["scale"] * torch.einsum("bhtd,hd->bht", phiQ, kstar).unsqueeze(-1) + o["bias"]
        s = torch.cat([s_star, s], dim=-1)
        vis = torch.cat([torch.ones(B, H, T, 1, dtype=torch.bool), vis], dim=-1)

    if o["base"] == "softmax":
        logits = torch.where(vis, s, torch.tensor(-math.inf, dtype=f64))
        if o["sink"] is not None:
            # The sink logit joins the denominator as one more column that carries no value.
            if o["sink"] == "head":
                sink = pt["sinks"].view(1, H, 1, 1).expand(B, H, T, 1)
            else:
                sink = torch.zeros(B, H, T, 1, dtype=f64)
            P = torch.softmax(torch.cat([logits, sink], dim=-1), dim=-1)[..., :-1]
        else:
            P = torch.softmax(logits, dim=-1)
        A = o["alpha"] * P
        A_hat = P
    else:
        if o["base"] == "sigmoid":
            a = torch.sigmoid(s)
        elif o["base"] == "elu":
            a = _elu1(s)
        else:  # linear, elu-kernel: the feature-map product itself
            a = s
        a = a * vis.to(f64)
        r = a.sum(dim=-1, keepdim=True)
        if o["norm"] == "none":
            A = a
        elif o["norm"] == "sum":
            A = a / (r + 1e-8)
        elif o["norm"] == "clamp":
            A = a / torch.clamp(r.abs(), min=1.0)
        else:
            raise AssertionError(o["norm"])
        absA = A.abs()
        A_hat = absA / (absA.sum(dim=-1, keepdim=True) + 1e-8)

    # Output: the real keys' values, plus the virtual key's value, plus v* alone without kbias.
    if kbias:
        out = A[..., 1:] @ V
        if vstar is not None:
            out = out + A[..., :1] * vstar.view(1, H, 1, D)
    else:
        out = A @ V
        if vstar is not None:
            out = out + vstar.view(1, H, 1, D)
    out = out.permute(0, 2, 1, 3)  # (B, T, H, D)

    # Importance: column sums of A_hat over all T queries, divided by T - j (real key j) or
    # by T (virtual key).
    with torch.no_grad():
        colsum = A_hat.sum(dim=2)  # (B, H, Tk)
        div = (T - torch.arange(T)).to(f64)
        if kbias:
            div = torch.cat([torch.tensor([float(T)], dtype=f64), div])
        importance = colsum / div

    loss = (out * torch.tensor(np.asarray(dout, dtype=np.float64), dtype=f64)).sum()
    loss.backward()

    def g(x):
        return x.grad.numpy() if x.grad is not None else np.zeros(tuple(x.shape))

    return {
        "out": out.detach().numpy(),
        "importance": importance.numpy(),
        "dq": g(qt), "dk": g(kt), "dv": g(vt),
        "grads": {name: g(t) for name, t in pt.items()},
    }
