"""The events world (psr/world/events.py): generation, parsing back, and the oracle on each error kind.

The hand-written question below has two events of someone else (Mia) between Tom's three; each wrong step is
one of the error kinds the world is built to produce, and the oracle must call it wrong for that reason.
"""

import random

import pytest

from psr.world.errors import CHECKABLE, error_kind, error_table, first_error
from psr.world.events import CORRUPTIONS, event_of
from psr.world.generator import generate_problems, parse_question, split_of
from psr.world.oracle import OracleEngine, check_step, corrupt_step, judge, label_step, prm_examples, score_solution

Q = (
    "Mia has 20 apples. Tom has 12 apples. Then Mia finds 3 more apples. Then Tom gives away 4 apples. "
    "Then Mia gives away 5 apples. Then Tom finds 6 more apples. Then Tom gives away 2 apples. "
    "How many apples does Tom have now?"
)
R1 = "Tom gives away 4 apples, so 12 - 4 = 8."
R2 = "Tom finds 6 more apples, so 8 + 6 = 14."
R3 = "Tom gives away 2 apples, so 14 - 2 = \\boxed{12}."

# (previous steps, step, kind, words the oracle's reason must contain)
CASES = [
    ([], R1, "right", "correct"),
    ([R1], R2, "right", "correct"),
    ([R1, R2], R3, "right", "correct"),
    ([], "Mia finds 3 more apples, so 12 + 3 = 15.", "distractor", "it tells Mia finds 3 more apples"),
    ([R1], "Tom gives away 5 apples, so 8 - 5 = 3.", "distractor", "the next event is Tom finds 6 more apples"),
    ([R1], "Tom gives away 2 apples, so 8 - 2 = 6.", "skipped", "the next event is Tom finds 6 more apples"),
    ([R1, R2], "Tom finds 6 more apples, so 14 + 6 = 20.", "repeated_event", "the next event is Tom gives away 2"),
    ([R1], R1, "repeated_step", "repeats Step 1"),
    ([R1], "Tom finds 6 more apples, so 12 + 6 = 18.", "wrong_start", "it should start from 8"),
    ([R1], "Tom finds 6 more apples, so 8 + 6 = 15.", "arithmetic", "8 + 6 is 14"),
    ([R1], "Tom finds 6 more apples, so 8 + 6 = \\boxed{14}.", "early_box", "too early"),
    ([R1, R2, R3], "Tom gives away 2 apples, so 12 - 2 = 10.", "extra_step", "no event left"),
    ([], "Tom has 12 apples.", "no_equation", "computes nothing"),
]


def test_question_parses_to_the_asked_about_persons_events():
    meta = parse_question(Q)
    assert meta["kind"] == "events" and meta["name"] == "Tom" and meta["other"] == "Mia"
    assert meta["start"] == 12 and meta["ops"] == [["-", 4], ["+", 6], ["-", 2]] and meta["values"] == [12, 8, 14, 12]
    assert meta["story"][0] == ["Mia", "+", 3] and len(meta["story"]) == 5
    assert event_of(R2) == ("Tom", "+", 6, "apples") and event_of("so 8 + 6 = 14.") is None


@pytest.mark.parametrize("previous,step,kind,reason", CASES)
def test_oracle_verdict_and_error_kind_on_hand_written_steps(previous, step, kind, reason):
    meta = parse_question(Q)
    c = check_step(meta, previous, step)
    assert c.ok == (kind == "right")
    assert reason in c.text
    assert error_kind(meta, previous, step) == kind
    assert label_step({"question": Q}, previous, step) == (kind == "right")


def test_judge_prefers_the_right_step_over_each_wrong_kind_in_both_orders():
    meta = parse_question(Q)
    for previous, step, kind, _ in CASES:
        if kind in ("right", "extra_step"):
            continue
        right = [R1, R2, R3][len(previous)]
        assert judge(meta, previous, right, step).endswith("[[A]]"), kind
        assert judge(meta, previous, step, right).endswith("[[B]]"), kind
        for style in ("recompute-first", "solve-first", "lookup-first"):
            assert judge(meta, previous, step, right, style=style).endswith("[[B]]"), (kind, style)


