#!/bin/bash
# Issue 18's first measurement, when a full `just events-seeds` does not fit: on an events demo run stopped after
# SFT (RUN/m1 exists), M1 on the held-out problems, M1 as a judge (the demo's judge gate command), and one
# oracle-judged search round -> step-dpo at two learning rates -> each O2 on the held-out problems. The commands
# are the demo's own (psr/world/demo.py, events size). Writes under RUN: evals/{m1,judge_m1,o2-lr*}.jsonl.
# usage: bench/events_gate1.sh RUN SEED      (from the repository root)
set -u
R=$1; S=$2; PY=".venv/bin/python -m psr.cli"
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
mkdir -p $R/evals
head -n 200 $R/world/search.jsonl > $R/search_problems_m1.jsonl
# M1 as a judge (the demo's judge gate command) and M1 on the 500 held-out problems, beside the search
nice -n 5 $PY eval --task judge -i $R/eft_test.jsonl --model $R/m1 -o $R/evals/judge_m1.jsonl --summary $R/evals/judge_m1.json --name M1 --max-tokens 160 --seed $S > $R/judge_m1.log 2>&1 &
nice -n 5 $PY eval -i world=$R/world/test.jsonl --model $R/m1 -o $R/evals/m1.jsonl --summary $R/evals/m1.json --name M1 --max-tokens 160 --seed $S > $R/eval_m1.log 2>&1 &
nice -n 5 $PY search -i $R/search_problems_m1.jsonl --model $R/m1 -o $R/ppd_m1_oracle.jsonl --trajectories $R/trajectories_m1_oracle.jsonl --width 4 --temperature 0.8 --max-iterations 10 --max-step-tokens 60 --judge-engine oracle --judge-max-tokens 160 --seed $((S + 1)) > $R/search_o.log 2>&1
for LR in 1e-5 5e-5; do
  nice -n 5 $PY step-dpo -i $R/ppd_m1_oracle.jsonl --model $R/m1 -o $R/o2-lr$LR --lr $LR --beta 0.1 --batch-size 16 --per-device-batch-size 16 --seed $S > $R/dpo_$LR.log 2>&1
  nice -n 5 $PY eval -i world=$R/world/test.jsonl --model $R/o2-lr$LR -o $R/evals/o2-lr$LR.jsonl --summary $R/evals/o2-lr$LR.json --name O2-lr$LR --max-tokens 160 --seed $S > $R/eval_o2_$LR.log 2>&1 &
done
wait
.venv/bin/python bench/events_gate1_report.py $R
# The D = 0 measurement in the README used the same search / step-dpo (lr 1e-5) / eval commands on
# `psr world -o RUN/world-d0 --world events --events 4 --distractors 0 --train 0 --prm 0 --test 300 --search 200
# --seed SEED` (test.jsonl and search.jsonl of that directory), from the same RUN/m1.
