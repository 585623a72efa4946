"""The offline oracle: plays the paper's external roles for world problems through the Engine interface.

- Judge (o1's role in annotate-eft): answers a Figure 5 prompt with a short, regular explanation
  that checks each step, then ``[[A]]`` or ``[[B]]``.
- Solution scorer (the strong judge of the SRLM baseline's scoring-format EFT): answers Yuan et
  al.'s 0-5 prompt with a short justification ending in ``Score: n`` (:func:`score_solution`).
- Segmenter (o1's role in segment): answers a Figure 3 prompt with the solution split into
  ``Step n:`` lines, content unchanged.
- Step labels (PRM800K's role in train-prm): :func:`label_step` and :func:`prm_examples`.
- Also a perfect policy (Figure 4 prompt: the reference steps) and a perfect PRM (``score_steps``),
  so that stages can be tested offline end to end.

A step is judged locally, like a human grader reading a partial solution: it must carry out the
question's next event on the quantity the previous step ended with (or the question's start),
with right arithmetic, without repeating an earlier step, and box an answer only at the end.
The oracle only ever parses text; it never evaluates it.
"""

from __future__ import annotations

import hashlib
import random
import re

from psr.core.errors import PsrError
from psr.core.prompts import JUDGE_PROMPT, SEGMENT_PROMPT, SRLM_SCORE_PROMPT, STEP_PROMPT
from psr.core.steps import format_steps, parse_steps, strip_step_prefix
from psr.engines.base import Completion, Engine, EngineConfig, Sampling
from psr.world import events as events_world
from psr.world.check import Check, _norm, check_step, lookup, next_equation
from psr.world.generator import apply, parse_equation, parse_question, render_step
from psr.world.scoring import score_solution  # re-exported: the oracle engine answers the scoring prompt


def _meta(problem: dict) -> dict:
    meta = problem.get("world") or parse_question(problem["question"])
    if meta is None:
        raise PsrError(f"not a world problem: {problem['question'][:80]!r}")
    return meta


def label_step(problem: dict, previous_steps: list[str], step: str) -> bool:
    """PRM800K's role: is ``step`` a right next step after ``previous_steps``?"""
    return check_step(_meta(problem), previous_steps, step).ok


def _tiebreak(text: str) -> str:
    # Position-independent, so a tie gets the same verdict whichever side each step is shown on.
    return hashlib.sha256(_norm(text).encode()).hexdigest()


JUDGE_STYLES = ("verdict-first", "recompute-first", "solve-first", "lookup-first", "verdict-only")
JUDGE_STYLE = "verdict-first"


