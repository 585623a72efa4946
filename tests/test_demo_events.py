"""The events world's demo at CI size, through `psr demo` as a user types it (issue 18's research size is
`--size events`; this is `events-ci`): the world it generates, the oracle's EFT wording, the branches and the
seed report's gates and error table."""

import json
import os
import subprocess
import sys

import pytest

from psr.core.records import read_records
from psr.world.oracle import judge

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_events") / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "psr.cli",
            "demo",
            "--world",
            "events",
            "--size",
            "events-ci",
            "--distractors",
            "1",
            "--iterations",
            "1",
            "--oracle-judge",
            "--judge-style",
            "lookup-first",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=2400,
        env={**os.environ, "PSR_QUIET": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return str(out), proc


def test_the_world_is_the_events_world_at_the_asked_difficulty(run):
    out, proc = run
    test = read_records(os.path.join(out, "world", "test.jsonl"), "problem")
    assert test and all(p["world"]["kind"] == "events" and len(p["world"]["story"]) == 4 + 1 for p in test)
    # --other-first defaults to 0: the asked-about person is introduced first
    assert all(p["question"].startswith(p["world"]["name"] + " has ") for p in test)
    assert "--world events --events 4 --distractors 1 --other-first 0.0" in proc.stderr


def test_eft_judgments_are_in_the_asked_style(run):
    out, _ = run
    eft = read_records(os.path.join(out, "eft.jsonl"), "eft") + read_records(os.path.join(out, "eft_test.jsonl"), "eft")
    assert eft
    from psr.world.generator import parse_question

    for r in eft:
        meta = parse_question(r["question"])
        assert r["judgment"] == judge(meta, r["previous_steps"], r["step_a"], r["step_b"], style="lookup-first")
        assert " the next event is" in r["judgment"] or ", so the first event is" in r["judgment"]


def test_every_branch_is_evaluated_and_the_seed_report_reads_the_run(run):
    out, _ = run
    summary = json.load(open(os.path.join(out, "demo_summary.json")))
    assert [m["model"] for m in summary["models"]] == ["M0", "M1", "M2", "O2"]
    assert all(m["benchmarks"]["world"] is not None for m in summary["models"])
    assert "gsm8k" not in summary["models"][0]["benchmarks"]  # noise for a world-only model: not in the events sizes
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "demo_seeds.py"), out], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    acc = {m["model"]: m["benchmarks"]["world"] for m in summary["models"]}
    gates = proc.stdout[proc.stdout.index("## Gates (issue 18)") :]
    assert f"one round only: O2 - M1 per seed {acc['O2'] - acc['M1']:+.1f}; pooled" in gates
    assert "M1's judgments right by record:" in gates
    wrong = sum(1 for r in read_records(os.path.join(out, "evals", "m1.jsonl"), None) if not r["correct"])
    assert f"M1's wrong held-out solutions, seed 0: {wrong}," in gates
    for name in ("o2", "m2"):
        later = sum(1 for r in read_records(os.path.join(out, "evals", f"{name}.jsonl"), None) if not r["correct"])
        assert f"  - {name.upper()}: {later} wrong, by kind" in gates


def test_the_reversed_pairs_control_trains_on_swapped_pairs_and_is_reported(run):
    out, _ = run
    proc = subprocess.run(
        ["bash", os.path.join("bench", "events_reversed.sh"), out, "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    pairs = read_records(os.path.join(out, "ppd_m1_oracle.jsonl"), "ppd")
    flipped = read_records(os.path.join(out, "ppd_m1_oracle_reversed.jsonl"), "ppd")
    assert pairs and len(flipped) == len(pairs)
    for p, f in zip(pairs, flipped, strict=True):
        assert (f["chosen"], f["rejected"], f["previous_steps"]) == (p["rejected"], p["chosen"], p["previous_steps"])
        assert (f["is_final"], f.get("rejected_is_final", False)) == (p.get("rejected_is_final", False), p["is_final"])
    summary = json.load(open(os.path.join(out, "evals", "o2-reversed.json")))
    m1 = {r["id"]: r["correct"] for r in read_records(os.path.join(out, "evals", "m1.jsonl"), None)}
    rev = {r["id"]: r["correct"] for r in read_records(os.path.join(out, "evals", "o2-reversed.jsonl"), None)}
    assert set(rev) == set(m1) and summary["benchmarks"]["world"]["accuracy"] is not None
    report = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "demo_seeds.py"), out], capture_output=True, text=True, timeout=300
    )
    assert report.returncode == 0, report.stderr
    gain = 100 * sum(int(rev[i]) - int(m1[i]) for i in m1) / len(m1)
    assert (
        f"| O2-reversed - M1 (control that should fail: round 1's oracle pairs reversed) | {gain:+.1f} |"
        in report.stdout
    )
