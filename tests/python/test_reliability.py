"""What the binding promises when used roughly (docs/reliability.md): handles shared by Python
threads take turns (a lock per handle) and give the results of one thread; close() and
``with`` on every handle class, and any use after close a StateError; complex arrays refused
instead of silently truncated; NaN or infinity in a loss or a gradient a NonFiniteError that
changes nothing."""

import threading

import numpy as np
import pytest
import torch

import attnsink
import attnsink.torch
from attnsink._lib import lib

CONFIG = {"model_type": "llama", "vocab_size": 40, "hidden_size": 32, "intermediate_size": 64,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 64, "attnsink": {"attn": "softmax,kbias=head"}}


def tokens(seed, B=2, T=12):
    return np.random.default_rng(seed).integers(0, 40, size=(B, T))


def run_threads(fn, n=4):
    """fn(i) on n threads at once; re-raises the first exception of any of them."""
    errors = []
    start = threading.Barrier(n)

    def body(i):
        try:
            start.wait()
            fn(i)
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# ------------------------------------------------------------------------- threads

def test_one_model_shared_by_threads_gives_the_single_thread_results():
    m = attnsink.Model.create(CONFIG, seed=1)
    toks = [tokens(i) for i in range(4)]
    want_logits = [m.forward(t) for t in toks]
    want_small = [m.forward(t[:1, :5]) for t in toks]
    want_loss = [m.eval_loss(t, np.roll(t, -1, axis=1)) for t in toks]
    got = {}

    def work(i):
        for rep in range(5):
            # alternating batch shapes make every call regrow the model's workspaces: the
            # race that crashed the interpreter without the lock
            t = toks[i] if rep % 2 == 0 else toks[i][:1, :5]
            logits = m.forward(t)
            if rep % 2 == 0:
                got[i] = logits
                assert m.eval_loss(t, np.roll(t, -1, axis=1)) == want_loss[i]
            else:
                np.testing.assert_array_equal(logits, want_small[i])

    run_threads(work)
    for i in range(4):
        np.testing.assert_array_equal(got[i], want_logits[i])


def test_training_step_and_decoding_threads_take_turns():
    m = attnsink.Model.create(CONFIG, seed=2)
    opt = attnsink.AdamW(m, 1e-2)
    cache = m.cache("sink", n_sink=2, window=6, batch=1)
    prompt = tokens(9, B=1, T=4)

    def work(i):
        for _ in range(3):
            if i == 0:
                t = tokens(5)
                m.loss(t, np.roll(t, -1, axis=1))
                try:
                    m.backward()
                except attnsink.StateError:
                    pass  # another thread's loss came in between: its backward ran instead
                opt.step()
            elif i == 1:
                cache.step(prompt[:, :1])
            elif i == 2:
                m.generate(prompt, 3, cache="window", window=8)
            else:
                m.sink_stats(tokens(7), batch=1)

    run_threads(work)
    assert opt.steps >= 1
    assert cache.fed(0) == 3


def test_attention_shared_by_threads():
    op = attnsink.Attention("softmax,kbias=head", 4, 2, 8)
    rng = np.random.default_rng(0)
    inputs = [(rng.standard_normal((1, 9 + i, 4, 8), dtype=np.float32),
               rng.standard_normal((1, 9 + i, 2, 8), dtype=np.float32),
               rng.standard_normal((1, 9 + i, 2, 8), dtype=np.float32)) for i in range(4)]
    want = [op.forward(*x) for x in inputs]
    got = {}

    def work(i):
        for _ in range(5):
            got[i] = op.forward(*inputs[i])

    run_threads(work)
    for i in range(4):
        np.testing.assert_array_equal(got[i], want[i])


def test_close_while_another_thread_calls():
    """close() waits for a call in flight; the calls after it raise StateError, never crash."""
    for make, call in (
            (lambda: attnsink.Model.create(CONFIG, seed=3), lambda m: m.forward(tokens(1))),
            (lambda: attnsink.Attention("softmax", 4, 2, 8),
             lambda op: op.forward(np.ones((2, 16, 4, 8)), np.ones((2, 16, 2, 8)),
                                   np.ones((2, 16, 2, 8))))):
        obj = make()
        outcome = []

        def caller():
            try:
                for _ in range(200):
                    call(obj)
                outcome.append("finished")
            except attnsink.StateError:
                outcome.append("closed")

        t = threading.Thread(target=caller)
        t.start()
        obj.close()
        t.join()
        assert outcome in (["closed"], ["finished"])
        with pytest.raises(attnsink.StateError, match="closed"):
            call(obj)


# ------------------------------------------------------------------ close and with

