#!/usr/bin/env bash
# The study's factors as train flags, `attnsink sweep` and `attnsink study --compare`, at toy
# size: what the windows hold (ATTNSINK_TEST_BATCHES shows every window the model is trained
# and evaluated on), the schedule, the saved settings a resumed run repeats, the sweep's
# skipping and resuming and its outputs, the bad-input contract.
# Usage: test_sweep.sh PATH/TO/attnsink
set -u

A=${1:?usage: test_sweep.sh PATH/TO/attnsink}
TESTS=$(cd "$(dirname "$0")" && pwd)
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh"

check() {
  local name=$1
  shift
  if "$@" >"$W/check.out" 2>&1; then ok "$name"; else bad "$name" "$W/check.out"; fi
}

# expect_input_error NAME PATH COMMAND...: exit 2, one line on stderr naming the problem,
# and PATH (if given) not created
expect_input_error() {
  local name=$1 path=$2
  shift 2
  "$@" >err.out 2>err.err
  local rc=$?
  if [ $rc -ne 2 ]; then bad "$name: exit 2 (got $rc)" err.err
  elif [ "$(wc -l <err.err)" -ne 1 ]; then bad "$name: one error line" err.err
  elif [ -n "$path" ] && [ -e "$path" ]; then bad "$name: left $path behind"
  else ok "$name"; fi
}

TOY=(--corpus corpus.txt --layers 1 --dim 16 --heads 2 --context 16 --batch 4)

# train_with NAME FLAGS...: a 4-step run in NAME, its windows in NAME.batches
train_with() {
  local name=$1
  shift
  ATTNSINK_TEST_BATCHES=$name.batches "$A" train "${TOY[@]}" --steps 4 --eval-every 2 --out "$name" "$@" \
    >"$name.out" 2>"$name.err"
}

# ---------------------------------------------------------------- the windows
train_with plain && ok "train: plain run" || bad "train: plain run" plain.err
train_with fixed --first-token fixed:256@3 && ok "train --first-token fixed:256@3" || bad "train --first-token fixed" fixed.err
check "fixed:256@3: id 256 at position 3 of every window, BOS at 1, the text moved on, its prediction ignored" "$PY" -c '
import json
plain = [json.loads(l) for l in open("plain.batches")]
fixed = [json.loads(l) for l in open("fixed.batches")]
assert [b["what"] for b in fixed] == ["validation"] + ["training"] * 4, [b["what"] for b in fixed]
for p, f in zip(plain, fixed):
    for pt, pg, ft, fg in zip(p["tokens"], p["targets"], f["tokens"], f["targets"]):
        assert ft[0] == 256 and ft[2] == 256 and 256 not in ft[3:], ft
        # the same window (same data order), with the fixed token inserted at index 2
        assert ft[:2] == pt[:2] and ft[3:] == pt[2:15], (pt, ft)
        assert fg[1] == -1 and fg[0] == pg[0] and fg[2:] == pg[1:15], (pg, fg)
'
train_with nobos --no-bos --first-token fixed:10@1 && ok "train --no-bos --first-token fixed:10@1" || bad "fixed:10@1" nobos.err
check "fixed:10@1 without BOS: id 10 first in every window, the first byte becomes its target" "$PY" -c '
import json
for b in map(json.loads, open("nobos.batches")):
    for t, g in zip(b["tokens"], b["targets"]):
        assert t[0] == 10 and g[0] == t[1] and -1 not in g, (t, g)
'
train_with bosfixed --no-bos --first-token fixed:256@2 && ok "train --no-bos --first-token fixed:256@2" ||
  bad "train --no-bos --first-token fixed:256@2" bosfixed.err
check "fixed:256@2 without BOS: the vocabulary keeps id 256, no BOS named, 256 only at position 2" "$PY" -c '
import json
cfg = json.load(open("bosfixed/config.json"))
assert cfg["vocab_size"] == 257 and cfg["attnsink"]["bos"] is None, cfg
for b in map(json.loads, open("bosfixed.batches")):
    for t in b["tokens"]:
        assert t[1] == 256 and t[0] != 256 and 256 not in t[2:], t
