"""``psr annotate-eft``: PRM-ranked step pairs -> EFT records (paper §3.2, Figure 5).

Each pair is judged twice, once with the PRM-chosen step as A and once as B. As in the paper, a
pair is kept only when both verdicts agree with each other and with the PRM; every other pair is
counted under its drop reason:

- ``prm_tie``: equal PRM scores, so there is no preference to confirm (not sent to the judge);
- ``no_verdict``: a judgment holds no ``[[A]]``/``[[B]]``;
- ``inconsistent``: the two orders name the same position (a position bias, not a preference);
- ``disagrees_with_prm``: both orders prefer the PRM-rejected step.

A kept pair becomes one EFT record in one of its two orders, with that order's judgment. The
order is a hash of (seed, pair id), so about half the records have the better step as A, the
choice never depends on the judge, and a resumed or sharded run makes the same choice.
``--both-orders`` also writes the other order (id ``PAIR/swapped``, both records with ``pair_id``):
the same two steps with the verdict flipped, JudgeLM's swap augmentation against a judge that learns
the position instead of the steps (not the paper's: it keeps one order). A question's records move
to the held-out split together, and ``psr eval --task judge`` counts such a pair once (it judges every
record in both orders already).

``--format scoring`` makes the SRLM baseline's judge data (Yuan et al.'s LLM-as-a-judge format)
from the same pairs: each pair gives two responses, the partial solution so far ending in the
chosen step and the same ending in the rejected step, rendered as ``Step n:`` lines exactly as
``psr search --mode srlm`` renders the solutions it scores. The judge scores each with the 0-5
solution-scoring prompt; the pair is kept when both scores parse and the PRM's order holds
(chosen scores higher), mirroring the pairwise filter. Drops: ``prm_tie``; ``no_score`` (a
judgment without ``Score: n``); ``score_tie`` (equal scores: no preference to confirm);
``disagrees_with_prm`` (the rejected response scores higher). A kept pair writes two records,
one a response (a judge is trained and used on one response at a time), sharing ``pair_id``, so
a pair is always kept or dropped whole and eval can measure the pair's order.

``--test-size N`` holds out whole questions: questions are ranked by a hash of (seed, question)
and taken in that order until the held-out records reach N (scoring: two records a pair, so a
pair is never split), so a question is never in both files
and rerunning gives the same split. The split is made when judging ends: test records move from
``--output`` to ``--test-output``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Literal

from psr.core.errors import InputError, PsrError
from psr.core.log import info, progress, warn
from psr.core.options import option
from psr.core.prompts import judge_prompt, parse_score, parse_verdict, srlm_score_prompt
from psr.core.records import IOConfig, RecordWriter, read_records, skip_done, write_records
from psr.core.steps import format_steps
from psr.engines import Engine, open_engine
from psr.engines.base import TOO_LONG, Chat, EngineConfig, Sampling

FORMATS = ("pairwise", "scoring")
DROPS = ("prm_tie", "no_verdict", "inconsistent", "disagrees_with_prm")
SCORING_DROPS = ("prm_tie", "no_score", "score_tie", "disagrees_with_prm")


@dataclass
class AnnotateConfig:
    format: Literal[FORMATS] = option(
        "pairwise",
        "--format",
        help="pairwise (Figure 5, PSRLM) | scoring (Yuan et al.'s 0-5 prompt, the SRLM baseline).",
    )
    test_size: int = option(0, "--test-size", help="EFT records to hold out (paper: 500); 0: none.")
    test_output: str | None = option(None, "--test-output", help="JSONL path of the held-out split.")
    # reasoning judges (o1-style) spend hidden tokens inside this bound
    max_tokens: int = option(4096, "--max-tokens", help="Most new tokens per judgment.")
    temperature: float = option(0.0, "--temperature", help="Judge sampling temperature (0: greedy).")
    chunk_size: int = option(128, "--chunk-size", help="Pairs per engine call (two prompts each).")
    both_orders: bool = option(
        False,
        "--both-orders",
        help="Pairwise: also write each kept pair in its other order, with that order's judgment (swap "
        "augmentation, id PAIR/swapped; eval --task judge counts the pair once). Paper: one order.",
    )
    seed: int = 0  # from --seed

    def __post_init__(self) -> None:
        if self.format not in FORMATS:  # typed on the CLI (a Literal); this guards a config made in Python
            raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.test_size < 0:
            raise InputError(f"--test-size must be >= 0, got {self.test_size}")
        if self.max_tokens < 1 or self.chunk_size < 1 or not self.temperature >= 0:
            raise InputError(
                f"--max-tokens and --chunk-size must be >= 1 and --temperature >= 0, got "
                f"{self.max_tokens}, {self.chunk_size} and {self.temperature:g}"
            )
        if self.test_size and not self.test_output:
            raise InputError("--test-size needs --test-output PATH")
        if self.both_orders and self.format != "pairwise":
            raise InputError("--both-orders is for --format pairwise (scoring already writes both responses)")


def _hash(*parts) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def better_first(seed: int, pair_id: str) -> bool:
    """Whether the record of this pair shows the better step as A."""
    return _hash("position", seed, pair_id) % 2 == 0


def classify(verdict_chosen_a: str | None, verdict_chosen_b: str | None) -> str:
    """'keep' or the drop reason, from the verdicts with the chosen step as A, then as B."""
    if verdict_chosen_a is None or verdict_chosen_b is None:
        return "no_verdict"
    if verdict_chosen_a == verdict_chosen_b:
        return "inconsistent"
    return "keep" if verdict_chosen_a == "A" else "disagrees_with_prm"


def eft_records(pair: dict, judgment_chosen_a: str, judgment_chosen_b: str, seed: int, both_orders: bool = False):
    """The pair's record in its hashed order, then (``both_orders``) in the other order."""
    a_first = better_first(seed, pair["id"])
    orders = [a_first, not a_first] if both_orders else [a_first]
    recs = []
    for i, first in enumerate(orders):
        rec = {
            "id": pair["id"] + ("/swapped" if i else ""),
            "question": pair["question"],
            "previous_steps": pair["previous_steps"],
            "step_a": pair["chosen"] if first else pair["rejected"],
            "step_b": pair["rejected"] if first else pair["chosen"],
            "judgment": judgment_chosen_a if first else judgment_chosen_b,
            "label": "A" if first else "B",
        }
        for k in ("chosen_score", "rejected_score"):
            rec[k] = pair[k]
        if both_orders:
            rec["pair_id"] = pair["id"]
        recs.append(rec)
    return recs


