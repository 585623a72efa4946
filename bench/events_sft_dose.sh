#!/bin/bash
# Issue 18's capacity check: can SFT alone teach an events demo run's M1 what its step-DPO rounds do not (whose
# event is next)? M1's SFT again, the demo's settings and EFT records, with K times the IFT problems (the first 800
# are the run's own: the generator's problems are a prefix in their count), then evaluated on the run's held-out
# problems; bench/demo_seeds.py's error table on RUN/sft-ift{K}x/eval.jsonl says which error kinds more SFT removes.
# Writes RUN/sft-ift{K}x/ (world/, ift.jsonl, m1/, eval.jsonl, summary.json). Rerunning resumes.
# usage: bench/events_sft_dose.sh RUN SEED D K M0   (the run's --distractors, the IFT multiple, its base model)
set -eu
R=$1; S=$2; D=$3; K=$4; M0=$5; PYTHON=${PYTHON:-.venv/bin/python}; PY="$PYTHON -m psr.cli"
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
W=$R/sft-ift${K}x; mkdir -p $W
T=$($PYTHON -c "import json, sys; print(json.load(open(sys.argv[1]))['sizes']['max_tokens'])" $R/demo_summary.json)
test -e $W/world/train_solutions.jsonl || $PY world -o $W/world --train $((800 * K)) --test 0 --prm 0 --search 0 --seed $S --world events --events 4 --distractors $D --other-first 0.0 > $W/world.log 2>&1
test -e $W/ift.jsonl.done -o -e $W/ift.jsonl || $PY segment --method llm --engine oracle -i $W/world/train_solutions.jsonl -o $W/ift.jsonl --rejects $W/ift_rejects.jsonl > $W/segment.log 2>&1
test -e $W/m1/config.json || $PY sft -i $W/ift.jsonl -i $R/eft.jsonl --model $M0 -o $W/m1 --epochs 2 --lr 0.001 --batch-size 16 --per-device-batch-size 16 --warmup 0.05 --lr-scheduler cosine --max-length 1024 --seed $S > $W/sft.log 2>&1
test -e $W/summary.json || $PY eval -i world=$R/world/test.jsonl --model $W/m1 -o $W/eval.jsonl --summary $W/summary.json --name M1-ift${K}x --max-tokens $T --seed $S > $W/eval.log 2>&1
