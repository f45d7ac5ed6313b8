"""An independent PyTorch model of the llama and gpt2 decoder LMs (docs/api.md,
docs/formats.md): the oracle of test_model.py.

Built from the same config dict the library reads and from parameters given by HF name; no
nn.Module, just the formulas written out with plain tensor operations, in float64 by default,
so that torch autograd gives the reference gradients.

    ref = TorchModel(config, params)          # params: dict HF name -> array
    logits = ref.forward(tokens)              # (B, T, V) tensor
    loss = ref.loss(tokens, targets)          # scalar tensor; targets < 0 ignored
    param_shapes(config)                      # dict HF name -> shape the model must have

The attention core follows docs/attention.md; the spec parser and the visibility mask come
from reference.py (the attention op's oracle).
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from reference import parse_spec, visibility

GATED = {"swiglu": "silu", "geglu": "gelu", "reglu": "relu"}
PLAIN = {"gelu": "gelu", "relu": "relu", "swish": "silu"}


def _act(kind, x):
    if kind == "silu":
        return x * torch.sigmoid(x)
    if kind == "gelu":  # the tanh form, written out
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if kind == "relu":
        return torch.relu(x)
    raise AssertionError(kind)


def resolve(config):
    """The config dict with every default filled in, as a flat dict."""
    c = dict(config)
    a = dict(c.get("attnsink") or {})
    family = c.get("model_type")
    if family is None:
        family = "gpt2" if "n_embd" in c else "llama"
    r = {"family": family}
    if family == "llama":
        r.update(V=c["vocab_size"], C=c["hidden_size"], F=c["intermediate_size"],
                 L=c["num_hidden_layers"], H=c["num_attention_heads"],
                 eps=c.get("rms_norm_eps", 1e-6), theta=c.get("rope_theta", 10000.0),
                 max_pos=c["max_position_embeddings"],
                 tie=bool(c.get("tie_word_embeddings", False)))
        r["Hkv"] = c.get("num_key_value_heads") or r["H"]
        r.update(attn=a.get("attn") or "softmax", ffn=a.get("ffn") or "swiglu",
                 norm=a.get("norm_position") or "pre", pos=a.get("positions") or "rope",
                 sink_token=bool(a.get("sink_token", False)))
    elif family == "gpt2":
        C = c["n_embd"]
        r.update(V=c["vocab_size"], C=C, F=c.get("n_inner") or 4 * C, L=c["n_layer"],
                 H=c["n_head"], eps=c.get("layer_norm_epsilon", 1e-5),
                 max_pos=c.get("n_positions") or c["n_ctx"], tie=True)
        r["Hkv"] = r["H"]
        r.update(attn=a.get("attn") or "softmax", ffn=a.get("ffn") or "gelu",
                 norm=a.get("norm_position") or "pre", pos=a.get("positions") or "learned",
                 sink_token=bool(a.get("sink_token", False)))
        # Only the family's own architecture (plus the attention spec) is modelled here.
        assert r["ffn"] in PLAIN and r["norm"] == "pre" and r["pos"] == "learned", r
        assert not r["sink_token"]
    else:
        raise AssertionError(family)
    r["D"] = r["C"] // r["H"]
    spec = r["attn"]
    if r["pos"] == "alibi":
        spec += ",alibi=1"
    r["spec"] = spec
    r["o"] = parse_spec(spec, r["D"])
    return r


def param_shapes(config):
    """dict HF name -> shape of every parameter the model has (llama or gpt2 layout)."""
    r = resolve(config)
    V, C, Fi, L, H, Hkv, D = r["V"], r["C"], r["F"], r["L"], r["H"], r["Hkv"], r["D"]
    o = r["o"]
    s = {}
    if r["family"] == "gpt2":
        s["wte.weight"] = (V, C)
        s["wpe.weight"] = (r["max_pos"], C)
        for n in range(L):
            p = "h.%d." % n
            s[p + "ln_1.weight"] = (C,)
            s[p + "ln_1.bias"] = (C,)
            s[p + "attn.c_attn.weight"] = (C, 3 * C)
            s[p + "attn.c_attn.bias"] = (3 * C,)
            s[p + "attn.c_proj.weight"] = (C, C)
            s[p + "attn.c_proj.bias"] = (C,)
            s[p + "ln_2.weight"] = (C,)
            s[p + "ln_2.bias"] = (C,)
            s[p + "mlp.c_fc.weight"] = (C, Fi)
            s[p + "mlp.c_fc.bias"] = (Fi,)
            s[p + "mlp.c_proj.weight"] = (Fi, C)
            s[p + "mlp.c_proj.bias"] = (C,)
        s["ln_f.weight"] = (C,)
        s["ln_f.bias"] = (C,)
        return s
    s["model.embed_tokens.weight"] = (V, C)
    if r["pos"] == "learned":
        s["model.embed_positions.weight"] = (r["max_pos"], C)
    if r["sink_token"]:
        s["model.sink_token"] = (C,)
    for n in range(L):
        p = "model.layers.%d." % n
        s[p + "input_layernorm.weight"] = (C,)
        s[p + "self_attn.q_proj.weight"] = (H * D, C)
        s[p + "self_attn.k_proj.weight"] = (Hkv * D, C)
        s[p + "self_attn.v_proj.weight"] = (Hkv * D, C)
        s[p + "self_attn.o_proj.weight"] = (C, H * D)
        if o["kbias"] is not None:
            s[p + "self_attn.k_bias"] = (1 if o["kbias"] == "shared" else H, D)
        if o["vbias"] is not None:
            s[p + "self_attn.v_bias"] = (1 if o["vbias"] == "shared" else H, D)
        if o["sink"] == "head":
            s[p + "self_attn.sinks"] = (H,)
        s[p + "post_attention_layernorm.weight"] = (C,)
        if r["ffn"] in GATED:
            s[p + "mlp.gate_proj.weight"] = (Fi, C)
        s[p + "mlp.up_proj.weight"] = (Fi, C)
        s[p + "mlp.down_proj.weight"] = (C, Fi)
    if r["norm"] == "pre":
        s["model.norm.weight"] = (C,)
    if not r["tie"]:
        s["lm_head.weight"] = (V, C)
    return s


def is_norm_weight(name):
    """Norm weights (RMSNorm / LayerNorm gains): the tests set them around 1, not around 0."""
    return name.endswith("layernorm.weight") or name in ("model.norm.weight", "ln_f.weight") \
        or name.endswith("ln_1.weight") or name.endswith("ln_2.weight")


def decays(name, shape):
    """AdamW weight decay applies: 2-D '.weight' matrices, embeddings included."""
    return name.endswith(".weight") and len(shape) == 2


# ------------------------------------------------------------------------ the layers

def rmsnorm(x, w, eps):
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def layernorm(x, w, b, eps):
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def rope(x, theta):
    """Rotate-half RoPE of x (B, T, nh, D) at positions 0 .. T-1 (HF LLaMA)."""
    B, T, nh, D = x.shape
    inv_freq = 1.0 / theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = torch.arange(T, dtype=torch.float64).view(T, 1) * inv_freq.view(1, D // 2)
    ang = torch.cat([ang, ang], dim=-1).to(x.dtype)  # (T, D)
    cos = ang.cos().view(1, T, 1, D)
    sin = ang.sin().view(1, T, 1, D)
    x1, x2 = x[..., :D // 2], x[..., D // 2:]
    rot = torch.cat([-x2, x1], dim=-1)
    return x * cos + rot * sin


def sinusoids(T, C, dtype):
    """pe[p, 2i] = sin(p / 10000^(2i/C)), pe[p, 2i+1] = cos(p / 10000^(2i/C))."""
    pe = torch.zeros(T, C, dtype=torch.float64)
    p = torch.arange(T, dtype=torch.float64).view(T, 1)
    two_i = torch.arange(0, C, 2, dtype=torch.float64)
    ang = p / 10000.0 ** (two_i / C)
    pe[:, 0::2] = torch.sin(ang)
    pe[:, 1::2] = torch.cos(ang[:, :C // 2])
    return pe.to(dtype)


def _per_head(p, H):
    return p.expand(H, p.shape[1]) if p.shape[0] == 1 else p


def attention(o, q, k, v, extra):
    """docs/attention.md, dense: q (B,T,H,D), k and v (B,T,Hkv,D) -> (B,T,H,D).
    extra: dict with 'k_bias', 'v_bias', 'sinks' tensors as the spec has them."""
    B, T, H, D = q.shape
    Hkv = k.shape[2]
    dt = q.dtype
    Q = q.permute(0, 2, 1, 3)
    K = k.permute(0, 2, 1, 3).repeat_interleave(H // Hkv, dim=1)
    V = v.permute(0, 2, 1, 3).repeat_interleave(H // Hkv, dim=1)
    phi = (lambda x: F.elu(x) + 1.0) if o["base"] == "elu-kernel" else (lambda x: x)
    s = o["scale"] * (phi(Q) @ phi(K).transpose(-1, -2)) + o["bias"]
    if o["alibi"]:
        slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / H) for h in range(H)], dtype=dt)
        dist = (torch.arange(T).view(1, T) - torch.arange(T).view(T, 1)).to(dt)  # j - t
        s = s + slopes.view(1, H, 1, 1) * dist
    vis = visibility(o, T).view(1, 1, T, T).expand(B, H, T, T)
    kb = o["kbias"] is not None
    vstar = _per_head(extra["v_bias"], H) if o["vbias"] is not None else None
    if kb:
        kstar = _per_head(extra["k_bias"], H)
        s0 = o["scale"] * torch.einsum("bhtd,hd->bht", phi(Q), kstar).unsqueeze(-1) + o["bias"]
        s = torch.cat([s0, s], dim=-1)
        vis = torch.cat([torch.ones(B, H, T, 1, dtype=torch.bool), vis], dim=-1)
    if o["base"] == "softmax":
        logit = torch.where(vis, s, torch.tensor(-math.inf, dtype=dt))
        if o["sink"] is not None:
            col = (extra["sinks"].view(1, H, 1, 1).expand(B, H, T, 1) if o["sink"] == "head"
                   else torch.zeros(B, H, T, 1, dtype=dt))
            A = torch.softmax(torch.cat([logit, col], dim=-1), dim=-1)[..., :-1]
        else:
            A = torch.softmax(logit, dim=-1)
        A = o["alpha"] * A
    else:
        if o["base"] == "sigmoid":
            a = torch.sigmoid(s)
        elif o["base"] == "elu":
            a = F.elu(s) + 1.0
        else:
            a = s
        a = a * vis.to(dt)
        r = a.sum(dim=-1, keepdim=True)
        A = {"none": lambda: a, "sum": lambda: a / (r + 1e-8),
             "clamp": lambda: a / torch.clamp(r.abs(), min=1.0)}[o["norm"]]()
    if kb:
        out = A[..., 1:] @ V
        if vstar is not None:
            out = out + A[..., :1] * vstar.view(1, H, 1, D)
    else:
        out = A @ V
        if vstar is not None:
            out = out + vstar.view(1, H, 1, D)
    return out.permute(0, 2, 1, 3)


# ------------------------------------------------------------------------- the model

class TorchModel:
    """The model as plain torch formulas. `params` maps HF names to arrays (the library's
    names; GPT-2 names without 'transformer.'); each becomes a leaf tensor of `dtype` with
    requires_grad, in self.p."""

    def __init__(self, config, params, dtype=torch.float64):
        self.r = resolve(config)
        self.dtype = dtype
        want = param_shapes(config)
        assert set(params) == set(want), (sorted(set(params) ^ set(want)))
        self.p = {}
        for name, shape in want.items():
            a = np.asarray(params[name], dtype=np.float64)
            assert a.shape == shape, (name, a.shape, shape)
            self.p[name] = torch.tensor(a, dtype=dtype, requires_grad=True)

    def _tokens(self, tokens):
        return torch.as_tensor(np.asarray(tokens, dtype=np.int64))

    # -- llama family

    def _llama_attn(self, n, h):
        r, p = self.r, self.p
        B, T, _ = h.shape
        H, Hkv, D = r["H"], r["Hkv"], r["D"]
        pre = "model.layers.%d.self_attn." % n
        q = (h @ p[pre + "q_proj.weight"].T).view(B, T, H, D)
        k = (h @ p[pre + "k_proj.weight"].T).view(B, T, Hkv, D)
        v = (h @ p[pre + "v_proj.weight"].T).view(B, T, Hkv, D)
        if r["pos"] == "rope":
            q, k = rope(q, r["theta"]), rope(k, r["theta"])
        extra = {x: p[pre + x] for x in ("k_bias", "v_bias", "sinks") if pre + x in p}
        out = attention(r["o"], q, k, v, extra).reshape(B, T, H * D)
        return out @ p[pre + "o_proj.weight"].T

    def _llama_ffn(self, n, h):
        r, p = self.r, self.p
        pre = "model.layers.%d.mlp." % n
        up = h @ p[pre + "up_proj.weight"].T
        if r["ffn"] in GATED:
            z = _act(GATED[r["ffn"]], h @ p[pre + "gate_proj.weight"].T) * up
        else:
            z = _act(PLAIN[r["ffn"]], up)
        return z @ p[pre + "down_proj.weight"].T

    def _llama_hidden(self, tok):
        r, p = self.r, self.p
        B, T = tok.shape
        x = p["model.embed_tokens.weight"][tok]  # (B, T, C)
        if r["sink_token"]:
            # The sink token is position 0 of every sequence; real tokens follow at 1 .. T.
            x = torch.cat([p["model.sink_token"].view(1, 1, -1).expand(B, 1, r["C"]), x], dim=1)
        Tx = x.shape[1]
        if r["pos"] == "sinusoidal":
            x = x + sinusoids(Tx, r["C"], self.dtype)
        elif r["pos"] == "learned":
            x = x + p["model.embed_positions.weight"][:Tx]
        eps = r["eps"]
        for n in range(r["L"]):
            w1 = p["model.layers.%d.input_layernorm.weight" % n]
            w2 = p["model.layers.%d.post_attention_layernorm.weight" % n]
            if r["norm"] == "pre":
                x = x + self._llama_attn(n, rmsnorm(x, w1, eps))
                x = x + self._llama_ffn(n, rmsnorm(x, w2, eps))
            else:
                x = rmsnorm(x + self._llama_attn(n, x), w1, eps)
                x = rmsnorm(x + self._llama_ffn(n, x), w2, eps)
        if r["norm"] == "pre":
            x = rmsnorm(x, p["model.norm.weight"], eps)
        x = x[:, Tx - T:]
        head = p["model.embed_tokens.weight"] if r["tie"] else p["lm_head.weight"]
        return x @ head.T

    # -- gpt2 family

    def _gpt2_logits(self, tok):
        r, p = self.r, self.p
        B, T = tok.shape
        C, H, D, eps = r["C"], r["H"], r["D"], r["eps"]
        x = p["wte.weight"][tok] + p["wpe.weight"][:T]
        for n in range(r["L"]):
            pre = "h.%d." % n
            h = layernorm(x, p[pre + "ln_1.weight"], p[pre + "ln_1.bias"], eps)
            qkv = h @ p[pre + "attn.c_attn.weight"] + p[pre + "attn.c_attn.bias"]  # Conv1D
            q, k, v = (t.reshape(B, T, H, D) for t in qkv.split(C, dim=-1))
            a = attention(r["o"], q, k, v, {}).reshape(B, T, C)
            x = x + a @ p[pre + "attn.c_proj.weight"] + p[pre + "attn.c_proj.bias"]
            h = layernorm(x, p[pre + "ln_2.weight"], p[pre + "ln_2.bias"], eps)
            z = _act(PLAIN[r["ffn"]], h @ p[pre + "mlp.c_fc.weight"] + p[pre + "mlp.c_fc.bias"])
            x = x + z @ p[pre + "mlp.c_proj.weight"] + p[pre + "mlp.c_proj.bias"]
        x = layernorm(x, p["ln_f.weight"], p["ln_f.bias"], eps)
        return x @ p["wte.weight"].T

    # -- entry points

    def forward(self, tokens):
        tok = self._tokens(tokens)
        if self.r["family"] == "gpt2":
            return self._gpt2_logits(tok)
        return self._llama_hidden(tok)

    def loss(self, tokens, targets):
        """Mean cross-entropy over targets >= 0."""
        logits = self.forward(tokens)
        tgt = self._tokens(targets).reshape(-1)
        lp = torch.log_softmax(logits.reshape(-1, logits.shape[-1]), dim=-1)
        keep = tgt >= 0
        return -lp[keep.nonzero().view(-1), tgt[keep]].mean()

    def grads(self):
        """dict name -> numpy gradient (zeros where autograd left None)."""
        return {n: (t.grad.detach().numpy().copy() if t.grad is not None
                    else np.zeros(tuple(t.shape))) for n, t in self.p.items()}

    def zero_grad(self):
        for t in self.p.values():
            t.grad = None
