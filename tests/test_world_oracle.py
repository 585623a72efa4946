"""The world's oracle on hand-written cases and generated problems: step labels, judge verdicts in every style,
the 0-5 solution scores, and its other roles (segmenting, solving, a perfect PRM, corruptions)."""

from __future__ import annotations

import random

import pytest

from psr.core.errors import PsrError
from psr.core.prompts import judge_prompt, parse_score, parse_verdict, segment_prompt, srlm_score_prompt, step_prompt
from psr.core.records import validate
from psr.core.steps import format_steps, parse_steps
from psr.engines import EngineConfig, Sampling, load_engine
from psr.engines.base import Chat
from psr.world.generator import generate_problems, parse_question
from psr.world.oracle import (
    CORRUPTIONS,
    JUDGE_STYLES,
    OracleEngine,
    corrupt_step,
    judge,
    label_step,
    parse_score_prompt,
    prm_examples,
    score_solution,
)

# A hand-written world problem: 8 - 3 = 5, then 5 + 4 = 9.
Q = "Tom has 8 apples. Then he gives away 3 apples. Then he finds 4 more apples. How many apples does Tom have now?"
PROBLEM = {"id": "hand", "question": Q}
RIGHT_1 = "Tom starts with 8 apples and gives away 3 of his 8 apples, so 8 - 3 = 5."
WRONG_SUM_1 = "Tom starts with 8 apples and gives away 3 of his 8 apples, so 8 - 3 = 6."
WRONG_QUANTITY_1 = "Tom starts with 9 apples and gives away 3 of his 9 apples, so 9 - 3 = 6."
WRONG_OPERAND_1 = "Tom starts with 8 apples and gives away 4 of his 8 apples, so 8 - 4 = 4."
RIGHT_2 = "Tom then finds 4 more apples to add to his 5, so 5 + 4 = \\boxed{9}."
WRONG_QUANTITY_2 = "Tom then finds 4 more apples to add to his 8, so 8 + 4 = \\boxed{12}."
UNBOXED_RIGHT_2 = "Tom then finds 4 more apples to add to his 5, so 5 + 4 = 9."
WRONG_BOX_2 = "Tom then finds 4 more apples to add to his 5, so 5 + 4 = 9, and the answer is \\boxed{10}."
EARLY_BOX_1 = "Tom starts with 8 apples and gives away 3 of his 8 apples, so 8 - 3 = \\boxed{5}."


# -- the oracle's step labels and verdicts on hand-written cases ---------------------------------


@pytest.mark.parametrize(
    "previous,step,ok",
    [
        ([], RIGHT_1, True),
        ([], WRONG_SUM_1, False),
        ([], WRONG_QUANTITY_1, False),
        ([], WRONG_OPERAND_1, False),
        ([], EARLY_BOX_1, False),
        ([RIGHT_1], RIGHT_2, True),
        ([RIGHT_1], UNBOXED_RIGHT_2, True),
        ([RIGHT_1], WRONG_QUANTITY_2, False),
        ([RIGHT_1], WRONG_BOX_2, False),
        ([RIGHT_1], RIGHT_1, False),  # a copied step
        ([RIGHT_1], "Step 1: " + RIGHT_1, False),  # copied with its prefix
        ([RIGHT_1], "Now I add things up.", False),  # no equation
        ([RIGHT_1, RIGHT_2], "Tom then has 9 + 0 = 9 apples.", False),  # past the last event
    ],
)
def test_label_step_hand_written(previous, step, ok):
    assert label_step(PROBLEM, previous, step) is ok


@pytest.mark.parametrize(
    "previous,good,bad,reason",
    [
        ([], RIGHT_1, WRONG_SUM_1, "8 - 3 is 5"),
        ([], RIGHT_1, WRONG_QUANTITY_1, "it should start from 8, the start in the question"),
        ([RIGHT_1], RIGHT_2, WRONG_QUANTITY_2, "it should start from 5, the result of Step 1"),
        ([RIGHT_1], RIGHT_2, RIGHT_1, "repeats Step 1"),
    ],
)
def test_judge_verdicts_hand_written_both_orders(previous, good, bad, reason):
    oracle = load_engine(EngineConfig(engine="oracle"))
    assert isinstance(oracle, OracleEngine)
    chats = [Chat(judge_prompt(Q, previous, good, bad)), Chat(judge_prompt(Q, previous, bad, good))]
    first, second = (c[0].text for c in oracle.generate(chats, Sampling()))
    assert parse_verdict(first) == "A" and parse_verdict(second) == "B"
    for text, good_side, bad_side in ((first, "A", "B"), (second, "B", "A")):
        # The explanation checks both steps, then names the better one.
        assert f"Assistant {good_side} computes" in text and "which is correct" in text
        assert f"Assistant {bad_side} " in text and reason in text
        assert text.endswith(f"[[{good_side}]]")


