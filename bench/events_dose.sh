#!/bin/bash
# Issue 18's dose-response, one point: a finished events demo run's M1 (trained at D = 2) against problems at
# another difficulty — distractors D, events N — and one oracle-judged search round -> step-dpo -> O2 there.
# The commands are the demo's own (psr/world/demo.py, events size). Writes RUN/dose-eN-dD/: world/, evals/{m1,o2}.jsonl.
# usage: bench/events_dose.sh RUN SEED D [N]      (from the repository root; N defaults to 4)
#        .venv/bin/python bench/events_dose_report.py runs/events-seed0 runs/events-seed1
set -eu
R=$1; S=$2; D=$3; N=${4:-4}; PY=".venv/bin/python -m psr.cli"
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
W=$R/dose-e$N-d$D; mkdir -p $W/evals
$PY world -o $W/world --world events --events $N --distractors $D --train 0 --prm 0 --test 300 --search 200 --seed $S
$PY eval -i world=$W/world/test.jsonl --model $R/m1 -o $W/evals/m1.jsonl --summary $W/evals/m1.json --name M1 --max-tokens 160 --seed $S > $W/eval_m1.log 2>&1 &
$PY search -i $W/world/search.jsonl --model $R/m1 -o $W/ppd_o.jsonl --trajectories $W/trajectories_o.jsonl --width 4 --temperature 0.8 --max-iterations 10 --max-step-tokens 60 --judge-engine oracle --judge-max-tokens 160 --seed $((S + 1)) > $W/search_o.log 2>&1
test -e $W/o2/config.json || $PY step-dpo -i $W/ppd_o.jsonl --model $R/m1 -o $W/o2 --lr 1e-5 --beta 0.1 --batch-size 16 --per-device-batch-size 16 --seed $S > $W/dpo.log 2>&1
$PY eval -i world=$W/world/test.jsonl --model $W/o2 -o $W/evals/o2.jsonl --summary $W/evals/o2.json --name O2 --max-tokens 160 --seed $S > $W/eval_o2.log 2>&1
wait
