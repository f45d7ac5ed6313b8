"""Incremental decoding (asink_cache, asink_model_decode[_ragged], the sampler, generation,
the metric's sink share) and attention at positions (asink_attn_forward_at) through the Python
binding, against float64 PyTorch references.

The oracles:
  - torch_model.TorchModel.forward, the full-sequence model of test_model.py;
  - torch_decode.DecodeRef, the same model run incrementally as Hugging Face caches it (per
    layer K after RoPE and V of every position, new tokens at absolute positions p0, p0+1, ...
    against the cached keys), with the cache policies of include/attnsink.h written from the
    header's rule (window: the W most recent positions; sink: the first n_sink plus the W most
    recent; positions inside the cache are ranks for masks, ALiBi and relative biases; RoPE keys
    keep their rotation, sink keys are re-rotated to their rank distance). It also covers what
    TorchModel leaves out (positions "relative", kernel "mlp"); where TorchModel covers the
    architecture the two agree to 1e-12 (checked below);
  - torch_decode.reference_at: reference.py's formulas at explicit positions.

Tolerance: rel_err of test_model.py (max |lib - ref| / max |ref|) <= 1e-4; the library computes
in float32, the references in float64 on the same float32 parameters (measured ~1e-6).
"""

import ctypes
import gc

import numpy as np
import pytest
import torch

import attnsink
from attnsink import ArgumentError, LibraryError, StateError
from attnsink._lib import Status, lib
from reference import reference
from test_model import randomize, rel_err
from torch_decode import DecodeRef, param_shapes_ext, reference_at
from torch_model import TorchModel

TOL = 1e-4
torch.set_num_threads(1)
# A tiny model gains nothing from threads, and on a loaded machine every barrier of a thread team
# costs a scheduler slice (2 threads made each decode call ~50 ms here instead of ~0.1 ms).
# test_threads_do_not_change_decoding runs the decode paths with 2 threads.
attnsink.set_num_threads(1)

V, C, L, H, FF, MAXPOS = 37, 32, 2, 4, 48, 32
B, T = 2, 13           # the full-cache cases: 13 tokens (chunks of 7 cut them 7 + 6)
W, NS = 6, 2           # the window / sink cases: window 6, 2 sinks, streams of 3 * W


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


def gpt2(**attnsink_opts):
    cfg = {"model_type": "gpt2", "vocab_size": V, "n_embd": C, "n_layer": L, "n_head": H,
           "n_positions": MAXPOS, "n_inner": FF, "layer_norm_epsilon": 1e-5}
    if attnsink_opts:
        cfg["attnsink"] = dict(attnsink_opts)
    return cfg


def make(cfg, seed=1):
    m = attnsink.Model.create(cfg, seed=seed)
    return m, randomize(m, seed + 100)


# Every causal base and option of docs/attention.md, both families, every position kind,
# sink-token models, the MLP kernel, post-norm, GQA / MHA / MQA.
FULL_CASES = {
    # bases
    "softmax": llama(),
    "sigmoid": llama(attn="sigmoid"),
    "sigmoid_sum": llama(attn="sigmoid,norm=sum"),
    "elu": llama(attn="elu"),
    "elu_clamp": llama(attn="elu,norm=clamp"),
    "linear": llama(attn="linear"),
    "elu_kernel": llama(attn="elu-kernel"),
    "elu_kernel_sum": llama(attn="elu-kernel,norm=sum"),
    # options
    "kvbias_shared": llama(attn="softmax,kbias=shared,vbias=shared"),
    "kvbias_head": llama(attn="softmax,kbias=head,vbias=head"),
    "sigmoid_kvbias": llama(attn="sigmoid,kbias=head,vbias=shared,norm=sum"),
    "vbias_only": llama(attn="softmax,vbias=head"),
    "sink_head": llama(attn="softmax,sink=head"),
    "sink_zero": llama(attn="softmax,sink=zero"),
    "alpha": llama(attn="softmax,alpha=2"),
    "window3": llama(attn="softmax,window=3"),
    "elu_window3_kvbias": llama(attn="elu,window=3,kbias=head,vbias=head"),
    "prefix4": llama(attn="softmax,prefix=4"),
    "prefix4_sigmoid_window": llama(attn="sigmoid,prefix=4,window=3"),
    "alibi_spec": llama(attn="softmax,alibi=1"),
    "scale_bias": llama(attn="sigmoid,scale=0.5,bias=-1"),
    # positions
    "pos_nope": llama(positions="nope"),
    "pos_sinusoidal": llama(positions="sinusoidal"),
    "pos_learned": llama(positions="learned"),
    "pos_alibi": llama(positions="alibi"),
    "pos_relative": llama(positions="relative"),
    "pos_relative_kvbias_sink": llama(positions="relative",
                                      attn="softmax,kbias=shared,vbias=head,sink=head"),
    # families, head layouts, norms
    "gpt2": gpt2(),
    "gpt2_sigmoid_window": gpt2(attn="sigmoid,window=4"),
    "llama_mha_tied": llama(kv=4, tie=True),
    "llama_mqa": llama(kv=1),
    "post_norm": llama(norm_position="post"),
    "post_tied_sigmoid": llama(tie=True, norm_position="post", ffn="geglu",
                               attn="sigmoid,kbias=head,vbias=head,norm=sum"),
    # sink token
    "sink_token": llama(sink_token=True),
    "sink_token_learned": llama(sink_token=True, positions="learned"),
    "sink_token_alibi_kvbias": llama(sink_token=True, positions="alibi",
                                     attn="softmax,kbias=shared,vbias=head,sink=head"),
    "sink_token_sinusoidal_post": llama(sink_token=True, positions="sinusoidal",
                                        norm_position="post"),
    # the MLP feature map (base linear)
    "kernel_mlp": llama(attn="linear", kernel="mlp"),
    "kernel_mlp_nope_clamp": llama(attn="linear,norm=clamp", kernel="mlp", positions="nope"),
}

