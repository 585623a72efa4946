"""`psr search`: self-judged step-wise search that makes step preference pairs (paper §3.3, Eq. 1-5).

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
* **SRLM baseline** (``mode="srlm"``): ``width`` whole solutions are sampled and scored 0-5 with the
  solution-scoring prompt; best = highest score (lowest index on ties), worst = lowest score among
  different texts; equal scores make no pair. An empty solution scores 0 without asking; a judgment
  without ``Score: n`` leaves that solution out and is counted (its entry in ``scores`` is -1).
* **Test-time scaling** (``tts``) runs the same search to answer; a tie there just takes the first
  candidate (the rollback exists to make better preference data, which tts does not need).

Speed: all active problems advance together. Each round makes one ``next_steps`` call for every
candidate of every active problem and one ``generate`` call for every judge prompt; finished problems
leave and new ones enter, so at most ``working_set`` problems are held at once.

Resume: PPD records go out per problem with ``RecordWriter(group_field="problem_id")``. A problem's
trajectory (which also holds its pairs) is written first and marks the problem done; if a kill lands
between the two writes, the next run rebuilds the missing PPD group from the trajectory.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from psr.core.answers import extract_answer
from psr.core.errors import InputError, PsrError
from psr.core.grading import grade_many
from psr.core.log import info, progress, warn
from psr.core.prompts import judge_prompt, parse_score, parse_verdict, srlm_score_prompt, step_prompt
from psr.core.records import IOConfig, RecordWriter
from psr.core.steps import format_steps, parse_steps, strip_step_prefix
from psr.engines import Chat, Engine, EngineConfig, Sampling, Step, load_engine
from psr.engines.base import derive_seed, judge_fitting, step_chat

MODES = ("psr", "srlm")


@dataclass
class SearchConfig:
    """Search hyper-parameters; the defaults are the paper's (§4) where it gives one."""

    mode: str = "psr"  # psr: step search (the paper) | srlm: whole-solution scoring baseline (Yuan et al.)
    tts: bool = False  # answer with the search (test-time scaling) instead of making pairs
    width: int = 6  # candidates a step (srlm: solutions a problem)
    temperature: float = 0.5
    top_p: float = 0.95
    max_iterations: int = 20  # generation rounds per problem, rollbacks included
    judge_orders: int = 1  # 1: each pair once (positions balanced) | 2: both orders, win only if they agree
    max_step_tokens: int = 512
    max_solution_tokens: int = 2048  # srlm samples
    judge_max_tokens: int = 1024
    judge_temperature: float = 0.0  # greedy judging: a verdict should not be a coin flip
    working_set: int = 128  # problems searched at once
    seed: int = 0

    def check(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.tts and self.mode != "psr":
            raise InputError("--tts runs the step search; it cannot be combined with --mode srlm")
        if self.width < 2:
            raise InputError(f"--width must be >= 2 (a pair needs two candidates), got {self.width}")
        if self.judge_orders not in (1, 2):
            raise InputError(f"--judge-orders must be 1 or 2, got {self.judge_orders}")
        for name in ("max_iterations", "max_step_tokens", "max_solution_tokens", "judge_max_tokens", "working_set"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.top_p <= 1:
            raise InputError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.temperature < 0 or self.judge_temperature < 0:
            raise InputError("temperatures must be >= 0")


# ---------------------------------------------------------------------------------------------
# Pairwise judging and scoring (pure functions; the scheduler below batches their engine calls)


def judge_plan(texts: list[str], orders: int = 1) -> list[tuple[int, int]]:
    """The judge calls for one step's candidates, as (index shown as A, index shown as B).

    Pairs with an empty or identical text are left out (their outcome is fixed, see the module doc).
    One order: pair (i, j), i < j, shows i as A when i + j is odd, else j, which balances positions.
    """
    plan = []
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if not texts[i] or not texts[j] or texts[i] == texts[j]:
                continue
            if orders == 2:
                plan += [(i, j), (j, i)]
            else:
                plan.append((i, j) if (i + j) % 2 else (j, i))
    return plan


def tally(texts: list[str], plan: list[tuple[int, int]], verdicts: list[str | None], orders: int = 1) -> list[int]:
    """Score_i = sum over j != i of O(i, j) (Eq. 2), from the verdicts of ``judge_plan``'s calls."""
    n = len(texts)
    scores = [0] * n
    for i in range(n):  # a non-empty step beats an empty one without asking
        if texts[i]:
            scores[i] += sum(1 for j in range(n) if not texts[j])
    winners = [(a if v == "A" else b) if v in ("A", "B") else None for (a, b), v in zip(plan, verdicts, strict=True)]
    if orders == 2:
        for k in range(0, len(plan), 2):
            if winners[k] is not None and winners[k] == winners[k + 1]:
                scores[winners[k]] += 1
    else:
        for w in winners:
            if w is not None:
                scores[w] += 1
    return scores


def pick(scores: list[int], texts: list[str]) -> tuple[int, int] | None:
    """(best, worst) by Eq. 3-4 with the documented tie-breaks, or None when the step is a tie."""
    best = scores.index(max(scores))
    others = [k for k in range(len(texts)) if texts[k] != texts[best]]
    if not others:
        return None
    worst = min(others, key=lambda k: (scores[k], k))
    if scores[worst] >= scores[best]:
        return None
    return best, worst


# ---------------------------------------------------------------------------------------------
# The step search


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
        warn(f"{fits.count(False)} problem(s) stopped: their partial solution no longer fits the policy's context "
             f"({engine.max_len} tokens)")
        for s, ok in zip(states, fits, strict=True):
            if not ok:
                s.stop_reason = "context"
        states = [s for s, ok in zip(states, fits, strict=True) if ok]
        if not states:
            return
    sampling = Sampling(n=cfg.width, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_step_tokens,
                        seeds=_seeds(cfg, states, "step"))
    cands: list[list[Step]] = engine.next_steps([(s.problem["question"], s.steps) for s in states], sampling)
    if len(cands) != len(states) or any(len(c) != cfg.width for c in cands):
        raise PsrError(f"engine {engine.name} returned the wrong number of candidate steps")
    texts = [[c.content.strip() for c in cs] for cs in cands]
    plans = [judge_plan(t, cfg.judge_orders) for t in texts]
    chats = [Chat(judge_prompt(s.problem["question"], s.steps, t[a], t[b]))
             for s, t, plan in zip(states, texts, plans, strict=True) for a, b in plan]
    judge_seeds = [derive_seed(seed, k) for seed, plan in zip(_seeds(cfg, states, "judge"), plans, strict=True)
                   for k in range(len(plan))]
    judge_sampling = Sampling(n=1, temperature=cfg.judge_temperature, top_p=cfg.top_p if cfg.judge_temperature else 1.0,
                              max_tokens=cfg.judge_max_tokens, seeds=judge_seeds)
    judged = judge_fitting(judge or engine, chats, judge_sampling)
    at = 0
    for s, cs, t, plan in zip(states, cands, texts, plans, strict=True):
        outs = [j[0] for j in judged[at:at + len(plan)]]
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
            s.pairs.append(None if worst is None else {
                "previous_steps": list(s.steps), "chosen": t[best], "rejected": t[worst], "scores": scores,
                "step_index": len(s.steps) + 1, "is_final": cs[best].is_final,
                "rejected_is_final": cs[worst].is_final})
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
    t.update(steps=list(s.steps), output=out, pred=extract_answer("\n".join(s.steps)), finished=s.stop_reason == "final",
             stop_reason=s.stop_reason, iterations=s.iterations, ties=s.ties, unanimous=s.unanimous,
             rollbacks=s.rollbacks,
             judge_calls=s.judge_calls, judge_failures=s.judge_failures, generated_tokens=s.generated_tokens)
    if not cfg.tts:
        t["pairs"] = [p for p in s.pairs if p is not None]
    return t


def iter_search(engine: Engine, problems: Iterable[dict], cfg: SearchConfig,
                judge: Engine | None = None) -> Iterator[list[dict]]:
    """Search every problem; yield the trajectories that finished in each round (in no fixed order).

    At most ``cfg.working_set`` problems are held at once; ``problems`` may be a lazy iterator. ``judge``
    judges the candidates instead of the policy ``engine`` (an external judge: a control, not the method).
    """
    cfg.check()
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


def solve_tts(engine: Engine, problems: list[dict], cfg: SearchConfig | None = None) -> list[dict]:
    """Test-time scaling: answer each problem with the self-judged step search (eval calls this).

    Returns one trajectory per problem, in input order: ``steps``, ``output`` (the steps rendered with
    their ``Step n:`` prefixes), ``pred`` (the extracted final answer), ``finished`` and the counters.
    """
    cfg = SearchConfig(tts=True) if cfg is None else cfg
    if not cfg.tts:
        cfg = SearchConfig(**{**cfg.__dict__, "tts": True})
    by_id = {}
    for batch in iter_search(engine, problems, cfg):
        for t in batch:
            by_id[t["id"]] = t
    return [by_id[p["id"]] for p in problems]


def ppd_records(traj: dict) -> list[dict]:
    """The PPD records (design.md) of one problem's trajectory."""
    return [{"id": f"{traj['id']}/{p['step_index']}", "problem_id": traj["id"], "question": traj["question"], **p}
            for p in traj.get("pairs", [])]


# ---------------------------------------------------------------------------------------------
# The SRLM baseline: whole solutions scored 0-5 by the model itself (Yuan et al. 2024)


def _srlm_batch(engine: Engine, problems: list[dict], cfg: SearchConfig, judge: Engine | None = None) -> list[dict]:
    sampling = Sampling(n=cfg.width, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_solution_tokens,
                        seeds=[derive_seed(cfg.seed, "srlm", p["id"]) for p in problems])
    samples = engine.generate([Chat(step_prompt(p["question"])) for p in problems], sampling)
    texts = [[c.text.strip() for c in cs] for cs in samples]
    # An empty response earns no point of the additive rubric, so it is scored 0 without asking.
    asks = [(pi, k) for pi, t in enumerate(texts) for k, x in enumerate(t) if x]
    judge_sampling = Sampling(n=1, temperature=cfg.judge_temperature, top_p=1.0, max_tokens=cfg.judge_max_tokens,
                              seeds=[derive_seed(cfg.seed, "srlm-judge", problems[pi]["id"], k) for pi, k in asks])
    judged = judge_fitting(judge or engine, [Chat(srlm_score_prompt(problems[pi]["question"], texts[pi][k]))
                                      for pi, k in asks], judge_sampling)
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
                pairs.append({"previous_steps": [], "chosen": strip_step_prefix(t[best]),
                              "rejected": strip_step_prefix(t[worst]), "scores": [-1 if x is None else x for x in sc],
                              "step_index": 1, "is_final": True, "rejected_is_final": True})
        best_text = t[best] if best is not None else t[0]
        tr = {"id": p["id"], "question": p["question"]}
        if p.get("answer") is not None:
            tr["answer"] = p["answer"]
        steps = parse_steps(best_text)
        tr.update(steps=steps, output=best_text, pred=extract_answer("\n".join(steps)), samples=t, sample_scores=sc,
                  judge_calls=sum(1 for x in t if x),
                  judge_failures=sum(1 for k in range(len(t)) if sc[k] is None),
                  generated_tokens=sum(c.completion_tokens for c in samples[pi]), pairs=pairs)
        out.append(tr)
    return out


def iter_srlm(engine: Engine, problems: Iterable[dict], cfg: SearchConfig,
              judge: Engine | None = None) -> Iterator[list[dict]]:
    """The SRLM baseline over ``problems``, ``working_set`` problems per pair of engine calls."""
    cfg.check()
    pending = iter(problems)
    while batch := list(itertools.islice(pending, cfg.working_set)):
        yield _srlm_batch(engine, batch, cfg, judge)


# ---------------------------------------------------------------------------------------------
# The stage


def _grade(trajs: list[dict]) -> None:
    """Add ``correct`` to trajectories that carry a gold answer (psr.core.grading's default grader)."""
    gold = [t for t in trajs if t.get("answer") is not None]
    if not gold:
        return
    for t, g in zip(gold, grade_many(["\n".join(t["steps"]) for t in gold], [t["answer"] for t in gold]), strict=True):
        t["pred"], t["correct"] = g.pred, g.correct


def _read_trajectories(path: str, ids: set[str]) -> dict[str, dict]:
    found = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                if rec.get("id") in ids:
                    found[rec["id"]] = rec
    return found


def run(io: IOConfig, engine_cfg: EngineConfig | None = None, cfg: SearchConfig | None = None, *,
        trajectories: str | None = None, engine: Engine | None = None, judge_cfg: EngineConfig | None = None,
        judge: Engine | None = None) -> dict:
    """Read problems, search, write PPD records to ``io.output`` and trajectories to ``trajectories``.

    With ``cfg.tts`` the trajectories themselves go to ``io.output``. ``engine`` overrides ``engine_cfg``
    (tests, the demo). ``judge_cfg`` / ``judge`` give an external judge (default: the policy judges itself).
    Returns the summary it also logs.
    """
    cfg = cfg or SearchConfig()
    cfg.check()
    if cfg.tts and trajectories:
        raise InputError("with --tts the trajectories are the output (-o); drop --trajectories")
    if trajectories and trajectories == io.output:
        raise InputError("--trajectories must differ from -o")

    if cfg.tts:
        main = RecordWriter(io.output, overwrite=io.overwrite)
        traj = None
    else:
        main = RecordWriter(io.output, overwrite=io.overwrite, group_field="problem_id")
        traj = RecordWriter(trajectories, overwrite=io.overwrite) if trajectories else None
    try:
        problems = io.todo("problem")
        done = set(main.done)
        if traj is not None:
            # (records already sent to stdout cannot be checked, so nothing is rebuilt there)
            orphans = (traj.done - main.done) & {p["id"] for p in problems} if io.output != "-" else set()
            if orphans:  # killed between a trajectory and its PPD group: rebuild the group from the trajectory
                for pid, t in _read_trajectories(trajectories, orphans).items():
                    main.write_group(pid, ppd_records(t))
                info(f"rebuilt the PPD records of {len(orphans)} problem(s) from {trajectories}")
            missing = main.done - traj.done
            if missing & {p["id"] for p in problems}:
                warn(f"{len(missing)} problem(s) already in {io.output} have no trajectory in {trajectories}; "
                     "they are not searched again (use --overwrite to redo everything)")
            done = main.done | traj.done
        before = len(problems)
        problems = [p for p in problems if p["id"] not in done]
        if before != len(problems):
            info(f"resuming: {before - len(problems)} of {before} problems already done")
        summary = {"problems": 0, "pairs": 0, "finished": 0, "judge_calls": 0, "judge_failures": 0,
                   "rollbacks": 0, "unanimous": 0, "iterations": 0, "generated_tokens": 0, "graded": 0, "correct": 0}
        if not problems:
            info("nothing to do")
            return summary
        own = engine is None
        engine = load_engine(engine_cfg or EngineConfig()) if own else engine
        own_judge = judge is None and judge_cfg is not None
        judge = load_engine(judge_cfg) if own_judge else judge
        try:
            batches = (iter_srlm(engine, problems, cfg, judge) if cfg.mode == "srlm"
                       else iter_search(engine, problems, cfg, judge))
            with progress("search (tts)" if cfg.tts else f"search ({cfg.mode})", len(problems)) as advance:
                for batch in batches:
                    _grade(batch)
                    for t in batch:
                        if cfg.tts:
                            main.write(t)
                        else:
                            recs = ppd_records(t)
                            if traj is not None:
                                traj.write(t)
                            main.write_group(t["id"], recs)
                            summary["pairs"] += len(recs)
                        _add(summary, t)
                    advance(len(batch))
        finally:
            if own:
                engine.close()
            if own_judge:
                judge.close()
    finally:
        main.close()
        if traj is not None:
            traj.close()
    _report(summary, cfg)
    return summary


def _add(summary: dict, t: dict) -> None:
    summary["problems"] += 1
    summary["finished"] += bool(t.get("finished", True))
    for k in ("judge_calls", "judge_failures", "rollbacks", "unanimous", "iterations", "generated_tokens"):
        summary[k] += t.get(k, 0)
    if "correct" in t:
        summary["graded"] += 1
        summary["correct"] += bool(t["correct"])


def _report(s: dict, cfg: SearchConfig) -> None:
    parts = [f"{s['problems']} problems"]
    if not cfg.tts:
        parts.append(f"{s['pairs']} pairs")
    if cfg.mode == "psr":
        parts.append(f"{s['finished']} reached a final answer, {s['rollbacks']} rollbacks, {s['iterations']} rounds, "
                     f"{s['unanimous']} steps taken unanimously (no pair)")
    parts.append(f"{s['judge_calls']} judge calls ({s['judge_failures']} without a verdict)")
    if s["graded"]:
        parts.append(f"accuracy {s['correct']}/{s['graded']} = {s['correct'] / s['graded']:.1%}")
    info("search: " + ", ".join(parts))


__all__ = ["SearchConfig", "judge_plan", "tally", "pick", "iter_search", "iter_srlm", "solve_tts", "ppd_records",
           "run"]
