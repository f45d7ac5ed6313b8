"""HF model families (llama with biases, qwen2, mistral, gpt_neox, opt) loaded from checkpoints
written here in HF's exact tensor names and layouts, against float64 PyTorch models written
from each family's published architecture (torch_families.py).

Each family's tiny random checkpoint is written as one model.safetensors and as three shards
listed by model.safetensors.index.json, in F32, F16 and BF16; the reference runs on the values
the file holds (rounded to F16 or BF16), so the comparison measures the library's float32
arithmetic only: err = max|lib - ref| / max|ref| <= 1e-4 (as test_model.py). Decoding with a
full cache must give the forward's logits, mistral's window cache the sliding-window forward;
the loss gradients of every parameter must match torch autograd; the metric's importance
(attention received per key) must match the reference's attention maps.

Loading converts each tensor from the mapped file straight into the model's own buffers: a
subprocess loads a 64 MB F32 checkpoint and its peak RSS growth must stay below 1.3x the
weights (a loader that kept a converted copy of the file would need 2x).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import attnsink
import torch_families as tf
import test_model
from test_model import bf16, rel_err, write_safetensors

# the integer dtypes HF's buffers have, for write_safetensors
test_model._NP.setdefault("U8", np.dtype("u1"))
test_model._NP.setdefault("BOOL", np.dtype("?"))

TOL = 1e-4
V, C, L, FF, T, B, MAXPOS = 41, 32, 2, 48, 10, 2, 16

torch.set_num_threads(1)
attnsink.set_num_threads(1)  # tiny models: a team of threads only waits on a busy machine


def llama_like(model_type, **extra):
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": model_type, "vocab_size": V,
           "hidden_size": C, "intermediate_size": FF, "num_hidden_layers": L,
           "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
           "rope_theta": 10000.0, "max_position_embeddings": MAXPOS, "hidden_act": "silu",
           "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    cfg.update(extra)
    return cfg


def neox(**extra):
    cfg = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "vocab_size": V,
           "hidden_size": C, "intermediate_size": 4 * C, "num_hidden_layers": L,
           "num_attention_heads": 2, "layer_norm_eps": 1e-5, "max_position_embeddings": MAXPOS,
           "rotary_pct": 0.25, "rotary_emb_base": 10000, "hidden_act": "gelu",
           "use_parallel_residual": True, "tie_word_embeddings": False, "bos_token_id": 0,
           "torch_dtype": "float16"}
    cfg.update(extra)
    return cfg


def opt(**extra):
    cfg = {"architectures": ["OPTForCausalLM"], "model_type": "opt", "vocab_size": V,
           "hidden_size": C, "ffn_dim": FF, "num_hidden_layers": L, "num_attention_heads": 4,
           "max_position_embeddings": MAXPOS, "do_layer_norm_before": True,
           "activation_function": "relu", "word_embed_proj_dim": C, "enable_bias": True,
           "bos_token_id": 2, "pad_token_id": 1, "torch_dtype": "float16"}
    cfg.update(extra)
    return cfg


FAMILIES = {
    "llama_biases": llama_like("llama", attention_bias=True, mlp_bias=True),
    "qwen2": llama_like("qwen2", architectures=["Qwen2ForCausalLM"], tie_word_embeddings=True,
                        sliding_window=131072, use_sliding_window=False, max_window_layers=2),
    "mistral": llama_like("mistral", architectures=["MistralForCausalLM"], sliding_window=4),
    "pythia": neox(),
    "neox_sequential": neox(use_parallel_residual=False, rotary_pct=1.0, hidden_act="gelu_new"),
    "opt": opt(),
    "opt_post": opt(do_layer_norm_before=False),
}


def random_params(cfg, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for n, s in tf.param_shapes(cfg).items():
        v = 1.0 + 0.1 * rng.standard_normal(s) if tf.is_norm_weight(n) else 0.2 * rng.standard_normal(s)
        out[n] = v.astype(np.float32)
    return out


def held(a, dtype):
    """The float32 values a file of dtype gives back (write_safetensors truncates to BF16)."""
    if dtype == "F16":
        return a.astype(np.float16).astype(np.float32)
    if dtype == "BF16":
        return bf16(a)
    return a


def write_checkpoint(d, cfg, params, dtype="F32", shards=1, rename=None, extra=()):
    """An HF directory: config.json and model.safetensors, or `shards` files with the index.
    rename maps a parameter name to the name written; extra: more (name, array) tensors."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    items = [((rename or {}).get(n, n), a, dtype) for n, a in params.items()]
    items += [(n, a, dtype) for n, a in extra]
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), items, {"format": "pt"})
        return
    weight_map, total = {}, 0
    for k in range(shards):
        part = items[k::shards]
        fname = "model-%05d-of-%05d.safetensors" % (k + 1, shards)
        write_safetensors(os.path.join(d, fname), part, {"format": "pt"})
        for n, a, _ in part:
            weight_map[n] = fname
            total += a.size * (4 if dtype == "F32" else 2)
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def reference(cfg, params, tokens, grad=False):
    p = {n: torch.tensor(a, dtype=torch.float64, requires_grad=grad) for n, a in params.items()}
    logits, maps = tf.forward(cfg, p, tokens)
    return p, logits, maps