def scoring_responses(pair: dict) -> tuple[str, str]:
    """The pair's two responses as the SRLM search's judge sees a solution: ``Step n:`` lines, the
    previous steps then the chosen (first) or the rejected step."""
    return (
        format_steps([*pair["previous_steps"], pair["chosen"]]),
        format_steps([*pair["previous_steps"], pair["rejected"]]),
    )


def classify_scores(score_chosen: int | None, score_rejected: int | None) -> str:
    """'keep' or the drop reason, from the scores of the chosen and the rejected response."""
    if score_chosen is None or score_rejected is None:
        return "no_score"
    if score_chosen == score_rejected:
        return "score_tie"
    return "keep" if score_chosen > score_rejected else "disagrees_with_prm"


def scoring_records(pair: dict, judgments: tuple[str, str]) -> list[dict]:
    """The two records of a kept pair (chosen first); ``prm_score`` is the PRM's P(+) of its step."""
    return [
        {
            "id": f"{pair['id']}/{role}",
            "pair_id": pair["id"],
            "question": pair["question"],
            "response": resp,
            "judgment": j,
            "score": parse_score(j),
            "role": role,
            "prm_score": pair[f"{role}_score"],
            "format": "scoring",
        }
        for role, resp, j in zip(("chosen", "rejected"), scoring_responses(pair), judgments, strict=True)
    ]


def _kind(cfg: AnnotateConfig) -> str:
    return "eft" if cfg.format == "pairwise" else "eft_scoring"


