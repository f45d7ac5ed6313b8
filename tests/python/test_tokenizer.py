"""Tokenizers without the network: the LLaMA 3, Qwen2 and GPT-2 pre-tokenizer patterns against
node's own regex engine, SentencePiece-style BPE against the sentencepiece library, the
tokenizer.json features (added tokens, NFC, prefix space, BOS sources) and the errors."""

import json
import os
import re
import subprocess

import numpy as np
import pytest

import attnsink
import gpt2_reference as ref

# ------------------------------------------------------------ byte-level tokenizer.json


def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_CHAR = bytes_to_unicode()


def spell(s):
    """A text piece as a byte-level vocabulary spells it."""
    return "".join(BYTE_CHAR[b] for b in s.encode("utf-8"))


def byte_level_dir(path, pieces=(), merges=(), pre_tokenizer=None, normalizer=None,
                   added=(), ignore_merges=False, extra=None, config=None):
    """A byte-level tokenizer.json: the 256 byte tokens, then `pieces` (text) as whole
    tokens, then `added` tokens. Returns the vocabulary (spelling -> id)."""
    vocab = {}
    for b in range(256):
        vocab.setdefault(BYTE_CHAR[b], len(vocab))
    for p in pieces:
        vocab.setdefault(spell(p), len(vocab))
    doc = {
        "version": "1.0",
        "added_tokens": [dict(dict(id=len(vocab) + i, content=c, single_word=False, lstrip=False,
                                   rstrip=False, normalized=False, special=True), **(o or {}))
                         for i, (c, o) in enumerate(added)],
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer or {"type": "ByteLevel", "add_prefix_space": False,
                                           "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": ignore_merges, "vocab": vocab,
                  "merges": [list(m) for m in merges]},
    }
    doc.update(extra or {})
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    for name, content in (config or {}).items():
        with open(os.path.join(path, name), "w") as f:
            json.dump(content, f)
    return vocab


def split_then_bytes(regex):
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": False}]}


LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# JavaScript has no (?i:...) group: its case folding written out (U+017F folds to s)
JS_CONTRACTIONS = r"'[sS\u017f]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"


def node_pieces(js_regex, text):
    script = ("const [re, t] = [process.argv[1], require('fs').readFileSync(0, 'utf-8')];"
              "process.stdout.write(JSON.stringify(Array.from(t.matchAll(new RegExp(re, 'gu')),"
              " m => m[0])));")
    r = subprocess.run(["node", "-e", script, js_regex], input=text, capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout)


def pattern_text():
    return "\n".join([ref.kjv_text("gen1:1-gen2:25"), ref.code_text(20_000), ref.UNICODE,
                      "it'ſ IT'S We'Re 'LL 'Ve 'm 'D x'ſ", ref.fuzz_text(8000, seed=11)])


@pytest.mark.parametrize("name,regex,js", [
    ("llama3", LLAMA3, LLAMA3.replace("(?i:'s|'t|'re|'ve|'m|'ll|'d)", "(?:%s)" % JS_CONTRACTIONS)),
    ("qwen2", QWEN2, QWEN2.replace("(?i:'s|'t|'re|'ve|'m|'ll|'d)", "(?:%s)" % JS_CONTRACTIONS)),
    ("gpt2", None, GPT2),
])
def test_pre_tokenizer_pieces_match_a_regex_engine(tmp_path, name, regex, js):
    """Each piece node's regex finds is a whole token of the vocabulary (ignore_merges takes
    it as it is): the ids are those of node's pieces exactly when the matcher cuts the text
    where node's regex engine does."""
    text = pattern_text()
    pieces = node_pieces(js, text)
    assert "".join(pieces) == text
    d = str(tmp_path / name)
    vocab = byte_level_dir(d, pieces, pre_tokenizer=split_then_bytes(regex) if regex else None,
                           ignore_merges=True)
    tok = attnsink.Tokenizer.load(d)
    got = tok.encode(text).tolist()
    want = [vocab[spell(p)] for p in pieces]
    if got != want:
        i = next(i for i in range(min(len(got), len(want))) if got[i] != want[i])
        pytest.fail("piece %d: %r (want %r)" % (i, tok.decode(got[i:i + 3]), pieces[i:i + 3]))
    assert tok.decode(got) == text


def test_unknown_split_regex_is_refused_by_name(tmp_path):
    d = str(tmp_path / "odd")
    byte_level_dir(d, pre_tokenizer=split_then_bytes(r"\w+|\s+"))
    with pytest.raises(attnsink.LibraryError,
                       match=re.escape("Split pre-tokenizer's regex \"\\w+|\\s+\" is not one this library")):
        attnsink.Tokenizer.load(d)


