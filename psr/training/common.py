"""What sft and step-dpo share: TRL config building, effective-batch math, CPU/GPU
settings, checkpoints and resume, and writing the output directory from the main process only.

Output directory layout (``-o DIR``)::

    DIR/config.json, model.safetensors, tokenizer*, chat_template.jinja   the trained model
    DIR/psr_config.json    the resolved run configuration; written last, so it marks a finished run
    DIR/metrics.jsonl      one line per logged optimizer step (loss, learning rate, DPO rewards, ...)
    DIR/checkpoints/       Trainer checkpoints while training (removed after success unless kept)

Every process of an ``accelerate launch`` runs the same code; only the main process (RANK 0) writes
metrics and moves files, and all of them take part in saving (ZeRO-3 and FSDP gather weights then).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import sys
from typing import Any

from psr.core.errors import InputError, PsrError
from psr.core.log import info, warn
from psr.training.config import REPORT_TO, TrainConfig  # noqa: F401 (TrainConfig: its old home)
from psr.training.lora import params_sharded, save_gathered_lora
from psr.training.models import load_model, on_gpu, stop_at_end_of_turn, torch_dtype

CONFIG_NAME = "psr_config.json"
METRICS_NAME = "metrics.jsonl"
CHECKPOINTS = "checkpoints"


# ---------------------------------------------------------------------------------------------
# Processes and batches


def world_size() -> int:
    """Processes in this run (``accelerate launch`` / torchrun set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def main_info(msg: str) -> None:
    """Stage messages once per run, not once per process."""
    if is_main_process():
        info(msg)


def main_warn(msg: str) -> None:
    if is_main_process():
        warn(msg)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def check_inputs(inputs: list[str]) -> None:
    if world_size() > 1 and "-" in inputs:
        raise InputError("under accelerate launch every process reads the inputs: pass files with -i, not stdin")


def grad_accumulation(batch_size: int, per_device: int, processes: int) -> int:
    """Accumulation steps so that per_device x accumulation x processes is the effective batch.

    When it does not divide evenly the accumulation rounds up (the effective batch grows a little
    rather than shrinks) and a warning names the batch actually used.
    """
    if batch_size < 1 or per_device < 1:
        raise InputError(f"--batch-size and --per-device-batch-size must be >= 1, got {batch_size} and {per_device}")
    accum = max(1, math.ceil(batch_size / (per_device * processes)))
    if per_device * accum * processes != batch_size:
        main_warn(
            f"effective batch {batch_size} is not per-device {per_device} x processes {processes} x an "
            f"integer; using accumulation {accum}, an effective batch of {per_device * accum * processes}"
        )
    return accum


# ---------------------------------------------------------------------------------------------
# Trainer arguments


def checkpoints_dir(cfg: TrainConfig) -> str:
    return os.path.join(cfg.output, CHECKPOINTS)


def report_to(cfg: TrainConfig) -> str:
    """``--report-to`` checked up front: a missing logging library is a one-line error, not the Trainer's."""
    if cfg.report_to not in REPORT_TO:
        raise InputError(f"--report-to must be one of {', '.join(REPORT_TO)}, got {cfg.report_to!r}")
    needs = REPORT_TO[cfg.report_to]
    if needs is not None:
        import importlib.util

        if importlib.util.find_spec(needs) is None and not (
            needs == "tensorboard" and importlib.util.find_spec("tensorboardX")
        ):
            raise InputError(f"--report-to {cfg.report_to} needs the {needs} package (pip install {needs})")
    if cfg.report_to == "tensorboard":
        # transformers' default is under output_dir, DIR/checkpoints/, which is removed after a finished run.
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", os.path.join(cfg.output, "runs"))
    return cfg.report_to


def trainer_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """Arguments common to SFTConfig and DPOConfig (both are transformers TrainingArguments)."""
    gpu = on_gpu()
    dtype = torch_dtype(cfg)
    import torch

    return dict(
        output_dir=checkpoints_dir(cfg),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=grad_accumulation(cfg.batch_size, cfg.per_device_batch_size, world_size()),
        max_length=cfg.max_length,
        seed=cfg.seed,
        use_cpu=not gpu,
        bf16=gpu and dtype == torch.bfloat16,
        fp16=gpu and dtype == torch.float16,
        # Checkpointing trades compute for memory; on CPU memory is not the limit and it only slows down.
        gradient_checkpointing=gpu and (cfg.gradient_checkpointing is not False),
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=1,
        logging_steps=cfg.logging_steps,
        report_to=report_to(cfg),
        disable_tqdm=os.environ.get("PSR_QUIET") == "1",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False if world_size() > 1 and not cfg.lora else None,
    )


# ---------------------------------------------------------------------------------------------
# The output directory


def read_done(out: str) -> dict | None:
    """The resolved config of a finished run in ``out``, or None."""
    path = os.path.join(out, CONFIG_NAME)
    if not os.path.isfile(path):
        return None
    with open(path) as fh:
        done = json.load(fh)
    return done if done.get("complete") else None


def prepare_output(cfg: TrainConfig) -> str | None:
    """Check the output directory and pick the checkpoint to resume from (None: start afresh).

    Every process runs this; only the main process deletes anything.
    """
    out = cfg.output
    if not out:
        raise InputError("-o/--output is required: the directory to write the trained model to")
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError("output must be a directory, and this is a file", out)
    if os.path.isdir(out) and os.listdir(out):
        ours = (
            os.path.exists(os.path.join(out, CONFIG_NAME))
            or os.path.isdir(checkpoints_dir(cfg))
            or os.path.exists(os.path.join(out, METRICS_NAME))
        )
        if not ours:
            raise InputError("output directory exists and is not a psr training output; pick another -o", out)
        if cfg.overwrite:
            if is_main_process():
                shutil.rmtree(out)
            _barrier()
    if cfg.overwrite or not cfg.resume:
        return None
    return last_complete_checkpoint(checkpoints_dir(cfg))


def last_complete_checkpoint(folder: str) -> str | None:
    """The newest ``checkpoint-N`` that was saved to the end.

    Trainer writes trainer_state.json after the weights, optimizer and RNG states, so a checkpoint
    without it was cut short by a kill; it is removed (main process) and the one before it is used.
    """
    if not os.path.isdir(folder):
        return None
    found = sorted(
        (int(m.group(1)), name)
        for name in os.listdir(folder)
        if (m := re.fullmatch(r"checkpoint-(\d+)", name)) and os.path.isdir(os.path.join(folder, name))
    )
    for _, name in reversed(found):
        path = os.path.join(folder, name)
        if os.path.isfile(os.path.join(path, "trainer_state.json")):
            return path
        if is_main_process():
            warn(f"{path}: incomplete checkpoint (interrupted while saving); removed")
            shutil.rmtree(path, ignore_errors=True)
    return None


def _barrier() -> None:
    if world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def metrics_writer(out: str):
    """A TrainerCallback writing every log line to ``DIR/metrics.jsonl`` (main process only).

    On resume it first cuts the lines logged after the checkpoint, so each step appears once.
    (Built here so that importing psr, for ``psr --help``, does not import transformers.)
    """
    from transformers import TrainerCallback

    path = os.path.join(out, METRICS_NAME)

    class MetricsWriter(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            if not state.is_world_process_zero:
                return
            os.makedirs(out, exist_ok=True)
            keep = []
            if os.path.exists(path) and state.global_step > 0:
                with open(path) as fh:
                    for line in fh:
                        try:
                            rec = json.loads(line)
                        except ValueError:
                            break  # a torn last line from a kill
                        if rec.get("step", 0) <= state.global_step:
                            keep.append(line if line.endswith("\n") else line + "\n")
            with open(path, "w") as fh:
                fh.writelines(keep)

        def on_log(self, args, state, control, logs=None, **kw):
            if state.is_world_process_zero and logs:
                with open(path, "a") as fh:
                    fh.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")

        def on_train_end(self, args, state, control, **kw):
            # Every rank says so: a distributed run shows that all of them trained.
            dist = args.distributed_state
            how = f" ({dist.distributed_type.value}, {dist.backend})" if world_size() > 1 else ""
            info(f"rank {rank()} of {world_size()}{how}: trained to optimizer step {state.global_step}")

    return MetricsWriter()


def logs_to_stderr(trainer) -> None:
    """Trainer prints its log lines to stdout (tqdm.write / print); psr keeps stdout for records.

    The tqdm bar stays (it draws on stderr); log lines go to stderr, or nowhere with PSR_QUIET=1
    (metrics.jsonl has them all).
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class StderrProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if state.is_world_process_zero and self.training_bar is not None and logs:
                line = ", ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items() if k != "total_flos"
                )
                self.training_bar.write(f"step {state.global_step}: {line}", file=sys.stderr)

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not trainer.args.disable_tqdm:
        trainer.add_callback(StderrProgress())


def train(trainer, resume_from: str | None) -> None:
    if resume_from:
        main_info(f"resuming from {resume_from}")
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    except ValueError as e:
        # transformers raises ValueError for a checkpoint it cannot use (e.g. saved by another setup).
        if resume_from and "checkpoint" in str(e).lower():
            raise PsrError(f"cannot resume from {resume_from}: {e}; rerun with --overwrite") from None
        raise


def finish(trainer, tokenizer, cfg: TrainConfig, stage: str, extra: dict) -> dict:
    """Save the final model into ``cfg.output`` and write psr_config.json last; returns the summary.

    The model is saved to a temporary folder and moved in, so a kill leaves either the old state
    (rerun resumes from the last checkpoint) or the whole model.
    """
    out = cfg.output
    tmp = os.path.join(out, ".final.tmp")
    model = trainer.model
    if cfg.lora and params_sharded(trainer):
        # ZeRO-3 / FSDP: merging on the sharded model would fold the adapter into slices (psr.training.lora)
        merged = save_gathered_lora(trainer, lambda: load_model(cfg), tmp)
        eos_ids = stop_at_end_of_turn(merged or trainer.accelerator.unwrap_model(model), tokenizer)
        if merged is not None:
            merged.generation_config.save_pretrained(tmp)  # the end-of-turn stop set after the save
    elif cfg.lora:
        # Merge the adapter so the output is a plain model the engines (hf, vLLM) load directly.
        model = trainer.accelerator.unwrap_model(model).merge_and_unload()
        eos_ids = stop_at_end_of_turn(model, tokenizer)
        if trainer.accelerator.is_main_process:
            model.save_pretrained(tmp)
    else:
        eos_ids = stop_at_end_of_turn(trainer.accelerator.unwrap_model(model), tokenizer)
        trainer.save_model(tmp)  # every process: ZeRO-3 / FSDP gather the weights here
    summary = {
        "stage": stage,
        "complete": True,
        "base_model": cfg.model,
        "world_size": world_size(),
        "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps,
        "effective_batch_size": trainer.args.per_device_train_batch_size
        * trainer.args.gradient_accumulation_steps
        * world_size(),
        "global_steps": trainer.state.global_step,
        "eos_token_ids": eos_ids,
        # the shared fields only: a stage's own options (beta, the PRM format) are in its summary fields
        "config": {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)},
        **extra,
        "versions": _versions(),
    }
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(tmp)
        for name in os.listdir(tmp):
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
        os.rmdir(tmp)
        part = os.path.join(out, CONFIG_NAME + ".tmp")
        with open(part, "w") as fh:
            json.dump(summary, fh, indent=2)
        os.replace(part, os.path.join(out, CONFIG_NAME))
        # Only once the run is marked finished: until then a rerun resumes from the checkpoints.
        if not cfg.keep_checkpoints:
            shutil.rmtree(checkpoints_dir(cfg), ignore_errors=True)
        info(f"{stage}: wrote {out} ({trainer.state.global_step} optimizer steps)")
    trainer.accelerator.wait_for_everyone()
    return summary


def _versions() -> dict[str, str]:
    import torch
    import transformers
    import trl

    return {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}


def skip_if_done(cfg: TrainConfig, stage: str) -> dict | None:
    """A finished run in the output directory is kept unless --overwrite."""
    if cfg.overwrite:
        return None
    done = read_done(cfg.output)
    if done is not None:
        if done.get("stage") != stage:
            raise InputError(
                f"output directory holds a finished {done.get('stage')} run; pick another -o or pass --overwrite",
                cfg.output,
            )
        main_info(f"{stage}: {cfg.output} already holds a finished run; nothing to do (--overwrite to retrain)")
    return done
