"""Weights kept in bf16 (Model.load(dir, weights="bf16")): a BF16 checkpoint is taken as it
is (the same logits as its float32 load, which widens it exactly), an F32 one is rounded as
PyTorch rounds to bfloat16, decoding and the metric run on it, training and a bad option are
refused with a message naming them."""
import json

import numpy as np
import pytest
import torch

import attnsink
from test_model import write_safetensors

CONFIG = {"model_type": "llama", "vocab_size": 90, "hidden_size": 64, "intermediate_size": 160,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 64, "tie_word_embeddings": False}


def checkpoint(tmp_path, dtype, params, name="ckpt"):
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(CONFIG))
    write_safetensors(str(d / "model.safetensors"),
                      [(k, v, dtype if v.ndim == 2 else "F32") for k, v in params.items()])
    return d


def random_params(seed=0):
    """Each parameter of the config with values of about the initialisation's size."""
    m = attnsink.Model.create(CONFIG, seed=seed)
    return {k: v + np.float32(0.01) * np.random.default_rng(seed).standard_normal(v.shape, dtype=np.float32)
            for k, v in m.parameters().items()}


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


TOKENS = np.array([[(7 * i + 3) % 90 for i in range(40)], [(11 * i + 1) % 90 for i in range(40)]],
                  dtype=np.int32)


def test_bf16_file_is_taken_as_it_is(tmp_path):
    d = checkpoint(tmp_path, "BF16", random_params(1))
    half, full = attnsink.Model.load(d, weights="bf16"), attnsink.Model.load(d)
    assert half.weights == "bf16" and full.weights == "fp32"
    assert rel(half.forward(TOKENS), full.forward(TOKENS)) < 1e-4
    # a decode step's rows go through the skinny products
    assert rel(half.forward(TOKENS[:1, :3]), full.forward(TOKENS[:1, :3])) < 1e-4


def test_f32_file_is_rounded_as_torch_rounds(tmp_path):
    p = random_params(2)
    kept_float = {k for k in p if p[k].ndim == 1}
    rounded = {k: v if k in kept_float else torch.from_numpy(v).to(torch.bfloat16).float().numpy()
               for k, v in p.items()}
    half = attnsink.Model.load(checkpoint(tmp_path, "F32", p, "f32"), weights="bf16")
    ref = attnsink.Model.load(checkpoint(tmp_path, "F32", rounded, "rounded"))
    assert rel(half.forward(TOKENS), ref.forward(TOKENS)) < 1e-4
    # and an F16 file likewise (F16 values are exact floats, rounded once to bf16)
    f16 = {k: v.astype(np.float16).astype(np.float32) for k, v in p.items()}
    half16 = attnsink.Model.load(checkpoint(tmp_path, "F16", f16, "f16"), weights="bf16")
    r16 = {k: v if k in kept_float else torch.from_numpy(v).to(torch.bfloat16).float().numpy()
           for k, v in f16.items()}
    ref16 = attnsink.Model.load(checkpoint(tmp_path, "F32", r16, "r16"))
    assert rel(half16.forward(TOKENS), ref16.forward(TOKENS)) < 1e-4


def test_decode_and_metric_run_on_bf16_weights(tmp_path):
    d = checkpoint(tmp_path, "BF16", random_params(3))
    half, full = attnsink.Model.load(d, weights="bf16"), attnsink.Model.load(d)
    logits = half.forward(TOKENS[:1])
    assert rel(half.decode(TOKENS[:1], cache="full"), logits) < 1e-4
    stats = []
    for m in (half, full):
        metric = attnsink.Metric(eps=0.3)
        m.attach_metric(metric)
        m.forward(TOKENS)
        stats.append(metric.stats())
        m.detach_metric()
    for key in ("importance", "sink", "qk_cosine", "entropy"):
        assert np.allclose(stats[0][key], stats[1][key], atol=1e-5), key


def test_training_and_bad_options_are_refused(tmp_path):
    half = attnsink.Model.create(CONFIG, seed=4, weights="bf16")
    with pytest.raises(attnsink.AttnsinkError, match="fp32"):
        half.loss(TOKENS, TOKENS)
    with pytest.raises(attnsink.AttnsinkError, match="fp32"):
        attnsink.AdamW(half, lr=1e-3)
    assert np.isfinite(half.eval_loss(TOKENS, TOKENS))
    with pytest.raises(ValueError, match="fp16"):
        attnsink.Model.create(CONFIG, weights="fp16")
    with pytest.raises(ValueError, match="int8"):
        attnsink.Model.load(tmp_path, weights="int8")
