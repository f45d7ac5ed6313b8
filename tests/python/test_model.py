"""attnsink.Model and attnsink.AdamW against an independent PyTorch model (torch_model.py).

For each architecture (llama with GQA, llama tied, gpt2, and every variant of the study: FFN
kind, norm position, positions, attention spec, sink token) a tiny model is created through the
library, its parameters are set to random values through Model.set_parameter (std 0.2, norm
gains 1 + 0.1 N(0,1), so the comparison is not dominated by the initialisation), and the
logits, the loss and EVERY parameter gradient are compared with torch autograd on the same
formulas in float64.

Tolerance. For a tensor, err = max|lib - ref| / max|ref| (an infinity-norm relative error, as
in test_attention.py: elementwise relative errors are meaningless where entries cross zero)
and err <= 1e-4 is required. The library computes in float32 on float32 parameters; the
reference computes in float64 on the same float32 values, so the difference is float32
rounding through a few layers of D- and C-long dot products: ~1e-6 here. A real mistake (a
missed term, a wrong mask entry, a transposed weight, a wrong RoPE pairing) gives 1e-2 and
more. The loss is compared as |lib - ref| / |ref| <= 1e-5 (a single mean of log-probabilities).

AdamW: 20 steps on fresh batches against torch.optim.AdamW with the same two parameter groups
(weight decay on 2-D '.weight' matrices, embeddings included; none on norms, biases, k_bias,
v_bias, sinks, sink_token) and torch.nn.utils.clip_grad_norm_(..., 1.0). The torch side runs in
float64: it is then the exact trajectory from the same float32 starting point, and the
comparison measures only the library's own rounding. Parameters after 20 steps must be within
1e-4 (per tensor, relative to max|ref|), the gradient norm of every step within 1e-4 relative.
(float32 in torch would also pass, but would measure the difference of two roundings.)

Save/load and resume are bitwise (np.array_equal); the error cases check the exception type
and that the message names the offending token, key or tensor.
"""

import gc
import json
import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

import attnsink
from torch_model import TorchModel, decays, is_norm_weight, param_shapes

TOL = 1e-4
LOSS_TOL = 1e-5
E2E_TOL = 1e-3

torch.set_num_threads(1)

V, C, L, H, FF, T, B, MAXPOS = 37, 32, 2, 4, 48, 9, 2, 16


def llama(kv=2, tie=False, **attnsink_opts):
    cfg = {
        "model_type": "llama", "vocab_size": V, "hidden_size": C, "intermediate_size": FF,
        "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": kv,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": MAXPOS,
        "tie_word_embeddings": tie,
    }
    if attnsink_opts:
        cfg["attnsink"] = dict(attnsink_opts)
    return cfg


def gpt2(n_inner=FF):
    return {"model_type": "gpt2", "vocab_size": V, "n_embd": C, "n_layer": L, "n_head": H,
            "n_positions": MAXPOS, "n_inner": n_inner, "layer_norm_epsilon": 1e-5}


CASES = {
    "llama_gqa": llama(),
    "llama_tied": llama(tie=True),
    "llama_mha": llama(kv=4),
    "gpt2": gpt2(),
    "ffn_swiglu": llama(ffn="swiglu"),
    "ffn_geglu": llama(ffn="geglu"),
    "ffn_reglu": llama(ffn="reglu"),
    "ffn_gelu": llama(ffn="gelu"),
    "ffn_relu": llama(ffn="relu"),
    "ffn_swish": llama(ffn="swish"),
    "norm_post": llama(norm_position="post"),
    "pos_nope": llama(positions="nope"),
    "pos_sinusoidal": llama(positions="sinusoidal"),
    "pos_learned": llama(positions="learned"),
    "pos_alibi": llama(positions="alibi"),
    "attn_sigmoid": llama(attn="sigmoid"),
    "attn_kvbias": llama(attn="softmax,kbias=head,vbias=head"),
    "attn_sink": llama(attn="softmax,sink=head"),
    "attn_window3": llama(attn="softmax,window=3"),
    "sink_token": llama(sink_token=True),
    # combinations: the sink token with positions that are not shift-invariant, and the
    # extra attention tensors with post-norm and a tied head
    "sink_token_learned": llama(sink_token=True, positions="learned"),
    "sink_token_sinusoidal": llama(sink_token=True, positions="sinusoidal"),
    "sink_token_alibi_kvbias": llama(sink_token=True, positions="alibi",
                                     attn="softmax,kbias=shared,vbias=head,sink=head"),
    "post_tied_sigmoid_geglu": llama(tie=True, norm_position="post", ffn="geglu",
                                     attn="sigmoid,kbias=head,vbias=head,norm=sum"),
}


# ---------------------------------------------------------------------------- helpers

