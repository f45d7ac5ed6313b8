#!/usr/bin/env bash
# The attnsink program end to end at toy size: train, probe, study, resume after
# an interrupt, generate and stream with key/value caches, and the bad-input contract
# (exit 2, one line on stderr, nothing left behind). Usage: test_cli.sh PATH/TO/attnsink
set -u

A=${1:?usage: test_cli.sh PATH/TO/attnsink}
TESTS=$(cd "$(dirname "$0")" && pwd) # this directory, before cli_common.sh moves into a scratch one
. "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh"

head -c 300 corpus.txt >short.txt

TOY=(--corpus corpus.txt --layers 1 --dim 16 --heads 2 --context 16 --batch 4)

# ---------------------------------------------------------------- train
"$A" train "${TOY[@]}" --steps 6 --eval-every 3 --out run >train.out 2>train.err
rc=$?
if [ $rc -eq 0 ]; then ok "train exits 0"; else bad "train exits 0 (rc=$rc)" train.err; fi
for f in config.json model.safetensors optimizer.safetensors train_state.json metrics.jsonl; do
  [ -s "run/$f" ] && ok "train writes $f" || bad "train writes $f"
done
check "metrics.jsonl: 2 lines with exactly the documented keys" "$PY" -c '
import json, sys
lines = open("run/metrics.jsonl").read().splitlines()
assert len(lines) == 2, lines
keys = ["step", "tokens", "train_loss", "val_loss", "sink1", "seconds", "lr"]
for l, step in zip(lines, (3, 6)):
    d = json.loads(l)
    assert list(d) == keys, list(d)
    assert d["step"] == step and d["tokens"] == step * 4 * 16, d
    assert all(isinstance(d[k], (int, float)) for k in keys), d
    assert 0 <= d["sink1"] <= 100 and d["val_loss"] > 0, d
'

# ---------------------------------------------------------------- probe
"$A" probe run --text corpus.txt --tokens 16 --samples 10 --json probe.json --plot probe.svg >probe.out 2>probe.err
rc=$?
if [ $rc -eq 0 ]; then ok "probe loads the checkpoint and exits 0"; else bad "probe exits 0 (rc=$rc)" probe.err; fi
grep -q "alpha of the first token" probe.out && ok "probe prints the alpha table" || bad "probe prints the alpha table" probe.out
grep -q "Sink_k" probe.out && ok "probe prints the Sink_k row" || bad "probe prints the Sink_k row" probe.out
check "probe --json: exactly the documented keys and shapes" "$PY" -c '
import json
d = json.load(open("probe.json"))
assert list(d) == ["tokens", "samples", "eps", "sink", "importance", "hidden_norm", "key_norm", "value_norm",
                   "qk_cosine", "qk_norm", "entropy", "window_alpha", "window_sink", "window_uniform",
                   "first_alpha_bound"], list(d)
T, N, L, H = 16, 10, 1, 2
assert d["tokens"] == T and d["samples"] == N and abs(d["eps"] - 0.3) < 1e-9, d
def shape(x):
    s = []
    while isinstance(x, list):
        s.append(len(x)); x = x[0]
    return s
assert shape(d["sink"]) == [T], shape(d["sink"])
assert shape(d["importance"]) == [L, H, T], shape(d["importance"])
assert shape(d["hidden_norm"]) == [L + 1, T] and shape(d["key_norm"]) == [L, T] and shape(d["value_norm"]) == [L, T]
# the first token of a causal map is seen by every query: its alpha is a mean in [0, 1]
assert all(0 <= h[0] <= 1 for l in d["importance"] for h in l)
assert shape(d["qk_cosine"]) == [L, H, T] and shape(d["qk_norm"]) == [L, H, T] and shape(d["entropy"]) == [L, H]
assert all(-1 - 1e-6 <= c <= 1 + 1e-6 for l in d["qk_cosine"] for h in l for c in h)
# cos(q_t, k_1) |q_t| |k_1| is the raw score of the first key: the norm product bounds it
assert all(n >= 0 for l in d["qk_norm"] for h in l for n in h)
assert all(0 < e <= __import__("math").log(T) for l in d["entropy"] for e in l)
# without a window every query sees the first token first: the window statistic is its alpha
assert shape(d["window_alpha"]) == [L, H] and d["first_alpha_bound"] == 1
assert all(abs(d["window_alpha"][l][h] - d["importance"][l][h][0]) < 1e-5 for l in range(L) for h in range(H))
assert abs(d["window_sink"] - d["sink"][0]) < 1e-4
'
# the same probe on the weight matrices kept in bf16: the statistics move by the rounding only
"$A" probe run --text corpus.txt --tokens 16 --samples 10 --weights bf16 --json probe16.json >probe16.out 2>probe16.err &&
  "$PY" -c '
import json
a, b = json.load(open("probe.json")), json.load(open("probe16.json"))
d = max(abs(x - y) for la, lb in zip(a["importance"], b["importance"]) for ha, hb in zip(la, lb) for x, y in zip(ha, hb))
assert 0 < d < 0.05, d' && ok "probe --weights bf16 gives the fp32 probe's importance within 0.05" ||
  bad "probe --weights bf16" probe16.out probe16.err