# window / sink caches: the position kinds a cache can re-rank
STREAM_CASES = {
    "rope": llama(),
    "alibi": llama(positions="alibi"),
    "relative": llama(positions="relative"),
    "nope": llama(positions="nope"),
    "rope_kvbias_sinkhead": llama(attn="softmax,kbias=head,vbias=head,sink=head"),
    "alibi_sigmoid_window4": llama(positions="alibi", attn="sigmoid,window=4"),
    "rope_sink_token": llama(sink_token=True),
}


def torch_model_covers(cfg):
    """TorchModel models everything but positions 'relative' and kernel 'mlp'."""
    a = cfg.get("attnsink") or {}
    return a.get("positions") != "relative" and not a.get("kernel")


_cache = {}


def build(name, cases=None):
    """(cfg, model, params, DecodeRef) of a case, built once per test session."""
    cases = FULL_CASES if cases is None else cases
    key = (id(cases), name)
    if key not in _cache:
        cfg = cases[name]
        m, params = make(cfg)
        _cache[key] = (cfg, m, params, DecodeRef(cfg, params))
    return _cache[key]


def tokens_for(seed, shape):
    return np.random.default_rng(seed).integers(0, V, size=shape).astype(np.int32)


_refs = {}


def ref_decode(name, cases, tok, policy="full", n_sink=NS, window=W):
    """DecodeRef logits of tok fed one position at a time (memoised)."""
    key = (id(cases), name, tok.tobytes(), tok.shape, policy, n_sink, window)
    if key not in _refs:
        _refs[key] = build(name, cases)[3].decode(tok, policy, n_sink, window, chunk=1)
    return _refs[key]


# -------------------------------------------------------------- the oracles agree

@pytest.mark.parametrize("name", [n for n in FULL_CASES if torch_model_covers(FULL_CASES[n])])
def test_oracle_incremental_matches_torch_model(name):
    """DecodeRef (incremental, one position at a time) = TorchModel.forward (float64, 1e-12)
    wherever TorchModel models the architecture; and DecodeRef.forward (the whole sequence as
    one block) = its own one-at-a-time decoding."""
    cfg, m, params, ref = build(name)
    tok = tokens_for(1, (B, T))
    inc = ref_decode(name, FULL_CASES, tok)
    with torch.no_grad():
        whole = TorchModel(cfg, params).forward(tok).numpy()
    assert rel_err(inc, whole) <= 1e-12
    assert rel_err(ref.forward(tok).numpy(), whole) <= 1e-12


@pytest.mark.parametrize("name", ["pos_relative", "pos_relative_kvbias_sink", "kernel_mlp",
                                  "kernel_mlp_nope_clamp"])
def test_oracle_extensions_match_library_forward(name):
    """For relative positions and the MLP kernel (no TorchModel): DecodeRef's whole-sequence
    forward against the library's training forward, and DecodeRef's parameter list against
    the library's."""
    cfg, m, params, ref = build(name)
    assert {n: a.shape for n, a in m.parameters().items()} == param_shapes_ext(cfg)
    tok = tokens_for(1, (B, T))
    assert rel_err(m.forward(tok), ref.forward(tok).numpy()) <= TOL


def test_oracle_reference_at_matches_reference():
    """reference_at with default positions (Tq = Tk) = reference.py, out and importance."""
    rng = np.random.default_rng(0)
    for spec in ("softmax,kbias=head,vbias=head", "softmax,sink=head,alibi=1", "sigmoid,norm=sum",
                 "softmax,window=3", "elu-kernel,prefix=2,kbias=shared", "linear,norm=clamp"):
        q = rng.standard_normal((2, 6, 4, 8))
        k, v = rng.standard_normal((2, 2, 6, 2, 8))
        params = _op_params(spec, 4, 8, rng)
        want = reference(spec, q, k, v, params, np.zeros_like(q))
        got = reference_at(spec, q, k, v, params)
        assert np.allclose(got["out"], want["out"], rtol=1e-12, atol=1e-12), spec
        assert np.allclose(got["importance"], want["importance"], rtol=1e-12, atol=1e-12), spec


# ------------------------------------------------------------ 1. full caches

def _check_full(name, got, tok):
    cfg, m, params, ref = build(name)
    inc = ref_decode(name, FULL_CASES, tok)
    assert got.shape == (tok.shape[0], tok.shape[1], V) and got.dtype == np.float32
    assert rel_err(got, inc) <= TOL, ("vs incremental reference", rel_err(got, inc))
    if torch_model_covers(cfg):
        with torch.no_grad():
            whole = TorchModel(cfg, params).forward(tok).numpy()
        assert rel_err(got, whole) <= TOL, ("vs TorchModel.forward", rel_err(got, whole))
    else:
        whole = ref.forward(tok).numpy()
        assert rel_err(got, whole) <= TOL, ("vs DecodeRef.forward", rel_err(got, whole))


@pytest.mark.parametrize("mode", ["decode", "chunk1", "chunk7", "whole"])
@pytest.mark.parametrize("name", list(FULL_CASES))
def test_full_cache_matches_forward(name, mode):
    """decode(cache="full") one position at a time, and cache.step with the whole sequence
    after chunk=1, chunk=7 or the default chunk (all of it at once), against TorchModel.forward
    (or DecodeRef.forward) and the incremental reference."""
    cfg, m, params, ref = build(name)
    tok = tokens_for(1, (B, T))
    if mode == "decode":
        got = m.decode(tok, cache="full")
    else:
        chunk = {"chunk1": 1, "chunk7": 7, "whole": None}[mode]
        with m.cache("full", max_len=T, batch=B, chunk=chunk) as c:
            assert c.chunk == chunk
            got = c.step(tok)
            assert list(c.fed()) == [T] * B
            held = T + (1 if (cfg.get("attnsink") or {}).get("sink_token") else 0)
            assert list(c.held()) == [held] * B
    _check_full(name, got, tok)