def rel_err(lib, ref):
    lib = np.asarray(lib, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert lib.shape == ref.shape, (lib.shape, ref.shape)
    if not np.all(np.isfinite(lib)):
        return math.inf
    return float(np.max(np.abs(lib - ref)) / max(float(np.max(np.abs(ref))), 1e-30))


def randomize(m, seed):
    """Random parameters (std 0.2; norm gains around 1) written through set_parameter;
    returns them as the float32 arrays the model now holds."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, a in m.parameters().items():
        if is_norm_weight(name):
            v = 1.0 + 0.1 * rng.standard_normal(a.shape)
        else:
            v = 0.2 * rng.standard_normal(a.shape)
        m.set_parameter(name, v)
        out[name] = v.astype(np.float32)
    return out


def batch(rng, T=T, ignore=True):
    tokens = rng.integers(0, V, size=(B, T))
    targets = rng.integers(0, V, size=(B, T))
    if ignore:
        targets[0, 2] = -1
        targets[1, T - 1] = -1
    return tokens, targets


def make(cfg, seed=1):
    m = attnsink.Model.create(cfg, seed=seed)
    params = randomize(m, seed + 100)
    return m, params


# ------------------------------------------------------------------- safetensors I/O

_NP = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2")}


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, array, dtype) with dtype F32, F16 or BF16 (BF16: the top 16 bits
    of the float32 value). Header padded with spaces to a multiple of 8, data contiguous."""
    header, blobs, off = {}, [], 0
    for name, a, dt in tensors:
        a = np.asarray(a)
        if dt == "BF16":
            b = (np.ascontiguousarray(a, dtype="<f4").view("<u4") >> 16).astype("<u2").tobytes()
        else:
            b = np.ascontiguousarray(a, dtype=_NP[dt]).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    """dict name -> float32 ndarray (F32/F16/BF16), in file order, and the metadata."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        lo, hi = e["data_offsets"]
        raw = data[base + lo:base + hi]
        if e["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4")
        else:
            a = np.frombuffer(raw, _NP[e["dtype"]]).astype(np.float32)
        out[name] = a.reshape(e["shape"])
    return out, meta


def bf16(a):
    """float32 values truncated to bfloat16 (exactly representable both ways)."""
    return (np.asarray(a, dtype="<f4").view("<u4") & np.uint32(0xFFFF0000)).view("<f4")


# ------------------------------------------------------------- the oracle's own sanity

def test_oracle_matches_torch_builtins():
    """The reference's hand-written pieces against torch's own functions."""
    from torch_model import _act, layernorm
    x = torch.randn(5, 7, dtype=torch.float64)
    assert torch.allclose(_act("gelu", x), torch.nn.functional.gelu(x, approximate="tanh"))
    assert torch.allclose(_act("silu", x), torch.nn.functional.silu(x))
    w, b = torch.randn(7, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    assert torch.allclose(layernorm(x, w, b, 1e-5),
                          torch.nn.functional.layer_norm(x, (7,), w, b, 1e-5))
    # the model's differentiable attention core against the attention op's oracle
    from reference import parse_spec, reference
    from torch_model import attention
    rng = np.random.default_rng(0)
    for spec in ("softmax,kbias=head,vbias=head", "softmax,sink=head,alibi=1", "sigmoid",
                 "softmax,window=3", "sigmoid,kbias=shared,vbias=head,norm=sum"):
        q = rng.standard_normal((2, 5, 4, 8))
        k, v = rng.standard_normal((2, 2, 5, 2, 8))
        extra = {"k_bias": rng.standard_normal((4, 8)), "v_bias": rng.standard_normal((4, 8)),
                 "sinks": rng.standard_normal(4)}
        o = parse_spec(spec, 8)
        extra = {n: a for n, a in extra.items()
                 if (n == "k_bias" and o["kbias"]) or (n == "v_bias" and o["vbias"])
                 or (n == "sinks" and o["sink"])}
        if o["kbias"] == "shared":
            extra["k_bias"] = extra["k_bias"][:1]
        want = reference(spec, q, k, v, extra, np.zeros_like(q))["out"]
        got = attention(o, *(torch.tensor(x) for x in (q, k, v)),
                        {n: torch.tensor(a) for n, a in extra.items()})
        assert np.allclose(got.numpy(), want, rtol=1e-12, atol=1e-12), spec
    cfg = llama()
    params = {n: 0.2 * rng.standard_normal(s) for n, s in param_shapes(cfg).items()}
    ref = TorchModel(cfg, params)
    tokens, targets = batch(rng)
    with torch.no_grad():
        logits = ref.forward(tokens)
        want = torch.nn.functional.cross_entropy(logits.reshape(-1, V),
                                                 torch.as_tensor(targets).reshape(-1),
                                                 ignore_index=-1)
        assert torch.allclose(ref.loss(tokens, targets), want)


# ------------------------------------------------- forward, loss, gradients vs torch

@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch(name):
    cfg = CASES[name]
    m, params = make(cfg)
    # the library's parameter list is the architecture's, name for name and shape for shape
    want = param_shapes(cfg)
    got = {n: a.shape for n, a in m.parameters().items()}
    assert got == want, "library-only: %s, reference-only: %s, shapes differ: %s" % (
        sorted(set(got) - set(want)), sorted(set(want) - set(got)),
        sorted(n for n in set(got) & set(want) if got[n] != want[n]))
    for n, a in m.parameters().items():
        assert np.array_equal(a, params[n]), n

    rng = np.random.default_rng(7)
    tokens, targets = batch(rng)
    ref = TorchModel(cfg, params)

    logits = m.forward(tokens)
    assert logits.shape == (B, T, V) and logits.dtype == np.float32
    ref_logits = ref.forward(tokens).detach().numpy()
    assert rel_err(logits, ref_logits) <= TOL, ("logits", rel_err(logits, ref_logits))

    m.zero_grad()
    loss = m.loss(tokens, targets)
    ref_loss = ref.loss(tokens, targets)
    assert isinstance(loss, float)
    assert abs(loss - ref_loss.item()) / abs(ref_loss.item()) <= LOSS_TOL, (loss, ref_loss.item())

    grads = m.backward()
    ref_loss.backward()
    ref_grads = ref.grads()
    assert set(grads) == set(ref_grads)
    errs = {n: rel_err(grads[n], ref_grads[n]) for n in ref_grads}
    bad = {n: e for n, e in errs.items() if not e <= TOL}
    assert not bad, "gradients off (rel err): %s" % bad
    for n, g in grads.items():
        assert g.shape == params[n].shape and g.dtype == np.float32


def test_backward_accumulates_and_zero_grad():
    m, _ = make(CASES["llama_gqa"])
    tokens, targets = batch(np.random.default_rng(3))
    m.zero_grad()
    m.loss(tokens, targets)
    g1 = m.backward()
    m.loss(tokens, targets)
    g2 = m.backward()
    for n in g1:
        assert rel_err(g2[n], 2 * g1[n]) <= 1e-6, n
    m.zero_grad()
    assert all(not np.any(g) for g in m.grads().values())
    # backward without a loss since the last backward: a call out of order
    with pytest.raises(ValueError):
        m.backward()


def test_eval_loss_and_loss_without_ignored():
    m, params = make(CASES["gpt2"])
    tokens, targets = batch(np.random.default_rng(4), ignore=False)
    ref = TorchModel(CASES["gpt2"], params)
    want = ref.loss(tokens, targets).item()
    assert abs(m.eval_loss(tokens, targets) - want) / want <= LOSS_TOL
    assert abs(m.loss(tokens, targets) - want) / want <= LOSS_TOL


# ------------------------------------------------------------------------------ AdamW

ADAMW_CASES = {
    # every kind of parameter: embeddings, projections, head, norms, k_bias, v_bias, sinks,
    # sink token
    "llama_extras": llama(attn="softmax,kbias=head,vbias=head,sink=head", sink_token=True),
    # biases and LayerNorm, tied head
    "gpt2": gpt2(),
}


def _torch_adamw(cfg, params):
    """The float64 reference model and a torch.optim.AdamW over it with the library's two
    groups: decay on 2-D '.weight' matrices (embeddings included), none on the rest."""
    ref = TorchModel(cfg, params, dtype=torch.float64)
    shapes = param_shapes(cfg)
    decay = [t for n, t in ref.p.items() if decays(n, shapes[n])]
    no_decay = [t for n, t in ref.p.items() if not decays(n, shapes[n])]
    assert decay and no_decay
    topt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    return ref, topt


def _zero_grad_entries(cfg, name):
    """Boolean mask of a parameter's entries whose gradient is identically zero by the
    architecture, or None. Softmax is invariant to adding q.b to a whole row of scores, so
    the key part of GPT-2's c_attn.bias has no effect on any output."""
    if cfg.get("model_type") == "gpt2" and name.endswith("attn.c_attn.bias"):
        mask = np.zeros(3 * C, bool)
        mask[C:2 * C] = True
        return mask
    return None


@pytest.mark.parametrize("clip", [1.0, 0.0], ids=["clip1", "noclip"])
@pytest.mark.parametrize("name", list(ADAMW_CASES))
def test_adamw_20_steps_vs_torch_optimizer(name, clip):
    """The optimizer itself: torch.optim.AdamW + clip_grad_norm_ fed the library's own
    gradients every step, so only the update arithmetic is compared (float32 moments in the
    library, float64 in torch): parameters after 20 steps within 1e-4 (measured ~1e-6).
    clip=0 turns clipping off (torch: max_norm=inf)."""
    cfg = ADAMW_CASES[name]
    m, params = make(cfg, seed=5)
    opt = attnsink.AdamW(m, 1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, clip=clip)
    assert opt.steps == 0 and abs(opt.lr - 1e-2) <= 1e-9
    ref, topt = _torch_adamw(cfg, params)
    rng = np.random.default_rng(11)
    clipped = 0
    for step in range(20):
        tokens, targets = batch(rng)
        m.loss(tokens, targets)
        grads = m.backward()
        norm = opt.step()
        # AdamW's step zeroes the gradients it applied
        assert all(not np.any(g) for g in m.grads().values())
        for n, t in ref.p.items():
            t.grad = torch.tensor(grads[n].astype(np.float64))
        ref_norm = torch.nn.utils.clip_grad_norm_(list(ref.p.values()),
                                                  clip if clip > 0 else math.inf).item()
        topt.step()
        clipped += ref_norm > 1.0
        assert abs(norm - ref_norm) / ref_norm <= TOL, (step, norm, ref_norm)
    assert opt.steps == 20
    assert clipped > 0  # norms above 1: with clip=1 the clipping path is taken
    got = m.parameters()
    errs = {n: rel_err(got[n], t.detach().numpy()) for n, t in ref.p.items()}
    bad = {n: e for n, e in errs.items() if not e <= TOL}
    assert not bad, "parameters after 20 steps off (rel err): %s" % bad
    for n in got:  # every tensor moved
        assert not np.array_equal(got[n], params[n]), n


@pytest.mark.parametrize("name", list(ADAMW_CASES))
def test_adamw_20_steps_training_vs_torch(name):
    """End to end: the torch model computes its own float64 gradients. Loss and gradient
    norm of every step within 1e-4; parameters after 20 steps within E2E_TOL = 1e-3.

    Why not 1e-4 here: Adam divides each gradient entry by its own RMS (+ eps = 1e-8), so an
    entry whose gradient sits at float32 resolution (~1e-6 of its tensor's largest entry, e.g.
    1.2e-7 against 0.16 in h.1.attn.c_proj.weight of the gpt2 case, 3e-8 after clipping, about
    3 eps) gets a step of lr * g / (|g| + eps) that float32 rounding of g changes by ~1e-2 of
    lr. Measured on this very run, the library ends 1.2e-4 from the float64 trajectory and
    torch's own float32 AdamW ends 3.2e-4 from it: 1e-4 is below what float32 can reproduce,
    while the optimizer arithmetic is pinned to 1e-4 by the test above and a wrong gradient,
    group or clip would be off by far more than 1e-3. Entries whose gradient is zero by the
    architecture (the key third of GPT-2's c_attn.bias: float64 gives 1e-17, float32 1e-8,
    i.e. eps, so Adam moves them by noise) are left out; they cannot change any output, which
    the per-step loss comparison confirms."""
    cfg = ADAMW_CASES[name]
    m, params = make(cfg, seed=5)
    opt = attnsink.AdamW(m, 1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, clip=1.0)
    ref, topt = _torch_adamw(cfg, params)
    rng = np.random.default_rng(11)
    for step in range(20):
        tokens, targets = batch(rng)
        loss = m.loss(tokens, targets)
        m.backward()
        norm = opt.step()
        topt.zero_grad()
        ref_loss = ref.loss(tokens, targets)
        ref_loss.backward()
        ref_norm = torch.nn.utils.clip_grad_norm_(list(ref.p.values()), 1.0).item()
        topt.step()
        assert abs(loss - ref_loss.item()) / ref_loss.item() <= TOL, (step, loss, ref_loss.item())
        assert abs(norm - ref_norm) / ref_norm <= TOL, (step, norm, ref_norm)
    got = m.parameters()
    errs = {}
    for n, t in ref.p.items():
        g, w = got[n], t.detach().numpy()
        mask = _zero_grad_entries(cfg, n)
        if mask is not None:
            g, w = g[~mask], w[~mask]
        errs[n] = rel_err(g, w)
    bad = {n: e for n, e in errs.items() if not e <= E2E_TOL}
    assert not bad, "parameters after 20 steps off (rel err): %s" % bad


def test_adamw_keeps_model_alive():
    m, _ = make(CASES["llama_gqa"])
    opt = attnsink.AdamW(m, 1e-3)
    tokens, targets = batch(np.random.default_rng(2))
    m.loss(tokens, targets)
    m.backward()
    before = m.parameters()
    del m
    gc.collect()
    assert opt.step() > 0
    after = opt.model.parameters()
    assert any(not np.array_equal(before[n], after[n]) for n in before)
    del opt
    gc.collect()


def test_adamw_schedule():
    m, _ = make(CASES["llama_gqa"])
    opt = attnsink.AdamW(m, 1e-2)
    opt.schedule("cosine", warmup=4, total_steps=12, min_lr=1e-3)
    lrs = []
    for _ in range(14):
        lrs.append(opt.lr)
        opt.step()  # zero gradients: only the schedule moves
    assert opt.steps == 14
    # warm-up rises to lr, then the cosine falls to min_lr at total_steps and stays there
    assert lrs[0] < lrs[1] < lrs[2] < lrs[3] <= 1e-2 + 1e-9
    assert all(lrs[i] >= lrs[i + 1] - 1e-9 for i in range(4, 13))
    assert abs(lrs[12] - 1e-3) <= 1e-6 and abs(lrs[13] - 1e-3) <= 1e-6
    opt.schedule("constant")
    assert abs(opt.lr - 1e-2) <= 1e-9
    with pytest.raises(ValueError):
        opt.schedule("linear-ish")
    with pytest.raises(ValueError):
        opt.schedule("cosine", warmup=-1)


# -------------------------------------------------------------------- save and load

@pytest.mark.parametrize("name", ["llama_gqa", "gpt2", "sink_token_alibi_kvbias",
                                  "post_tied_sigmoid_geglu", "pos_learned"])
def test_save_load_identical(tmp_path, name):
    m, params = make(CASES[name])
    tokens, _ = batch(np.random.default_rng(5))
    logits = m.forward(tokens)
    m.save(tmp_path / "ckpt")
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["config.json", "model.safetensors"]
    m2 = attnsink.Model.load(tmp_path / "ckpt")
    assert np.array_equal(m2.forward(tokens), logits)
    assert m2.config == m.config
    p2 = m2.parameters()
    assert list(p2) == list(m.parameters())
    for n in params:
        assert np.array_equal(p2[n], params[n]), n
    # the file holds exactly the parameters, F32, under their HF names
    stored, _ = read_safetensors(tmp_path / "ckpt" / "model.safetensors")
    assert set(stored) == set(params)
    for n in params:
        assert np.array_equal(stored[n], params[n]), n
    # config.json is what m.config says, and creating from it gives the same architecture
    with open(tmp_path / "ckpt" / "config.json") as f:
        assert json.load(f) == m.config
    m3 = attnsink.Model.create(m.config, seed=3)
    assert {n: a.shape for n, a in m3.parameters().items()} == \
        {n: a.shape for n, a in params.items()}


def test_resume_bit_identical(tmp_path):
    cfg = llama(attn="softmax,kbias=head,vbias=head,sink=head", sink_token=True)
    rng = np.random.default_rng(21)
    batches = [batch(rng) for _ in range(6)]

    def train(m, opt, bs):
        for tokens, targets in bs:
            m.loss(tokens, targets)
            m.backward()
            opt.step()

    m, _ = make(cfg, seed=9)
    opt = attnsink.AdamW(m, 1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, clip=1.0)
    opt.schedule("cosine", warmup=2, total_steps=10, min_lr=1e-3)
    train(m, opt, batches[:3])
    m.save(tmp_path / "ckpt")
    opt.save(tmp_path / "ckpt")
    assert "optimizer.safetensors" in os.listdir(tmp_path / "ckpt")
    train(m, opt, batches[3:])
    a = m.parameters()

    m2 = attnsink.Model.load(tmp_path / "ckpt")
    opt2 = attnsink.AdamW(m2, 1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, clip=1.0)
    opt2.schedule("cosine", warmup=2, total_steps=10, min_lr=1e-3)
    opt2.load(tmp_path / "ckpt")
    assert opt2.steps == 3
    train(m2, opt2, batches[3:])
    assert opt2.steps == opt.steps == 6
    assert opt2.lr == opt.lr
    b = m2.parameters()
    for n in a:
        assert np.array_equal(a[n], b[n]), n


def _saved(tmp_path, cfg=None):
    m, params = make(cfg or CASES["llama_gqa"])
    d = tmp_path / "ckpt"
    m.save(d)
    tensors, meta = read_safetensors(d / "model.safetensors")
    return d, tensors, meta


def _rewrite(d, tensors, meta):
    write_safetensors(d / "model.safetensors", [(n, a, "F32") for n, a in tensors.items()], meta)


def test_load_missing_tensor(tmp_path):
    d, tensors, meta = _saved(tmp_path)
    name = "model.layers.1.post_attention_layernorm.weight"
    del tensors[name]
    _rewrite(d, tensors, meta)
    with pytest.raises(ValueError, match=r"model\.layers\.1\.post_attention_layernorm\.weight"):
        attnsink.Model.load(d)


def test_load_extra_tensor(tmp_path):
    d, tensors, meta = _saved(tmp_path)
    tensors["model.layers.0.self_attn.extra_thing"] = np.zeros((3, 4), np.float32)
    _rewrite(d, tensors, meta)
    with pytest.raises(ValueError, match=r"model\.layers\.0\.self_attn\.extra_thing"):
        attnsink.Model.load(d)


def test_load_wrong_shape(tmp_path):
    d, tensors, meta = _saved(tmp_path)
    name = "model.layers.0.mlp.up_proj.weight"
    tensors[name] = tensors[name].reshape(C, FF)  # same size, transposed shape
    _rewrite(d, tensors, meta)
    with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.up_proj\.weight"):
        attnsink.Model.load(d)


def test_load_wrong_shape_tied_head_absent_extra(tmp_path):
    # an untied head written into a tied model's file is an extra tensor
    d, tensors, meta = _saved(tmp_path, CASES["llama_tied"])
    tensors["lm_head.weight"] = np.zeros((V, C), np.float32)
    _rewrite(d, tensors, meta)
    with pytest.raises(ValueError, match=r"lm_head\.weight"):
        attnsink.Model.load(d)


def test_load_bad_config(tmp_path):
    d, _, _ = _saved(tmp_path)
    with open(d / "config.json") as f:
        cfg = json.load(f)
    cfg["num_attention_heads"] = 0
    with open(d / "config.json", "w") as f:
        json.dump(cfg, f)
    with pytest.raises(ValueError, match="num_attention_heads"):
        attnsink.Model.load(d)


def test_load_missing_directory(tmp_path):
    with pytest.raises(OSError):
        attnsink.Model.load(tmp_path / "nowhere")


def test_load_bf16(tmp_path):
    cfg = CASES["attn_kvbias"]
    d, tensors, meta = _saved(tmp_path, cfg)
    tensors = {n: bf16(a) for n, a in tensors.items()}
    write_safetensors(d / "model.safetensors", [(n, a, "BF16") for n, a in tensors.items()])
    m = attnsink.Model.load(d)
    got = m.parameters()
    for n, a in tensors.items():
        assert np.array_equal(got[n], a), n
    ref = TorchModel(cfg, tensors)
    tokens, _ = batch(np.random.default_rng(6))
    assert rel_err(m.forward(tokens), ref.forward(tokens).detach().numpy()) <= TOL


# ------------------------------------------------------------ HF GPT-2 checkpoints

def _hf_gpt2_dir(path, prefix, with_head, seed, buffers=True):
    """An HF-layout GPT-2 directory as transformers writes it (F16, Conv1D [in, out] weights,
    causal-mask buffers), with our tiny sizes. Returns (config, parameters as float32)."""
    cfg = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function":
        "gelu_new", "attn_pdrop": 0.1, "embd_pdrop": 0.1, "resid_pdrop": 0.1,
        "bos_token_id": 0, "eos_token_id": 0, "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-5, "n_ctx": MAXPOS, "n_embd": C, "n_head": H,
        "n_inner": None, "n_layer": L, "n_positions": MAXPOS, "scale_attn_weights": True,
        "summary_type": "cls_index", "summary_use_proj": True, "torch_dtype": "float16",
        "use_cache": True, "vocab_size": V,
    }
    rng = np.random.default_rng(seed)
    params = {}
    for n, s in param_shapes(cfg).items():
        v = 1.0 + 0.1 * rng.standard_normal(s) if is_norm_weight(n) else \
            0.2 * rng.standard_normal(s)
        params[n] = v.astype(np.float16).astype(np.float32)  # what an F16 file holds
    tensors = []
    mask = np.tril(np.ones((MAXPOS, MAXPOS))).reshape(1, 1, MAXPOS, MAXPOS)
    for n, a in params.items():
        tensors.append((prefix + n, a, "F16"))
        if buffers and n.endswith("attn.c_attn.weight"):  # the buffers sit beside their layer's tensors
            layer = n[:-len("c_attn.weight")]
            tensors.append((prefix + layer + "bias", mask, "F16"))
            tensors.append((prefix + layer + "masked_bias", np.array(-1e4), "F16"))
    if with_head:
        tensors.append(("lm_head.weight", params["wte.weight"], "F16"))
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(path, "model.safetensors"), tensors, {"format": "pt"})
    return cfg, params


