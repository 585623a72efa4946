"""psr search as a command: --help and exit codes, and a run killed with SIGKILL and resumed."""

import json
import os
import signal
import subprocess
import time

from helpers import search_cli as _cli

from psr.core.records import read_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_search_killed_and_resumed_makes_the_same_records_as_an_uninterrupted_one(tiny_model_dir, tmp_path):
    """kill -9 mid-run, rerun: every record equals the uninterrupted run's, though the resumed run's working
    sets hold other problems. Each problem samples from seeds of (run seed, problem id, its round), not from a
    count of engine calls. --tts, because an untaught model never writes a verdict: tts keeps the first
    candidate of each tie, so the sampled steps show in the records."""
    from psr.world.generator import generate_problems

    n = 40
    probs = tmp_path / "problems.jsonl"
    probs.write_text(
        "".join(json.dumps({"id": p["id"], "question": p["question"]}) + "\n" for p in generate_problems(n, seed=3))
    )
    opts = [
        "--model",
        tiny_model_dir,
        "--tts",
        "--width",
        "3",
        "--max-iterations",
        "4",
        "--max-step-tokens",
        "8",
        "--judge-max-tokens",
        "4",
        "--working-set",
        "3",
        "--seed",
        "5",
    ]
    env = {**os.environ, "PSR_QUIET": "1", "OMP_NUM_THREADS": "1"}
    whole, resumed = str(tmp_path / "whole.jsonl"), str(tmp_path / "resumed.jsonl")
    assert (
        subprocess.run(
            _cli("-i", str(probs), "-o", whole, *opts), env=env, cwd=ROOT, capture_output=True, timeout=600
        ).returncode
        == 0
    )
    proc = subprocess.Popen(
        _cli("-i", str(probs), "-o", resumed, *opts),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(resumed) and open(resumed, "rb").read().count(b"\n") >= 4:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = open(resumed, "rb").read().count(b"\n")
    assert 4 <= killed_at < n, "the kill should land mid-run"
    again = subprocess.run(
        _cli("-i", str(probs), "-o", resumed, *opts), env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-2000:]
    by_id = lambda path: sorted(read_records(path), key=lambda t: t["id"])  # noqa: E731
    want, got = by_id(whole), by_id(resumed)
    assert len(got) == n and got == want
    assert len({tuple(t["steps"]) for t in want}) == n  # sampled, different steps: the comparison bites


def test_cli_help_and_bad_input_exit_code(tmp_path):
    env = {**os.environ, "PSR_QUIET": "1"}
    h = subprocess.run(_cli("--help"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert h.returncode == 0
    for needle in (
        "Reads problem JSONL",
        "PPD records",
        "--trajectories",
        "--judge-orders",
        "default: 6",
        "default: 20",
    ):
        assert needle in h.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n')
    r = subprocess.run(
        _cli("-i", str(bad), "-o", str(tmp_path / "o.jsonl"), "--model", str(tmp_path)),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and f"{bad}:1:" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        _cli("-i", str(bad), "--judge-orders", "3"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 2 and "--judge-orders" in r.stderr
