"""Pairwise judging of one step's candidates and its scores (Eq. 1-4): pure functions, which the step search
batches into engine calls. Identical or empty candidates are not sent to the judge (psr.search.step's doc)."""

from __future__ import annotations


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
