"""The options `psr sft`, `psr step-dpo` and `psr train-prm` share, declared once, and the TrainConfig they make."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from psr.cli import options as O
from psr.core.errors import InputError
from psr.core.paths import check_outputs
from psr.training.common import TrainConfig

LAUNCH_HELP = (
    "Several GPUs or CPU processes: `accelerate launch --config_file configs/accelerate/ddp.yaml -m psr.cli "
    "{cmd} -i FILE ...` (or `accelerate launch $(which psr) {cmd} ...`); configs for cpu_ddp, deepspeed_zero2, "
    "deepspeed_zero3 and fsdp ship in configs/accelerate/, with ddp_2x8 and deepspeed_zero3_2x8 for two 8-GPU "
    "boxes (--machine_rank, --main_process_ip) and deepspeed_zero3_offload (72B full fine-tuning) "
    "(on CPU use cpu_ddp.yaml: `accelerate launch --cpu` "
    "starts a single process). GPU: bf16 and gradient checkpointing; CPU: fp32. "
    "Writes to -o DIR: the model (weights, tokenizer, chat template), psr_config.json (the resolved config, "
    "written last), metrics.jsonl (one line per optimizer step), and DIR/checkpoints/ while training: rerunning "
    "the same command resumes from the last checkpoint; a finished DIR is left as it is unless --overwrite."
)

OutputDir = Annotated[str, typer.Option("-o", "--output", help="Output model directory.")]
Epochs = Annotated[float, typer.Option("--epochs", help="Training epochs.")]
LearningRate = Annotated[float, typer.Option("--lr", "--learning-rate", help="Peak learning rate.")]
EffectiveBatch = Annotated[int, typer.Option("--batch-size", help="Effective batch: per-device x gradient "
                                             "accumulation x processes; psr computes the accumulation.")]
PerDevice = Annotated[int, typer.Option("--per-device-batch-size", help="Sequences per forward pass per process.")]
MaxLength = Annotated[int, typer.Option("--max-length", help="Token limit of one example; longer records are "
                                        "counted and left out.")]
SaveSteps = Annotated[int, typer.Option("--save-steps", help="Checkpoint every N optimizer steps.")]
KeepCheckpoints = Annotated[bool, typer.Option("--keep-checkpoints", help="Keep DIR/checkpoints/ after success.")]
Resume = Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from the last checkpoint in "
                                      "DIR/checkpoints/ when there is one.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Delete a previous run in DIR (finished or not) "
                                         "and start afresh.")]
MaxSteps = Annotated[int, typer.Option("--max-steps", help="Stop after N optimizer steps (-1: all epochs).")]
Warmup = Annotated[float, typer.Option("--warmup", help="Linear warmup: steps (>= 1) or a fraction of all steps.")]
Scheduler = Annotated[str, typer.Option("--lr-scheduler", help="transformers scheduler name: linear | cosine | "
                                        "constant | ...")]
GradCkpt = Annotated[bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing",
                                               help="Default: on for GPU; always off on CPU.")]
Lora = Annotated[bool, typer.Option("--lora", help="Train a LoRA adapter (peft, all linear layers) and merge it "
                                    "into the saved model.")]
LoraR = Annotated[int, typer.Option("--lora-r", help="LoRA rank.")]
ReportTo = Annotated[str, typer.Option("--report-to", help="Also log the training metrics to: none | wandb "
                                       "(WANDB_PROJECT, WANDB_MODE=offline, ... from the environment) | tensorboard "
                                       "(to DIR/runs, or $TENSORBOARD_LOGGING_DIR). metrics.jsonl is written "
                                       "either way.")]
LoraAlpha = Annotated[int, typer.Option("--lora-alpha", help="LoRA alpha.")]


@dataclass
class TrainJob:
    """What a training command gets from the shared options."""

    inputs: list[str]
    cfg: TrainConfig
    limit: int | None


def train_job(
    inputs: O.Inputs = None,
    output: OutputDir = "",
    model: O.Model = None,
    epochs: Epochs = 1.0,
    learning_rate: LearningRate = 5e-7,
    batch_size: EffectiveBatch = 32,
    per_device_batch_size: PerDevice = 1,
    max_length: MaxLength = 4096,
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
    report_to: ReportTo = "none",
) -> TrainJob:
    check_numbers(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
                  per_device_batch_size=per_device_batch_size, max_length=max_length, warmup=warmup,
                  save_steps=save_steps, max_steps=max_steps, lora_r=lora_r, lora_alpha=lora_alpha)
    check_outputs(inputs or ["-"], {"-o": output}, files=False)
    check_training_output(output, inputs or [], model)
    cfg = TrainConfig(model=model or "", output=output, epochs=epochs, learning_rate=learning_rate,
                      batch_size=batch_size, per_device_batch_size=per_device_batch_size, max_length=max_length,
                      seed=seed, lr_scheduler=lr_scheduler, warmup=warmup, save_steps=save_steps,
                      keep_checkpoints=keep_checkpoints, resume=resume, overwrite=overwrite, max_steps=max_steps,
                      gradient_checkpointing=gradient_checkpointing, dtype=dtype, trust_remote_code=trust_remote_code,
                      lora=lora, lora_r=lora_r, lora_alpha=lora_alpha, report_to=report_to)
    return TrainJob(inputs or ["-"], cfg, limit)


# What each numeric training option must be, checked before anything (a model, checkpoints/) is touched.
_POSITIVE = ("epochs", "learning_rate")  # > 0
_AT_LEAST_ONE = ("batch_size", "per_device_batch_size", "max_length", "save_steps", "lora_r", "lora_alpha")
_OPTION = {"learning_rate": "--lr"}


def check_numbers(**values: float) -> None:
    """InputError naming the option for a bad numeric training option (-1 means "all epochs" for max_steps)."""
    def fail(name: str, want: str) -> None:
        opt = _OPTION.get(name, "--" + name.replace("_", "-"))
        raise InputError(f"{opt} must be {want}, got {values[name]:g}")

    for name, v in values.items():
        if v != v or v in (float("inf"), float("-inf")):
            fail(name, "a finite number")
        if name in _POSITIVE and v <= 0:
            fail(name, "> 0")
        if name in _AT_LEAST_ONE and v < 1:
            fail(name, ">= 1")
        if name == "warmup" and v < 0:
            fail(name, ">= 0 (steps, or a fraction of all steps)")
        if name == "max_steps" and v != -1 and v < 1:
            fail(name, ">= 1, or -1 for all epochs")


def check_training_output(output: str, inputs: list[str], model: str | None) -> None:
    """The output directory is rewritten (wholly, with --overwrite): it must not be the starting model nor hold
    an input."""
    if not output:
        return
    out = os.path.realpath(output)
    if model and os.path.exists(model) and os.path.realpath(model) == out:
        raise InputError(f"-o {output} is the starting model --model {model}; training would overwrite it: "
                         "write the new model to another directory")
    for i in inputs:
        if i != "-" and os.path.realpath(i).startswith(out + os.sep):
            raise InputError(f"the input -i {i} is inside the output directory -o {output}, which training "
                             "rewrites; move it out or choose another -o")


def training_options(epochs: float, learning_rate: float, batch_size: int, **defaults: Any):
    """Decorator: the shared training options, with the command's paper defaults, around the command's own
    options (--help: -i, -o, --model, the command's own, then the rest); the command gets them as `job`."""
    return O.with_options(train_job, "job", after="model", epochs=epochs, learning_rate=learning_rate,
                          batch_size=batch_size, **defaults)
