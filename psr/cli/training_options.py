"""The options `psr sft`, `psr step-dpo` and `psr train-prm` share, declared once, and the TrainConfig they make."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from psr.cli import options as O
from psr.core.errors import InputError
from psr.core.paths import check_outputs
from psr.training.config import TrainConfig

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


def train_job(cls: type[TrainConfig]) -> Any:
    """The option group of a training command whose config is ``cls`` (TrainConfig or a stage's subclass)."""

    @O.with_options(O.dataclass_options(cls), "cfg")
    def job(
        inputs: O.Inputs = None,
        model: O.Model = None,
        limit: O.Limit = None,
        seed: O.Seed = 0,
        dtype: O.Dtype = "auto",
        trust_remote_code: O.TrustRemoteCode = False,
        *,
        cfg: TrainConfig,
    ) -> TrainJob:
        check_outputs(inputs or ["-"], {"-o": cfg.output}, files=False)
        check_training_output(cfg.output, inputs or [], model)
        cfg = replace(cfg, model=model or "", seed=seed, dtype=dtype, trust_remote_code=trust_remote_code)
        return TrainJob(inputs or ["-"], cfg, limit)

    job.__name__ = f"train_job({cls.__name__})"
    return job


def check_training_output(output: str, inputs: list[str], model: str | None) -> None:
    """The output directory is rewritten (wholly, with --overwrite): it must not be the starting model nor hold
    an input."""
    if not output:
        return
    out = os.path.realpath(output)
    if model and os.path.exists(model) and os.path.realpath(model) == out:
        raise InputError(
            f"-o {output} is the starting model --model {model}; training would overwrite it: "
            "write the new model to another directory"
        )
    for i in inputs:
        if i != "-" and os.path.realpath(i).startswith(out + os.sep):
            raise InputError(
                f"the input -i {i} is inside the output directory -o {output}, which training "
                "rewrites; move it out or choose another -o"
            )


def training_options(
    epochs: float, learning_rate: float, batch_size: int, cls: type[TrainConfig] = TrainConfig, **defaults: Any
):
    """Decorator: the training options of ``cls`` (the shared ones, then the stage's own fields), with the command's
    paper defaults; the command gets them as `job` (``job.cfg`` a ``cls``)."""
    return O.with_options(
        train_job(cls), "job", epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, **defaults
    )


def paper_defaults(defaults: dict[str, float], more: str = "") -> str:
    """The help's sentence on a command's paper defaults, from the same dict its options default to."""
    epochs, lr = defaults["epochs"], f"{defaults['learning_rate']:g}".replace("e-0", "e-")  # 1e-6, not 1e-06
    return (
        f"Paper defaults: {epochs:g} epoch{'s' if epochs != 1 else ''}, lr {lr}, "
        f"effective batch {defaults['batch_size']}{more}. "
    )
