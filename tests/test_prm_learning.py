"""psr train-prm learns: step correctness on a learnable arithmetic task, the held-out eval under two processes
as under one, and the AUC it reports."""

from __future__ import annotations

import json
import sys

import pytest
from helpers import doubling_examples, write_jsonl

from psr.engines.prm import PRMScorer
from psr.stages import train_prm
from psr.training import prm as prm_training
from psr.training.common import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_prm_learns_step_correctness_and_ranks_held_out_steps(tiny_model_dir, tmp_path):
    out = str(tmp_path / "prm")
    data = write_jsonl(tmp_path / "train.jsonl", doubling_examples(400, seed=1))
    cfg = TrainConfig(
        model=tiny_model_dir,
        output=out,
        max_steps=100,
        learning_rate=3e-3,
        batch_size=16,
        per_device_batch_size=16,
        logging_steps=25,
        save_steps=1000,
    )
    summary = train_prm.run([data], train_prm.PRMTrainConfig(**vars(cfg), eval_fraction=0.2))
    metrics = [json.loads(x) for x in open(tmp_path / "prm" / "metrics.jsonl")]
    before = next(m for m in metrics if "eval_auc" in m)
    after = [m for m in metrics if "eval_auc" in m][-1]
    assert before["step"] == 0 and after["step"] == 100
    assert any("loss" in m for m in metrics)
    assert summary["eval_auc"] == after["eval_auc"] > 0.85
    assert after["eval_accuracy"] > 0.75
    # fresh examples never seen (other seed): good steps rank above bad ones
    fresh = doubling_examples(40, seed=99)
    probs = PRMScorer.load(out).score([(r["prompt"], r["completions"]) for r in fresh])
    flat = [p for ps in probs for p in ps]
    gold = [y for r in fresh for y in r["labels"]]
    assert prm_training.auc(flat, gold) > 0.85


@pytest.mark.slow
def test_held_out_eval_under_two_processes_matches_one_process(tiny_model_dir, tmp_path):
    """Every rank takes part in the eval forwards (ZeRO-3 / FSDP hang otherwise); the gathered metric is the
    single-process one. lr 1e-30 keeps the fp32 weights at their start (the CLI refuses lr 0), so the
    after-training eval must match too."""
    import os
    import shutil
    import subprocess

    data = write_jsonl(tmp_path / "train.jsonl", doubling_examples(26, seed=3))  # 13 held out: uneven shards
    cfg = TrainConfig(
        model=tiny_model_dir,
        output=str(tmp_path / "one"),
        max_steps=2,
        learning_rate=1e-30,
        batch_size=4,
        per_device_batch_size=2,
        save_steps=1000,
    )
    train_prm.run([data], train_prm.PRMTrainConfig(**vars(cfg), eval_fraction=0.5))
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    config = os.path.join(os.path.dirname(__file__), "..", "configs", "accelerate", "cpu_ddp.yaml")
    run = subprocess.run(
        [
            accelerate,
            "launch",
            "--config_file",
            config,
            "--num_processes",
            "2",
            "-m",
            "psr.cli",
            "train-prm",
            "-i",
            data,
            "-o",
            str(tmp_path / "two"),
            "--model",
            tiny_model_dir,
            "--max-steps",
            "2",
            "--lr",
            "1e-30",
            "--batch-size",
            "4",
            "--per-device-batch-size",
            "2",
            "--save-steps",
            "1000",
            "--eval-fraction",
            "0.5",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PSR_QUIET": "0"},
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    # Both ranks ran eval forwards (shards of 7 and 6), before and after training: on rank 0 alone, ZeRO-3 hangs.
    assert run.stderr.count("rank 0 of 2: scored 7 of 13 held-out examples") == 2
    assert run.stderr.count("rank 1 of 2: scored 6 of 13 held-out examples") == 2

    def evals(name):
        return [m for m in map(json.loads, open(tmp_path / name / "metrics.jsonl")) if "eval_auc" in m]

    one, two = evals("one"), evals("two")
    assert [m["step"] for m in two] == [0, 2]  # written once (by rank 0), before and after training
    assert one[0]["eval_steps"] > 13  # every held-out step of all 13 examples, not one rank's share
    for a, b in zip(one, two, strict=True):
        assert b["eval_steps"] == a["eval_steps"]
        assert b["eval_accuracy"] == pytest.approx(a["eval_accuracy"]) and b["eval_auc"] == pytest.approx(a["eval_auc"])


def test_auc_matches_a_hand_count():
    assert prm_training.auc([0.9, 0.8, 0.3, 0.1], [True, True, False, False]) == 1.0
    assert prm_training.auc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    # ties count half: one tied pair of four
    assert prm_training.auc([0.5, 0.9, 0.5, 0.1], [True, True, False, False]) == pytest.approx(0.875)
    assert prm_training.auc([0.5, 0.6], [True, True]) is None
