"""Bad input to attnsink.Attention: every case raises ValueError naming the offending text.
Also: writes through op.params reach forward, parameter views stay valid, runtime functions.
"""

import gc
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import attnsink
from reference import reference

# (spec, text the message must contain)
BAD_SPECS = [
    ("softmx", "softmx"),
    ("", "empty"),
    ("sigmoid-ish,norm=sum", "sigmoid-ish"),
    ("softmax,foo=1", "foo"),
    ("softmax,windw=3", "windw"),
    ("sigmoid,sink=head", "sink"),
    ("elu,sink=zero", "sink"),
    ("softmax,norm=sum", "norm"),
    ("softmax,norm=clamp", "norm"),
    ("sigmoid,alpha=2", "alpha"),
    ("linear,alpha=0.5", "alpha"),
    ("sigmoid,norm=max", "max"),
    ("softmax,window=0", "window=0"),
    ("softmax,window=-3", "window=-3"),
    ("softmax,window=x", "window=x"),
    ("softmax,window=2.5", "window=2.5"),
    ("softmax,prefix=0", "prefix=0"),
    ("softmax,prefix=abc", "prefix=abc"),
    ("softmax,alpha=0", "alpha=0"),
    ("softmax,alpha=-1", "alpha=-1"),
    ("softmax,alpha=nan", "alpha=nan"),
    ("softmax,scale=0", "scale=0"),
    ("softmax,scale=inf", "scale=inf"),
    ("softmax,scale=", "scale="),
    ("sigmoid,bias=zz", "bias=zz"),
    ("softmax,causal=2", "causal=2"),
    ("softmax,alibi=2", "alibi=2"),
    ("softmax,kbias=both", "both"),
    ("softmax,vbias=1", "vbias=1"),
    ("softmax,sink=one", "one"),
    ("softmax,causal", "causal"),
    ("softmax,window", "window"),
    ("softmax,window=3,window=4", "window"),
    ("sigmoid,norm=sum,norm=sum", "norm"),
    ("softmax,causal=0,window=4", "window"),
    ("softmax,causal=0,prefix=4", "prefix"),
    ("softmax,,window=3", "softmax,,window=3"),
    ("softmax,window=3,", "softmax,window=3,"),
]


@pytest.mark.parametrize("spec,needle", BAD_SPECS, ids=[s or "<empty>" for s, _ in BAD_SPECS])
def test_bad_spec(spec, needle):
    with pytest.raises(ValueError) as ei:
        attnsink.Attention(spec, 4, 2, 8)
    msg = str(ei.value)
    assert needle in msg, "message %r does not name %r" % (msg, needle)
    assert ei.value.status == -2  # ASINK_ERR_SPEC


@pytest.mark.parametrize("H,Hkv,D", [(6, 4, 8), (4, 3, 8), (2, 4, 8)],
                         ids=["6/4", "4/3", "2/4"])
def test_heads_not_a_multiple(H, Hkv, D):
    with pytest.raises(ValueError) as ei:
        attnsink.Attention("softmax", H, Hkv, D)
    msg = str(ei.value)
    assert "n_head=%d" % H in msg and "n_kv_head=%d" % Hkv in msg, msg
    assert ei.value.status == -3  # ASINK_ERR_SHAPE


@pytest.mark.parametrize("H,Hkv,D,bad", [(4, 2, 0, "head_dim=0"), (4, 2, -1, "head_dim=-1"),
                                         (0, 1, 8, "n_head=0"), (4, 0, 8, "n_kv_head=0"),
                                         (-2, 1, 8, "n_head=-2")],
                         ids=["head_dim=0", "head_dim=-1", "n_head=0", "n_kv_head=0",
                              "n_head=-2"])
def test_bad_sizes(H, Hkv, D, bad):
    with pytest.raises(ValueError) as ei:
        attnsink.Attention("softmax", H, Hkv, D)
    assert bad in str(ei.value), str(ei.value)
    assert ei.value.status == -3  # ASINK_ERR_SHAPE


def test_spec_type():
    with pytest.raises(TypeError):
        attnsink.Attention(None, 4, 2, 8)
    with pytest.raises(TypeError):
        attnsink.Attention("softmax", 4.0, 2, 8)


# --------------------------------------------------------------------------- shapes

B, T, H, HKV, D = 2, 5, 4, 2, 8


def _qkv(rng=None):
    rng = rng or np.random.default_rng(1)
    return (rng.standard_normal((B, T, H, D)).astype(np.float32),
            rng.standard_normal((B, T, HKV, D)).astype(np.float32),
            rng.standard_normal((B, T, HKV, D)).astype(np.float32))