"$A" probe run --text corpus.txt --weights fp16 >/dev/null 2>w16.err; rc=$?
[ $rc -eq 2 ] && grep -q "fp16" w16.err && ok "probe --weights fp16 is refused, naming the value" ||
  bad "probe --weights fp16 refused (rc=$rc)" w16.err
# the same weights under window=4: the first token is seen by 4 of 16 queries, so Sink_1 is 0
# by construction and the probe says so; the window statistic reads the first key each query sees
mkdir win4 && cp run/model.safetensors win4/ && "$PY" -c '
import json
c = json.load(open("run/config.json")); c["attnsink"]["attn"] = "softmax,window=4"
json.dump(c, open("win4/config.json", "w"))'
"$A" probe win4 --text corpus.txt --tokens 16 --samples 10 --eps 0.45 --json win4.json >win4.out 2>win4.err &&
  grep -q "Sink_1 is 0 by construction here: only 4 of the 16 queries see the first token" win4.out &&
  grep -q "^window=4: share of the first key each query sees" win4.out &&
  grep -q "^window sink^0.45: " win4.out && ok "probe of a window=4 model: window sink and the Sink_1 bound" ||
  bad "probe of a window=4 model" win4.out win4.err
check "probe --json of a window=4 model: bound, even-head baseline, window statistic in range" "$PY" -c '
import json
d = json.load(open("win4.json"))
assert d["first_alpha_bound"] == 0.25 and d["sink"][0] == 0, d["first_alpha_bound"]
# (1 + 1/2 + 1/3 + 13/4) / 16: rows 0..2 see 1..3 keys, the other 13 rows four
assert abs(d["window_uniform"] - (1 + 1/2 + 1/3 + 13/4) / 16) < 1e-6, d["window_uniform"]
assert all(h[0] <= 0.25 + 1e-6 for l in d["importance"] for h in l)
assert all(0 < a <= 1 for l in d["window_alpha"] for a in l)
assert 0 <= d["window_sink"] <= 100
'
check "probe --plot: well-formed SVG" "$PY" -c '
import xml.etree.ElementTree as ET
r = ET.parse("probe.svg").getroot()
assert r.tag.endswith("svg"), r.tag
assert len(list(r.iter("{http://www.w3.org/2000/svg}rect"))) > 2
'
# the same windows given as ids: BOS is added alike, so the statistics agree
"$PY" -c '
data = open("corpus.txt", "rb").read()[:2000]
open("ids.txt", "w").write(" ".join(str(b) for b in data) + "\n")'
"$A" probe run --token-ids ids.txt --tokens 16 --samples 10 --json probe_ids.json >/dev/null 2>probe_ids.err
check "probe --token-ids matches --text on the same bytes" "$PY" -c '
import json
a, b = json.load(open("probe.json")), json.load(open("probe_ids.json"))
assert a == b
'

# ---------------------------------------------------------------- generate
# The toy checkpoint is byte-level with BOS (vocabulary 257): --prompt prints raw bytes.
"$A" generate run --prompt "The " --tokens 40 --seed 3 >gen1.out 2>gen1.err
rc=$?
[ $rc -eq 0 ] && ok "generate exits 0" || bad "generate exits 0 (rc=$rc)" gen1.err
[ "$(wc -c <gen1.out)" -eq 40 ] && ok "generate --tokens 40 prints 40 bytes" ||
  bad "generate --tokens 40 prints $(wc -c <gen1.out) bytes" gen1.out
grep -q "sink share per layer" gen1.err && ok "generate: sink share summary on stderr" ||
  bad "generate: sink share summary on stderr" gen1.err
"$A" generate run --prompt "The " --tokens 40 --seed 3 >gen2.out 2>/dev/null
cmp -s gen1.out gen2.out && ok "generate: the same seed gives the same bytes" || bad "generate: the same seed gave other bytes"
"$A" generate run --prompt "The " --tokens 40 --seed 4 >gen3.out 2>/dev/null
cmp -s gen1.out gen3.out && bad "generate: another seed gave the same 40 bytes" || ok "generate: another seed gives other bytes"
"$A" generate run --prompt "The " --tokens 40 --temperature 0 --seed 1 >greedy1.out 2>/dev/null
"$A" generate run --prompt "The " --tokens 40 --temperature 0 --seed 2 >greedy2.out 2>/dev/null
[ "$(wc -c <greedy1.out)" -eq 40 ] && cmp -s greedy1.out greedy2.out && ok "generate: greedy is deterministic" ||
  bad "generate: greedy is deterministic"
for cache in full window; do
  "$A" generate run --prompt "The " --tokens 30 --cache $cache >gen_$cache.out 2>gen_$cache.err
  rc=$?
  [ $rc -eq 0 ] && [ "$(wc -c <gen_$cache.out)" -eq 30 ] && ok "generate --cache $cache prints 30 bytes" ||
    bad "generate --cache $cache (rc=$rc)" gen_$cache.err
