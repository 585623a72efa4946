#!/bin/bash
# Issue 18's dose-response, one point: a finished events demo run's M1 (trained at D = 2) against problems at another
# difficulty (distractors D, events N), and ROUNDS oracle-judged search rounds -> step-dpo there (O2, O3, ...), each
# round on 200 new search problems, and a control that should fail: round 1's pairs reversed, the same step-dpo
# (o2-reversed). The commands are the demo's own (psr/world/demo.py, events size).
# Writes RUN/dose-eN-dD/: world/ (300 held-out problems), evals/{m1,o2,o3,...,o2-reversed}.jsonl. Rerunning resumes.
# usage: bench/events_dose.sh RUN SEED D [N [ROUNDS]]   (from the repository root; N defaults to 4, ROUNDS to 1)
#        .venv/bin/python bench/events_dose_report.py runs/events-seed0 runs/events-seed1
set -eu
R=$1; S=$2; D=$3; N=${4:-4}; ROUNDS=${5:-1}; PY=".venv/bin/python -m psr.cli"
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
W=$R/dose-e$N-d$D; mkdir -p $W/evals
KNOBS="--world events --events $N --distractors $D --train 0 --prm 0"
test -e $W/world/test.jsonl || $PY world -o $W/world $KNOBS --test 300 --search 200 --seed $S
$PY eval -i world=$W/world/test.jsonl --model $R/m1 -o $W/evals/m1.jsonl --summary $W/evals/m1.json --name M1 --max-tokens 160 --seed $S > $W/eval_m1.log 2>&1 &
SRC=$R/m1
for i in $(seq 1 $ROUNDS); do
  DST=$W/o$((i + 1)); SUF=$([ $i = 1 ] && echo "" || echo "_r$i")
  # round i > 1 searches 200 other train-split questions (world seed S + 1000 i; train and test never share one)
  Q=$W/world/search.jsonl
  if [ $i -gt 1 ]; then test -e $W/world$i/search.jsonl || $PY world -o $W/world$i $KNOBS --test 0 --search 200 --seed $((S + 1000 * i)); Q=$W/world$i/search.jsonl; fi
  $PY search -i $Q --model $SRC -o $W/ppd_o$SUF.jsonl --trajectories $W/trajectories_o$SUF.jsonl --width 4 --temperature 0.8 --max-iterations 10 --max-step-tokens 60 --judge-engine oracle --judge-max-tokens 160 --seed $((S + i)) > $W/search_o$SUF.log 2>&1
  test -e $DST/config.json || $PY step-dpo -i $W/ppd_o$SUF.jsonl --model $SRC -o $DST --lr 1e-5 --beta 0.1 --batch-size 16 --per-device-batch-size 16 --seed $S > $W/dpo$SUF.log 2>&1
  NAME=$(basename $DST)
  $PY eval -i world=$W/world/test.jsonl --model $DST -o $W/evals/$NAME.jsonl --summary $W/evals/$NAME.json --name ${NAME^^} --max-tokens 160 --seed $S > $W/eval_$NAME.log 2>&1 &
  SRC=$DST
done
# The control that should fail: round 1's pairs with chosen and rejected swapped (and their is_final flags),
# the same step-dpo from M1 -> o2-reversed.
test -e $W/ppd_o_reversed.jsonl || .venv/bin/python bench/reverse_pairs.py $W/ppd_o.jsonl $W/ppd_o_reversed.jsonl
test -e $W/o2-reversed/config.json || $PY step-dpo -i $W/ppd_o_reversed.jsonl --model $R/m1 -o $W/o2-reversed --lr 1e-5 --beta 0.1 --batch-size 16 --per-device-batch-size 16 --seed $S > $W/dpo_reversed.log 2>&1
$PY eval -i world=$W/world/test.jsonl --model $W/o2-reversed -o $W/evals/o2-reversed.jsonl --summary $W/evals/o2-reversed.json --name O2-reversed --max-tokens 160 --seed $S > $W/eval_reversed.log 2>&1
wait