def _raises_naming(fn, *shapes):
    with pytest.raises(ValueError) as ei:
        fn()
    msg = str(ei.value)
    for s in shapes:
        assert str(s) in msg, "message %r does not name %s" % (msg, s)
    return msg


def test_wrong_ranks():
    op = attnsink.Attention("softmax", H, HKV, D)
    q, k, v = _qkv()
    _raises_naming(lambda: op.forward(q[0], k, v), (T, H, D))
    _raises_naming(lambda: op.forward(q[None], k, v), (1, B, T, H, D))
    _raises_naming(lambda: op.forward(q, k[0], v), (T, HKV, D))
    _raises_naming(lambda: op.forward(q, k, v.reshape(B, T, HKV * D)), (B, T, HKV * D))
    _raises_naming(lambda: op.forward(1.0, k, v), "()")


def test_mismatched_shapes():
    op = attnsink.Attention("softmax", H, HKV, D)
    q, k, v = _qkv()
    _raises_naming(lambda: op.forward(q, k, v[:, :3]), (B, 3, HKV, D), (B, T, HKV, D))
    _raises_naming(lambda: op.forward(q, k[:1], v), (1, T, HKV, D))
    _raises_naming(lambda: op.forward(q, k[:, :, :1], v[:, :, :1]), (B, T, 1, D))
    _raises_naming(lambda: op.forward(q[..., :4], k[..., :4], v[..., :4]), (B, T, H, 4))
    _raises_naming(lambda: op.forward(q[:, :, :2], k, v), (B, T, 2, D))
    _raises_naming(lambda: op.forward(q[:, :0], k[:, :0], v[:, :0]), (B, 0, H, D))


def test_backward_before_forward():
    op = attnsink.Attention("softmax,sink=head", H, HKV, D)
    with pytest.raises(ValueError) as ei:
        op.backward(np.zeros((B, T, H, D), np.float32))
    assert "forward" in str(ei.value)
    assert isinstance(ei.value, RuntimeError)


def test_backward_after_failed_forward():
    op = attnsink.Attention("softmax", H, HKV, D)
    q, k, v = _qkv()
    op.forward(q, k, v)
    with pytest.raises(ValueError):
        op.forward(q, k[:, :2], v)
    with pytest.raises(ValueError):
        op.backward(np.zeros((B, T, H, D), np.float32))


def test_dout_wrong_shape():
    op = attnsink.Attention("softmax", H, HKV, D)
    q, k, v = _qkv()
    op.forward(q, k, v)
    _raises_naming(lambda: op.backward(np.zeros((B, T, H, D + 1), np.float32)),
                   (B, T, H, D + 1), (B, T, H, D))
    _raises_naming(lambda: op.backward(np.zeros((B * T, H, D), np.float32)), (B * T, H, D))
    # the right shape, as any array-like and dtype, still works afterwards
    dq, dk, dv = op.backward(np.ones((B, T, H, D), np.float64).tolist())
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape


# --------------------------------------------------------------------------- params

def test_param_writes_reach_forward():
    spec = "softmax,kbias=head,vbias=shared,sink=head"
    op = attnsink.Attention(spec, H, HKV, D)
    q, k, v = _qkv()
    assert sorted(op.params) == ["k_bias", "sinks", "v_bias"]
    assert op.params["k_bias"].shape == (H, D) and op.params["v_bias"].shape == (1, D)
    assert op.params["sinks"].shape == (H,)
    out0 = op.forward(q, k, v)

    rng = np.random.default_rng(7)
    kb = rng.standard_normal((H, D)).astype(np.float32)
    op.params["k_bias"][...] = kb                     # written through the dict's view
    out1 = op.forward(q, k, v)
    assert np.max(np.abs(out1 - out0)) > 1e-3, "writing k_bias did not change the output"
    ref = reference(spec, q, k, v, {"k_bias": kb, "v_bias": np.zeros((1, D)),
                                    "sinks": np.zeros(H)}, np.zeros_like(q))
    assert np.max(np.abs(out1 - ref["out"])) <= 1e-4 * np.max(np.abs(ref["out"]))

    view = op.params["v_bias"]
    view[0, 3] = 2.5                                  # element write through a held view
    out2 = op.forward(q, k, v)
    assert np.max(np.abs(out2 - out1)) > 1e-3
    assert op.params["v_bias"][0, 3] == np.float32(2.5)


def test_param_view_outlives_op():
    op = attnsink.Attention("softmax,kbias=shared", H, HKV, D)
    view = op.params["k_bias"]
    view[...] = 1.5
    del op
    gc.collect()
    assert np.all(view == 1.5)  # still valid memory: the view keeps the C handle alive
    view[...] = 0.25


