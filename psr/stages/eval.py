"""``psr eval``: benchmark accuracy (paper Table 1), step statistics (Tables 4, 7, 8), test-time scaling
(Tables 5, 9), step-wise judge accuracy (Table 3), and the comparison of iterations M0..Mn (Table 2).

Math: every problem of every benchmark is answered (greedy decoding, or the self-judged step search
with ``tts``), graded against its gold answer and written as one ``prediction`` record whose id is
``<benchmark>/<problem id>``, so several benchmarks share one output file, one engine and one resume.

Judge: every EFT record is judged twice with the Figure 5 prompt, once as stored (step_a shown as A)
and once swapped, which measures accuracy, position bias and the agreement of the two orders.
Scoring-format EFT records (the SRLM baseline's judge data) are scored once each with Yuan et al.'s
0-5 prompt: exact score agreement, and, for the two responses of a pair, whether the better one
scores higher.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from statistics import mean

from psr.core.errors import InputError, PsrError
from psr.core.log import console, info, progress, warn
from psr.core.paths import write_text
from psr.core.prompts import (
    QWEN_COT_SYSTEM,
    few_shot_judge_prompt,
    judge_prompt,
    parse_score,
    parse_verdict,
    srlm_score_prompt,
    step_prompt,
)
from psr.core.records import IOConfig, RecordWriter, eft_kind, iter_lines, parse_shard, read_records, select
from psr.core.steps import parse_steps
from psr.engines.base import TOO_LONG, Chat, Engine, EngineConfig, Sampling, judge_fitting

PROMPTS = ("step", "qwen-cot")
TASKS = ("math", "judge")
# Suffixes that name a split, not a benchmark: gsm8k_test.jsonl is the benchmark "gsm8k".
_SPLIT_SUFFIXES = ("_test", "-test", ".test")


@dataclass
class EvalConfig:
    task: str = "math"  # math | judge
    prompt: str = "step"  # step: Figure 4 | qwen-cot: Qwen2.5-Math CoT system prompt, for base models
    grader: str = "default"
    grade_timeout: float = 3.0  # seconds per answer, as the Qwen2.5-Math evaluator (psr.core.grading)
    max_tokens: int = 2048
    chunk_size: int = 512  # prompts per engine call; results are graded and written after each call
    tts: bool = False  # answer with the self-judged step search instead of greedy decoding
    width: int = 6
    temperature: float = 0.5
    top_p: float = 0.95
    max_iterations: int = 20
    name: str | None = None  # the row label of this run in --compare (default: the summary's file name)
    summary: str | None = None  # JSON path
    summary_md: str | None = None  # Markdown path (default: next to the JSON)
    few_shot: int = 0  # judge: worked judge examples before each prompt (Table 3's M0 row is 3-shot)
    few_shot_examples: str | None = None  # judge: pairwise EFT records they are drawn from


# ---------------------------------------------------------------------------------------------
# Inputs


def benchmark_name(spec: str) -> tuple[str, str]:
    """``"name=path"`` or ``"path"`` -> (name, path); the name of a path is its file name without
    ``.jsonl`` and a trailing ``_test``."""
    if "=" in spec and not os.path.exists(spec):
        name, path = spec.split("=", 1)
        if not name or not path:
            raise InputError(f"-i expects PATH or NAME=PATH, got {spec!r}")
        return name, path
    if spec == "-":
        return "stdin", spec
    base = os.path.basename(spec)
    for ext in (".jsonl", ".json"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    for suf in _SPLIT_SUFFIXES:
        if base.endswith(suf) and len(base) > len(suf):
            base = base[: -len(suf)]
    return base, spec


def load_problems(io: IOConfig) -> list[dict]:
    """All problems of all benchmarks, ids made unique as ``<benchmark>/<id>``.

    ``limit`` takes the first N problems of each benchmark (a cheap but fair subset of every one);
    ``shard`` then slices the whole list, so the shards' outputs concatenate to the full run.
    """
    out: list[dict] = []
    seen: dict[str, str] = {}
    for spec in io.inputs:
        name, path = benchmark_name(spec)
        if name in seen:
            raise InputError(f"two inputs are both named benchmark {name!r} ({seen[name]} and {path}); "
                             f"name them with NAME=PATH", path)
        seen[name] = path
        recs = select(read_records(path, "problem"), None, io.limit)
        for r in recs:
            out.append({"id": f"{name}/{r['id']}", "benchmark": name, "source_id": r["id"],
                        "question": r["question"], "answer": r.get("answer")})
    return select(out, parse_shard(io.shard), None)


def _todo(items: list[dict], writer: RecordWriter) -> list[dict]:
    todo = [r for r in items if r["id"] not in writer.done]
    if len(todo) != len(items):
        info(f"resuming: {len(items) - len(todo)} of {len(items)} already in {writer.path}")
    return todo


def _chunks(items: list, size: int):
    for i in range(0, len(items), max(1, size)):
        yield items[i:i + max(1, size)]


# ---------------------------------------------------------------------------------------------
# Grading (psr.core.grading: bounded in time, never evaluates model text)


def grade_outputs(outputs: list[str], golds: list[str | None], grader: str, timeout: float = 3.0,
                  questions: list[str | None] | None = None) -> list[tuple[str | None, bool | None, str | None]]:
    """(extracted answer, correct, failure) for each output, as ``psr grade`` computes them; correct is
    None where there is no gold answer; failure is "no answer", "timeout", ... or None. ``questions``
    lets the default grader see whether a question asks for a percent, as ``psr grade`` does."""
    from psr.core.grading import grade_many

    idx = [i for i, g in enumerate(golds) if g is not None]
    res: list[tuple[str | None, bool | None, str | None]] = [(None, None, None)] * len(outputs)
    if idx:
        results = grade_many([outputs[i] for i in idx], [golds[i] for i in idx], grader=grader, timeout=timeout,
                             questions=[questions[i] for i in idx] if questions is not None else None)
        for i, r in zip(idx, results, strict=True):
            res[i] = (r.pred, bool(r.correct), r.failure)
    if len(idx) != len(outputs):
        from psr.core.answers import extract_answer

        for i, g in enumerate(golds):
            if g is None:
                res[i] = (extract_answer(outputs[i]), None, None)
    return res


# ---------------------------------------------------------------------------------------------
# Math accuracy


def _chat(question: str, prompt: str) -> Chat:
    if prompt == "qwen-cot":
        return Chat(user=question, system=QWEN_COT_SYSTEM)
    return Chat(user=step_prompt(question))


def _tokens_unit(engine: Engine) -> str:
    # The base class only estimates (characters / 4): say so rather than call it tokens.
    if type(engine).count_tokens is Engine.count_tokens:
        return "estimated tokens (characters / 4; this engine has no tokenizer)"
    return "tokens of the model's tokenizer"


def _answer_greedy(engine: Engine, todo: list[dict], cfg: EvalConfig, seed: int, unanswered: list[str]):
    """Yield (problems, answers) one engine call of ``chunk_size`` prompts at a time; problems whose requests
    failed on every retry are left out (and added to ``unanswered``), so they stay undone for the rerun."""
    sampling = Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=cfg.max_tokens, seed=seed)
    for batch in _chunks(todo, cfg.chunk_size):
        outs = engine.generate_partial([_chat(p["question"], cfg.prompt) for p in batch], sampling)
        unanswered += [p["id"] for p, o in zip(batch, outs, strict=True) if o is None]
        got = [(p, o) for p, o in zip(batch, outs, strict=True) if o is not None]
        yield [p for p, _ in got], [{"output": o[0].text, "finish_reason": o[0].finish_reason,
                                     "output_tokens": o[0].completion_tokens} for _, o in got]


def _answer_tts(engine: Engine, todo: list[dict], cfg: EvalConfig, seed: int, unanswered: list[str]):
    """Yield (problems, answers) as the step search finishes them; ``chunk_size`` problems are searched
    at once and a finished one is replaced at once, so the batch stays full."""
    from psr.search import SearchConfig, iter_search

    if cfg.prompt != "step":
        raise InputError("--tts searches with the Figure 4 step prompt; drop --prompt")
    # --max-tokens bounds each step and each judgment (the search's own defaults: 512 and 1024).
    scfg = SearchConfig(tts=True, width=cfg.width, temperature=cfg.temperature, top_p=cfg.top_p,
                        max_iterations=cfg.max_iterations, max_step_tokens=min(cfg.max_tokens, 512),
                        judge_max_tokens=min(cfg.max_tokens, 1024), working_set=cfg.chunk_size, seed=seed)
    by_id = {p["id"]: p for p in todo}
    for trajs in iter_search(engine, ({"id": p["id"], "question": p["question"]} for p in todo), scfg):
        yield [by_id[t["id"]] for t in trajs], [
            {"output": t["output"], "finish_reason": t["stop_reason"], "output_tokens": t["generated_tokens"],
             "tts": {k: t[k] for k in ("iterations", "ties", "rollbacks", "judge_calls", "judge_failures")}}
            for t in trajs]


def _predictions(engine: Engine, batch: list[dict], answers: list[dict], cfg: EvalConfig) -> list[dict]:
    graded = grade_outputs([a["output"] for a in answers], [p["answer"] for p in batch], cfg.grader,
                           cfg.grade_timeout, questions=[p.get("question") for p in batch])
    steps = [parse_steps(a["output"]) for a in answers]
    counts = iter(engine.count_tokens([x for st in steps for x in st]))  # one tokenizer call per batch
    out = []
    for p, a, st, (pred, ok, failure) in zip(batch, answers, steps, graded, strict=True):
        rec = {"id": p["id"], "benchmark": p["benchmark"], "source_id": p["source_id"], "question": p["question"],
               "output": a["output"], "steps": st, "pred": pred, "answer": p["answer"], "correct": ok,
               "finish_reason": a["finish_reason"], "output_tokens": a["output_tokens"],
               "step_tokens": [next(counts) for _ in st]}
        if failure:
            rec["grade_failure"] = failure
        if "tts" in a:
            rec["tts"] = a["tts"]
        out.append(rec)
    return out


def run_math(io: IOConfig, engine: Engine, cfg: EvalConfig, problems: list[dict], model: str | None = None,
             seed: int = 0) -> dict:
    ids = {p["id"] for p in problems}
    with RecordWriter(io.output, overwrite=io.overwrite) as writer:
        todo = _todo(problems, writer)
        answer = _answer_tts if cfg.tts else _answer_greedy
        written: list[dict] = []
        unanswered: list[str] = []
        with progress("eval" + (" (tts)" if cfg.tts else ""), len(todo)) as advance:
            for batch, answers in answer(engine, todo, cfg, seed, unanswered):
                for rec in _predictions(engine, batch, answers, cfg):
                    writer.write(rec)
                    written.append(rec)
                advance(len(batch))
    _fail_if_unanswered(unanswered, io.output)
    preds = _read_back(io.output, ids, written)
    summary = summarize_math(preds, [p["benchmark"] for p in problems])
    summary.update(model=model, grader=cfg.grader, prompt=cfg.prompt, tts=cfg.tts,
                   tokens_unit=_tokens_unit(engine), name=cfg.name, shard=io.shard, limit=io.limit)
    if cfg.tts:
        summary["tts_config"] = {"width": cfg.width, "temperature": cfg.temperature, "top_p": cfg.top_p,
                                 "max_iterations": cfg.max_iterations}
    return summary


def _fail_if_unanswered(ids: list[str], output: str) -> None:
    if ids:
        raise PsrError(f"{len(ids)} record(s) got no answer (first: {ids[0]}): the engine's requests failed on every "
                       f"retry; the others are written to {output}; rerun the same command to do the rest")


def _read_back(path: str, ids: set[str], written: list[dict]) -> list[dict]:
    """The predictions of this run's problems, resumed ones included (stdout holds only this run's)."""
    if path == "-":
        return written
    return [rec for _, rec in iter_lines(path) if isinstance(rec, dict) and rec.get("id") in ids]


def summarize_math(preds: list[dict], order: list[str] | None = None) -> dict:
    """Accuracy (percent) and step statistics per benchmark, their macro average (Table 1 "Avg.") and
    the micro accuracy over all graded problems."""
    by: dict[str, list[dict]] = {}
    for b in order or []:
        by.setdefault(b, [])
    for r in preds:
        by.setdefault(r["benchmark"], []).append(r)
    benches = {}
    for b, rs in by.items():
        if not rs:
            continue
        graded = [r for r in rs if r.get("correct") is not None]
        n_correct = sum(1 for r in graded if r["correct"])
        steps = [s for r in rs for s in r["steps"]]
        step_tokens = [t for r in rs for t in r.get("step_tokens") or []]
        benches[b] = {
            "n": len(rs),
            "graded": len(graded),
            "correct": n_correct,
            "no_gold": len(rs) - len(graded),
            "no_answer": sum(1 for r in rs if not r.get("pred")),
            "grade_timeouts": sum(1 for r in rs if r.get("grade_failure") == "timeout"),
            # greedy: hit --max-tokens; tts: the search hit --max-iterations before a final answer
            "truncated": sum(1 for r in rs if r.get("finish_reason") in ("length", "max_iterations")),
            # the prompt did not fit the model's context: answered empty, graded wrong
            "prompt_too_long": sum(1 for r in rs if r.get("finish_reason") == TOO_LONG),
            "accuracy": round(100.0 * n_correct / len(graded), 2) if graded else None,
            "mean_steps": round(mean(len(r["steps"]) for r in rs), 2),
            "mean_step_tokens": round(mean(step_tokens), 2) if step_tokens else None,
            "mean_step_chars": round(mean(len(s) for s in steps), 2) if steps else None,
        }
    # The average is taken over unrounded accuracies, so it does not depend on display rounding.
    accs = [100.0 * v["correct"] / v["graded"] for v in benches.values() if v["graded"]]
    graded = sum(v["graded"] for v in benches.values())
    return {
        "task": "math",
        "benchmarks": benches,
        "average": round(mean(accs), 2) if accs else None,
        "overall": round(100.0 * sum(v["correct"] for v in benches.values()) / graded, 2) if graded else None,
        "n": sum(v["n"] for v in benches.values()),
        "units": {
            "accuracy": "percent of graded problems (those with a gold answer)",
            "average": "mean of the per-benchmark accuracies (Table 1 'Avg.')",
            "overall": "percent of all graded problems pooled",
            "mean_steps": "steps per solution ('Step n:' markers; text without markers is one step)",
            "mean_step_tokens": "tokens per step, pooled over all steps (tokens_unit says whose tokens)",
            "mean_step_chars": "characters per step, pooled over all steps",
        },
    }


# ---------------------------------------------------------------------------------------------
# Judge accuracy


def _judge_prediction(rec: dict, text_ab: str, text_ba: str) -> dict:
    label = rec["label"]
    v_ab, v_ba = parse_verdict(text_ab), parse_verdict(text_ba)
    # In the swapped order step_b is shown as A: map the verdict back to the stored letters.
    pick_ba = {"A": "B", "B": "A"}.get(v_ba) if v_ba else None
    return {"id": rec["id"], "task": "judge", "question": rec["question"], "previous_steps": rec["previous_steps"],
            "step_a": rec["step_a"], "step_b": rec["step_b"], "label": label,
            "output": text_ab, "verdict": v_ab, "correct": v_ab == label,
            "output_swapped": text_ba, "verdict_swapped": v_ba, "pick_swapped": pick_ba,
            "correct_swapped": pick_ba == label,
            "agree": v_ab is not None and v_ab == pick_ba}


def load_eft(io: IOConfig) -> list[dict]:
    recs = read_records(io.inputs, eft_kind)
    if len({eft_kind(r) for r in recs}) > 1:
        raise InputError("--task judge takes pairwise or scoring-format EFT records, not both in one run",
                         io.inputs[0])
    return select(recs, parse_shard(io.shard), io.limit)


def run_judge(io: IOConfig, engine: Engine, cfg: EvalConfig, recs: list[dict], model: str | None = None,
              seed: int = 0) -> dict:
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
            return [Chat(few_shot_judge_prompt(shots, judge_prompt(r["question"], r["previous_steps"], a, b)))
                    for a, b in ((r["step_a"], r["step_b"]), (r["step_b"], r["step_a"]))]

        def predict(r, outs):
            return _judge_prediction(r, outs[0][0].text, outs[1][0].text)
    ids = {r["id"] for r in recs}
    with RecordWriter(io.output, overwrite=io.overwrite) as writer:
        todo = _todo(recs, writer)
        sampling = Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=cfg.max_tokens, seed=seed)
        written: list[dict] = []
        unanswered: list[str] = []
        with progress(title, len(todo)) as advance:
            for batch in _chunks(todo, max(1, cfg.chunk_size // per_record)):
                # A record whose prompt outgrows the model (a long response under Yuan et al.'s ~900-token
                # prompt) is answered empty: no verdict or score, counted as such, not a failed run.
                outs = judge_fitting(engine, [c for r in batch for c in chats(r)], sampling, partial=True)
                for k, r in enumerate(batch):
                    mine = outs[per_record * k: per_record * (k + 1)]
                    if any(o is None for o in mine):  # no answer: left undone for the rerun
                        unanswered.append(r["id"])
                        continue
                    pred = predict(r, mine)
                    writer.write(pred)
                    written.append(pred)
                advance(len(batch))
    _fail_if_unanswered(unanswered, io.output)
    summary = summarize(_read_back(io.output, ids, written))
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
        raise InputError(f"{len(shared)} few-shot examples are records being judged (e.g. {shared[0]!r}): draw "
                         "them from another split (the EFT training data)", path)
    if len(pool) < cfg.few_shot:
        raise InputError(f"--few-shot {cfg.few_shot} needs as many examples, the file has {len(pool)}", path)
    chosen = random.Random(seed).sample(pool, cfg.few_shot)
    return [r["id"] for r in chosen], [(judge_prompt(r["question"], r["previous_steps"], r["step_a"], r["step_b"]), r["judgment"])
            for r in chosen]


def _score_prediction(rec: dict, text: str) -> dict:
    score = parse_score(text)
    return {"id": rec["id"], "task": "judge", "format": "scoring", "pair_id": rec.get("pair_id"),
            "role": rec.get("role"), "question": rec["question"], "response": rec["response"],
            "label_score": rec["score"], "output": text, "score": score, "correct": score == rec["score"]}


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
    pairs = [sorted(g, key=lambda p: -p["label_score"]) for g in by_pair.values()
             if len(g) == 2 and g[0]["label_score"] != g[1]["label_score"]]
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


# ---------------------------------------------------------------------------------------------
# Rendering


def _fmt(v, nd: int = 1) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def math_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    head = ["benchmark", "n", "correct", "acc %", "no ans", "trunc", "steps", "tok/step", "chr/step"]
    rows = [[b, str(v["n"]), str(v["correct"]), _fmt(v["accuracy"]), str(v["no_answer"]), str(v["truncated"]),
             _fmt(v["mean_steps"], 2), _fmt(v["mean_step_tokens"], 1), _fmt(v["mean_step_chars"], 1)]
            for b, v in summary["benchmarks"].items()]
    rows.append(["average", str(summary["n"]), str(sum(v["correct"] for v in summary["benchmarks"].values())),
                 _fmt(summary["average"]), "", "", "", "", ""])
    return head, rows


def math_caption(summary: dict) -> str:
    grader = f" ({summary['grader']} grader)" if summary.get("grader") else ""
    unit = summary.get("tokens_unit") or "tokens"
    return (f"acc %: percent correct{grader}; no ans: no final answer found; trunc: cut at --max-tokens "
            f"(tts: at --max-iterations); steps: mean steps per solution; tok/step: mean {unit} per step; "
            f"chr/step: mean characters per step")


def judge_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    if summary.get("format") == "scoring":
        rows = [[k, _fmt(summary[k])] for k in ("accuracy", "within_one", "no_score_rate", "pair_order_accuracy",
                                                 "pair_tie_rate")]
        return ["metric", "value %"], rows + [["mean_abs_error (points)", _fmt(summary["mean_abs_error"], 2)],
                                             ["records", str(summary["n"])], ["pairs", str(summary["pairs"])]]
    keys = ["accuracy", "accuracy_stored_order", "accuracy_both_orders", "no_verdict_rate",
            "accuracy_better_as_A", "accuracy_better_as_B", "agreement"]
    return ["metric", "value %"], [[k, _fmt(summary[k])] for k in keys] + [["records", str(summary["n"])]]


def markdown_table(head: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, head)) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_table(title: str, head: list[str], rows: list[list[str]], caption: str | None = None) -> None:
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=box.SIMPLE_HEAD)
    for i, h in enumerate(head):
        width = max(len(str(r[i])) for r in [head, *rows])
        t.add_column(h, justify="left" if i == 0 else "right", no_wrap=True, min_width=min(width, 40))
    for r in rows:
        t.add_row(*r)
    console.print(t)
    if caption:
        console.print(caption, style="dim", markup=False, highlight=False)


def summary_markdown(summary: dict) -> str:
    if summary["task"] == "math":
        return markdown_table(*math_rows(summary)) + "\n" + math_caption(summary) + "\n"
    return markdown_table(*judge_rows(summary))


def write_summary(summary: dict, cfg: EvalConfig) -> None:
    head, rows = math_rows(summary) if summary["task"] == "math" else judge_rows(summary)
    title = f"psr eval: {summary['task']}" + (f" ({summary['name']})" if summary.get("name") else "")
    print_table(title, head, rows, math_caption(summary) if summary["task"] == "math" else None)
    md_path = cfg.summary_md
    if cfg.summary:
        write_text(cfg.summary, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        md_path = md_path or os.path.splitext(cfg.summary)[0] + ".md"
    if md_path:
        write_text(md_path, summary_markdown(summary))


def summary_outputs(summary: str | None, summary_md: str | None, plot: str | None = None) -> dict:
    """The files a summary goes to, by option (the Markdown defaults to beside the JSON), for the up-front
    check of outputs (psr.core.paths.check_outputs)."""
    md = summary_md or (os.path.splitext(summary)[0] + ".md" if summary else None)
    return {"--summary": summary, "--summary-md": md, "--plot": plot}


# ---------------------------------------------------------------------------------------------
# Entry points


def run(io: IOConfig, engine_cfg: EngineConfig, cfg: EvalConfig, engine: Engine | None = None) -> dict:
    """Evaluate and write predictions to ``io.output``; return (and write) the summary.

    ``engine`` may be given ready-made (tests inject a scripted one); otherwise it is loaded from
    ``engine_cfg``.
    """
    if cfg.task not in TASKS:
        raise InputError(f"--task must be one of {', '.join(TASKS)}, got {cfg.task!r}")
    if cfg.prompt not in PROMPTS:
        raise InputError(f"--prompt must be one of {', '.join(PROMPTS)}, got {cfg.prompt!r}")
    if cfg.task == "judge" and cfg.tts:
        raise InputError("--tts applies to --task math only")
    if cfg.few_shot < 0 or (cfg.few_shot and (cfg.task != "judge" or not cfg.few_shot_examples)):
        raise InputError("--few-shot K (>= 0) goes with --task judge and --few-shot-examples FILE")
    from psr.core.grading import GRADERS

    if cfg.task == "math" and cfg.grader not in GRADERS:
        raise InputError(f"--grader must be one of {', '.join(GRADERS)}, got {cfg.grader!r}")
    if cfg.max_tokens < 1 or cfg.chunk_size < 1 or cfg.grade_timeout <= 0:
        raise InputError("--max-tokens and --chunk-size must be >= 1, --grade-timeout > 0")
    # Read and check every input before a (possibly large) model is loaded.
    items = load_problems(io) if cfg.task == "math" else load_eft(io)
    if not items:
        raise InputError("nothing to evaluate (check --limit and --shard)")
    stage = run_math if cfg.task == "math" else run_judge
    if engine is None:
        if not engine_cfg.model and engine_cfg.engine != "oracle":
            raise InputError("--model is required")
        from psr.engines import load_engine

        with load_engine(engine_cfg) as eng:
            summary = stage(io, eng, cfg, items, engine_cfg.model, engine_cfg.seed)
    else:
        summary = stage(io, engine, cfg, items, engine_cfg.model, engine_cfg.seed)
    write_summary(summary, cfg)
    return summary


def summarize_file(paths: list[str], cfg: EvalConfig) -> dict:
    """Recompute the summary of existing predictions (e.g. the concatenated shards of a run)."""
    preds = read_records(paths, "prediction")
    task = "judge" if preds and preds[0].get("task") == "judge" else "math"
    if task == "math":
        bad = [p["id"] for p in preds if not isinstance(p.get("steps"), list) or "benchmark" not in p]
        if bad:
            raise InputError(f"not psr eval predictions (no 'benchmark'/'steps'): {bad[0]!r}", paths[0])
    if task == "math":
        summary = summarize_math(preds)
    else:
        summary = summarize_scoring(preds) if preds[0].get("format") == "scoring" else summarize_judge(preds)
    summary["name"] = cfg.name
    write_summary(summary, cfg)
    return summary


# ---------------------------------------------------------------------------------------------
# Comparing iterations (Tables 1-3) from saved summaries


def load_summary(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            s = json.load(fh)
    except OSError as e:
        raise InputError(f"cannot open summary: {e.strerror}", path) from None
    except json.JSONDecodeError as e:
        raise InputError(f"not a JSON summary: {e.msg}", path, e.lineno) from None
    except UnicodeDecodeError as e:
        raise InputError(f"not a JSON summary: not valid UTF-8 (byte {e.start})", path) from None
    if not isinstance(s, dict) or s.get("task") not in TASKS:
        raise InputError("not a psr eval summary (no 'task': math|judge)", path)
    if s["task"] == "math" and not isinstance(s.get("benchmarks"), dict):
        raise InputError("math summary without 'benchmarks'", path)
    s.setdefault("name", None)
    s["name"] = s["name"] or os.path.splitext(os.path.basename(path))[0]
    return s


def compare(paths: list[str], plot: str | None = None, markdown: str | None = None,
            output_json: str | None = None) -> dict:
    """Rows = runs (M0..Mn, in the given order), columns = benchmarks + average; deltas vs the first row."""
    if len(paths) < 1:
        raise InputError("--compare needs at least one summary JSON")
    runs = [load_summary(p) for p in paths]
    tasks = {r["task"] for r in runs}
    if len(tasks) > 1:
        raise InputError("--compare mixes math and judge summaries; compare one kind at a time")
    if tasks == {"math"}:
        cols: list[str] = []
        for r in runs:
            cols += [b for b in r["benchmarks"] if b not in cols]
        if any(set(r["benchmarks"]) != set(cols) for r in runs):
            warn("the summaries cover different benchmarks: their averages are not comparable")
        values = [[(r["benchmarks"].get(b) or {}).get("accuracy") for b in cols] + [r.get("average")] for r in runs]
        cols = cols + ["average"]
    else:
        if len({r.get("format", "pairwise") for r in runs}) > 1:
            raise InputError("--compare mixes pairwise and scoring judge summaries; compare one kind at a time")
        if runs[0].get("format") == "scoring":
            cols = ["accuracy", "within_one", "pair_order_accuracy", "pair_tie_rate", "no_score_rate"]
        else:
            cols = ["accuracy_stored_order", "accuracy", "accuracy_better_as_A", "accuracy_better_as_B", "agreement",
                    "no_verdict_rate"]
        values = [[r.get(c) for c in cols] for r in runs]
    first = values[0]

    def cell(v, v0, k: int) -> str:
        if v is None:
            return "—"
        if k == 0 or v0 is None:
            return f"{v:.1f}"
        return f"{v:.1f} ({v - v0:+.1f})"

    head = ["model"] + cols
    rows = [[r["name"]] + [cell(v, first[j], i) for j, v in enumerate(vals)]
            for i, (r, vals) in enumerate(zip(runs, values, strict=True))]
    title = "accuracy % (delta vs " + runs[0]["name"] + ")"
    print_table(title, head, rows)
    md = f"{title}\n\n" + markdown_table(head, rows)
    if markdown:
        write_text(markdown, md)
    result = {"task": runs[0]["task"], "columns": cols, "rows": [
        {"name": r["name"], "values": dict(zip(cols, vals, strict=True)),
         "delta": {c: (None if v is None or v0 is None else round(v - v0, 2)) for c, v, v0 in zip(cols, vals, first, strict=True)}}
        for r, vals in zip(runs, values, strict=True)]}
    if output_json:
        write_text(output_json, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    if plot:
        plot_accuracy([r["name"] for r in runs], cols, values, plot)
    result["markdown"] = md
    return result


def plot_accuracy(names: list[str], cols: list[str], values: list[list[float | None]], path: str) -> None:
    """Accuracy by iteration: one line per benchmark, the average drawn bold."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a GPU box
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(names) + 3), 4.5))
    xs = list(range(len(names)))
    for j, c in enumerate(cols):
        ys = [v[j] if v[j] is not None else float("nan") for v in values]
        bold = c == "average"
        ax.plot(xs, ys, marker="o", linewidth=2.8 if bold else 1.4, color="black" if bold else None, label=c)
    ax.set_xticks(xs, names)
    ax.set_xlabel("iteration")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        fig.savefig(path, dpi=120, format="png")
    except OSError as e:
        raise PsrError(f"cannot write the plot: {e}") from None
    finally:
        plt.close(fig)


