"""The offline world: the problem generator, ``psr world`` and the shipped samples."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from helpers import PSR

from psr.core.records import read_records, validate
from psr.world.generator import generate_problems, parse_equation, parse_question, split_of
from psr.world.oracle import prm_examples


def test_generator_is_deterministic_and_prefix_stable():
    a = generate_problems(40, seed=3)
    assert a == generate_problems(40, seed=3)
    assert generate_problems(10, seed=3) == a[:10]
    assert a != generate_problems(40, seed=4)
    assert len({p["id"] for p in a}) == 40 and len({p["question"] for p in a}) == 40


def test_train_and_test_never_share_a_question():
    train = generate_problems(600, seed=0, split="train")
    test = generate_problems(300, seed=0, split="test")
    other_seed = generate_problems(300, seed=1, split="test")
    train_q = {p["question"] for p in train}
    assert not train_q & {p["question"] for p in test + other_seed}
    assert all(split_of(p["question"]) == "train" for p in train)
    assert all(split_of(p["question"]) == "test" for p in test)
    with pytest.raises(ValueError):
        generate_problems(1, split="dev")


def test_problems_have_the_promised_shape():
    probs = generate_problems(500, seed=0)
    assert {len(p["steps"]) for p in probs} == {2, 3, 4}
    assert len({p["world"]["template"] for p in probs}) == 4
    assert {sym for p in probs for sym, _ in p["world"]["ops"]} == {"+", "-", "*", "/"}
    small = [x for p in probs for sym, x in p["world"]["ops"] if sym in "+-"]
    assert sum(x <= 9 for x in small) / len(small) > 0.75
    for p in probs:
        assert validate(p, "problem") is None
        w = p["world"]
        assert all(1 <= v <= 99 for v in w["values"])
        assert p["answer"] == str(w["values"][-1])
        assert p["solution"] == " ".join(p["steps"])
        for i, step in enumerate(p["steps"]):
            a, sym, x, c = parse_equation(step)
            assert (a, [sym, x], c) == (w["values"][i], w["ops"][i], w["values"][i + 1])
            # The step restates the quantity it starts from before its equation.
            assert str(a) in step[: step.index(", so ")]
            assert ("\\boxed{" + p["answer"] + "}" in step) == (i == len(p["steps"]) - 1)
        # The oracle can read every question back.
        assert parse_question(p["question"]) == w


def test_psr_world_writes_the_data_set(tmp_path):
    out = tmp_path / "w"
    res = subprocess.run(
        [*PSR, "world", "-o", str(out), "--train", "30", "--test", "10", "--prm", "25", "--seed", "7"],
        capture_output=True,
        text=True,
        env={**os.environ, "PSR_QUIET": "0"},
    )
    assert res.returncode == 0, res.stderr
    train = read_records(str(out / "train.jsonl"), "ift")
    test = read_records(str(out / "test.jsonl"), "ift")
    sols = read_records(str(out / "train_solutions.jsonl"), "solution")
    prm = read_records(str(out / "prm.jsonl"), "prm")
    assert (len(train), len(test), len(sols), len(prm)) == (30, 10, 30, 25)
    assert train == generate_problems(30, seed=7)
    assert all("steps" not in s and s["solution"] == t["solution"] for s, t in zip(sols, train, strict=True))
    assert not {p["question"] for p in train} & {r["prompt"] for r in prm}
    assert not {p["question"] for p in train} & {p["question"] for p in test}
    assert "train.jsonl" in res.stderr
    assert not (out / "search.jsonl").exists()  # only when asked for
    res = subprocess.run(
        [
            *PSR,
            "world",
            "-o",
            str(out),
            "--train",
            "30",
            "--test",
            "10",
            "--prm",
            "25",
            "--search",
            "12",
            "--seed",
            "7",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    search = read_records(str(out / "search.jsonl"), "ift")
    assert len(search) == 12 and read_records(str(out / "train.jsonl"), "ift") == train  # the rest is unchanged
    # questions SFT and the PRM never saw, from the train split
    seen = {p["question"] for p in train} | {r["prompt"] for r in prm} | {p["question"] for p in test}
    assert not {p["question"] for p in search} & seen and all("-train-" in p["id"] for p in search)


def test_psr_world_rejects_negative_counts(tmp_path):
    res = subprocess.run([*PSR, "world", "-o", str(tmp_path), "--train", "-1"], capture_output=True, text=True)
    assert res.returncode == 2 and "--train must be >= 0" in res.stderr


def test_shipped_samples_match_the_generator():
    here = os.path.join(os.path.dirname(__file__), "..", "data", "world")
    with open(os.path.join(here, "train.jsonl"), encoding="utf-8") as fh:
        shipped = [json.loads(x) for x in fh]
    assert shipped == generate_problems(20, seed=0)
    assert prm_examples(generate_problems(40, seed=0)[20:], seed=0) == read_records(
        os.path.join(here, "prm.jsonl"), "prm"
    )