def run(io: IOConfig, cfg: AnnotateConfig, engine: EngineConfig | Engine | None = None) -> dict:
    """Judge every pair; returns counts: ``kept``, each drop reason of the format (DROPS or SCORING_DROPS),
    ``train``, ``test``, and ``label_a``, ``label_b`` (pairwise) or ``scores`` (scoring: records per score)."""
    if cfg.test_size and io.output == "-":
        raise InputError("--test-size needs --output PATH (the split rewrites it when judging ends)")
    if cfg.test_output and os.path.abspath(cfg.test_output) == os.path.abspath(io.output):
        raise InputError("--test-output must differ from --output")
    # too_long: the judge could not take the prompt (done: a rerun meets it again); unanswered: its requests
    # failed on every retry (not done: a rerun asks again).
    counts = dict.fromkeys(("kept", *_drops(cfg), "too_long", "unanswered"), 0)
    # One group per pair (zero, one or two records), so dropped pairs are remembered too and not re-judged.
    grouped = cfg.format == "scoring" or cfg.both_orders
    if cfg.both_orders and not io.overwrite:
        _check_resumable(io.output)
    writer = RecordWriter(io.output, overwrite=io.overwrite, group_field="pair_id" if grouped else "id")
    test_done = set()
    if cfg.test_output and os.path.exists(cfg.test_output):
        if io.overwrite and os.path.isfile(cfg.test_output):  # never a device (/dev/null)
            os.remove(cfg.test_output)
        else:
            test_done = {r.get("pair_id", r["id"]) for r in _read(cfg.test_output, _kind(cfg))}
    try:
        all_pairs = io.todo("pair")
        todo = skip_done(all_pairs, writer.done | test_done, io.output)
        if todo:
            _judge_all(todo, cfg, engine, writer, counts)
    finally:
        writer.close()
    if counts["unanswered"]:
        _report(counts, io.output, cfg)
        raise PsrError(
            f"{counts['unanswered']} pair(s) got no judgment: the judge's requests failed on every retry; "
            f"the other pairs are written to {io.output}; rerun the same command to judge the rest"
            + (" (the test split is made when all are judged)" if cfg.test_size else "")
        )
    if cfg.test_size:
        counts.update(_split(io.output, cfg, all_pairs))
    _report(counts, io.output, cfg)
    return counts


def _drops(cfg: AnnotateConfig) -> tuple[str, ...]:
    return DROPS if cfg.format == "pairwise" else SCORING_DROPS


def _judge_all(todo, cfg, engine, writer, counts) -> None:
    sampling = Sampling(n=1, temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=cfg.seed)
    with open_engine(engine, EngineConfig(engine="openai")) as engine:
        with progress("annotate-eft", len(todo)) as advance:
            for start in range(0, len(todo), cfg.chunk_size):
                chunk = todo[start : start + cfg.chunk_size]
                ties = [p for p in chunk if p["chosen_score"] == p["rejected_score"]]
                judged = [p for p in chunk if p["chosen_score"] != p["rejected_score"]]
                for p in ties:
                    counts["prm_tie"] += 1
                    writer.write_group(p["id"], [])
                # The PRM's preference: the higher score is the better step whatever the field names say.
                judged = [
                    p
                    if p["chosen_score"] > p["rejected_score"]
                    else {
                        **p,
                        "chosen": p["rejected"],
                        "rejected": p["chosen"],
                        "chosen_score": p["rejected_score"],
                        "rejected_score": p["chosen_score"],
                    }
                    for p in judged
                ]
                # Two prompts a pair: the two orders (pairwise), or the chosen and the rejected response (scoring).
                chats = []
                for p in judged:
                    if cfg.format == "pairwise":
                        chats.append(Chat(judge_prompt(p["question"], p["previous_steps"], p["chosen"], p["rejected"])))
                        chats.append(Chat(judge_prompt(p["question"], p["previous_steps"], p["rejected"], p["chosen"])))
                    else:
                        chats += [Chat(srlm_score_prompt(p["question"], r)) for r in scoring_responses(p)]
                outs = engine.generate_partial(chats, sampling) if chats else []
                for i, p in enumerate(judged):
                    oa, ob = outs[2 * i], outs[2 * i + 1]
                    if oa is None or ob is None:
                        counts["unanswered"] += 1  # not written, not marked done: the rerun asks again
                        continue
                    if any(o and o[0].finish_reason == TOO_LONG for o in (oa, ob)):
                        counts["too_long"] += 1
                        writer.write_group(p["id"], [])
                        continue
                    ja, jb = (oa[0].text if oa else ""), (ob[0].text if ob else "")
                    if cfg.format == "pairwise":
                        kind = classify(parse_verdict(ja), parse_verdict(jb))
                        recs = eft_records(p, ja, jb, cfg.seed, cfg.both_orders) if kind == "keep" else []
                    else:
                        kind = classify_scores(parse_score(ja), parse_score(jb))
                        recs = scoring_records(p, (ja, jb)) if kind == "keep" else []
                    counts["kept" if kind == "keep" else kind] += 1
                    writer.write_group(p["id"], recs)
                advance(len(chunk))


