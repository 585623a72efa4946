"""psr eval through the CLI with the tiny local model (hf engine): well-formed records on the real benchmark
files, the judge task, tts, and a run killed with SIGKILL and resumed."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from helpers import PSR, eft_records, read_jsonl, write_jsonl
from typer.testing import CliRunner

from psr.cli import app


def cli(*args):
    res = CliRunner().invoke(app, ["eval", "--grade-timeout", "60", *args])
    assert res.exit_code == 0, (res.output, res.exception)
    return res


def test_tiny_model_on_real_benchmarks(tmp_path, bench_dir, tiny_model_dir):
    gsm, m500 = os.path.join(bench_dir, "gsm8k_test.jsonl"), os.path.join(bench_dir, "math500_test.jsonl")
    out, summ = tmp_path / "preds.jsonl", tmp_path / "sum.json"
    cli(
        "-i",
        gsm,
        "-i",
        m500,
        "--model",
        tiny_model_dir,
        "--limit",
        "3",
        "--max-tokens",
        "12",
        "-o",
        str(out),
        "--summary",
        str(summ),
        "--name",
        "M0",
    )
    preds = read_jsonl(out)
    golds = {}
    for path, name in ((gsm, "gsm8k"), (m500, "math500")):
        for r in read_jsonl(path)[:3]:
            golds[f"{name}/{r['id']}"] = r["answer"]
    assert [p["id"] for p in preds] == list(golds)
    for p in preds:
        assert p["answer"] == golds[p["id"]] and isinstance(p["output"], str)
        assert isinstance(p["correct"], bool) and isinstance(p["steps"], list)
        assert p["pred"] is None or isinstance(p["pred"], str)
        assert len(p["step_tokens"]) == len(p["steps"]) and p["output_tokens"] <= 12
    s = json.loads(summ.read_text())
    assert s["name"] == "M0" and s["tokens_unit"] == "tokens of the model's tokenizer"
    assert [b["n"] for b in s["benchmarks"].values()] == [3, 3] and s["n"] == 6
    for b in s["benchmarks"].values():
        assert b["correct"] + (b["graded"] - b["correct"]) + b["no_gold"] == b["n"]
    assert (tmp_path / "sum.md").exists()

    # grading agrees with `psr grade` on the same outputs
    graded = tmp_path / "graded.jsonl"
    res = CliRunner().invoke(app, ["grade", "-i", str(out), "-o", str(graded), "--timeout", "60"])
    assert res.exit_code == 0, res.output
    assert {r["id"]: r["correct"] for r in read_jsonl(graded)} == {p["id"]: p["correct"] for p in preds}

    # resume: a second run over more problems answers only the new ones and keeps the old ones
    cli("-i", gsm, "-i", m500, "--model", tiny_model_dir, "--limit", "4", "--max-tokens", "12", "-o", str(out))
    again = read_jsonl(out)
    assert again[:6] == preds and len(again) == 8 and len({p["id"] for p in again}) == 8


def test_tiny_model_judge_task(tmp_path, tiny_model_dir):
    path = write_jsonl(tmp_path / "eft.jsonl", eft_records(3))
    out = tmp_path / "judge.jsonl"
    cli(
        "--task",
        "judge",
        "-i",
        path,
        "--model",
        tiny_model_dir,
        "--max-tokens",
        "8",
        "-o",
        str(out),
        "--summary",
        str(tmp_path / "j.json"),
    )
    preds = read_jsonl(out)
    assert [p["id"] for p in preds] == ["e0", "e1", "e2"]
    for p in preds:
        assert p["verdict"] in ("A", "B", None) and p["verdict_swapped"] in ("A", "B", None)
        assert p["correct"] is (p["verdict"] == p["label"])
    s = json.loads((tmp_path / "j.json").read_text())
    assert s["task"] == "judge" and s["n"] == 3 and s["judgments"] == 6
    assert "accuracy_better_as_A" in (tmp_path / "j.md").read_text()


@pytest.mark.slow
def test_tiny_model_tts(tmp_path, bench_dir, tiny_model_dir):
    gsm = os.path.join(bench_dir, "gsm8k_test.jsonl")
    out = tmp_path / "tts.jsonl"
    cli(
        "-i",
        gsm,
        "--model",
        tiny_model_dir,
        "--limit",
        "2",
        "--max-tokens",
        "8",
        "--tts",
        "--width",
        "2",
        "--max-iterations",
        "2",
        "-o",
        str(out),
        "--summary",
        str(tmp_path / "t.json"),
    )
    preds = read_jsonl(out)
    assert sorted(p["id"] for p in preds) == sorted(f"gsm8k/{r['id']}" for r in read_jsonl(gsm)[:2])
    for p in preds:
        assert 1 <= p["tts"]["iterations"] <= 2 and p["finish_reason"] in ("final", "max_iterations")
        assert isinstance(p["correct"], bool) and len(p["steps"]) <= 2
    s = json.loads((tmp_path / "t.json").read_text())
    assert s["tts"] is True and s["tts_config"]["width"] == 2 and s["n"] == 2


@pytest.mark.slow
def test_kill9_mid_run_resumes_without_loss_or_duplicates(tmp_path, bench_dir, tiny_model_dir):
    gsm = os.path.join(bench_dir, "gsm8k_test.jsonl")
    out = tmp_path / "preds.jsonl"
    args = [
        *PSR,
        "eval",
        "-i",
        gsm,
        "--model",
        tiny_model_dir,
        "--limit",
        "12",
        "--max-tokens",
        "16",
        "--grade-timeout",
        "60",
        "--chunk-size",
        "1",
        "-o",
        str(out),
    ]
    with open(tmp_path / "err.txt", "wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.02)
        proc.kill()  # SIGKILL
        proc.wait()
    assert proc.returncode == -9, (tmp_path / "err.txt").read_text()  # killed mid-run, not finished
    assert 3 <= out.read_bytes().count(b"\n") < 12
    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    ids = [p["id"] for p in read_jsonl(out)]
    assert len(ids) == 12 and len(set(ids)) == 12
