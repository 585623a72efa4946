#!/bin/bash
# Issue 18's capacity check: can SFT alone teach an events demo run's M1 what its step-DPO rounds do not (whose
# event is next)? M1's SFT again, the demo's settings and EFT records, with K times the IFT problems (the run's own
# come first: the generator's problems are a prefix in their count), then evaluated on the run's held-out
# problems; bench/demo_seeds.py's error table on RUN/sft-ift{K}x/eval.jsonl says which error kinds more SFT removes.
# Writes RUN/sft-ift{K}x/ (world/, ift.jsonl, m1/, eval.jsonl, summary.json). Rerunning resumes.
# The world's knobs (events, distractors, order, seed) are the run's own (its world/psr_options.yaml).
# usage: bench/events_sft_dose.sh RUN SEED K M0   (the run's seed, the IFT multiple, its base model)
set -eu
R=$1; S=$2; K=$3; M0=$4; PYTHON=${PYTHON:-.venv/bin/python}; PY="$PYTHON -m psr.cli"
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
W=$R/sft-ift${K}x; mkdir -p $W
T=$($PYTHON bench/demo_size.py $R max_tokens)
test -e $W/world/train_solutions.jsonl || $PY world --config $R/world/psr_options.yaml -o $W/world --train $(($($PYTHON bench/demo_size.py $R train) * K)) --test 0 --prm 0 --search 0 > $W/world.log 2>&1
# segment resumes a partial ift.jsonl itself
$PY segment --method llm --engine oracle -i $W/world/train_solutions.jsonl -o $W/ift.jsonl --rejects $W/ift_rejects.jsonl > $W/segment.log 2>&1
test -e $W/m1/config.json || $PY sft -i $W/ift.jsonl -i $R/eft.jsonl --model $M0 -o $W/m1 --epochs 2 --lr 0.001 --batch-size 16 --per-device-batch-size 16 --warmup 0.05 --lr-scheduler cosine --max-length 1024 --seed $S > $W/sft.log 2>&1
test -e $W/summary.json || $PY eval -i world=$R/world/test.jsonl --model $W/m1 -o $W/eval.jsonl --summary $W/summary.json --name M1-ift${K}x --max-tokens $T --seed $S > $W/eval.log 2>&1
