"""``psr demo``: the whole method offline, through the real ``psr`` commands (psr/world/demo.py)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from psr.cli import options as O
from psr.cli.root import app

JUDGE_STYLES = ("verdict-first", "recompute-first", "solve-first", "lookup-first", "verdict-only")  # psr.world.oracle

HELP = "\n\n".join(
    [
        "Run the whole loop offline on the embedded world, each stage as the `psr` command a user would type "
        "(printed before it runs): world -> segment (IFT) -> train-prm -> mine-pairs -> annotate-eft (EFT) -> sft "
        "(M1) -> search -> step-dpo (M2) -> search -> step-dpo (M3) -> eval of M0..M3. The oracle engine plays the "
        "paper's external roles (o1, PRM800K). ~10 minutes on 2 cores (--size ci: a few).",
        "Writes into -o DIR (default runs/demo): world/ (the data sets of `psr world`), ift.jsonl, prm/, pairs.jsonl, "
        "eft.jsonl and eft_test.jsonl, m1/, m2/, m3/ (models), ppd_m*.jsonl and trajectories_m*.jsonl (search), "
        "evals/ (predictions and summaries), judge_gate.json, accuracy.md and accuracy.png (the Table-1-style "
        "comparison), demo_summary.json; each stage's resolved options beside its output. Rerunning resumes.",
    ]
)


@app.command("demo", help=HELP)
def demo(
    out: Annotated[str, typer.Option("-o", "--out", help="Run directory; rerun to resume.")] = "runs/demo",
    size: Annotated[
        Literal["full", "ci", "events", "events-ci"] | None,
        typer.Option(
            "--size",
            help="full (default), ci (minutes); events, events-ci: the events world's (default with --world events).",
        ),
    ] = None,
    seed: O.Seed = 0,
    m0: Annotated[
        str | None,
        typer.Option(
            "--m0",
            help="Base model directory (default: data/m0 of the "
            "repository; `python -m psr.world.pretrain` builds one).",
        ),
    ] = None,
    iterations: Annotated[int, typer.Option("--iterations", help="search -> step-dpo rounds after M1.")] = 2,
    iterate: Annotated[int, typer.Option("--iterate", help="N more rounds on top of an existing run.")] = 0,
    gate: Annotated[
        Literal["warn", "stop"],
        typer.Option(
            "--gate",
            help="When M1 does not judge above chance on the EFT test split: warn and go on, or stop "
            "before the self-rewarding rounds.",
        ),
    ] = "warn",
    srlm: Annotated[
        bool,
        typer.Option(
            "--srlm",
            help="Also run the SRLM baseline: its own S1 (M0 + the same IFT "
            "+ the pairs annotated in the 0-5 scoring format), then S2, S3.",
        ),
    ] = False,
    oracle_judge: Annotated[
        bool,
        typer.Option(
            "--oracle-judge",
            help="Also run a control branch from M1 (O2, O3): the same search with the oracle as the judge.",
        ),
    ] = False,
    world: Annotated[
        Literal["arith", "events"],
        typer.Option("--world", help="arith (data/m0) or events (psr/world/events.py, data/m0-events)."),
    ] = "arith",
    events: Annotated[int, typer.Option("--events", help="events world: the asked-about person's events.")] = 4,
    distractors: Annotated[
        int, typer.Option("--distractors", help="events world: someone else's events (the difficulty).")
    ] = 2,
    other_first: Annotated[
        float,
        typer.Option(
            "--other-first", help="events world: the fraction of questions introducing the other person first."
        ),
    ] = 0.0,
    judge_style: Annotated[
        Literal[JUDGE_STYLES],
        typer.Option("--judge-style", help="How the oracle words the EFT judgments M1 learns from."),
    ] = "verdict-first",
) -> None:
    from psr.world import demo as world_demo

    if iterations < 1 or iterate < 0:
        raise typer.BadParameter("--iterations must be >= 1 and --iterate >= 0")
    kw = dict(events=events, distractors=distractors, other_first=other_first) if world == "events" else None
    world_demo.run(out, size, seed, m0, iterations, iterate, gate, srlm, oracle_judge, kw, judge_style)