def judge(meta: dict, previous_steps: list[str], step_a: str, step_b: str, style: str = JUDGE_STYLE) -> str:
    """The Figure 5 answer: each assistant's step checked, a comparison when needed, the verdict.

    ``style`` changes the explanation only, never the verdict:

    - ``verdict-first``: "Assistant B computes 8 - 3 = 6, which is wrong: 8 - 3 is 5." The decisive
      word comes before the recomputation, so a model trained on it must compare in its head.
    - ``recompute-first``: "Assistant B writes 8 - 3 = 6. Start: should be 8, it uses 8: same.
      Event: should be - 3, it does - 3: same. Result: 8 - 3 = 5, it wrote 6: different. So
      Assistant B is wrong." Stops at the first failing check; every decision compares two
      adjacent values.
    - ``solve-first``: "My next step: 8 - 3 = 5. Assistant A writes 8 - 3 = 5: same. Assistant B
      writes 8 - 3 = 6: different." The judge first writes the step it would take, as the policy
      does, then sets each equation against its own (MT-Bench's reference-guided judge, with the
      model's own reference).
    - ``lookup-first``: "After Ava gives away 2 pencils, the next event is: Ava finds 9 more pencils, so
      21 + 9 = 30. Assistant A: Ava finds 9 more pencils, so 21 + 9 = 30. Right. Assistant B: ..." The
      judge writes the right step as a lookup anchored on the last step's own words (check.lookup), then
      copies each assistant's step under it; each verdict is a compare of two adjacent lines.
    - ``verdict-only``: the verdict alone, no explanation (not the paper's: its Figure 5 asks for one). An
      experiment: a judge that never writes a number cannot copy or recompute the wrong one. Measured
      (same SFT as below, session 6): 50.3% from data/m0, 50.0% from a checks-first M0 that verifies
      sums; both answer [[A]] to (almost) everything.

    Measured (bench/judge_learnability.py; M0 = 0.9M params pretrained 12 min, seed 0; SFT on 1000
    IFT + 2000 EFT, 400 steps x 16, lr 1e-3; 150 held-out pairs judged in both orders): verdict-first
    151/300 = 50.3% (95% CI 44.7-56.0), recompute-first 153/300 = 51.0% (45.4-56.6), both 100%
    parsable. With 6000 EFT pairs (each seen about once; 100 test pairs): verdict-first 104/200 = 52.0%
    (45.1-58.8, picks A 92%), recompute-first 109/200 = 54.5% (47.6-61.3, picks A 78%). Neither
    beats chance. With the current M0 (512-token pretraining sequences and graded-solution documents,
    psr.world.pretrain), the same 1000 IFT + 2000 EFT: verdict-first 174/300 = 58.0% (52.3-63.4) at lr
    1e-3, 57.7% at 3e-4; recompute-first 52.0% (46.4-57.6); verdict-first with 6000 EFT, 800 steps: 59.7%
    (54.0-65.1). That model copies both steps' equations into its explanation but still calls the first
    one "correct" too often (picks A 70-78%). solve-first, same run: 157/300 = 52.3% (46.7-57.9, picks A
    86%): its "own" step copies Assistant A's equation, and "same"/"different" follows the position,
    not the numbers. The same M0 does not verify in its own pretraining format either: asked to
    continue "Step k computes a op b = c, which is" after a held-out solution, it says "correct" for 26%
    of right steps and "wrong" for 74% of wrong ones (377 steps, the step under review always last, as
    a cut-off solution's wrong step is in its review documents). The shorter verdict-first stays the default. In the earlier
    M0's recompute-first outputs inspected, the "should be" values are copied from the judged step or
    the other assistant, not from the question or previous step: the walk rationalises a
    position-based guess instead of producing the verdict.
    """
    if style not in JUDGE_STYLES:
        raise ValueError(f"unknown judge style {style!r} (one of {', '.join(JUDGE_STYLES)})")
    ca, cb = check_step(meta, previous_steps, step_a), check_step(meta, previous_steps, step_b)
    if style == "verdict-first":
        lines = [f"Assistant A {ca.text}.", f"Assistant B {cb.text}."]
    elif style == "lookup-first":
        lines = [lookup(meta, previous_steps)]
        lines += [
            f"Assistant {n}: {_norm(st)} {'Right' if c.ok else 'Wrong'}."
            for n, st, c in (("A", step_a, ca), ("B", step_b, cb))
        ]
    elif style == "recompute-first":
        lines = [ca.walk.replace("{X}", "Assistant A"), cb.walk.replace("{X}", "Assistant B")]
    else:
        mine = next_equation(meta, previous_steps)
        lines = [f"My next step: {mine}." if mine else "My next step: none, the question has no event left."]
        lines += [_against(mine, step, c, name) for step, c, name in ((step_a, ca, "A"), (step_b, cb, "B"))]
    if ca.score != cb.score:
        better = "A" if ca.score > cb.score else "B"
        if not (ca.ok or cb.ok):
            lines.append(f"Both are wrong, but Assistant {better} gets further.")
    else:
        better = "A" if _tiebreak(step_a) <= _tiebreak(step_b) else "B"
        lines.append(f"Both are {'correct' if ca.ok else 'wrong'}; I pick Assistant {better}.")
    if style == "verdict-only":
        return f"[[{better}]]"
    return " ".join(lines) + f" [[{better}]]"


def _against(mine: str | None, step: str, c: Check, name: str) -> str:
    """solve-first: one assistant's equation set against the judge's own."""
    eq = parse_equation(_norm(step))
    if mine is None or eq is None:
        return f"Assistant {name} {c.text}."
    shown = f"{eq[0]} {eq[1]} {eq[2]} = {eq[3]}"
    if shown != mine:
        return f"Assistant {name} writes {shown}: different."
    if c.ok:
        return f"Assistant {name} writes {shown}: same."
    # the right equation, wrong otherwise (boxed too early or wrongly, repeats an earlier step)
    return f"Assistant {name} writes {shown}: same, but {c.text.split(', but ')[-1].split(', which is ')[-1]}."


# ------------------------------------------------------------------------------------------------
# PRM data (TRL stepwise supervision)

CORRUPTIONS = ("wrong_sum", "wrong_quantity", "wrong_operand", "copied_step")


