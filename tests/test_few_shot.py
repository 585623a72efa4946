"""``psr eval --task judge --few-shot K --few-shot-examples FILE``: Table 3's M0 row judges K-shot."""

from __future__ import annotations

import json
import os
import subprocess

from helpers import PSR, write_jsonl

from psr.core.prompts import judge_prompt
from psr.core.records import IOConfig
from psr.engines import load_engine
from psr.engines.base import EngineConfig
from psr.stages import eval as ev

ENV = {**os.environ, "PSR_QUIET": "1", "COLUMNS": "200"}


def eft(prefix: str, n: int) -> list[dict]:
    return [
        {
            "id": f"{prefix}{i}",
            "question": f"What is {i} + {i}?",
            "previous_steps": [],
            "step_a": f"{i} + {i} = {2 * i}.",
            "step_b": f"{i} + {i} = {2 * i + 1}.",
            "label": "A",
            "judgment": f"Assistant A computes {i} + {i} = {2 * i}, which is right. [[A]]",
        }
        for i in range(n)
    ]


class Recording:
    """The real engine, with the chats it was sent kept for the test to read."""

    def __init__(self, engine):
        self.engine, self.chats = engine, []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def generate(self, chats, sampling, **kw):
        self.chats += list(chats)
        return self.engine.generate(chats, sampling, **kw)

    def generate_partial(self, chats, sampling, **kw):
        self.chats += list(chats)
        return self.engine.generate_partial(chats, sampling, **kw)


def test_each_judge_prompt_follows_k_worked_examples_from_another_split(tmp_path, tiny_model_dir):
    test = write_jsonl(tmp_path / "test.jsonl", eft("t", 3))
    train = eft("x", 5)
    examples = write_jsonl(tmp_path / "train.jsonl", train)
    cfg = ev.EvalConfig(task="judge", max_tokens=8, few_shot=2, few_shot_examples=examples)
    engine_cfg = EngineConfig(engine="hf", model=tiny_model_dir)
    with load_engine(engine_cfg) as real:
        engine = Recording(real)
        summary = ev.run(IOConfig(inputs=[test], output=str(tmp_path / "j.jsonl")), cfg, engine)
    assert summary["few_shot"] == 2 and summary["n"] == 3
    shots = [r for r in train if r["id"] in summary["few_shot_ids"]]
    assert len(shots) == 2
    assert len(engine.chats) == 6  # every record, both orders
    for chat in engine.chats:
        for k, r in enumerate(shots, 1):  # the examples in the drawn order, each its prompt and judgment
            block = judge_prompt(r["question"], [], r["step_a"], r["step_b"]) + "\n" + r["judgment"]
            assert f"[The Start of Example {k}]\n{block}\n[The End of Example {k}]" in chat.user
        assert chat.user.count("Please act as an impartial judge") == 3  # 2 examples + the record judged
    # the record being judged comes last, in its own order
    assert engine.chats[0].user.endswith(judge_prompt("What is 0 + 0?", [], "0 + 0 = 0.", "0 + 0 = 1."))


def test_examples_that_are_judged_records_are_refused(tmp_path):
    test = write_jsonl(tmp_path / "test.jsonl", eft("t", 3))
    res = subprocess.run(
        [
            *PSR,
            "eval",
            "--task",
            "judge",
            "-i",
            test,
            "--engine",
            "oracle",
            "--few-shot",
            "1",
            "--few-shot-examples",
            test,
            "-o",
            str(tmp_path / "j.jsonl"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert res.returncode == 2 and "records being judged" in res.stderr, res.stderr
    assert res.stderr.strip().count("\n") == 0
    res = subprocess.run(
        [
            *PSR,
            "eval",
            "--task",
            "judge",
            "-i",
            test,
            "--engine",
            "oracle",
            "--few-shot",
            "1",
            "-o",
            str(tmp_path / "j.jsonl"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert res.returncode == 2 and "--few-shot-examples" in res.stderr
    assert not os.path.exists(tmp_path / "j.jsonl")


def test_few_shot_through_the_cli(tmp_path, tiny_model_dir):
    test = write_jsonl(tmp_path / "test.jsonl", eft("t", 2))
    examples = write_jsonl(tmp_path / "train.jsonl", eft("x", 3))
    res = subprocess.run(
        [
            *PSR,
            "eval",
            "--task",
            "judge",
            "-i",
            test,
            "--model",
            tiny_model_dir,
            "--max-tokens",
            "4",
            "--few-shot",
            "3",
            "--few-shot-examples",
            examples,
            "-o",
            str(tmp_path / "j.jsonl"),
            "--summary",
            str(tmp_path / "j.json"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "j.json").read_text())
    assert summary["few_shot"] == 3 and sorted(summary["few_shot_ids"]) == ["x0", "x1", "x2"]
