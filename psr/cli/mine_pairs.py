"""`psr mine-pairs`: problems + policy + PRM -> candidate step pairs (MCTS, paper §3.2)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from psr.cli import options as O
from psr.cli.root import app
from psr.core.records import IOConfig
from psr.engines.base import EngineConfig
from psr.stages import mine_pairs as stage


@app.command(
    "mine-pairs",
    help=(
        "MCTS on a policy model (--engine/--model) with a PRM (--prm DIR from `psr train-prm`; run with "
        "transformers, sharded by --prm-device-map, or with --prm-engine vllm) as value. Reads problem records (id, question); writes candidate pair records (id, "
        "problem_id, question, previous_steps, chosen, rejected, chosen_score, rejected_score): at every expanded "
        "node the PRM's best and worst candidate next steps, kept when P(+) differs by more than --margin. "
        "Expansion samples --width steps for the whole working set in one engine call; the PRM scores them in one "
        "batched call; selection by UCT. Paper defaults: --simulation-depth 3, --num-iterations 100, "
        "--temperature 0.7, --top-p 0.95. Resumes by problem (an unfinished problem is redone); --shard/--limit "
        "as every stage. Stats (nodes, pairs, pairs per problem, generation vs scoring time) go to stderr and "
        "--stats."
    ),
)
@O.with_options(O.engine_options(), "engine_cfg", omit=("prefix_sharing",))
@O.with_options(O.dataclass_options(stage.MCTSConfig), "cfg")
@O.with_options(O.io_options(), "io", after="output")
def mine_pairs(
    prm: Annotated[str, typer.Option("--prm", help="PRM directory (written by `psr train-prm`).")] = "",
    stats: Annotated[str | None, typer.Option("--stats", help="Also write the stats to this JSON file.")] = None,
    *,
    io: IOConfig,
    cfg: stage.MCTSConfig,
    engine_cfg: EngineConfig,
) -> None:
    stage.run(
        io.writing({"--stats": stats}),
        replace(cfg, seed=engine_cfg.seed),
        engine_cfg,
        prm=prm,
        stats_path=stats,
        prm_dtype=engine_cfg.dtype,
    )
