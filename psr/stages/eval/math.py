"""``psr eval --task math``: benchmark accuracy and step statistics (paper Tables 1, 4, 7, 8), greedy or with the
self-judged step search (``--tts``, Tables 5, 9)."""

from __future__ import annotations

import os
from dataclasses import replace
from statistics import mean

from psr.core.errors import InputError
from psr.core.log import progress
from psr.core.prompts import QWEN_COT_SYSTEM, step_prompt
from psr.core.records import IOConfig, RecordWriter, parse_shard, read_records, select, skip_done
from psr.core.steps import parse_steps
from psr.engines.base import TOO_LONG, Chat, Engine, Sampling
from psr.stages.eval.common import EvalConfig, chunks, fail_if_unanswered, read_back

# Suffixes that name a split, not a benchmark: gsm8k_test.jsonl is the benchmark "gsm8k".
_SPLIT_SUFFIXES = ("_test", "-test", ".test")


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
            raise InputError(
                f"two inputs are both named benchmark {name!r} ({seen[name]} and {path}); name them with NAME=PATH",
                path,
            )
        seen[name] = path
        recs = select(read_records(path, "problem"), None, io.limit)
        for r in recs:
            out.append(
                {
                    "id": f"{name}/{r['id']}",
                    "benchmark": name,
                    "source_id": r["id"],
                    "question": r["question"],
                    "answer": r.get("answer"),
                }
            )
    return select(out, parse_shard(io.shard), None)


# ---------------------------------------------------------------------------------------------
# Grading (psr.core.grading: bounded in time, never evaluates model text)


def grade_outputs(
    outputs: list[str],
    golds: list[str | None],
    grader: str,
    timeout: float = 3.0,
    questions: list[str | None] | None = None,
) -> list[tuple[str | None, bool | None, str | None]]:
    """(extracted answer, correct, failure) for each output, as ``psr grade`` computes them; correct is
    None where there is no gold answer; failure is "no answer", "timeout", ... or None. ``questions``
    lets the default grader see whether a question asks for a percent, as ``psr grade`` does."""
    from psr.core.grading import grade_many

    idx = [i for i, g in enumerate(golds) if g is not None]
    res: list[tuple[str | None, bool | None, str | None]] = [(None, None, None)] * len(outputs)
    if idx:
        results = grade_many(
            [outputs[i] for i in idx],
            [golds[i] for i in idx],
            grader=grader,
            timeout=timeout,
            questions=[questions[i] for i in idx] if questions is not None else None,
        )
        for i, r in zip(idx, results, strict=True):
            res[i] = (r.pred, bool(r.correct), r.failure)
    if len(idx) != len(outputs):
        from psr.core.answers import extract_answer

        for i, g in enumerate(golds):
            if g is None:
                res[i] = (extract_answer(outputs[i]), None, None)
    return res


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
    for batch in chunks(todo, cfg.chunk_size):
        outs = engine.generate_partial([_chat(p["question"], cfg.prompt) for p in batch], sampling)
        unanswered += [p["id"] for p, o in zip(batch, outs, strict=True) if o is None]
        got = [(p, o) for p, o in zip(batch, outs, strict=True) if o is not None]
        yield (
            [p for p, _ in got],
            [
                {"output": o[0].text, "finish_reason": o[0].finish_reason, "output_tokens": o[0].completion_tokens}
                for _, o in got
            ],
        )


def _answer_tts(engine: Engine, todo: list[dict], cfg: EvalConfig, seed: int, unanswered: list[str]):
    """Yield (problems, answers) as the step search finishes them; ``chunk_size`` problems are searched
    at once and a finished one is replaced at once, so the batch stays full."""
    from psr.search import iter_tts

    if cfg.prompt != "step":
        raise InputError("--tts searches with the Figure 4 step prompt; drop --prompt")
    # --max-tokens bounds each step and each judgment (the search's own defaults: 512 and 1024).
    scfg = replace(
        cfg.search,
        tts=True,
        max_step_tokens=min(cfg.max_tokens, 512),
        judge_max_tokens=min(cfg.max_tokens, 1024),
        working_set=cfg.chunk_size,
        seed=seed,
    )
    by_id = {p["id"]: p for p in todo}
    for trajs in iter_tts(engine, ({"id": p["id"], "question": p["question"]} for p in todo), scfg):
        yield (
            [by_id[t["id"]] for t in trajs],
            [
                {
                    "output": t["output"],
                    "finish_reason": t["stop_reason"],
                    "output_tokens": t["generated_tokens"],
                    "tts": {k: t[k] for k in ("iterations", "ties", "rollbacks", "judge_calls", "judge_failures")},
                }
                for t in trajs
            ],
        )


def _predictions(engine: Engine, batch: list[dict], answers: list[dict], cfg: EvalConfig) -> list[dict]:
    graded = grade_outputs(
        [a["output"] for a in answers],
        [p["answer"] for p in batch],
        cfg.grader,
        cfg.grade_timeout,
        questions=[p.get("question") for p in batch],
    )
    steps = [parse_steps(a["output"]) for a in answers]
    counts = iter(engine.count_tokens([x for st in steps for x in st]))  # one tokenizer call per batch
    out = []
    for p, a, st, (pred, ok, failure) in zip(batch, answers, steps, graded, strict=True):
        rec = {
            "id": p["id"],
            "benchmark": p["benchmark"],
            "source_id": p["source_id"],
            "question": p["question"],
            "output": a["output"],
            "steps": st,
            "pred": pred,
            "answer": p["answer"],
            "correct": ok,
            "finish_reason": a["finish_reason"],
            "output_tokens": a["output_tokens"],
            "step_tokens": [next(counts) for _ in st],
        }
        if failure:
            rec["grade_failure"] = failure
        if "tts" in a:
            rec["tts"] = a["tts"]
        out.append(rec)
    return out


def run_math(
    io: IOConfig, engine: Engine, cfg: EvalConfig, problems: list[dict], model: str | None = None, seed: int = 0
) -> dict:
    ids = {p["id"] for p in problems}
    with RecordWriter(io.output, overwrite=io.overwrite) as writer:
        todo = skip_done(problems, writer.done, writer.path)
        answer = _answer_tts if cfg.tts else _answer_greedy
        written: list[dict] = []
        unanswered: list[str] = []
        with progress("eval" + (" (tts)" if cfg.tts else ""), len(todo)) as advance:
            for batch, answers in answer(engine, todo, cfg, seed, unanswered):
                for rec in _predictions(engine, batch, answers, cfg):
                    writer.write(rec)
                    written.append(rec)
                advance(len(batch))
    fail_if_unanswered(unanswered, io.output)
    preds = read_back(io.output, ids, written)
    summary = summarize_math(preds, [p["benchmark"] for p in problems])
    summary.update(
        model=model,
        grader=cfg.grader,
        prompt=cfg.prompt,
        tts=cfg.tts,
        tokens_unit=_tokens_unit(engine),
        name=cfg.name,
        shard=io.shard,
        limit=io.limit,
    )
    if cfg.tts:
        summary["tts_config"] = {k: getattr(cfg.search, k) for k in ("width", "temperature", "top_p", "max_iterations")}
    return summary


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