def tokens(seed=3):
    return np.random.default_rng(seed).integers(0, V, size=(B, T))


# ------------------------------------------------------------------------- logits

@pytest.mark.parametrize("layout", ["single", "sharded"])
@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_logits_match_reference(tmp_path, family, dtype, layout):
    cfg = FAMILIES[family]
    params = random_params(cfg, seed=11)
    write_checkpoint(tmp_path, cfg, params, dtype, shards=1 if layout == "single" else 3)
    m = attnsink.Model.load(tmp_path)
    assert m.config["model_type"] == cfg["model_type"]
    got = m.parameters()
    for n, a in params.items():
        assert np.array_equal(got[n], held(a, dtype)), n
    tok = tokens()
    _, ref, _ = reference(cfg, {n: held(a, dtype) for n, a in params.items()}, tok)
    assert rel_err(m.forward(tok), ref.detach().numpy()) <= TOL


# ------------------------------------------------------------ decoding, gradients

def loaded(tmp_path, family, seed=11):
    cfg = FAMILIES[family]
    params = random_params(cfg, seed)
    write_checkpoint(tmp_path, cfg, params)
    return cfg, params, attnsink.Model.load(tmp_path)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_decode_equals_forward(tmp_path, family):
    cfg, _, m = loaded(tmp_path, family)
    tok = tokens(5)
    full = m.forward(tok)
    assert rel_err(m.decode(tok, cache="full"), full) <= TOL
    # a prefill of several rows then single steps goes through the same cache code
    c = m.cache("full", batch=B, max_len=T)
    steps = np.concatenate([c.step(tok[:, :4]), c.step(tok[:, 4:7]), c.step(tok[:, 7:])], axis=1)
    c.close()
    assert rel_err(steps, full) <= TOL


def test_mistral_window_cache_is_its_sliding_window(tmp_path):
    cfg, params, m = loaded(tmp_path, "mistral")
    assert m.config["attnsink"]["attn"] == "softmax,window=4"
    tok = tokens(9)
    _, ref, _ = reference(cfg, params, tok)
    assert rel_err(m.decode(tok, cache="window", window=cfg["sliding_window"]),
                   ref.detach().numpy()) <= TOL


@pytest.mark.parametrize("family", ["pythia", "qwen2"])
def test_window_cache_is_window_attention(family):
    """Evicting keys of a partial-rotary (pythia) or biased (qwen2) model: a window cache of W
    equals the forward of the same model with window=W attention."""
    cfg = dict(FAMILIES[family], attnsink={"attn": "softmax,window=4"})
    m = attnsink.Model.create(cfg, seed=7)
    tok = tokens(8)
    assert rel_err(m.decode(tok, cache="window", window=4), m.forward(tok)) <= TOL


