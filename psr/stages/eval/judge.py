"""``psr eval --task judge``: step-wise judge accuracy (paper Table 3) on pairwise EFT records, both A/B orders, and
Yuan et al.'s 0-5 scoring on scoring-format EFT records."""

from __future__ import annotations

from statistics import mean

from psr.core.errors import InputError
from psr.core.log import progress
from psr.core.prompts import few_shot_judge_prompt, judge_prompt, parse_score, parse_verdict, srlm_score_prompt
from psr.core.records import IOConfig, RecordWriter, eft_kind, parse_shard, read_records, select, skip_done
from psr.engines.base import Chat, Engine, Sampling, judge_fitting
from psr.stages.eval.common import EvalConfig, chunks, fail_if_unanswered, read_back


def _judge_prediction(rec: dict, text_ab: str, text_ba: str) -> dict:
    label = rec["label"]
    v_ab, v_ba = parse_verdict(text_ab), parse_verdict(text_ba)
    # In the swapped order step_b is shown as A: map the verdict back to the stored letters.
    pick_ba = {"A": "B", "B": "A"}.get(v_ba) if v_ba else None
    return {
        "id": rec["id"],
        "task": "judge",
        "question": rec["question"],
        "previous_steps": rec["previous_steps"],
        "step_a": rec["step_a"],
        "step_b": rec["step_b"],
        "label": label,
        "output": text_ab,
        "verdict": v_ab,
        "correct": v_ab == label,
        "output_swapped": text_ba,
        "verdict_swapped": v_ba,
        "pick_swapped": pick_ba,
        "correct_swapped": pick_ba == label,
        "agree": v_ab is not None and v_ab == pick_ba,
    }


def load_eft(io: IOConfig) -> list[dict]:
    recs = read_records(io.inputs, eft_kind)
    if len({eft_kind(r) for r in recs}) > 1:
        raise InputError("--task judge takes pairwise or scoring-format EFT records, not both in one run", io.inputs[0])
    # annotate-eft --both-orders' swapped copy (pairwise, id != pair_id) is the same pair, and every record is
    # judged in both orders: measuring it again would count one pair twice.
    recs = [r for r in recs if eft_kind(r) == "eft_scoring" or r.get("pair_id", r["id"]) == r["id"]]
    return select(recs, parse_shard(io.shard), io.limit)


