"""attnsink.torch: the nn.Module and functional attention with autograd, and SinkProbe.

Gradients are checked three ways: against reference.py (a float64 PyTorch autograd model of
docs/attention.md) for every base and the main options, at the tolerance of
test_attention.py (max |lib - ref| / max |ref| <= 1e-4, with its gradient floor); against
PyTorch's own float32 eager softmax attention; and by central finite differences of the
float32 library itself along random directions (torch.autograd.gradcheck wants float64,
which the float32 library cannot satisfy at its default tolerances; a directional check with
a step of 1e-2 measures the same thing at float32 precision).
"""

import copy
import io
import pickle

import numpy as np
import pytest
import torch

import attnsink
from attnsink.torch import Attention, SinkProbe, attention
from reference import BASES, reference

torch.set_num_threads(1)

TOL = 1e-4

SPECS = [
    ("softmax", 4, 4), ("sigmoid", 4, 4), ("elu", 4, 2), ("linear,norm=clamp", 4, 4),
    ("elu-kernel", 4, 2),
    ("softmax,kbias=head,vbias=head,sink=head", 4, 2),
    ("softmax,kbias=shared,vbias=shared,alibi=1,window=5", 4, 1),
    ("sigmoid,norm=sum,kbias=head,vbias=shared", 4, 2),
    ("elu,norm=clamp,kbias=shared,vbias=head,causal=0", 2, 2),
    ("linear,kbias=head,vbias=head,norm=clamp", 4, 4),
    ("elu-kernel,kbias=head,vbias=head,norm=clamp", 4, 2),
    ("softmax,sink=zero,alpha=2,prefix=3", 4, 4),
]
assert {s.split(",")[0] for s, _, _ in SPECS} == set(BASES)


def rel_err(got, ref, floor=0.0):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    return float(np.max(np.abs(got - ref)) / max(float(np.max(np.abs(ref))), floor, 1e-6))


