"""bench/gpu_smoke.sh at its tiny CPU size: every row of the GPU table is produced by the real code path."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = ["build m0", "sft", "step-dpo", "search warm-up", "search, one problem at a time", "search, batched"]


def table_rows(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] != "row":
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
def test_smoke_script_runs_every_row_on_cpu(tmp_path):
    out = tmp_path / "rows.json"
    env = {**os.environ, "PYTHON": sys.executable, "PSR_WHEELS": str(tmp_path / "no-wheels")}
    run = subprocess.run(
        ["bash", os.path.join(ROOT, "bench", "gpu_smoke.sh"), "--device", "cpu", "--tiny", "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    table = table_rows(run.stdout)
    assert list(table) == ROWS
    rows = {r["row"]: r for r in json.loads(out.read_text())["rows"]}
    plan = json.loads(out.read_text())["plan"]
    assert rows["sft"]["steps"] == plan["sft_steps"] and rows["step-dpo"]["steps"] == plan["dpo_steps"]
    assert rows["sft"]["loss"] > 0 and rows["step-dpo"]["loss"] > 0
    for name in ("search, one problem at a time", "search, batched"):
        assert rows[name]["problems"] == plan["problems"] and rows[name]["tokens"] > 0
    assert all(r["peak_mib"] > 0 for r in rows.values())
    assert "x" in rows["search, batched"]["note"]  # the batched / one-at-a-time ratio


@pytest.mark.slow
def test_without_trl_the_training_rows_say_skipped(tmp_path):
    # A None entry in sys.modules makes `import trl` raise ImportError, as on a box without TRL.
    code = (
        "import sys; sys.modules['trl'] = None; sys.path.insert(0, 'bench'); import gpu_smoke; "
        "gpu_smoke.main(['--device', 'cpu', '--tiny'])"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    table = table_rows(run.stdout)
    assert list(table) == ROWS
    for name in ("sft", "step-dpo"):
        assert "skipped: trl is not importable" in table[name][-1]
    assert int(table["search, batched"][6]) > 0  # tokens: search still ran, on the random-init model


def test_cuda_asked_for_without_a_gpu_is_a_usage_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "gpu_smoke.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert run.returncode == 2 and "no CUDA device visible" in run.stderr
    assert "Traceback" not in run.stderr
