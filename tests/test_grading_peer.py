"""Math-Verify's own test cases (../shared/peer/math_verify_cases.jsonl, 273 psr grade records; see its
README) graded by psr: the default grader must agree with each expected verdict except the
disagreements listed below, each a documented decision; the math-verify grader must give plain
math-verify's verdicts."""

import json
import os

import pytest

from psr.core.grading import grade_many

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "peer", "math_verify_cases.jsonl")
if not os.path.exists(PEER):
    pytest.skip("../shared/peer is not here", allow_module_level=True)

with open(PEER, encoding="utf-8") as fh:
    CASES = [json.loads(line) for line in fh if line.strip()]

# The default grader's disagreements with the expected verdict, and why psr decides otherwise.
KNOWN_DEFAULT = {
    "mv-031": "the answer 9 is there; math-verify refuses inline math that spans lines (a parser rule, "
    "not a verdict), psr reads it (and its last-number fallback would find 9 anyway)",
    "mv-032": "as mv-031, with \\( ... \\)",
    "mv-133": "0.33 is not 1/3 (two decimals; psr takes a rounded decimal for a fraction from three "
    "places on); the test ran math-verify with a lower precision",
    "mv-252": "the converted gold lost its text: it was \\boxed{1} no no no \\boxed{2} (last box: 2); "
    "the record says '1, 2', which 1,2 is",
    "mv-265": "1 - 1/e is not 1 + 1/e (the README calls this expectation questionable)",
}


@pytest.fixture(scope="module")
def default_grades():
    return grade_many([c["output"] for c in CASES], [c["answer"] for c in CASES], "default", timeout=60.0)


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c["id"] for c in CASES])
def test_default_grader_agrees_with_math_verify_cases(i, default_grades):
    case, got = CASES[i], default_grades[i]
    if case["id"] in KNOWN_DEFAULT:
        assert got.correct != case["expected"], f"{case['id']} now agrees: take it off KNOWN_DEFAULT"
    else:
        assert got.correct == case["expected"], (case, got)


def test_known_disagreements_can_only_go_down():
    assert len(KNOWN_DEFAULT) == 5
    assert len(CASES) - len(KNOWN_DEFAULT) >= 0.97 * len(CASES)  # the target
    false_positives = [c["id"] for c in CASES if c["id"] in KNOWN_DEFAULT and not c["expected"]]
    assert false_positives == ["mv-031", "mv-032", "mv-252"]  # each a right answer, see above


def test_math_verify_grader_is_plain_math_verify():
    # the same calls in this process, math-verify's own parse_expr included (these are trusted test
    # strings, not model output)
    import math_verify as mv

    got = grade_many([c["output"] for c in CASES], [c["answer"] for c in CASES], "math-verify", timeout=60.0)
    # without math-verify's own 5 s alarms, as the grader calls it (its bound is the worker's wall clock):
    # under load an alarm fires in one and not the other, and the test would compare timings, not grades
    plain = [
        mv.verify(
            mv.parse("$" + c["answer"] + "$", parsing_timeout=None),
            mv.parse(c["output"], parsing_timeout=None),
            timeout_seconds=None,
        )
        for c in CASES
    ]
    assert [g.correct for g in got] == plain
