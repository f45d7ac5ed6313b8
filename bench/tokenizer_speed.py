"""Encoding speed of GPT-2's tokenizer: libattnsink against the reference encoder (the npm
package gpt-3-encoder 1.1.4 run with node), on the same ~470 KB text the tokenizer test uses
(KJV, the library's C sources, a multilingual sample, random fragments).

    /usr/bin/python3 bench/tokenizer_speed.py        # after `ninja -C build`
    /usr/bin/python3 bench/tokenizer_speed.py FILE   # on FILE (UTF-8) instead
    /usr/bin/python3 bench/tokenizer_speed.py --sentencepiece FILE
                     # SentencePiece style: the test's small BPE model (trained by the
                     # sentencepiece library, converted to tokenizer.json) against
                     # sentencepiece itself on FILE

Wall time of the encoding alone (loading the vocabulary and starting node not counted); for
libattnsink the best of 5 runs, for node one run of its encode() over the text in parts (see
tests/python/gpt2_reference.py: one call on the whole text is quadratic in its length). Fetches
the package with npm into build/test-cache on first use."""

import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "python"), os.path.join(ROOT, "tests", "python")]
os.environ.setdefault("ATTNSINK_LIB", os.path.join(ROOT, "build", "libattnsink.so"))

import attnsink  # noqa: E402
import gpt2_reference as ref  # noqa: E402


def sentencepiece(path):
    import test_tokenizer as tt
    with open(path, encoding="utf-8") as f:
        text = f.read()
    with tempfile.TemporaryDirectory() as d:
        import pathlib
        sp = tt.sentencepiece_model(pathlib.Path(d))
        tt.sentencepiece_json(sp, os.path.join(d, "tok"), legacy=False)
        tok = attnsink.Tokenizer.load(os.path.join(d, "tok"))
        t0 = time.perf_counter()
        ids = tok.encode(text)
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        want = sp.encode(text)
        theirs = time.perf_counter() - t0
    assert ids.tolist() == want, "the ids differ from sentencepiece's"
    mb = len(text.encode("utf-8")) / 1e6
    print("%.2f MB, %d ids: libattnsink %.2f MB/s, sentencepiece %.2f MB/s"
          % (mb, len(ids), mb / ours, mb / theirs))


def main():
    if sys.argv[1:2] == ["--sentencepiece"]:
        return sentencepiece(sys.argv[2])
    pkg = ref.package_dir()
    if len(sys.argv) > 1:
        with open(sys.argv[1], "rb") as f:
            text = f.read()
    else:
        text = ref.varied_text().encode("utf-8")
    tok = attnsink.Tokenizer.load(pkg)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        ids = tok.encode(text)
        best = min(best, time.perf_counter() - t0)
    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        f.write(text)
        f.flush()
        want, node_s = ref.node_encode(pkg, f.name)
    assert ids.tolist() == want, "the ids differ from the reference's"
    mb = len(text) / 1e6
    print("%.2f MB, %d ids: libattnsink %.1f MB/s, gpt-3-encoder (node %s) %.2f MB/s, %.0fx"
          % (mb, len(ids), mb / best, os.popen("node --version").read().strip(), mb / node_s,
             node_s / best))


if __name__ == "__main__":
    main()