@pytest.mark.parametrize("prefix,with_head,buffers", [
    ("transformer.", True, True), ("", False, True), ("transformer.", False, True),
    ("", True, False)])
def test_hf_gpt2_checkpoint(tmp_path, prefix, with_head, buffers):
    d = str(tmp_path / "gpt2")
    cfg, params = _hf_gpt2_dir(d, prefix, with_head, seed=31, buffers=buffers)
    m = attnsink.Model.load(d)
    got = m.parameters()
    assert set(got) == set(params)  # stored without prefix, buffers and head dropped
    for n in params:
        assert np.array_equal(got[n], params[n]), n
    c = m.config
    assert c["model_type"] == "gpt2" and c["n_inner"] == 4 * C

    rng = np.random.default_rng(8)
    tokens, targets = batch(rng)
    ref = TorchModel(cfg, params)
    assert rel_err(m.forward(tokens), ref.forward(tokens).detach().numpy()) <= TOL
    m.zero_grad()
    loss = m.loss(tokens, targets)
    ref_loss = ref.loss(tokens, targets)
    assert abs(loss - ref_loss.item()) / ref_loss.item() <= LOSS_TOL
    grads = m.backward()
    ref_loss.backward()
    ref_grads = ref.grads()
    errs = {n: rel_err(grads[n], ref_grads[n]) for n in ref_grads}
    assert all(e <= TOL for e in errs.values()), errs

    # saved back without the prefix, F32, and loads to the same logits
    m.save(tmp_path / "again")
    stored, _ = read_safetensors(tmp_path / "again" / "model.safetensors")
    assert set(stored) == set(params)
    assert np.array_equal(attnsink.Model.load(tmp_path / "again").forward(tokens),
                          m.forward(tokens))


