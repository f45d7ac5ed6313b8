"""The parameter and gradient blocks (asink_model_grad_block, _param_block, _param_offset) through
Model.grad_block(), param_block() and block_offsets().

Layout: for every family with its own parameter table (llama untied and tied, GQA, kbias /
sinks attention parameters, gpt2's fused q/k/v), the parameters lie one after the other in the
order of parameters(), without gaps, and the slice of each in the blocks is exactly its
gradient and its value. The views are the model's storage (writing changes the model) and keep
the model alive. Data-parallel use: two replicas, each with half of a batch, whose gradient
blocks are averaged, give the gradient of the whole batch (to float rounding: 1e-5 of the
largest entry) and, after one AdamW step each, the same parameters as one model trained on the
whole batch (1e-5). Errors: an index outside the parameters names it; a closed model raises
StateError.
"""

import ctypes

import numpy as np
import pytest

import attnsink
from attnsink._lib import lib

V, C, L, H, FF, T = 37, 32, 2, 4, 48, 9


def llama(kv=2, tie=False, attn="softmax"):
    return {"model_type": "llama", "vocab_size": V, "hidden_size": C, "intermediate_size": FF,
            "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": kv,
            "max_position_embeddings": 16, "tie_word_embeddings": tie, "attnsink": {"attn": attn}}


CASES = {
    "llama_gqa": llama(),
    "llama_tied": llama(tie=True),
    "llama_kbias_sinks": llama(kv=4, attn="softmax,kbias=head,vbias=shared"),
    "gpt2": {"model_type": "gpt2", "vocab_size": V, "n_embd": C, "n_layer": L, "n_head": H,
             "n_positions": 16, "n_inner": FF},
}


def batch(B, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))


@pytest.mark.parametrize("case", sorted(CASES))
def test_layout(case):
    m = attnsink.Model.create(CASES[case], seed=3)
    tokens, targets = batch(3, 1)
    m.loss(tokens, targets)
    grads = m.backward()
    params = m.parameters()
    g, p, offsets = m.grad_block(), m.param_block(), m.block_offsets()
    assert g.dtype == np.float32 and g.shape == p.shape
    assert list(offsets) == list(params), "block_offsets follows the order of parameters()"
    at = 0
    for name, (off, n) in offsets.items():
        assert off == at, "%s starts at %d, expected %d (no gaps)" % (name, off, at)
        assert n == params[name].size
        np.testing.assert_array_equal(p[off:off + n], params[name].ravel())
        np.testing.assert_array_equal(g[off:off + n], grads[name].ravel())
        at += n
    assert at == g.size, "the blocks hold every parameter and nothing else"
    assert np.any(g != 0)


def test_views_write_through_and_keep_the_model():
    m = attnsink.Model.create(CASES["llama_gqa"], seed=3)
    tokens, targets = batch(2, 2)
    m.loss(tokens, targets)
    before = m.backward()
    g = m.grad_block()
    g *= 0.5
    after = m.grads()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name] * np.float32(0.5))
    p = m.param_block()
    off, n = m.block_offsets()["model.norm.weight"]
    p[off:off + n] = 2.0
    assert np.all(m.parameters()["model.norm.weight"] == 2.0)
    m.zero_grad()
    assert not np.any(g), "zero_grad zeroes the storage the view shows"
    del m  # the views keep the C model alive
    assert p[off] == 2.0 and g.sum() == 0.0


def test_data_parallel_average_equals_the_whole_batch():
    cfg = CASES["llama_gqa"]
    tokens, targets = batch(4, 5)
    whole = attnsink.Model.create(cfg, seed=7)
    replicas = [attnsink.Model.create(cfg, seed=7) for _ in range(2)]
    whole.loss(tokens, targets)
    whole.backward()
    for r, m in enumerate(replicas):
        m.loss(tokens[2 * r:2 * r + 2], targets[2 * r:2 * r + 2])
        m.backward()
    # what an allreduce does: every replica ends with the sum, divided by the replica count
    mean = (replicas[0].grad_block() + replicas[1].grad_block()) / 2
    for m in replicas:
        m.grad_block()[:] = mean
    ref = whole.grad_block()
    assert np.max(np.abs(mean - ref)) <= 1e-5 * np.max(np.abs(ref))
    opts = [attnsink.AdamW(m, 1e-2, weight_decay=0.1, clip=0.0) for m in [whole] + replicas]
    for o in opts:
        o.step()
    w, a, b = (m.param_block() for m in [whole] + replicas)
    np.testing.assert_array_equal(a, b)  # same sums, same update: the replicas stay identical
    assert np.max(np.abs(a - w)) <= 1e-5


def test_errors():
    m = attnsink.Model.create(CASES["llama_gqa"], seed=3)
    count = len(m.block_offsets())  # also gives the functions their C types
    off, n = ctypes.c_size_t(), ctypes.c_size_t()
    for bad in (-1, count):
        st = lib.asink_model_param_offset(m._h.ptr, bad, ctypes.byref(off), ctypes.byref(n))
        assert st == attnsink.Status.ERR_ARG
        msg = lib.asink_last_error().decode()
        assert "parameter index %d out of range" % bad in msg and str(count) in msg, msg
    assert lib.asink_model_grad_block(None, ctypes.byref(ctypes.POINTER(ctypes.c_float)()), None) \
        == attnsink.Status.ERR_ARG
    assert "NULL" in lib.asink_last_error().decode()
    m.close()
    with pytest.raises(attnsink.StateError):
        m.grad_block()