def test_judge_explanation_is_short_and_regular():
    text = judge(parse_question(Q), [], RIGHT_1, WRONG_SUM_1)
    assert text == (
        "Assistant A computes 8 - 3 = 5, which is correct. "
        "Assistant B computes 8 - 3 = 6, which is wrong: 8 - 3 is 5. [[A]]"
    )


@pytest.mark.parametrize(
    "previous,good,bad,reason",
    [
        ([], RIGHT_1, WRONG_SUM_1, "Result: 8 - 3 = 5, it wrote 6: different."),
        ([], RIGHT_1, WRONG_QUANTITY_1, "Start: should be 8, it uses 9: different."),
        ([], RIGHT_1, WRONG_OPERAND_1, "Event: should be - 3, it does - 4: different."),
        ([RIGHT_1], RIGHT_2, WRONG_QUANTITY_2, "Start: should be 5, it uses 8: different."),
        ([RIGHT_1], RIGHT_2, WRONG_BOX_2, "Box: should be 9, it boxes 10: different."),
        ([RIGHT_1], RIGHT_2, RIGHT_1, "repeats Step 1"),
    ],
)
def test_recompute_first_judge_hand_written_both_orders(previous, good, bad, reason):
    meta = parse_question(Q)
    for text, good_side, bad_side in (
        (judge(meta, previous, good, bad, style="recompute-first"), "A", "B"),
        (judge(meta, previous, bad, good, style="recompute-first"), "B", "A"),
    ):
        assert f"Assistant {good_side} writes" in text and f"So Assistant {good_side} is correct." in text
        assert f"So Assistant {bad_side} is wrong." in text and reason in text
        assert text.endswith(f"[[{good_side}]]")


def test_recompute_first_explanation_stops_at_the_first_failing_check():
    assert judge(parse_question(Q), [], RIGHT_1, WRONG_QUANTITY_1, style="recompute-first") == (
        "Assistant A writes 8 - 3 = 5. Start: should be 8, it uses 8: same. Event: should be - 3, it does - 3: "
        "same. Result: 8 - 3 = 5, it wrote 5: same. So Assistant A is correct. "
        "Assistant B writes 9 - 3 = 6. Start: should be 8, it uses 9: different. So Assistant B is wrong. [[A]]"
    )
    with pytest.raises(ValueError):
        judge(parse_question(Q), [], RIGHT_1, WRONG_SUM_1, style="terse")


@pytest.mark.parametrize(
    "previous,good,bad,mine,theirs",
    [
        ([], RIGHT_1, WRONG_SUM_1, "8 - 3 = 5", "writes 8 - 3 = 6: different."),
        ([], RIGHT_1, WRONG_QUANTITY_1, "8 - 3 = 5", "writes 9 - 3 = 6: different."),
        ([RIGHT_1], RIGHT_2, WRONG_QUANTITY_2, "5 + 4 = 9", "writes 8 + 4 = 12: different."),
        ([RIGHT_1], RIGHT_2, WRONG_BOX_2, "5 + 4 = 9", "writes 5 + 4 = 9: same, but it boxes 10."),
        ([RIGHT_1], RIGHT_2, RIGHT_1, "5 + 4 = 9", "writes 8 - 3 = 5: different."),
    ],
)
def test_solve_first_judge_writes_its_own_step_then_compares(previous, good, bad, mine, theirs):
    meta = parse_question(Q)
    for text, good_side, bad_side in (
        (judge(meta, previous, good, bad, style="solve-first"), "A", "B"),
        (judge(meta, previous, bad, good, style="solve-first"), "B", "A"),
    ):
        assert text.startswith(f"My next step: {mine}. ")
        assert f"Assistant {good_side} writes {mine}: same." in text and f"Assistant {bad_side} {theirs}" in text
        assert text.endswith(f"[[{good_side}]]")
    # after the last event there is no step of its own to write
    done = judge(meta, [RIGHT_1, RIGHT_2], WRONG_SUM_1, RIGHT_1, style="solve-first")
    assert done.startswith("My next step: none, the question has no event left. Assistant A computes 8 - 3 = 6")


def test_judge_styles_give_the_same_verdicts():
    rng = random.Random(0)
    n = 0
    for p in generate_problems(60, seed=5):
        k = rng.randrange(len(p["steps"]))
        for kind in CORRUPTIONS:
            bad = corrupt_step(p, k, kind, rng)
            if bad is None:
                continue
            for a, b in ((p["steps"][k], bad), (bad, p["steps"][k]), (bad, bad)):
                verdicts = {parse_verdict(judge(p["world"], p["steps"][:k], a, b, style=s)) for s in JUDGE_STYLES}
                assert len(verdicts) == 1 and None not in verdicts
                n += 1
    assert n > 300


