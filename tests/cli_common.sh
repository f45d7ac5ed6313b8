# Shared by the shell tests of the programs (test_cli.sh, test_cli_kill.sh, test_mpi.sh),
# sourced after `set -u` once A holds the attnsink program's path: A made absolute, PY the
# Python with numpy, one thread per model, the test hooks unset, a scratch directory W (the
# working directory from here on, removed at exit), the tallies and their reporters
# ok / bad / check, and corpus.txt, a text of about 35 KB (the GPL when the system has it,
# else generated).
case $A in /*) ;; *) A=$PWD/$A ;; esac
if [ ! -x "$A" ]; then
  echo "$(basename "$0"): $A is not an executable program"
  exit 1
fi
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
# toy models gain nothing from a second thread, and the test machine is shared
export ASINK_NUM_THREADS=${ASINK_NUM_THREADS:-1}
unset ASINK_TEST_INTERRUPT_AT ATTNSINK_TEST_KILL_AT ATTNSINK_TEST_NAN_AT ASINK_TEST_KILL_RANK_AT ATTNSINK_CORPUS

W=$(mktemp -d "${TMPDIR:-/tmp}/$(basename "$0" .sh).XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1

# toy_corpus: corpus.txt of about 35 KB, the GPL text when the system has it, else generated
toy_corpus() {
  if [ -r /usr/share/common-licenses/GPL-3 ]; then
    cp /usr/share/common-licenses/GPL-3 corpus.txt
  else
    for i in $(seq 1 700); do
      echo "Line $i: the sink is where attention goes when nothing else needs it, $((i * 7919 % 1000))."
    done >corpus.txt
  fi
}

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

toy_corpus