# ------------------------------------------------------------------------------ errors

def test_token_outside_vocabulary():
    m, _ = make(CASES["llama_gqa"])
    tokens = np.zeros((B, T), np.int64)
    tokens[1, 4] = V
    with pytest.raises(ValueError, match=str(V)):
        m.forward(tokens)
    with pytest.raises(ValueError, match=str(V)):
        m.loss(tokens, np.zeros((B, T), np.int64))
    tokens[1, 4] = -3
    with pytest.raises(ValueError, match="-3"):
        m.forward(tokens)
    tokens[1, 4] = 2**40
    with pytest.raises(ValueError, match=str(2**40)):
        m.forward(tokens)
    # a target outside the vocabulary is refused as well (negative ones are ignored)
    tokens[1, 4] = 0
    targets = np.zeros((B, T), np.int64)
    targets[0, 0] = V + 5
    with pytest.raises(ValueError, match=str(V + 5)):
        m.loss(tokens, targets)


@pytest.mark.parametrize("name", ["pos_learned", "gpt2"])
def test_too_long_for_learned_positions(name):
    m, _ = make(CASES[name])
    m.forward(np.zeros((1, MAXPOS), np.int64))  # exactly the table: fine
    with pytest.raises(ValueError, match=str(MAXPOS + 1)):
        m.forward(np.zeros((1, MAXPOS + 1), np.int64))
    # RoPE positions are not learned: any length runs
    make(CASES["llama_gqa"])[0].forward(np.zeros((1, MAXPOS + 1), np.int64))