def handles():
    """(name, factory, a call that needs the open handle) for every handle class."""
    def cache():
        m = attnsink.Model.create(CONFIG, seed=4)
        return m.cache("window", window=4)

    def probe():
        return attnsink.torch.SinkProbe(n_layer=1)

    return [
        ("Attention", lambda: attnsink.Attention("softmax", 2, 2, 4), lambda op: op.spec),
        ("Model", lambda: attnsink.Model.create(CONFIG, seed=4), lambda m: m.forward(tokens(0))),
        ("AdamW", lambda: attnsink.AdamW(attnsink.Model.create(CONFIG, seed=4), 1e-3),
         lambda o: o.step()),
        ("Cache", cache, lambda c: c.step(tokens(0, B=1, T=2))),
        ("Metric", lambda: attnsink.Metric(), lambda mt: mt.dims()),
        ("Sampler", lambda: attnsink.Sampler(), lambda s: s.pick(np.arange(5.0))),
        ("SinkProbe", probe, lambda p: p.dims()),
    ]


@pytest.mark.parametrize("name,make,use", handles(), ids=[h[0] for h in handles()])
def test_close_and_with_on_every_handle(name, make, use):
    h = make()
    use(h)
    h.close()
    h.close()  # idempotent
    with pytest.raises(attnsink.StateError, match="closed"):
        use(h)
    with make() as h2:
        use(h2)
    with pytest.raises(attnsink.StateError, match="closed"):
        use(h2)
    if hasattr(h2, "closed"):
        assert h2.closed


# --------------------------------------------------------------------- complex

def test_complex_arrays_are_refused():
    op = attnsink.Attention("softmax", 2, 2, 4)
    q = np.ones((1, 3, 2, 4), dtype=np.complex64)
    k = np.ones((1, 3, 2, 4), dtype=np.float32)
    with pytest.raises(TypeError, match="q is complex"):
        op.forward(q, k, k)
    with pytest.raises(TypeError, match="v is complex"):
        op.forward(k.reshape(1, 3, 2, 4), k, k + 1j)
    out = op.forward(k, k, k)
    with pytest.raises(TypeError, match="dout is complex"):
        op.backward(out + 0j)
    m = attnsink.Model.create(CONFIG, seed=5)
    w = m.parameters()["model.norm.weight"]
    with pytest.raises(TypeError, match="model.norm.weight.*complex"):
        m.set_parameter("model.norm.weight", w * (1 + 1j))
    np.testing.assert_array_equal(m.parameters()["model.norm.weight"], w)  # unchanged
    with pytest.raises(TypeError, match="logits is complex"):
        attnsink.Sampler().pick([1.0, 2.0 + 1j])
    with pytest.raises(TypeError, match="maps is complex"):
        attnsink.sink_metric(np.ones((1, 1, 1, 2, 2), dtype=complex) / 2)
    with attnsink.torch.SinkProbe(n_layer=1) as probe:
        with pytest.raises(TypeError, match="maps is complex"):
            probe.add_maps(0, torch.ones((1, 1, 2, 2), dtype=torch.complex64))
        with pytest.raises(TypeError, match="maps is complex"):
            probe.add_maps(0, np.ones((1, 1, 2, 2), dtype=np.complex128))
    with pytest.raises(TypeError):
        attnsink.torch.attention(torch.ones((1, 2, 2, 4), dtype=torch.complex64),
                                 torch.ones((1, 2, 2, 4)), torch.ones((1, 2, 2, 4)))


# ------------------------------------------------------------------ NaN and infinity

def test_nonfinite_loss_raises_and_keeps_nothing():
    m = attnsink.Model.create(CONFIG, seed=6)
    t = tokens(3)
    w = m.parameters()["model.norm.weight"]
    bad = w.copy()
    bad[1] = np.nan
    m.set_parameter("model.norm.weight", bad)
    with pytest.raises(attnsink.NonFiniteError, match="loss is nan") as e:
        m.loss(t, np.roll(t, -1, axis=1))
    assert isinstance(e.value, FloatingPointError)
    assert e.value.status == -9
    with pytest.raises(attnsink.StateError):
        m.backward()
    m.set_parameter("model.norm.weight", w)
    assert np.isfinite(m.loss(t, np.roll(t, -1, axis=1)))


@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
def test_nonfinite_gradient_skips_the_step(poison):
    m = attnsink.Model.create(CONFIG, seed=7)
    opt = attnsink.AdamW(m, 1e-2)
    t = tokens(4)
    m.loss(t, np.roll(t, -1, axis=1))
    m.backward()
    name = "model.layers.0.self_attn.k_bias"
    m._view(lib.asink_model_grad, name)[1, 2] = poison  # the model's own gradient memory
    before = m.parameters()
    with pytest.raises(attnsink.NonFiniteError, match=name):
        opt.step()
    assert opt.steps == 0
    for k, v in m.parameters().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    m.zero_grad()
    m.loss(t, np.roll(t, -1, axis=1))
    m.backward()
    assert np.isfinite(opt.step())
    assert opt.steps == 1
