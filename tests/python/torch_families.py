"""Float64 PyTorch models of the HF families the library loads, written from each family's
published architecture (transformers is not installed here), reading parameters by their HF
names and layouts exactly as the checkpoints store them:

- llama, qwen2, mistral (LlamaForCausalLM layout): RMSNorm, rotate-half RoPE on the whole head,
  SwiGLU MLP, grouped-query attention; qwen2 adds q/k/v biases, llama's attention_bias q/k/v/o
  biases and mlp_bias the MLP's; mistral's sliding_window lets query t see keys j > t - W.
- gpt_neox (Pythia): LayerNorm with bias, query_key_value fused with rows per head [q; k; v]
  (the output viewed as (heads, 3 * head_dim)), rotate-half RoPE on the first
  int(head_dim * rotary_pct) dims only, inverse frequencies over those dims, exact (erf) GELU,
  and the parallel residual x + attn(ln1(x)) + mlp(ln2(x)) (use_parallel_residual).
- opt: learned positions read at row p + 2, LayerNorm before (do_layer_norm_before) or after
  each residual sum, ReLU MLP fc1/fc2, biases everywhere, no final norm when post-norm, the
  head tied to embed_tokens.

forward(cfg, params, tokens) -> (logits (B, T, V), attention maps per layer (B, H, T, T)).
"""

import math

import torch
import torch.nn.functional as F