done
# the same bytes as ids, BOS added alike: the same tokens come out, now as ids
printf '84 104 101 32\n' >prompt_ids.txt
"$A" generate run --prompt-ids prompt_ids.txt --tokens 40 --temperature 0 >gen_ids.out 2>gen_ids.err
check "generate --prompt-ids prints the same tokens as ids" "$PY" -c '
ids = [int(x) for x in open("gen_ids.out").read().split()]
assert len(ids) == 40 and all(0 <= i < 257 for i in ids), ids
# --prompt never draws BOS (it is no byte); an untrained toy model may pick it
if 256 not in ids:
    assert bytes(ids) == open("greedy1.out", "rb").read(), ids
'

# ---------------------------------------------------------------- stream
"$A" stream run --text corpus.txt --tokens 600 --cache full,window,sink --buckets 5 --json stream.json \
  --plot stream.svg >stream.out 2>stream.err
rc=$?
[ $rc -eq 0 ] && ok "stream exits 0" || bad "stream exits 0 (rc=$rc)" stream.err
grep -q "loss (nats per token) per position bucket" stream.out && grep -q "sink share per layer" stream.out &&
  ok "stream prints the loss buckets and the sink share" || bad "stream prints its summary" stream.out
check "stream --json: exactly the documented keys and shapes" "$PY" -c '
import json, math
d = json.load(open("stream.json"))
assert list(d) == ["model", "source", "tokens", "predictions", "bos", "context", "buckets", "bucket_edges",
                   "peak_rss_per_run", "runs"], list(d)
assert d["tokens"] == 600 and d["predictions"] == 599 and d["bos"] is True and d["context"] == 16, d
assert d["buckets"] == 5 and d["bucket_edges"][0] == 0 and d["bucket_edges"][-1] == 599, d["bucket_edges"]
assert len(d["bucket_edges"]) == 6 and sorted(d["bucket_edges"]) == d["bucket_edges"]
assert [r["cache"] for r in d["runs"]] == ["full", "window", "sink"], d["runs"]
L = 1
for r in d["runs"]:
    assert list(r) == ["cache", "n_sink", "window", "mean_loss", "loss", "sink_share", "sink_share_by_bucket",
                       "seconds", "tokens_per_s", "cache_bytes", "peak_rss_kib"], list(r)
    assert len(r["loss"]) == 5 and len(r["sink_share_by_bucket"]) == 5 and len(r["sink_share"]) == L, r
    assert all(math.isfinite(x) and x > 0 for x in r["loss"]) and r["mean_loss"] > 0, r
    assert all(0 <= x <= 1 for x in r["sink_share"] + r["sink_share_by_bucket"]), r
    assert r["tokens_per_s"] > 0 and r["cache_bytes"] > 0 and r["peak_rss_kib"] > 0, r
full, window, sink = d["runs"]
assert full["window"] is None and window["window"] == 16 and sink["window"] == 12 and sink["n_sink"] == 4
# a full cache holds all 600 positions, the others at most their 16
assert full["cache_bytes"] > 4 * window["cache_bytes"], (full["cache_bytes"], window["cache_bytes"])
'
check "stream --plot: well-formed SVG" "$PY" -c '
import xml.etree.ElementTree as ET
r = ET.parse("stream.svg").getroot()
assert r.tag.endswith("svg") and len(list(r.iter("{http://www.w3.org/2000/svg}polyline"))) >= 3
'
# Within the model's context every policy keeps every position: the same losses.
"$A" stream run --text corpus.txt --tokens 16 --cache full,window,sink --buckets 3 --json stream16.json \
  >/dev/null 2>stream16.err || bad "stream --tokens 16" stream16.err
check "stream: within the context full, window and sink caches agree" "$PY" -c '
import json
runs = json.load(open("stream16.json"))["runs"]
for r in runs[1:]:
    for a, b in zip(runs[0]["loss"], r["loss"]):
        assert abs(a - b) < 1e-4, (runs[0]["cache"], r["cache"], runs[0]["loss"], r["loss"])
'

# ---------------------------------------------------------------- resume
# The same 8 steps three ways: straight through, stopped by the test hook at step 4
# (it raises SIGINT itself) then resumed, and stopped by a real SIGINT mid-run.
RES=("${TOY[@]}" --steps 8 --eval-every 3 --threads 2)
"$A" train "${RES[@]}" --out straight >/dev/null 2>straight.err || bad "uninterrupted run" straight.err
ASINK_TEST_INTERRUPT_AT=4 "$A" train "${RES[@]}" --out stopped >stopped.out 2>stopped.err
rc=$?
[ $rc -eq 0 ] && ok "interrupted run exits 0" || bad "interrupted run exits 0 (rc=$rc)" stopped.err
grep -q '"step": 4' stopped/train_state.json && ok "interrupt saves a checkpoint at step 4" ||
  bad "interrupt saves a checkpoint at step 4" stopped/train_state.json
