"""`psr sft`: M0 + IFT + EFT -> M1."""

from __future__ import annotations

from psr.cli.root import app
from psr.cli.training_options import LAUNCH_HELP, TrainJob, paper_defaults, training_options
from psr.stages import sft as stage


@app.command(
    "sft",
    help=(
        "Supervised fine-tuning M0 -> M1 (paper §3.2) on TRL's SFTTrainer. Reads IFT records (id, question, steps) "
        "and EFT records (id, question, previous_steps, step_a, step_b, judgment; or scoring-format: id, question, "
        "response, judgment, score, format 'scoring'), mixed in any -i files. IFT trains user: Figure 4 prompt -> "
        "assistant: the steps as 'Step n: ...' lines; EFT trains user: Figure 5 judge prompt (scoring: Yuan et "
        "al.'s 0-5 prompt on the response) -> assistant: the judgment. Loss on the assistant turn only. Records "
        "longer than --max-length tokens are left out and counted, not truncated. "
        + paper_defaults(stage.SFT_DEFAULTS)
        + LAUNCH_HELP.format(cmd="sft")
    ),
)
@training_options(**stage.SFT_DEFAULTS)
def sft(*, job: TrainJob) -> None:
    stage.run(job.inputs, job.cfg, limit=job.limit)
