#!/usr/bin/env bash
# Data-parallel training under mpirun at toy size: `attnsink train` on 2 (and 3) ranks against
# one process at the same global batch (20 steps: metrics and final parameters to float
# tolerance), both gradient sums (--allreduce ordered and mpi), the same run twice bit-identical,
# resumption with another rank count, a clean stop (the Ctrl-C path) and a rank killed mid-run
# (the other exits with a message naming the last checkpoint, which resumes to the straight
# run's result), and the bad input: a batch the ranks do not divide, ranks started with other
# settings or another corpus, a rank that cannot start, a command other than train.
# examples/mpi_trainer (MPI_Allreduce on asink_model_grad_block) against one process.
#   test_mpi.sh PATH/TO/attnsink PATH/TO/mpi_trainer
set -u

A=${1:?usage: test_mpi.sh PATH/TO/attnsink PATH/TO/mpi_trainer}
TRAINER=${2:?usage: test_mpi.sh PATH/TO/attnsink PATH/TO/mpi_trainer}
case $TRAINER in /*) ;; *) TRAINER=$PWD/$TRAINER ;; esac
if ! command -v mpirun >/dev/null 2>&1; then
  echo "mpirun not installed (Debian: openmpi-bin): skipped"
  exit 77
fi
# CI machines run as root; toy models want one thread per rank on a shared machine
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export ASINK_NUM_THREADS=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
unset ASINK_TEST_INTERRUPT_AT ASINK_TEST_KILL_RANK_AT ATTNSINK_CORPUS
MPI=(mpirun --oversubscribe)

# A made absolute, PY, a scratch directory, ok / bad / check, corpus.txt (about 35 KB)
. "$(dirname "$0")/cli_common.sh"
sed 's/the/The/' corpus.txt >corpus2.txt

# Two runs agree: every metrics line (step, tokens, train_loss, val_loss, sink1) to relative tol,
# every parameter to absolute tol and both AdamW moments of every tensor to tol relative to the
# tensor's largest (0: bit for bit, files compared whole). The moments carry the gradients'
# scale, which AdamW's update (and clipping, hence --clip 0 below) would hide.
cat >agree.py <<'EOF'
import json, struct, sys
import numpy as np

def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head, base = json.loads(b[8:8 + n]), 8 + n
    return {k: np.frombuffer(b[base + v["data_offsets"][0]:base + v["data_offsets"][1]], np.float32)
            for k, v in head.items() if k != "__metadata__"}

a, b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
la = [json.loads(l) for l in open(a + "/metrics.jsonl")]
lb = [json.loads(l) for l in open(b + "/metrics.jsonl")]
assert [d["step"] for d in la] == [d["step"] for d in lb], (la, lb)
for x, y in zip(la, lb):
    for k in ("tokens", "train_loss", "val_loss", "sink1"):
        assert abs(x[k] - y[k]) <= max(tol, 1e-7) * max(1.0, abs(x[k])), (k, x, y)
if tol == 0:
    for f in ("model.safetensors", "optimizer.safetensors"):
        assert open(a + "/" + f, "rb").read() == open(b + "/" + f, "rb").read(), f + " differs"
else:
    ta, tb = tensors(a + "/model.safetensors"), tensors(b + "/model.safetensors")
    assert ta.keys() == tb.keys()
    worst = max(float(np.max(np.abs(ta[k] - tb[k]))) for k in ta)
    assert worst <= tol, "parameters differ by %g > %g" % (worst, tol)
    oa, ob = tensors(a + "/optimizer.safetensors"), tensors(b + "/optimizer.safetensors")
    assert oa.keys() == ob.keys()
    for k in oa:
        top = max(float(np.max(np.abs(oa[k]))), 1e-30)
        assert float(np.max(np.abs(oa[k] - ob[k]))) <= 10 * tol * top, "optimizer %s differs" % k
    print("largest parameter difference %g" % worst)
sa, sb = (json.load(open(d + "/train_state.json")) for d in (a, b))
assert sa["step"] == sb["step"] and sa["rng"] == sb["rng"], "train_state differs"
EOF
agree() { check "$1" "$PY" agree.py "$2" "$3" "$4"; }

TOY=(--corpus corpus.txt --layers 1 --dim 16 --heads 2 --context 16 --steps 20 --eval-every 5 --clip 0)

# ------------------------------------------- the same global batch, 1 vs 2 and 3 ranks
"$A" train "${TOY[@]}" --batch 4 --out one >/dev/null 2>one.err || bad "one process" one.err
"${MPI[@]}" -np 2 "$A" train "${TOY[@]}" --batch 4 --out two >two.out 2>two.err
rc=$?
[ $rc -eq 0 ] && ok "2 ranks exit 0" || bad "2 ranks exit 0 (rc=$rc)" two.err
grep -q "^done: 20 steps, 1280 tokens" two.out && ok "2 ranks: rank 0 reports the global tokens" ||
  bad "2 ranks: done line" two.out
[ "$(grep -c '^done:' two.out)" = 1 ] && ok "2 ranks: only rank 0 prints" || bad "2 ranks: only rank 0 prints" two.out
grep -q "^gradient sums: 20 over 2 ranks" two.out && ok "2 ranks: the time of the gradient sums" ||
  bad "2 ranks: gradient sums line" two.out
agree "2 ranks (ordered) = 1 process, 20 steps" one two 1e-5
"${MPI[@]}" -np 2 "$A" train "${TOY[@]}" --batch 4 --allreduce mpi --out two_mpi >/dev/null 2>two_mpi.err ||
  bad "2 ranks --allreduce mpi" two_mpi.err
agree "2 ranks (MPI_Allreduce) = 1 process, 20 steps" one two_mpi 1e-5
"${MPI[@]}" -np 2 "$A" train "${TOY[@]}" --batch 4 --out two_again >/dev/null 2>&1
agree "2 ranks twice: bit-identical" two two_again 0

"$A" train "${TOY[@]}" --batch 6 --out one6 >/dev/null 2>one6.err || bad "one process, batch 6" one6.err
"${MPI[@]}" -np 3 "$A" train "${TOY[@]}" --batch 6 --out three >/dev/null 2>three.err || bad "3 ranks" three.err
agree "3 ranks = 1 process, 20 steps" one6 three 1e-5
"${MPI[@]}" -np 3 "$A" train "${TOY[@]}" --batch 6 --out three_again >/dev/null 2>&1
agree "3 ranks twice: bit-identical (rank-order sum)" three three_again 0

# ------------------------------------------------- resume with another rank count
"${MPI[@]}" -np 2 "$A" train "${TOY[@]}" --batch 4 --steps 10 --out r21 >/dev/null 2>r21.err || bad "2 ranks, 10 steps" r21.err
"$A" train --out r21 --resume --steps 20 >/dev/null 2>r21b.err || bad "resume on 1 process" r21b.err
agree "2 ranks then 1 process = 2 ranks straight" two r21 1e-5
"$A" train "${TOY[@]}" --batch 4 --steps 10 --out r12 >/dev/null 2>&1
"${MPI[@]}" -np 2 "$A" train --out r12 --resume --steps 20 >/dev/null 2>r12.err || bad "resume on 2 ranks" r12.err
agree "1 process then 2 ranks = 1 process straight" one r12 1e-5

# ----------------------------------------------------- a clean stop (Ctrl-C's path)
ASINK_TEST_INTERRUPT_AT=7 "${MPI[@]}" -np 2 "$A" train "${TOY[@]}" --batch 4 --out stop >stop.out 2>stop.err
rc=$?
[ $rc -eq 0 ] && grep -q "interrupted at step 7" stop.out && ok "stop: every rank stops at step 7, exit 0" ||
  bad "stop at step 7 (rc=$rc)" stop.err
"${MPI[@]}" -np 2 "$A" train --out stop --resume >/dev/null 2>stop_r.err || bad "stop: resume" stop_r.err
agree "stop at 7 and resume = straight run, bit-identical" two stop 0

# ------------------------------------------------------------ a rank dies mid-run
ASINK_TEST_KILL_RANK_AT=1:13 "${MPI[@]}" -np 2 "$A" train "${TOY[@]}" --batch 4 --out dead >dead.out 2>dead.err
rc=$?
[ $rc -ne 0 ] && ok "rank 1 killed at step 13: the job fails (rc=$rc)" || bad "killed rank: job must fail" dead.err
grep -q "rank 0 of 2: stopped: mpirun ended the job .*the last checkpoint in dead is at step 10" dead.err &&
  ok "killed rank: rank 0 names the last checkpoint" || bad "killed rank: rank 0's message" dead.err
check "killed rank: the checkpoint is at step 10" "$PY" -c '
import json; s = json.load(open("dead/train_state.json")); assert s["step"] == 10, s["step"]'
"${MPI[@]}" -np 2 "$A" train --out dead --resume >/dev/null 2>dead_r.err || bad "killed rank: resume" dead_r.err
agree "killed rank: resumed run = straight run, bit-identical" two dead 0

# -------------------------------------------------------------------- bad input
# expect_input_error NAME DIR COMMAND...: exit 2, the pattern in stderr, DIR not created
expect_input_error() {
  local name=$1 dir=$2 pattern=$3
  shift 3
  "$@" >bad.out 2>bad.err
  local rc=$?
  if [ $rc -ne 2 ]; then bad "$name: exit 2 expected, got $rc" bad.err; return; fi
  if ! grep -q "$pattern" bad.err; then bad "$name: message '$pattern'" bad.err; return; fi
  if [ -e "$dir" ]; then bad "$name: $dir left behind" bad.err; return; fi
  ok "$name"
}
expect_input_error "batch 5 on 2 ranks" e1 "^attnsink: --batch 5 cannot be split among 2 ranks" \
  "${MPI[@]}" -np 2 "$A" train "${TOY[@]}" --batch 5 --out e1
[ "$(grep -c '^attnsink:' bad.err)" = 1 ] && ok "batch 5: one error line for the job" || bad "batch 5: one line" bad.err
expect_input_error "ranks with another --lr" e1 "rank 1 was started with other settings than rank 0: lr is 0.002 there, 0.003 on rank 0" \
  mpirun -np 1 "$A" train "${TOY[@]}" --batch 4 --out e1 : -np 1 "$A" train "${TOY[@]}" --batch 4 --lr 0.002 --out e1
expect_input_error "ranks with another corpus" e1 "rank 1 was started with other settings than rank 0: corpus content" \
  mpirun -np 1 "$A" train "${TOY[@]}" --batch 4 --out e1 : -np 1 "$A" train "${TOY[@]}" --batch 4 --corpus corpus2.txt --out e1
expect_input_error "a rank that cannot start" e1 "^attnsink: rank 1: corpus nowhere.txt: cannot read" \
  mpirun -np 1 "$A" train "${TOY[@]}" --batch 4 --out e1 : -np 1 "$A" train "${TOY[@]}" --batch 4 --corpus nowhere.txt --out e1
expect_input_error "the same error on every rank shows once" e1 "^attnsink: corpus nowhere.txt: cannot read" \
  "${MPI[@]}" -np 2 "$A" train "${TOY[@]}" --batch 4 --corpus nowhere.txt --out e1
[ "$(grep -c '^attnsink:' bad.err)" = 1 ] && ok "the same error: one line" || bad "the same error: one line" bad.err
expect_input_error "probe under mpirun" e1 "only \`attnsink train\` runs across MPI ranks" \
  "${MPI[@]}" -np 2 "$A" probe two --text corpus.txt

# ------------------------------------------------- examples/mpi_trainer: the API pattern
"$TRAINER" --steps 20 --batch 4 >t1.out 2>&1 || bad "mpi_trainer, one process" t1.out
"${MPI[@]}" -np 2 "$TRAINER" --steps 20 --batch 4 >t2.out 2>&1 || bad "mpi_trainer, 2 ranks" t2.out
check "mpi_trainer: 2 ranks = 1 process (loss and grad norm per step)" "$PY" -c '
import re
def steps(f): return [tuple(map(float, m.groups())) for m in re.finditer(r"^step \d+ loss (\S+) grad_norm (\S+)", open(f).read(), re.M)]
a, b = steps("t1.out"), steps("t2.out")
assert len(a) == len(b) == 20, (len(a), len(b))
for x, y in zip(a, b): assert all(abs(u - v) <= 1e-5 * max(1, abs(u)) for u, v in zip(x, y)), (x, y)
assert a[-1][0] < 0.5 * a[0][0], "the loss must fall"'
grep -q "parameters on all ranks identical: yes" t2.out && ok "mpi_trainer: ranks end identical" ||
  bad "mpi_trainer: ranks identical" t2.out

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