def test_judge_ties_do_not_depend_on_position():
    meta = parse_question(Q)
    # Both wrong in the same way: the verdict follows the step, not its position.
    v1 = parse_verdict(judge(meta, [], WRONG_SUM_1, WRONG_QUANTITY_1.replace("9", "10").replace("= 6", "= 7")))
    v2 = parse_verdict(judge(meta, [], WRONG_QUANTITY_1.replace("9", "10").replace("= 6", "= 7"), WRONG_SUM_1))
    assert {v1, v2} == {"A", "B"}
    # A wrong sum (right setup) beats a wrong quantity.
    assert parse_verdict(judge(meta, [], WRONG_QUANTITY_1, WRONG_SUM_1)) == "B"


def test_judge_on_a_question_outside_the_world_gives_no_verdict():
    text = OracleEngine().respond(judge_prompt("What is 2 + 2?", [], "2 + 2 = 4", "2 + 2 = 5"))
    assert parse_verdict(text) is None


def test_judge_prompt_round_trip_on_generated_problems():
    from psr.world.oracle import parse_judge_prompt

    rng = random.Random(0)
    for p in generate_problems(30, seed=5):
        k = rng.randrange(len(p["steps"]))
        bad = corrupt_step(p, k, "wrong_sum", rng)
        assert parse_judge_prompt(judge_prompt(p["question"], p["steps"][:k], bad, p["steps"][k])) == (
            p["question"],
            p["steps"][:k],
            bad,
            p["steps"][k],
        )


# -- the oracle as Yuan et al.'s 0-5 solution scorer (the SRLM baseline's judge) ------------------

# Three events: 8 - 3 = 5, 5 + 4 = 9, 9 * 2 = 18.
Q3 = (
    "Tom has 8 apples. Then he gives away 3 apples. Then he finds 4 more apples. Then he doubles the number of "
    "apples. How many apples does Tom have now?"
)
MID_2 = "Tom then finds 4 more apples to add to his 5, so 5 + 4 = 9."
RIGHT_3 = "Tom then doubles his 9 apples, so 9 * 2 = \\boxed{18}."
WRONG_SUM_3 = "Tom then doubles his 9 apples, so 9 * 2 = \\boxed{16}."


def score(question, steps):
    """What the oracle engine answers to the scoring prompt on these steps, rendered as the search renders them."""
    text = OracleEngine().generate([Chat(srlm_score_prompt(question, format_steps(steps)))], Sampling())[0][0].text
    return parse_score(text), text


@pytest.mark.parametrize(
    "question,steps,want,says",
    [
        (Q, [RIGHT_1, RIGHT_2], 5, "All 2 steps are right and Step 2 boxes 9"),
        (Q3, [RIGHT_1, MID_2, RIGHT_3], 5, "All 3 steps are right"),
        (Q3, [RIGHT_1, MID_2, "Tom then doubles his 9 apples, so 9 * 2 = 18."], 4, "no answer is boxed"),
        (Q, [RIGHT_1, WRONG_BOX_2], 4, "Step 2 computes 5 + 4 = 9, which is right, but it boxes 10"),
        (
            Q,
            [RIGHT_1, RIGHT_2, "Tom then has 9 + 0 = 9 apples."],
            4,
            "Step 3 computes 9 + 0 = 9, which is wrong: the question has no event left",
        ),
        (Q3, [RIGHT_1, MID_2, WRONG_SUM_3], 3, "Step 3 computes 9 * 2 = 16, which is wrong: 9 * 2 is 18"),
        (Q3, [RIGHT_1, MID_2], 3, "Steps 1 to 2 are right, then it stops"),
        (
            Q,
            [RIGHT_1, "Tom then finds 4 more apples to add to his 5, so 5 + 4 = \\boxed{10}."],
            2,
            "Step 2 computes 5 + 4 = 10, which is wrong: 5 + 4 is 9",
        ),  # a wrong sum in step 2
        (
            Q,
            [RIGHT_1, WRONG_QUANTITY_2],
            2,
            "Step 2 computes 8 + 4 = 12, which is wrong: it should start from 5, the result of Step 1",
        ),  # a wrong quantity
        (Q, [RIGHT_1, RIGHT_1], 2, "Step 2 repeats Step 1, which is wrong"),  # a copied step
        (Q, [RIGHT_1], 2, "Step 1 is right, then it stops"),
        (Q, [WRONG_QUANTITY_1, RIGHT_2], 1, "Step 1 computes 9 - 3 = 6, which is wrong: it should start from 8"),
        (Q, [WRONG_SUM_1], 1, "Step 1 computes 8 - 3 = 6, which is wrong: 8 - 3 is 5"),
        (Q, ["I like apples a lot."], 0, "No equation uses the question's numbers"),
        (Q, ["So 20 + 30 = 50."], 0, "No equation uses the question's numbers"),
        (Q, [], 0, "The response is empty"),  # an empty response
    ],
)
def test_oracle_scores_solutions_hand_written(question, steps, want, says):
    got, text = score(question, steps)
    assert got == want, text
    assert says in text and text.endswith(f"Score: {want}")
    assert len(text.split()) < 100


