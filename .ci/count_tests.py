#!/usr/bin/env python3
"""Count passed and failed test cases from meson's testlog.json.

usage: count_tests.py TESTLOG_JSON [MAKE_STATUS]

testlog.json holds one JSON object per meson test ('name', 'result', 'stdout').
  - Check tests: every summary line "NN%: Checks: C, Failures: F, Errors: E" counts
    F + E failed and C - F - E passed;
  - pytest tests: the summary line ("3 passed, 1 failed, 2 errors in 0.41s") counts
    passed (+ xpassed) and failed + errors; skipped, xfailed and deselected count nothing;
  - the shell tests' own last line "N passed, N failed" (tests/cli_common.sh's tallies)
    counts as it says;
  - any other test counts one, passed or failed by its 'result'.
A test meson marks as failing whose output shows no failure counts one more failure.
If MAKE_STATUS is non-zero and nothing counted failed, one failure is added for it.

Prints one line "N passed, N failed" last; exit status 1 if anything failed, or if
the log is missing or unreadable (then the line is "0 passed, 1 failed").
Standard library only: runs under any Python 3.
"""
import json
import re
import sys

CHECK_RE = re.compile(r"\d+%: Checks: (\d+), Failures: (\d+), Errors: (\d+)")
# pytest's last line: "==== 1 failed, 3 passed, 1 skipped in 0.41s ====" or, with -q,
# the same without the rules; the duration may be "12.34s" or "12.34s (0:00:12)".
PYTEST_LINE_RE = re.compile(
    r"^=*\s*((?:\d+ [a-z]+(?:, )?)+) in \d+(?:\.\d+)?s\b.*$", re.MULTILINE)
PYTEST_ITEM_RE = re.compile(r"(\d+) ([a-z]+)")
SHELL_LINE_RE = re.compile(r"^(\d+) passed, (\d+) failed$", re.MULTILINE)
OK_RESULTS = {"OK", "EXPECTEDFAIL"}
NEUTRAL_RESULTS = {"SKIP"}


def count_test(test):
    """(passed, failed, how) for one meson test record."""
    result = str(test.get("result", "ERROR")).upper()
    text = (test.get("stdout") or "") + "\n" + (test.get("stderr") or "")
    meson_ok = result in OK_RESULTS

    checks = CHECK_RE.findall(text)
    if checks:
        passed = failed = 0
        for c, f, e in checks:
            bad = int(f) + int(e)
            failed += bad
            passed += max(int(c) - bad, 0)
        if not meson_ok and result not in NEUTRAL_RESULTS and failed == 0:
            failed += 1
        return passed, failed, "check"

    summaries = PYTEST_LINE_RE.findall(text)
    if summaries:
        passed = failed = 0
        for n, word in PYTEST_ITEM_RE.findall(summaries[-1]):
            if word in ("passed", "xpassed"):
                passed += int(n)
            elif word in ("failed", "error", "errors"):
                failed += int(n)
        if not meson_ok and result not in NEUTRAL_RESULTS and failed == 0:
            failed += 1
        return passed, failed, "pytest"

    shell = SHELL_LINE_RE.findall(text)
    if shell:
        passed, failed = int(shell[-1][0]), int(shell[-1][1])
        if not meson_ok and result not in NEUTRAL_RESULTS and failed == 0:
            failed += 1
        return passed, failed, "shell"

    if result in NEUTRAL_RESULTS:
        return 0, 0, "skipped"
    return (1, 0, "plain") if meson_ok else (0, 1, "plain")


def main(argv):
    if len(argv) < 2:
        print("usage: count_tests.py TESTLOG_JSON [MAKE_STATUS]", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    make_status = int(argv[2]) if len(argv) > 2 else 0
    try:
        with open(argv[1], encoding="utf-8", errors="replace") as f:
            records = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        print("count_tests: cannot read %s: %s" % (argv[1], e), file=sys.stderr)
        print("0 passed, 1 failed")
        return 1

    passed = failed = 0
    for test in records:
        p, f, how = count_test(test)
        passed += p
        failed += f
        if f:
            print("count_tests: %s: %s, %d failed (%s)"
                  % (test.get("name", "?"), test.get("result", "?"), f, how))
    if not records:
        print("count_tests: %s lists no tests" % argv[1])
        failed += 1
    if make_status != 0 and failed == 0:
        print("count_tests: make check exited with status %d" % make_status)
        failed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