def test_merges_in_rank_order(tmp_path):
    # "aaa": the pair (a, a) merges first, leftmost: "aa" + "a", then ("aa", "a") -> "aaa";
    # "bab": (a b), rank 1, merges before (b a), rank 4
    d = str(tmp_path / "m")
    vocab = byte_level_dir(d, ["aa", "aaa", "ab", "abab", "ba"],
                           merges=[("a", "a"), ("a", "b"), ("aa", "a"), ("ab", "ab"), ("b", "a")])
    tok = attnsink.Tokenizer.load(d)
    assert tok.encode("aaa").tolist() == [vocab["aaa"]]
    assert tok.encode("aaaa").tolist() == [vocab["aa"], vocab["aa"]]
    assert tok.encode("abab").tolist() == [vocab["abab"]]
    assert tok.encode("bab").tolist() == [vocab["b"], vocab["ab"]]
    assert tok.encode("").tolist() == []


def test_added_tokens_nfc_and_prefix_space(tmp_path):
    d = str(tmp_path / "a")
    vocab = byte_level_dir(d, ["é", " café"], normalizer={"type": "NFC"},
                           added=[("<|bos|>", None), ("<sep>", {"lstrip": True, "rstrip": True}),
                                  ("<w>", {"single_word": True})],
                           config={"tokenizer_config.json": {"bos_token": {"content": "<|bos|>"},
                                                             "add_bos_token": True}})
    bos, sep, w = len(vocab), len(vocab) + 1, len(vocab) + 2
    tok = attnsink.Tokenizer.load(d)
    assert (tok.bos, tok.adds_bos, tok.vocab_size) == (bos, True, len(vocab) + 3)
    assert tok.token(bos) == "<|bos|>" and tok.token_id("<sep>") == sep
    # NFC: a decomposed é is the same text as a composed one
    assert tok.encode("cafe\u0301").tolist() == tok.encode("café").tolist()
    assert tok.encode("x<|bos|>y").tolist() == [vocab["x"], bos, vocab["y"]]
    # lstrip / rstrip take the spaces around <sep> with it
    assert tok.encode("a  <sep> b").tolist() == [vocab["a"], sep, vocab["b"]]
    # single_word: <w> inside a word is plain text
    assert tok.encode("a <w> b").tolist() == [vocab["a"], vocab[spell(" ")], w, vocab[spell(" ")], vocab["b"]]
    assert w not in tok.encode("x<w>y").tolist()
    assert w not in tok.encode("é<w>").tolist() and w not in tok.encode("<w>_").tolist()
    assert w in tok.encode("!<w>!").tolist() and w in tok.encode("<w>").tolist()
    # add_prefix_space: " café" is one token when the text starts without a space
    d2 = str(tmp_path / "p")
    vocab2 = byte_level_dir(d2, [" café"], pre_tokenizer={
        "type": "ByteLevel", "add_prefix_space": True, "use_regex": True}, ignore_merges=True)
    assert attnsink.Tokenizer.load(d2).encode("café").tolist() == [vocab2[spell(" café")]]


def test_bos_from_post_processor_and_config(tmp_path):
    d = str(tmp_path / "pp")
    vocab = byte_level_dir(d, added=[("<|begin_of_text|>", None)], extra={"post_processor": {
        "type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [], "special_tokens": {"<|begin_of_text|>": {
                 "id": "<|begin_of_text|>", "ids": [256], "tokens": ["<|begin_of_text|>"]}}}]}})
    tok = attnsink.Tokenizer.load(d)
    assert (tok.bos, tok.adds_bos) == (len(vocab), True)
    d2 = str(tmp_path / "cfg")
    byte_level_dir(d2, config={"config.json": {"bos_token_id": 7}})
    tok2 = attnsink.Tokenizer.load(d2)
    assert (tok2.bos, tok2.adds_bos) == (7, False)


