"""psr launch: a generation stage as 2 real CPU worker processes (--shard K/2 each), merged into one output that
equals the unsharded run's; a failing worker is named and nothing merged; a rerun resumes the shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PSR = [sys.executable, "-m", "psr.cli"]


def _psr(*args, **kw):
    return subprocess.run(
        [*PSR, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"},
        **kw,
    )


def _records(path):
    with open(path) as fh:
        return [json.loads(x) for x in fh if x.strip()]


@pytest.mark.slow
def test_two_workers_merge_to_the_unsharded_output_a_failure_is_named_and_a_rerun_resumes(tiny_model_dir, tmp_path):
    src = tmp_path / "gsm.jsonl"
    with open(os.path.join(ROOT, "data", "gsm8k_test_sample.jsonl")) as fh:
        src.write_text("".join(fh.readlines()[:5]))  # 5: the shards are uneven (2 + 3)
    stage = ["eval", "-i", str(src), "--model", tiny_model_dir, "--max-tokens", "8", "--batch-size", "8"]
    r = _psr(*stage, "-o", str(tmp_path / "one.jsonl"))
    assert r.returncode == 0, r.stderr
    want = _records(tmp_path / "one.jsonl")
    out, shards = tmp_path / "merged.jsonl", tmp_path / "merged.jsonl.shards"
    (shards / "1-of-2.jsonl").mkdir(parents=True)  # worker 1 cannot write its shard: it fails, worker 0 finishes
    launch = ["launch", "--workers", "2", "--", *stage, "-o", str(out), "--summary", str(tmp_path / "s.json")]
    r = _psr(*launch)
    assert r.returncode == 1, r.stderr
    failed = r.stderr.split("error:")[-1]
    assert "shard 1/2 (exit 2" in failed and "shard 0/2" not in failed and not out.exists()
    assert len(_records(shards / "0-of-2.jsonl")) == 2
    before = (shards / "0-of-2.jsonl").read_bytes()
    (shards / "1-of-2.jsonl").rmdir()
    r = _psr(*launch)  # the rerun: worker 0 resumes a finished shard, worker 1 does its own
    assert r.returncode == 0, r.stderr
    assert _records(out) == want and len(want) == 5
    assert (shards / "0-of-2.jsonl").read_bytes() == before
    assert len(_records(shards / "1-of-2.jsonl")) == 3
    assert all((shards / f"{k}-of-2.summary.s.json").exists() for k in range(2))  # per shard, as --help says


def test_launch_refuses_what_it_cannot_shard(tmp_path):
    for args, msg in [
        (["--workers", "2", "--", "eval", "-i", "x", "-o", "-"], "needs -o"),
        (["--workers", "2", "--", "eval", "-i", "x", "-o", "o.jsonl", "--limit", "3"], "--limit"),
        (["--workers", "2", "--", "sft", "-i", "x", "-o", "o"], "runs one of"),
        (["--gpus", "0,1,2", "--gpus-per-worker", "2", "--", "eval", "-o", "o.jsonl"], "groups of"),
    ]:
        r = _psr("launch", *args)
        assert r.returncode == 2 and msg in r.stderr, r.stderr
