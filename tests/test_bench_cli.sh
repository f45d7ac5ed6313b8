#!/usr/bin/env bash
# The bench programs behave like tools: -h / --help prints the usage on stdout and exits 0;
# an unknown option, a stray argument, a missing value, a malformed number or one out of
# range exits 2 with a message on stderr naming it. None of them runs a benchmark: each
# call must be quiet on stderr but for that message, print no JSON, and end within seconds.
#
#   test_bench_cli.sh BENCH_SOURCE_DIR PROGRAM...
#
# Every bench/bench_*.c with a main() must be among the PROGRAMs, so a new program cannot
# slip by. Every numeric option listed in a program's usage (its default is a number or a
# list of numbers) is tried with a malformed value, a negative one and no value.
set -u

src=${1:?usage: test_bench_cli.sh BENCH_SOURCE_DIR PROGRAM...}
shift
fails=0
checks=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { checks=$((checks + 1)); }
bad() {
  checks=$((checks + 1))
  fails=$((fails + 1))
  echo "FAIL: $1"
  [[ -n "${2:-}" ]] && sed 's/^/    /' "$2" | head -20
}

# run PROGRAM ARGS...: the exit status in $rc, stdout and stderr in $tmp/out, $tmp/err.
# A program that starts a benchmark would take seconds at least: 20 s is a generous bound
# for parsing on a busy machine.
run() {
  timeout 20 "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
}

# expect_error PROGRAM WHAT PATTERN ARGS...: exit 2, stderr one line matching PATTERN
# (grep -E), nothing on stdout.
expect_error() {
  local prog=$1 what=$2 pattern=$3 name
  shift 3
  name=$(basename "$prog")
  run "$prog" "$@"
  if [[ $rc -ne 2 ]]; then
    bad "$name $*: $what exits 2 (rc=$rc)" "$tmp/err"
  elif [[ -s "$tmp/out" ]]; then
    bad "$name $*: $what prints nothing on stdout" "$tmp/out"
  elif [[ $(wc -l <"$tmp/err") -ne 1 ]] || ! grep -qE -- "$pattern" "$tmp/err"; then
    bad "$name $*: $what: one line on stderr matching '$pattern'" "$tmp/err"
  else
    ok
  fi
}

# Every program built from a bench_*.c with a main is under test.
for c in "$src"/bench_*.c; do
  grep -q '^int main(' "$c" || continue
  want=$(basename "$c" .c)
  found=0
  for p in "$@"; do [[ $(basename "$p") == "$want" ]] && found=1; done
  if [[ $found == 1 ]]; then ok; else bad "$want (from $c) is not among the programs tested"; fi
done