def test_a_right_step_whose_words_equal_an_earlier_step_is_not_a_repeat():
    q = (
        "Tom has 27 apples. Then Tom gives away 9 apples. Then Tom finds 9 more apples. Then Tom gives away 9 apples. "
        "Then Tom gives away 2 apples. How many apples does Tom have now?"
    )
    meta = parse_question(q)
    s1, s2 = "Tom gives away 9 apples, so 27 - 9 = 18.", "Tom finds 9 more apples, so 18 + 9 = 27."
    assert check_step(meta, [s1, s2], s1).ok  # the quantity is back at 27 and meets the same event
    assert check_step(meta, [s1], s1).text == "repeats Step 1, which is wrong"


def test_lookup_first_writes_the_right_next_step_anchored_on_the_last_one():
    meta = parse_question(Q)
    first = judge(meta, [], "Mia finds 3 more apples, so 12 + 3 = 15.", R1, style="lookup-first")
    assert first.startswith(f"Tom has 12 apples, so the first event is: {R1} ")
    assert "Assistant A: Mia finds 3 more apples, so 12 + 3 = 15. Wrong." in first
    assert first.endswith(f"Assistant B: {R1} Right. [[B]]")
    # The anchor is the last step's event; the next step starts from what that step ended with.
    off = "Tom finds 6 more apples, so 12 + 6 = 18."
    text = judge(meta, [R1, off], R3, "Tom gives away 2 apples, so 18 - 2 = \\boxed{16}.", style="lookup-first")
    assert text.startswith(
        "After Tom finds 6 more apples, the next event is: Tom gives away 2 apples, so 18 - 2 = \\boxed{16}. "
    )
    assert text.endswith("[[B]]")
    done = judge(meta, [R1, R2, R3], "Tom gives away 2 apples, so 12 - 2 = 10.", R3, style="lookup-first")
    assert done.startswith("After Tom gives away 2 apples, the next event is none: the question has no event left.")


def test_other_first_controls_which_person_the_question_introduces_first():
    def firsts(other_first):
        probs = generate_problems(40, seed=5, world="events", distractors=2, other_first=other_first)
        return [p["question"].split(" ")[0] == p["world"]["name"] for p in probs]

    assert all(firsts(0.0))
    mixed = firsts(0.5)
    assert 5 < sum(mixed) < 35
    assert not any(firsts(1.0))


def test_score_solution_and_oracle_policy_in_the_events_world():
    meta = parse_question(Q)
    assert score_solution(meta, f"Step 1: {R1}\nStep 2: {R2}\nStep 3: {R3}")[0] == 5
    assert score_solution(meta, f"Step 1: {R1}\nStep 2: Tom gives away 5 apples, so 8 - 5 = 3.")[0] == 2
    engine = OracleEngine()
    from psr.core.prompts import step_prompt

    assert engine.respond(step_prompt(Q)) == f"Step 1: {R1}\nStep 2: {R2}\nStep 3: {R3}"


def test_generation_is_deterministic_disjoint_and_parses_back():
    a = generate_problems(60, seed=3, world="events", events=4, distractors=2)
    assert a == generate_problems(60, seed=3, world="events", events=4, distractors=2)
    assert generate_problems(10, seed=3, world="events", events=4, distractors=2) == a[:10]
    assert a != generate_problems(60, seed=3, world="events", events=4, distractors=3)
    test = generate_problems(60, seed=3, split="test", world="events", events=4, distractors=2)
    assert not {p["question"] for p in a} & {p["question"] for p in test}
    assert all(split_of(p["question"]) == "test" for p in test)
    for p in a + test:
        w = p["world"]
        assert parse_question(p["question"]) == w
        assert len(w["ops"]) == 4 and len(w["story"]) == 6 and all(1 <= v <= 49 for v in w["values"])
        assert all(label_step(p, p["steps"][:j], s) for j, s in enumerate(p["steps"]))
        assert p["answer"] == str(w["values"][-1])
    # distractors: 0 is the control, a world with nobody else in it
    assert all("other" not in p["world"] for p in generate_problems(20, seed=3, world="events", distractors=0))
    # the arithmetic world is untouched by the events world's knobs
    assert generate_problems(5, seed=3) == generate_problems(5, seed=3, world="arith", events=9, distractors=9)


