"""attnsink.Attention against the PyTorch oracle (reference.py) for every base and option.

For each case: random q, k, v, dout (fixed seed per case), random parameters written through
op.params; then forward with importance, backward, and a comparison of out, importance, dq,
dk, dv and every parameter gradient with the float64 torch autograd result.

Tolerance. The library computes in float32 and the oracle in float64 on the same (float32)
inputs. For each tensor we take

    err = max |lib - ref| / max(max |ref|, TINY)

and require err <= 1e-4. This is the error relative to the tensor's scale (an infinity-norm
relative error). An elementwise relative error |lib - ref| / |ref| would be meaningless here:
outputs and gradients are sums of signed terms, so individual reference entries cross zero and
come arbitrarily close to it, where a perfectly good float32 result (error ~1e-7 of the
tensor's scale) has an unbounded relative error. Float32 rounding of a dot product or row sum of
n terms is bounded by about n * 6e-8 times the magnitude of the terms and is in practice
~sqrt(n) * 6e-8, so at T <= 300 a correct implementation sits around 1e-6 and 1e-4 leaves ample
margin while still catching any real mistake (a wrong mask entry, a missed term or a wrong scale
gives errors of 1e-2 and more). TINY = 1e-6 only guards against dividing by zero should a
reference tensor be all zeros (then the library must give zero to within 1e-10).

One refinement for gradients: some vanish exactly by cancellation while the terms that cancel
are of ordinary size, e.g. dq and dk of softmax at T = 1 or with window=1 (each row sees one
key, so P = 1 whatever the scores): the library computes dS = P * (dP - rowsum(dout * out))
from two float32 dot products of size ~|dout||out| and gets ~1e-6 instead of 0, while the
float64 reference gets ~1e-17. Measured against max|ref| = 0 that is "infinitely" wrong,
measured against the size of the cancelling terms it is rounding. So for dq, dk, dv and the
parameter gradients the denominator is max(max|ref|, GRAD_FLOOR * G), with G the largest entry
of all the reference gradients of the case (gradients of the same loss with respect to
unit-scale inputs: the size of the terms that cancel) and GRAD_FLOOR = 0.1. An error then has
to stay below 1e-5 * G: a few float32 roundings of D-long dot products, far below what any
real mistake (a missed term, a wrong mask entry or scale) produces.

Inputs are standard normal, except for `linear` with norm=sum and `elu-kernel` with norm=sum and
a key bias (marked positive=True below): there A = a / (row sum + 1e-8) with scores of either
sign, and a row sum near zero makes the function itself ill-conditioned: the error grows like
1/|row sum| without bound, whatever the implementation (with standard normal inputs
linear,norm=sum already reaches 4.5e-5 at T = 257 with these seeds, against ~3e-6 for every
well-conditioned case). Non-negative q, k and k_bias keep every row sum away from zero, so the
comparison measures the library and not the conditioning of the input.
"""

import math
import zlib

import numpy as np
import pytest
import torch

import attnsink
from reference import reference, parse_spec

TOL = 1e-4
TINY = 1e-6
GRAD_FLOOR = 0.1

torch.set_num_threads(1)


