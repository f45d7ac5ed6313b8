"""Checks that a user's documents point only at things a user has.

For each markdown file: every relative link or image ([text](path#anchor)) must name a
file that exists, and an anchor must name a heading (GitHub's slugs) or an explicit
<a id=...> of that file; every mention of a markdown file by name (`docs/cli.md`,
DESIGN.md) outside code blocks must name one that exists; and no text may cite
sections with "§", which only made sense against a document outside the project.

    doc_links.py [--root ROOT] FILE...  check these files (exit 1 and one line per
                                        problem); names of files also resolve in ROOT
    doc_links.py --repo ROOT            check README.md, python/README.md and docs/*.md
"""

import glob
import os
import re
import sys
import unicodedata

# Markdown files the program writes where it runs: named in the docs, never in the tree.
GENERATED = {"report.md"}

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.I)
MD_MENTION = re.compile(r"(?<![\w/.:-])((?:[\w.-]+/)*[\w-]+\.md)\b")


def slug(heading):
    """GitHub's anchor of a heading: markup dropped, lower case, punctuation removed,
    blanks to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
    text = text.replace("`", "").lower()
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "-_" or cat[0] in "LN" or cat == "Mn":
            kept.append(ch)
        elif ch == " ":
            kept.append("-")
    return "".join(kept)


def anchors(text):
    seen = {}
    out = set(HTML_ANCHOR.findall(text))
    for h in HEADING.findall(FENCE.sub("", text)):
        s = slug(h)
        n = seen.get(s, 0)
        out.add(s if n == 0 else "%s-%d" % (s, n))
        seen[s] = n + 1
    return out


def problems_in(path, root=None):
    """The problems of one markdown file, as 'path:line: what' strings."""
    text = open(path, encoding="utf-8").read()
    here = os.path.dirname(os.path.abspath(path))
    out = []

    def line_of(pos):
        return text.count("\n", 0, pos) + 1

    for m in re.finditer("§", text):
        out.append("%s:%d: '§' cites a section of a document that is not part of the project"
                   % (path, line_of(m.start())))
    # links are looked for outside code; code blocks keep their length so lines stay right
    prose = FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    prose = INLINE_CODE.sub(lambda m: " " * len(m.group(0)), prose)
    for m in LINK.finditer(prose):
        target = m.group(1)
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # http:, https:, mailto: ... are not checked here
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(here, file_part)) if file_part else os.path.abspath(path)
        where = "%s:%d" % (path, line_of(m.start()))
        if not os.path.exists(dest):
            out.append("%s: link to a missing file: %s" % (where, target))
            continue
        if anchor and dest.endswith(".md"):
            if anchor not in anchors(open(dest, encoding="utf-8").read()):
                out.append("%s: link to a missing anchor: %s (no heading of %s has that slug)"
                           % (where, target, os.path.basename(dest)))
    # mentions of markdown files by name, in prose and inline code (not in code blocks,
    # whose commands may name files they write; not in link targets, checked above)
    named = FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    named = LINK.sub(lambda m: re.sub(r"\(.*\)$", lambda t: " " * len(t.group(0)), m.group(0)), named)
    for m in MD_MENTION.finditer(named):
        name = m.group(1)
        if os.path.basename(name) in GENERATED:
            continue
        bases = [here] + ([root] if root else [])
        if not any(os.path.exists(os.path.join(b, name)) for b in bases):
            out.append("%s:%d: names %s, which is not in the project"
                       % (path, line_of(m.start()), name))
    return out


def repo_files(root):
    files = [os.path.join(root, "README.md"), os.path.join(root, "python", "README.md")]
    return files + sorted(glob.glob(os.path.join(root, "docs", "*.md")))


def main(argv):
    root = None
    if len(argv) >= 2 and argv[0] in ("--repo", "--root"):
        root = os.path.abspath(argv[1])
        files = repo_files(root) if argv[0] == "--repo" else argv[2:]
    else:
        files = argv
    if not files or any(f.startswith("-") for f in files):
        print(__doc__.strip())
        return 2
    found = []
    for f in files:
        found += problems_in(f, root)
    for p in found:
        print(p)
    print("%d files, %d problems" % (len(files), len(found)))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
