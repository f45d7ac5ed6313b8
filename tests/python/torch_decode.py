"""An incremental float64 PyTorch reference of decoding with a key/value cache: the oracle of
test_decode.py. It extends torch_model.TorchModel (whose own behaviour is untouched) with

  - the model variants TorchModel leaves out: `positions: "relative"` (spec relbias=t5, the
    T5 bucket table of docs/attention.md) and `kernel: "mlp"` (phi(x) = W2 relu(W1 x) on q and
    k after RoPE, docs/api.md "Architecture");
  - decoding as Hugging Face caches it: per layer the keys and values of every position fed so
    far are kept; new tokens enter at absolute positions p0, p0+1, ... and each new query is
    computed against the cached keys with the masks of docs/attention.md;
  - the cache policies of include/attnsink.h, written from the header's rule:
      full    query p sees positions 0 .. p;
      window  the W most recent positions, p-W+1 .. p;
      sink    the first n_sink positions plus the W most recent (everything while p < n_sink+W);
    inside the cache positions are ranks (the kept positions, oldest first, numbered 0, 1, ...):
    the causal / window / prefix masks, ALiBi and the relative bias see ranks; RoPE keys keep
    the rotation of their absolute position and the query is rotated at its absolute position
    p, except that a sink cache re-rotates its sink keys so that their distance to the newest
    position is their rank distance (key of rank r at position p - (R - r), R the query's rank,
    which is the key's absolute position for every key that is not a re-rotated sink);
  - attention at explicit positions (reference_at): reference.py's formulas with the positions
    of asink_attn_forward_at in place of 0 .. T-1.

    ref = DecodeRef(config, params)          # params: dict HF name -> array
    ref.forward(tokens)                      # (B, T, V) logits, the whole sequence at once
    s = ref.stream(policy="sink", n_sink=4, window=8)   # one sequence
    s.feed([3, 1, 4])                        # (3, V) logits of the new positions
    s.records[-1]                            # per layer (n, H, keys) maps of the last call

One sequence per stream (a batch is a list of streams); per query a plain loop. Everything is
float64 on the float32 values the library holds.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from reference import parse_spec
from torch_model import (GATED, PLAIN, TorchModel, _act, layernorm, param_shapes, resolve,
                         rmsnorm, sinusoids)

F64 = torch.float64
REL_BUCKETS = 32


def relative_bucket(n):
    """docs/attention.md: bucket(n) = n for n < 16, else min(31, 16 + floor(ln(n/16)/ln 8 * 16))."""
    n = abs(int(n))
    if n < 16:
        return n
    return min(31, 16 + int(math.floor(math.log(n / 16.0) / math.log(8.0) * 16.0)))


def split_spec(spec):
    """(spec without relbias=t5, relbias flag): reference.parse_spec does not know relbias."""
    parts = [p.strip() for p in spec.split(",")]
    rel = any(p.replace(" ", "") == "relbias=t5" for p in parts[1:])
    return ",".join(p for p in parts if p.replace(" ", "") != "relbias=t5"), rel


def parse_spec_ext(spec, head_dim):
    """reference.parse_spec plus o['relbias']."""
    base, rel = split_spec(spec)
    o = parse_spec(base, head_dim)
    o["relbias"] = rel
    return o


def resolve_ext(config):
    """torch_model.resolve with positions "relative" (-> relbias) and kernel "mlp" added.
    Returns (r, the config TorchModel's resolve/param_shapes can take)."""
    c = dict(config)
    a = dict(c.get("attnsink") or {})
    spec, rel = split_spec(a.get("attn") or "softmax")
    pos = a.get("positions")
    kernel = a.pop("kernel", None) == "mlp"
    if pos == "relative":
        rel = True
        a["positions"] = "nope"
    a["attn"] = spec
    c["attnsink"] = a
    r = resolve(c)
    if pos == "relative":
        r["pos"] = "relative"
    r["o"]["relbias"] = rel
    r["kernel"] = kernel
    return r, c


def param_shapes_ext(config):
    """torch_model.param_shapes plus relative_bias (H, 32) and kernel_mlp1/2 (D, D)."""
    r, c = resolve_ext(config)
    s = param_shapes(c)
    out = {}
    for name, shape in s.items():
        out[name] = shape
        # the library's order: kernel_mlp after o_proj; relative_bias after the op's tensors
        if r["family"] == "llama" and name.endswith("self_attn.o_proj.weight"):
            pre = name[:-len("o_proj.weight")]
            if r["kernel"]:
                out[pre + "kernel_mlp1.weight"] = (r["D"], r["D"])
                out[pre + "kernel_mlp2.weight"] = (r["D"], r["D"])
            if r["o"]["relbias"]:
                out[pre + "relative_bias"] = (r["H"], REL_BUCKETS)
        if r["family"] == "gpt2" and name.endswith("attn.c_proj.bias") and r["o"]["relbias"]:
            out[name[:-len("c_proj.bias")] + "relative_bias"] = (r["H"], REL_BUCKETS)
    return out


def rope_at(x, pos, theta):
    """Rotate-half RoPE of x (n, nh, D) at positions pos (n,) (HF LLaMA), float64."""
    n, nh, D = x.shape
    inv_freq = 1.0 / theta ** (torch.arange(0, D, 2, dtype=F64) / D)
    ang = torch.as_tensor(np.asarray(pos, dtype=np.float64)).view(n, 1) * inv_freq.view(1, D // 2)
    ang = torch.cat([ang, ang], dim=-1)
    cos, sin = ang.cos().view(n, 1, D), ang.sin().view(n, 1, D)
    x1, x2 = x[..., :D // 2], x[..., D // 2:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def _per_head(p, H):
    return p.expand(H, p.shape[1]) if p.shape[0] == 1 else p


def _elu1(x):
    return F.elu(x) + 1.0


def attend(o, q, k, v, extra, t, j, vis):
    """One (batch) element of docs/attention.md at arbitrary positions, float64.

    q (Tq, H, D) and k, v (Tk, Hkv, D) already position-encoded (RoPE, kernel); t (Tq,) and
    j (Tk,) the positions ALiBi and the relative bias see; vis (Tq, Tk) bool the visibility of
    real keys. extra: 'k_bias', 'v_bias', 'sinks', 'relative_bias' tensors as the spec has them.
    Returns out (Tq, H, D) and A_hat (H, Tq, Tk (+1 virtual key first)), the attention
    (softmax: P) or the proxy |A| / (sum |A| + 1e-8) of docs/metrics.md."""
    Tq, H, D = q.shape
    Tk, Hkv = k.shape[0], k.shape[1]
    Q = q.permute(1, 0, 2)
    K = k.permute(1, 0, 2).repeat_interleave(H // Hkv, dim=0)
    V = v.permute(1, 0, 2).repeat_interleave(H // Hkv, dim=0)
    phi = _elu1 if o["base"] == "elu-kernel" else (lambda x: x)
    s = o["scale"] * (phi(Q) @ phi(K).transpose(-1, -2)) + o["bias"]  # (H, Tq, Tk)
    tt = torch.as_tensor(np.asarray(t, dtype=np.int64)).view(Tq, 1)
    jj = torch.as_tensor(np.asarray(j, dtype=np.int64)).view(1, Tk)
    if o["alibi"]:
        slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / H) for h in range(H)], dtype=F64)
        s = s + slopes.view(H, 1, 1) * (jj - tt).to(F64).view(1, Tq, Tk)
    if o.get("relbias"):
        buckets = torch.tensor([[relative_bucket(a - b) for b in np.asarray(j)]
                                for a in np.asarray(t)], dtype=torch.int64)
        s = s + extra["relative_bias"][:, buckets]
    vis = torch.as_tensor(vis).view(1, Tq, Tk).expand(H, Tq, Tk)
    kb = o["kbias"] is not None
    vstar = _per_head(extra["v_bias"], H) if o["vbias"] is not None else None
    if kb:
        kstar = _per_head(extra["k_bias"], H)
        s0 = o["scale"] * torch.einsum("htd,hd->ht", phi(Q), kstar).unsqueeze(-1) + o["bias"]
        s = torch.cat([s0, s], dim=-1)
        vis = torch.cat([torch.ones(H, Tq, 1, dtype=torch.bool), vis], dim=-1)
    if o["base"] == "softmax":
        logit = torch.where(vis, s, torch.tensor(-math.inf, dtype=F64))
        if o["sink"] is not None:
            col = (extra["sinks"].view(H, 1, 1).expand(H, Tq, 1) if o["sink"] == "head"
                   else torch.zeros(H, Tq, 1, dtype=F64))
            P = torch.softmax(torch.cat([logit, col], dim=-1), dim=-1)[..., :-1]
        else:
            P = torch.softmax(logit, dim=-1)
        A, A_hat = o["alpha"] * P, P
    else:
        if o["base"] == "sigmoid":
            a = torch.sigmoid(s)
        elif o["base"] == "elu":
            a = _elu1(s)
        else:
            a = s
        a = a * vis.to(F64)
        r = a.sum(dim=-1, keepdim=True)
        A = {"none": lambda: a, "sum": lambda: a / (r + 1e-8),
             "clamp": lambda: a / torch.clamp(r.abs(), min=1.0)}[o["norm"]]()
        absA = A.abs()
        A_hat = absA / (absA.sum(dim=-1, keepdim=True) + 1e-8)
    if kb:
        out = A[..., 1:] @ V
        if vstar is not None:
            out = out + A[..., :1] * vstar.view(H, 1, D)
    else:
        out = A @ V
        if vstar is not None:
            out = out + vstar.view(H, 1, D)
    return out.permute(1, 0, 2), A_hat


def visibility_at(o, t, j):
    """docs/attention.md's visibility on positions: (Tq, Tk) bool, query at t[i], key at j[c]."""
    tt = torch.as_tensor(np.asarray(t, dtype=np.int64)).view(-1, 1)
    jj = torch.as_tensor(np.asarray(j, dtype=np.int64)).view(1, -1)
    if not o["causal"]:
        return torch.ones(tt.shape[0], jj.shape[1], dtype=torch.bool)
    vis = jj <= tt
    if o["window"]:
        vis = vis & (jj > tt - o["window"])
    if o["prefix"]:
        vis = vis | ((jj < o["prefix"]) & (tt < o["prefix"]))
    return vis


def reference_at(spec, q, k, v, params, q_pos=None, k_pos=None, dout=None):
    """reference.py's forward, importance and (with dout) autograd gradients at the positions
    of asink_attn_forward_at. q (B,Tq,H,D), k and v (B,Tk,Hkv,D) numpy; params name -> numpy;
    k_pos None: 0 .. Tk-1; q_pos None: Tk-Tq .. Tk-1. Importance: column sums of A_hat
    divided by the number of queries at or after the key's position (virtual key: by Tq).
    Returns dict out, importance, and dq, dk, dv, grads (name -> array) when dout is given."""
    B, Tq, H, D = q.shape
    Tk = k.shape[1]
    o = parse_spec_ext(spec, D)
    kp = np.arange(Tk) if k_pos is None else np.asarray(k_pos, dtype=np.int64)
    qp = np.arange(Tk - Tq, Tk) if q_pos is None else np.asarray(q_pos, dtype=np.int64)

    def leaf(x):
        return torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)

    extra = {n: leaf(a) for n, a in params.items()}
    qt, kt, vt = leaf(q), leaf(k), leaf(v)
    vis = visibility_at(o, qp, kp)
    outs, imps = [], []
    div = torch.tensor([float((qp >= x).sum()) for x in kp], dtype=F64)
    if o["kbias"] is not None:
        div = torch.cat([torch.tensor([float(Tq)], dtype=F64), div])
    for b in range(B):
        out, A_hat = attend(o, qt[b], kt[b], vt[b], extra, qp, kp, vis)
        outs.append(out)
        imps.append((A_hat.sum(dim=1) / div).detach().numpy())
    out = torch.stack(outs)
    res = {"out": out.detach().numpy(), "importance": np.stack(imps)}
    if dout is not None:
        (out * torch.tensor(np.asarray(dout, dtype=np.float64))).sum().backward()

        def g(x):
            return x.grad.numpy() if x.grad is not None else np.zeros(tuple(x.shape))

        res.update(dq=g(qt), dk=g(kt), dv=g(vt), grads={n: g(t) for n, t in extra.items()})
    return res


# ------------------------------------------------------------------------------ model

class DecodeRef(TorchModel):
    """TorchModel with relative positions, the MLP kernel and incremental decoding.

    forward(tokens) runs the whole sequence as one block of a "full" stream (every query
    against every key of the sequence, masks on positions 0 .. T-1); TorchModel.forward of the
    same parameters gives the same logits wherever TorchModel models the architecture."""

    def __init__(self, config, params, dtype=torch.float64):
        r, _ = resolve_ext(config)
        self.r = r
        self.dtype = dtype
        want = param_shapes_ext(config)
        assert set(params) == set(want), sorted(set(params) ^ set(want))
        self.p = {}
        for name, shape in want.items():
            a = np.asarray(params[name], dtype=np.float64)
            assert a.shape == shape, (name, a.shape, shape)
            self.p[name] = torch.tensor(a, dtype=dtype)

    def stream(self, policy="full", n_sink=4, window=256):
        return Stream(self, policy, n_sink, window)

    def forward(self, tokens):
        tok = np.asarray(tokens)
        rows = []
        for b in range(tok.shape[0]):
            rows.append(self.stream("full").feed(tok[b]))
        return torch.stack(rows)

    def decode(self, tokens, policy="full", n_sink=4, window=256, chunk=1):
        """(B, T, V) numpy logits of tokens fed `chunk` positions at a time (prefix-LM: the
        prefix first, in one call) through a stream per sequence."""
        tok = np.asarray(tokens)
        out = []
        for b in range(tok.shape[0]):
            s = self.stream(policy, n_sink, window)
            out.append(s.feed_all(tok[b], chunk).numpy())
        return np.stack(out)


class Stream:
    """One sequence being decoded through a cache of `policy`. Keeps, per layer, the keys
    before RoPE and the values of every position fed (eviction is a matter of which of them a
    query sees: `kept(p)`), and per call the attention rows of the new positions."""

    def __init__(self, ref, policy="full", n_sink=4, window=256):
        assert policy in ("full", "window", "sink"), policy
        self.ref, self.policy, self.n_sink, self.window = ref, policy, n_sink, window
        r = ref.r
        self.fed = 0  # stream positions (the sink token counts)
        self.k = [torch.zeros(0, r["Hkv"], r["D"], dtype=F64) for _ in range(r["L"])]
        self.v = [torch.zeros(0, r["Hkv"], r["D"], dtype=F64) for _ in range(r["L"])]
        # per call: a list over layers of rows, each (A_hat (H, keys), the keys' positions)
        self.records = []

    # -- which positions a query sees

    def kept(self, p):
        """The stream positions the cache holds when the query at position p is computed."""
        if self.policy == "full":
            return list(range(p + 1))
        W = self.window
        if self.policy == "window":
            return list(range(max(0, p - W + 1), p + 1))
        if p < self.n_sink + W:
            return list(range(p + 1))
        return list(range(self.n_sink)) + list(range(p - W + 1, p + 1))

    def _keys_for(self, p):
        o = self.ref.r["o"]
        keys = self.kept(p)
        P = o["prefix"]
        if P and p < P:  # the prefix, fed in one call, sees all of itself
            keys = sorted(set(keys) | set(range(P)))
        return keys

    # -- feeding

    def feed_all(self, tokens, chunk=1):
        """Logits (T, V) of tokens fed chunk positions at a time (the prefix first, whole)."""
        tokens = list(np.asarray(tokens).reshape(-1))
        P = self.ref.r["o"]["prefix"]
        out, t = [], 0
        if P:
            out.append(self.feed(tokens[:P]))
            t = min(P, len(tokens))
        while t < len(tokens):
            out.append(self.feed(tokens[t:t + chunk]))
            t += chunk
        return torch.cat(out)

    def feed(self, tokens):
        """Logits (n, V) of n new tokens; the first call of a sink-token model puts the sink
        vector at position 0 first (its logits are not returned)."""
        r, p = self.ref.r, self.ref.p
        tok = torch.as_tensor(np.asarray(tokens, dtype=np.int64).reshape(-1))
        if r["family"] == "gpt2":
            x = p["wte.weight"][tok]
        else:
            x = p["model.embed_tokens.weight"][tok]
        lead = 0
        if r["sink_token"] and self.fed == 0:
            x = torch.cat([p["model.sink_token"].view(1, -1), x])
            lead = 1
        n = x.shape[0]
        pos = list(range(self.fed, self.fed + n))
        if r["family"] == "gpt2":
            x = x + p["wpe.weight"][pos]
        elif r["pos"] == "learned":
            x = x + p["model.embed_positions.weight"][pos]
        elif r["pos"] == "sinusoidal":
            x = x + sinusoids(pos[-1] + 1, r["C"], F64)[pos]
        record = []
        for layer in range(r["L"]):
            x = self._block(layer, x, pos, record)
        self.fed += n
        self.records.append(record)
        if r["family"] == "gpt2":
            x = layernorm(x, p["ln_f.weight"], p["ln_f.bias"], r["eps"])
            logits = x @ p["wte.weight"].T
        else:
            if r["norm"] == "pre":
                x = rmsnorm(x, p["model.norm.weight"], r["eps"])
            head = p["model.embed_tokens.weight"] if r["tie"] else p["lm_head.weight"]
            logits = x @ head.T
        return logits[lead:]

    def _block(self, n, x, pos, record):
        r, p, eps = self.ref.r, self.ref.p, self.ref.r["eps"]
        if r["family"] == "gpt2":
            pre = "h.%d." % n
            h = layernorm(x, p[pre + "ln_1.weight"], p[pre + "ln_1.bias"], eps)
            x = x + self._attn(n, h, pos, record)
            h = layernorm(x, p[pre + "ln_2.weight"], p[pre + "ln_2.bias"], eps)
            z = _act(PLAIN[r["ffn"]], h @ p[pre + "mlp.c_fc.weight"] + p[pre + "mlp.c_fc.bias"])
            return x + z @ p[pre + "mlp.c_proj.weight"] + p[pre + "mlp.c_proj.bias"]
        w1 = p["model.layers.%d.input_layernorm.weight" % n]
        w2 = p["model.layers.%d.post_attention_layernorm.weight" % n]
        if r["norm"] == "pre":
            x = x + self._attn(n, rmsnorm(x, w1, eps), pos, record)
            return x + self._ffn(n, rmsnorm(x, w2, eps))
        x = rmsnorm(x + self._attn(n, x, pos, record), w1, eps)
        return rmsnorm(x + self._ffn(n, x), w2, eps)

    def _ffn(self, n, h):
        r, p = self.ref.r, self.ref.p
        pre = "model.layers.%d.mlp." % n
        up = h @ p[pre + "up_proj.weight"].T
        if r["ffn"] in GATED:
            z = _act(GATED[r["ffn"]], h @ p[pre + "gate_proj.weight"].T) * up
        else:
            z = _act(PLAIN[r["ffn"]], up)
        return z @ p[pre + "down_proj.weight"].T

    def _attn(self, layer, h, pos, record):
        r, p = self.ref.r, self.ref.p
        H, Hkv, D, C = r["H"], r["Hkv"], r["D"], r["C"]
        o = r["o"]
        n = h.shape[0]
        if r["family"] == "gpt2":
            pre = "h.%d.attn." % layer
            qkv = h @ p[pre + "c_attn.weight"] + p[pre + "c_attn.bias"]
            q, k, v = (t.reshape(n, -1, D) for t in qkv.split(C, dim=-1))
            extra = {x: p[pre + x] for x in ("k_bias", "v_bias", "sinks", "relative_bias")
                     if pre + x in p}
        else:
            pre = "model.layers.%d.self_attn." % layer
            q = (h @ p[pre + "q_proj.weight"].T).view(n, H, D)
            k = (h @ p[pre + "k_proj.weight"].T).view(n, Hkv, D)
            v = (h @ p[pre + "v_proj.weight"].T).view(n, Hkv, D)
            extra = {x: p[pre + x] for x in ("k_bias", "v_bias", "sinks", "relative_bias")
                     if pre + x in p}
        # the cache: keys before RoPE (rotated below at the position the rule gives), values
        self.k[layer] = torch.cat([self.k[layer], k])
        self.v[layer] = torch.cat([self.v[layer], v])
        rows, outs = [], []
        for i in range(n):
            pq = pos[i]
            keys = self._keys_for(pq)
            R = keys.index(pq)
            ranks = list(range(len(keys)))
            idx = torch.tensor(keys, dtype=torch.int64)
            kk, vv = self.k[layer][idx], self.v[layer][idx]
            qq = q[i:i + 1]
            if r["pos"] == "rope":
                # window keys keep their absolute rotation; re-rotated sinks sit at p - (R - r)
                eff = [pq - (R - rk) for rk in ranks]
                qq = rope_at(qq, [pq], r["theta"])
                kk = rope_at(kk, eff, r["theta"])
            if r["kernel"]:
                w1, w2 = p[pre + "kernel_mlp1.weight"], p[pre + "kernel_mlp2.weight"]
                qq = torch.relu(qq @ w1.T) @ w2.T
                kk = torch.relu(kk @ w1.T) @ w2.T
            vis = visibility_at(o, [R], ranks)
            out, A_hat = attend(o, qq, kk, vv, extra, [R], ranks, vis)
            outs.append(out.reshape(1, H * D))
            rows.append((A_hat[:, 0, :], keys))
        record.append(rows)
        att = torch.cat(outs)
        if r["family"] == "gpt2":
            return att @ p[pre + "c_proj.weight"] + p[pre + "c_proj.bias"]
        return att @ p[pre + "o_proj.weight"].T

    # -- the metric's decoding record

    def sink_share(self, call, n_sink):
        """(L, H) share of attention on stream positions < n_sink, averaged over the rows of
        record `call` (the virtual key, if any, is column 0 of A_hat and no sink slot)."""
        kb = self.ref.r["o"]["kbias"] is not None
        out = []
        for rows in self.records[call]:
            acc = 0.0
            for A_hat, keys in rows:
                cols = [c + (1 if kb else 0) for c, x in enumerate(keys) if x < n_sink]
                acc = acc + A_hat[:, cols].sum(dim=-1)
            out.append((acc / len(rows)).numpy())
        return np.stack(out)
