"""psr annotate-eft against a local OpenAI-compatible server (the real openai package through psr's openai
engine) that answers crafted judge texts: the filter, the CLI, a judge that answers nothing, fails or hangs,
and the rerun that completes."""

from __future__ import annotations

import os
import subprocess

import pytest
from helpers import PSR, read_jsonl, write_jsonl
from servers import ChatServer

from psr.core.errors import PsrError
from psr.core.prompts import judge_prompt
from psr.core.records import IOConfig, read_records
from psr.engines import EngineConfig
from psr.stages import annotate_eft as ann


class VerdictServer(ChatServer):
    """Answers a judge prompt with ``verdicts[prompt]`` (what the judge writes), else an echo-free text."""

    def __init__(self, verdicts: dict[str, str], **kw):
        super().__init__(**kw)
        self.verdicts = verdicts

    def _completion(self, body, user):
        text = self.verdicts.get(user, "I cannot tell.")
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }


# -- against a real OpenAI-compatible server --------------------------------------------------------


def crafted_case():
    q = "Tom has 8 apples. Then he gives away 3 apples. How many apples does Tom have now?"
    good, bad = "8 - 3 = 5.", "8 - 3 = 6."
    pairs, verdicts = [], {}
    plans = {  # (judgment with the chosen step as A, judgment with it as B)
        "keep": ("A is right, B is wrong. [[A]]", "A is wrong, B is right. [[B]]"),
        "inconsistent": ("I prefer the first. [[A]]", "I prefer the first. [[A]]"),
        "disagrees": ("B is better. [[B]]", "A is better. [[A]]"),
        "no_verdict": ("A is right. [[A]]", "Both look fine to me."),
    }
    for name, (ja, jb) in plans.items():
        for i in range(3):
            qi = f"{q} (case {name} {i})"
            pairs.append(
                {
                    "id": f"{name}-{i}",
                    "question": qi,
                    "previous_steps": [],
                    "chosen": good,
                    "rejected": bad,
                    "chosen_score": 0.8,
                    "rejected_score": 0.3,
                }
            )
            verdicts[judge_prompt(qi, [], good, bad)] = ja
            verdicts[judge_prompt(qi, [], bad, good)] = jb
    pairs.append(
        {
            "id": "tie",
            "question": q,
            "previous_steps": [],
            "chosen": good,
            "rejected": bad,
            "chosen_score": 0.5,
            "rejected_score": 0.5,
        }
    )
    return pairs, verdicts


def test_openai_engine_swap_consistency_filter(tmp_path):
    pairs, verdicts = crafted_case()
    src = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    out = str(tmp_path / "eft.jsonl")
    with VerdictServer(verdicts, delay=0.05, models=("judge",)) as server:
        ecfg = EngineConfig(
            engine="openai", model="judge", base_url=server.base_url, api_key_env="PSR_TEST_NO_KEY", concurrency=8
        )
        counts = ann.run(IOConfig([src], out), ann.AnnotateConfig(chunk_size=100), ecfg)
        assert {k: counts[k] for k in ("kept", *ann.DROPS)} == {
            "kept": 3,
            "inconsistent": 3,
            "disagrees_with_prm": 3,
            "no_verdict": 3,
            "prm_tie": 1,
        }
        assert len(server.bodies) == 24  # two orders per judged pair; the tie is never sent
        assert server.max_in_flight > 1  # one engine call per chunk, so requests run concurrently
        assert {b["model"] for b in server.bodies} == {"judge"} and {b["temperature"] for b in server.bodies} == {0}
        recs = read_records(out, "eft")
        assert sorted(r["id"] for r in recs) == ["keep-0", "keep-1", "keep-2"]
        for r in recs:
            want = "A is right, B is wrong. [[A]]" if r["label"] == "A" else "A is wrong, B is right. [[B]]"
            assert r["judgment"] == want
            assert (r["step_a"], r["step_b"]) == (
                ("8 - 3 = 5.", "8 - 3 = 6.") if r["label"] == "A" else ("8 - 3 = 6.", "8 - 3 = 5.")
            )
        # Resume: dropped pairs are remembered too, nothing is sent again.
        n = len(server.bodies)
        assert ann.run(IOConfig([src], out), ann.AnnotateConfig(), ecfg)["kept"] == 0
        assert len(server.bodies) == n