def test_pythia_sink_cache_matches_streaming_reference(tmp_path):
    """A sink cache re-rotates its sink keys after evictions: with partial rotary only their
    first rotary dims turn (torch_families.neox_sink_stream is the reference)."""
    cfg, params, m = loaded(tmp_path, "pythia")
    tok = tokens(10)
    got = m.decode(tok, cache="sink", n_sink=2, window=4)
    p = {n: torch.tensor(a, dtype=torch.float64) for n, a in params.items()}
    for b in range(B):
        ref = tf.neox_sink_stream(cfg, p, tok[b], n_sink=2, window=4)
        assert rel_err(got[b], ref.numpy()) <= TOL


@pytest.mark.parametrize("family", list(FAMILIES))
def test_gradients_match_torch(tmp_path, family):
    cfg, params, m = loaded(tmp_path, family)
    rng = np.random.default_rng(4)
    tok = rng.integers(0, V, size=(B, T))
    tgt = rng.integers(0, V, size=(B, T))
    tgt[0, 3] = -1
    m.zero_grad()
    loss = m.loss(tok, tgt)
    grads = m.backward()
    p, logits, _ = reference(cfg, params, tok, grad=True)
    ref_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.as_tensor(tgt).reshape(-1),
                                                 ignore_index=-1)
    assert abs(loss - ref_loss.item()) / ref_loss.item() <= 1e-5
    ref_loss.backward()
    errs = {n: rel_err(grads[n], p[n].grad.numpy()) for n in params}
    if cfg["model_type"] == "opt":
        # softmax ignores what all scores of a row share: without RoPE the key bias adds the
        # same q.b to every score, so its gradient is 0 and only float32 noise is left
        for n in [n for n in errs if n.endswith("k_proj.bias")]:
            scale = np.abs(p[n.replace("k_proj", "q_proj")].grad.numpy()).max()
            errs[n] = np.abs(grads[n]).max() / scale
    assert all(e <= TOL for e in errs.values()), {n: e for n, e in errs.items() if e > TOL}


@pytest.mark.parametrize("family", ["pythia", "opt_post", "qwen2"])
def test_metric_importance_matches_reference_maps(tmp_path, family):
    cfg, params, m = loaded(tmp_path, family)
    tok = tokens(6)
    stats = attnsink.sink_stats(m, tok)
    _, _, maps = reference(cfg, params, tok)
    A = torch.stack(maps, dim=1).detach().numpy()  # (B, L, H, T, T)
    imp = A.sum(axis=-2) / (T - np.arange(T))
    assert rel_err(stats["importance"], imp) <= TOL


def test_save_and_load_again(tmp_path):
    """Each new config writer: the saved model loads as the same family and computes the same."""
    for family in ("pythia", "opt_post", "qwen2", "mistral", "llama_biases"):
        cfg, params, m = loaded(tmp_path / family, family)
        m.save(tmp_path / (family + "_again"))
        again = attnsink.Model.load(tmp_path / (family + "_again"))
        assert again.config == m.config
        tok = tokens(2)
        assert np.array_equal(again.forward(tok), m.forward(tok)), family


# ---------------------------------------------------------- how HF files differ

def test_opt_files_without_model_prefix_and_with_tied_head(tmp_path):
    """OPT checkpoints saved from OPTModel name tensors "decoder.*"; OPTForCausalLM files may
    hold lm_head.weight although it is embed_tokens."""
    cfg = FAMILIES["opt"]
    params = random_params(cfg, 12)
    rename = {n: n[len("model."):] for n in params}
    write_checkpoint(tmp_path, cfg, params, rename=rename,
                     extra=[("lm_head.weight", params["model.decoder.embed_tokens.weight"])])
    m = attnsink.Model.load(tmp_path)
    tok = tokens()
    _, ref, _ = reference(cfg, params, tok)
    assert rel_err(m.forward(tok), ref.detach().numpy()) <= TOL