def test_sink_token_counts_against_learned_positions():
    m, _ = make(CASES["sink_token_learned"])
    m.forward(np.zeros((1, MAXPOS - 1), np.int64))
    with pytest.raises(ValueError):
        m.forward(np.zeros((1, MAXPOS), np.int64))


def test_bad_shapes_and_names():
    m, params = make(CASES["llama_gqa"])
    for bad in (np.zeros(T, np.int64), np.zeros((1, 2, 3), np.int64), [[]]):
        with pytest.raises(ValueError):
            m.forward(bad)
    with pytest.raises(TypeError):
        m.forward(np.zeros((B, T), np.float32))
    with pytest.raises(ValueError, match=r"\(2, 9\)"):
        m.loss(np.zeros((B, T), np.int64), np.zeros((B, T + 1), np.int64))
    with pytest.raises(ValueError, match="no_such_tensor"):
        m.set_parameter("no_such_tensor", np.zeros(3))
    name = "model.layers.0.self_attn.k_proj.weight"
    with pytest.raises(ValueError, match=r"\(16, 32\).*\(32, 16\)"):
        m.set_parameter(name, np.zeros((32, 16)))
    assert np.array_equal(m.parameters()[name], params[name])  # unchanged
    # parameters() hands out copies
    p = m.parameters()
    p[name][:] = 5.0
    assert np.array_equal(m.parameters()[name], params[name])


