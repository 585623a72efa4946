"""Supervised fine-tuning M0 -> M1 on IFT and EFT chats (paper §3.2) with TRL's SFTTrainer.

Examples are tokenized here, not by TRL, for two reasons: records too long for ``max_length`` must
be counted and reported (TRL would silently truncate them), and the loss mask must cover exactly
the assistant turn. Each example is ``input_ids`` plus a ``completion_mask`` (1 on the assistant
tokens, end-of-turn included); SFTTrainer with ``completion_only_loss=True`` turns the mask into
labels (-100 elsewhere).
"""

from __future__ import annotations

from psr.core.prompts import judge_prompt, srlm_score_prompt, step_prompt
from psr.core.steps import format_steps
from psr.training import common, models
from psr.training.config import TrainConfig


def ift_chat(rec: dict) -> tuple[str, str]:
    """IFT: Figure 4 prompt -> the steps as ``Step n: ...`` lines."""
    return step_prompt(rec["question"]), format_steps(rec["steps"])


def eft_chat(rec: dict) -> tuple[str, str]:
    """EFT: Figure 5 prompt -> the judgment (explanation ending in [[A]] or [[B]]); a scoring-format record
    (``"format": "scoring"``, the SRLM baseline): Yuan et al.'s prompt on its response -> the judgment
    (justification ending in ``Score: n``)."""
    if rec.get("format") == "scoring":
        return srlm_score_prompt(rec["question"], rec["response"]), rec["judgment"]
    return judge_prompt(rec["question"], rec["previous_steps"], rec["step_a"], rec["step_b"]), rec["judgment"]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def tokenize_chat(tokenizer, user: str, assistant: str) -> dict:
    """``input_ids`` of the rendered chat and a ``completion_mask`` that is 1 on the assistant part only."""
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}], tokenize=False
    )
    enc = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt_ids = enc(prompt)
    if full.startswith(prompt):
        # Tokenize the two parts apart: the model sees exactly these prompt ids at inference.
        completion_ids = enc(full[len(prompt) :])
    else:
        # A template that renders the prompt differently once the answer follows (e.g. it drops
        # reasoning blocks): the answer starts where the two token sequences diverge.
        full_ids = enc(full)
        cut = _common_prefix(prompt_ids, full_ids)
        prompt_ids, completion_ids = full_ids[:cut], full_ids[cut:]
    return {
        "input_ids": prompt_ids + completion_ids,
        "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids),
    }


def build_examples(tokenizer, records: list[dict], max_length: int) -> tuple[list[dict], list[str]]:
    """Tokenized examples, and the ids of records longer than ``max_length`` (left out, not truncated:
    a truncated answer would teach the model to stop mid-solution or without a verdict)."""
    examples, too_long = [], []
    for rec in records:
        user, assistant = ift_chat(rec) if "steps" in rec else eft_chat(rec)
        ex = tokenize_chat(tokenizer, user, assistant)
        if len(ex["input_ids"]) > max_length:
            too_long.append(rec["id"])
        else:
            examples.append(ex)
    return examples, too_long


def make_trainer(cfg: TrainConfig, examples: list[dict], tokenizer, callbacks=()):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(**common.trainer_kwargs(cfg), completion_only_loss=True, packing=False)
    trainer = SFTTrainer(
        model=models.load_model(cfg),
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=models.lora_config(cfg),
        callbacks=[common.metrics_writer(cfg.output), *callbacks],
    )
    common.logs_to_stderr(trainer)
    return trainer
