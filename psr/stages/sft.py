"""``psr sft``: M0 + IFT + EFT -> M1 (paper §3.2). Reads JSONL, writes a model directory.

Each input line is an IFT record (has ``steps``) or an EFT record (has ``judgment``: pairwise, or
scoring-format with ``"format": "scoring"``); all kinds may share a file. See psr.training.sft for the chats and psr.training.common for the output layout.
"""

from __future__ import annotations

from psr.core.errors import InputError
from psr.core.records import eft_kind, iter_lines, select, validate
from psr.training import common, models
from psr.training import sft as sft_training
from psr.training.config import TrainConfig

SFT_DEFAULTS = dict(epochs=3.0, learning_rate=1e-6, batch_size=32)  # paper §4


def read_sft_records(paths: list[str]) -> list[dict]:
    """IFT and EFT records (both EFT formats) from every path, validated, with FILE:LINE errors and unique ids."""
    out, first_seen = [], {}
    for path in paths:
        name = "<stdin>" if path == "-" else path
        for lineno, rec in iter_lines(path):
            kind = (
                "ift"
                if isinstance(rec, dict) and "steps" in rec
                else eft_kind(rec)
                if isinstance(rec, dict) and "judgment" in rec
                else None
            )
            if kind is None:
                raise InputError(
                    "neither an IFT record (with 'steps') nor an EFT record (with 'judgment')", name, lineno
                )
            problem = validate(rec, kind)
            if problem is None and kind == "ift" and not rec["steps"]:
                problem = "field 'steps' is empty (ift record)"
            if problem:
                raise InputError(problem, name, lineno)
            if rec["id"] in first_seen:
                raise InputError(f"duplicate id {rec['id']!r} (first at {first_seen[rec['id']]})", name, lineno)
            first_seen[rec["id"]] = f"{name}:{lineno}"
            out.append(rec)
    return out


def run(inputs: list[str], cfg: TrainConfig, *, limit: int | None = None, callbacks=()) -> dict:
    """Train and write ``cfg.output``; returns the resolved config (also saved as psr_config.json).

    ``callbacks``: extra transformers TrainerCallbacks (progress displays, tests).
    """
    done = common.skip_if_done(cfg, "sft")
    if done is not None:
        return done
    common.check_inputs(inputs)
    records = select(read_sft_records(inputs), None, limit)
    if not records:
        raise InputError("no records to train on (--limit 0?)")
    tokenizer = models.load_tokenizer(cfg)
    examples, too_long = sft_training.build_examples(tokenizer, records, cfg.max_length)
    n_ift = sum("steps" in r for r in records)
    long_ids = set(too_long)
    too_long_eft = sum(1 for r in records if r["id"] in long_ids and "steps" not in r)
    if too_long:
        common.main_warn(
            f"sft: {len(too_long)} of {len(records)} records ({too_long_eft} of them EFT) are longer "
            f"than --max-length {cfg.max_length} tokens and are left out "
            f"(first: {', '.join(too_long[:5])})"
        )
    if not examples:
        raise InputError(f"all {len(records)} records are longer than --max-length {cfg.max_length} tokens")
    resume_from = common.prepare_output(cfg)
    common.main_info(
        f"sft: {len(examples)} examples from {n_ift} IFT and {len(records) - n_ift} EFT records"
        f"{f' ({len(too_long)} left out as too long)' if too_long else ''}, "
        f"{cfg.epochs:g} epochs, lr {cfg.learning_rate:g}, effective batch {cfg.batch_size}"
    )
    trainer = sft_training.make_trainer(cfg, examples, tokenizer, callbacks)
    common.train(trainer, resume_from)
    return common.finish(
        trainer,
        tokenizer,
        cfg,
        "sft",
        {
            "examples": len(examples),
            "ift_records": n_ift,
            "eft_records": len(records) - n_ift,
            "too_long": len(too_long),
            "too_long_eft": too_long_eft,
            "too_long_ids": too_long[:100],
            "resumed_from": resume_from,
        },
    )