RAGGED = ["softmax", "sigmoid_kvbias", "pos_alibi", "pos_relative", "pos_learned",
          "pos_sinusoidal", "gpt2", "sink_token", "sink_token_learned", "window3", "kernel_mlp",
          "post_norm"]


@pytest.mark.parametrize("chunk", [None, 2])
@pytest.mark.parametrize("name", RAGGED)
def test_full_cache_ragged(name, chunk):
    """step_ragged: three sequences of different lengths fed in rounds of different counts
    (some 0); each sequence's rows equal the reference on its own tokens, rows past a
    sequence's length are 0, fed() follows."""
    cfg, m, params, ref = build(name)
    rounds = [[4, 6, 0], [1, 0, 5], [8, 1, 5], [0, 0, 1]]
    total = np.sum(rounds, axis=0)
    toks = [tokens_for(10 + b, (1, int(total[b]))) for b in range(3)]
    want = [ref_decode(name, FULL_CASES, toks[b])[0] for b in range(3)]
    done = np.zeros(3, int)
    c = m.cache("full", max_len=int(total.max()), batch=3, chunk=chunk)
    for lengths in rounds:
        n_max = max(lengths)
        grid = np.zeros((3, n_max), np.int32)
        for b in range(3):
            grid[b, :lengths[b]] = toks[b][0, done[b]:done[b] + lengths[b]]
            grid[b, lengths[b]:] = (b + 5) % V  # filler past the length: ignored
        got = c.step_ragged(grid, lengths)
        assert got.shape == (3, n_max, V)
        for b in range(3):
            n = lengths[b]
            assert not np.any(got[b, n:]), "rows past the length must be 0"
            if n:
                part = want[b][done[b]:done[b] + n]
                assert rel_err(got[b, :n], part) <= TOL, (b, rel_err(got[b, :n], part))
        done += lengths
        assert list(c.fed()) == list(done)
    c.close()


def test_full_decode_batch_rows_independent():
    """A batch of B sequences equals each sequence decoded alone."""
    cfg, m, params, ref = build("pos_alibi")
    tok = tokens_for(3, (3, 7))
    both = m.decode(tok, cache="full")
    for b in range(3):
        assert rel_err(both[b], m.decode(tok[b:b + 1], cache="full")[0]) <= 1e-6


# ----------------------------------------------------------- 2. window and sink caches

@pytest.mark.parametrize("mode", ["decode", "chunk1", "chunk7", "whole"])
@pytest.mark.parametrize("policy", ["window", "sink"])
@pytest.mark.parametrize("name", list(STREAM_CASES))
def test_window_sink_match_reference(name, policy, mode):
    """A stream of 3 * W tokens through a window (W) or sink (NS + W) cache, one position at a
    time or in one step cut into chunks (1, 7 > W, or all at once), against the reference of
    the documented rule. held() stays at the cache's capacity once full."""
    cfg, m, params, ref = build(name, STREAM_CASES)
    Ts = 3 * W
    tok = tokens_for(2, (B, Ts))
    want = ref_decode(name, STREAM_CASES, tok, policy, NS, W)
    if mode == "decode":
        got = m.decode(tok, cache=policy, n_sink=NS, window=W)
    else:
        chunk = {"chunk1": 1, "chunk7": 7, "whole": None}[mode]
        with m.cache(policy, n_sink=NS, window=W, batch=B, chunk=chunk) as c:
            got = c.step(tok)
            assert list(c.fed()) == [Ts] * B
            assert list(c.held()) == [W + (NS if policy == "sink" else 0)] * B
    assert rel_err(got, want) <= TOL, rel_err(got, want)
    # and the stream differs from a full cache's once positions are evicted (unless the spec's
    # own window, on ranks, hides everything the cache evicts)
    if "window=" not in (cfg.get("attnsink") or {}).get("attn", ""):
        full = ref_decode(name, STREAM_CASES, tok, "full")
        assert rel_err(full[:, -1], want[:, -1]) > 1e-3


@pytest.mark.parametrize("policy", ["window", "sink"])
@pytest.mark.parametrize("name", list(STREAM_CASES))
def test_window_sink_before_fill_equal_full(name, policy):
    """Until the cache fills (W positions, or NS + W; the sink token counts as a position),
    window and sink logits are the full cache's."""
    cfg, m, params, ref = build(name, STREAM_CASES)
    cap = W + (NS if policy == "sink" else 0)
    if (cfg.get("attnsink") or {}).get("sink_token"):
        cap -= 1
    tok = tokens_for(4, (B, cap))
    got = m.decode(tok, cache=policy, n_sink=NS, window=W)
    full = m.decode(tok, cache="full")
    assert rel_err(got, full) <= 1e-6
    with m.cache(policy, n_sink=NS, window=W, batch=B) as c:
        assert rel_err(c.step(tok), full) <= 1e-6


def test_sink_cache_keeps_sinks():
    """A sink cache differs from a window cache of the same window once evicting, and its sink
    keys matter: changing token 0 changes the logits far down the stream in a sink cache, not
    in a window cache."""
    cfg, m, params, ref = build("rope", STREAM_CASES)
    tok = tokens_for(5, (1, 3 * W))
    other = tok.copy()
    other[0, 0] = (tok[0, 0] + 1) % V
    s1 = m.decode(tok, cache="sink", n_sink=NS, window=W)
    s2 = m.decode(other, cache="sink", n_sink=NS, window=W)
    w1 = m.decode(tok, cache="window", window=W)
    w2 = m.decode(other, cache="window", window=W)
    assert rel_err(s1[0, -1], s2[0, -1]) > 1e-3
    assert np.array_equal(w1[0, -1], w2[0, -1])