def make(spec, H, Hkv, D=16, B=2, T=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    att = Attention(spec, H, Hkv, D)
    with torch.no_grad():
        for p in att.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    q = torch.randn(B, T, H, D, generator=g).requires_grad_()
    k = torch.randn(B, T, Hkv, D, generator=g).requires_grad_()
    v = torch.randn(B, T, Hkv, D, generator=g).requires_grad_()
    dout = torch.randn(B, T, H, D, generator=g)
    return att, q, k, v, dout


@pytest.mark.parametrize("spec,H,Hkv", SPECS, ids=[s for s, _, _ in SPECS])
def test_against_reference(spec, H, Hkv):
    att, q, k, v, dout = make(spec, H, Hkv)
    out, imp = att(q, k, v, importance=True)
    assert not imp.requires_grad
    out.backward(dout)
    params = {n: p.detach().numpy() for n, p in att.named_parameters()}
    ref = reference(spec, q.detach().numpy(), k.detach().numpy(), v.detach().numpy(), params,
                    dout.numpy())
    assert rel_err(out.detach(), ref["out"]) <= TOL
    assert rel_err(imp, ref["importance"]) <= TOL
    grads = [ref["dq"], ref["dk"], ref["dv"]] + list(ref["grads"].values())
    floor = 0.1 * max(float(np.max(np.abs(g))) for g in grads)
    for got, want in ((q.grad, ref["dq"]), (k.grad, ref["dk"]), (v.grad, ref["dv"])):
        assert got.dtype == torch.float32
        assert rel_err(got, want, floor) <= TOL
    for n, p in att.named_parameters():
        assert rel_err(p.grad, ref["grads"][n], floor) <= TOL, n


def eager_softmax(q, k, v, sinks=None):
    """PyTorch float32 eager causal attention with GQA (and an optional sink logit)."""
    B, T, H, D = q.shape
    g = H // k.shape[2]
    Q = q.transpose(1, 2)
    K = k.transpose(1, 2).repeat_interleave(g, dim=1)
    V = v.transpose(1, 2).repeat_interleave(g, dim=1)
    s = Q @ K.transpose(-1, -2) / D ** 0.5
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    if sinks is not None:
        s = torch.cat([s, sinks.view(1, H, 1, 1).expand(B, H, T, 1)], dim=-1)
        p = torch.softmax(s, dim=-1)[..., :-1]
    else:
        p = torch.softmax(s, dim=-1)
    return (p @ V).transpose(1, 2)


def test_against_torch_eager_float32():
    att, q, k, v, dout = make("softmax,sink=head", 4, 2, T=64)
    out = att(q, k, v)
    out.backward(dout)
    mine = [out.detach(), q.grad, k.grad, v.grad, att.sinks.grad]
    q2, k2, v2 = (x.detach().clone().requires_grad_() for x in (q, k, v))
    s2 = att.sinks.detach().clone().requires_grad_()
    ref = eager_softmax(q2, k2, v2, s2)
    ref.backward(dout)
    for a, b in zip(mine, [ref.detach(), q2.grad, k2.grad, v2.grad, s2.grad]):
        assert rel_err(a, b) <= 1e-5


@pytest.mark.parametrize("spec", ["softmax,kbias=head,vbias=head,sink=head",
                                  "sigmoid,norm=sum,kbias=shared,vbias=head", "elu-kernel"])
def test_finite_differences_float32(spec):
    att, q, k, v, dout = make(spec, 2, 1, D=8, B=1, T=6, seed=3)
    inputs = [q, k, v] + list(att.parameters())
    loss = (att(q, k, v) * dout).sum()
    grads = torch.autograd.grad(loss, inputs)
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        dirs = [torch.randn(x.shape, generator=g) for x in inputs]
        analytic = sum(float((gr * d).sum()) for gr, d in zip(grads, dirs))
        h = 1e-2
        vals = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for x, d in zip(inputs, dirs):
                    x.add_(sign * h * d)
                vals.append(float((att(q, k, v) * dout).sum().double()))
                for x, d in zip(inputs, dirs):
                    x.sub_(sign * h * d)
        numeric = (vals[0] - vals[1]) / (2 * h)
        assert abs(numeric - analytic) <= 2e-3 * max(1.0, abs(analytic)), (numeric, analytic)


def test_gradients_accumulate():
    att, q, k, v, dout = make("softmax,kbias=head,vbias=head,sink=head", 4, 2)
    att(q, k, v).backward(dout)
    once = [x.grad.clone() for x in (q, k, v)] + [p.grad.clone() for p in att.parameters()]
    att(q, k, v).backward(dout)
    twice = [x.grad for x in (q, k, v)] + [p.grad for p in att.parameters()]
    for a, b in zip(once, twice):
        assert torch.allclose(2 * a, b, rtol=1e-5, atol=1e-6)


def test_two_forwards_then_backwards_in_reverse():
    att, q, k, v, dout = make("softmax,kbias=head,vbias=head,sink=head", 4, 2)
    q2 = (q.detach() * 0.5).requires_grad_()
    out1 = att(q, k, v)
    out2 = att(q2, k, v)
    g1 = torch.autograd.grad((out1 * dout).sum(), [q] + list(att.parameters()))
    g2 = torch.autograd.grad((out2 * dout).sum(), [q2] + list(att.parameters()))
    # backward in the other order, each alone
    h2 = torch.autograd.grad((att(q2, k, v) * dout).sum(), [q2] + list(att.parameters()))
    h1 = torch.autograd.grad((att(q, k, v) * dout).sum(), [q] + list(att.parameters()))
    # now two forwards, then backward of the second before the first
    o1, o2 = att(q, k, v), att(q2, k, v)
    r2 = torch.autograd.grad((o2 * dout).sum(), [q2] + list(att.parameters()))
    r1 = torch.autograd.grad((o1 * dout).sum(), [q] + list(att.parameters()))
    for a, b, c in zip(g1 + g2, h1 + h2, r1 + r2):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(g1[0], g2[0] * 1.0)


def test_retain_graph_second_backward():
    """The C op of a call goes back to the pool after its backward; a second backward through
    the retained graph (after other calls reused that op) recomputes the forward."""
    att, q, k, v, dout = make("softmax,kbias=head,vbias=head,sink=head", 4, 2)
    out = att(q, k, v)
    out.backward(dout, retain_graph=True)
    first = [x.grad.clone() for x in (q, k, v)] + [p.grad.clone() for p in att.parameters()]
    q2 = torch.randn(q.shape)
    for _ in range(3):
        att(q2, k.detach(), v.detach()).sum()  # no grad needed: op back to the pool at once
        att(q2.requires_grad_(), k, v).backward(dout)
    for x in (q, k, v):
        x.grad = None
    for p in att.parameters():
        p.grad = None
    out.backward(dout)
    again = [x.grad for x in (q, k, v)] + [p.grad for p in att.parameters()]
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(att(q, k, v), out.detach())


def test_state_dict_pickle_deepcopy():
    att, q, k, v, dout = make("softmax,kbias=head,vbias=head,sink=head", 4, 2)
    want = att(q, k, v).detach()
    fresh = Attention("softmax,kbias=head,vbias=head,sink=head", 4, 2, 16)
    assert set(fresh.state_dict()) == {"k_bias", "v_bias", "sinks"}
    fresh.load_state_dict(att.state_dict())
    assert torch.equal(fresh(q, k, v), want)
    buf = io.BytesIO()
    torch.save(att.state_dict(), buf)
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf))
    assert torch.equal(fresh(q, k, v), want)
    for other in (pickle.loads(pickle.dumps(att)), copy.deepcopy(att)):
        assert torch.equal(other(q, k, v), want)
        assert other.spec == att.spec