'
train_with random --first-token random && ok "train --first-token random" || bad "train --first-token random" random.err
check "random: the first token of each window a random byte, the rest the same windows" "$PY" -c '
import json
plain = [json.loads(l) for l in open("plain.batches")]
rnd = [json.loads(l) for l in open("random.batches")]
firsts = []
for p, r in zip(plain, rnd):
    for pt, rt, pg, rg in zip(p["tokens"], r["tokens"], p["targets"], r["targets"]):
        assert rt[1:] == pt[1:] and rg == pg and 0 <= rt[0] < 256, (pt, rt)
        firsts.append(rt[0])
assert len(set(firsts)) > len(firsts) // 2, firsts
'
train_with prefix --prefix 5 && ok "train --prefix 5" || bad "train --prefix 5" prefix.err
train_with prefix_spec --attn softmax,prefix=5 && ok "train --attn softmax,prefix=5 (prefix derived)" ||
  bad "train --attn softmax,prefix=5" prefix_spec.err
check "prefix 5: the mask in the config, no target a query of the prefix can see, derived alike from --attn" "$PY" -c '
import json
P = 5
for run in ("prefix", "prefix_spec"):
    cfg = json.load(open(run + "/config.json"))
    assert cfg["attnsink"]["attn"] == "softmax,prefix=5", cfg["attnsink"]
    assert json.load(open(run + "/train_state.json"))["args"]["prefix"] == P
    for b in map(json.loads, open(run + ".batches")):
        for t, g in zip(b["tokens"], b["targets"]):
            # query i < P sees keys 0..P-1: its target (the token at i + 1) must not be among them
            for i, y in enumerate(g):
                assert y == -1 if i + 1 <= P - 1 else y >= 0, (i, g)
assert open("prefix.batches").read() == open("prefix_spec.batches").read()
'
check "prefix 5: a different loss than the same windows without the prefix" "$PY" -c '
import json
a = [json.loads(l) for l in open("plain/metrics.jsonl")]
b = [json.loads(l) for l in open("prefix/metrics.jsonl")]
assert a[0]["val_loss"] != b[0]["val_loss"], (a, b)
'
NTRAIN=$(( $(stat -c %s corpus.txt) * 95 / 100 ))
train_with bytes --train-bytes 3000 && ok "train --train-bytes 3000" || bad "train --train-bytes 3000" bytes.err
check "--train-bytes 3000: every training window from the first 3000 bytes, the same validation windows" "$PY" -c '
import json
text = open("corpus.txt", "rb").read()
head = text[:3000]
plain = [json.loads(l) for l in open("plain.batches")]
few = [json.loads(l) for l in open("bytes.batches")]
assert few[0]["what"] == "validation" and few[0] == plain[0]
for b in few[1:]:
    for t, g in zip(b["tokens"], b["targets"]):
        assert bytes(t[1:] + g[-1:]) in head, t
outside = sum(bytes(t[1:] + g[-1:]) not in head for b in plain[1:] for t, g in zip(b["tokens"], b["targets"]))
assert outside > 0  # the whole training part reaches past the first 3000 bytes
'
expect_input_error "train: --train-bytes past the training part" e1 "$A" train "${TOY[@]}" --out e1 --train-bytes $((NTRAIN + 1))
expect_input_error "train: --train-bytes under one window" e1 "$A" train "${TOY[@]}" --out e1 --train-bytes 8

# ---------------------------------------------------------------- schedule, kernel, sink token
train_with cosine --schedule cosine --min-lr 0.0001 --warmup 1 --lr 0.002 && ok "train --schedule cosine" ||
  bad "train --schedule cosine" cosine.err