def test_cache_reset_nbytes_repr():
    cfg, m, params, ref = build("rope", STREAM_CASES)
    tok = tokens_for(6, (B, 9))
    c = m.cache("sink", n_sink=NS, window=W, batch=B)
    a = c.step(tok)
    assert c.nbytes > 0 and c.batch == B and c.policy == "sink"
    assert "sink" in repr(c)
    c.reset()
    assert list(c.fed()) == [0, 0] and list(c.held()) == [0, 0]
    assert np.array_equal(c.step(tok), a)  # a reset cache starts afresh
    assert c.fed(1) == 9 and c.held(0) == NS + W
    with pytest.raises(ValueError, match="b=2"):
        c.fed(2)
    with pytest.raises(ValueError, match="b=-1"):
        c.held(-1)
    full = m.cache("full", max_len=100, batch=1)
    before = full.nbytes
    full.step(tokens_for(7, (1, 40)))
    assert full.nbytes > before  # a full cache grows as positions arrive
    c.close()
    assert c.closed and "closed" in repr(c)
    with pytest.raises(StateError, match="closed"):
        c.step(tok)
    c.close()  # idempotent


def test_logits_false_prefill():
    cfg, m, params, ref = build("rope", STREAM_CASES)
    tok = tokens_for(8, (1, 10))
    want = m.decode(tok, cache="full")
    with m.cache("full", max_len=10) as c:
        assert c.step(tok[:, :7], logits=False) is None
        assert rel_err(c.step(tok[:, 7:]), want[:, 7:]) <= 1e-6


# --------------------------------------------------------------------- 3. generate

@pytest.mark.parametrize("policy", ["full", "window", "sink"])
def test_generate_greedy_is_argmax_of_decode(policy):
    cfg, m, params, ref = build("rope", STREAM_CASES)
    T0, n_new = 5, 3 * W
    prompt = tokens_for(9, (B, T0))
    out = m.generate(prompt, n_new, cache=policy, n_sink=NS, window=W, temperature=0.0)
    assert out.shape == (B, T0 + n_new) and out.dtype == np.int32
    assert np.array_equal(out[:, :T0], prompt)
    logits = m.decode(out[:, :-1], cache=policy, n_sink=NS, window=W)
    steps = logits[:, T0 - 1:]
    top2 = np.sort(steps, axis=-1)[..., -2:]
    clear = (top2[..., 1] - top2[..., 0]) > 1e-4  # no near-ties that rounding could flip
    assert clear.mean() > 0.8
    assert np.array_equal(np.argmax(steps, axis=-1)[clear], out[:, T0:][clear])
    # top_k=1 is greedy whatever the temperature
    assert np.array_equal(m.generate(prompt, n_new, cache=policy, n_sink=NS, window=W,
                                     temperature=1.0, top_k=1, seed=3), out)


