"""Hostile options to the training commands (sft, step-dpo, train-prm): bad numbers, and an output that is an
input, the starting model or a directory holding an input, are refused in one line before anything is
written."""

from __future__ import annotations

import pytest
from helpers import check_refused, write_jsonl


def _training_inputs(tmp):
    ift = {"id": "i1", "question": "What is 1 + 1?", "steps": ["1 + 1 = 2. The answer is \\boxed{2}."]}
    ppd = {"id": "d1", "question": "q", "previous_steps": [], "chosen": "a", "rejected": "b", "is_final": True}
    prm = {"prompt": "q", "completions": ["a"], "labels": [True]}
    return {
        "sft": write_jsonl(tmp / "sft.jsonl", [ift]),
        "step-dpo": write_jsonl(tmp / "dpo.jsonl", [ppd]),
        "train-prm": write_jsonl(tmp / "prm.jsonl", [prm]),
    }


TRAINING_CASES = [  # (extra options, what the one line says)
    (["--lr", "-1"], "--lr must be > 0, got -1"),
    (["--epochs", "0"], "--epochs must be > 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--max-length", "-5"], "--max-length must be >= 1"),
    (["--save-steps", "0"], "--save-steps must be >= 1"),
    (["--warmup", "-0.1"], "--warmup must be >= 0"),
    (["--max-steps", "0"], "--max-steps must be >= 1, or -1"),
    (["--lr", "nan"], "--lr must be a finite number"),
]


@pytest.mark.parametrize("command", ["sft", "step-dpo", "train-prm"])
@pytest.mark.parametrize("extra,needle", TRAINING_CASES, ids=[" ".join(e) for e, _ in TRAINING_CASES])
def test_bad_training_numbers_are_refused_before_anything_is_written(
    command, extra, needle, tmp_path, monkeypatch, capsys
):
    src = _training_inputs(tmp_path)[command]
    # the model does not even exist: the options are checked before any model is looked at
    check_refused(
        [command, "-i", src, "-o", str(tmp_path / "m1"), "--model", str(tmp_path / "m0"), *extra],
        needle,
        tmp_path,
        monkeypatch,
        capsys,
    )
    assert not (tmp_path / "m1").exists()  # no checkpoints/ left behind


@pytest.mark.parametrize("command", ["sft", "step-dpo", "train-prm"])
def test_a_training_output_that_is_an_input_is_refused(command, tmp_path, monkeypatch, capsys):
    src = _training_inputs(tmp_path)[command]
    check_refused(
        [command, "-i", src, "-o", src, "--model", "m"], "is the same file as the input", tmp_path, monkeypatch, capsys
    )


@pytest.mark.parametrize("command", ["sft", "step-dpo", "train-prm"])
def test_a_training_output_that_is_the_model_or_holds_an_input_is_refused(
    command, tiny_model_dir, tmp_path, monkeypatch, capsys
):
    import shutil

    model = tmp_path / "m0"
    shutil.copytree(tiny_model_dir, model)
    src = _training_inputs(tmp_path)[command]
    check_refused(
        [command, "-i", src, "-o", str(model), "--model", str(model), "--overwrite"],
        "is the starting model --model",
        tmp_path,
        monkeypatch,
        capsys,
    )
    inside = tmp_path / "out" / "data.jsonl"
    inside.parent.mkdir()
    shutil.copy(src, inside)
    check_refused(
        [command, "-i", str(inside), "-o", str(tmp_path / "out"), "--model", str(model), "--overwrite"],
        "is inside the output directory",
        tmp_path,
        monkeypatch,
        capsys,
    )


def test_step_dpo_beta_must_be_positive(tmp_path, monkeypatch, capsys):
    src = _training_inputs(tmp_path)["step-dpo"]
    check_refused(
        ["step-dpo", "-i", src, "-o", str(tmp_path / "m1"), "--model", "m", "--beta", "0"],
        "Invalid value for --beta: must be > 0",
        tmp_path,
        monkeypatch,
        capsys,
    )