def test_buffers_beside_the_weights_are_skipped(tmp_path):
    """Older GPT-NeoX and LLaMA checkpoints carry causal masks (U8 or BOOL) and RoPE
    frequencies beside the weights."""
    cfg = FAMILIES["pythia"]
    params = random_params(cfg, 13)
    write_checkpoint(tmp_path, cfg, params, shards=2)
    mask = np.tril(np.ones((1, 1, MAXPOS, MAXPOS)))
    buffers = []
    for l in range(L):
        buffers += [("gpt_neox.layers.%d.attention.bias" % l, mask.astype(np.uint8), "U8"),
                    ("gpt_neox.layers.%d.attention.masked_bias" % l, np.array(-1e9), "F32"),
                    ("gpt_neox.layers.%d.attention.rotary_emb.inv_freq" % l, np.ones(2), "F32")]
    # a third shard of buffers only, listed in the index like the others
    write_safetensors(tmp_path / "model-00003-of-00003.safetensors",
                      buffers + [("gpt_neox.layers.0.attention.causal", mask.astype(bool), "BOOL")])
    with open(tmp_path / "model.safetensors.index.json") as f:
        index = json.load(f)
    for n, _, _ in buffers:
        index["weight_map"][n] = "model-00003-of-00003.safetensors"
    index["weight_map"]["gpt_neox.layers.0.attention.causal"] = "model-00003-of-00003.safetensors"
    with open(tmp_path / "model.safetensors.index.json", "w") as f:
        json.dump(index, f)
    # a BOOL tensor that is not a known buffer is an error naming it
    with pytest.raises(attnsink.FormatError, match=r"attention\.causal' is not a parameter"):
        attnsink.Model.load(tmp_path)
    write_safetensors(tmp_path / "model-00003-of-00003.safetensors", buffers)
    del index["weight_map"]["gpt_neox.layers.0.attention.causal"]
    with open(tmp_path / "model.safetensors.index.json", "w") as f:
        json.dump(index, f)
    m = attnsink.Model.load(tmp_path)
    tok = tokens()
    _, ref, _ = reference(cfg, params, tok)
    assert rel_err(m.forward(tok), ref.detach().numpy()) <= TOL


def _sharded(tmp_path, family="qwen2"):
    cfg = FAMILIES[family]
    write_checkpoint(tmp_path, cfg, random_params(cfg, 14), shards=3)
    with open(tmp_path / "model.safetensors.index.json") as f:
        return json.load(f)


def _index(tmp_path, index):
    with open(tmp_path / "model.safetensors.index.json", "w") as f:
        json.dump(index, f)


def test_sharded_errors_name_the_shard_or_tensor(tmp_path):
    index = _sharded(tmp_path)
    os.rename(tmp_path / "model-00002-of-00003.safetensors", tmp_path / "moved")
    with pytest.raises(attnsink.FileError, match="model-00002-of-00003.safetensors"):
        attnsink.Model.load(tmp_path)
    os.rename(tmp_path / "moved", tmp_path / "model-00002-of-00003.safetensors")

    name = "model.norm.weight"
    listed = index["weight_map"].pop(name)
    _index(tmp_path, index)
    with pytest.raises(attnsink.FormatError, match=r"model\.norm\.weight.*not listed"):
        attnsink.Model.load(tmp_path)
    index["weight_map"][name] = "model-00001-of-00003.safetensors" if listed != \
        "model-00001-of-00003.safetensors" else "model-00002-of-00003.safetensors"
    _index(tmp_path, index)
    with pytest.raises(attnsink.FormatError, match=r"model\.norm\.weight.*listed for (shard|this shard)"):
        attnsink.Model.load(tmp_path)
    index["weight_map"][name] = listed
    index["weight_map"]["model.extra.weight"] = listed
    _index(tmp_path, index)
    with pytest.raises(attnsink.FormatError, match=r"model\.extra\.weight', listed for this shard"):
        attnsink.Model.load(tmp_path)
    del index["weight_map"]["model.extra.weight"]
    index["weight_map"][name] = "../" + listed
    _index(tmp_path, index)
    with pytest.raises(attnsink.FormatError, match=r"weight_map\[\"model\.norm\.weight\"\]"):
        attnsink.Model.load(tmp_path)
    _index(tmp_path, {"metadata": {}})
    with pytest.raises(attnsink.FormatError, match="weight_map is missing"):
        attnsink.Model.load(tmp_path)
    with open(tmp_path / "model.safetensors.index.json", "w") as f:
        f.write("{")
    with pytest.raises(attnsink.FormatError, match="index.json: invalid JSON"):
        attnsink.Model.load(tmp_path)
    os.remove(tmp_path / "model.safetensors.index.json")
    with pytest.raises(attnsink.FileError, match="neither model.safetensors nor"):
        attnsink.Model.load(tmp_path)