def test_generate_seeds():
    cfg, m, params, ref = build("rope", STREAM_CASES)
    prompt = tokens_for(11, (B, 4))
    a = m.generate(prompt, 20, cache="sink", n_sink=NS, window=W, temperature=1.0, seed=7)
    b = m.generate(prompt, 20, cache="sink", n_sink=NS, window=W, temperature=1.0, seed=7)
    c = m.generate(prompt, 20, cache="sink", n_sink=NS, window=W, temperature=1.0, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(a[:, :4], prompt) and np.array_equal(c[:, :4], prompt)
    assert a.min() >= 0 and a.max() < V
    # top_p and top_k restrict; still deterministic per seed
    d = m.generate(prompt, 20, cache="full", temperature=0.8, top_k=5, top_p=0.9, seed=7)
    assert np.array_equal(d, m.generate(prompt, 20, cache="full", temperature=0.8, top_k=5,
                                        top_p=0.9, seed=7))
    # n_new = 0 returns the prompt; a given Cache is reset first
    assert np.array_equal(m.generate(prompt, 0, cache="full"), prompt)
    with m.cache("sink", n_sink=NS, window=W, batch=B) as cache:
        cache.step(prompt)
        e = m.generate(prompt, 20, cache=cache, temperature=1.0, seed=7)
        assert np.array_equal(e, a)
        assert list(cache.fed()) == [4 + 19] * B


def test_sampler():
    s = attnsink.Sampler(0.0)
    logits = np.random.default_rng(0).standard_normal((3, 5, V)).astype(np.float32)
    assert np.array_equal(s.pick(logits), np.argmax(logits, axis=-1))
    assert s.pick(logits[0, 0]) == int(np.argmax(logits[0, 0]))
    tie = np.zeros(V, np.float32)
    tie[[4, 9]] = 1.0
    assert s.pick(tie) == 4  # the lowest id among equal maxima
    hot = attnsink.Sampler(1.0, seed=1)
    draws = hot.pick(np.tile(logits[0, 0], (2000, 1)))
    p = np.exp(logits[0, 0] - logits[0, 0].max())
    p /= p.sum()
    freq = np.bincount(draws, minlength=V) / 2000.0
    assert np.abs(freq - p).max() < 0.05
    top = attnsink.Sampler(1.0, top_k=3, seed=2).pick(np.tile(logits[0, 0], (200, 1)))
    assert set(top) <= set(np.argsort(logits[0, 0])[-3:])
    for bad, word in (({"temperature": -1.0}, "temperature"), ({"top_k": -2}, "top_k"),
                      ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p")):
        with pytest.raises(ValueError, match=word):
            attnsink.Sampler(**bad)


# ------------------------------------------------------------------- 4. bad input

def _usable(m, c, tok_prefix, name="rope", cases=STREAM_CASES):
    """The cache still works after an error: the next valid step gives the logits of the
    sequence fed so far plus one token."""
    nxt = tokens_for(99, (c.batch, 1))
    got = c.step(nxt)
    whole = np.concatenate([tok_prefix, nxt], axis=1)
    want = ref_decode(name, cases, whole, c.policy, c.n_sink, c.window)[:, -1:]
    assert rel_err(got, want) <= TOL


def test_cache_of_another_model():
    cfg, m1, params, ref = build("rope", STREAM_CASES)
    m2, _ = make(cfg, seed=2)
    tok = tokens_for(12, (1, 5))
    c = m1.cache("full", max_len=16)
    c.step(tok)
    with pytest.raises(ArgumentError, match="another model") as e:
        c.step(tokens_for(13, (1, 1)), model=m2)
    assert e.value.status == Status.ERR_ARG
    with pytest.raises(ArgumentError, match="another model"):
        c.step_ragged(tokens_for(13, (1, 1)), [1], model=m2)
    assert c.fed(0) == 5 and c.held(0) == 5
    _usable(m1, c, tok)
    # directly through ctypes as well
    one = tokens_for(14, (1, 1))
    st = lib.asink_model_decode(m2._h.ptr, c._h.ptr, 1,
                                one.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), None)
    assert st == Status.ERR_ARG and c.fed(0) == 6


def test_step_past_max_len():
    cfg, m, params, ref = build("rope", STREAM_CASES)
    tok = tokens_for(15, (1, 3))
    c = m.cache("full", max_len=4)
    c.step(tok)
    with pytest.raises(ArgumentError, match="max_len=4") as e:
        c.step(tokens_for(16, (1, 2)))
    assert e.value.status == Status.ERR_SHAPE and c.fed(0) == 3
    _usable(m, c, tok, cases=STREAM_CASES)
    with pytest.raises(ValueError, match="max_len=4"):
        c.step(tokens_for(16, (1, 1)))
    # the sink token does not count against max_len
    _, ms, _, _ = build("rope_sink_token", STREAM_CASES)
    with ms.cache("full", max_len=4) as cs:
        cs.step(tokens_for(17, (1, 4)))
        assert cs.fed(0) == 4 and cs.held(0) == 5


def test_step_past_learned_positions():
    cfg, m, params, ref = build("pos_learned")
    c = m.cache("full", max_len=MAXPOS + 5)
    tok = tokens_for(18, (1, MAXPOS - 1))
    c.step(tok)
    with pytest.raises(ValueError, match=str(MAXPOS)):
        c.step(tokens_for(19, (1, 2)))
    _usable(m, c, tok, "pos_learned", FULL_CASES)


@pytest.mark.parametrize("n_sink,window", [(4, 4), (5, 4), (0, 4)])
def test_bad_n_sink(n_sink, window):
    cfg, m, params, ref = build("rope", STREAM_CASES)
    with pytest.raises(ArgumentError, match="n_sink=%d" % n_sink):
        m.cache("sink", n_sink=n_sink, window=window)


@pytest.mark.parametrize("kw,word", [({"policy": "window", "window": 0}, "window=0"),
                                     ({"policy": "full", "max_len": 0}, "max_len=0"),
                                     ({"policy": "sink", "batch": 0}, "batch=0"),
                                     ({"policy": "ring"}, "ring"),
                                     ({"policy": "Full"}, "Full"),
                                     ({"policy": "sink", "chunk": 0}, "chunk=0")])
def test_bad_cache_arguments(kw, word):
    cfg, m, params, ref = build("rope", STREAM_CASES)
    with pytest.raises(ArgumentError, match=word):
        m.cache(**kw)


def test_unknown_policy_everywhere():
    cfg, m, params, ref = build("rope", STREAM_CASES)
    tok = tokens_for(20, (1, 3))
    with pytest.raises(ValueError, match="'ring'"):
        m.decode(tok, cache="ring")
    with pytest.raises(ValueError, match="'ring'"):
        m.generate(tok, 2, cache="ring")
    with pytest.raises(TypeError):
        m.cache(policy=3)


@pytest.mark.parametrize("name", ["pos_learned", "pos_sinusoidal", "gpt2"])
@pytest.mark.parametrize("policy", ["window", "sink"])
def test_window_sink_refused_for_absolute_positions(name, policy):
    cfg, m, params, ref = build(name)
    with pytest.raises(LibraryError, match="learned|sinusoidal") as e:
        m.cache(policy, n_sink=NS, window=W)
    assert e.value.status == Status.ERR_UNSUPPORTED and isinstance(e.value, RuntimeError)
    with pytest.raises(RuntimeError, match="full"):
        m.decode(tokens_for(21, (1, 3)), cache=policy, n_sink=NS, window=W)
    m.cache("full")  # full is fine


def test_other_refused_combinations():
    m, _ = make(llama(attn="linear", kernel="mlp"))
    with pytest.raises(LibraryError, match="MLP kernel"):
        m.cache("sink", n_sink=NS, window=W)
    m.cache("window", window=W)
    m, _ = make(llama(attn="softmax,prefix=8"))
    with pytest.raises(LibraryError, match="prefix"):
        m.cache("window", window=W)
    m, _ = make(llama(attn="softmax,causal=0"))
    with pytest.raises(LibraryError, match="causal=0"):
        m.cache("full")


def test_token_outside_vocabulary():
    cfg, m, params, ref = build("rope", STREAM_CASES)
    tok = tokens_for(22, (B, 4))
    c = m.cache("sink", n_sink=NS, window=W, batch=B)
    c.step(tok)
    for bad in (V, -1, V + 100):
        grid = tokens_for(23, (B, 3))
        grid[1, 2] = bad
        with pytest.raises(ArgumentError, match=str(bad)):
            c.step(grid)
        with pytest.raises(ArgumentError, match=str(bad)):
            c.step_ragged(grid, [3, 3])
    assert list(c.fed()) == [4, 4]
    _usable(m, c, tok)
    with pytest.raises(ArgumentError, match=str(2**40)):
        c.step(np.full((B, 1), 2**40))
    with pytest.raises(TypeError):
        c.step(np.zeros((B, 1), np.float32))


def test_bad_shapes():
    cfg, m, params, ref = build("rope", STREAM_CASES)
    c = m.cache("window", window=W, batch=2)
    with pytest.raises(ArgumentError, match=r"\(3, 1\).*batch=2"):
        c.step(np.zeros((3, 1), np.int32))
    with pytest.raises(ArgumentError, match="2-D"):
        c.step(np.zeros(3, np.int32))
    with pytest.raises(ArgumentError, match=r"lengths\[1\] = 5"):
        c.step_ragged(np.zeros((2, 3), np.int32), [1, 5])
    with pytest.raises(ArgumentError, match=r"\(3,\)"):
        c.step_ragged(np.zeros((2, 3), np.int32), [1, 2, 3])
    assert list(c.fed()) == [0, 0]
    with pytest.raises(ArgumentError, match="n_new=-1"):
        m.generate(np.zeros((1, 2), np.int32), -1)


def test_prefix_lm_first_call_must_hold_prefix():
    cfg, m, params, ref = build("prefix4")
    tok = tokens_for(24, (1, 6))
    c = m.cache("full", max_len=10)
    with pytest.raises(StateError, match="prefix") as e:
        c.step(tok[:, :2])
    assert e.value.status == Status.ERR_STATE and c.fed(0) == 0
    got = c.step(tok)  # the whole prefix and more in one call: fine
    assert rel_err(got, ref_decode("prefix4", FULL_CASES, tok)) <= TOL
    with pytest.raises(StateError, match="prefix"):
        m.decode(tok[:, :3], cache="full")  # T < P: no call can hold the whole prefix


# ------------------------------------------------------------- 5. forward_at

BASE_SPECS = ["softmax", "sigmoid", "elu", "linear", "elu-kernel", "softmax,alibi=1",
              "softmax,window=3", "softmax,prefix=3", "softmax,kbias=head,vbias=head",
              "softmax,kbias=shared,vbias=shared,sink=head", "softmax,sink=zero,alpha=2",
              "sigmoid,norm=sum,kbias=head", "elu,norm=clamp,window=4",
              "linear,norm=clamp,vbias=head", "elu-kernel,norm=sum,kbias=shared,vbias=head",
              "softmax,relbias=t5", "sigmoid,relbias=t5,alibi=1", "softmax,causal=0",
              "sigmoid,causal=0,kbias=head,vbias=head"]


def _op_params(spec, Hh, D, rng):
    """Random values for the parameters the spec has (names and shapes of docs/attention.md)."""
    op = attnsink.Attention(spec, n_head=Hh, n_kv_head=max(1, Hh // 2), head_dim=D)
    return {n: rng.standard_normal(a.shape) * (0.5 if n != "relative_bias" else 1.0)
            for n, a in op.params.items()}


def _op(spec, Hh, Hkv, D, params):
    op = attnsink.Attention(spec, n_head=Hh, n_kv_head=Hkv, head_dim=D)
    for n, a in params.items():
        op.params[n][...] = a
    return op


def _qkv(rng, Bq, Tq, Tk, Hh, Hkv, D, spec):
    q = rng.standard_normal((Bq, Tq, Hh, D)).astype(np.float32)
    k = rng.standard_normal((Bq, Tk, Hkv, D)).astype(np.float32)
    v = rng.standard_normal((Bq, Tk, Hkv, D)).astype(np.float32)
    return q, k, v


@pytest.mark.parametrize("spec", BASE_SPECS)
def test_forward_at_newest_rows_equal_forward(spec):
    """Queries = the last Tq of Tk keys (positions left to their defaults): the rows of a full
    forward; importance against reference_at (each key's column divided by the queries at or
    after it)."""
    rng = np.random.default_rng(abs(hash(spec)) % 2**32)
    Hh, Hkv, D, Tk = 4, 2, 8, 11
    params = {n: a.astype(np.float32) for n, a in _op_params(spec, Hh, D, rng).items()}
    op = _op(spec, Hh, Hkv, D, params)
    q, k, v = _qkv(rng, 2, Tk, Tk, Hh, Hkv, D, spec)
    full = op.forward(q, k, v)
    for Tq in (1, 4, Tk):
        got = op.forward_at(q[:, -Tq:], k, v, importance=True)
        assert got.shape == (2, Tq, Hh, D)
        assert rel_err(got, full[:, -Tq:]) <= 1e-5, (Tq, rel_err(got, full[:, -Tq:]))
        want = reference_at(spec, q[:, -Tq:], k, v, params)
        assert rel_err(got, want["out"]) <= TOL
        assert op.importance.shape == (2, Hh, op.key_count(Tk))
        assert rel_err(op.importance, want["importance"]) <= TOL
        # explicit default positions: the same call
        same = op.forward_at(q[:, -Tq:], k, v, q_pos=np.arange(Tk - Tq, Tk),
                             k_pos=np.arange(Tk))
        assert np.array_equal(same, got)


@pytest.mark.parametrize("spec", BASE_SPECS)
def test_forward_at_positions_with_gaps(spec):
    """Explicit positions with gaps (as a window or sink cache would give, and queries past
    the keys) against reference.py's formulas evaluated on those positions; backward
    differentiates the call (gradients against autograd of the same formulas)."""
    rng = np.random.default_rng(abs(hash(spec + "gap")) % 2**32)
    Hh, Hkv, D = 4, 2, 8
    params = {n: a.astype(np.float32) for n, a in _op_params(spec, Hh, D, rng).items()}
    op = _op(spec, Hh, Hkv, D, params)
    k_pos = np.array([0, 1, 2, 5, 7, 8, 10, 12, 13, 40], np.int64)
    q_pos = np.array([7, 8, 12, 13, 40], np.int64)
    q, k, v = _qkv(rng, 2, len(q_pos), len(k_pos), Hh, Hkv, D, spec)
    dout = rng.standard_normal(q.shape).astype(np.float32)
    got = op.forward_at(q, k, v, q_pos=q_pos, k_pos=k_pos, importance=True)
    want = reference_at(spec, q, k, v, params, q_pos, k_pos, dout=dout)
    assert rel_err(got, want["out"]) <= TOL, rel_err(got, want["out"])
    assert rel_err(op.importance, want["importance"]) <= TOL
    dq, dk, dv = op.backward(dout)
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape
    for name, a, b in (("dq", dq, want["dq"]), ("dk", dk, want["dk"]), ("dv", dv, want["dv"])):
        assert rel_err(a, b) <= TOL, (name, rel_err(a, b))
    for n in params:
        assert rel_err(op.grads[n], want["grads"][n]) <= TOL, n
    # keys at their defaults 0 .. Tk-1, queries at given positions past them
    q2 = q[:, :2]
    got = op.forward_at(q2, k, v, q_pos=[9, 11])
    want = reference_at(spec, q2, k, v, params, [9, 11], None)
    assert rel_err(got, want["out"]) <= TOL


def test_forward_at_errors():
    op = attnsink.Attention("softmax,window=2", 4, 2, 8)
    rng = np.random.default_rng(0)
    q, k, v = _qkv(rng, 1, 3, 6, 4, 2, 8, "")
    with pytest.raises(ArgumentError, match=r"q_pos\[1\]=3"):
        op.forward_at(q, k, v, q_pos=[3, 3, 5])
    with pytest.raises(ArgumentError, match=r"k_pos\[2\]"):
        op.forward_at(q, k, v, k_pos=[0, 1, 1, 2, 3, 4])
    with pytest.raises(ArgumentError, match=r"k_pos has shape \(5,\)"):
        op.forward_at(q, k, v, k_pos=[0, 1, 2, 3, 4])
    with pytest.raises(ArgumentError, match=r"Tq <= Tk"):
        op.forward_at(np.zeros((1, 7, 4, 8)), k, v)
    with pytest.raises(ArgumentError, match=r"v has shape"):
        op.forward_at(q, k, v[:, :5])
    with pytest.raises(TypeError):
        op.forward_at(q, k, v, q_pos=[0.5, 1.0, 2.0])
    # a query that sees no key (window 2, query at 20, keys at 0 .. 5)
    with pytest.raises(ArgumentError, match="20") as e:
        op.forward_at(q[:, :1], k, v, q_pos=[20])
    assert e.value.status == Status.ERR_SHAPE
    with pytest.raises(StateError):
        op.backward(np.zeros((1, 1, 4, 8)))  # the failed forward left nothing to differentiate
    # the op still works
    assert np.all(np.isfinite(op.forward_at(q, k, v)))


# -------------------------------------------------------------------- 6. the metric

def _ref_streams(ref, policy, tok, calls):
    """One reference stream per sequence, fed in the given calls (lists of token counts)."""
    streams = []
    for b in range(tok.shape[0]):
        s = ref.stream(policy, NS, W)
        t = 0
        for n in calls:
            s.feed(tok[b, t:t + n])
            t += n
        streams.append(s)
    return streams


METRIC_CASES = [("rope", "full"), ("rope", "sink"), ("rope", "window"),
                ("rope_kvbias_sinkhead", "sink"), ("alibi_sigmoid_window4", "sink"),
                ("rope_sink_token", "sink")]


@pytest.mark.parametrize("name,policy", METRIC_CASES)
def test_metric_sink_share(name, policy):
    """One record per decode call; for a step of one token the share is the sum of the
    reference's attention (softmax: P; otherwise the proxy-normalised map) on the kept stream
    positions < n_sink, per layer and head; for a call of several tokens the mean over its
    rows; with B sequences the mean over them too."""
    cfg, m, params, ref = build(name, STREAM_CASES)
    Ts = 3 * W
    calls = [3, 4] + [1] * (Ts - 7)   # a prefill of 3, a call of 4 rows, then one row per call
    tok = tokens_for(30, (B, Ts))
    mt = attnsink.Metric()
    m.attach_metric(mt)
    try:
        assert m.metric is mt and mt.decode_steps == 0
        with pytest.raises(StateError, match="no decode step"):
            mt.sink_share()
        c = m.cache(policy, n_sink=NS, window=W, batch=B)
        t = 0
        for n in calls:
            c.step(tok[:, t:t + n])
            t += n
        assert mt.decode_steps == len(calls)
        share = mt.sink_share()
        assert share.shape == (len(calls), L, H) and share.dtype == np.float32
        assert np.all(share >= 0) and np.all(share <= 1 + 1e-6)
        streams = _ref_streams(ref, policy, tok, calls)
        want = np.stack([np.mean([s.sink_share(i, NS) for s in streams], axis=0)
                         for i in range(len(calls))])
        assert rel_err(share, want) <= TOL, rel_err(share, want)
        # a window cache evicts the sinks: no share once they are gone
        if policy == "window":
            assert not np.any(share[-1])
        elif "window=" not in (cfg.get("attnsink") or {}).get("attn", ""):
            assert np.all(share[-1] > 0)  # (a spec window on ranks may hide the sinks)
        # forward passes feed the sequence statistics, not the decoding record
        m.forward(tok)
        assert mt.decode_steps == len(calls) and mt.dims()[0] == B
        assert set(mt.stats()) >= {"importance", "sink", "entropy"}
        # sink_stats borrows the model and gives the attached metric back
        m.sink_stats(tok[:1])
        assert m.metric is mt
        c.step(tok[:, :1])
        assert mt.decode_steps == len(calls) + 1
        mt.reset()
        assert mt.decode_steps == 0
        with pytest.raises(StateError):
            mt.sink_share()
    finally:
        m.attach_metric(None)
    assert m.metric is None
    c.step(tok[:, :1])
    assert mt.decode_steps == 0  # detached: nothing recorded


@pytest.mark.parametrize("name,policy", METRIC_CASES)
def test_metric_sink_share_first_calls(name, policy):
    """The records of calls whose new rows include the sink positions themselves: a prefill of
    3 rows from an empty cache, and one row at a time from an empty cache (the new rows at
    positions < n_sink are sink slots too; the first version of the C side counted only the
    rows held before the call and recorded 0 here)."""
    cfg, m, params, ref = build(name, STREAM_CASES)
    tok = tokens_for(30, (B, 3 * W))
    mt = attnsink.Metric()
    m.attach_metric(mt)
    try:
        for calls in ([3], [1, 1, 1]):
            mt.reset()
            with m.cache(policy, n_sink=NS, window=W, batch=B) as c:
                t = 0
                for n in calls:
                    c.step(tok[:, t:t + n])
                    t += n
            streams = _ref_streams(ref, policy, tok, calls)
            want = np.stack([np.mean([s.sink_share(i, NS) for s in streams], axis=0)
                             for i in range(len(calls))])
            assert rel_err(mt.sink_share(), want) <= TOL, (calls, mt.sink_share()[:, 0], want[:, 0])
    finally:
        m.detach_metric()


def test_metric_generate_and_ragged():
    """generate records its prefill and each sampled step; a ragged call is one record,
    averaged over the rows it ran."""
    cfg, m, params, ref = build("rope", STREAM_CASES)
    mt = attnsink.Metric()
    mt.attach(m)
    try:
        m.generate(tokens_for(31, (1, 4)), 5, cache="full", n_sink=NS)
        assert mt.decode_steps == 5  # the prompt, then 4 fed-back tokens
        with m.cache("full", max_len=16, batch=2, n_sink=NS) as c:
            toks = tokens_for(32, (2, 7))
            c.step(toks[:, :2])
            mt.reset()
            grid = np.ascontiguousarray(toks[:, 2:])
            c.step_ragged(grid, [4, 1])
            assert mt.decode_steps == 1
            s0, s1 = ref.stream("full", NS), ref.stream("full", NS)
            s0.feed(toks[0, :2])
            s1.feed(toks[1, :2])
            s0.feed(toks[0, 2:6])
            s1.feed(toks[1, 2:3])
            want = (s0.sink_share(1, NS) * 4 + s1.sink_share(1, NS) * 1) / 5.0
            assert rel_err(mt.sink_share()[0], want) <= TOL
    finally:
        m.detach_metric()


def test_threads_do_not_change_decoding():
    """The decode paths with a team of 2 threads (batch slices, BLIS) give the 1-thread
    logits to float rounding."""
    cfg, m, params, ref = build("rope", STREAM_CASES)
    tok = tokens_for(35, (3, 10))
    one = m.decode(tok, cache="sink", n_sink=NS, window=4)
    with m.cache("full", max_len=10, batch=3) as c:
        one_full = c.step(tok)
    attnsink.set_num_threads(2)
    try:
        two = m.decode(tok, cache="sink", n_sink=NS, window=4)
        with m.cache("full", max_len=10, batch=3) as c:
            two_full = c.step(tok)
    finally:
        attnsink.set_num_threads(1)
    assert rel_err(two, one) <= 1e-6 and rel_err(two_full, one_full) <= 1e-6


def test_metric_lifetimes():
    """The model keeps an attached metric alive; dropping the model first is safe."""
    cfg = llama()
    m, _ = make(cfg)
    mt = attnsink.Metric()
    m.attach_metric(mt)
    del mt
    gc.collect()
    m.decode(tokens_for(33, (1, 3)))
    assert m.metric.decode_steps == 3
    mt = m.metric
    del m
    gc.collect()
    assert mt.decode_steps == 3 and mt.sink_share().shape == (3, L, H)
    with pytest.raises(TypeError):
        make(cfg)[0].attach_metric(object())


def test_metric_attachment_bookkeeping():
    """One metric per model and one model per metric, as the library keeps them; a metric
    attached by hand through ctypes cannot tell its record's shape and says so."""
    m1, _ = make(llama())
    m2, _ = make(llama(), seed=3)
    a, b = attnsink.Metric(), attnsink.Metric()
    m1.attach_metric(a)
    m2.attach_metric(a)              # moves: m1 no longer holds it
    assert m1.metric is None and m2.metric is a
    m1.decode(tokens_for(36, (1, 2)))
    assert a.decode_steps == 0
    m2.attach_metric(b)              # replaces a
    m2.decode(tokens_for(36, (1, 2)))
    assert a.decode_steps == 0 and b.decode_steps == 2
    m2.detach_metric()
    raw = attnsink.Metric()
    assert lib.asink_model_attach_metric(m1._h.ptr, raw.ptr) == Status.OK
    try:
        m1.decode(tokens_for(36, (1, 2)))
        assert raw.decode_steps == 2
        with pytest.raises(StateError, match="attach_metric"):
            raw.sink_share()
    finally:
        lib.asink_model_attach_metric(m1._h.ptr, None)


def test_decode_with_a_given_cache():
    cfg, m, params, ref = build("rope", STREAM_CASES)
    tok = tokens_for(37, (B, 3 * W))
    with m.cache("sink", n_sink=NS, window=W, batch=B) as c:
        c.step(tok[:, :4])
        got = m.decode(tok, cache=c)     # reset first
        assert list(c.fed()) == [3 * W] * B and not c.closed
        assert np.array_equal(got, m.decode(tok, cache="sink", n_sink=NS, window=W))
        with pytest.raises(ArgumentError, match="batch=2"):
            m.decode(tok[:1], cache=c)


def test_cache_outlives_model_handle_order():
    """A cache keeps its model alive (it decodes with it); closing either order is safe."""
    m, _ = make(llama())
    c = m.cache("window", window=4)
    del m
    gc.collect()
    assert c.step(tokens_for(34, (1, 6))).shape == (1, 6, V)
    c.close()