def test_solution_scores_never_fall_as_a_solution_gets_further():
    rng = random.Random(0)
    for p in generate_problems(100, seed=3):
        for k in range(len(p["steps"]) + 1):
            right = score_solution(p["world"], format_steps(p["steps"][:k]))[0]
            if k < len(p["steps"]):
                assert right <= score_solution(p["world"], format_steps(p["steps"][: k + 1]))[0]
                bad = corrupt_step(p, k, rng.choice(CORRUPTIONS), rng)
                if bad is not None:  # a wrong next step scores no higher than stopping before it
                    assert (
                        score_solution(p["world"], format_steps(p["steps"][:k] + [bad]))[0]
                        <= score_solution(p["world"], format_steps(p["steps"][: k + 1]))[0]
                    )
        assert score_solution(p["world"], format_steps(p["steps"]))[0] == 5


def test_score_prompt_round_trip_and_questions_outside_the_world():
    for p in generate_problems(10, seed=4):
        response = format_steps(p["steps"][:2])
        assert parse_score_prompt(srlm_score_prompt(p["question"], response)) == (p["question"], response)
    assert parse_score_prompt(judge_prompt(Q, [], RIGHT_1, WRONG_SUM_1)) is None
    assert parse_score(OracleEngine().respond(srlm_score_prompt("What is 2 + 2?", "Step 1: 2 + 2 = 4"))) is None


# -- the oracle's other roles -----------------------------------------------------------------


def test_oracle_segments_and_solves_world_problems():
    oracle = OracleEngine()
    for p in generate_problems(20, seed=1):
        seg = oracle.generate([Chat(segment_prompt(p["question"], p["solution"]))], Sampling())[0][0].text
        assert seg.startswith("Step 1: ") and parse_steps(seg) == p["steps"]
        # Figure 4: continue from a partial answer, one step at a time with the step stop string.
        steps = [s.content for s in oracle.next_steps([(p["question"], p["steps"][:1])], Sampling(n=2))[0]]
        assert steps == [p["steps"][1]] * 2
        full = oracle.generate([Chat(step_prompt(p["question"]))], Sampling())[0][0]
        assert parse_steps(full.text) == p["steps"] and full.finish_reason == "eos"
    with pytest.raises(PsrError):
        oracle.generate([Chat("Tell me a joke.")], Sampling())


def test_oracle_scores_steps_as_a_perfect_prm():
    oracle = OracleEngine()
    assert oracle.score_steps(Q, [[RIGHT_1, RIGHT_2], [WRONG_SUM_1, RIGHT_2], [RIGHT_1, RIGHT_1]]) == [
        [1.0, 1.0],
        [0.0, 0.0],
        [1.0, 0.0],
    ]


def test_corruptions_are_wrong_and_prm_examples_are_labelled_right():
    probs = generate_problems(200, seed=2)
    rng = random.Random(0)
    made = dict.fromkeys(CORRUPTIONS, 0)
    for p in probs:
        for k in range(len(p["steps"])):
            for kind in CORRUPTIONS:
                bad = corrupt_step(p, k, kind, rng)
                if bad is None:
                    continue
                made[kind] += 1
                assert bad != p["steps"][k] or kind == "copied_step"
                assert not label_step(p, p["steps"][:k], bad), (kind, bad)
            assert label_step(p, p["steps"][:k], p["steps"][k])
    assert all(n > 100 for n in made.values())
    recs = prm_examples(probs, seed=0)
    assert recs == prm_examples(probs, seed=0)
    assert 0.25 < sum(all(r["labels"]) for r in recs) / len(recs) < 0.55
    for r, p in zip(recs, probs, strict=True):
        assert validate(r, "prm") is None and r["prompt"] == p["question"]
        # A right prefix, then at most one wrong step, which is last (PRM800K labels up to the first error).
        assert all(r["labels"][:-1]) and r["completions"][:-1] == p["steps"][: len(r["completions"]) - 1]
        if all(r["labels"]):
            assert r["completions"] == p["steps"]
