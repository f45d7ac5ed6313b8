# Shared by the attnsink program's test scripts, sourced once A holds the program's
# path: A made absolute, PY the Python with numpy, a scratch directory W (the working
# directory from here on, removed at exit), the test hooks unset, and ok/bad counting
# passed and failed checks.
case $A in /*) ;; *) A=$PWD/$A ;; esac
if [ ! -x "$A" ]; then
  echo "$(basename "$0"): $A is not an executable program"
  exit 1
fi
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
# toy models gain nothing from a second thread, and the test machine is shared
export ASINK_NUM_THREADS=${ASINK_NUM_THREADS:-1}
unset ASINK_TEST_INTERRUPT_AT ATTNSINK_TEST_KILL_AT ATTNSINK_TEST_NAN_AT ATTNSINK_CORPUS

W=$(mktemp -d "${TMPDIR:-/tmp}/$(basename "$0" .sh).XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && sed 's/^/     | /' "$2"; }