def _rms(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def _ln(x, w, b, eps):
    m = x.mean(-1, keepdim=True)
    v = ((x - m) ** 2).mean(-1, keepdim=True)
    return (x - m) / torch.sqrt(v + eps) * w + b


def _lin(x, params, prefix, bias):
    y = x @ params[prefix + ".weight"].T
    if bias:
        y = y + params[prefix + ".bias"]
    return y


def _rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def _rope(x, rot, theta):
    """x (B, H, T, D): the first rot dims of each head rotated at positions 0..T-1."""
    T = x.shape[-2]
    inv = 1.0 / (theta ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    emb = torch.cat([ang, ang], dim=-1)
    xr, xp = x[..., :rot], x[..., rot:]
    xr = xr * torch.cos(emb) + _rotate_half(xr) * torch.sin(emb)
    return torch.cat([xr, xp], dim=-1)


def _attend(q, k, v, window=None):
    """q (B, H, T, D), k and v (B, Hkv, T, D): causal softmax attention (window: keys
    j > t - W), grouped-query heads sharing keys. Returns (out (B, T, H*D), map)."""
    B, H, T, D = q.shape
    rep = H // k.shape[1]
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    s = q @ k.transpose(-1, -2) / math.sqrt(D)
    t = torch.arange(T)
    visible = t[None, :] <= t[:, None]
    if window:
        visible = visible & (t[None, :] > t[:, None] - window)
    s = s.masked_fill(~visible, float("-inf"))
    a = torch.softmax(s, dim=-1)
    return (a @ v).transpose(1, 2).reshape(B, T, H * D), a


def _heads(x, n, D):
    B, T, _ = x.shape
    return x.view(B, T, n, D).transpose(1, 2)


def _llama(cfg, p, x):
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads", H)
    D = C // H
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    qkv_bias = cfg["model_type"] == "qwen2" or cfg.get("attention_bias", False)
    o_bias = cfg["model_type"] == "llama" and cfg.get("attention_bias", False)
    mlp_bias = cfg.get("mlp_bias", False)
    window = cfg.get("sliding_window") if cfg["model_type"] == "mistral" else None
    maps = []
    for l in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % l
        h = _rms(x, p[pre + "input_layernorm.weight"], eps)
        q = _rope(_heads(_lin(h, p, pre + "self_attn.q_proj", qkv_bias), H, D), D, theta)
        k = _rope(_heads(_lin(h, p, pre + "self_attn.k_proj", qkv_bias), Hkv, D), D, theta)
        v = _heads(_lin(h, p, pre + "self_attn.v_proj", qkv_bias), Hkv, D)
        att, a = _attend(q, k, v, window)
        maps.append(a)
        x = x + _lin(att, p, pre + "self_attn.o_proj", o_bias)
        h = _rms(x, p[pre + "post_attention_layernorm.weight"], eps)
        g = _lin(h, p, pre + "mlp.gate_proj", mlp_bias)
        u = _lin(h, p, pre + "mlp.up_proj", mlp_bias)
        x = x + _lin(F.silu(g) * u, p, pre + "mlp.down_proj", mlp_bias)
    x = _rms(x, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else p["lm_head.weight"]
    return x @ head.T, maps


def _act(name):
    return {"gelu": lambda z: F.gelu(z), "relu": F.relu,
            "gelu_new": lambda z: F.gelu(z, approximate="tanh")}[name]


def _neox(cfg, p, x):
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    D = C // H
    rot = int(D * cfg.get("rotary_pct", 0.25))
    eps = cfg.get("layer_norm_eps", 1e-5)
    theta = cfg.get("rotary_emb_base", 10000.0)
    act = _act(cfg.get("hidden_act", "gelu"))
    parallel = cfg.get("use_parallel_residual", True)
    B, T, _ = x.shape
    maps = []
    for l in range(cfg["num_hidden_layers"]):
        pre = "gpt_neox.layers.%d." % l

        def attention(h):
            qkv = _lin(h, p, pre + "attention.query_key_value", True).view(B, T, H, 3 * D)
            q, k, v = (qkv[..., i * D:(i + 1) * D].transpose(1, 2) for i in range(3))
            att, a = _attend(_rope(q, rot, theta), _rope(k, rot, theta), v)
            maps.append(a)
            return _lin(att, p, pre + "attention.dense", True)

        def mlp(h):
            return _lin(act(_lin(h, p, pre + "mlp.dense_h_to_4h", True)), p,
                        pre + "mlp.dense_4h_to_h", True)

        ln1 = lambda z: _ln(z, p[pre + "input_layernorm.weight"], p[pre + "input_layernorm.bias"], eps)
        ln2 = lambda z: _ln(z, p[pre + "post_attention_layernorm.weight"],
                            p[pre + "post_attention_layernorm.bias"], eps)
        if parallel:
            x = mlp(ln2(x)) + attention(ln1(x)) + x
        else:
            x = x + attention(ln1(x))
            x = x + mlp(ln2(x))
    x = _ln(x, p["gpt_neox.final_layer_norm.weight"], p["gpt_neox.final_layer_norm.bias"], eps)
    return x @ p["embed_out.weight"].T, maps


def _opt(cfg, p, x):
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    D = C // H
    pre_norm = cfg.get("do_layer_norm_before", True)
    act = _act(cfg.get("activation_function", "relu"))
    T = x.shape[1]
    x = x + p["model.decoder.embed_positions.weight"][2:T + 2]
    maps = []
    for l in range(cfg["num_hidden_layers"]):
        pre = "model.decoder.layers.%d." % l
        ln1 = lambda z: _ln(z, p[pre + "self_attn_layer_norm.weight"], p[pre + "self_attn_layer_norm.bias"], 1e-5)
        ln2 = lambda z: _ln(z, p[pre + "final_layer_norm.weight"], p[pre + "final_layer_norm.bias"], 1e-5)
        h = ln1(x) if pre_norm else x
        q = _heads(_lin(h, p, pre + "self_attn.q_proj", True), H, D)
        k = _heads(_lin(h, p, pre + "self_attn.k_proj", True), H, D)
        v = _heads(_lin(h, p, pre + "self_attn.v_proj", True), H, D)
        att, a = _attend(q, k, v)
        maps.append(a)
        x = x + _lin(att, p, pre + "self_attn.out_proj", True)
        if not pre_norm:
            x = ln1(x)
        h = ln2(x) if pre_norm else x
        x = x + _lin(act(_lin(h, p, pre + "fc1", True)), p, pre + "fc2", True)
        if not pre_norm:
            x = ln2(x)
    if pre_norm:
        x = _ln(x, p["model.decoder.final_layer_norm.weight"], p["model.decoder.final_layer_norm.bias"], 1e-5)
    return x @ p["model.decoder.embed_tokens.weight"].T, maps


def _rope_at(x, pos, rot, theta):
    """x (..., D) rotated in its first rot dims at the positions pos (broadcast over x[..., 0])."""
    inv = 1.0 / (theta ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot))
    ang = torch.as_tensor(pos, dtype=torch.float64)[..., None] * inv
    emb = torch.cat([ang, ang], dim=-1)
    xr, xp = x[..., :rot], x[..., rot:]
    return torch.cat([xr * torch.cos(emb) + _rotate_half(xr) * torch.sin(emb), xp], dim=-1)


def neox_sink_stream(cfg, p, tokens, n_sink, window):
    """GPT-NeoX decoding one token at a time through a StreamingLLM sink cache: query t sees
    the first n_sink positions and the last `window`; keys keep the rotation of their position,
    except the sink keys, re-rotated so that their distance to the query is their distance in
    the cache (rank). Returns (T, V) logits of one sequence (tokens: T ids)."""
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    D = C // H
    rot = int(D * cfg.get("rotary_pct", 0.25))
    eps, theta = cfg.get("layer_norm_eps", 1e-5), cfg.get("rotary_emb_base", 10000.0)
    act = _act(cfg.get("hidden_act", "gelu"))
    raw_k = [[] for _ in range(cfg["num_hidden_layers"])]  # per layer: (H, D) keys before RoPE
    vals = [[] for _ in range(cfg["num_hidden_layers"])]
    out = []
    for t, tok in enumerate(tokens):
        x = p["gpt_neox.embed_in.weight"][int(tok)]
        kept = list(range(t + 1)) if t < n_sink + window else \
            list(range(n_sink)) + list(range(t - window + 1, t + 1))
        R = len(kept) - 1
        for l in range(cfg["num_hidden_layers"]):
            pre = "gpt_neox.layers.%d." % l
            h = _ln(x, p[pre + "input_layernorm.weight"], p[pre + "input_layernorm.bias"], eps)
            qkv = _lin(h, p, pre + "attention.query_key_value", True).view(H, 3 * D)
            raw_k[l].append(qkv[:, D:2 * D])
            vals[l].append(qkv[:, 2 * D:])
            q = _rope_at(qkv[:, :D], t, rot, theta)
            evicted = t >= n_sink + window
            kpos = [t - (R - r) if evicted and j < n_sink else j for r, j in enumerate(kept)]
            K = torch.stack([_rope_at(raw_k[l][j], kp, rot, theta) for j, kp in zip(kept, kpos)], 1)
            V_ = torch.stack([vals[l][j] for j in kept], 1)  # (H, n, D)
            a = torch.softmax((K @ q[:, :, None])[..., 0] / math.sqrt(D), dim=-1)
            att = (a[:, None, :] @ V_)[:, 0, :].reshape(C)
            attn = _lin(att, p, pre + "attention.dense", True)
            h2 = _ln(x, p[pre + "post_attention_layernorm.weight"], p[pre + "post_attention_layernorm.bias"], eps)
            mlp = _lin(act(_lin(h2, p, pre + "mlp.dense_h_to_4h", True)), p, pre + "mlp.dense_4h_to_h", True)
            x = x + attn + mlp
        x = _ln(x, p["gpt_neox.final_layer_norm.weight"], p["gpt_neox.final_layer_norm.bias"], eps)
        out.append(x @ p["embed_out.weight"].T)
    return torch.stack(out)


_EMBED = {"llama": "model.embed_tokens.weight", "qwen2": "model.embed_tokens.weight",
          "mistral": "model.embed_tokens.weight", "gpt_neox": "gpt_neox.embed_in.weight",
          "opt": "model.decoder.embed_tokens.weight"}


def forward(cfg, params, tokens):
    """params: HF name -> float64 tensor (requires_grad as the caller wants)."""
    mt = cfg["model_type"]
    x = params[_EMBED[mt]][torch.as_tensor(tokens, dtype=torch.long)]
    body = _neox if mt == "gpt_neox" else _opt if mt == "opt" else _llama
    return body(cfg, params, x)


def _linear(s, name, out, inp, bias):
    s[name + ".weight"] = (out, inp)
    if bias:
        s[name + ".bias"] = (out,)


def _layernorm(s, name, C):
    s[name + ".weight"] = (C,)
    s[name + ".bias"] = (C,)


def param_shapes(cfg):
    """HF name -> shape of every tensor a checkpoint of cfg holds (the tied head excluded)."""
    mt, C, L = cfg["model_type"], cfg["hidden_size"], cfg["num_hidden_layers"]
    V, H = cfg["vocab_size"], cfg["num_attention_heads"]
    D = C // H
    s = {}
    if mt == "gpt_neox":
        F_ = cfg["intermediate_size"]
        s["gpt_neox.embed_in.weight"] = (V, C)
        for l in range(L):
            pre = "gpt_neox.layers.%d." % l
            _layernorm(s, pre + "input_layernorm", C)
            _layernorm(s, pre + "post_attention_layernorm", C)
            _linear(s, pre + "attention.query_key_value", 3 * C, C, True)
            _linear(s, pre + "attention.dense", C, C, True)
            _linear(s, pre + "mlp.dense_h_to_4h", F_, C, True)
            _linear(s, pre + "mlp.dense_4h_to_h", C, F_, True)
        _layernorm(s, "gpt_neox.final_layer_norm", C)
        s["embed_out.weight"] = (V, C)
        return s
    if mt == "opt":
        F_ = cfg["ffn_dim"]
        s["model.decoder.embed_tokens.weight"] = (V, C)
        s["model.decoder.embed_positions.weight"] = (cfg["max_position_embeddings"] + 2, C)
        for l in range(L):
            pre = "model.decoder.layers.%d." % l
            for n in ("k_proj", "v_proj", "q_proj", "out_proj"):
                _linear(s, pre + "self_attn." + n, C, C, True)
            _layernorm(s, pre + "self_attn_layer_norm", C)
            _linear(s, pre + "fc1", F_, C, True)
            _linear(s, pre + "fc2", C, F_, True)
            _layernorm(s, pre + "final_layer_norm", C)
        if cfg.get("do_layer_norm_before", True):
            _layernorm(s, "model.decoder.final_layer_norm", C)
        return s
    F_, Hkv = cfg["intermediate_size"], cfg.get("num_key_value_heads", H)
    qkv_bias = mt == "qwen2" or cfg.get("attention_bias", False)
    o_bias = mt == "llama" and cfg.get("attention_bias", False)
    mlp_bias = cfg.get("mlp_bias", False)
    s["model.embed_tokens.weight"] = (V, C)
    for l in range(L):
        pre = "model.layers.%d." % l
        s[pre + "input_layernorm.weight"] = (C,)
        for n, out in (("q_proj", H * D), ("k_proj", Hkv * D), ("v_proj", Hkv * D)):
            _linear(s, pre + "self_attn." + n, out, C, qkv_bias)
        _linear(s, pre + "self_attn.o_proj", C, H * D, o_bias)
        s[pre + "post_attention_layernorm.weight"] = (C,)
        _linear(s, pre + "mlp.gate_proj", F_, C, mlp_bias)
        _linear(s, pre + "mlp.up_proj", F_, C, mlp_bias)
        _linear(s, pre + "mlp.down_proj", C, F_, mlp_bias)
    s["model.norm.weight"] = (C,)
    if not cfg.get("tie_word_embeddings", False):
        s["lm_head.weight"] = (V, C)
    return s


def is_norm_weight(name):
    return name.endswith("norm.weight") or name.endswith("layernorm.weight") or \
        name.endswith("layer_norm.weight")
