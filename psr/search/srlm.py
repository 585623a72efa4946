"""The SRLM baseline (Self-Rewarding LMs, Yuan et al. 2024), the ``srlm`` method of psr.search.

SRLM baseline** (``mode="srlm"``): ``width`` whole solutions are sampled and scored 0-5 with the
  solution-scoring prompt; best = highest score (lowest index on ties), worst = lowest score among
  different texts; equal scores make no pair. An empty solution scores 0 without asking; a judgment
  without ``Score: n`` leaves that solution out and is counted (its entry in ``scores`` is -1).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from psr.core.answers import extract_answer
from psr.core.prompts import parse_score, srlm_score_prompt, step_prompt
from psr.core.steps import parse_steps, strip_step_prefix
from psr.engines import Chat, Engine, Sampling
from psr.engines.base import derive_seed, judge_fitting
from psr.search.config import SearchConfig


def _srlm_batch(engine: Engine, problems: list[dict], cfg: SearchConfig, judge: Engine | None = None) -> list[dict]:
    sampling = Sampling(
        n=cfg.width,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_tokens=cfg.max_solution_tokens,
        seeds=[derive_seed(cfg.seed, "srlm", p["id"]) for p in problems],
    )
    samples = engine.generate([Chat(step_prompt(p["question"])) for p in problems], sampling)
    texts = [[c.text.strip() for c in cs] for cs in samples]
    # An empty response earns no point of the additive rubric, so it is scored 0 without asking.
    asks = [(pi, k) for pi, t in enumerate(texts) for k, x in enumerate(t) if x]
    judge_sampling = Sampling(
        n=1,
        temperature=cfg.judge_temperature,
        top_p=1.0,
        max_tokens=cfg.judge_max_tokens,
        seeds=[derive_seed(cfg.seed, "srlm-judge", problems[pi]["id"], k) for pi, k in asks],
    )
    judged = judge_fitting(
        judge or engine,
        [Chat(srlm_score_prompt(problems[pi]["question"], texts[pi][k])) for pi, k in asks],
        judge_sampling,
    )
    scores: list[list[int | None]] = [[0] * len(t) for t in texts]
    for (pi, k), j in zip(asks, judged, strict=True):
        scores[pi][k] = parse_score(j[0].text)
    out = []
    for pi, p in enumerate(problems):
        t, sc = texts[pi], scores[pi]
        valid = [k for k in range(len(t)) if sc[k] is not None]
        pairs = []
        best = max(valid, key=lambda k: (sc[k], -k)) if valid else None
        if best is not None:
            rest = [k for k in valid if t[k] != t[best]]
            worst = min(rest, key=lambda k: (sc[k], k)) if rest else None
            if worst is not None and sc[worst] < sc[best]:
                pairs.append(
                    {
                        "previous_steps": [],
                        "chosen": strip_step_prefix(t[best]),
                        "rejected": strip_step_prefix(t[worst]),
                        "scores": [-1 if x is None else x for x in sc],
                        "step_index": 1,
                        "is_final": True,
                        "rejected_is_final": True,
                    }
                )
        best_text = t[best] if best is not None else t[0]
        tr = {"id": p["id"], "question": p["question"]}
        if p.get("answer") is not None:
            tr["answer"] = p["answer"]
        steps = parse_steps(best_text)
        tr.update(
            steps=steps,
            output=best_text,
            pred=extract_answer("\n".join(steps)),
            samples=t,
            sample_scores=sc,
            judge_calls=sum(1 for x in t if x),
            judge_failures=sum(1 for k in range(len(t)) if sc[k] is None),
            generated_tokens=sum(c.completion_tokens for c in samples[pi]),
            pairs=pairs,
        )
        out.append(tr)
    return out


def iter_srlm(
    engine: Engine, problems: Iterable[dict], cfg: SearchConfig, judge: Engine | None = None
) -> Iterator[list[dict]]:
    """The SRLM baseline over ``problems``, ``working_set`` problems per pair of engine calls."""
    pending = iter(problems)
    while batch := list(itertools.islice(pending, cfg.working_set)):
        yield _srlm_batch(engine, batch, cfg, judge)
