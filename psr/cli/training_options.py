"""The options `psr sft`, `psr step-dpo` and `psr train-prm` share, declared once, and the TrainConfig they make."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

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

@dataclass
class TrainJob:
    """What a training command gets from the shared options."""

    inputs: list[str]
    cfg: TrainConfig
    limit: int | None


@O.with_options(O.dataclass_options(TrainConfig), "cfg")
def train_job(
    inputs: O.Inputs = None,
    model: O.Model = None,
    limit: O.Limit = None,
    seed: O.Seed = 0,
    dtype: O.Dtype = "auto",
    trust_remote_code: O.TrustRemoteCode = False,
    *,
    cfg: TrainConfig,
) -> TrainJob:
    check_numbers(**{k: getattr(cfg, k) for k in ("epochs", "learning_rate", "batch_size", "per_device_batch_size",
                                                  "max_length", "warmup", "save_steps", "max_steps", "lora_r",
                                                  "lora_alpha")})
    check_outputs(inputs or ["-"], {"-o": cfg.output}, files=False)
    check_training_output(cfg.output, inputs or [], model)
    cfg = replace(cfg, model=model or "", seed=seed, dtype=dtype, trust_remote_code=trust_remote_code)
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


def paper_defaults(defaults: dict[str, float], more: str = "") -> str:
    """The help's sentence on a command's paper defaults, from the same dict its options default to."""
    epochs, lr = defaults["epochs"], f"{defaults['learning_rate']:g}".replace("e-0", "e-")  # 1e-6, not 1e-06
    return (f"Paper defaults: {epochs:g} epoch{'s' if epochs != 1 else ''}, lr {lr}, "
            f"effective batch {defaults['batch_size']}{more}. ")