for prog in "$@"; do
  name=$(basename "$prog")
  for h in --help -h; do
    run "$prog" "$h"
    if [[ $rc -ne 0 ]]; then
      bad "$name $h exits 0 (rc=$rc)" "$tmp/err"
    elif ! head -1 "$tmp/out" | grep -q "^usage: $name \[options\]"; then
      bad "$name $h prints 'usage: $name [options]' first" "$tmp/out"
    elif ! grep -qE -- '^  -h, --help ' "$tmp/out"; then
      bad "$name $h lists -h, --help" "$tmp/out"
    elif [[ -s "$tmp/err" ]] || grep -q '^{' "$tmp/out"; then
      bad "$name $h runs nothing (stderr empty, no JSON)" "$tmp/err"
    else
      ok
    fi
  done
  cp "$tmp/out" "$tmp/usage"
  # --help wins over a bad option given before it
  run "$prog" --no-such-option --help
  if [[ $rc -eq 0 ]] && grep -q "^usage: $name" "$tmp/out"; then ok; else
    bad "$name --no-such-option --help prints the usage and exits 0 (rc=$rc)" "$tmp/err"
  fi

  expect_error "$prog" "an unknown option" "^$name: unknown option --no-such-option " --no-such-option 1
  expect_error "$prog" "an unknown option with =" "^$name: unknown option --no-such-option " --no-such-option=1
  expect_error "$prog" "a stray argument" "^$name: unexpected argument 'stray'" stray

  # the numeric options: usage lines "  --NAME META   help (default 12)" or "(default 1,8)"
  numeric=$(sed -nE 's/^  (--[A-Za-z0-9-]+) [A-Z]+ .*\(default -?[0-9][0-9.,e+-]*\)$/\1/p' "$tmp/usage")
  if [[ -z "$numeric" ]]; then bad "$name: its usage lists numeric options with defaults" "$tmp/usage"; fi
  for opt in $numeric; do
    expect_error "$prog" "a missing value" "^$name: option $opt needs a value" "$opt"
    expect_error "$prog" "a value that is another option" "^$name: option $opt needs a value" "$opt" --help-not
    expect_error "$prog" "a malformed number" "^$name: $opt takes .*number.*'12abc'" "$opt" 12abc
    expect_error "$prog" "a malformed number with =" "^$name: $opt takes .*number.*'x'" "$opt=x"
    expect_error "$prog" "an empty value" "^$name: $opt takes .*number.*''" "$opt="
    expect_error "$prog" "a negative number" "^$name: $opt must be >= [0-9.]+, got -5$" "$opt" -5
    expect_error "$prog" "a number too large" \
      "^$name: $opt(: 99999999999 is out of range| must be <= [0-9.e+]+, got 99999999999)$" "$opt" 99999999999
  done
done

# lists and names are checked before anything runs too
progs=("$@")
# prog NAME: the path of that program among the arguments (empty when absent)
prog() { for p in "${progs[@]}"; do [[ $(basename "$p") == "$1" ]] && echo "$p"; done; }
a=$(prog bench_attention)
if [[ -n "$a" ]]; then
  expect_error "$a" "a malformed list" "^bench_attention: --T takes a comma-separated list of whole numbers, got '' in '256,,1024'" --T 256,,1024
  expect_error "$a" "an unknown attention spec" "^bench_attention: --ops: .*nosuch" --ops softmax,nosuch
  expect_error "$a" "an unknown mode" "^bench_attention: --modes: unknown mode 'bwd' \\(fwd, fwdbwd\\)" --modes fwd,bwd
  expect_error "$a" "an empty mode" "^bench_attention: --modes: unknown mode '' \\(fwd, fwdbwd\\)" --modes fwd,
fi
for n in bench_train bench_decode; do
  t=$(prog $n)
  if [[ -n "$t" ]]; then
    expect_error "$t" "an unknown model" "^$n: unknown model 'nope' in --models" --models tiny,nope
  fi
done
# The model shapes are one table in two languages: bench_common.h (bench_train, bench_decode)
# and torch_train.py (the PyTorch side of every comparison).
c_shapes=$(grep -oE '\{"[a-z0-9]+", *[0-9]+(, *[0-9]+){6}\}' "$src/bench_common.h" | tr -d '{}" ' | sort)
py_shapes=$(grep -oE '^ *"[a-z0-9]+": *\([0-9]+(, *[0-9]+){6}\)' "$src/torch_train.py" |
  sed -E 's/^ *"([a-z0-9]+)": *\(/\1,/; s/[ )]//g' | sort)
if [[ -n "$c_shapes" && "$c_shapes" == "$py_shapes" ]]; then ok
else
  printf 'bench_common.h:\n%s\ntorch_train.py:\n%s\n' "$c_shapes" "$py_shapes" > "$tmp/shapes"
  bad "bench_common.h and torch_train.py list different model shapes" "$tmp/shapes"
fi

k=$(prog bench_kernels)
if [[ -n "$k" ]]; then
  expect_error "$k" "a non-number" "^bench_kernels: --ms takes a number, got 'nan'" --ms nan
fi

echo "$((checks - fails)) of $checks checks passed"
[[ $fails -eq 0 ]]
