#!/bin/bash
# Issue 18's gate 3 at another dose: a finished events demo run's M1 judges its own candidates (PSRLM's search, the
# demo's settings) on bench/events_dose.sh's round-1 search problems at D distractors -> step-dpo -> M2 there.
# Writes RUN/dose-eN-dD/: ppd_self.jsonl, m2/, evals/m2.jsonl (bench/events_dose_report.py reads it).
# usage: bench/events_dose_self.sh RUN SEED D [N]   (after bench/events_dose.sh RUN SEED D N)
set -eu
R=$1; S=$2; D=$3; N=${4:-4}; PY=".venv/bin/python -m psr.cli"
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
W=$R/dose-e$N-d$D
$PY search -i $W/world/search.jsonl --model $R/m1 -o $W/ppd_self.jsonl --trajectories $W/trajectories_self.jsonl --width 4 --temperature 0.8 --max-iterations 10 --max-step-tokens 60 --judge-max-tokens 160 --seed $((S + 1)) > $W/search_self.log 2>&1
test -e $W/m2/config.json || $PY step-dpo -i $W/ppd_self.jsonl --model $R/m1 -o $W/m2 --lr 1e-5 --beta 0.1 --batch-size 16 --per-device-batch-size 16 --seed $S > $W/dpo_self.log 2>&1
$PY eval -i world=$W/world/test.jsonl --model $W/m2 -o $W/evals/m2.jsonl --summary $W/evals/m2.json --name M2 --max-tokens 160 --seed $S > $W/eval_m2.log 2>&1
