"""``psr annotate-eft``: PRM-ranked step pairs -> EFT records (judgments)."""

from __future__ import annotations

from dataclasses import replace

from psr.cli import options as O
from psr.cli.root import app
from psr.core.records import IOConfig
from psr.engines.base import EngineConfig
from psr.stages.annotate_eft import AnnotateConfig

HELP = """\
Annotate step pairs with a strong judge (EFT data, paper §3.2). Reads candidate pair records from
mine-pairs (id, question, previous_steps, chosen, rejected, chosen_score, rejected_score) and asks the judge
(Figure 5 prompt; default engine openai, --model names the judge; --engine oracle for the offline world,
where --model may name the style of its explanations: verdict-first (default), recompute-first,
solve-first, lookup-first or verdict-only) twice per pair with A/B swapped, greedy by default. A pair is kept only if both verdicts agree with each
other and with the PRM (the higher-scored step is better); drops are counted by kind: prm tie, no verdict,
inconsistent, disagrees with PRM. Writes EFT records (id, question, previous_steps, step_a, step_b,
judgment, label "A"/"B", chosen_score, rejected_score); the better step's position is about half A, half B
(a hash of --seed and the pair id).

--format scoring (default: pairwise) makes the SRLM baseline's judge data from the same pairs: the judge
scores two responses a pair, previous_steps + chosen and previous_steps + rejected as "Step n:" lines (as
psr search --mode srlm renders solutions), with Yuan et al.'s 0-5 solution-scoring prompt. A pair is kept
when both judgments end in "Score: n" and the chosen response scores higher; drops: prm tie, no score,
score tie, disagrees with PRM. A kept pair writes two records (id PAIR/chosen and PAIR/rejected: pair_id,
question, response, judgment, score, role, prm_score, format "scoring").

--test-size N (paper: 500) with --test-output PATH holds out whole questions: test records move from -o to
--test-output when judging ends, and no question is in both (N counts records: two a pair with scoring).
Judge prompts of --chunk-size pairs go to the engine in one call, so the openai engine's --concurrency
applies. Resumes by pair id (dropped pairs are remembered in OUTPUT.done); --shard K/N (each shard holds out
its own --test-size), --limit N.
"""


@app.command("annotate-eft", help=HELP)
@O.with_options(O.engine_options(), "engine_cfg", engine="openai", omit=("tensor_parallel_size",))
@O.with_options(O.dataclass_options(AnnotateConfig), "cfg")
@O.with_options(O.io_options(), "io")
def annotate_eft(*, io: IOConfig, cfg: AnnotateConfig, engine_cfg: EngineConfig) -> None:
    from psr.stages import annotate_eft as stage

    stage.run(io.writing({"--test-output": cfg.test_output}), replace(cfg, seed=engine_cfg.seed), engine_cfg)