def test_missing_tensor_in_a_shard(tmp_path):
    cfg = FAMILIES["pythia"]
    params = random_params(cfg, 15)
    del params["gpt_neox.layers.1.attention.dense.bias"]
    write_checkpoint(tmp_path, cfg, params, shards=2)
    with pytest.raises(attnsink.FormatError, match=r"gpt_neox\.layers\.1\.attention\.dense\.bias' is missing"):
        attnsink.Model.load(tmp_path)


@pytest.mark.parametrize("edit,status,needle", [
    ({"word_embed_proj_dim": 16}, attnsink.LibraryError, "word_embed_proj_dim=16"),
    ({"do_layer_norm_before": "yes"}, attnsink.FormatError, "do_layer_norm_before"),
    ({"model_type": "falcon"}, attnsink.FormatError, "model_type=\"falcon\""),
])
def test_refused_configs_name_the_key(tmp_path, edit, status, needle):
    cfg = dict(FAMILIES["opt"], **edit)
    write_checkpoint(tmp_path, cfg, random_params(FAMILIES["opt"], 16))
    with pytest.raises(status, match=needle):
        attnsink.Model.load(tmp_path)


@pytest.mark.parametrize("attnsink_opts,needle", [
    ({"ffn": "swiglu"}, "gated"), ({"positions": "alibi"}, "positions=alibi"),
    ({"sink_token": True}, "sink_token"), ({"kernel": "mlp", "attn": "linear"}, "kernel=mlp")])
def test_study_options_a_family_has_no_rows_for(attnsink_opts, needle):
    with pytest.raises((attnsink.FormatError, attnsink.LibraryError), match=needle):
        attnsink.Model.create(dict(FAMILIES["pythia"], attnsink=attnsink_opts))


def test_neox_with_another_attention_spec_trains(tmp_path):
    """The study's attention variants apply to every family: a sigmoid-attention Pythia."""
    m = attnsink.Model.create(dict(FAMILIES["pythia"], attnsink={"attn": "sigmoid"}), seed=3)
    tok = tokens()
    opt_ = attnsink.AdamW(m, lr=1e-2)
    first = m.loss(tok, tok)
    for _ in range(5):
        m.loss(tok, tok)
        m.backward()
        opt_.step()
    assert m.loss(tok, tok) < first


# ------------------------------------------------------------------------- memory

# VmHWM, the peak RSS of this process image (ru_maxrss would carry the forking pytest's peak
# across exec)
_RSS = """
import sys
import attnsink
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
before = hwm()
m = attnsink.Model.load(sys.argv[1])
print(before, hwm())
"""


def test_loading_keeps_one_copy_of_the_weights(tmp_path):
    big_v = 2 ** 18  # 2**18 x 32 x 4 bytes x 2 (embedding and head) = 64 MiB
    cfg = dict(FAMILIES["pythia"], vocab_size=big_v)
    rng = np.random.default_rng(0)
    params = {n: rng.standard_normal(s, dtype=np.float32) for n, s in tf.param_shapes(cfg).items()}
    weights = sum(a.nbytes for a in params.values())
    write_checkpoint(tmp_path / "big", cfg, params, shards=2)
    del params
    # meson test sets MALLOC_PERTURB_, which makes malloc write every block it hands out
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_PERTURB_"}
    out = subprocess.run([sys.executable, "-c", _RSS, str(tmp_path / "big")], check=True,
                         capture_output=True, text=True, env=env).stdout.split()
    grown = (int(out[1]) - int(out[0])) * 1024  # kB
    assert weights <= grown < 1.3 * weights, (grown, weights)
