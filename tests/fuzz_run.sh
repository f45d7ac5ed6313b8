#!/bin/sh
# One fuzz target for a fixed number of executions (CI; `make fuzz` runs longer):
#   fuzz_run.sh TARGET RUNS SEEDS WORK [DICT]
# New inputs go to WORK (the checked-in SEEDS are only read); a crash, leak or timeout is
# left as WORK/crash-* (leak-*, timeout-*) and named on the last line: copy it into SEEDS
# once fixed, so the case is replayed by every later run. The target's own messages (the
# parsers' refusals, one per rejected input) go to WORK/messages.log.
set -u
target=$1 runs=$2 seeds=$3 work=$4 dict=${5:-}
mkdir -p "$work/corpus" || exit 1
# -error_exitcode: libFuzzer's default, 77, is what meson reads as "skipped"
set -- -runs="$runs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -error_exitcode=1 -timeout_exitcode=1 -artifact_prefix="$work/"
[ -n "$dict" ] && set -- "$@" -dict="$dict"
"$target" "$@" "$work/corpus" "$seeds" 2>"$work/messages.log"
status=$?
grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)' "$work/messages.log"
grep -E 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY:' "$work/messages.log" | head -20
for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
  [ -e "$f" ] && echo "finding: $f"
done
echo "$(basename "$target"): $runs runs, exit status $status"
# a status of 77 from anything else must not read as a skip either
[ "$status" -eq 77 ] && status=1
exit $status