def run_judge(
    io: IOConfig, engine: Engine, cfg: EvalConfig, recs: list[dict], model: str | None = None, seed: int = 0
) -> dict:
    """Pairwise records: each pair judged greedily in both A/B orders (Figure 5). Scoring-format records:
    each response scored once (greedy) with Yuan et al.'s prompt."""
    if eft_kind(recs[0]) == "eft_scoring":
        if cfg.few_shot:
            raise InputError("--few-shot judges pairwise EFT records, not scoring-format ones", io.inputs[0])
        shot_ids: list[str] = []
        title, per_record, summarize = "eval judge (scoring)", 1, summarize_scoring

        def chats(r):
            return [Chat(srlm_score_prompt(r["question"], r["response"]))]

        def predict(r, outs):
            return _score_prediction(r, outs[0][0].text)
    else:
        title, per_record, summarize = "eval judge", 2, summarize_judge
        shot_ids, shots = few_shot_examples(cfg, recs, seed)

        def chats(r):
            return [
                Chat(few_shot_judge_prompt(shots, judge_prompt(r["question"], r["previous_steps"], a, b)))
                for a, b in ((r["step_a"], r["step_b"]), (r["step_b"], r["step_a"]))
            ]

        def predict(r, outs):
            return _judge_prediction(r, outs[0][0].text, outs[1][0].text)

    ids = {r["id"] for r in recs}
    with RecordWriter(io.output, overwrite=io.overwrite) as writer:
        todo = skip_done(recs, writer.done, writer.path)
        sampling = Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=cfg.max_tokens, seed=seed)
        written: list[dict] = []
        unanswered: list[str] = []
        with progress(title, len(todo)) as advance:
            for batch in chunks(todo, max(1, cfg.chunk_size // per_record)):
                # A record whose prompt outgrows the model (a long response under Yuan et al.'s ~900-token
                # prompt) is answered empty: no verdict or score, counted as such, not a failed run.
                outs = judge_fitting(engine, [c for r in batch for c in chats(r)], sampling, partial=True)
                for k, r in enumerate(batch):
                    mine = outs[per_record * k : per_record * (k + 1)]
                    if any(o is None for o in mine):  # no answer: left undone for the rerun
                        unanswered.append(r["id"])
                        continue
                    pred = predict(r, mine)
                    writer.write(pred)
                    written.append(pred)
                advance(len(batch))
    fail_if_unanswered(unanswered, io.output)
    summary = summarize(read_back(io.output, ids, written))
    summary.update(model=model, name=cfg.name, shard=io.shard, limit=io.limit)
    if cfg.few_shot:
        summary.update(few_shot=cfg.few_shot, few_shot_examples=cfg.few_shot_examples, few_shot_ids=shot_ids)
    return summary


def few_shot_examples(cfg: EvalConfig, recs: list[dict], seed: int) -> tuple[list[str], list[tuple[str, str]]]:
    """The ids and the ``cfg.few_shot`` worked examples (a filled Figure 5 prompt, its judgment), drawn by ``seed`` from
    ``cfg.few_shot_examples``; none of them is a record being judged (an example that is the test answers it)."""
    import random

    if not cfg.few_shot:
        return [], []
    path = cfg.few_shot_examples
    pool = read_records([path], eft_kind)
    if any(eft_kind(r) != "eft" for r in pool):
        raise InputError("--few-shot-examples takes pairwise EFT records (annotate-eft's -o)", path)
    shared = sorted({r["id"] for r in pool} & {r["id"] for r in recs})
    if shared:
        raise InputError(
            f"{len(shared)} few-shot examples are records being judged (e.g. {shared[0]!r}): draw "
            "them from another split (the EFT training data)",
            path,
        )
    if len(pool) < cfg.few_shot:
        raise InputError(f"--few-shot {cfg.few_shot} needs as many examples, the file has {len(pool)}", path)
    chosen = random.Random(seed).sample(pool, cfg.few_shot)
    return [r["id"] for r in chosen], [
        (judge_prompt(r["question"], r["previous_steps"], r["step_a"], r["step_b"]), r["judgment"]) for r in chosen
    ]


def _score_prediction(rec: dict, text: str) -> dict:
    score = parse_score(text)
    return {
        "id": rec["id"],
        "task": "judge",
        "format": "scoring",
        "pair_id": rec.get("pair_id"),
        "role": rec.get("role"),
        "question": rec["question"],
        "response": rec["response"],
        "label_score": rec["score"],
        "output": text,
        "score": score,
        "correct": score == rec["score"],
    }


def summarize_scoring(preds: list[dict]) -> dict:
    """Exact score agreement over responses; over pairs (two responses sharing ``pair_id``, with different
    reference scores), whether the model scores the better response strictly higher (a tie or a missing
    score counts as wrong), which is what the SRLM search needs to make a right pair."""
    n = len(preds)
    scored = [p for p in preds if p["score"] is not None]
    by_pair: dict[str, list[dict]] = {}
    for p in preds:
        if p.get("pair_id") is not None:
            by_pair.setdefault(p["pair_id"], []).append(p)
    pairs = [
        sorted(g, key=lambda p: -p["label_score"])
        for g in by_pair.values()
        if len(g) == 2 and g[0]["label_score"] != g[1]["label_score"]
    ]
    ordered = [b["score"] is not None and w["score"] is not None and b["score"] > w["score"] for b, w in pairs]
    tied = [b["score"] is not None and b["score"] == w["score"] for b, w in pairs]
    pct = lambda k, m: round(100.0 * k / m, 2) if m else None  # noqa: E731
    return {
        "task": "judge",
        "format": "scoring",
        "n": n,
        "judgments": n,
        "accuracy": pct(sum(p["correct"] for p in preds), n),
        "within_one": pct(sum(abs(p["score"] - p["label_score"]) <= 1 for p in scored), n),
        "mean_abs_error": round(mean(abs(p["score"] - p["label_score"]) for p in scored), 3) if scored else None,
        "no_score_rate": pct(n - len(scored), n),
        "pairs": len(pairs),
        "pair_order_accuracy": pct(sum(ordered), len(pairs)),
        "pair_tie_rate": pct(sum(tied), len(pairs)),
        "units": {
            "accuracy": "percent of responses given exactly the reference score (0-5)",
            "within_one": "percent of responses scored within 1 point of the reference",
            "mean_abs_error": "mean |score - reference| over responses with a parsable score (points)",
            "no_score_rate": "percent of judgments without a parsable 'Score: n'",
            "pair_order_accuracy": "percent of pairs whose better response gets the strictly higher score",
            "pair_tie_rate": "percent of pairs whose two responses get the same score",
        },
    }


def summarize_judge(preds: list[dict]) -> dict:
    """Both orders of every record are judgments: accuracy pools them; position bias splits them by
    where the better step was shown."""
    n = len(preds)
    judged = [(p["verdict"], p["label"], p["label"]) for p in preds]  # (verdict, truth, better shown as)
    swap = {"A": "B", "B": "A"}
    judged += [(p["verdict_swapped"], swap[p["label"]], swap[p["label"]]) for p in preds]
    as_a = [v == t for v, t, shown in judged if shown == "A"]
    as_b = [v == t for v, t, shown in judged if shown == "B"]
    pct = lambda k, m: round(100.0 * k / m, 2) if m else None  # noqa: E731
    return {
        "task": "judge",
        "n": n,
        "judgments": len(judged),
        "accuracy": pct(sum(v == t for v, t, _ in judged), len(judged)),
        "accuracy_stored_order": pct(sum(p["correct"] for p in preds), n),
        "accuracy_both_orders": pct(sum(p["correct"] and p["correct_swapped"] for p in preds), n),
        "no_verdict_rate": pct(sum(v is None for v, _, _ in judged), len(judged)),
        "accuracy_better_as_A": pct(sum(as_a), len(as_a)),
        "accuracy_better_as_B": pct(sum(as_b), len(as_b)),
        "agreement": pct(sum(p["agree"] for p in preds), n),
        "units": {
            "accuracy": "percent of all judgments (each record judged in both orders)",
            "accuracy_stored_order": "percent of records judged right with step_a shown as A (Table 3)",
            "accuracy_both_orders": "percent of records judged right in both orders",
            "no_verdict_rate": "percent of judgments without a parsable [[A]]/[[B]]",
            "accuracy_better_as_A": "percent right among judgments that showed the better step as A",
            "accuracy_better_as_B": "percent right among judgments that showed the better step as B",
            "agreement": "percent of records whose two orders pick the same step",
        },
    }