def test_plain_op_has_no_params():
    op = attnsink.Attention("sigmoid,norm=sum,window=3", H, HKV, D)
    assert op.params == {}
    q, k, v = _qkv()
    op.forward(q, k, v)
    op.backward(np.ones((B, T, H, D)))
    assert op.grads == {}


def test_float32_contiguous_inputs_are_not_copied():
    """C-contiguous float32 q, k, v go to the library as they are and backward reads them
    (and out) where they are, as the C API does: no copy. Other inputs are converted once."""
    q, k, v = _qkv()
    dout = np.random.default_rng(3).standard_normal((B, T, H, D)).astype(np.float32)
    op = attnsink.Attention("softmax", H, HKV, D)
    out = op.forward(q, k, v)
    saved = op._saved
    assert saved[0] is q and saved[1] is k and saved[2] is v and saved[3] is out
    got = op.backward(dout)
    fresh = attnsink.Attention("softmax", H, HKV, D)
    fresh.forward(q.astype(np.float64), k.copy(), v.tolist())
    assert fresh._saved[1] is not k and fresh._saved[1].dtype == np.float32
    for g, w in zip(got, fresh.backward(dout)):
        assert np.array_equal(g, w)


def test_any_array_like_input():
    """float64, non-contiguous and nested-list inputs give the float32 C-contiguous result."""
    op = attnsink.Attention("sigmoid,norm=sum,kbias=shared,vbias=shared", H, HKV, D)
    op.params["k_bias"][...] = 0.5
    q, k, v = _qkv()
    want = op.forward(q, k, v)
    qt = np.asfortranarray(q.astype(np.float64))
    kt = np.ascontiguousarray(k.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)  # strided view
    assert not kt.flags.c_contiguous
    got = op.forward(qt, kt, v.tolist())
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert np.array_equal(got, want)
    dq, dk, dv = op.backward(np.ones((B, T, H, D), np.float64)[:, :, :, ::-1])
    assert dq.dtype == np.float32 and dq.shape == (B, T, H, D) and dk.shape == (B, T, HKV, D)


# --------------------------------------------------------------------------- runtime

def test_runtime_info_and_threads():
    info = attnsink.runtime_info()
    for key in ("simd=", "gemm=", "blis=", "threads="):
        assert key in info, info
    assert attnsink.version().count(".") == 2
    n = attnsink.get_num_threads()
    assert n >= 1
    attnsink.set_num_threads(1)
    assert attnsink.get_num_threads() == 1
    assert "threads=1" in attnsink.runtime_info()
    attnsink.set_num_threads(n)
    assert attnsink.get_num_threads() == n
    for bad in (0, -1, 5000):
        with pytest.raises(ValueError):
            attnsink.set_num_threads(bad)


def test_spec_property():
    op = attnsink.Attention("sigmoid , bias=-2,norm=sum", 4, 4, 16)
    assert op.spec.startswith("sigmoid,")
    assert "norm=sum" in op.spec and "bias=-2" in op.spec
    assert ("scale=%.6g" % (1 / math.sqrt(16))) in op.spec
    assert "sigmoid" in repr(op)


def _import_in_child(env_lib):
    env = dict(os.environ)
    env.pop("ATTNSINK_LIB", None)
    if env_lib is not None:
        env["ATTNSINK_LIB"] = env_lib
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(attnsink.__file__)))
    env["PYTHONPATH"] = pkg
    return subprocess.run([sys.executable, "-c", "import attnsink; print(attnsink.lib_path)"],
                          env=env, capture_output=True, text=True, timeout=60)


def test_lookup_env_first():
    r = _import_in_child(attnsink.lib_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == attnsink.lib_path


def test_lookup_bad_env_is_an_error():
    r = _import_in_child("/nonexistent/libattnsink.so")
    assert r.returncode != 0
    assert "ATTNSINK_LIB" in r.stderr and "/nonexistent/libattnsink.so" in r.stderr


def test_lookup_build_dir_second():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(attnsink.__file__))))
    build = os.path.join(repo, "build", "libattnsink.so")
    if not os.path.exists(build):
        pytest.skip("no %s to find" % build)
    r = _import_in_child(None)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == build


def test_binding_refuses_another_major_version():
    """A libattnsink of another major version is refused by name, not called."""
    from attnsink import _lib

    class Other:
        @staticmethod
        def asink_version_number():
            return 20003

    with pytest.raises(OSError, match=r"libattnsink 2\.0\.3; this binding needs major version 1"):
        _lib._check_major(Other(), "/opt/x/libattnsink.so.2")
    assert attnsink.version_number() // 10000 == _lib.MAJOR
