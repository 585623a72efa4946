"""M0's pretraining recipe (psr.world.pretrain): its review documents and a short real run."""

import json
import random
import re

import pytest

from psr.core.steps import parse_steps
from psr.world.generator import generate_problems, parse_equation
from psr.world.oracle import label_step
from psr.world.pretrain import comparison_document, documents, pretrain, review_document


@pytest.mark.parametrize("style", ["cut", "continue"])
def test_review_lines_quote_each_step_and_grade_it_as_the_oracle_does(style):
    rng = random.Random(3)
    seen = {"correct": 0, "wrong": 0}
    wrong_at: list[tuple[int, int]] = []  # (index of the wrong step, steps in the document)
    for p in generate_problems(60, seed=4, split="train"):
        doc = review_document(p, rng, style)
        head, review = doc.split("\nReview:\n")
        steps = parse_steps(head.split("\n", 1)[1])
        lines = review.split("\n")
        assert len(lines) == len(steps)
        for j, (step, line) in enumerate(zip(steps, lines, strict=True)):
            assert line.startswith(f"Step {j + 1} ")
            right = label_step(p, steps[:j], step)
            assert line.endswith("which is correct.") == right, (step, line)
            seen["correct" if right else "wrong"] += 1
            eq = parse_equation(step)
            if eq is not None and "repeats" not in line:
                a, op, b, c = eq
                assert f"computes {a} {op} {b} = {c}" in line
        wrong_at += [(j, len(lines)) for j, line in enumerate(lines) if not line.endswith("which is correct.")]
    assert seen["correct"] > 50 and seen["wrong"] > 20
    assert len(wrong_at) == seen["wrong"]  # one wrong step a document at most
    if style == "cut":  # a solution stops at its wrong step, as a marked attempt would
        assert all(j == n - 1 for j, n in wrong_at)
    else:  # the work goes on after it, so the wrong step is often not the last one reviewed
        assert sum(j < n - 1 for j, n in wrong_at) > len(wrong_at) / 3


def test_an_unknown_review_style_is_refused():
    with pytest.raises(ValueError, match="review style"):
        review_document(generate_problems(1, seed=0)[0], random.Random(0), "shuffle")


def test_documents_mix_reviews_in_at_the_given_rate():
    plain = documents(200, seed=1, reviews=0.0)
    mixed = documents(200, seed=1, reviews=0.5)
    assert not any("\nReview:\n" in d for d in plain)
    n = sum("\nReview:\n" in d for d in mixed)
    assert 60 < n < 140


def test_check_documents_grade_each_step_at_the_given_rate_and_count():
    def check_docs(checks, per_step):
        return [d for d in documents(200, seed=2, checks=checks, checks_per_step=per_step) if d.startswith("Check:")]

    assert not check_docs(0.0, 1)
    assert 140 < len(check_docs(1.0, 1)) <= 200  # a step without an equation gives no check line
    lines = [line for d in check_docs(1.0, 3) for line in d.split("\n")]
    one = [line for d in check_docs(1.0, 1) for line in d.split("\n")]
    assert len(lines) > 2.5 * len(one)
    graded = {"right": 0, "wrong": 0}
    for line in lines:
        m = re.fullmatch(r"Check: (\d+) ([-+*/]) (\d+) = (-?\d+)\. (Correct\.|Wrong, \1 \2 \3 = (-?\d+)\.)", line)
        assert m, line
        a, op, b, shown = int(m[1]), m[2], int(m[3]), int(m[4])
        truth = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
        if m[5] == "Correct.":
            assert shown == truth
            graded["right"] += 1
        else:
            assert shown != truth and int(m[6]) == truth
            graded["wrong"] += 1
    assert min(graded.values()) > len(lines) / 3  # even odds


def test_comparison_documents_quote_both_answers_grade_them_as_the_oracle_does_and_name_the_better():
    rng = random.Random(5)
    firsts = {"first": 0, "second": 0}
    for p in generate_problems(80, seed=6, split="train"):
        doc = comparison_document(p, rng)
        lines = doc.split("\n")
        previous = parse_steps("\n".join(lines[1:-3]))
        k = len(previous)
        assert lines[0] == f"Problem: {p['question']}" and previous == p["steps"][:k]
        answers = [
            lines[-3].removeprefix(f"First answer for step {k + 1}: "),
            lines[-2].removeprefix(f"Second answer for step {k + 1}: "),
        ]
        assert all(not a.startswith(("First", "Second")) for a in answers)
        m = re.fullmatch(
            r"The first answer (.*)\. The second answer (.*)\. (The (first|second) answer is better\."
            r"|Both answers are as good\.)",
            lines[-1],
        )
        assert m, lines[-1]
        right = [label_step(p, previous, a) for a in answers]
        for answer, graded, ok in zip(answers, (m[1], m[2]), right, strict=True):
            assert graded.endswith("which is correct") == ok
            eq = parse_equation(answer)
            if eq is not None and "repeats" not in graded:
                assert graded.startswith(f"computes {eq[0]} {eq[1]} {eq[2]} = {eq[3]}")
        if right[0] != right[1]:
            assert m[4] == ("first" if right[0] else "second")
            firsts[m[4]] += 1
    assert min(firsts.values()) > 20  # the better answer comes first about half the time


def test_documents_mix_comparisons_in_only_when_asked():
    assert not any("\nFirst answer for step " in d for d in documents(200, seed=1))
    n = sum("\nFirst answer for step " in d for d in documents(200, seed=1, comparisons=0.5))
    assert 60 < n < 140


def test_a_short_pretraining_run_writes_a_loadable_model_and_its_recipe(tmp_path):
    out = tmp_path / "m0"
    recipe = pretrain(
        str(out),
        minutes=0.02,
        seed=0,
        seq_len=128,
        batch_size=4,
        n_docs=300,
        eval_problems=4,
        reviews=0.35,
        review_style="continue",
        checks=1.0,
        checks_per_step=2,
        checks_first=0.01,
        comparisons=0.5,
    )
    saved = json.loads((out / "psr_pretrain.json").read_text())
    assert saved == recipe
    assert saved["steps"] >= 1 and saved["tokens"] == saved["steps"] * 4 * 128
    assert saved["checks_first_steps"] >= 1 and "--checks-first 0.01 --comparisons 0.5" in saved["command"]
    assert (
        "--seq-len 128" in saved["command"]
        and "--reviews 0.35 --review-style continue --checks 1.0 --checks-per-step 2" in saved["command"]
    )
    assert 0.0 <= saved["greedy_accuracy_world_test"]["figure4_chat"] <= 1.0
    assert re.fullmatch(r"\d+", str(saved["parameters"]))
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert sum(p.numel() for p in model.parameters()) == saved["parameters"]