def _check_resumable(output: str) -> None:
    """--both-orders resumes only an output it wrote: one written in one order has no pair_id to group by."""
    first = next(iter(_read(output, "eft")), None)
    if first is not None and "pair_id" not in first:
        raise InputError(
            "was written without --both-orders (its records have no pair_id): rerun without --both-orders to "
            "resume it, or add --overwrite to start afresh",
            output,
        )


def _read(path: str, kind: str) -> list[dict]:
    """EFT records of a file this stage wrote; none when it is missing or empty."""
    if path == "-" or not os.path.exists(path) or not open(path, "rb").read().strip():
        return []
    return read_records(path, kind)


def _split(output: str, cfg: AnnotateConfig, pairs: list[dict]) -> dict:
    """Move whole questions' records from ``output`` to ``cfg.test_output`` until the test split holds
    ``cfg.test_size`` records (or all questions are taken)."""
    in_output = _read(output, _kind(cfg))
    # The test file is written first, so after a kill between the two writes a record may be in both.
    recs = {r["id"]: r for r in _read(cfg.test_output, _kind(cfg)) + in_output}
    by_question: dict[str, list[dict]] = {}
    for r in sorted(recs.values(), key=lambda r: r["id"]):
        by_question.setdefault(r["question"], []).append(r)
    order = sorted({p["question"] for p in pairs} | set(by_question), key=lambda q: _hash("split", cfg.seed, q))
    test, taken = [], set()
    for q in order:
        if len(test) >= cfg.test_size:
            break
        test += by_question.get(q, [])
        taken.add(q)
    # Train keeps the output's order; records that were held out before and no longer are go last.
    order_ids = list(dict.fromkeys([r["id"] for r in in_output] + sorted(recs)))
    train = [recs[i] for i in order_ids if recs[i]["question"] not in taken]
    test.sort(key=lambda r: r["id"])
    write_records(cfg.test_output, test)
    write_records(output, train)
    if len(test) < cfg.test_size:
        warn(f"--test-size {cfg.test_size}: only {len(test)} EFT records exist; all went to the test split")
    return {"train": len(train), "test": len(test)}


def _report(counts: dict, output: str, cfg: AnnotateConfig) -> None:
    judged = counts["kept"] + sum(counts[d] for d in _drops(cfg))
    if judged:
        drops = ", ".join(f"{d.replace('_', ' ')}: {counts[d]}" for d in _drops(cfg))
        info(f"annotate-eft ({cfg.format}): kept {counts['kept']} of {judged} pairs; dropped {drops}")
    if counts["too_long"]:
        warn(f"{counts['too_long']} pair(s) not judged: the judge prompt is longer than the judge's context")
    if counts["unanswered"]:
        warn(f"{counts['unanswered']} pair(s) not judged: no answer from the judge (left undone)")
    files = [output] + ([cfg.test_output] if cfg.test_size else [])
    recs = [r for f in files for r in _read(f, _kind(cfg))]
    split = (
        f"; split: {counts['train']} train -> {output}, {counts['test']} test -> {cfg.test_output}"
        if cfg.test_size
        else ""
    )
    if cfg.format == "scoring":
        counts["scores"] = {s: sum(r["score"] == s for r in recs) for s in range(6)}
        if recs:
            info(f"{len(recs)} scored responses; by score {counts['scores']}" + split)
        return
    counts["label_a"] = sum(r["label"] == "A" for r in recs)
    counts["label_b"] = len(recs) - counts["label_a"]
    if recs:
        info(f"better step as A in {counts['label_a']} of {len(recs)} records" + split)
