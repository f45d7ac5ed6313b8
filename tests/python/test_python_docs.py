"""docs/python.md and the Python examples, run as written.

Every ```python block of docs/python.md runs in a fresh namespace, from a scratch
directory; examples/python/torch_attention.py (a short run whose loss curve must match the
eager-attention twin's for its first steps) and examples/python/measure_maps.py run as
programs. Kept short: a few seconds each."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "python.md")


def snippets():
    text = open(DOC, encoding="utf-8").read()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) >= 5, "docs/python.md lost its examples"
    return blocks


@pytest.mark.parametrize("i", range(len(snippets())))
def test_doc_snippet(i, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = snippets()[i]
    exec(compile(code, "docs/python.md[snippet %d]" % i, "exec"), {"__name__": "__doc__"})


def run_example(name, *args):
    env = dict(os.environ)
    env.setdefault("ASINK_NUM_THREADS", "1")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "python", name)] +
                       list(args), capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_example_torch_attention():
    out = run_example("torch_attention.py", "--steps", "40", "--check", "20",
                      "--eval-every", "20")
    assert '"checked_steps": 20' in out, out


def test_example_measure_maps():
    out = run_example("measure_maps.py", "--steps", "20", "--n-eval", "8")
    assert '"hooks_equal_manual": true' in out, out