@pytest.mark.parametrize("change,error,message", [
    ({"model": {"type": "Unigram", "vocab": []}}, attnsink.LibraryError,
     "model.type 'Unigram' is not supported"),
    ({"normalizer": {"type": "NFKC"}}, attnsink.LibraryError, "normalizer 'NFKC' is not supported"),
    ({"pre_tokenizer": {"type": "Whitespace"}}, attnsink.LibraryError,
     "pre_tokenizer 'Whitespace' is not supported"),
    ({"decoder": {"type": "WordPiece"}}, attnsink.LibraryError, "WordPiece"),
    ({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}, attnsink.FormatError,
     "merge 0 'a b': 'b' is not in the vocabulary"),
    ({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}}, attnsink.FormatError,
     "id 0 names both"),
    ({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]}}, attnsink.FormatError,
     "merge 0 'a' is not two tokens"),
    ({"model": {"type": "BPE", "vocab": {"a": -3}, "merges": []}}, attnsink.FormatError,
     "token 'a' has id"),
    ({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": 0.1}},
     attnsink.LibraryError, "model.dropout=0.1"),
])
def test_unsupported_or_malformed_tokenizer_json(tmp_path, change, error, message):
    d = str(tmp_path / "bad")
    byte_level_dir(d, extra=change)
    with pytest.raises(error, match=re.escape(message)):
        attnsink.Tokenizer.load(d)


def test_file_errors(tmp_path):
    with pytest.raises(attnsink.FileError, match="no tokenizer.json, nor encoder.json with vocab.bpe"):
        attnsink.Tokenizer.load(str(tmp_path))
    with pytest.raises(attnsink.FileError, match="is not a directory"):
        attnsink.Tokenizer.load(str(tmp_path / "missing"))
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "BPE",\n "vocab": }')
    with pytest.raises(attnsink.FormatError, match=r"tokenizer.json: line 2 column"):
        attnsink.Tokenizer.load(str(tmp_path))
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "encoder.json").write_text("{}")
    with pytest.raises(attnsink.FileError, match=r"encoder.json without vocab.bpe"):
        attnsink.Tokenizer.load(str(tmp_path))


def test_python_argument_errors(tmp_path):
    d = str(tmp_path / "t")
    byte_level_dir(d)
    with attnsink.Tokenizer.load(d) as tok:
        with pytest.raises(attnsink.ArgumentError, match=r"id 300 \(item 1\) is not a token"):
            tok.decode([65, 300])
        with pytest.raises(attnsink.ArgumentError, match=r"id -1 \(item 0\)"):
            tok.decode([-1])
        with pytest.raises(TypeError, match="str or bytes"):
            tok.encode(42)
        with pytest.raises(attnsink.ArgumentError, match="lone surrogate"):
            tok.encode("a\ud800b")
        assert tok.decode(np.zeros(0, np.int32)) == ""
    with pytest.raises(attnsink.StateError, match="tokenizer is closed"):
        tok.encode("x")
    with pytest.raises(TypeError, match="Tokenizer.load"):
        attnsink.Tokenizer()


# ------------------------------------------------------------ SentencePiece style

def sentencepiece_model(tmp_path):
    """A small BPE model trained by the sentencepiece library (Debian python3-sentencepiece)
    the way LLaMA 2's was (byte fallback, no normalisation, spaces kept, a dummy prefix),
    except that it does not cut the text at spaces or digits before BPE: tokenizer.json's
    BPE model has no such step either."""
    import sentencepiece as spm
    train = tmp_path / "train.txt"
    train.write_text(ref.kjv_text("gen1:1-gen20:18"), encoding="utf-8")
    prefix = str(tmp_path / "sp")
    spm.SentencePieceTrainer.train(
        input=str(train), model_prefix=prefix, model_type="bpe", vocab_size=800,
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, split_digits=False, split_by_whitespace=False,
        allow_whitespace_only_pieces=True, character_coverage=0.9995, unk_id=0, bos_id=1,
        eos_id=2, pad_id=-1, minloglevel=2)
    return spm.SentencePieceProcessor(model_file=prefix + ".model")


def sentencepiece_json(sp, path, legacy):
    """tokenizer.json as HF's converter writes it for LLaMA 2: the merges are every split of
    every piece into two pieces, ordered by the merged piece's score. legacy: the older
    Prepend + Replace normaliser; else the Metaspace pre-tokenizer and decoder."""
    n = sp.get_piece_size()
    vocab = {sp.id_to_piece(i): i for i in range(n)}
    merges = []
    for i in range(n):
        piece = sp.id_to_piece(i)
        local = [(piece[:k], piece[k:]) for k in range(1, len(piece))
                 if piece[:k] in vocab and piece[k:] in vocab]
        merges += [(sp.get_score(i), l, r) for l, r in sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]]))]
    merges = [[l, r] for _, l, r in sorted(merges, key=lambda m: -m[0])]
    special = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True} for i, c in enumerate(["<unk>", "<s>", "</s>"])]
    meta = "\u2581"
    doc = {
        "version": "1.0", "added_tokens": special,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": meta},
            {"type": "Replace", "pattern": {"String": " "}, "content": meta}]} if legacy else None,
        "pre_tokenizer": None if legacy else {"type": "Metaspace", "replacement": meta,
                                              "prepend_scheme": "first", "split": False},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1],
                                                                  "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": meta}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]} if legacy else
        {"type": "Metaspace", "replacement": meta, "prepend_scheme": "first", "split": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                  "byte_fallback": True, "ignore_merges": False, "vocab": vocab, "merges": merges},
    }
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    return sentencepiece_model(tmp_path_factory.mktemp("sp"))


