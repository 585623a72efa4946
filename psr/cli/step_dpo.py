"""`psr step-dpo`: Mi + PPD(Mi) -> Mi+1 (step-wise DPO)."""

from __future__ import annotations

from psr.cli.root import app
from psr.cli.training_options import LAUNCH_HELP, TrainJob, paper_defaults, training_options
from psr.stages import step_dpo as stage
from psr.training.step_dpo import DEFAULT_BETA


@app.command(
    "step-dpo",
    help=(
        "Step-wise DPO Mi -> Mi+1 (paper §3.4, Eq. 6-8) on TRL's DPOTrainer. Reads PPD records (id, question, "
        "previous_steps, chosen, rejected, is_final) as written by `psr search`. Prompt: the Figure 4 chat prompt "
        "with the previous steps as the start of the answer; chosen/rejected: 'Step l: ...' plus a newline for an "
        "inner step or the end-of-turn token when is_final (an inner step never teaches the model to stop). "
        "Whole-solution pairs (empty previous_steps, is_final true) train the SRLM baseline. Reference: the "
        "starting model (the LoRA base with --lora, or log-probs computed once with --precompute-ref-log-probs). "
        "Long prompts are cut on the left to fit --max-length. "
        + paper_defaults(stage.STEP_DPO_DEFAULTS, f"; beta {DEFAULT_BETA} (TRL's default; the paper gives none)")
        + LAUNCH_HELP.format(cmd="step-dpo")
    ),
)
@training_options(**stage.STEP_DPO_DEFAULTS, cls=stage.StepDPOConfig)
def step_dpo(*, job: TrainJob) -> None:
    stage.run(job.inputs, job.cfg, limit=job.limit)