def test_functional_and_importance_match_numpy_op():
    att, q, k, v, dout = make("sigmoid,norm=sum", 4, 2)
    op = attnsink.Attention("sigmoid,norm=sum", 4, 2, 16)
    want = op.forward(q.detach().numpy(), k.detach().numpy(), v.detach().numpy(), importance=True)
    out, imp = attention(q, k, v, spec="sigmoid,norm=sum", importance=True)
    assert np.array_equal(out.detach().numpy(), want)
    assert np.array_equal(imp.numpy(), op.importance)
    assert torch.equal(att(q, k, v), out)
    # functional with parameters: zero when missing, differentiable when given
    sinks = torch.full((4,), 0.3, requires_grad=True)
    o = attention(q, k, v, spec="softmax,sink=head", params={"sinks": sinks})
    o.sum().backward()
    assert sinks.grad is not None and sinks.grad.shape == (4,)
    with pytest.raises(ValueError):
        attention(q, k, v, spec="softmax", params={"sinks": sinks})


def test_other_dtypes_and_layouts_are_converted_once():
    att, q, k, v, dout = make("softmax", 4, 2)
    want = att(q, k, v)
    want.backward(dout)
    q64 = q.detach().double().requires_grad_()
    kt = k.detach().transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()  # strided
    assert not kt.is_contiguous()
    out = att(q64, kt, v.detach())
    assert out.dtype == torch.float32
    assert torch.allclose(out, want)
    out.backward(dout)
    assert q64.grad.dtype == torch.float64
    assert torch.allclose(q64.grad.float(), q.grad, atol=1e-6)
    assert torch.allclose(kt.grad, k.grad, atol=1e-6)
    # float32 contiguous CPU tensors go by pointer: no copy made
    from attnsink.torch import _as_input
    x = torch.randn(2, 3, 4, 5)
    assert _as_input(x, "q").data_ptr() == x.data_ptr()


def test_errors():
    att = Attention("softmax", 4, 2, 16)
    q = torch.randn(1, 5, 4, 16)
    with pytest.raises(ValueError, match="k has shape"):
        att(q, torch.randn(1, 5, 4, 16), torch.randn(1, 5, 2, 16))
    with pytest.raises(ValueError):
        Attention("softmax,bogus=1", 4, 2, 16)
    with pytest.raises(TypeError):
        att(q.numpy(), q, q)
    with pytest.raises(ValueError, match="sees no key|shape"):
        att(torch.randn(1, 0, 4, 16), torch.randn(1, 0, 2, 16), torch.randn(1, 0, 2, 16))


def test_in_a_training_step():
    """One optimizer step of a tiny layer through the module changes the parameters the way
    the same layer built from torch ops does."""
    torch.manual_seed(0)
    x = torch.randn(2, 9, 32)
    proj = torch.nn.Linear(32, 3 * 32)
    att = Attention("softmax,sink=head", 4, 4, 8)
    opt = torch.optim.SGD(list(proj.parameters()) + list(att.parameters()), lr=0.1)
    qkv = proj(x).view(2, 9, 3, 4, 8)
    out = att(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
    out.pow(2).mean().backward()
    g_lib = [p.grad.clone() for p in proj.parameters()] + [att.sinks.grad.clone()]
    opt.zero_grad()
    sinks = att.sinks.detach().clone().requires_grad_()
    qkv = proj(x).view(2, 9, 3, 4, 8)
    eager_softmax(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], sinks).pow(2).mean().backward()
    g_ref = [p.grad.clone() for p in proj.parameters()] + [sinks.grad]
    for a, b in zip(g_lib, g_ref):
        assert rel_err(a, b) <= 1e-5


