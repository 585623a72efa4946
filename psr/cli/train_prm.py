"""`psr train-prm`: stepwise labels (TRL stepwise supervision or raw PRM800K) -> a PRM model directory."""

from __future__ import annotations

from typing import Annotated

import typer

from psr.cli import app
from psr.cli import options as O
from psr.cli.sft import (
    LAUNCH_HELP,
    EffectiveBatch,
    Epochs,
    GradCkpt,
    KeepCheckpoints,
    LearningRate,
    Lora,
    LoraAlpha,
    LoraR,
    MaxLength,
    MaxSteps,
    OutputDir,
    Overwrite,
    PerDevice,
    Resume,
    SaveSteps,
    Scheduler,
    Warmup,
)
from psr.engines.prm import PRMFormat
from psr.stages import train_prm as stage
from psr.training.common import TrainConfig

_FMT = PRMFormat()


@app.command(
    "train-prm",
    help=(
        "Train a process reward model (paper §3.2, OpenR / Math-Shepherd style) on transformers' Trainer. Reads "
        "TRL stepwise-supervision records (prompt; completions: a list of steps; labels: a list of booleans) and raw "
        "PRM800K phase1/phase2 "
        "lines (label.steps[*].completions[*].rating: the chosen path plus each alternative, neutral ratings per "
        "--neutral), mixed in any -i files. The model reads 'question \\n step TAG \\n step TAG ...' and is "
        "trained to put '+' (good) or '-' (bad) after each tag; scoring reads P(+) at the same position. The tag "
        "and labels are saved in config.json (psr_prm), so `mine-pairs --prm DIR` needs no flags. Metrics: "
        "loss per logged step, step-level accuracy and AUC on --eval-fraction of the questions (before and "
        "after training). Paper defaults: 1 epoch, lr 1e-5, effective batch 128. "
        + LAUNCH_HELP.format(cmd="train-prm")
    ),
)
def train_prm(
    inputs: O.Inputs = None,
    output: OutputDir = "",
    model: O.Model = None,
    step_tag: Annotated[str, typer.Option("--step-tag", help="Text after every step (its last token is where "
                                          "the label is read).")] = _FMT.step_tag,
    good: Annotated[str, typer.Option("--good-token", help="Label of a good step (one token).")] = _FMT.good,
    bad: Annotated[str, typer.Option("--bad-token", help="Label of a bad step (one token).")] = _FMT.bad,
    neutral: Annotated[str, typer.Option("--neutral", help="PRM800K rating 0 counts as: good (as OpenR) | bad "
                                         "(as TRL's converter).")] = "good",
    eval_fraction: Annotated[float, typer.Option("--eval-fraction", help="Fraction of the questions held out "
                                                 "for step-level accuracy / AUC.")] = 0.05,
    epochs: Epochs = 1.0,
    learning_rate: LearningRate = 1e-5,
    batch_size: EffectiveBatch = 128,
    per_device_batch_size: PerDevice = 4,
    max_length: MaxLength = 2048,
    warmup: Warmup = 0.0,
    lr_scheduler: Scheduler = "linear",
    save_steps: SaveSteps = 200,
    keep_checkpoints: KeepCheckpoints = False,
    resume: Resume = True,
    overwrite: Overwrite = False,
    max_steps: MaxSteps = -1,
    limit: O.Limit = None,
    seed: O.Seed = 0,
    dtype: O.Dtype = "auto",
    gradient_checkpointing: GradCkpt = None,
    lora: Lora = False,
    lora_r: LoraR = 16,
    lora_alpha: LoraAlpha = 32,
    trust_remote_code: O.TrustRemoteCode = False,
) -> None:
    cfg = TrainConfig(model=model or "", output=output, epochs=epochs, learning_rate=learning_rate,
                      batch_size=batch_size, per_device_batch_size=per_device_batch_size, max_length=max_length,
                      seed=seed, lr_scheduler=lr_scheduler, warmup=warmup, save_steps=save_steps,
                      keep_checkpoints=keep_checkpoints, resume=resume, overwrite=overwrite, max_steps=max_steps,
                      gradient_checkpointing=gradient_checkpointing, dtype=dtype, trust_remote_code=trust_remote_code,
                      lora=lora, lora_r=lora_r, lora_alpha=lora_alpha)
    stage.run(inputs or ["-"], cfg, PRMFormat(step_tag=step_tag, good=good, bad=bad),
              eval_fraction=eval_fraction, neutral=neutral, limit=limit)
