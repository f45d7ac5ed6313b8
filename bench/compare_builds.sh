#!/bin/bash
# Two builds of the library side by side, in interleaved rounds (A then B, ROUNDS times), so
# the drift of a shared machine lands on both alike: bench_train tiny and study60m, and
# bench_attention. JSON lines tagged with the build go to OUT; a table of medians per build
# (and B / A) to stdout.
#
#   bench/compare_builds.sh BUILD_A BUILD_B [ROUNDS=3] [OUT=compare-builds.jsonl]
#
# BUILD_A and BUILD_B are configured and built meson directories (a worktree of an older
# commit, say: git worktree add /tmp/old COMMIT && meson setup /tmp/old/build /tmp/old &&
# ninja -C /tmp/old/build).
set -euo pipefail
a=$1 b=$2 rounds=${3:-3} out=${4:-compare-builds.jsonl}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: > "$out"
for r in $(seq "$rounds"); do
  for build in "$a" "$b"; do
    tag="{\"build\": \"$build\", \"round\": $r, "
    for args in "--models tiny --steps 10" "--models study60m --steps 3 --batch 4"; do
      # shellcheck disable=SC2086
      "$build/bench/bench_train" --threads 2 $args 2>/dev/null | grep '^{' | sed "s|^{|$tag|" >> "$out"
    done
    "$build/bench/bench_attention" --threads 2 2>/dev/null | grep '^{' | sed "s|^{|$tag|" >> "$out"
  done
done
/usr/bin/python3 "$here/compare_builds_summary.py" "$out" "$a" "$b"
