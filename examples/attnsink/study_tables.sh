#!/usr/bin/env bash
# The study's attention-operation and key/value-bias tables at CPU scale (docs/results.md).
#
#   examples/attnsink/study_tables.sh [BUILD] [OUT]
#
# Trains one small model per row with the `attnsink` program, all with the same settings,
# seed and data order (so rows differ only in what the row names), two rows at a time on
# one thread each, then probes every checkpoint and writes OUT/tables.md (and
# OUT/tables.jsonl). Environment: STEPS (per row, default 3000), CORPUS (default the KJV
# text in BUILD/corpus), EXTRA (more train flags for every row), JOBS (rows at once, 2).
set -euo pipefail

BUILD=${1:-build}
OUT=${2:-results}
STEPS=${STEPS:-3000}
JOBS=${JOBS:-2}
CORPUS=${CORPUS:-$BUILD/corpus/kjv.txt}
EXTRA=${EXTRA:-}
PROG=$BUILD/examples/attnsink/attnsink
[[ -x $PROG ]] || { echo "study_tables: $PROG is not built" >&2; exit 2; }
[[ -f $CORPUS ]] || { echo "study_tables: corpus $CORPUS is missing (make corpus)" >&2; exit 2; }
mkdir -p "$OUT"

# name | attention spec | extra flags | the paper's Sink_1 (%) | the paper's Sink_* (%) | the paper's loss
# (the paper's 60M model, as docs/study.md lists them)
rows=(
  "softmax|softmax||18.18||3.73"
  "sigmoid, no norm|sigmoid||0.44*||3.70"
  "sigmoid, sum-norm|sigmoid,norm=sum||30.24||3.74"
  "elu+1, no norm|elu||0.80*||3.69"
  "k* and v* (per head)|softmax,kbias=head,vbias=head||0.04|72.76|3.72"
  "k*, zero value (per head)|softmax,kbias=head||0.00|73.34|3.72"
  "v* only (per head)|softmax,vbias=head||17.53||3.73"
  "learnable sink logit|softmax,sink=head||—||—"
  "softmax1 (sink=zero)|softmax,sink=zero||—||—"
  "window 8|softmax,window=8||—||—"
  "window 64|softmax,window=64||—||—"
  "weight decay 0|softmax|--wd 0|15.20||3.72"
  "weight decay 0.5|softmax|--wd 0.5|41.08||—"
)

slug() { echo "$1" | tr -c 'A-Za-z0-9\n' '_' ; }

train_row() {
  IFS='|' read -r name spec flags _ _ _ <<<"$1"
  local dir="$OUT/$(slug "$name")"
  if [[ -f $dir/train_state.json ]] && grep -q "\"steps\": $STEPS\b" "$dir/train_state.json" 2>/dev/null; then
    return 0
  fi
  rm -rf "$dir"
  # shellcheck disable=SC2086
  "$PROG" train --corpus "$CORPUS" --out "$dir" --attn "$spec" --threads 1 --steps "$STEPS" \
    --eval-every "$STEPS" $flags $EXTRA > "$dir.log" 2>&1
}
export -f train_row slug
export OUT STEPS CORPUS EXTRA PROG

printf '%s\n' "${rows[@]}" | xargs -P "$JOBS" -I{} bash -c 'train_row "$@"' _ {}

# The probe text: the validation part of the corpus (the last 5%, as the program splits it).
size=$(stat -c %s "$CORPUS")
split=$(( size * 95 / 100 ))
tail -c $(( size - split )) "$CORPUS" > "$OUT/validation.txt"

: > "$OUT/tables.jsonl"
for row in "${rows[@]}"; do
  IFS='|' read -r name spec flags p1 pstar ploss <<<"$row"
  dir="$OUT/$(slug "$name")"
  "$PROG" probe "$dir" --text "$OUT/validation.txt" --json "$dir/probe.json" > /dev/null
  python3 - "$name" "$spec" "$flags" "$p1" "$pstar" "$ploss" "$dir" >> "$OUT/tables.jsonl" <<'PY'
import json, sys
name, spec, flags, p1, pstar, ploss, d = sys.argv[1:]
probe = json.load(open(d + "/probe.json"))
last = [json.loads(l) for l in open(d + "/metrics.jsonl")][-1]
sink, T = probe["sink"], probe["tokens"]
virtual = len(sink) > T
imp = probe["importance"]
alpha0 = [sum(h[1 if virtual else 0] for h in layer) / len(layer) for layer in imp]
print(json.dumps({"name": name, "spec": spec, "flags": flags, "steps": last["step"],
                  "tokens": last["tokens"], "val_loss": last["val_loss"],
                  "sink1": sink[1] if virtual else sink[0], "sink_virtual": sink[0] if virtual else None,
                  "alpha0": alpha0, "paper_sink1": p1, "paper_sink_virtual": pstar, "paper_loss": ploss}))
PY
done

python3 - "$OUT" "$STEPS" "$EXTRA" <<'PY' > "$OUT/tables.md"
import json, sys
out, steps, extra = sys.argv[1:]
rows = [json.loads(l) for l in open(out + "/tables.jsonl")]
print("| row | spec / flags | Sink_1 paper | Sink_1 here | Sink_* paper | Sink_* here | loss paper | val loss here | α of position 0 by layer |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    sv = "—" if r["sink_virtual"] is None else "%.2f" % r["sink_virtual"]
    a0 = " ".join("%.3f" % a for a in r["alpha0"])
    print("| %s | `%s` %s | %s | %.2f | %s | %s | %s | %.3f | %s |" % (
        r["name"], r["spec"], r["flags"], r["paper_sink1"], r["sink1"], r["paper_sink_virtual"] or "—", sv,
        r["paper_loss"], r["val_loss"], a0))
print()
print("Each row: `attnsink train --attn SPEC --threads 1 --steps %s --eval-every %s%s`, then `attnsink probe DIR --text validation.txt --json`;"
      " %d tokens per row. * = measured on the proxy-normalised map." % (steps, steps, (" " + extra) if extra else "", rows[0]["tokens"]))
PY
cat "$OUT/tables.md"
