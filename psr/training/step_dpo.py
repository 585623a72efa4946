"""Step-wise DPO Mi -> Mi+1 (paper §3.4, Eq. 6-8) with TRL's DPOTrainer.

One PPD record is one preference pair for step l = len(previous_steps) + 1:

- prompt: the Figure 4 chat prompt rendered by the chat template with the generation prompt, then
  the previous steps as the start of the assistant answer (exactly what search continued from);
- chosen / rejected: ``"Step l: <content>"`` followed by ``"\\n"`` for an inner step (the next
  step follows) or the end-of-turn token when the step ends the solution (``is_final`` for the
  chosen step, ``rejected_is_final`` for the rejected one).

TRL 1.16's DPOTrainer appends EOS to every non-conversational completion in ``_prepare_dataset``,
which would teach the model to stop after any step. We tokenize here and ``StepDPOTrainer``
takes the tokenized dataset as it is. Whole-solution pairs (SRLM baseline) are the special case
of an empty ``previous_steps`` with ``is_final`` true.

The loss is TRL's sigmoid DPO loss on the step tokens only: -log σ(β·[log πθ/πref](chosen)
- β·[log πθ/πref](rejected)), the reference being the starting model (or the LoRA base, or
log-probs precomputed once with ``precompute_ref_log_probs``).
"""

from __future__ import annotations

from dataclasses import dataclass

from psr.core.prompts import step_prompt
from psr.core.steps import assistant_prefix, step_prefix
from psr.training import common, models
from psr.training.config import TrainConfig
from psr.training.models import end_of_turn_id

DEFAULT_BETA = 0.1  # TRL's default; the paper leaves β unspecified
# TRL's pairwise preference losses (DPOConfig.loss_type). "sigmoid" is DPO, the paper's step-DPO; the others
# are the variants a user reaches for when DPO moves chosen and rejected down together, as it does on pairs
# that differ in a few tokens (a step with one wrong number): apo_zero (Anchored Preference Optimization)
# pushes the chosen step up and the rejected one down in absolute terms, not only apart.
LOSSES = (
    "sigmoid",
    "ipo",
    "hinge",
    "robust",
    "exo_pair",
    "nca_pair",
    "bco_pair",
    "sppo_hard",
    "aot",
    "apo_zero",
    "apo_down",
    "discopop",
)


@dataclass
class DPOOptions:
    beta: float = DEFAULT_BETA
    precompute_ref_log_probs: bool = False
    # > 0 adds TRL's "sft" loss (NLL of the chosen step) with this weight to the DPO loss, as RPO /
    # Iterative RPO (Pang et al., 2024) do for reasoning; 0 is the paper's plain step-DPO.
    sft_weight: float = 0.0
    loss: str = "sigmoid"  # one of LOSSES


def prompt_text(tokenizer, rec: dict) -> str:
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": step_prompt(rec["question"])}], tokenize=False, add_generation_prompt=True
    )
    return chat + assistant_prefix(rec["previous_steps"])


def step_text(rec: dict, content: str, final: bool) -> str:
    """``Step l: content`` plus the newline that leads into the next step (inner steps only)."""
    text = step_prefix(len(rec["previous_steps"]) + 1) + content
    return text if final else text + "\n"


def rejected_is_final(rec: dict) -> bool:
    """Whether the rejected step ends its solution: search writes ``rejected_is_final``; records without it
    (older files, hand-made pairs) have one ``is_final`` for both steps."""
    v = rec.get("rejected_is_final")
    return rec["is_final"] if v is None else bool(v)


def tokenize_pair(
    tokenizer, rec: dict, max_length: int | None = None, eot: int | None = None
) -> tuple[dict | None, bool]:
    """``({prompt_ids, chosen_ids, rejected_ids}, prompt_was_truncated)``; None when even the
    steps alone do not fit in ``max_length``. Long prompts lose tokens on the left (the question's
    start), keeping the steps right before the pair intact."""
    enc = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    eot = end_of_turn_id(tokenizer) if eot is None else eot
    # Each step by its own is_final: the chosen step may end the solution where the rejected one goes on
    # (or the other way round), and only a step that ends it may teach the model to stop.
    side = lambda content, final: enc(step_text(rec, content, final)) + ([eot] if final else [])  # noqa: E731
    prompt = enc(prompt_text(tokenizer, rec))
    chosen = side(rec["chosen"], rec["is_final"])
    rejected = side(rec["rejected"], rejected_is_final(rec))
    truncated = False
    if max_length is not None:
        room = max_length - max(len(chosen), len(rejected))
        if room < 1:
            return None, False
        if len(prompt) > room:
            prompt, truncated = prompt[-room:], True
    return {"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected}, truncated


def build_examples(tokenizer, records: list[dict], max_length: int) -> tuple[list[dict], list[str], int]:
    """Tokenized pairs, ids of records whose steps alone exceed ``max_length``, count of truncated prompts."""
    examples, too_long, truncated = [], [], 0
    eot = end_of_turn_id(tokenizer)
    for rec in records:
        ex, cut = tokenize_pair(tokenizer, rec, max_length, eot)
        if ex is None:
            too_long.append(rec["id"])
            continue
        examples.append(ex)
        truncated += cut
    return examples, too_long, truncated


def make_trainer(cfg: TrainConfig, opts: DPOOptions, examples: list[dict], tokenizer, callbacks=()):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    class StepDPOTrainer(DPOTrainer):
        """DPOTrainer on a dataset tokenized by psr (no EOS after inner steps, left-truncated prompts)."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    if opts.loss not in LOSSES:
        raise ValueError(f"unknown loss {opts.loss!r} (one of {', '.join(LOSSES)})")
    losses = (
        dict(loss_type=[opts.loss, "sft"], loss_weights=[1.0, opts.sft_weight])
        if opts.sft_weight > 0
        else dict(loss_type=[opts.loss])
    )
    args = DPOConfig(
        **common.trainer_kwargs(cfg),
        beta=opts.beta,
        **losses,
        precompute_ref_log_probs=opts.precompute_ref_log_probs,
        trust_remote_code=cfg.trust_remote_code,
    )
    trainer = StepDPOTrainer(
        model=models.load_model(cfg),
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=models.lora_config(cfg),
        callbacks=[common.metrics_writer(cfg.output), *callbacks],
    )
    common.logs_to_stderr(trainer)
    return trainer
