"""Scoring a whole world solution: the SRLM baseline's judge (Yuan et al.'s additive 0-5 prompt), as the
oracle engine answers it (psr.world.oracle)."""

from __future__ import annotations

from psr.core.steps import parse_steps
from psr.world.check import _BOX, check_step
from psr.world.generator import parse_equation


def _unbox(step: str) -> str:
    return _BOX.sub(lambda m: m.group(1), step)


def score_solution(meta: dict, response: str) -> tuple[int, str]:
    """Yuan et al.'s additive 0-5 score of a world solution (whole or partial), and its justification.

    The steps are checked in order with :func:`check_step`; ``k`` is the number of events (of the
    question's ``n``) carried out right before the first wrong step. The rubric's points, read for
    a world solution, so that the score never falls as a solution gets further:

    - 0: empty, or no equation on the question's quantities (start, operands, intermediate values);
    - 1: "relevant": an equation on those quantities, but Step 1 is wrong;
    - 2: "a substantial portion": Step 1 is right (k >= 1);
    - 3: "the basic elements": k >= 2 and at least half the events (2k >= n), not all
      (so a 2-event problem goes from 2 straight to 4);
    - 4: every event right, but the final answer is not boxed, is boxed wrong, or more steps follow;
    - 5: every step right and the last one boxes the right answer.

    A partial solution (``previous_steps`` plus one candidate, as annotate-eft --format scoring
    sends) that stops early scores by the events it has done. The justification is one short,
    regular sentence that names the first wrong step and what is wrong, as check_step words it,
    then ``Score: n``: Yuan et al.'s prompt takes ~900 of M0's 1024 positions, so every token of
    the judgment costs training data (measured on 370 partial solutions: 288 fit with this
    sentence, 260 with a "k of n events right" summary in front, 333 with "Score: n" alone).
    """
    steps = parse_steps(response)
    n = len(meta["ops"])
    if not steps:
        return 0, "The response is empty. Score: 0"
    k, first_bad = 0, None
    for j, step in enumerate(steps):
        c = check_step(meta, steps[:j], step)
        if j == n - 1 and not c.ok and check_step(meta, steps[:j], _unbox(step)).ok:
            k, first_bad = n, (j, c)  # the last event is right; only its box is wrong
            break
        if not c.ok:
            first_bad = (j, c)
            break
        k += 1
    if k >= n:
        if first_bad is not None:
            j, c = first_bad
            return 4, f"All {n} events are right. Step {j + 1} {c.text}. Score: 4"
        boxed = _BOX.findall(steps[n - 1])
        if not boxed:
            return 4, f"All {n} events are right, but no answer is boxed. Score: 4"
        return 5, f"All {n} steps are right and Step {n} boxes {boxed[-1]}. Score: 5"
    score = 3 if k >= 2 and 2 * k >= n else 2 if k >= 1 else None
    if first_bad is None:  # every step so far is right; the solution just stops
        return score, f"{'Step 1 is' if k == 1 else f'Steps 1 to {k} are'} right, then it stops. Score: {score}"
    j, c = first_bad
    if score is not None:
        return score, f"Step {j + 1} {c.text}. Score: {score}"
    quantities = {*meta["values"], *(x for _, x in meta["ops"])}
    eqs = [parse_equation(s) for s in steps]
    if any(eq and (eq[0] in quantities or eq[2] in quantities) for eq in eqs):
        return 1, f"Step 1 {c.text}. Score: 1"
    return 0, "No equation uses the question's numbers. Score: 0"