@pytest.mark.parametrize("edit,key", [
    ({"num_attention_heads": 0}, "num_attention_heads"),
    ({"hidden_size": -4}, "hidden_size"),
    ({"num_key_value_heads": 3}, "num_key_value_heads"),
    ({"attnsink": {"ffn": "mish"}}, "ffn"),
    ({"attnsink": {"positions": "absolute"}}, "positions"),
    ({"attnsink": {"attn": "softmx"}}, "softmx"),
    ({"attnsink": {"norm_position": "middle"}}, "norm_position"),
])
def test_bad_config(edit, key):
    cfg = dict(llama(), **edit)
    with pytest.raises(ValueError, match=key):
        attnsink.Model.create(cfg)


def test_missing_config_key():
    cfg = llama()
    del cfg["vocab_size"]
    with pytest.raises(ValueError, match="vocab_size"):
        attnsink.Model.create(cfg)


def test_config_roundtrip_and_create_seeded():
    cfg = CASES["sink_token_alibi_kvbias"]
    m1 = attnsink.Model.create(cfg, seed=4)
    m2 = attnsink.Model.create(cfg, seed=4)
    m3 = attnsink.Model.create(cfg, seed=5)
    p1, p2, p3 = m1.parameters(), m2.parameters(), m3.parameters()
    assert all(np.array_equal(p1[n], p2[n]) for n in p1)
    assert any(not np.array_equal(p1[n], p3[n]) for n in p1)
    c = m1.config
    for k, v in cfg.items():
        if k != "attnsink":
            assert c[k] == v, k
    assert c["attnsink"]["sink_token"] is True and c["attnsink"]["positions"] == "alibi"
    assert attnsink.Model.create(c).config == c