check "cosine: lr decays and reaches its floor at the last step; constant stays at lr" "$PY" -c '
import json
c = [json.loads(l)["lr"] for l in open("cosine/metrics.jsonl")]
assert 0.0001 < c[0] < 0.002 and abs(c[1] - 0.0001) < 1e-9, c
p = [json.loads(l)["lr"] for l in open("plain/metrics.jsonl")]
assert all(abs(x - 0.003 * (s + 1) / 100) < 1e-9 for x, s in zip(p, (2, 4))), p  # still in its 100-step warm-up
'
"$A" train --out cosine --resume --steps 6 >cosine2.out 2>cosine2.err
check "cosine: a resumed run past --decay-steps stays at the floor" "$PY" -c '
import json
c = [json.loads(l)["lr"] for l in open("cosine/metrics.jsonl")]
assert len(c) == 3 and abs(c[2] - 0.0001) < 1e-9, c
assert json.load(open("cosine/train_state.json"))["args"]["decay_steps"] == 4
'
train_with mlp --attn linear --kernel mlp && ok "train --attn linear --kernel mlp" || bad "train --kernel mlp" mlp.err
train_with sinktok --sink-token && ok "train --sink-token" || bad "train --sink-token" sinktok.err
check "kernel and sink token reach the config and the saved settings" "$PY" -c '
import json
assert json.load(open("mlp/config.json"))["attnsink"]["kernel"] == "mlp"
assert json.load(open("sinktok/config.json"))["attnsink"]["sink_token"] is True
assert json.load(open("mlp/train_state.json"))["args"]["kernel"] == "mlp"
assert json.load(open("sinktok/train_state.json"))["args"]["sink_token"] is True
'

# ---------------------------------------------------------------- --resume repeats every flag
FACTORS=(--prefix 4 --first-token random --schedule cosine --min-lr 0.0005 --warmup 1 --train-bytes 5000 --sink-token)
"$A" train "${TOY[@]}" "${FACTORS[@]}" --steps 6 --eval-every 2 --out whole >/dev/null 2>whole.err
ASINK_TEST_INTERRUPT_AT=3 "$A" train "${TOY[@]}" "${FACTORS[@]}" --steps 6 --eval-every 2 --out cut >/dev/null 2>cut.err
"$A" train --out cut --resume >/dev/null 2>cut2.err
cmp -s whole/model.safetensors cut/model.safetensors && cmp -s whole/optimizer.safetensors cut/optimizer.safetensors &&
  ok "--resume repeats every factor: bit-identical to the uninterrupted run" ||
  bad "--resume repeats every factor" cut2.err
for flag in "--prefix 3" "--first-token text" "--schedule constant" "--train-bytes 4000" "--min-lr 0.001"; do
  # shellcheck disable=SC2086
  expect_input_error "train --resume refuses a changed $flag" "" "$A" train --out cut --resume $flag