[ "$(wc -l <stopped/metrics.jsonl)" -eq 1 ] && ok "interrupted run has 1 metrics line" || bad "interrupted run has 1 metrics line" stopped/metrics.jsonl
"$A" train --out stopped --resume >resume.out 2>resume.err
rc=$?
[ $rc -eq 0 ] && ok "resume exits 0" || bad "resume exits 0 (rc=$rc)" resume.err
cmp -s straight/model.safetensors stopped/model.safetensors && ok "resumed model is bit-identical" ||
  bad "resumed model.safetensors differs from the uninterrupted run's"
cmp -s straight/optimizer.safetensors stopped/optimizer.safetensors && ok "resumed optimizer is bit-identical" ||
  bad "resumed optimizer.safetensors differs from the uninterrupted run's"
check "resumed metrics match the uninterrupted run's (but for seconds)" "$PY" -c '
import json
def rows(p):
    return [{k: v for k, v in json.loads(l).items() if k != "seconds"} for l in open(p)]
a, b = rows("straight/metrics.jsonl"), rows("stopped/metrics.jsonl")
assert a == b and [r["step"] for r in a] == [3, 6, 8], (a, b)
'
# A run saved by an earlier version (the checkpoint files directly in the run
# directory) resumes alike and is converted to the current layout.
ASINK_TEST_INTERRUPT_AT=4 "$A" train "${RES[@]}" --out flat_src >/dev/null 2>flat.err
mkdir flat && for f in config.json model.safetensors optimizer.safetensors train_state.json metrics.jsonl; do
  cp -L "flat_src/$f" flat/
done
"$A" train --out flat --resume >/dev/null 2>flat.err && cmp -s straight/model.safetensors flat/model.safetensors &&
  [ -L flat/model.safetensors ] && [ -L flat/current ] && [ "$(ls -d flat/step-* | wc -l)" -eq 1 ] &&
  ok "a run in the flat layout resumes bit-identically and is converted" || bad "flat layout resume" flat.err
# A real Ctrl-C, at whatever step it lands: resuming must still end bit-identical.
LONG=("${TOY[@]}" --steps 300 --eval-every 20)
"$A" train "${LONG[@]}" --out long_straight >/dev/null 2>&1
"$A" train "${LONG[@]}" --out long_int >long_int.out 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  [ -s long_int/metrics.jsonl ] && break
  sleep 0.05
done
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
if grep -q interrupted long_int.out; then
  [ $rc -eq 0 ] && ok "SIGINT: saves and exits 0" || bad "SIGINT: exit status $rc" long_int.out
  "$A" train --out long_int --resume >/dev/null 2>long_resume.err || bad "SIGINT: resume" long_resume.err
  cmp -s long_straight/model.safetensors long_int/model.safetensors && ok "SIGINT: resumed model is bit-identical" ||
    bad "SIGINT: resumed model differs"
else
  echo "skip SIGINT test: the run finished before the signal arrived"
fi

# ---------------------------------------------------------------- precision
# bf16 mixed precision: saved in train_state.json, so a resumed run repeats it bit for bit
# (resumed in fp32 it would not); the checkpoint stays float32; other values are refused.
"$A" train "${RES[@]}" --precision bf16 --out p16 >/dev/null 2>p16.err || bad "train --precision bf16" p16.err
ASINK_TEST_INTERRUPT_AT=4 "$A" train "${RES[@]}" --precision bf16 --out p16_stopped >/dev/null 2>p16s.err &&
  "$A" train --out p16_stopped --resume >/dev/null 2>p16r.err &&
  cmp -s p16/model.safetensors p16_stopped/model.safetensors &&
  ok "train --precision bf16: resumed without the flag, bit-identical" || bad "precision bf16 resume" p16r.err
! cmp -s p16/model.safetensors straight/model.safetensors && ok "bf16 run's weights differ from fp32's" ||
  bad "precision bf16 changed nothing"
check "train_state.json names the precision; the checkpoint is F32" "$PY" -c '
import json, struct
assert json.load(open("p16/train_state.json"))["args"]["precision"] == "bf16"
assert json.load(open("straight/train_state.json"))["args"]["precision"] == "fp32"
raw = open("p16/model.safetensors", "rb").read()
h = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
assert {v["dtype"] for k, v in h.items() if k != "__metadata__"} == {"F32"}, h
'
"$A" train --out p16 --resume --precision fp32 --steps 9 >/dev/null 2>p16x.err; rc=$?
[ $rc -eq 2 ] && grep -q -- "--precision differs" p16x.err && ok "resume with another --precision is refused" ||
  bad "resume with another --precision (rc=$rc)" p16x.err
"$A" train "${TOY[@]}" --steps 2 --precision fp16 --out p_bad >/dev/null 2>pbad.err; rc=$?
[ $rc -eq 2 ] && grep -q "fp16" pbad.err && [ ! -e p_bad ] && ok "train --precision fp16 is refused, naming the value" ||
  bad "train --precision fp16 (rc=$rc)" pbad.err

