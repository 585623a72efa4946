"""``psr train-prm``: stepwise-labelled solutions -> a process reward model directory (paper §3.2).

Reads TRL "stepwise supervision" records (``prompt``, ``completions``, ``labels``) and PRM800K's raw
phase1/phase2 lines, mixed in any input files; see psr.training.prm for the conversion and the
training, psr.engines.prm for the text format and the scoring that the output is made for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from psr.core.errors import InputError
from psr.core.options import option
from psr.core.records import select
from psr.engines.prm import PRMFormat
from psr.training import common
from psr.training import prm as prm_training
from psr.training.config import TrainConfig

_FMT = PRMFormat()


@dataclass
class PRMTrainConfig(TrainConfig):
    """The training options plus the PRM's own: its text format and the held-out share."""

    step_tag: str = option(
        _FMT.step_tag, "--step-tag", help="Text after every step (its last token is where the label is read)."
    )
    good: str = option(_FMT.good, "--good-token", help="Label of a good step (one token).")
    bad: str = option(_FMT.bad, "--bad-token", help="Label of a bad step (one token).")
    neutral: Literal["good", "bad"] = option(
        "good", "--neutral", help="PRM800K rating 0 counts as: good (as OpenR) | bad (as TRL's converter)."
    )
    eval_fraction: float = option(
        0.05, "--eval-fraction", help="Fraction of the questions held out for step-level accuracy / AUC."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.neutral not in ("good", "bad"):  # typed on the CLI; guards a config made in Python
            raise InputError(f"--neutral must be good or bad, got {self.neutral!r}")
        if not 0 <= self.eval_fraction < 1:
            raise InputError(f"--eval-fraction must be in [0, 1), got {self.eval_fraction}")

    @property
    def fmt(self) -> PRMFormat:
        return PRMFormat(step_tag=self.step_tag, good=self.good, bad=self.bad)


def run(inputs: list[str], cfg: PRMTrainConfig | TrainConfig, *, limit: int | None = None, callbacks=()) -> dict:
    """Train and write ``cfg.output``; returns the summary (also saved as psr_config.json). A plain ``TrainConfig``
    trains with the PRM's defaults."""
    cfg = cfg if isinstance(cfg, PRMTrainConfig) else PRMTrainConfig(**vars(cfg))
    fmt, eval_fraction, neutral = cfg.fmt, cfg.eval_fraction, cfg.neutral
    done = common.skip_if_done(cfg, "train-prm")
    if done is not None:
        return done
    examples = select(prm_training.load_examples(inputs, neutral_good=neutral == "good"), None, limit)
    if not examples:
        raise InputError("no records to train on (--limit 0?)")
    return prm_training.train(examples, cfg, fmt, eval_fraction, callbacks)
