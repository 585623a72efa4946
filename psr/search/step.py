"""The self-judged step-wise search (paper §3.3, Eq. 1-5): preference pairs, or answers (test-time scaling).

For each problem the model continues its own partial solution one step at a time: it samples ``width``
candidate next steps (Figure 4 prompt, the chosen steps as the start of the assistant turn), judges them
pairwise with the Figure 5 prompt, scores ``Score_i = sum_j O(i, j)`` and keeps (best, worst) as a pair;
the best becomes the next step. When every candidate scores the same, the previous step and its pair are
discarded and that step is generated again (at step 1 step 1 is just sampled again). A problem stops when
its chosen step holds the final answer, or after ``max_iterations`` generation rounds (rollbacks count), or
when its partial solution no longer fits the policy's context.

Choices the paper leaves open, made here:

* **Judge orders.** ``judge_orders=1`` (default: the paper's Eq. 2 at its cost, w(w-1)/2 judgments a
  step) shows each pair once, with A/B positions alternating so that every candidate sits in position
  A in half of its comparisons (2 or 3 of 5 at w=6). A position-biased judge then favours no candidate
  systematically; with an odd width a judge that always answers "A" even scores a tie, with an even
  width it still makes pairs out of bias alone. ``judge_orders=2`` judges both orders and counts a win
  only when they agree: twice the judge cost, and pure position bias yields ties (rollbacks), never
  pairs. Choose 2 when the model's judging is known to be position-biased (small models often are).
* **Ties.** best = the lowest-index candidate with the highest score, worst = the lowest-index candidate
  with the lowest score among those whose text differs from the best (so chosen != rejected). If no
  such candidate scores below the best, the step counts as a tie.
* **Identical or empty candidates** are not sent to the judge: two identical texts win nothing against
  each other (a verdict could only reflect position bias); an empty step loses to every non-empty one,
  and two empty steps tie.
* **Unanimous steps.** When all ``width`` candidates are the same (non-empty) text, that step is taken
  with no pair and no rollback, and counted in ``unanimous``. There is nothing to judge, and Eq. 5's
  rollback would discard the previous step because the model is sure of this one: a policy that samples
  one step at most of its steps (the embedded world's M1 after SFT) then never finishes a solution
  (measured: 1 of 80 problems finished within 10 rounds, 793 rounds, 5 pairs). A judgment with no parsable ``[[A]]``/``[[B]]`` is no win for either side
  and is counted in ``judge_failures``.
* **Unfinished problems** (iteration limit) keep their pairs: each was a strict self-judged preference
  at its step. The trajectory says ``finished: false``.
* **Test-time scaling** (``tts``) runs the same search to answer; a tie there just takes the first
  candidate (the rollback exists to make better preference data, which tts does not need).

Speed: all active problems advance together. Each round makes one ``next_steps`` call for every
candidate of every active problem and one ``generate`` call for every judge prompt; finished problems
leave and new ones enter, so at most ``working_set`` problems are held at once.

"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from psr.core.answers import extract_answer
from psr.core.errors import PsrError
from psr.core.log import warn
from psr.core.prompts import judge_prompt, parse_verdict
from psr.core.steps import format_steps
from psr.engines import Chat, Engine, Sampling, Step
from psr.engines.base import derive_seed, judge_fitting, step_chat
from psr.search.config import SearchConfig
from psr.search.judging import judge_plan, pick, tally


@dataclass
class _State:
    """One problem being searched."""

    problem: dict
    steps: list[str] = field(default_factory=list)
    pairs: list[dict] = field(default_factory=list)  # pairs[k] was made choosing steps[k]
    iterations: int = 0
    ties: int = 0
    unanimous: int = 0  # steps where every candidate was the same text, taken without a pair
    rollbacks: int = 0
    judge_calls: int = 0
    judge_failures: int = 0
    generated_tokens: int = 0
    stop_reason: str | None = None  # "final" | "max_iterations" | "context" (the prompt outgrew the model)


def _seeds(cfg: SearchConfig, states: list[_State], what: str) -> list[int]:
    # Each problem's own seed for its round (rollbacks count as rounds, so a rolled-back step, whose prompt
    # is unchanged, is sampled afresh rather than identically): from the run seed and the problem id, never
    # from a count of engine calls, so a resumed, sharded or reordered run samples each problem the same.
    return [derive_seed(cfg.seed, what, s.problem["id"], s.iterations) for s in states]


def _advance(engine: Engine, states: list[_State], cfg: SearchConfig, judge: Engine | None = None) -> None:
    """One generation round for every state: sample, judge (``judge``, by default the policy itself), score,
    then choose or roll back."""
    # A partial solution that has outgrown the policy's context ends its search (stop_reason "context")
    # instead of failing the whole batch: a rerun would meet the same prompt again.
    fits = engine.fits([step_chat(s.problem["question"], s.steps) for s in states])
    if not all(fits):
        warn(
            f"{fits.count(False)} problem(s) stopped: their partial solution no longer fits the policy's context "
            f"({engine.max_len} tokens)"
        )
        for s, ok in zip(states, fits, strict=True):
            if not ok:
                s.stop_reason = "context"
        states = [s for s, ok in zip(states, fits, strict=True) if ok]
        if not states:
            return
    sampling = Sampling(
        n=cfg.width,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_tokens=cfg.max_step_tokens,
        seeds=_seeds(cfg, states, "step"),
    )
    cands: list[list[Step]] = engine.next_steps([(s.problem["question"], s.steps) for s in states], sampling)
    if len(cands) != len(states) or any(len(c) != cfg.width for c in cands):
        raise PsrError(f"engine {engine.name} returned the wrong number of candidate steps")
    texts = [[c.content.strip() for c in cs] for cs in cands]
    plans = [judge_plan(t, cfg.judge_orders) for t in texts]
    chats = [
        Chat(judge_prompt(s.problem["question"], s.steps, t[a], t[b]))
        for s, t, plan in zip(states, texts, plans, strict=True)
        for a, b in plan
    ]
    judge_seeds = [
        derive_seed(seed, k)
        for seed, plan in zip(_seeds(cfg, states, "judge"), plans, strict=True)
        for k in range(len(plan))
    ]
    judge_sampling = Sampling(
        n=1,
        temperature=cfg.judge_temperature,
        top_p=cfg.top_p if cfg.judge_temperature else 1.0,
        max_tokens=cfg.judge_max_tokens,
        seeds=judge_seeds,
    )
    judged = judge_fitting(judge or engine, chats, judge_sampling)
    at = 0
    for s, cs, t, plan in zip(states, cands, texts, plans, strict=True):
        outs = [j[0] for j in judged[at : at + len(plan)]]
        at += len(plan)
        verdicts = [parse_verdict(o.text) for o in outs]
        s.iterations += 1
        s.judge_calls += len(plan)
        s.judge_failures += sum(v is None for v in verdicts)
        s.generated_tokens += sum(c.completion.completion_tokens for c in cs) + sum(o.completion_tokens for o in outs)
        scores = tally(t, plan, verdicts, cfg.judge_orders)
        chosen = pick(scores, t)
        if chosen is None and t[0] and len(set(t)) == 1:
            s.unanimous += 1  # every candidate is the same step: take it, no pair, no rollback (module doc)
            chosen = (0, None)
        elif chosen is None:
            s.ties += 1
            if not cfg.tts:
                if s.steps:  # discard s_{l-1} and its pair; step l-1 is generated again next round
                    s.steps.pop()
                    s.pairs.pop()
                    s.rollbacks += 1
            elif t[0]:  # tts: all equal, so any candidate will do
                chosen = (0, None)
        if chosen is not None:
            best, worst = chosen
            # pairs[k] belongs to steps[k] (None: taken without a pair), so a rollback drops both together
            s.pairs.append(
                None
                if worst is None
                else {
                    "previous_steps": list(s.steps),
                    "chosen": t[best],
                    "rejected": t[worst],
                    "scores": scores,
                    "step_index": len(s.steps) + 1,
                    "is_final": cs[best].is_final,
                    "rejected_is_final": cs[worst].is_final,
                }
            )
            s.steps.append(t[best])
            if cs[best].is_final:
                s.stop_reason = "final"
                continue
        if s.iterations >= cfg.max_iterations:
            s.stop_reason = "max_iterations"


def _trajectory(s: _State, cfg: SearchConfig) -> dict:
    p = s.problem
    out = format_steps(s.steps)
    t = {"id": p["id"], "question": p["question"]}
    if p.get("answer") is not None:
        t["answer"] = p["answer"]
    # the answer is read from the step contents: the "Step n:" markers are numbers too
    t.update(
        steps=list(s.steps),
        output=out,
        pred=extract_answer("\n".join(s.steps)),
        finished=s.stop_reason == "final",
        stop_reason=s.stop_reason,
        iterations=s.iterations,
        ties=s.ties,
        unanimous=s.unanimous,
        rollbacks=s.rollbacks,
        judge_calls=s.judge_calls,
        judge_failures=s.judge_failures,
        generated_tokens=s.generated_tokens,
    )
    if not cfg.tts:
        t["pairs"] = [p for p in s.pairs if p is not None]
    return t


def iter_search(
    engine: Engine, problems: Iterable[dict], cfg: SearchConfig, judge: Engine | None = None
) -> Iterator[list[dict]]:
    """Search every problem; yield the trajectories that finished in each round (in no fixed order).

    At most ``cfg.working_set`` problems are held at once; ``problems`` may be a lazy iterator. ``judge``
    judges the candidates instead of the policy ``engine`` (an external judge: a control, not the method).
    """
    pending = iter(problems)
    active: list[_State] = []
    while True:
        while len(active) < cfg.working_set and (p := next(pending, None)) is not None:
            active.append(_State(p))
        if not active:
            return
        _advance(engine, active, cfg, judge)
        done = [s for s in active if s.stop_reason]
        active = [s for s in active if not s.stop_reason]
        if done:
            yield [_trajectory(s, cfg) for s in done]


def iter_tts(
    engine: Engine, problems: Iterable[dict], cfg: SearchConfig, judge: Engine | None = None
) -> Iterator[list[dict]]:
    """The step search as test-time scaling: ``iter_search`` with ``cfg.tts`` set (a tie takes the first candidate,
    trajectories carry no pairs)."""
    return iter_search(engine, problems, cfg if cfg.tts else replace(cfg, tts=True), judge)


def solve_tts(engine: Engine, problems: list[dict], cfg: SearchConfig | None = None) -> list[dict]:
    """Test-time scaling: answer each problem with the self-judged step search, all at once.

    Returns one trajectory per problem, in input order: ``steps``, ``output`` (the steps rendered with
    their ``Step n:`` prefixes), ``pred`` (the extracted final answer), ``finished`` and the counters.
    """
    by_id = {}
    for batch in iter_tts(engine, problems, cfg or SearchConfig(tts=True)):
        for t in batch:
            by_id[t["id"]] = t
    return [by_id[p["id"]] for p in problems]
