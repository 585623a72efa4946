"""--report-to on the training commands: the value reaches TrainingArguments.report_to; a missing logging
library or an unknown value is a one-line error with exit 2; tensorboard (when installed) writes to DIR/runs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from helpers import write_jsonl

from psr.core.errors import InputError
from psr.training import common
from psr.training.common import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")
HAS_TENSORBOARD = bool(importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"))


def ift(n=4):
    return [
        {
            "id": f"p{i}",
            "question": f"What is {i} + {i}?",
            "steps": [f"{i} + {i} = {2 * i}.", f"The answer is $\\boxed{{{2 * i}}}$."],
        }
        for i in range(n)
    ]


def sft_cli(tmp_path, *flags):
    data = write_jsonl(tmp_path / "ift.jsonl", ift())
    return [sys.executable, "-m", "psr.cli", "sft", "-i", data, "-o", str(tmp_path / "m1"), *flags]


def test_the_default_reports_nowhere_else(tmp_path):
    from trl import SFTConfig

    args = SFTConfig(**common.trainer_kwargs(TrainConfig(model="m", output=str(tmp_path / "o"))))
    assert args.report_to == []  # transformers turns "none" into no integrations


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--report-to", "mlflow"], "'mlflow' is not one of 'none', 'wandb', 'tensorboard'"),
        pytest.param(
            ["--report-to", "tensorboard"],
            "--report-to tensorboard needs the tensorboard package",
            marks=pytest.mark.skipif(HAS_TENSORBOARD, reason="tensorboard is installed"),
        ),
    ],
)
def test_bad_report_to_is_a_one_line_error_and_exit_2(tiny_model_dir, tmp_path, flags, message):
    run = subprocess.run(
        sft_cli(tmp_path, "--model", tiny_model_dir, "--max-steps", "1", *flags),
        capture_output=True,
        text=True,
        env={**os.environ, "PSR_QUIET": "1"},
        timeout=300,
    )
    assert run.returncode == 2 and message in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard is not installed")
def test_tensorboard_gets_the_run_in_dir_runs(tiny_model_dir, tmp_path, monkeypatch):
    from trl import SFTConfig

    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    cfg = TrainConfig(model=tiny_model_dir, output=str(tmp_path / "m1"), report_to="tensorboard")
    assert SFTConfig(**common.trainer_kwargs(cfg)).report_to == ["tensorboard"]
    run = subprocess.run(
        sft_cli(
            tmp_path, "--model", tiny_model_dir, "--max-steps", "2", "--batch-size", "2", "--report-to", "tensorboard"
        ),
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "TENSORBOARD_LOGGING_DIR"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    events = [f for _, _, fs in os.walk(tmp_path / "m1" / "runs") for f in fs if f.startswith("events.out")]
    assert events  # kept after the run, unlike DIR/checkpoints/


def test_an_unknown_value_fails_before_any_training():
    with pytest.raises(InputError, match="--report-to must be one of"):
        common.trainer_kwargs(TrainConfig(model="m", output="o", report_to="comet"))