# ------------------------------------------------------- data-parallel small models

def _loss_and_grads(m, tokens, targets):
    loss = m.loss(tokens, targets)
    return loss, m.backward()


def _one_team_loss_and_grads(m, tokens, targets, tmp_path):
    """The loss and gradients of m on one thread team: the library reads ASINK_REPLICAS
    once, at start-up, so they come from a second process started with ASINK_REPLICAS=0
    that loads m from a checkpoint (2 threads, as the caller's)."""
    m.save(tmp_path / "model")
    np.save(tmp_path / "tokens.npy", tokens)
    np.save(tmp_path / "targets.npy", targets)
    code = (
        "import sys, numpy as np, attnsink\n"
        "d = sys.argv[1]\n"
        "m = attnsink.Model.load(d + '/model')\n"
        "loss = m.loss(np.load(d + '/tokens.npy'), np.load(d + '/targets.npy'))\n"
        "np.savez(d + '/ref.npz', __loss__=np.float32(loss), **m.backward())\n")
    env = dict(os.environ, ASINK_REPLICAS="0", ASINK_NUM_THREADS="2")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, check=True)
    ref = dict(np.load(tmp_path / "ref.npz"))
    return float(ref.pop("__loss__")), ref


@pytest.mark.parametrize("cfg", [llama(), gpt2(), llama(norm_position="post", sink_token=True,
                                                         positions="learned"),
                                 llama(attn="softmax,kbias=head,vbias=head,sink=head"),
                                 llama(positions="relative")],
                         ids=["llama", "gpt2", "llama-post-sinktoken-learned",
                              "llama-op-parameters", "llama-relative-bias"])
