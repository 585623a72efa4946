"""``psr step-dpo``: Mi + PPD(Mi) -> Mi+1 (paper §3.4). Reads PPD JSONL, writes a model directory.

Whole-solution pairs (empty ``previous_steps``, ``is_final`` true) train the SRLM baseline the same
way. See psr.training.step_dpo for the tokenization and psr.training.common for the output layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from psr.core.errors import InputError, OptionError
from psr.core.options import option
from psr.core.records import read_records, select
from psr.training import common, models
from psr.training import step_dpo as dpo_training
from psr.training.config import TrainConfig
from psr.training.step_dpo import DEFAULT_BETA, LOSSES, DPOOptions

STEP_DPO_DEFAULTS = dict(epochs=1.0, learning_rate=5e-7, batch_size=32)  # paper §4


@dataclass
class StepDPOConfig(TrainConfig):
    """The training options plus step-DPO's own."""

    beta: float = option(DEFAULT_BETA, "--beta", help="DPO beta: how far the policy may move from the reference.")
    precompute_ref_log_probs: bool = option(
        False,
        "--precompute-ref-log-probs",
        help="Score all pairs with the reference once before training, so no second model sits in memory.",
    )
    # > 0 adds TRL's "sft" loss (NLL of the chosen step), as RPO / Iterative RPO (Pang et al., 2024) do
    sft_weight: float = option(
        0.0,
        "--sft-weight",
        help="Add the NLL of the chosen step to the DPO loss with this "
        "weight (RPO; TRL's 'sft' loss). 0, the default, is the paper's plain step-DPO.",
    )
    loss: Literal[LOSSES] = option(
        "sigmoid",
        "--loss",
        help="TRL's preference loss: sigmoid (DPO, the paper's; the "
        f"default), or {', '.join(LOSSES[1:])}. apo_zero raises the chosen step and lowers "
        "the rejected one outright, where DPO may lower both.",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.beta > 0:
            raise OptionError("must be > 0", "--beta")
        if self.sft_weight < 0:
            raise OptionError("must be >= 0", "--sft-weight")

    @property
    def dpo(self) -> DPOOptions:
        return DPOOptions(
            beta=self.beta,
            precompute_ref_log_probs=self.precompute_ref_log_probs,
            sft_weight=self.sft_weight,
            loss=self.loss,
        )


def run(inputs: list[str], cfg: StepDPOConfig | TrainConfig, *, limit: int | None = None, callbacks=()) -> dict:
    """Train and write ``cfg.output``; returns the resolved config (also saved as psr_config.json). A plain
    ``TrainConfig`` trains with step-DPO's defaults.

    ``callbacks``: extra transformers TrainerCallbacks (progress displays, tests).
    """
    opts = cfg.dpo if isinstance(cfg, StepDPOConfig) else DPOOptions()
    done = common.skip_if_done(cfg, "step-dpo")
    if done is not None:
        return done
    common.check_inputs(inputs)
    records = select(read_records(inputs, "ppd"), None, limit)
    if not records:
        raise InputError("no records to train on (--limit 0?)")
    tokenizer = models.load_tokenizer(cfg)
    examples, too_long, truncated = dpo_training.build_examples(tokenizer, records, cfg.max_length)
    if too_long:
        common.main_warn(
            f"step-dpo: {len(too_long)} of {len(records)} pairs have a step longer than "
            f"--max-length {cfg.max_length} tokens and are left out (first: {', '.join(too_long[:5])})"
        )
    if truncated:
        common.main_info(f"step-dpo: {truncated} prompts were cut on the left to fit --max-length {cfg.max_length}")
    if not examples:
        raise InputError(f"all {len(records)} pairs are longer than --max-length {cfg.max_length} tokens")
    resume_from = common.prepare_output(cfg)
    n_final = sum(r["is_final"] for r in records)
    common.main_info(
        f"step-dpo: {len(examples)} pairs ({n_final} final steps), {opts.loss} loss, beta {opts.beta:g}, "
        + (f"sft weight {opts.sft_weight:g}, " if opts.sft_weight else "")
        + f"{cfg.epochs:g} epochs, lr {cfg.learning_rate:g}, effective batch {cfg.batch_size}"
    )
    trainer = dpo_training.make_trainer(cfg, opts, examples, tokenizer, callbacks)
    common.train(trainer, resume_from)
    return common.finish(
        trainer,
        tokenizer,
        cfg,
        "step-dpo",
        {
            "pairs": len(examples),
            "final_step_pairs": n_final,
            "loss": opts.loss,
            "beta": opts.beta,
            "sft_weight": opts.sft_weight,
            "precompute_ref_log_probs": opts.precompute_ref_log_probs,
            "too_long": len(too_long),
            "too_long_ids": too_long[:100],
            "truncated_prompts": truncated,
            "resumed_from": resume_from,
        },
    )