# ----------------------------------------------------------------------------- SinkProbe

class _MHALayers(torch.nn.Module):
    def __init__(self, n_layer=2, dim=16, heads=4):
        super().__init__()
        self.layers = torch.nn.ModuleList(
            torch.nn.MultiheadAttention(dim, heads, batch_first=True) for _ in range(n_layer))

    def forward(self, x):
        T = x.shape[1]
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        for mha in self.layers:
            y, _ = mha(x, x, x, attn_mask=mask, need_weights=True, average_attn_weights=False)
            x = x + y
        return x


def test_sink_probe_hooks_and_manual_maps():
    torch.manual_seed(0)
    model = _MHALayers()
    x = torch.randn(3, 10, 16)
    maps = []
    handles = [m.register_forward_hook(lambda mod, i, o: maps.append(o[1].detach()))
               for m in model.layers]
    with SinkProbe(model) as probe:
        assert probe.n_layer == 2
        with torch.no_grad():
            model(x)
            model(x[:1])
        st = probe.stats()
        assert probe.dims() == [4, 2, 4, 10, 10]
    for h in handles:
        h.remove()
    assert set(st) == set(["importance", "sink", "hidden_norm", "key_norm", "value_norm",
                           "qk_cosine", "qk_norm_product", "entropy"])
    assert st["hidden_norm"] is None
    stacked = np.concatenate([torch.stack([maps[0], maps[1]], dim=1).numpy(),
                              torch.stack([maps[2], maps[3]], dim=1).numpy()])
    want = attnsink.sink_metric(stacked)
    assert np.allclose(st["importance"], want["importance"], atol=1e-6)
    assert np.allclose(st["sink"], want["sink"])
    assert np.allclose(st["entropy"], want["entropy"], atol=1e-5)
    # by hand, as from output_attentions=True; eps chosen at stats time
    with SinkProbe(n_layer=2) as p2:
        p2.add_maps(1, maps[1])
        p2.add_maps(0, maps[0])
        p2.add_maps([maps[2], maps[3]])
        st2 = p2.stats(eps=0.5)
    assert np.allclose(st2["importance"], want["importance"], atol=1e-6)
    want5 = attnsink.sink_metric(stacked, eps=0.5)
    assert np.allclose(st2["sink"], want5["sink"])


def test_sink_probe_without_maps_says_so():
    model = torch.nn.Sequential()
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    with SinkProbe(modules=[mha]) as probe:
        x = torch.randn(1, 4, 8)
        with pytest.raises(ValueError, match="no attention maps"):
            mha(x, x, x, need_weights=False)
    del model


# --------------------------------------------------------------------- close() everywhere

def test_close_and_with_on_every_handle_class():
    cfg = {"model_type": "llama", "vocab_size": 16, "hidden_size": 16, "intermediate_size": 32,
           "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
           "max_position_embeddings": 8}
    with attnsink.Attention("softmax,sink=head", 2, 2, 4) as op:
        kept = op.params["sinks"]
        op.forward(np.ones((1, 2, 2, 4)), np.ones((1, 2, 2, 4)), np.ones((1, 2, 2, 4)))
    assert op.closed and "closed" in repr(op)
    kept[...] = 1.0  # a view taken before close keeps its memory
    with pytest.raises(attnsink.StateError):
        op.forward(np.ones((1, 2, 2, 4)), np.ones((1, 2, 2, 4)), np.ones((1, 2, 2, 4)))
    with attnsink.Model.create(cfg) as m, attnsink.Metric() as mt:
        m.attach_metric(mt)
        with attnsink.AdamW(m, 1e-3) as opt:
            m.loss(np.zeros((1, 4), dtype=np.int32), np.zeros((1, 4), dtype=np.int32))
            m.backward()
            opt.step()
        with pytest.raises(attnsink.StateError):
            opt.step()
    assert m.closed and mt.closed and m.metric is None
    with pytest.raises(attnsink.StateError):
        m.forward(np.zeros((1, 4), dtype=np.int32))
    with pytest.raises(attnsink.StateError):
        mt.stats()
    with attnsink.Sampler() as s:
        assert s.pick(np.array([0.0, 1.0], dtype=np.float32)) == 1
    with pytest.raises(attnsink.StateError):
        s.pick(np.array([0.0, 1.0], dtype=np.float32))
    for x in (op, m, mt, opt, s):
        x.close()  # idempotent