def corruptions(problem: dict) -> tuple[str, ...]:
    """The corruption kinds of ``problem``'s world."""
    return events_world.CORRUPTIONS if problem["world"].get("kind") == events_world.KIND else CORRUPTIONS


def corrupt_step(problem: dict, k: int, kind: str, rng: random.Random) -> str | None:
    """A wrong version of reference step ``k``: ``kind`` in CORRUPTIONS (events_world.CORRUPTIONS in the
    events world); None if it has no such error."""
    meta = problem["world"]
    if meta.get("kind") == events_world.KIND:
        return events_world.corrupt(problem, k, kind, rng)
    values, (sym, x) = meta["values"], meta["ops"][k]
    a, c = values[k], values[k + 1]
    if kind == "copied_step":
        return problem["steps"][k - 1] if k > 0 else None
    if kind == "wrong_sum":
        wrong = [c + d for d in (-3, -2, -1, 1, 2, 3) if c + d >= 0]
        return render_step(meta, k, a, sym, x, rng.choice(wrong))
    if kind == "wrong_quantity":
        # The tiny models' typical error: starting from another number of the problem.
        pool = {meta["start"], *values[:k], *(v for _, v in meta["ops"]), a + 1, a - 1} - {a}
        pool = [p for p in sorted(pool) if p > 0 and apply(p, sym, x) is not None and apply(p, sym, x) >= 0]
        if not pool:
            return None
        a2 = rng.choice(pool)
        return render_step(meta, k, a2, sym, x, apply(a2, sym, x))
    if kind == "wrong_operand":
        pool = ({v for s, v in meta["ops"] if s in "+-"} | {meta["start"], x + 1}) - {x}
        pool = [p for p in sorted(pool) if p > 0 and apply(a, sym, p) is not None and apply(a, sym, p) >= 0]
        if not pool:
            return None
        x2 = rng.choice(pool)
        return render_step(meta, k, a, sym, x2, apply(a, sym, x2))
    raise ValueError(f"unknown corruption {kind!r}")


def prm_examples(problems: list[dict], seed: int = 0, correct_fraction: float = 0.4) -> list[dict]:
    """Stepwise-supervision records (``id``, ``prompt``, ``completions``, ``labels``).

    Like PRM800K, a solution is labelled up to its first error: a right prefix, then (usually)
    one corrupted step labelled False. Every label is checked by :func:`label_step`.
    """
    rng = random.Random(seed)
    out = []
    for p in problems:
        steps = p["steps"]
        if rng.random() < correct_fraction:
            comps = list(steps)
        else:
            while True:
                k = rng.randrange(len(steps))
                bad = corrupt_step(p, k, rng.choice(corruptions(p)), rng)
                if bad is not None and not label_step(p, steps[:k], bad):
                    break
            comps = steps[:k] + [bad]
        labels = [label_step(p, comps[:j], s) for j, s in enumerate(comps)]
        out.append({"id": p["id"], "prompt": p["question"], "completions": comps, "labels": labels})
    return out


# ------------------------------------------------------------------------------------------------
# Reading prompts back


def _between(text: str, start: str, end: str) -> str | None:
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    return text[i + len(start) : j].strip("\n") if i >= 0 and j >= 0 else None


def _head(template: str, placeholder: str) -> str:
    return template[: template.index(placeholder)]


_JUDGE_HEAD = _head(JUDGE_PROMPT, "{Question and Partial Reasoning Steps}")
_SEGMENT_HEAD = _head(SEGMENT_PROMPT, "{question}")
_STEP_HEAD = _head(STEP_PROMPT, "{problem}")
_STEP1 = re.compile(r"(?m)^Step 1:")


def parse_judge_prompt(prompt: str) -> tuple[str, list[str], str, str] | None:
    """(question, previous steps, step A, step B) of a Figure 5 prompt, or None."""
    if not prompt.startswith(_JUDGE_HEAD):
        return None
    body = prompt[len(_JUDGE_HEAD) :]
    context, _, rest = body.partition("\n[The Start of Assistant A’s Next Reasoning Step]\n")
    step_a = _between("\n" + rest, "\n", "\n[The End of Assistant A’s Next Reasoning Step]")
    step_b = _between(
        rest, "[The Start of Assistant B’s Next Reasoning Step]\n", "\n[The End of Assistant B’s Next Reasoning Step]"
    )
    if step_a is None or step_b is None:
        return None
    m = _STEP1.search(context)
    question = context[: m.start()].strip() if m else context.strip()
    previous = parse_steps(context[m.start() :]) if m else []
    return question, previous, strip_step_prefix(step_a), strip_step_prefix(step_b)


