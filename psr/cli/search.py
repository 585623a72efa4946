"""`psr search`: self-judged step search -> PPD step preference pairs (or answers, with --tts)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from psr.cli import options as O
from psr.cli.root import app
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
@O.with_options(O.engine_config, "engine_cfg")
def search(
    inputs: O.Inputs = None,
    output: O.Output = "-",
    trajectories: Annotated[str | None, typer.Option(
        "--trajectories", help="Also write one trajectory record per problem here (not with --tts).")] = None,
    mode: Annotated[str, typer.Option("--mode", help="psr: step search (the paper) | srlm: whole-solution "
                                      "scoring baseline (Yuan et al. 2024).")] = "psr",
    tts: Annotated[bool, typer.Option("--tts", help="Test-time scaling: answer with the search, write trajectories "
                                      "to -o, no pairs; a tie takes the first candidate instead of rolling back.")] = False,
    width: Annotated[int, typer.Option("--width", "-w", help="Candidates a step (srlm: solutions a problem).")] = 6,
    temperature: Annotated[float, typer.Option("--temperature", help="Sampling temperature of candidates.")] = 0.5,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling of candidates.")] = 0.95,
    max_iterations: Annotated[int, typer.Option("--max-iterations", help="Generation rounds a problem, rollbacks "
                                                "included.")] = 20,
    judge_orders: Annotated[int, typer.Option("--judge-orders", help="1: judge each pair once, A/B positions "
                                              "balanced (paper cost) | 2: both orders, a win only when they agree "
                                              "(2x judge cost, robust to position bias).")] = 1,
    max_step_tokens: Annotated[int, typer.Option("--max-step-tokens", help="Token limit of one step.")] = 512,
    max_solution_tokens: Annotated[int, typer.Option("--max-solution-tokens", help="srlm: token limit of a "
                                                     "solution.")] = 2048,
    judge_max_tokens: Annotated[int, typer.Option("--judge-max-tokens", help="Token limit of one judgment.")] = 1024,
    judge_temperature: Annotated[float, typer.Option("--judge-temperature", help="0 = greedy judging.")] = 0.0,
    judge_engine: Annotated[O.EngineChoice | None, typer.Option(
        "--judge-engine", help="Judge with another engine (hf | vllm | openai | oracle) instead of the policy "
        "itself; default: the policy judges its own candidates (the method).")] = None,
    judge_model: Annotated[str | None, typer.Option(
        "--judge-model", help="Model of --judge-engine (default: --model); with openai, the served name.")] = None,
    working_set: Annotated[int, typer.Option("--working-set", help="Problems searched together (one engine call "
                                             "per round for all of them).")] = 128,
    overwrite: O.Overwrite = False,
    limit: O.Limit = None,
    shard: O.Shard = None,
    *,
    engine_cfg: EngineConfig,
) -> None:
    cfg = stage.SearchConfig(mode=mode, tts=tts, width=width, temperature=temperature, top_p=top_p,
                             max_iterations=max_iterations, judge_orders=judge_orders, max_step_tokens=max_step_tokens,
                             max_solution_tokens=max_solution_tokens, judge_max_tokens=judge_max_tokens,
                             judge_temperature=judge_temperature, working_set=working_set, seed=engine_cfg.seed)
    judge_cfg = None
    if judge_engine or judge_model:
        judge_cfg = replace(engine_cfg, engine=judge_engine or engine_cfg.engine, model=judge_model or engine_cfg.model)
    stage.run(O.io_config(inputs, output, overwrite, limit, shard, {"--trajectories": trajectories}), engine_cfg, cfg, trajectories=trajectories,
              judge_cfg=judge_cfg)