def test_data_parallel_slices_match_one_team(cfg, tmp_path):
    """With 2 threads and B >= 2, a small model's loss and backward run on batch slices,
    one pass state per slice over the same weights (lib/model/slices.c), also when the
    attention ops have learnable parameters. They must agree with the one-team passes
    (ASINK_REPLICAS=0) to float32 rounding, differ from them in the last bits somewhere (the
    gradient sums are added in another order: evidence the slices ran), and repeat bit for
    bit."""
    old = attnsink.get_num_threads()
    attnsink.set_num_threads(2)
    try:
        rng = np.random.default_rng(5)
        tokens = rng.integers(0, V, size=(4, T)).astype(np.int32)
        targets = rng.integers(0, V, size=(4, T)).astype(np.int32)
        targets[1, 3] = -1
        m, _ = make(cfg)
        ref_loss, ref = _one_team_loss_and_grads(m, tokens, targets, tmp_path)
        loss1, g1 = _loss_and_grads(m, tokens, targets)
        m.zero_grad()
        loss2, g2 = _loss_and_grads(m, tokens, targets)
        assert set(g1) == set(ref)
        assert abs(loss1 - ref_loss) <= 1e-6 * abs(ref_loss)
        for name in ref:
            assert rel_err(g1[name], ref[name]) <= 1e-5, name
            assert np.array_equal(g1[name], g2[name]), name
        assert loss1 == loss2
        assert any(not np.array_equal(g1[n], ref[n]) for n in ref)
    finally:
        attnsink.set_num_threads(old)


def test_data_parallel_slices_accumulate():
    """Two backward passes on slices accumulate as on one team."""
    old = attnsink.get_num_threads()
    attnsink.set_num_threads(2)
    try:
        rng = np.random.default_rng(6)
        tokens = rng.integers(0, V, size=(4, T))
        targets = rng.integers(0, V, size=(4, T))
        for cfg in (llama(), llama(attn="softmax,kbias=head")):
            m, _ = make(cfg)
            _loss_and_grads(m, tokens, targets)
            _, twice = _loss_and_grads(m, tokens, targets)
            m.zero_grad()
            _, once = _loss_and_grads(m, tokens, targets)
            for name in once:
                assert rel_err(twice[name], 2 * once[name]) <= 1e-6, name
    finally:
        attnsink.set_num_threads(old)
