import os

import pytest

from psr.core import prompts
from psr.core.prompts import judge_prompt, parse_score, parse_verdict, segment_prompt, step_prompt

PAPER = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "paper", "process-based-self-rewarding.txt")


@pytest.fixture(scope="module")
def paper():
    if not os.path.exists(PAPER):
        pytest.skip("../shared/paper is not beside this checkout")
    return open(PAPER, encoding="utf-8").read()


def figure(paper: str, start: str, end: str) -> str:
    i = paper.index(start)
    return paper[i : paper.index(end, i) + len(end)]


def words(s: str) -> str:
    # The figures are typeset in boxes: their line breaks are layout. Compare every character but whitespace runs.
    return " ".join(s.split())


@pytest.mark.parametrize(
    "name, start, end",
    [
        ("SEGMENT_PROMPT", "There is a math problem", "[The End of Solution Provided]"),
        ("STEP_PROMPT", "Let's think step by step", "Problem: {problem}"),
        ("JUDGE_PROMPT", "Please act as an impartial judge", "[The End of Assistant B’s Next Reasoning Step]"),
    ],
)
def test_prompts_match_the_paper(paper, name, start, end):
    ours = getattr(prompts, name)
    assert words(ours) == words(figure(paper, start, end))
    # Line breaks only where the figure starts a new element, never inside a sentence.
    assert all(not line.startswith(" ") and not line.endswith(" ") for line in ours.split("\n"))


def test_rendering_keeps_latex_braces():
    q = r"Find $\frac{1}{2} + x$ where {x} = 3."
    assert q in step_prompt(q) and "{problem}" not in step_prompt(q)
    s = segment_prompt(q, r"So \boxed{3.5}.")
    assert r"So \boxed{3.5}." in s and "{solution}" not in s
    j = judge_prompt(q, ["first", "second"], "a + b", "c")
    assert f"{q}\nStep 1: first\nStep 2: second\n[The Start of Assistant A’s" in j
    assert "Step 3: a + b\n[The End of Assistant A’s" in j and "Step 3: c\n[The End of Assistant B’s" in j


@pytest.mark.parametrize(
    "text, verdict",
    [
        ("A is right. [[A]]", "A"),
        ("Both fine but [[B]] is better.\n", "B"),
        ('format: "[[A]]" ... final: [[B]]', "B"),
        ("I pick A.", None),
        ("[[C]]", None),
        ("[A]", None),
    ],
)
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_parse_score():
    assert parse_score("Good answer.\nScore: 4") == 4
    assert parse_score("Score: 6") is None
    assert parse_score("no score") is None
    assert parse_score("Score: 2 ... Score: 5/5") == 5