done
check "train_state.json: a bad saved factor is refused, naming its key" bash -c '
cp -a cut edited && "$0" -c "
import json, os
p = os.path.realpath(\"edited/train_state.json\")
s = json.load(open(p)); s[\"args\"][\"schedule\"] = \"wavy\"; json.dump(s, open(p, \"w\"))
" && { "'"$A"'" train --out edited --resume --steps 8 2>e.err; test $? -eq 2 && grep -q schedule e.err; }' "$PY"

expect_input_error "train: --first-token fixed at BOS's place" e1 "$A" train "${TOY[@]}" --out e1 --first-token fixed:3@1
expect_input_error "train: --first-token fixed id past the vocabulary" e1 "$A" train "${TOY[@]}" --out e1 --first-token fixed:257@2
expect_input_error "train: --first-token fixed past the context" e1 "$A" train "${TOY[@]}" --out e1 --first-token fixed:5@17
expect_input_error "train: --first-token nonsense" e1 "$A" train "${TOY[@]}" --out e1 --first-token sometimes
expect_input_error "train: --prefix against prefix= in --attn" e1 "$A" train "${TOY[@]}" --out e1 --attn softmax,prefix=4 --prefix 3
expect_input_error "train: --prefix past the context" e1 "$A" train "${TOY[@]}" --out e1 --prefix 17
expect_input_error "train: --kernel mlp without linear attention" e1 "$A" train "${TOY[@]}" --out e1 --kernel mlp
expect_input_error "train: --kernel unknown" e1 "$A" train "${TOY[@]}" --out e1 --kernel rbf
expect_input_error "train: --schedule cosine no longer than the warm-up" e1 "$A" train "${TOY[@]}" --out e1 --schedule cosine --steps 50

# ---------------------------------------------------------------- sweep
cat >plan.json <<'EOF'
{"title": "toy sweep",
 "settings": {"corpus": "corpus.txt", "layers": 1, "dim": 16, "heads": 2, "context": 16, "batch": 4,
              "steps": 4, "eval_every": 2},
 "seeds": [0, 1],
 "runs": [{"name": "softmax", "study": 18.18},
          {"name": "k* zero value", "attn": "softmax,kbias=head"},
          {"name": "fixed at 3", "first_token": "fixed:256@3", "lr": 0.001}]}
EOF
"$A" sweep plan.json --out sw --jobs 2 >sweep1.out 2>sweep1.err
rc=$?
[ $rc -eq 0 ] && ok "sweep exits 0" || bad "sweep exits 0 (rc=$rc)" sweep1.err
for f in results.json results.md sink1.svg loss.svg softmax_seed_0/model.safetensors k_zero_value_seed_1/probe.json \
  fixed_at_3_seed_1/metrics.jsonl; do
  [ -s "sw/$f" ] && ok "sweep writes $f" || bad "sweep writes $f"
done
check "sweep results.json: every run with its settings, the seeds grouped" "$PY" -c '
import json
d = json.load(open("sw/results.json"))
assert list(d) == ["plan", "title", "runs", "groups"], list(d)
names = [r["name"] for r in d["runs"]]
assert names == ["softmax, seed 0", "softmax, seed 1", "k* zero value, seed 0", "k* zero value, seed 1",
                 "fixed at 3, seed 0", "fixed at 3, seed 1"], names
for r in d["runs"]:
    assert r["steps"] == 4 and r["tokens"] == 4 * 4 * 16 and len(r["alpha0"]) == 1, r
    assert 0 <= r["sink1"] <= 100 and r["val_loss"] > 0, r
assert [r["settings"]["seed"] for r in d["runs"]] == ["0", "1"] * 3
assert d["runs"][4]["settings"]["lr"] == 0.001 and d["runs"][4]["settings"]["first_token"] == "fixed:256@3"
assert d["runs"][0]["study"] == 18.18 and d["runs"][2]["study"] is None
assert d["runs"][0]["other_sink_name"] is None
assert d["runs"][2]["other_sink_name"] == "Sink_*" and d["runs"][4]["other_sink_name"] == "Sink_3"
assert [g["group"] for g in d["groups"]] == ["softmax", "k* zero value", "fixed at 3"]
g = d["groups"][0]
s = [r["sink1"] for r in d["runs"][:2]]
assert g["runs"] == 2 and abs(g["sink1_mean"] - sum(s) / 2) < 1e-6 and g["sink1_min"] == min(s), g
'
check "sweep results.md: one row per run, one per group, links its plots" "$PY" -c '
t = open("sw/results.md").read()
rows = [l for l in t.splitlines() if l.startswith("| ")]
assert sum(l.startswith("| softmax, seed") for l in rows) == 2, rows
assert any(l.startswith("| softmax | 2 |") for l in rows), rows
assert "Sink_* " in t and "Sink_3 " in t and "(sink1.svg)" in t and "(loss.svg)" in t
'
check "sweep plots: one curve per run, each its own colour, legends under the chart" "$PY" -c '
import sys
sys.path.insert(0, "'"$TESTS"'/python")
import xml.etree.ElementTree as ET
from check_study_plots import frame_bottom, legend
for f in ("sink1", "loss"):
    root = ET.parse("sw/%s.svg" % f).getroot()
    lg = legend(root)
    assert len(lg) == 6, lg
    assert len({c for c, _ in lg.values()}) == 6, lg
    assert all(y > frame_bottom(root) for _, y in lg.values()), lg
'
cp sw/softmax_seed_0/metrics.jsonl before.jsonl
"$A" sweep plan.json --out sw >sweep2.out 2>sweep2.err
[ $? -eq 0 ] && [ "$(grep -c 'finished before' sweep2.out)" -eq 6 ] && ! grep -q "training in" sweep2.out &&
  cmp -s before.jsonl sw/softmax_seed_0/metrics.jsonl && ok "sweep again: every finished run skipped" ||
  bad "sweep again: every finished run skipped" sweep2.out
# --report: the results of the finished runs now, a run still to train named and left untrained
"$PY" -c '
import json
p = json.load(open("plan.json"))
p["runs"].insert(1, {"name": "later", "attn": "sigmoid"})
json.dump(p, open("plan_more.json", "w"))
'
cp -a sw swr && rm -f swr/results.* swr/*.svg
"$A" sweep plan_more.json --out swr --report >rep.out 2>rep.err
[ $? -eq 0 ] && [ ! -e swr/later_seed_0 ] && ! grep -q "training in" rep.out && ok "sweep --report trains nothing" ||
  bad "sweep --report trains nothing" rep.err
check "sweep --report: the finished runs' table, the others named" "$PY" -c '
import json
d = json.load(open("swr/results.json")); e = json.load(open("sw/results.json"))
assert d["pending"] == ["later, seed 0", "later, seed 1"], d.get("pending")
assert [r["name"] for r in d["runs"]] == [r["name"] for r in e["runs"]]
assert [r["sink1"] for r in d["runs"]] == [r["sink1"] for r in e["runs"]]
t = open("swr/results.md").read()
assert "not finished yet, left out of this table: later, seed 0, later, seed 1." in t, t
assert "--report" in t
'
"$PY" -c '
import json
json.dump({"settings": {"corpus": "corpus.txt", "steps": 2}, "runs": [{"name": "x"}]}, open("none.json", "w"))'
expect_input_error "sweep --report with no run finished" swn "$A" sweep none.json --out swn --report
"$A" train "${TOY[@]}" --steps 4 --eval-every 2 --threads 1 --seed 1 --first-token fixed:256@3 --lr 0.001 --out alone \
  >/dev/null 2>&1
cmp -s alone/model.safetensors sw/fixed_at_3_seed_1/model.safetensors &&
  ok "a sweep run is the train run of its settings, bit for bit" || bad "a sweep run is the train run of its settings"
# a sweep stopped midway (each run interrupted at step 2) writes no results; the same command continues
ASINK_TEST_INTERRUPT_AT=2 "$A" sweep plan.json --out sw2 --jobs 2 >sweep3.out 2>sweep3.err
rc=$?
[ $rc -eq 0 ] && [ ! -e sw2/results.json ] && ok "sweep stopped midway: status 0, no results yet" ||
  bad "sweep stopped midway (rc=$rc)" sweep3.err
"$A" sweep plan.json --out sw2 --jobs 2 >sweep4.out 2>sweep4.err
[ $? -eq 0 ] && [ "$(grep -c 'resuming in' sweep4.out)" -eq 6 ] && [ -s sw2/results.json ] &&
  cmp -s sw/k_zero_value_seed_1/model.safetensors sw2/k_zero_value_seed_1/model.safetensors &&
  ok "sweep continued: every run resumed, the same weights as the sweep that never stopped" ||
  bad "sweep continued" sweep4.out

# stop_parent NAME OUT COMMAND...: runs COMMAND in the background (its output in OUT), waits
# until each of its two runs has trained past step 1 (NAME_RUNS: their directories), then
# sends SIGINT to the parent process alone (as `kill -INT PID` does, not a terminal's Ctrl-C)
# and waits up to 60 s for it to end. Sets rc (124: it did not end).
stop_parent() {
  local out=$1 dirs=$2
  shift 2
  setsid "$@" >"$out" 2>&1 & # its own process group: the runs can be killed with it
  local pid=$! t=0 d n
  while [ $t -lt 600 ]; do
    n=0
    for d in $dirs; do grep -q '"step"' "$d/metrics.jsonl" 2>/dev/null && n=$((n + 1)); done
    [ $n -eq 2 ] && break
    sleep 0.1
    t=$((t + 1))
  done
  kill -INT $pid
  t=0
  while kill -0 $pid 2>/dev/null && [ $t -lt 600 ]; do sleep 0.1; t=$((t + 1)); done
  if kill -0 $pid 2>/dev/null; then
    kill -KILL -- -$pid
    rc=124
  else
    wait $pid
    rc=$?
  fi
}
# each run stopped and saved: a checkpoint before the last step
stopped_midway() {
  "$PY" -c '
import json, sys
for d in sys.argv[1:]:
    s = json.load(open(d + "/train_state.json"))
    assert 0 < s["step"] < 100000, (d, s["step"])
' "$@"
}
printf '{"settings": {"corpus": "corpus.txt", "layers": 1, "dim": 16, "heads": 2, "context": 16, "batch": 4,
 "steps": 100000, "eval_every": 1},
 "runs": [{"name": "a"}, {"name": "b", "attn": "sigmoid"}]}' >p_long.json
stop_parent stop_sweep.out "sw_stop/a sw_stop/b" "$A" sweep p_long.json --out sw_stop --jobs 2
[ $rc -eq 0 ] && grep -q "sweep interrupted" stop_sweep.out && stopped_midway sw_stop/a sw_stop/b &&
  ok "sweep: SIGINT to the sweep alone stops its runs, each saved" ||
  bad "sweep: SIGINT to the sweep alone stops its runs (rc=$rc)" stop_sweep.out
stop_parent stop_study.out "st_stop/softmax st_stop/sigmoid" "$A" study "${TOY[@]}" --steps 100000 --eval-every 1 \
  --minutes 30 --out st_stop
[ $rc -ne 124 ] && stopped_midway st_stop/softmax st_stop/sigmoid &&
  ok "study: SIGINT to the study alone stops its runs, each saved" ||
  bad "study: SIGINT to the study alone stops its runs (rc=$rc)" stop_study.out

# a sink token is position 0 of the probe: Sink_* is its Sink, Sink_1 the first text token's
printf '{"settings": {"corpus": "corpus.txt", "layers": 1, "dim": 16, "heads": 2, "context": 16, "batch": 4, "steps": 2},
 "runs": [{"name": "token", "sink_token": true}]}' >p_tok.json
"$A" sweep p_tok.json >tok.out 2>tok.err
check "sweep of a sink-token run: Sink_* the token's, Sink_1 the first text token's" "$PY" -c '
import json
r = json.load(open("p_tok/results.json"))["runs"][0]
p = json.load(open("p_tok/token/probe.json"))
assert r["other_sink_name"] == "Sink_*" and r["other_sink"] == p["sink"][0] and r["sink1"] == p["sink"][1], (r, p["sink"][:2])
'
# a run that fails does not stop the others; no results then, status 1
ATTNSINK_TEST_NAN_AT=1 "$A" sweep plan.json --out sw_nan --jobs 2 >nan.out 2>nan.err
rc=$?
[ $rc -eq 1 ] && [ "$(grep -c ' training in ' nan.out)" -eq 6 ] && [ "$(grep -c 'failed (status 1)' nan.err)" -eq 6 ] &&
  [ ! -e sw_nan/results.json ] && ok "sweep: failing runs, every run tried, status 1, no results" ||
  bad "sweep: failing runs (rc=$rc)" nan.err

printf '{"runs": [{"name": "a"}], "seedz": [1]}' >p_key.json
expect_input_error "sweep: unknown plan key" p_key "$A" sweep p_key.json
printf '{"settings": {"corpus": "corpus.txt"}, "runs": [{"name": "a", "lr": "fast"}]}' >p_lr.json
expect_input_error "sweep: a bad setting, named" p_lr "$A" sweep p_lr.json
grep -q 'runs\[0\].lr' err.err && ok "sweep: the message names runs[0].lr" || bad "sweep: the message names runs[0].lr" err.err
printf '{"settings": {"corpus": "corpus.txt"}, "runs": [{"name": "a b"}, {"name": "a+b"}, {"name": "a/b"}]}' >p_dup.json
expect_input_error "sweep: two runs in one directory" p_dup "$A" sweep p_dup.json
printf '{"settings": {"corpus": "corpus.txt", "threads": 2}, "runs": [{"name": "a"}]}' >p_thr.json
expect_input_error "sweep: threads is no run setting" p_thr "$A" sweep p_thr.json
printf '{"settings": {"corpus": "corpus.txt", "context": 16}, "runs": [{"name": "a", "attn": "softmax,window=0"}]}' >p_spec.json
expect_input_error "sweep: a bad spec, before anything is written" p_spec "$A" sweep p_spec.json
printf '{"runs": [' >p_json.json
expect_input_error "sweep: not JSON" p_json "$A" sweep p_json.json
expect_input_error "sweep: no plan" "" "$A" sweep --jobs 2

# every plan of examples/plans checks out (settings, specs, corpus sizes) on a 2 MB corpus
for i in $(seq 60); do cat corpus.txt; done >big.txt
for p in "$TESTS"/../examples/plans/*.json; do
  "$A" sweep "$p" --corpus big.txt --out dry --dry-run >dry.out 2>&1 && [ ! -e dry ] &&
    [ "$(grep -c ' to train$' dry.out)" -ge 2 ] && ok "sweep --dry-run $(basename "$p")" ||
    bad "sweep --dry-run $(basename "$p")" dry.out
done

# ---------------------------------------------------------------- study --compare
"$A" study "${TOY[@]}" --steps 4 --eval-every 2 --minutes 2 --out cmp --json cmp.json \
  --compare "softmax; softmax,kbias=head; softmax --wd 0.5; linear --kernel mlp" >cmp.out 2>cmp.err
rc=$?
[ $rc -eq 0 ] && ok "study --compare exits 0" || bad "study --compare exits 0 (rc=$rc)" cmp.err
check "study --compare: four runs, equal steps, the same data order, the report and plots" "$PY" -c '
import json, os
d = json.load(open("cmp.json"))
r = d["runs"]
assert [x["name"] for x in r] == ["softmax", "softmax,kbias=head", "softmax --wd 0.5", "linear --kernel mlp"], r
assert len({x["steps"] for x in r}) == 1 and r[0]["steps"] == 4, r
dirs = [os.path.join("cmp", x["dir"]) for x in r]
args = [json.load(open(os.path.join(p, "train_state.json")))["args"] for p in dirs]
assert args[2]["wd"] == 0.5 and args[0]["wd"] == 1.0 and args[3]["kernel"] == "mlp", args
# same seed, so the same batches: the runs differ only in what their flags say
assert len({a["seed"] for a in args}) == 1
rep = open("cmp/report.md").read()
for x in r:
    assert x["name"] in rep, x
for f in ("sink1.svg", "loss.svg"):
    assert os.path.getsize(os.path.join("cmp", f)) > 0
'
expect_input_error "study --compare: a flag that is the whole study's" cmp_e "$A" study "${TOY[@]}" --out cmp_e \
  --compare "softmax; sigmoid --steps 3"
expect_input_error "study --compare: an empty run" cmp_e "$A" study "${TOY[@]}" --out cmp_e --compare "softmax;;sigmoid"
expect_input_error "study --compare: a bad spec" cmp_e "$A" study "${TOY[@]}" --out cmp_e --compare "softmax; sigmoid,norm=max"
expect_input_error "study --compare: the same run twice" cmp_e "$A" study "${TOY[@]}" --out cmp_e --compare "softmax; softmax"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