def test_corruptions_are_wrong_and_of_their_own_kind():
    rng = random.Random(0)
    made = dict.fromkeys(CORRUPTIONS, 0)
    expected = {
        "distractor": {"distractor"},
        "skipped": {"skipped"},
        "repeated_event": {"repeated_event", "repeated_step"},
        "early_box": {"early_box"},
        "wrong_sum": {"arithmetic"},
    }
    for p in generate_problems(80, seed=1, world="events", events=4, distractors=3):
        for k in range(len(p["steps"])):
            for kind in CORRUPTIONS:
                bad = corrupt_step(p, k, kind, rng)
                if bad is None:
                    continue
                made[kind] += 1
                assert not label_step(p, p["steps"][:k], bad), (kind, bad)
                assert error_kind(p["world"], p["steps"][:k], bad) in expected[kind], (kind, bad)
    assert all(n > 20 for n in made.values()), made
    recs = prm_examples(generate_problems(50, seed=1, world="events"), seed=0)
    assert any(False in r["labels"] for r in recs) and any(all(r["labels"]) for r in recs)


def test_first_error_and_error_table_count_solutions_by_kind():
    assert first_error(Q, [R1, R2, R3]) is None
    assert first_error(Q, [R1, "Tom gives away 2 apples, so 8 - 2 = 6."]) == "skipped"
    assert first_error(Q, [R1, R2]) == "stopped"
    recs = [
        {"question": Q, "steps": [R1, R2, R3], "correct": True},
        {"question": Q, "steps": ["Mia finds 3 more apples, so 12 + 3 = 15."], "correct": False},
        {"question": Q, "steps": [R1, "Tom finds 6 more apples, so 8 + 6 = 15."], "correct": False},
    ]
    t = error_table(recs)
    assert t["wrong"] == 2 and t["kinds"] == {"distractor": 1, "arithmetic": 1} and t["checkable"] == 1
    assert "distractor" in CHECKABLE and "arithmetic" not in CHECKABLE


def test_psr_world_writes_the_events_world(tmp_path):
    import os
    import subprocess
    import sys

    from psr.core.records import read_records

    def psr(*args):
        return subprocess.run(
            [sys.executable, "-m", "psr.cli", *args],
            capture_output=True,
            text=True,
            env={**os.environ, "PSR_QUIET": "1"},
        )

    r = psr(
        "world",
        "-o",
        str(tmp_path),
        "--world",
        "events",
        "--events",
        "3",
        "--distractors",
        "4",
        "--train",
        "6",
        "--test",
        "4",
        "--prm",
        "5",
    )
    assert r.returncode == 0, r.stderr
    test = read_records(str(tmp_path / "test.jsonl"))
    assert len(test) == 4 and all(len(p["world"]["story"]) == 7 for p in test)
    bad = psr("world", "-o", str(tmp_path), "--world", "nope")
    assert bad.returncode == 2 and "error:" in bad.stderr and "--world" in bad.stderr


@pytest.mark.parametrize("events", [4, 6, 8])
def test_the_events_demo_gives_room_for_the_longest_solution(events, tmp_path):
    # The demo's max_tokens bounds every generated solution (eval) and judgment; a budget below the reference
    # solution's length would score a right but long answer as wrong, which grows with the number of events.
    from transformers import AutoTokenizer

    from psr.core.steps import format_steps
    from psr.world.demo import EVENTS_M0, Demo

    demo = Demo(str(tmp_path), "events", 0, EVENTS_M0, world=dict(events=events, distractors=2))
    tok = AutoTokenizer.from_pretrained(EVENTS_M0)
    probs = generate_problems(60, seed=1, world="events", events=events, distractors=2)
    longest = max(len(tok(format_steps(p["steps"]))["input_ids"]) for p in probs)
    assert longest + 8 <= demo.cfg["max_tokens"]