def test_cli_through_a_server_with_split(tmp_path):
    pairs, verdicts = crafted_case()
    src = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    out, test = tmp_path / "eft.jsonl", tmp_path / "eft_test.jsonl"
    with VerdictServer(verdicts, models=("judge",)) as server:
        res = subprocess.run(
            [
                *PSR,
                "annotate-eft",
                "-i",
                src,
                "-o",
                str(out),
                "--test-size",
                "1",
                "--test-output",
                str(test),
                "--model",
                "judge",
                "--base-url",
                server.base_url,
                "--api-key-env",
                "PSR_TEST_NO_KEY",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PSR_QUIET": "0"},
        )
    assert res.returncode == 0, res.stderr
    err = " ".join(res.stderr.split())
    assert "kept 3 of 13 pairs" in err and "inconsistent: 3" in err and "disagrees with prm: 3" in err
    assert "no verdict: 3" in err and "prm tie: 1" in err
    assert len(read_jsonl(out)) == 2 and len(read_jsonl(test)) == 1


def _done_ids(path) -> set:
    import json

    with open(str(path) + ".done") as fh:
        return {json.loads(x) for x in fh if x.strip()}


def test_a_judge_that_answers_nothing_leaves_every_pair_undone(tmp_path):
    pairs, verdicts = crafted_case()
    src = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    out = str(tmp_path / "eft.jsonl")
    null = {prompt: ["null"] * 3 for prompt in verdicts}  # content null on every try
    ecfg = dict(engine="openai", model="judge", api_key_env="PSR_TEST_NO_KEY", max_retries=2)
    with VerdictServer(verdicts, faults=null, models=("judge",)) as server:
        with pytest.raises(PsrError, match=r"12 pair\(s\) got no judgment.*rerun the same command"):
            ann.run(IOConfig([src], out), ann.AnnotateConfig(), EngineConfig(base_url=server.base_url, **ecfg))
    assert read_jsonl(out) == [] and _done_ids(out) == {"tie"}  # only the tie, which needs no judge
    with VerdictServer(verdicts, models=("judge",)) as server:  # the server works again: the rerun judges all
        counts = ann.run(IOConfig([src], out), ann.AnnotateConfig(), EngineConfig(base_url=server.base_url, **ecfg))
    assert counts["kept"] == 3 and counts["no_verdict"] == 3 and counts["unanswered"] == 0
    assert _done_ids(out) == {p["id"] for p in pairs}


def test_a_server_failing_45_percent_keeps_what_finished_and_the_rerun_completes(tmp_path):
    pairs, verdicts = crafted_case()
    src = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    clean, out = tmp_path / "clean.jsonl", tmp_path / "eft.jsonl"

    def annotate(server, path):
        return subprocess.run(
            [
                *PSR,
                "annotate-eft",
                "-i",
                src,
                "-o",
                str(path),
                "--model",
                "judge",
                "--base-url",
                server.base_url,
                "--api-key-env",
                "PSR_TEST_NO_KEY",
                "--max-retries",
                "1",
            ],
            capture_output=True,
            text=True,
        )

    with VerdictServer(verdicts, models=("judge",)) as server:
        assert annotate(server, clean).returncode == 0
    with VerdictServer(verdicts, models=("judge",), failure_rate=0.45) as server:
        first = annotate(server, out)
    assert first.returncode == 1 and "Traceback" not in first.stderr, first.stderr
    assert "got no judgment" in first.stderr and "rerun the same command" in first.stderr
    finished = _done_ids(out)
    assert 1 < len(finished) < len(pairs)  # what finished is kept, the rest is left undone
    with VerdictServer(verdicts, models=("judge",)) as server:
        again = annotate(server, out)
        asked = {b["messages"][-1]["content"] for b in server.bodies}
    assert again.returncode == 0, again.stderr
    assert sorted(read_jsonl(out), key=lambda r: r["id"]) == sorted(read_jsonl(clean), key=lambda r: r["id"])
    assert _done_ids(out) == {p["id"] for p in pairs}
    # the rerun asked only about the pairs left undone
    redone = {p["id"] for p in pairs} - finished
    assert asked == {
        judge_prompt(p["question"], [], *steps)
        for p in pairs
        if p["id"] in redone
        for steps in ((p["chosen"], p["rejected"]), (p["rejected"], p["chosen"]))
    }


def test_a_hung_judge_is_bounded_by_request_timeout_on_the_command_line(tmp_path):
    pairs, verdicts = crafted_case()
    src = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    out = tmp_path / "eft.jsonl"
    hung = judge_prompt(pairs[0]["question"], [], pairs[0]["chosen"], pairs[0]["rejected"])
    with VerdictServer(verdicts, faults={hung: ["hang"] * 2}, hang_s=60.0, models=("judge",)) as server:
        res = subprocess.run(
            [
                *PSR,
                "annotate-eft",
                "-i",
                src,
                "-o",
                str(out),
                "--model",
                "judge",
                "--base-url",
                server.base_url,
                "--api-key-env",
                "PSR_TEST_NO_KEY",
                # long enough that the other requests answer in time on a loaded machine, far below the hang
                "--request-timeout",
                "3",
                "--max-retries",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=50,
        )
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "no answer within 3s" in res.stderr and "1 pair(s) got no judgment" in " ".join(res.stderr.split())
    assert _done_ids(out) == {p["id"] for p in pairs} - {pairs[0]["id"]}  # all but the hung one are done
