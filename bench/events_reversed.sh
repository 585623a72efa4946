#!/bin/bash
# Issue 18's control that should fail, on a finished events demo run's own data: M1's round-1 oracle-judged pairs
# (ppd_m1_oracle.jsonl, from --oracle-judge) reversed, the demo's step-dpo from M1 -> o2-reversed, evaluated on the
# run's held-out problems. bench/demo_seeds.py then prints O2-reversed - M1 beside O2 - M1.
# Writes RUN/ppd_m1_oracle_reversed.jsonl, RUN/o2-reversed/, RUN/evals/o2-reversed.{jsonl,json}. Rerunning resumes.
# usage: bench/events_reversed.sh RUN SEED   (from the repository root; PYTHON, default .venv/bin/python, runs psr)
set -eu
R=$1; S=$2; PYTHON=${PYTHON:-.venv/bin/python}; PY="$PYTHON -m psr.cli"
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
# The demo's own generation budget (it grows with the number of events), from the run's summary.
T=$($PYTHON bench/demo_size.py $R max_tokens)
P=$R/ppd_m1_oracle_reversed.jsonl
test -e $P || $PYTHON bench/reverse_pairs.py $R/ppd_m1_oracle.jsonl $P
test -e $R/o2-reversed/config.json || $PY step-dpo -i $P --model $R/m1 -o $R/o2-reversed --lr 1e-5 --beta 0.1 --batch-size 16 --per-device-batch-size 16 --seed $S > $R/dpo_reversed.log 2>&1
test -e $R/evals/o2-reversed.json || $PY eval -i world=$R/world/test.jsonl --model $R/o2-reversed -o $R/evals/o2-reversed.jsonl --summary $R/evals/o2-reversed.json --name O2-reversed --max-tokens $T --seed $S > $R/eval_reversed.log 2>&1
