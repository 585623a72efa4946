"""`psr step-dpo`: Mi + PPD(Mi) -> Mi+1 (step-wise DPO)."""

from __future__ import annotations

from typing import Annotated

import typer

from psr.cli import app
from psr.cli import options as O
from psr.cli import sft as T
from psr.stages import step_dpo as stage
from psr.training.common import TrainConfig
from psr.training.step_dpo import DEFAULT_BETA, DPOOptions


@app.command(
    "step-dpo",
    help=(
        "Step-wise DPO Mi -> Mi+1 (paper §3.4, Eq. 6-8) on TRL's DPOTrainer. Reads PPD records (id, question, "
        "previous_steps, chosen, rejected, is_final) as written by `psr search`. Prompt: the Figure 4 chat prompt "
        "with the previous steps as the start of the answer; chosen/rejected: 'Step l: ...' plus a newline for an "
        "inner step or the end-of-turn token when is_final (an inner step never teaches the model to stop). "
        "Whole-solution pairs (empty previous_steps, is_final true) train the SRLM baseline. Reference: the "
        "starting model (the LoRA base with --lora, or log-probs computed once with --precompute-ref-log-probs). "
        "Long prompts are cut on the left to fit --max-length. Paper defaults: 1 epoch, lr 5e-7, effective batch "
        f"32; beta {DEFAULT_BETA} (TRL's default; the paper gives none). " + T.LAUNCH_HELP.format(cmd="step-dpo")
    ),
)
def step_dpo(
    inputs: O.Inputs = None,
    output: T.OutputDir = "",
    model: O.Model = None,
    beta: Annotated[float, typer.Option("--beta", help="DPO beta: how far the policy may move from the "
                                        "reference.")] = DEFAULT_BETA,
    precompute_ref_log_probs: Annotated[bool, typer.Option(
        "--precompute-ref-log-probs", help="Score all pairs with the reference once before training, so no "
        "second model sits in memory.")] = False,
    epochs: T.Epochs = 1.0,
    learning_rate: T.LearningRate = 5e-7,
    batch_size: T.EffectiveBatch = 32,
    per_device_batch_size: T.PerDevice = 1,
    max_length: T.MaxLength = 4096,
    warmup: T.Warmup = 0.0,
    lr_scheduler: T.Scheduler = "linear",
    save_steps: T.SaveSteps = 200,
    keep_checkpoints: T.KeepCheckpoints = False,
    resume: T.Resume = True,
    overwrite: T.Overwrite = False,
    max_steps: T.MaxSteps = -1,
    limit: O.Limit = None,
    seed: O.Seed = 0,
    dtype: O.Dtype = "auto",
    gradient_checkpointing: T.GradCkpt = None,
    lora: T.Lora = False,
    lora_r: T.LoraR = 16,
    lora_alpha: T.LoraAlpha = 32,
    trust_remote_code: O.TrustRemoteCode = False,
) -> None:
    cfg = TrainConfig(model=model or "", output=output, epochs=epochs, learning_rate=learning_rate,
                      batch_size=batch_size, per_device_batch_size=per_device_batch_size, max_length=max_length,
                      seed=seed, lr_scheduler=lr_scheduler, warmup=warmup, save_steps=save_steps,
                      keep_checkpoints=keep_checkpoints, resume=resume, overwrite=overwrite, max_steps=max_steps,
                      gradient_checkpointing=gradient_checkpointing, dtype=dtype, trust_remote_code=trust_remote_code,
                      lora=lora, lora_r=lora_r, lora_alpha=lora_alpha)
    stage.run(inputs or ["-"], cfg, DPOOptions(beta=beta, precompute_ref_log_probs=precompute_ref_log_probs),
              limit=limit)
