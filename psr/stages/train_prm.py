"""``psr train-prm``: stepwise-labelled solutions -> a process reward model directory (paper §3.2).

Reads TRL "stepwise supervision" records (``prompt``, ``completions``, ``labels``) and PRM800K's raw
phase1/phase2 lines, mixed in any input files; see psr.training.prm for the conversion and the
training, psr.engines.prm for the text format and the scoring that the output is made for.
"""

from __future__ import annotations

from psr.core.errors import InputError
from psr.core.records import select
from psr.engines.prm import PRMFormat
from psr.training import common
from psr.training import prm as prm_training
from psr.training.common import TrainConfig


def run(inputs: list[str], cfg: TrainConfig, fmt: PRMFormat | None = None, *, eval_fraction: float = 0.05,
        neutral: str = "good", limit: int | None = None, callbacks=()) -> dict:
    """Train and write ``cfg.output``; returns the summary (also saved as psr_config.json)."""
    if neutral not in ("good", "bad"):
        raise InputError(f"--neutral must be good or bad, got {neutral!r}")
    if not 0 <= eval_fraction < 1:
        raise InputError(f"--eval-fraction must be in [0, 1), got {eval_fraction}")
    done = common.skip_if_done(cfg, "train-prm")
    if done is not None:
        return done
    examples = select(prm_training.load_examples(inputs, neutral_good=neutral == "good"), None, limit)
    if not examples:
        raise InputError("no records to train on (--limit 0?)")
    return prm_training.train(examples, cfg, fmt or PRMFormat(), eval_fraction, callbacks)
