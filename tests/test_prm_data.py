"""psr train-prm's input: PRM800K raw records converted like the usual converters, TRL records beside them,
and bad records as file:line errors."""

from __future__ import annotations

import sys

import pytest
from helpers import write_jsonl

from psr.core.errors import InputError
from psr.training import prm as prm_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def prm800k_line(steps, problem="What is $1 + 1$?", finish="found_error"):
    return {
        "labeler": "340d89bc",
        "timestamp": "2023-01-22T04:34:27.052924",
        "generation": None,
        "is_quality_control_question": False,
        "is_initial_screening_question": False,
        "question": {"problem": problem, "ground_truth_answer": "2", "ground_truth_solution": "1 + 1 = 2."},
        "label": {"steps": steps, "total_time": 1000, "finish_reason": finish},
    }


def comp(text, rating):
    return {"text": text, "rating": rating, "flagged": None}


PHASE1 = prm800k_line(
    [
        {"completions": [comp("I add the numbers.", 0)], "human_completion": None, "chosen_completion": 0},
        {
            "completions": [comp("1 + 1 = 3.", -1), comp("1 + 1 = 2.", 1), comp("It is two.", 0)],
            "human_completion": None,
            "chosen_completion": 1,
        },
        {
            "completions": [comp("# Answer\n\n3", -1)],
            "human_completion": {
                "text": "# Answer\n\n2",
                "rating": None,
                "source": "human",
                "flagged": False,
                "corrected_rating": None,
            },
            "chosen_completion": None,
        },
    ],
    finish="solution",
)

PHASE2 = prm800k_line(
    [  # phase 2: the labeler stops at the first error; nothing chosen there
        {"completions": [comp("Two ones make two.", 1)], "human_completion": None, "chosen_completion": 0},
        {"completions": [comp("So the answer is 11.", -1)], "human_completion": None, "chosen_completion": None},
    ],
    problem="What is $1 + 1$, again?",
)


def test_prm800k_raw_records_convert_like_the_usual_converters(tmp_path):
    path = write_jsonl(tmp_path / "prm800k.jsonl", [PHASE1, PHASE2])
    got = prm_training.load_examples([path], neutral_good=True)
    q1, q2 = PHASE1["question"]["problem"], PHASE2["question"]["problem"]
    assert got == [
        # alternatives at step 2, each after the chosen path so far
        {"prompt": q1, "completions": ["I add the numbers.", "1 + 1 = 3."], "labels": [True, False]},
        {"prompt": q1, "completions": ["I add the numbers.", "It is two."], "labels": [True, True]},
        # at step 3 the only completion was not chosen (the human wrote the step instead)
        {
            "prompt": q1,
            "completions": ["I add the numbers.", "1 + 1 = 2.", "# Answer\n\n3"],
            "labels": [True, True, False],
        },
        # the chosen path, the human completion (good) last
        {
            "prompt": q1,
            "completions": ["I add the numbers.", "1 + 1 = 2.", "# Answer\n\n2"],
            "labels": [True, True, True],
        },
        {"prompt": q2, "completions": ["Two ones make two.", "So the answer is 11."], "labels": [True, False]},
        {"prompt": q2, "completions": ["Two ones make two."], "labels": [True]},
    ]
    bad_neutral = prm_training.load_examples([path], neutral_good=False)
    assert bad_neutral[0]["labels"] == [False, False] and bad_neutral[1]["labels"] == [False, False]


def test_trl_and_prm800k_records_mix_in_one_file(tmp_path):
    trl = {"prompt": "Q?", "completions": ["a", "b"], "labels": [True, False]}
    got = prm_training.load_examples([write_jsonl(tmp_path / "mix.jsonl", [trl, PHASE2])])
    assert got[0] == trl and len(got) == 3


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"prompt": "Q", "completions": ["a"], "labels": [True, False]}, "differ in length"),
        ({"prompt": "Q", "completions": ["a"], "labels": ["yes"]}, "labels"),
        (
            prm800k_line([{"completions": [comp("x", 2)], "human_completion": None, "chosen_completion": 0}]),
            "rating must be -1, 0 or 1",
        ),
        (
            prm800k_line([{"completions": [comp("x", 1)], "human_completion": None, "chosen_completion": 3}]),
            "chosen_completion",
        ),
    ],
)
def test_bad_records_fail_with_file_and_line(tmp_path, bad, msg):
    good = {"prompt": "Q", "completions": ["a"], "labels": [True]}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, bad])
    with pytest.raises(InputError) as e:
        prm_training.load_examples([path])
    assert str(e.value).startswith(f"{path}:2: ") and msg in str(e.value)


def test_cli_reports_bad_input_as_file_line_and_exit_2(tmp_path, monkeypatch, capsys):
    from psr.cli import main

    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Q", "completions": ["a"]}])
    monkeypatch.setattr(
        sys, "argv", ["psr", "train-prm", "-i", path, "-o", str(tmp_path / "out"), "--model", "/nonexistent"]
    )
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    assert f"{path}:1: missing field 'labels'" in capsys.readouterr().err.replace("\n", "")