def rel_err(lib, ref, floor=0.0):
    """max |lib - ref| / max(max |ref|, floor, TINY)."""
    lib = np.asarray(lib, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert lib.shape == ref.shape, (lib.shape, ref.shape)
    if lib.size == 0:
        return 0.0
    if not np.all(np.isfinite(lib)):
        return math.inf
    return float(np.max(np.abs(lib - ref)) / max(float(np.max(np.abs(ref))), floor, TINY))


def grad_floor(ref):
    """GRAD_FLOOR times the largest entry of every reference gradient of the case."""
    tensors = [ref["dq"], ref["dk"], ref["dv"]] + list(ref["grads"].values())
    return GRAD_FLOOR * max(float(np.max(np.abs(t))) for t in tensors)


# ------------------------------------------------------------------------------ cases
#
# (spec, H, Hkv, D, positive). "{logT}" in a spec becomes -log(T) for the case's T.

def C(spec, H=4, Hkv=None, D=16, positive=False):
    return (spec, H, H if Hkv is None else Hkv, D, positive)


SMALL = [
    # every base alone, causal and not
    C("softmax"), C("sigmoid"), C("elu"), C("linear"), C("elu-kernel"),
    C("softmax,causal=0"), C("sigmoid,causal=0"), C("elu,causal=0"), C("linear,causal=0"),
    C("elu-kernel,causal=0"),
    C("softmax,causal=1,alibi=0"),
    # norms
    C("sigmoid,norm=none"), C("sigmoid,norm=sum"), C("sigmoid,norm=clamp"),
    C("elu,norm=sum"), C("elu,norm=clamp"),
    C("linear,norm=sum", positive=True), C("linear,norm=clamp"),
    C("elu-kernel,norm=sum"), C("elu-kernel,norm=clamp"),
    C("linear,norm=clamp,causal=0", D=12),
    # scale and bias
    C("softmax,scale=0.5"), C("softmax,scale=-0.7"), C("sigmoid,scale=0.5"),
    C("elu-kernel,scale=0.5"), C("linear,scale=0.5,norm=clamp"),
    C("softmax,bias=0.7"), C("sigmoid,bias={logT}"), C("sigmoid,bias={logT},norm=sum"),
    C("elu,bias=-1.5"), C("linear,bias=0.25"),
    # window
    C("softmax,window=3"), C("softmax,window=1"), C("sigmoid,window=3"), C("elu,window=1"),
    C("softmax,window=40"), C("linear,window=4,norm=clamp"), C("elu-kernel,window=2,norm=sum"),
    # prefix
    C("softmax,prefix=4"), C("sigmoid,prefix=5"), C("softmax,prefix=40"),
    C("elu-kernel,prefix=3"), C("softmax,prefix=1"),
    # window + prefix
    C("softmax,window=3,prefix=5"), C("softmax,window=5,prefix=3"),
    C("sigmoid,window=2,prefix=6,norm=sum"), C("elu,window=40,prefix=40,norm=clamp"),
    # alibi
    C("softmax,alibi=1"), C("sigmoid,alibi=1"), C("softmax,alibi=1,window=4"),
    C("softmax,causal=0,alibi=1"), C("elu,alibi=1,norm=clamp"), C("softmax,alibi=1,prefix=3", H=8),
    # key bias (virtual key), alone its value is zero
    C("softmax,kbias=shared"), C("softmax,kbias=head"), C("sigmoid,kbias=shared"),
    C("elu,kbias=head,norm=sum"), C("linear,kbias=shared,norm=clamp"), C("linear,kbias=head"),
    C("elu-kernel,kbias=head,vbias=head"), C("elu-kernel,kbias=shared,norm=sum", positive=True),
    C("softmax,causal=0,kbias=shared"), C("sigmoid,causal=0,kbias=head,vbias=head"),
    C("softmax,kbias=shared,window=2,alibi=1"),
    # value bias alone: added to every output row
    C("softmax,vbias=shared"), C("softmax,vbias=head"), C("sigmoid,vbias=head"),
    C("elu,vbias=shared,norm=sum"),
    # key + value bias
    C("softmax,kbias=shared,vbias=shared"), C("softmax,kbias=head,vbias=head"),
    C("softmax,kbias=shared,vbias=head"), C("softmax,kbias=head,vbias=shared"),
    C("sigmoid,kbias=head,vbias=head,norm=sum"), C("elu,kbias=shared,vbias=shared,norm=clamp"),
    C("linear,kbias=head,vbias=head,norm=sum", positive=True),
    # sinks and alpha
    C("softmax,sink=head"), C("softmax,sink=zero"), C("softmax,alpha=2"),
    C("softmax,alpha=2,sink=head"), C("softmax,alpha=0.5,sink=zero"),
    C("softmax,sink=head,kbias=head,vbias=head"), C("softmax,sink=head,window=3"),
    C("softmax,sink=head,causal=0"), C("softmax,sink=zero,kbias=shared"),
    # GQA and MQA
    C("softmax,kbias=head,vbias=head", H=4, Hkv=2), C("softmax", H=6, Hkv=3),
    C("sigmoid,kbias=head,vbias=head,norm=sum", H=6, Hkv=2),
    C("softmax,sink=head,alibi=1", H=4, Hkv=2), C("elu-kernel,norm=clamp", H=4, Hkv=2),
    C("softmax", H=4, Hkv=1), C("sigmoid,window=3,norm=clamp", H=4, Hkv=1),
    C("softmax,kbias=shared,vbias=shared,sink=head", H=3, Hkv=1),
    C("linear,causal=0,vbias=head", H=4, Hkv=1),
    # odd head sizes
    C("softmax", D=1), C("softmax,kbias=head,vbias=head", D=20), C("sigmoid,norm=sum", D=33),
    C("elu-kernel,kbias=head,vbias=head", D=7),
    # many options at once
    C("softmax,scale=0.3,bias=0.1,window=6,prefix=3,alibi=1,kbias=head,vbias=head,sink=head,"
      "alpha=1.5", H=4, Hkv=2),
    C("sigmoid,norm=sum,scale=0.5,bias=-2,window=5,prefix=2,alibi=1,kbias=shared,vbias=head",
      H=4, Hkv=1),
    C("elu-kernel,norm=sum,kbias=head,vbias=shared,causal=0", positive=True),
    C(" softmax , window=4 , sink=zero "),
]

# T >= 257: a few, B=1, H=2, D=16 (or about) so the file stays fast.
BIG = [
    (C("softmax", H=2), 257),
    (C("softmax,window=64,prefix=16", H=2), 300),
    (C("sigmoid,bias={logT},norm=sum", H=2), 257),
    (C("elu,norm=clamp", H=2), 263),
    (C("linear,norm=sum", H=2, positive=True), 257),
    (C("linear", H=2, Hkv=1), 258),
    (C("elu-kernel,norm=sum", H=2), 270),
    (C("softmax,kbias=head,vbias=head,sink=head,alpha=2", H=2, Hkv=1), 300),
    (C("softmax,causal=0,alibi=1", H=2), 257),
    (C("sigmoid,kbias=shared,vbias=shared,window=100", H=2), 280),
    (C("softmax,sink=zero,prefix=300", H=2), 290),
    # three blocks of queries and a partial last panel of values: the keys and values
    # packed once per head and read from each block's first key
    (C("softmax,kbias=head,vbias=head", H=2, D=20), 600),
    (C("sigmoid,window=80", H=2, Hkv=1, D=24), 530),
    # from 1024 keys on the library's driver runs blocks of 96 queries (plan.c)
    (C("softmax,sink=head,kbias=head,vbias=head", H=2, D=16), 1030),
    (C("sigmoid,window=200,norm=sum", H=2, Hkv=1, D=24), 1100),
]


def _expand(case, T, B):
    spec, H, Hkv, D, positive = case
    spec = spec.replace("{logT}", "%.6g" % -math.log(T))
    return spec, H, Hkv, D, positive, T, B


CASES = [_expand(c, T, 2) for T in (1, 13) for c in SMALL] + [_expand(c, T, 1) for c, T in BIG]


def _id(case):
    spec, H, Hkv, D, positive, T, B = case
    return "%s|B%d,T%d,H%d/%d,D%d" % (spec.replace(" ", ""), B, T, H, Hkv, D)


def expected_params(spec, H, D):
    o = parse_spec(spec, D)
    want = {}
    if o["kbias"]:
        want["k_bias"] = (1 if o["kbias"] == "shared" else H, D)
    if o["vbias"]:
        want["v_bias"] = (1 if o["vbias"] == "shared" else H, D)
    if o["sink"] == "head":
        want["sinks"] = (H,)
    return want


def make_inputs(case):
    spec, H, Hkv, D, positive, T, B = case
    rng = np.random.default_rng(zlib.crc32(_id(case).encode()))

    def rand(*shape):
        x = rng.standard_normal(shape).astype(np.float32)
        return x

    q, k, v = rand(B, T, H, D), rand(B, T, Hkv, D), rand(B, T, Hkv, D)
    if positive:
        q, k = np.abs(q), np.abs(k)
    dout = rand(B, T, H, D)
    params = {}
    for name, shape in expected_params(spec, H, D).items():
        p = rand(*shape)
        if positive and name == "k_bias":
            p = np.abs(p)
        params[name] = p
    return q, k, v, dout, params


# ------------------------------------------------------------------------------ tests

@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_against_torch(case):
    spec, H, Hkv, D, positive, T, B = case
    q, k, v, dout, params = make_inputs(case)

    op = attnsink.Attention(spec, H, Hkv, D)
    want = expected_params(spec, H, D)
    assert {n: p.shape for n, p in op.params.items()} == want
    for name, p in op.params.items():
        assert p.dtype == np.float32
        assert not p.any(), "parameters must start at zero"
        p[...] = params[name]
    assert op.key_count(T) == T + (1 if "k_bias" in want else 0)

    out = op.forward(q, k, v, importance=True)
    imp = op.importance.copy()
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (B, T, H, D)
    assert imp.dtype == np.float32 and imp.shape == (B, H, op.key_count(T))

    # Same result without the importance statistics.
    out2 = op.forward(q, k, v)
    assert op.importance is None
    assert rel_err(out2, out) <= 1e-6

    dq, dk, dv = op.backward(dout)
    grads = {n: g.copy() for n, g in op.grads.items()}
    assert set(grads) == set(want)

    ref = reference(spec, q, k, v, params, dout)
    # Gradients whose exact value vanishes by cancellation are measured against the scale of
    # the gradients of the same loss (see GRAD_FLOOR at the top).
    gfloor = grad_floor(ref)
    errs = {"out": rel_err(out, ref["out"]), "importance": rel_err(imp, ref["importance"]),
            "dq": rel_err(dq, ref["dq"], gfloor), "dk": rel_err(dk, ref["dk"], gfloor),
            "dv": rel_err(dv, ref["dv"], gfloor)}
    for name in want:
        errs["grad " + name] = rel_err(grads[name], ref["grads"][name], gfloor)
    bad = {n: e for n, e in errs.items() if not e <= TOL}
    assert not bad, "spec %r T=%d: relative error above %g: %s (all: %s)" % (
        spec, T, TOL, bad, {n: "%.2e" % e for n, e in errs.items()})

    # A second backward gives the same gradients: the binding zeroes them before each call.
    dq2, dk2, dv2 = op.backward(dout)
    for name in want:
        assert rel_err(op.grads[name], grads[name]) <= 1e-6, name
    assert rel_err(dq2, dq) <= 1e-6 and rel_err(dk2, dk) <= 1e-6 and rel_err(dv2, dv) <= 1e-6


def test_canonical_spec_round_trips():
    for spec in ("softmax", "sigmoid,norm=sum,bias=-2", "softmax,window=3,prefix=2,sink=head",
                 "elu-kernel,causal=0,kbias=head,vbias=shared", "softmax,alpha=2,alibi=1"):
        op = attnsink.Attention(spec, 4, 2, 8)
        canon = op.spec
        assert canon.split(",")[0] == spec.split(",")[0]
        assert attnsink.Attention(canon, 4, 2, 8).spec == canon


@pytest.mark.parametrize("threads", [1, 3], ids=["threads=1", "threads=3"])
def test_thread_counts(threads):
    """Same results (against the oracle) whatever the thread count: work is split over
    (batch, head) pairs and the gradient accumulators of the threads are summed."""
    case = _expand(C("softmax,kbias=head,vbias=shared,sink=head,window=5,prefix=2", H=6, Hkv=2),
                   37, 2)
    spec, H, Hkv, D, positive, T, B = case
    q, k, v, dout, params = make_inputs(case)
    ref = reference(spec, q, k, v, params, dout)
    before = attnsink.get_num_threads()
    attnsink.set_num_threads(threads)
    try:
        op = attnsink.Attention(spec, H, Hkv, D)
        for name, p in op.params.items():
            p[...] = params[name]
        out = op.forward(q, k, v, importance=True)
        dq, dk, dv = op.backward(dout)
    finally:
        attnsink.set_num_threads(before)
    gfloor = grad_floor(ref)
    assert rel_err(out, ref["out"]) <= TOL
    assert rel_err(op.importance, ref["importance"]) <= TOL
    for name, got in (("dq", dq), ("dk", dk), ("dv", dv)):
        assert rel_err(got, ref[name], gfloor) <= TOL, name
    for name in params:
        assert rel_err(op.grads[name], ref["grads"][name], gfloor) <= TOL, name


# Under every SIMD level: all the T >= 257 cases and the odd head sizes.
SIMD_CASES = [_id(c) for c in CASES if c[5] >= 257 or c[3] not in (16,)]


@pytest.mark.parametrize("level", ["scalar", "avx2", "avx512"])
def test_simd_levels(level):
    """A few cases under each SIMD level this build and CPU offer (ASINK_SIMD is read once at
    start-up, so each level runs in a child process)."""
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, ASINK_SIMD=level)
    probe = subprocess.run([sys.executable, "-c", "import attnsink; attnsink.init(); "
                            "print(attnsink.simd_level())"],
                           env=env, capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("ASINK_SIMD=%s not available: %s" % (level, probe.stderr.strip()[-200:]))
    assert probe.stdout.strip() == level
    script = ("import sys; sys.path.insert(0, %r)\n"
              "import test_attention as ta\n"
              "for c in ta.CASES:\n"
              "    if ta._id(c) in %r: ta.test_against_torch(c)\n" % (here, SIMD_CASES))
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
