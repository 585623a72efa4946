"""`psr search`: self-judged step search -> PPD step preference pairs (or answers, with --tts)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from psr.cli import options as O
from psr.cli.root import app
from psr.core.records import IOConfig
from psr.engines.base import EngineConfig
from psr.stages import search as stage


@app.command(
    "search",
    help=(
        "Self-judged step-wise search (paper §3.3). Reads problem JSONL (id, question, optional gold answer); "
        "for each problem the model samples --width candidate next steps (T=0.5, top_p=0.95), judges them pairwise "
        "with the Figure 5 prompt, keeps the best as the next step and (best, worst) as a preference pair, and rolls "
        "back one step when all candidates score the same; it stops at a final answer or after --max-iterations "
        "rounds (20). Writes PPD records (id, problem_id, question, previous_steps, chosen, rejected, scores, "
        "step_index, is_final) to -o, and one trajectory per problem (steps, output, pred, correct when a gold "
        "answer is given, iterations, rollbacks, judge failures, pairs) to --trajectories. --tts answers with the "
        "same search and writes trajectories to -o. --mode srlm is the Self-Rewarding baseline: --width whole "
        "solutions scored 0-5 by the model, best vs worst as one PPD record. --judge-engine/--judge-model let "
        "another model (or, in the embedded world, the oracle) judge instead of the policy itself: a control "
        "for how much the self-judging costs. Resumes an existing output."
    ),
)
@O.with_options(O.engine_options(), "engine_cfg")
@O.with_options(O.dataclass_options(stage.SearchConfig), "cfg")
@O.with_options(O.io_options(), "io", after="output")
def search(
    trajectories: Annotated[
        str | None,
        typer.Option("--trajectories", help="Also write one trajectory record per problem here (not with --tts)."),
    ] = None,
    judge_engine: Annotated[
        O.EngineChoice | None,
        typer.Option(
            "--judge-engine",
            help="Judge with another engine (hf | vllm | openai | oracle) instead of the policy "
            "itself; default: the policy judges its own candidates (the method).",
        ),
    ] = None,
    judge_model: Annotated[
        str | None,
        typer.Option("--judge-model", help="Model of --judge-engine (default: --model); with openai, the served name."),
    ] = None,
    *,
    io: IOConfig,
    cfg: stage.SearchConfig,
    engine_cfg: EngineConfig,
) -> None:
    cfg = replace(cfg, seed=engine_cfg.seed)
    judge_cfg = None
    if judge_engine or judge_model:
        judge_cfg = replace(engine_cfg, engine=judge_engine or engine_cfg.engine, model=judge_model or engine_cfg.model)
    stage.run(io.writing({"--trajectories": trajectories}), cfg, engine_cfg, trajectories=trajectories, judge=judge_cfg)
