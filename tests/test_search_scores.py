"""psr.search's step scores: the judge plan, wins over the others, and the best and worst pick."""

import re
from collections import Counter

from helpers import ranked

from psr.search import judge_plan, pick, tally


def test_scores_are_wins_over_the_others_and_pick_takes_argmax_and_argmin():
    texts = ["good", "bad", "ok", "great"]
    plan = judge_plan(texts, 1)
    assert len(plan) == 6 and {frozenset(p) for p in plan} == {frozenset((i, j)) for i in range(4) for j in range(i)}
    judge = ranked("great", "good", "ok", "bad")
    verdicts = [re.search(r"\[\[(.)\]\]", judge(texts[a], texts[b])).group(1) for a, b in plan]
    scores = tally(texts, plan, verdicts, 1)
    assert scores == [2, 0, 1, 3]
    assert pick(scores, texts) == (3, 1)


def test_one_order_balances_positions_and_two_orders_show_both():
    texts = [f"s{i}" for i in range(6)]
    plan1 = judge_plan(texts, 1)
    as_a = Counter(a for a, _ in plan1)
    assert len(plan1) == 15 and all(as_a[i] in (2, 3) for i in range(6))
    plan2 = judge_plan(texts, 2)
    assert len(plan2) == 30 and set(plan2) == {(i, j) for i in range(6) for j in range(6) if i != j}


def test_ties_break_to_the_lowest_index_and_equal_scores_are_a_tie():
    assert pick([1, 2, 2, 0, 0], list("abcde")) == (1, 3)
    assert pick([1, 1, 1], list("abc")) is None
    # the only lower-scored candidate has the best's text: no pair can be made
    assert pick([1, 0, 1], ["x", "x", "y"]) is None


def test_identical_and_empty_candidates_are_not_judged():
    texts = ["a", "a", "", "b"]
    plan = judge_plan(texts, 1)
    assert {frozenset(p) for p in plan} == {frozenset((0, 3)), frozenset((1, 3))}
    scores = tally(texts, plan, ["A" if a == 3 else "B" for a, _ in plan], 1)
    assert scores == [1, 1, 0, 3]  # each non-empty beats the empty one; b beats both a's


def test_a_missing_verdict_is_no_win_for_either_side():
    texts = ["a", "b", "c"]
    plan = judge_plan(texts, 1)
    verdicts = [None if set(p) == {0, 1} else ("A" if min(p) == p[0] else "B") for p in plan]
    scores = tally(texts, plan, verdicts, 1)  # the lower index wins every judged pair
    assert scores == [1, 1, 0]


def test_two_orders_count_a_win_only_when_both_agree():
    texts = ["a", "b", "c"]
    plan = judge_plan(texts, 2)
    always_a = tally(texts, plan, ["A"] * len(plan), 2)
    assert always_a == [0, 0, 0]  # a pure position bias yields no win at all
    best_first = ["A" if a < b else "B" for a, b in plan]  # consistent: the lower index is better
    assert tally(texts, plan, best_first, 2) == [2, 1, 0]
    one_missing = list(best_first)
    one_missing[plan.index((0, 1))] = None
    assert tally(texts, plan, one_missing, 2) == [1, 1, 0]
