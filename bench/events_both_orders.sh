#!/bin/bash
# Issue 18's gate 2 with swap augmentation: a finished events demo run's mined pairs annotated by the oracle in both
# orders (annotate-eft --both-orders), less every question of the run's held-out EFT split, then M1's SFT again
# (the demo's settings: same IFT, 2 epochs, so about twice the EFT steps) -> m1-both, judged on the run's own
# held-out EFT records, so its accuracy sits beside the run's judge gate (evals/judge_m1.json).
# Writes RUN/eft_both.jsonl, RUN/m1-both/, RUN/evals/judge_m1-both.{jsonl,json}. Rerunning resumes.
# usage: bench/events_both_orders.sh RUN SEED [STYLE [M0]]   (the run's --judge-style, default lookup-first; its base
#        model, default data/m0-events)
set -eu
R=$1; S=$2; STYLE=${3:-lookup-first}; M0=${4:-data/m0-events}; PYTHON=${PYTHON:-.venv/bin/python}; PY="$PYTHON -m psr.cli"
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
# The demo's own generation budget (it grows with the number of events), from the run's summary.
T=$($PYTHON bench/demo_size.py $R max_tokens)
$PY annotate-eft -i $R/pairs.jsonl --engine oracle --model $STYLE --both-orders -o $R/eft_both_all.jsonl --seed $S > $R/annotate_both.log 2>&1
test -e $R/eft_both.jsonl || $PYTHON -c "
import json, sys
held = {json.loads(l)['question'] for l in open(sys.argv[2])}
recs = [l for l in open(sys.argv[1]) if json.loads(l)['question'] not in held]
open(sys.argv[3] + '.tmp', 'w').writelines(recs)
import os; os.replace(sys.argv[3] + '.tmp', sys.argv[3])
" $R/eft_both_all.jsonl $R/eft_test.jsonl $R/eft_both.jsonl
test -e $R/m1-both/config.json || $PY sft -i $R/ift.jsonl -i $R/eft_both.jsonl --model $M0 -o $R/m1-both --epochs 2 --lr 0.001 --batch-size 16 --per-device-batch-size 16 --warmup 0.05 --lr-scheduler cosine --max-length 1024 --seed $S > $R/sft_both.log 2>&1
test -e $R/evals/judge_m1-both.json || $PY eval --task judge -i $R/eft_test.jsonl --model $R/m1-both -o $R/evals/judge_m1-both.jsonl --summary $R/evals/judge_m1-both.json --name M1-both --max-tokens $T --seed $S > $R/eval_judge_both.log 2>&1
