"""The user's documents point only at what the project has (doc_links.py), and the
checker itself catches each kind of dangling reference it is there for."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import doc_links  # noqa: E402


@pytest.mark.parametrize("path", doc_links.repo_files(ROOT), ids=lambda p: os.path.relpath(p, ROOT))
def test_document_points_nowhere_missing(path):
    assert os.path.exists(path), path
    problems = doc_links.problems_in(path, ROOT)
    assert not problems, "\n".join(problems)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_good_links_pass(tmp_path):
    write(tmp_path, "docs/other.md", "# Other page\n\n## The `asink_x` call (C)\n\n## Same\n\n## Same\n")
    write(tmp_path, "docs/plot.svg", "<svg/>")
    doc = write(tmp_path, "docs/page.md",
                "# Page\n\nSee [other](other.md), [a call](other.md#the-asink_x-call-c),\n"
                "[the second](other.md#same-1), [here](#page), ![plot](plot.svg),\n"
                "[web](https://example.org/x.md) and docs/other.md by name.\n\n"
                "```\n[not a link](missing.md) inside code\n```\n")
    assert doc_links.problems_in(doc, str(tmp_path)) == []


@pytest.mark.parametrize("text, what", [
    ("[gone](missing.md)", "missing file"),
    ("![plot](missing.svg)", "missing file"),
    ("[x](other.md#no-such-heading)", "missing anchor"),
    ("[x](#nowhere)", "missing anchor"),
    ("as DESIGN §5 says", "§"),
    ("the formulas of STUDY.md", "not in the project"),
    ("read `docs/gone.md`", "not in the project"),
])
def test_each_dangling_reference_is_caught(tmp_path, text, what):
    write(tmp_path, "docs/other.md", "# Other page\n")
    doc = write(tmp_path, "docs/page.md", "# Page\n\n" + text + "\n")
    problems = doc_links.problems_in(doc, str(tmp_path))
    assert len(problems) == 1 and what in problems[0], problems
    assert problems[0].startswith(doc + ":3:"), problems  # file and line of the reference


def test_program_output_mode(tmp_path):
    """The CLI form, as the program's test runs it on the study's report.md."""
    write(tmp_path, "sink1.svg", "<svg/>")
    good = write(tmp_path, "report.md", "![Sink_1](sink1.svg) docs/metrics.md\n")
    bad = write(tmp_path, "bad.md", "![loss](loss.svg)\n")
    assert doc_links.main(["--root", ROOT, good]) == 0
    assert doc_links.main(["--root", ROOT, bad]) == 1
