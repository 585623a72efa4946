"""PRM training on transformers' Trainer (TRL 1.14+ has no PRMTrainer).

The loss is cross-entropy on the label token ("+" / "-") at each step's read position, computed
from :func:`psr.engines.prm.label_logits` on the ids and positions of :func:`psr.engines.prm.encode`,
the very functions the scorer uses, so what is trained is what is read (see psr/engines/prm.py).

Also here: reading PRM800K's raw phase1/phase2 records into TRL's stepwise-supervision shape, the
eval split, and step-level accuracy / AUC.
"""

from __future__ import annotations

import json
import os
import random

from psr.core.errors import InputError
from psr.core.log import info, warn
from psr.core.records import read_records
from psr.engines.prm import CONFIG_KEY, PRMFormat, PRMScorer, PRMTokens, encode, label_logits, pad_batch
from psr.training import common, models
from psr.training.config import TrainConfig

# ---------------------------------------------------------------------------------------------
# Data


def is_prm800k(rec) -> bool:
    return isinstance(rec, dict) and isinstance(rec.get("label"), dict) and isinstance(rec.get("question"), dict)


def prm800k_to_stepwise(rec: dict, neutral_good: bool = True) -> list[dict]:
    """One raw PRM800K line -> TRL stepwise-supervision records.

    As the usual converters do (TRL's examples/datasets/prm800k.py): every non-chosen completion at
    a step ends a record of its own (chosen path so far + that alternative), and the chosen path
    (the chosen completion, or the labeler's own ``human_completion``, which is good by
    construction) ends the last record. Ratings: 1 good, -1 bad, 0 good when ``neutral_good``.
    The path stops at a step with nothing chosen (phase 2 stops labelling after the first error).
    Raises ValueError for a line that does not have the PRM800K shape.
    """
    problem = rec["question"].get("problem")
    if not isinstance(problem, str) or not problem.strip():
        raise ValueError("PRM800K record without a 'question.problem' string")
    steps = rec["label"].get("steps")
    if not isinstance(steps, list):
        raise ValueError("PRM800K record without a 'label.steps' list")

    def good(rating, where: str) -> bool:
        if rating not in (-1, 0, 1) or isinstance(rating, bool):
            raise ValueError(f"{where}: rating must be -1, 0 or 1, got {rating!r}")
        return rating == 1 or (rating == 0 and neutral_good)

    out: list[dict] = []
    path: list[str] = []
    labels: list[bool] = []
    for k, step in enumerate(steps):
        if not isinstance(step, dict):
            raise ValueError(f"label.steps[{k}] is not an object")
        comps = step.get("completions") or []
        chosen = step.get("chosen_completion")
        human = step.get("human_completion")
        if not isinstance(comps, list) or (
            chosen is not None
            and not (isinstance(chosen, int) and not isinstance(chosen, bool) and 0 <= chosen < len(comps))
        ):
            raise ValueError(f"label.steps[{k}]: bad 'completions' / 'chosen_completion'")
        for j, c in enumerate(comps):
            if not isinstance(c, dict) or not isinstance(c.get("text"), str):
                raise ValueError(f"label.steps[{k}].completions[{j}] has no 'text' string")
            if j != chosen:
                out.append(
                    {
                        "prompt": problem,
                        "completions": path + [c["text"]],
                        "labels": labels + [good(c.get("rating"), f"label.steps[{k}].completions[{j}]")],
                    }
                )
        if chosen is not None:
            c = comps[chosen]
            path, labels = (
                path + [c["text"]],
                labels + [good(c.get("rating"), f"label.steps[{k}].completions[{chosen}]")],
            )
        elif human is not None:
            text = human.get("text") if isinstance(human, dict) else human
            if not isinstance(text, str):
                raise ValueError(f"label.steps[{k}].human_completion has no text")
            path, labels = path + [text], labels + [True]
        else:
            break
    if path:
        out.append({"prompt": problem, "completions": path, "labels": labels})
    return out


def load_examples(paths: list[str], neutral_good: bool = True) -> list[dict]:
    """Stepwise-supervision records from JSONL files holding TRL records and/or raw PRM800K lines."""

    def convert(rec):
        return prm800k_to_stepwise(rec, neutral_good) if is_prm800k(rec) else rec

    recs = read_records(paths, "prm", unique_ids=False, convert=convert)
    kept = [r for r in recs if r["completions"]]
    if len(kept) != len(recs):
        warn(f"skipped {len(recs) - len(kept)} record(s) with no steps")
    return kept