_SCORE_HEAD = _head(SRLM_SCORE_PROMPT, "{instruction}")
_SCORE_TAIL = SRLM_SCORE_PROMPT[SRLM_SCORE_PROMPT.index("{response}") + len("{response}") :]
_SCORE_MIDDLE = SRLM_SCORE_PROMPT[
    SRLM_SCORE_PROMPT.index("{instruction}") + len("{instruction}") : SRLM_SCORE_PROMPT.index("{response}")
]


def parse_score_prompt(prompt: str) -> tuple[str, str] | None:
    """(question, response) of a solution-scoring prompt (srlm_score_prompt), or None."""
    if not (prompt.startswith(_SCORE_HEAD) and prompt.endswith(_SCORE_TAIL)):
        return None
    instruction, sep, response = prompt[len(_SCORE_HEAD) : len(prompt) - len(_SCORE_TAIL)].partition(_SCORE_MIDDLE)
    if not sep or not instruction.startswith(_STEP_HEAD):
        return None
    return instruction[len(_STEP_HEAD) :].strip(), response


_LINE_SENTENCES = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def split_sentences(solution: str) -> list[str]:
    """World solutions: one sentence per step (lines first, then sentences)."""
    return [s.strip() for line in solution.splitlines() for s in _LINE_SENTENCES.split(line) if s.strip()]


# ------------------------------------------------------------------------------------------------
# The engine


class OracleEngine(Engine):
    """Engine ``oracle``: answers Figure 3, 4 and 5 prompts and the 0-5 scoring prompt about world problems;
    scores steps."""

    name = "oracle"

    def __init__(self, cfg: EngineConfig | None = None):
        self.cfg = cfg or EngineConfig(engine="oracle")
        # The oracle has no weights: a --model that names a judge style picks its judgments' explanation; any
        # other (search's --judge-engine oracle inherits the policy's path) leaves the default.
        self.style = self.cfg.model if self.cfg.model in JUDGE_STYLES else JUDGE_STYLE

    def respond(self, user: str, assistant_prefix: str = "") -> str:
        parsed = parse_judge_prompt(user)
        if parsed is not None:
            question, previous, a, b = parsed
            meta = parse_question(question)
            if meta is None:
                return "I can only check the arithmetic of world problems, and this question is not one."
            return judge(meta, previous, a, b, style=self.style)
        scored = parse_score_prompt(user)
        if scored is not None:
            meta = parse_question(scored[0])
            if meta is None:
                return "I can only check the arithmetic of world problems, and this question is not one."
            return score_solution(meta, scored[1])[1]
        if user.startswith(_SEGMENT_HEAD):
            solution = _between(user, "[The Start of Solution Provided]\n", "\n[The End of Solution Provided]")
            return format_steps(split_sentences(solution or ""))
        if user.startswith(_STEP_HEAD):
            meta = parse_question(user[len(_STEP_HEAD) :].strip())
            if meta is None:
                return "I can only solve world problems."
            done = len(parse_steps(assistant_prefix))
            steps = [
                render_step(meta, i, meta["values"][i], s, x, meta["values"][i + 1])
                for i, (s, x) in enumerate(meta["ops"])
            ]
            return format_steps(steps[done:], start=done + 1)
        raise PsrError(
            "the oracle engine answers only the Figure 3, 4 and 5 prompts and the solution-scoring "
            "prompt about world problems"
        )

    def generate(self, chats, sampling: Sampling) -> list[list[Completion]]:
        out = []
        for chat in chats:
            text, reason = self.respond(chat.user, chat.assistant_prefix), "eos"
            for stop in sampling.stop:
                j = text.find(stop)
                if j >= 0:
                    text, reason = text[:j], "stop"
            out.append([Completion(text, reason, len(chat.user) // 4, len(text) // 4) for _ in range(sampling.n)])
        return out

    def score_steps(self, question: str, solutions: list[list[str]]) -> list[list[float]]:
        """A perfect PRM: 1.0 for a right step after a right prefix, else 0.0."""
        meta = parse_question(question)
        if meta is None:
            raise PsrError(f"the oracle scores only world problems: {question[:80]!r}")
        out = []
        for steps in solutions:
            scores, ok = [], True
            for j, s in enumerate(steps):
                ok = ok and check_step(meta, steps[:j], s).ok
                scores.append(1.0 if ok else 0.0)
            out.append(scores)
        return out
