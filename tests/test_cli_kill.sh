#!/usr/bin/env bash
# A training run killed (SIGKILL) just before each fsync and rename of its saves
# resumes to exactly the result of a run that was never killed; a run killed in its
# first save starts afresh in the same directory; nothing a killed save left stays
# behind. Usage: test_cli_kill.sh PATH/TO/attnsink
set -u

A=${1:?usage: test_cli_kill.sh PATH/TO/attnsink}
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh"

for i in $(seq 1 700); do
  echo "Line $i: the sink is where attention goes when nothing else needs it, $((i * 7919 % 1000))."
done >corpus.txt

# saves at steps 2 and 4 (evaluations) and 5 (the end)
RUN=(--corpus corpus.txt --layers 1 --dim 16 --heads 2 --context 16 --batch 4 --steps 5 --eval-every 2 --threads 1)
"$A" train "${RUN[@]}" --out ref >ref.out 2>ref.err || bad "uninterrupted run" ref.err

# same RUN_DIR REF_DIR: the same bytes, but for the wall-clock seconds
same() {
  "$PY" - "$1" "$2" <<'PYEOF'
import json, sys
a, b = sys.argv[1:]
for f in ("config.json", "model.safetensors", "optimizer.safetensors"):
    assert open(f"{a}/{f}", "rb").read() == open(f"{b}/{f}", "rb").read(), f
def state(d):
    s = json.load(open(f"{d}/train_state.json"))
    s.pop("seconds")
    return s
assert state(a) == state(b), "train_state.json"
def rows(d):
    return [{k: v for k, v in json.loads(l).items() if k != "seconds"} for l in open(f"{d}/metrics.jsonl")]
assert rows(a) == rows(b) and [r["step"] for r in rows(a)] == [2, 4, 5], "metrics.jsonl"
PYEOF
}

# only the run's own names: the links, current, and one step directory
tidy() {
  local names
  names=$(cd "$1" && ls -A | sed 's/^step-[0-9]\{12\}\.[A-Za-z0-9]\{6\}$/STEP/' | sort | tr '\n' ' ')
  [ "$names" = "STEP config.json current metrics.jsonl model.safetensors optimizer.safetensors train_state.json " ]
}

n=0
fresh=0
resumed=0
while :; do
  n=$((n + 1))
  rm -rf k
  # braces: the shell's own "Killed" notice goes to /dev/null, not the log
  { ATTNSINK_TEST_KILL_AT=$n "$A" train "${RUN[@]}" --out k >kill.out 2>kill.err; } 2>/dev/null
  rc=$?
  [ $rc -eq 0 ] && break # the run got through all its saves: every point was tried
  if [ $rc -ne 137 ]; then
    bad "kill point $n: exit status $rc, expected 137 (SIGKILL)" kill.err
    break
  fi
  if "$A" train --out k --resume >resume.out 2>resume.err; then
    resumed=$((resumed + 1))
  elif grep -q "start it afresh" resume.err; then
    # killed in the first save: the same command starts the run again
    if "$A" train "${RUN[@]}" --out k >again.out 2>again.err; then
      fresh=$((fresh + 1))
    else
      bad "kill point $n: starting afresh after a killed first save" again.err
      continue
    fi
  else
    bad "kill point $n: resume" resume.err
    continue
  fi
  if same k ref >same.err 2>&1; then ok "kill point $n: the finished run is bit-identical to the uninterrupted one"; else
    bad "kill point $n: the finished run differs" same.err
  fi
  tidy k && ok "kill point $n: nothing of the killed save is left" || bad "kill point $n: left: $(ls -A k | tr '\n' ' ')"
  probe_ok=1
  "$A" probe k --text corpus.txt --tokens 16 --samples 2 >/dev/null 2>probe.err || probe_ok=0
  [ $probe_ok -eq 1 ] || bad "kill point $n: attnsink probe DIR" probe.err
done
# 3 saves of at least 4 points each, and the first save's links
[ $n -gt 15 ] && ok "$((n - 1)) kill points tried" || bad "only $((n - 1)) kill points tried"
[ $fresh -gt 0 ] && ok "$fresh kills in the first save were started afresh" || bad "no kill fell in the first save"
[ $resumed -gt 0 ] && ok "$resumed kills were resumed" || bad "no kill was resumed"

# A second start on a directory where a killed first save left its pieces
rm -rf k
{ ATTNSINK_TEST_KILL_AT=3 "$A" train "${RUN[@]}" --out k >/dev/null 2>&1; } 2>/dev/null
"$A" train "${RUN[@]}" --out k >/dev/null 2>again.err && same k ref >same.err 2>&1 && tidy k &&
  ok "a killed first save is cleaned and started afresh" || bad "a killed first save is cleaned and started afresh" again.err

# A run in the flat layout of earlier versions (the files directly in the run
# directory), killed at each point of the save that converts it, resumes alike.
ASINK_TEST_INTERRUPT_AT=3 "$A" train "${RUN[@]}" --out flat_src >/dev/null 2>flat.err || bad "interrupted run" flat.err
mkdir flat && for f in config.json model.safetensors optimizer.safetensors train_state.json metrics.jsonl; do
  cp -L "flat_src/$f" flat/
done
m=0
while :; do
  m=$((m + 1))
  rm -rf k && cp -a flat k
  { ATTNSINK_TEST_KILL_AT=$m "$A" train --out k --resume >kill.out 2>kill.err; } 2>/dev/null
  rc=$?
  [ $rc -eq 0 ] && break
  if [ $rc -ne 137 ]; then
    bad "flat kill point $m: exit status $rc, expected 137" kill.err
    break
  fi
  "$A" train --out k --resume >resume.out 2>resume.err || {
    bad "flat kill point $m: resume" resume.err
    continue
  }
  same k ref >same.err 2>&1 && tidy k && ok "flat kill point $m: converted, bit-identical, tidy" ||
    bad "flat kill point $m: $(ls -A k | tr '\n' ' ')" same.err
done
[ $m -gt 10 ] && ok "$((m - 1)) kill points of the conversion tried" || bad "only $((m - 1)) conversion kill points tried"

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