def split_eval(examples: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Split by question, so that records sharing a question (PRM800K's alternatives) never straddle the split."""
    prompts = sorted({r["prompt"] for r in examples})
    random.Random(seed).shuffle(prompts)
    n_eval = round(len(prompts) * fraction)
    if fraction > 0 and n_eval == 0 and len(prompts) > 1:
        n_eval = 1
    held = set(prompts[:n_eval])
    return [r for r in examples if r["prompt"] not in held], [r for r in examples if r["prompt"] in held]


def auc(scores: list[float], labels: list[bool]) -> float | None:
    """ROC AUC (Mann-Whitney, ties count half); None when one class is absent."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    ranked = sorted([(s, 1) for s in pos] + [(s, 0) for s in neg])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        avg_rank = (i + j + 1) / 2  # ranks are 1-based
        rank_sum += avg_rank * sum(flag for _, flag in ranked[i:j])
        i = j
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def score_sharded(scorer: PRMScorer, items: list[tuple[str, list[str]]]) -> list[list[float]]:
    """``scorer.score(items)`` with the items split over the processes of an ``accelerate launch``.

    Every process must call it: under ZeRO-3 and FSDP each forward gathers parameters from all ranks, so a
    forward on one rank alone waits for the others forever. Each rank scores one contiguous shard of the
    same length (the last shard is padded with copies, dropped again), hence the same number of forward
    batches everywhere; the shards are gathered back in rank order, so every rank returns all scores.
    """
    n = common.world_size()
    if n == 1:
        return scorer.score(items)
    from accelerate.utils import gather_object

    per = -(-len(items) // n)
    mine = items[common.rank() * per : (common.rank() + 1) * per]
    probs = scorer.score(mine + [items[-1]] * (per - len(mine)))[: len(mine)]
    info(f"rank {common.rank()} of {n}: scored {len(mine)} of {len(items)} held-out examples")
    return gather_object(probs)


def evaluate(scorer: PRMScorer, examples: list[dict]) -> dict:
    """Step-level accuracy (P(+) > 0.5 vs label) and AUC over every step of ``examples``.

    Under ``accelerate launch`` every process calls it and gets the same result (see score_sharded)."""
    probs = score_sharded(scorer, [(r["prompt"], r["completions"]) for r in examples])
    scores = [p for ps in probs for p in ps]
    labels = [y for r, ps in zip(examples, probs, strict=True) for y in r["labels"][: len(ps)]]
    acc = sum((s > 0.5) == y for s, y in zip(scores, labels, strict=True)) / len(scores) if scores else None
    return {"eval_steps": len(scores), "eval_accuracy": acc, "eval_auc": auc(scores, labels)}


# ---------------------------------------------------------------------------------------------
# Training


class _Collator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, feats: list[dict]) -> dict:
        import torch

        ids, mask = pad_batch([f["input_ids"] for f in feats], self.pad_id)
        width = max(len(f["positions"]) for f in feats)
        pos = torch.full((len(feats), width), -1, dtype=torch.long)
        tgt = torch.full((len(feats), width), -100, dtype=torch.long)
        for i, f in enumerate(feats):
            pos[i, : len(f["positions"])] = torch.tensor(f["positions"])
            tgt[i, : len(f["targets"])] = torch.tensor(f["targets"])
        return {"input_ids": ids, "attention_mask": mask, "positions": pos, "targets": tgt}


def _trainer_class():
    import torch
    from transformers import Trainer

    class PRMTrainer(Trainer):
        """Cross-entropy on the label token at each read position (no label shifting anywhere)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            positions = [[p for p in row if p >= 0] for row in inputs["positions"].tolist()]
            targets = inputs["targets"][inputs["targets"] != -100]
            logits = label_logits(model, inputs["input_ids"], inputs["attention_mask"], positions)
            loss = torch.nn.functional.cross_entropy(logits.float(), targets)
            return (loss, {"logits": logits}) if return_outputs else loss

    return PRMTrainer


def featurize(tokens: PRMTokens, examples: list[dict], max_length: int) -> tuple[list[dict], int]:
    """Training features (ids, read positions, label token ids) and the number of steps cut by ``max_length``."""
    feats, cut = [], 0
    for r in examples:
        ids, pos = encode(tokens, r["prompt"], r["completions"], max_length)
        cut += len(r["completions"]) - len(pos)
        if pos:
            targets = [tokens.good_id if y else tokens.bad_id for y in r["labels"][: len(pos)]]
            feats.append({"input_ids": ids, "positions": pos, "targets": targets})
    return feats, cut


def load_tokenizer(cfg: TrainConfig):
    """Like models.load_tokenizer, without its chat-template check: a PRM reads plain text."""
    models.check_model(cfg.model)
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
    except OSError as e:
        raise InputError(f"cannot load the tokenizer: {e}", cfg.model) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def train(examples: list[dict], cfg: TrainConfig, fmt: PRMFormat, eval_fraction: float = 0.05, callbacks=()) -> dict:
    """Fine-tune ``cfg.model`` as a PRM; write model + tokenizer (+ the format in config.json) to ``cfg.output``.

    The output layout, resume from checkpoints and ``accelerate launch`` behave as for sft / step-dpo
    (psr.training.common). Step-level accuracy and AUC on the held-out questions are logged to
    metrics.jsonl before and after training, and returned in the summary.
    """
    from datasets import Dataset
    from transformers import TrainerCallback, TrainingArguments, set_seed

    set_seed(cfg.seed)
    tok = load_tokenizer(cfg)
    tokens = PRMTokens(tok, fmt)
    train_ex, eval_ex = split_eval(examples, eval_fraction, cfg.seed)
    feats, cut = featurize(tokens, train_ex, cfg.max_length)
    if cut:
        warn(f"train-prm: {cut} training step(s) beyond --max-length {cfg.max_length} tokens are left out")
    if not feats:
        raise InputError("no training examples left (after the eval split and --max-length)")
    resume_from = common.prepare_output(cfg)
    info(
        f"train-prm: {len(feats)} examples ({sum(len(f['positions']) for f in feats)} steps), "
        f"{len(eval_ex)} held out for eval; {cfg.epochs:g} epochs, lr {cfg.learning_rate:g}, "
        f"effective batch {cfg.batch_size}"
    )

    model = models.load_model(cfg)
    peft_cfg = models.lora_config(cfg)
    if peft_cfg is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_cfg)
    kwargs = common.trainer_kwargs(cfg)
    kwargs.pop("max_length", None)  # a TRL field; plain TrainingArguments has none
    args = TrainingArguments(**kwargs)
    metrics_path = os.path.join(cfg.output, common.METRICS_NAME)
    found: dict = {}

    class EvalSplit(TrainerCallback):
        """Step-level accuracy / AUC on the eval split, before and after training: every process scores its
        share (ZeRO-3 / FSDP need all ranks in each forward), the main process writes the line."""

        def _eval(self, state, model):
            if not eval_ex:
                return
            scorer = PRMScorer(model, tok, fmt, batch_size=cfg.per_device_batch_size * 4, max_length=cfg.max_length)
            found.update(evaluate(scorer, eval_ex))
            if state.is_world_process_zero:
                with open(metrics_path, "a") as fh:
                    fh.write(json.dumps({"step": state.global_step, **found}) + "\n")

        def on_train_begin(self, args, state, control, model=None, **kw):
            if state.global_step == 0:
                self._eval(state, model)

        def on_train_end(self, args, state, control, model=None, **kw):
            self._eval(state, model)

    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(feats),
        data_collator=_Collator(tok.pad_token_id),
        callbacks=[common.metrics_writer(cfg.output), EvalSplit(), *callbacks],
    )
    common.logs_to_stderr(trainer)
    # compute_loss averages over its own batch, so the Trainer must scale for gradient accumulation.
    trainer.model_accepts_loss_kwargs = False
    common.train(trainer, resume_from)
    # Recorded in config.json so that scoring needs no flags (a LoRA model shares its base's config).
    trainer.accelerator.unwrap_model(trainer.model).config.psr_prm = fmt.to_config()
    summary = common.finish(
        trainer,
        tok,
        cfg,
        "train-prm",
        {
            "examples": len(feats),
            "eval_examples": len(eval_ex),
            "steps_cut_by_max_length": cut,
            "prm_format": fmt.to_config(),
            "resumed_from": resume_from,
            **found,
        },
    )
    if trainer.accelerator.is_main_process:
        _ensure_format(cfg.output, fmt)
    return summary


def _ensure_format(out: str, fmt: PRMFormat) -> None:
    """Config classes that drop unknown attributes would lose ``psr_prm``; put it back."""
    path = os.path.join(out, "config.json")
    with open(path, encoding="utf-8") as fh:
        conf = json.load(fh)
    if conf.get(CONFIG_KEY) != fmt.to_config():
        conf[CONFIG_KEY] = fmt.to_config()
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(conf, fh, indent=2)
        os.replace(tmp, path)
