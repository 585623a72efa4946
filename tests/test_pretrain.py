"""M0's pretraining recipe (psr.world.pretrain): its review documents and a short real run."""

import json
import random
import re

from psr.core.steps import parse_steps
from psr.world.generator import generate_problems, parse_equation
from psr.world.oracle import label_step
from psr.world.pretrain import documents, pretrain, review_document


def test_review_lines_quote_each_step_and_grade_it_as_the_oracle_does():
    rng = random.Random(3)
    seen = {"correct": 0, "wrong": 0}
    for p in generate_problems(60, seed=4, split="train"):
        doc = review_document(p, rng)
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
        # A solution stops at its first wrong step, as a marked attempt would.
        assert all(line.endswith("which is correct.") for line in lines[:-1])
    assert seen["correct"] > 50 and seen["wrong"] > 20


def test_documents_mix_reviews_in_at_the_given_rate():
    plain = documents(200, seed=1, reviews=0.0)
    mixed = documents(200, seed=1, reviews=0.5)
    assert not any("\nReview:\n" in d for d in plain)
    n = sum("\nReview:\n" in d for d in mixed)
    assert 60 < n < 140


def test_a_short_pretraining_run_writes_a_loadable_model_and_its_recipe(tmp_path):
    out = tmp_path / "m0"
    recipe = pretrain(str(out), minutes=0.02, seed=0, seq_len=128, batch_size=4, n_docs=300, eval_problems=4,
                      reviews=0.35)
    saved = json.loads((out / "psr_pretrain.json").read_text())
    assert saved == recipe
    assert saved["steps"] >= 1 and saved["tokens"] == saved["steps"] * 4 * 128
    assert "--seq-len 128" in saved["command"] and "--reviews 0.35" in saved["command"]
    assert 0.0 <= saved["greedy_accuracy_world_test"]["figure4_chat"] <= 1.0
    assert re.fullmatch(r"\d+", str(saved["parameters"]))
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert sum(p.numel() for p in model.parameters()) == saved["parameters"]
