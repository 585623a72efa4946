"""``psr world``: write a data set of the offline world (generated arithmetic word problems)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from psr.cli import options as O
from psr.cli.root import app
from psr.core.errors import InputError
from psr.core.log import info


@app.command(
    "world",
    help=(
        "Generate the offline world's data into a directory (nothing is read): train.jsonl and test.jsonl "
        "(problems with question, answer, unsegmented solution, reference steps; the splits never share a "
        "question), train_solutions.jsonl (the train problems without steps, input of `psr segment`) and "
        "prm.jsonl (step-labelled solutions, TRL stepwise supervision, input of `psr train-prm`, from other "
        "problems than train.jsonl), and with --search N search.jsonl (N more train-split problems in neither: "
        "questions for `psr search` that SFT did not train on). Deterministic in --seed; files are rewritten "
        "whole. Defaults: 2000 train, 500 test, 2000 PRM examples, no search file, seed 0, the arithmetic world; "
        "--world events: stories of + and - events where the asked-about person's events must be picked out "
        "from --distractors events of someone else (psr/world/events.py)."
    ),
)
def world(
    out_dir: Annotated[str, typer.Option("-o", "--output-dir", help="Directory to write the files into.")] = "world",
    train: Annotated[int, typer.Option("--train", help="Train problems.")] = 2000,
    test: Annotated[int, typer.Option("--test", help="Held-out test problems.")] = 500,
    prm: Annotated[int, typer.Option("--prm", help="PRM step-label examples.")] = 2000,
    search: Annotated[int, typer.Option("--search", help="Problems for search.jsonl (0: no file).")] = 0,
    seed: O.Seed = 0,
    kind: Annotated[str, typer.Option("--world", help="arith (default: 2-4 steps of + - * /) or events.")] = "arith",
    events: Annotated[int, typer.Option("--events", help="events world: events of the asked-about person.")] = 4,
    distractors: Annotated[
        int, typer.Option("--distractors", help="events world: events of someone else (the difficulty).")
    ] = 2,
    other_first: Annotated[
        float,
        typer.Option(
            "--other-first",
            help="events world: the fraction of questions that introduce the other person first (0..1).",
        ),
    ] = 0.0,
) -> None:
    from psr.world.data import write_world

    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InputError("-o names a file; psr world writes a directory of files", out_dir)
    for name, n in (("--train", train), ("--test", test), ("--prm", prm), ("--search", search)):
        if n < 0:
            raise InputError(f"{name} must be >= 0, got {n}")
    if kind not in ("arith", "events"):
        raise InputError(f"--world must be arith or events, got {kind!r}")
    if events < 1 or distractors < 0:
        raise InputError(f"--events must be >= 1 and --distractors >= 0, got {events} and {distractors}")
    if not 0.0 <= other_first <= 1.0:
        raise InputError(f"--other-first must be in [0, 1], got {other_first}")
    world_kw = (
        {} if kind == "arith" else dict(world=kind, events=events, distractors=distractors, other_first=other_first)
    )
    try:
        counts = write_world(out_dir, train, test, prm, seed, search, **world_kw)
    except OSError as e:
        raise InputError(f"cannot write: {e.strerror}", e.filename or out_dir) from None
    info(", ".join(f"{name}: {n}" for name, n in counts.items()) + f" -> {out_dir}/")