# ---------------------------------------------------------------- study
"$A" study "${TOY[@]}" --steps 4 --eval-every 2 --minutes 2 --out st --json st.json >study.out 2>study.err
rc=$?
[ $rc -eq 0 ] && ok "study exits 0" || bad "study exits 0 (rc=$rc)" study.err
for f in report.md sink1.svg loss.svg alpha_softmax.svg alpha_sigmoid.svg softmax/model.safetensors \
  sigmoid/model.safetensors softmax/probe.json sigmoid/probe.json; do
  [ -s "st/$f" ] && ok "study writes $f" || bad "study writes $f"
done
check "study SVGs are well-formed" "$PY" -c '
import xml.etree.ElementTree as ET
for f in ("sink1", "loss", "alpha_softmax", "alpha_sigmoid"):
    ET.parse("st/%s.svg" % f)
'
check "study --json: runs softmax and sigmoid with the documented keys, same steps" "$PY" -c '
import json
d = json.load(open("st.json"))
assert list(d) == ["runs"], list(d)
r = d["runs"]
assert [x["attn"] for x in r] == ["softmax", "sigmoid"], r
assert [x["name"] for x in r] == ["softmax", "sigmoid"] and [x["dir"] for x in r] == ["softmax", "sigmoid"], r
for x in r:
    assert list(x) == ["name", "dir", "attn", "val_loss", "sink1", "steps", "tokens"], list(x)
assert r[0]["steps"] == r[1]["steps"] == 4 and r[0]["tokens"] == r[1]["tokens"] == 4 * 4 * 16, r
'
grep -q "sink1.svg" st/report.md && grep -q "alpha_sigmoid.svg" st/report.md && ok "report.md links its plots" ||
  bad "report.md links its plots" st/report.md
check "report.md points only at files that exist (its plots, the project's docs)" \
  "$PY" "$TESTS/python/doc_links.py" --root "$TESTS/.." st/report.md
check "study plots: legends outside the data, one colour per run, overlaps noted, percent scale" \
  "$PY" "$TESTS/python/check_study_plots.py" st 2
check "report.md: the threads that ran, a reading of Sink_1, no pass/fail criterion" "$PY" -c '
r = open("st/report.md").read()
assert "| threads | 1 per run" in r, r
assert any(s in r for s in ("No first-token sink has formed", "At most a trace", "Softmax has a first-token sink",
                            "Softmax shows no more")), r
assert "criterion" not in r and "reached" not in r, r
'
check "study output: each start line once, both before training" "$PY" -c '
out = open("study.out").read().splitlines()
starts = [i for i, l in enumerate(out) if " training in " in l]
assert len(starts) == 2, out
assert starts == [0, 1], out
'

