# Shared by the shell tests of the programs (test_cli.sh, test_mpi.sh), sourced after
# `set -u`: a scratch directory W (removed on exit, made the working directory), the tallies
# and their reporters ok / bad / check, and corpus.txt, a text of about 35 KB (the GPL when the
# system has it, else generated). Usage: . cli_common.sh NAME (the scratch directory's prefix).
W=$(mktemp -d "${TMPDIR:-/tmp}/${1:-test}.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && sed 's/^/     | /' "$2"; }
# check NAME COMMAND...: the command must succeed
check() {
  local name=$1
  shift
  if "$@" >"$W/check.out" 2>&1; then ok "$name"; else bad "$name" "$W/check.out"; fi
}

if [ -r /usr/share/common-licenses/GPL-3 ]; then
  cp /usr/share/common-licenses/GPL-3 corpus.txt
else
  for i in $(seq 1 700); do
    echo "Line $i: the sink is where attention goes when nothing else needs it, $((i * 7919 % 1000))."
  done >corpus.txt
fi
