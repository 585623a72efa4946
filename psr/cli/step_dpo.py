"""`psr step-dpo`: Mi + PPD(Mi) -> Mi+1 (step-wise DPO)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from psr.cli.root import app
from psr.cli.training_options import LAUNCH_HELP, TrainJob, paper_defaults, training_options
from psr.stages import step_dpo as stage
from psr.training.step_dpo import DEFAULT_BETA, LOSSES, DPOOptions


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
        + paper_defaults(stage.STEP_DPO_DEFAULTS, f"; beta {DEFAULT_BETA} (TRL's default; the paper gives none)") + LAUNCH_HELP.format(cmd="step-dpo")
    ),
)
@training_options(**stage.STEP_DPO_DEFAULTS)
def step_dpo(
    beta: Annotated[float, typer.Option("--beta", help="DPO beta: how far the policy may move from the "
                                        "reference.")] = DEFAULT_BETA,
    precompute_ref_log_probs: Annotated[bool, typer.Option(
        "--precompute-ref-log-probs", help="Score all pairs with the reference once before training, so no "
        "second model sits in memory.")] = False,
    sft_weight: Annotated[float, typer.Option(
        "--sft-weight", help="Add the NLL of the chosen step to the DPO loss with this weight (RPO; TRL's "
        "'sft' loss). 0, the default, is the paper's plain step-DPO.")] = 0.0,
    loss: Annotated[Literal[LOSSES], typer.Option(
        "--loss", help="TRL's preference loss: sigmoid (DPO, the paper's; the default), or "
        f"{', '.join(LOSSES[1:])}. apo_zero raises the chosen step and lowers the rejected one outright, "
        "where DPO may lower both.")] = "sigmoid",
    *,
    job: TrainJob,
) -> None:
    if not beta > 0:
        raise typer.BadParameter("must be > 0", param_hint="--beta")
    if sft_weight < 0:
        raise typer.BadParameter("must be >= 0", param_hint="--sft-weight")
    stage.run(job.inputs, job.cfg, DPOOptions(beta=beta, precompute_ref_log_probs=precompute_ref_log_probs,
                                              sft_weight=sft_weight, loss=loss), limit=job.limit)