@pytest.mark.parametrize("legacy", [True, False], ids=["prepend-normalizer", "metaspace"])
def test_sentencepiece_style_matches_sentencepiece(sp_model, tmp_path, legacy):
    d = str(tmp_path / "sp")
    sentencepiece_json(sp_model, d, legacy)
    tok = attnsink.Tokenizer.load(d)
    assert (tok.kind, tok.bos, tok.adds_bos) == ("metaspace", 1, True)
    texts = [ref.kjv_text("lev1:1-lev4:35"), ref.UNICODE, ref.fuzz_text(3000, seed=5),
             ref.code_text(10_000), "", " ", "  two spaces first", "x", "\n", "🙂"]
    for text in texts:
        got = tok.encode(text).tolist()
        if not legacy and text.startswith(" "):
            # HF's Metaspace adds no U+2581 where a space already makes one (sentencepiece's
            # dummy prefix always goes in), and its decoder then drops that space
            rest = text[1:]
            assert got == (sp_model.encode(rest) if rest else [tok.token_id("\u2581")])
            assert tok.decode(got) == rest
            continue
        want = sp_model.encode(text)
        assert got == want, "%r...: %s" % (text[:40], [sp_model.id_to_piece(i) for i in got[:12]])
        assert tok.decode(got) == sp_model.decode(want) == text
    # bytes that are not UTF-8: <0xNN> tokens, which decode back to them
    bad = b"ab\xff\xc3(\xe2\x82"
    ids = tok.encode(bad)
    assert tok.decode_bytes(ids) == bad
    # an added token splits the text; the legacy normaliser puts U+2581 before every part,
    # prepend_scheme "first" only before the text's first
    after = tok.encode("b").tolist() if legacy else [tok.token_id("b")]
    assert tok.encode("a<s>b").tolist() == tok.encode("a").tolist() + [1] + after
    assert len(tok.encode(texts[0])) < len(texts[0]) / 2  # the merges do merge


# ------------------------------------------------------------ the probe's BOS rule

EXE = os.environ.get("ATTNSINK_EXE") or os.path.join(ref.ROOT, "build", "examples", "attnsink",
                                                      "attnsink")


def test_probe_takes_bos_from_a_tokenizer_that_adds_it(tmp_path):
    """A LLaMA-3-like checkpoint: its config names no BOS, its tokenizer's post-processor
    starts every encoding with <|begin_of_text|>, so the probe starts every window with it
    unless told --no-bos."""
    d = str(tmp_path / "ckpt")
    cfg = {"model_type": "llama", "vocab_size": 257, "hidden_size": 16, "intermediate_size": 32,
           "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
           "rms_norm_eps": 1e-5, "max_position_embeddings": 64}
    with attnsink.Model.create(cfg, seed=2) as m:
        m.save(d)
    byte_level_dir(d, added=[("<|begin_of_text|>", None)], extra={"post_processor": {
        "type": "TemplateProcessing", "single": [
            {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}}], "pair": [],
        "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [256],
                                                  "tokens": ["<|begin_of_text|>"]}}}})
    text = tmp_path / "t.txt"
    text.write_text(ref.UNICODE, encoding="utf-8")

    def probe(*args):
        out = str(tmp_path / "p.json")
        r = subprocess.run([EXE, "probe", d, "--tokens", "12", "--samples", "3", "--json", out,
                            "--threads", "1"] + list(args), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        with open(out) as f:
            return r.stdout.splitlines()[0], json.load(f)

    head, with_bos = probe("--text", str(text))
    assert head.endswith("every window starting with BOS id 256")
    assert probe("--text", str(text), "--bos") == (head, with_bos)
    head, without = probe("--text", str(text), "--no-bos")
    assert "BOS" not in head and without["importance"] != with_bos["importance"]
    # the ids are those `attnsink tokenize` prints, BOS added by the probe alone
    ids = subprocess.run([EXE, "tokenize", d, "--text", str(text)], capture_output=True,
                         text=True, check=True).stdout
    assert "256" not in ids.split()
    (tmp_path / "ids.txt").write_text(ids)
    assert probe("--token-ids", str(tmp_path / "ids.txt"))[1] == with_bos
