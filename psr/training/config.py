"""The training stages' shared config (``psr sft``, ``psr step-dpo``, ``psr train-prm``): each field declared with
``option`` is a flag of every training command; the numbers are checked here, before a model is looked at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from psr.core.errors import InputError
from psr.core.options import option

REPORT_TO = {"none": None, "wandb": "wandb", "tensorboard": "tensorboard"}  # value -> the module it needs


@dataclass
class TrainConfig:
    """Options shared by the training stages (the CLI flags of ``psr sft`` and ``psr step-dpo``)."""

    # model, seed, dtype, trust_remote_code: set from the options the training commands share with the engines
    model: str = ""  # starting model: a directory (or a hub name)
    output: str = option("", "--output", "-o", help="Output model directory.")
    epochs: float = option(1.0, "--epochs", help="Training epochs.")
    learning_rate: float = option(5e-7, "--lr", "--learning-rate", help="Peak learning rate.")
    batch_size: int = option(
        32,
        "--batch-size",
        help="Effective batch: per-device x gradient accumulation x processes; psr computes the accumulation.",
    )
    per_device_batch_size: int = option(1, "--per-device-batch-size", help="Sequences per forward pass per process.")
    max_length: int = option(
        4096, "--max-length", help="Token limit of one example; longer records are counted and left out."
    )
    seed: int = 0
    warmup: float = option(0.0, "--warmup", help="Linear warmup: steps (>= 1) or a fraction of all steps.")
    lr_scheduler: str = option(
        "linear", "--lr-scheduler", help="transformers scheduler name: linear | cosine | constant | ..."
    )
    save_steps: int = option(200, "--save-steps", help="Checkpoint every N optimizer steps.")
    keep_checkpoints: bool = option(False, "--keep-checkpoints", help="Keep DIR/checkpoints/ after success.")
    resume: bool = option(
        True, "--resume/--no-resume", help="Continue from the last checkpoint in DIR/checkpoints/ when there is one."
    )
    overwrite: bool = option(
        False, "--overwrite", help="Delete a previous run in DIR (finished or not) and start afresh."
    )
    max_steps: int = option(-1, "--max-steps", help="Stop after N optimizer steps (-1: all epochs).")
    gradient_checkpointing: bool | None = option(
        None, "--gradient-checkpointing/--no-gradient-checkpointing", help="Default: on for GPU; always off on CPU."
    )
    dtype: str = "auto"  # auto: bf16 on GPU, fp32 on CPU
    trust_remote_code: bool = False
    lora: bool = option(
        False, "--lora", help="Train a LoRA adapter (peft, all linear layers) and merge it into the saved model."
    )
    lora_r: int = option(16, "--lora-r", help="LoRA rank.")
    lora_alpha: int = option(32, "--lora-alpha", help="LoRA alpha.")
    lora_dropout: float = 0.05
    logging_steps: int = 1
    # TrainingArguments.report_to (TRL logs there)
    report_to: Literal[tuple(REPORT_TO)] = option(
        "none",
        "--report-to",
        help="Also log the training metrics to: none | wandb "
        "(WANDB_PROJECT, WANDB_MODE=offline, ... from the environment) | tensorboard (to "
        "DIR/runs, or $TENSORBOARD_LOGGING_DIR). metrics.jsonl is written either way.",
    )

    def __post_init__(self) -> None:
        check_numbers(
            **{
                k: getattr(self, k)
                for k in (
                    "epochs",
                    "learning_rate",
                    "batch_size",
                    "per_device_batch_size",
                    "max_length",
                    "warmup",
                    "save_steps",
                    "max_steps",
                    "lora_r",
                    "lora_alpha",
                )
            }
        )


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