# ---------------------------------------------------------------- bad input
# A model whose vocabulary is not byte-level: the toy checkpoint with 300 ids.
"$PY" -c '
import json, os, struct
V = 300
cfg = json.load(open("run/config.json"))
cfg["vocab_size"] = V
cfg["attnsink"]["bos"] = None
raw = open("run/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr, body = json.loads(raw[8:8 + n]), raw[8 + n:]
out, parts, off = {}, [], 0
for name, t in sorted(((k, v) for k, v in hdr.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0]):
    a, b = t["data_offsets"]
    data, shape = body[a:b], t["shape"]
    if name in ("model.embed_tokens.weight", "lm_head.weight"):
        data += bytes(4 * shape[1] * (V - shape[0]))
        shape = [V, shape[1]]
    out[name] = {"dtype": t["dtype"], "shape": shape, "data_offsets": [off, off + len(data)]}
    parts.append(data)
    off += len(data)
h = json.dumps(out).encode()
h += b" " * (-len(h) % 8)
os.mkdir("wide")
open("wide/model.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + b"".join(parts))
json.dump(cfg, open("wide/config.json", "w"))
'
"$A" probe wide --token-ids ids.txt --tokens 16 --samples 2 >/dev/null 2>wide.err && ok "a 300-id model probes with --token-ids" ||
  bad "a 300-id model probes with --token-ids" wide.err
echo 1 299 2 >wide_ids.txt
"$A" generate wide --prompt-ids wide_ids.txt --tokens 12 >wide_gen.out 2>wide.err && [ "$(wc -w <wide_gen.out)" -eq 12 ] &&
  ok "a 300-id model generates 12 ids with --prompt-ids" || bad "a 300-id model generates with --prompt-ids" wide.err
"$A" stream wide --token-ids ids.txt --tokens 100 >/dev/null 2>wide.err && ok "a 300-id model streams with --token-ids" ||
  bad "a 300-id model streams with --token-ids" wide.err
# Learned positions: keys carry their absolute positions, so only a full cache decodes.
"$A" train "${TOY[@]}" --positions learned --steps 1 --eval-every 1 --out learned >/dev/null 2>learned.err ||
  bad "train --positions learned" learned.err
"$A" generate learned --prompt "The " --tokens 8 >learned_gen.out 2>learned.err && [ "$(wc -c <learned_gen.out)" -eq 8 ] &&
  grep -q "using --cache full" learned.err && ok "generate: learned positions default to a full cache" ||
  bad "generate: learned positions default to a full cache" learned.err

# expect_input_error NAME LEFTOVER COMMAND...: exit 2, one line on stderr, LEFTOVER absent
expect_input_error() {
  local name=$1 left=$2
  shift 2
  "$@" >err.out 2>err.err
  local rc=$? lines
  lines=$(wc -l <err.err)
  if [ $rc -ne 2 ]; then
    bad "$name: exit status $rc, expected 2" err.err
  elif [ "$lines" -ne 1 ]; then
    bad "$name: $lines lines on stderr, expected 1" err.err
  elif [ -n "$left" ] && [ -e "$left" ]; then
    bad "$name: left $left behind"
  else
    ok "$name: exit 2, one line ($(cut -c1-90 err.err))"
  fi
}
SMALL=(--layers 1 --dim 16 --heads 2 --context 16 --batch 4 --steps 2)
expect_input_error "train: missing corpus" e1 "$A" train --corpus nowhere.txt --out e1 "${SMALL[@]}"
expect_input_error "train: corpus shorter than a context" e1 "$A" train --corpus short.txt --out e1 "${SMALL[@]}"
expect_input_error "train: unknown spec" e1 "$A" train --corpus corpus.txt --attn softmaxx --out e1 "${SMALL[@]}"
expect_input_error "train: bad spec option" e1 "$A" train --corpus corpus.txt --attn sigmoid,norm=half --out e1 "${SMALL[@]}"
expect_input_error "train: heads not dividing dim" e1 "$A" train --corpus corpus.txt --out e1 --dim 15 --heads 2
expect_input_error "train: --lr not a number" e1 "$A" train --corpus corpus.txt --out e1 --lr fast
expect_input_error "train: --lr=-1" e1 "$A" train --corpus corpus.txt --out e1 --lr=-1
expect_input_error "train: --layers 0" e1 "$A" train --corpus corpus.txt --out e1 --layers 0
expect_input_error "train: --batch=2x" e1 "$A" train --corpus corpus.txt --out e1 --batch=2x
expect_input_error "train: unknown flag" e1 "$A" train --corpus corpus.txt --out e1 --colour blue
expect_input_error "train: flag without value" "" "$A" train --corpus corpus.txt --out
expect_input_error "train: --out missing" "" "$A" train --corpus corpus.txt
expect_input_error "train: --out under a missing directory" "" "$A" train --corpus corpus.txt --out nowhere/run "${SMALL[@]}"
expect_input_error "train: --out names a file" "" "$A" train --corpus corpus.txt --out corpus.txt "${SMALL[@]}"
expect_input_error "train: --resume without a run" e1 "$A" train --out e1 --resume
expect_input_error "train: --resume with a changed setting" "" "$A" train --out run --resume --lr 0.1
expect_input_error "train: existing run without --resume" "" "$A" train "${TOY[@]}" --steps 2 --out run
mkdir -p foreign/current
expect_input_error "train: --out whose current is no link" "" "$A" train "${TOY[@]}" --steps 2 --out foreign
expect_input_error "train: --resume where current is no link" "" "$A" train --out foreign --resume
expect_input_error "probe: missing checkpoint" probe_e.json "$A" probe nowhere --text corpus.txt --json probe_e.json
expect_input_error "probe: missing text" probe_e.json "$A" probe run --text nowhere.txt --json probe_e.json
expect_input_error "probe: non-byte-level model with --text" probe_e.json "$A" probe wide --text corpus.txt --json probe_e.json --plot probe_e.svg
[ -e probe_e.svg ] && bad "probe: non-byte-level model left probe_e.svg behind"
echo 1 2 999 >ids_999.txt
expect_input_error "probe: id outside the vocabulary" probe_e.json "$A" probe run --token-ids ids_999.txt --json probe_e.json
expect_input_error "probe: --eps 1" probe_e.json "$A" probe run --text corpus.txt --eps 1 --json probe_e.json
expect_input_error "probe: --json into a missing directory" "" "$A" probe run --text corpus.txt --json nowhere/p.json
expect_input_error "probe: unknown flag" "" "$A" probe run --text corpus.txt --bins 3
expect_input_error "study: missing corpus" e2 "$A" study --corpus nowhere.txt --out e2
expect_input_error "study: corpus shorter than a context" e2 "$A" study --corpus short.txt --out e2 "${SMALL[@]}"
expect_input_error "study: --minutes 0" e2 "$A" study --corpus corpus.txt --out e2 --minutes 0
expect_input_error "generate: missing --prompt and --prompt-ids" "" "$A" generate run
expect_input_error "generate: both --prompt and --prompt-ids" "" "$A" generate run --prompt a --prompt-ids prompt_ids.txt
expect_input_error "generate: missing checkpoint" "" "$A" generate nowhere --prompt a
expect_input_error "generate: unknown --cache" "" "$A" generate run --prompt a --cache ring
expect_input_error "generate: --n-sink >= --window" "" "$A" generate run --prompt a --n-sink 8 --window 8
expect_input_error "generate: --top-p 0" "" "$A" generate run --prompt a --top-p 0
expect_input_error "generate: --temperature=-1" "" "$A" generate run --prompt a --temperature=-1
expect_input_error "generate: --prompt on a model that is not byte-level" "" "$A" generate wide --prompt a
expect_input_error "generate: id outside the vocabulary" "" "$A" generate run --prompt-ids ids_999.txt
expect_input_error "generate: --cache window with learned positions" "" "$A" generate learned --prompt a --cache window
expect_input_error "generate: a full cache past learned positions" "" "$A" generate learned --prompt a --cache full --tokens 40
expect_input_error "stream: missing --text" stream_e.json "$A" stream run --json stream_e.json
expect_input_error "stream: unknown --cache" stream_e.json "$A" stream run --text corpus.txt --cache full,ring --json stream_e.json
expect_input_error "stream: --cache naming a policy twice" stream_e.json "$A" stream run --text corpus.txt --cache sink,sink --json stream_e.json
expect_input_error "stream: --n-sink >= --window" stream_e.json "$A" stream run --text corpus.txt --n-sink 8 --window 8 --json stream_e.json
expect_input_error "stream: --cache sink with learned positions" stream_e.json "$A" stream learned --text corpus.txt --cache full,sink --tokens 16 --json stream_e.json
expect_input_error "stream: --text on a model that is not byte-level" stream_e.json "$A" stream wide --text corpus.txt --json stream_e.json --plot stream_e.svg
[ -e stream_e.svg ] && bad "stream: a model that is not byte-level left stream_e.svg behind"
expect_input_error "stream: a text of one token" stream_e.json "$A" stream run --text /dev/null --json stream_e.json
expect_input_error "stream: --plot into a missing directory" "" "$A" stream run --text corpus.txt --plot nowhere/s.svg
expect_input_error "unknown command" "" "$A" fit
expect_input_error "no command" "" "$A"

# ---------------------------------------------------------------- bounded reads
# Devices and FIFOs have no size to check (/dev/zero never ends): refused at once,
# without reading or waiting for a writer.
mkfifo fifo
# expect_refused NAME COMMAND...: exit 2, one line saying the file is no regular one, within 20 s
expect_refused() {
  local name=$1
  shift
  timeout 20 "$@" >err.out 2>err.err
  local rc=$?
  if [ $rc -eq 2 ] && [ "$(wc -l <err.err)" -eq 1 ] && grep -q "not a regular file" err.err; then
    ok "$name: refused ($(cut -c1-90 err.err))"
  else
    bad "$name: exit status $rc" err.err
  fi
}
for src in /dev/zero fifo; do
  expect_refused "train --corpus $src" "$A" train --corpus $src --out e3 "${SMALL[@]}"
  [ -e e3 ] && bad "train --corpus $src left e3 behind"
  expect_refused "probe --text $src" "$A" probe run --text $src
  expect_refused "probe --token-ids $src" "$A" probe run --token-ids $src
  expect_refused "stream --text $src" "$A" stream run --text $src
  expect_refused "stream --token-ids $src" "$A" stream run --token-ids $src
  expect_refused "generate --prompt-ids $src" "$A" generate run --prompt-ids $src
done

# ---------------------------------------------------------------- train_state.json checked like the flags
# tamper KEY.PATH VALUE: a copy of the run whose train_state.json has that value
tamper() {
  rm -rf tampered
  cp -a run tampered
  "$PY" - "$1" "$2" <<'PYEOF'
import json, sys
path, value = sys.argv[1].split("."), json.loads(sys.argv[2])
s = json.load(open("tampered/train_state.json"))
d = s
for k in path[:-1]:
    d = d[k]
d[path[-1]] = value
json.dump(s, open("tampered/train_state.json", "w"))
PYEOF
}
# expect_state_error NAME KEY VALUE WORD: resuming exits 2 with one line naming WORD, within 20 s
expect_state_error() {
  tamper "$2" "$3"
  timeout 20 "$A" train --out tampered --resume --steps 9 >err.out 2>err.err
  local rc=$?
  if [ $rc -eq 2 ] && [ "$(wc -l <err.err)" -eq 1 ] && grep -q -- "$4" err.err; then
    ok "state $1: refused ($(cut -c1-100 err.err))"
  else
    bad "state $1: exit status $rc, expected 2 naming $4" err.err
  fi
}
expect_state_error "context=0" args.context 0 "args.context=0"
expect_state_error "context=-7" args.context -7 "args.context=-7"
expect_state_error "eval_every=0" args.eval_every 0 "args.eval_every=0"
expect_state_error "batch=-3" args.batch -3 "args.batch=-3"
expect_state_error "batch huge" args.batch 4294967300 "args.batch=4294967300"
expect_state_error "context a string" args.context '"16"' 'args.context="16" must be an integer'
expect_state_error "lr a string" args.lr '"fast"' "args.lr"
expect_state_error "seed a number" args.seed 7 "args.seed=7 must be a string"
expect_state_error "attention kind unknown" args.positions '"spiral"' "args.positions"
expect_state_error "args missing" args null "args must be an object"
expect_state_error "rng all zero" rng '["0000000000000000","0000000000000000","0000000000000000","0000000000000000"]' "rng is all zeros"
expect_state_error "rng not hexadecimal" rng '["x","0","0","1"]' "rng must be 4 hexadecimal words"
expect_state_error "step a string" step '"3"' 'step="3" must be an integer'
expect_state_error "step negative" step -1 "step=-1"
expect_state_error "train_loss_count past step" train_loss_count 99 "train_loss_count=99"
expect_state_error "seconds NaN-like" seconds '"inf"' "seconds"
tamper step 6
"$PY" -c 'open("tampered/train_state.json", "w").write("[1, 2]")'
timeout 20 "$A" train --out tampered --resume >err.out 2>err.err
[ $? -eq 2 ] && [ "$(wc -l <err.err)" -eq 1 ] && ok "state not an object: refused" || bad "state not an object" err.err
rm -f tampered/train_state.json tampered/current/train_state.json
ln -s /dev/zero tampered/current/train_state.json
timeout 20 "$A" train --out tampered --resume >err.out 2>err.err
[ $? -eq 2 ] && grep -q "not a regular file" err.err && ok "state linked to /dev/zero: refused" ||
  bad "state linked to /dev/zero" err.err

# ---------------------------------------------------------------- the atomic writer
# A link planted at the temporary name the old writer used (OUT.tmp.PID) must not
# redirect the write: the exec keeps the shell's PID for the program.
echo "precious" >victim.txt
sh -c 'ln -s victim.txt probe_link.json.tmp.$$; exec "$0" probe run --text corpus.txt --tokens 16 --samples 2 --json probe_link.json' \
  "$A" >/dev/null 2>link.err
[ "$(cat victim.txt)" = precious ] && "$PY" -c 'import json; json.load(open("probe_link.json"))' 2>/dev/null &&
  ok "atomic writer: a link at a temporary name is not followed" || bad "atomic writer followed a planted link" link.err
[ -z "$(ls probe_link.json.tmp.* 2>/dev/null | grep -v "\.tmp\.[0-9]*$")" ] && ok "atomic writer: no temporary left" ||
  bad "atomic writer left $(ls probe_link.json.tmp.*)"

# ---------------------------------------------------------------- past the trained length
"$A" probe run --text corpus.txt --tokens 32 --samples 2 >/dev/null 2>long.err
rc=$?
[ $rc -eq 0 ] && grep -q "note: probe: --tokens 32 .* past the 16 positions it was trained on; its RoPE" long.err &&
  ok "probe past a RoPE model's trained length: a note" || bad "probe past the trained length (rc=$rc)" long.err
"$A" probe run --text corpus.txt --tokens 16 --samples 2 >/dev/null 2>short.err
[ ! -s short.err ] && ok "probe within the trained length: no note" || bad "probe within the trained length printed" short.err

# ---------------------------------------------------------------- NaN in training
# The test hook writes NaN into a weight after step 3: step 4's loss is NaN, the run
# stops with status 1 and names its last good checkpoint (step 2), which stays whole
# and resumes to the uninterrupted result.
NANRUN=("${TOY[@]}" --steps 6 --eval-every 2 --threads 1)
"$A" train "${NANRUN[@]}" --out nan_ref >/dev/null 2>nan_ref.err || bad "NaN reference run" nan_ref.err
ATTNSINK_TEST_NAN_AT=3 "$A" train "${NANRUN[@]}" --out nan >nan.out 2>nan.err
rc=$?
[ $rc -eq 1 ] && grep -q "training step 4: .*stopped without saving: the last good checkpoint, step 2, stays in nan" nan.err &&
  ok "NaN loss: stops with status 1 naming the last good checkpoint" || bad "NaN loss (rc=$rc)" nan.err
grep -q '"step": 2,' nan/train_state.json && ok "NaN loss: the checkpoint stays at step 2" ||
  bad "NaN loss: the checkpoint moved" nan/train_state.json
"$A" train --out nan --resume >/dev/null 2>nan_resume.err && cmp -s nan/model.safetensors nan_ref/model.safetensors &&
  ok "NaN loss: the kept checkpoint resumes to the uninterrupted result" || bad "NaN loss: resume" nan_resume.err
ATTNSINK_TEST_NAN_AT=1 "$A" train "${NANRUN[@]}" --out nan_first >/dev/null 2>nan_first.err
rc=$?
[ $rc -eq 1 ] && grep -q "stopped before the first checkpoint" nan_first.err && [ ! -e nan_first ] &&
  ok "NaN before the first checkpoint: says so, leaves nothing" || bad "NaN before the first checkpoint (rc=$rc)" nan_first.err

"$A" --help >/dev/null && "$A" train --help >/dev/null && "$A" probe --help >/dev/null && "$A" study --help >/dev/null &&
  "$A" generate --help >/dev/null && "$A" stream --help >/dev/null && ok "--help exits 0" || bad "--help exits 0"

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
