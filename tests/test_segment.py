"""psr segment: rules on real GSM8K and MATH solutions, llm through the oracle and through the real openai
engine against a local OpenAI-compatible server answering recorded texts (retries, content-check rejection)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from helpers import PSR, read_jsonl, write_jsonl
from servers import ChatServer

from psr.core.errors import PsrError
from psr.core.prompts import segment_prompt
from psr.core.records import IOConfig, read_records
from psr.core.steps import format_steps
from psr.engines import EngineConfig
from psr.stages import segment as seg
from psr.world.generator import generate_problems


class ScriptServer(ChatServer):
    """Answers the k-th request carrying a user text with ``script[user][k]`` (the last one repeats)."""

    def __init__(self, script: dict[str, list[str]], **kw):
        super().__init__(**kw)
        self.script = script
        self.asked: dict[str, int] = {}

    def _completion(self, body, user):
        with self._lock:
            k = self.asked.get(user, 0)
            self.asked[user] = k + 1
        texts = self.script.get(user, ["I do not know."])
        text = texts[min(k, len(texts) - 1)]
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }


# -- rules --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,steps",
    [
        ("First line.\nSecond line. Third sentence.", ["First line.", "Second line.", "Third sentence."]),
        ("We get $x = 2. Then$ it holds. Next we stop.", ["We get $x = 2. Then$ it holds.", "Next we stop."]),
        ("So $$a = 1.\nB = 2$$ holds. Done.", ["So $$a = 1.\nB = 2$$ holds.".replace("\n", " "), "Done."]),
        ("Hence \\[x. Y\\] holds. Done.", ["Hence \\[x. Y\\] holds.", "Done."]),
        ("The answer is \\boxed{a. B}. Done.", ["The answer is \\boxed{a. B}.", "Done."]),
        ("The answer is \\boxed{\\frac{1}{2}. X}.", ["The answer is \\boxed{\\frac{1}{2}. X}."]),
        ("It is $x.$ Then $y$ follows.", ["It is $x.$", "Then $y$ follows."]),
        ("Mr. Smith has 3 pens. He buys 2.", ["Mr. Smith has 3 pens.", "He buys 2."]),
        ("He pays $12 for it. Then she pays $3 more.", ["He pays $12 for it.", "Then she pays $3 more."]),
        (
            "Weng earns 12/60 = $0.2 per minute. So she earned $10.",
            ["Weng earns 12/60 = $0.2 per minute.", "So she earned $10."],
        ),
        (
            "\\begin{align*} a &= 1. \\\\ B &= 2 \\end{align*} So done.",
            ["\\begin{align*} a &= 1. \\\\ B &= 2 \\end{align*} So done."],
        ),
    ],
)
def test_split_rules_never_cuts_math_or_boxed(text, steps):
    assert seg.split_rules(text) == steps


def test_rules_reproduce_the_world_segmentation(tmp_path):
    probs = generate_problems(100, seed=0)
    src = write_jsonl(
        tmp_path / "sol.jsonl", [{k: p[k] for k in ("id", "question", "answer", "solution")} for p in probs]
    )
    counts = seg.run(IOConfig([src], str(tmp_path / "ift.jsonl")), seg.SegmentConfig(method="rules"))
    assert counts == {"ok": 100, "retried": 0, "rejected": 0}
    out = read_records(str(tmp_path / "ift.jsonl"), "ift")
    assert [r["steps"] for r in out] == [p["steps"] for p in probs]
    assert [r["solution"] for r in out] == [p["solution"] for p in probs]


@pytest.mark.parametrize("name", ["gsm8k_train.jsonl", "math_test.jsonl", "math500_test.jsonl"])
def test_rules_keep_real_solutions_exactly(bench_dir, name, tmp_path):
    src = os.path.join(bench_dir, name)
    counts = seg.run(IOConfig([src], str(tmp_path / "ift.jsonl")), seg.SegmentConfig(method="rules"))
    raw = {r["id"]: r for r in read_records(src)}
    out = read_records(str(tmp_path / "ift.jsonl"), "ift")
    assert counts["ok"] == len(out) == len(raw)
    multi = 0
    for r in out:
        orig = raw[r["id"]]
        assert r["solution"] == orig["solution"] and r["answer"] == orig["answer"]
        text = seg.prepare(orig)
        assert seg.normalize(" ".join(r["steps"])) == seg.normalize(text)
        assert all(s == s.strip() and s for s in r["steps"])
        assert "<<" not in " ".join(r["steps"])
        assert any("\\boxed" in s for s in r["steps"])
        multi += len(r["steps"]) > 1
    assert multi > 0.8 * len(out)
    if name.startswith("gsm8k"):
        first = out[0]  # "Natalia sold 48/2 = <<48/2=24>>24 clips in May. ..."
        assert first["steps"] == [
            "Natalia sold 48/2 = 24 clips in May.",
            "Natalia sold 48+24 = 72 clips altogether in April and May.",
            "The answer is \\boxed{72}.",
        ]


def test_empty_solutions_are_rejected_not_written(tmp_path):
    src = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"id": "a", "question": "q", "solution": "  "},
            {"id": "b", "question": "q", "solution": "", "answer": "4"},
            {"id": "c", "question": "q", "solution": "x is 4.", "answer": "4"},
        ],
    )
    out, rej = str(tmp_path / "ift.jsonl"), str(tmp_path / "rej.jsonl")
    counts = seg.run(IOConfig([src], out), seg.SegmentConfig(method="rules", rejects=rej))
    assert counts == {"ok": 1, "retried": 0, "rejected": 2}
    assert [r["steps"] for r in read_jsonl(out)] == [["x is 4.", "The answer is \\boxed{4}."]]
    assert [r["reject_reason"] for r in read_jsonl(rej)] == ["the solution is empty"] * 2


def test_no_box_answer_keeps_the_text_as_is():
    rec = {"id": "1", "question": "q", "solution": "A is 2.<<1+1=2>> B is 3.", "answer": "3"}
    assert seg.prepare(rec) == "A is 2. B is 3.\nThe answer is \\boxed{3}."
    assert seg.prepare(rec, box_answer=False) == "A is 2. B is 3."
    assert seg.prepare({**rec, "solution": "So $\\boxed{3}$."}) == "So $\\boxed{3}$."


# -- the content check ----------------------------------------------------------------------------


def test_check_segmentation():
    sol = "We add $1+1=2$.  Then we get\n\\boxed{2}."
    assert seg.check_segmentation("Step 1: We add $1+1=2$.\nStep 2: Then we get \\boxed{2}.", sol)[0] == [
        "We add $1+1=2$.",
        "Then we get \\boxed{2}.",
    ]
    assert seg.check_segmentation("Here you go:\nStep 1: We add $1+1=2$.\nStep 2: Then we get \\boxed{2}.", sol)[0]
    # The content kept, but all under one marker: not a segmentation (a real small model does this).
    steps, why = seg.check_segmentation("Step 1: We add $1+1=2$. Then we get \\boxed{2}.", sol)
    assert steps is None and "one step for a solution of 2 sentences" in why, why
    one = "So the answer is \\boxed{2}."
    assert seg.check_segmentation(f"Step 1: {one}", one)[0] == [one]  # one sentence, one step: fine
    steps, why = seg.check_segmentation("Step 1: We add $1+1=2$.\nStep 2: Then we get 2.", sol)
    assert steps is None and "content changed" in why
    steps, why = seg.check_segmentation("We add $1+1=2$. Then we get \\boxed{2}.", sol)
    assert steps is None and "no 'Step n:' markers" in why
    assert seg.check_segmentation("Step 1: We add $1 + 1 = 2$. Then we get \\boxed{2}.", sol)[0] is None


# -- llm ------------------------------------------------------------------------------------------


def test_llm_with_the_oracle(tmp_path):
    probs = generate_problems(30, seed=4)
    src = write_jsonl(
        tmp_path / "sol.jsonl", [{k: p[k] for k in ("id", "question", "answer", "solution")} for p in probs]
    )
    counts = seg.run(
        IOConfig([src], str(tmp_path / "ift.jsonl")),
        seg.SegmentConfig(method="llm", chunk_size=7),
        EngineConfig(engine="oracle"),
    )
    assert counts == {"ok": 30, "retried": 0, "rejected": 0}
    assert [r["steps"] for r in read_jsonl(tmp_path / "ift.jsonl")] == [p["steps"] for p in probs]


def _server_case():
    """Four problems and the recorded answers of a segmenter for each."""
    recs = [
        {
            "id": f"p{i}",
            "question": f"What is {i} + {i}?",
            "answer": str(2 * i),
            "solution": f"We add {i} and {i}. So the sum is $\\boxed{{{2 * i}}}$.",
        }
        for i in range(4)
    ]
    good = {f"p{i}": format_steps([f"We add {i} and {i}.", f"So the sum is $\\boxed{{{2 * i}}}$."]) for i in range(4)}
    prompt = {r["id"]: segment_prompt(r["question"], r["solution"]) for r in recs}
    script = {
        prompt["p0"]: [good["p0"]],  # right at once
        prompt["p1"]: [good["p1"].replace("\\boxed{2}", "2"), good["p1"]],  # drops the box, then right
        prompt["p2"]: ["Step 1: We add 2 and 2, so the sum is 4."],  # always rewrites the solution
        prompt["p3"]: ["We add 3 and 3. So the sum is $\\boxed{6}$."],  # never uses Step markers
    }
    return recs, script, prompt


def test_llm_through_the_openai_engine_retries_and_rejects(tmp_path):
    recs, script, prompt = _server_case()
    src = write_jsonl(tmp_path / "sol.jsonl", recs)
    out, rej = str(tmp_path / "ift.jsonl"), str(tmp_path / "rejects.jsonl")
    with ScriptServer(script) as server:
        cfg = seg.SegmentConfig(method="llm", max_retries=2, rejects=rej)
        ecfg = EngineConfig(engine="openai", model="m", base_url=server.base_url, api_key_env="PSR_TEST_NO_KEY")
        counts = seg.run(IOConfig([src], out), cfg, ecfg)
        assert counts == {"ok": 2, "retried": 1, "rejected": 2}
        assert server.asked == {prompt["p0"]: 1, prompt["p1"]: 2, prompt["p2"]: 3, prompt["p3"]: 3}
        # Retries sample (T=0.7, a new seed); the first attempt is greedy.
        temps = sorted((b["temperature"], b.get("seed")) for b in server.bodies)
        assert temps[:4] == [(0.0, 0)] * 4 and (0.7, 1) in temps and (0.7, 2) in temps
        ok = {r["id"]: r for r in read_records(out, "ift")}
        assert ok["p0"]["steps"] == ["We add 0 and 0.", "So the sum is $\\boxed{0}$."]
        assert ok["p1"]["steps"][1] == "So the sum is $\\boxed{2}$."
        bad = {r["id"]: r for r in read_jsonl(rej)}
        assert set(bad) == {"p2", "p3"}
        assert "after 3 attempt(s): content changed" in bad["p2"]["reject_reason"]
        assert "no 'Step n:' markers" in bad["p3"]["reject_reason"]
        assert bad["p2"]["solution"] == recs[2]["solution"]
        # Resume: nothing is asked again, rejects included.
        n = len(server.bodies)
        assert seg.run(IOConfig([src], out), cfg, ecfg) == {"ok": 0, "retried": 0, "rejected": 0}
        assert len(server.bodies) == n


def test_cli_llm_through_a_server_and_resume_after_a_torn_line(tmp_path):
    recs, script, _ = _server_case()
    src = write_jsonl(tmp_path / "sol.jsonl", recs[:2])
    out = tmp_path / "ift.jsonl"
    env = {**os.environ, "PSR_QUIET": "0"}
    with ScriptServer(script) as server:
        cmd = [
            *PSR,
            "segment",
            "-i",
            src,
            "-o",
            str(out),
            "--engine",
            "openai",
            "--model",
            "m",
            "--base-url",
            server.base_url,
            "--api-key-env",
            "PSR_TEST_NO_KEY",
        ]
        res = subprocess.run([*cmd, "--limit", "1"], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        assert "1 ok (0 of them after a retry), 0 rejected" in res.stderr
        # A kill -9 in the middle of a write leaves a torn line: the next run cuts it and finishes the job.
        with open(out, "a") as fh:
            fh.write('{"id": "p1", "question": "What')
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        assert "1 ok (1 of them after a retry), 0 rejected" in res.stderr
    assert [r["id"] for r in read_jsonl(out)] == ["p0", "p1"]


def test_cli_rules_shards_concatenate_and_bad_input_exits_2(tmp_path, bench_dir):
    src = os.path.join(bench_dir, "gsm8k_test.jsonl")
    full, a, b = (str(tmp_path / f) for f in ("full.jsonl", "a.jsonl", "b.jsonl"))
    rules = seg.SegmentConfig(method="rules")
    seg.run(IOConfig([src], full), rules)
    seg.run(IOConfig([src], a, shard="0/2"), rules)
    seg.run(IOConfig([src], b, shard="1/2"), rules)
    assert len(read_jsonl(a)) == 1319 // 2 and read_jsonl(a) + read_jsonl(b) == read_jsonl(full)
    res = subprocess.run(
        [*PSR, "segment", "--method", "rules", "-i", src, "--limit", "2"], capture_output=True, text=True
    )
    assert res.returncode == 0 and [r["id"] for r in map(json.loads, res.stdout.splitlines())] == [
        "gsm8k-test-0",
        "gsm8k-test-1",
    ]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "1", "question": "q", "solution": "s"}, {"id": "2"}])
    res = subprocess.run([*PSR, "segment", "--method", "rules", "-i", bad], capture_output=True, text=True)
    assert res.returncode == 2 and f"{bad}:2: missing field 'question'" in res.stderr
    assert "Traceback" not in res.stderr
    res = subprocess.run([*PSR, "segment", "--method", "magic", "-i", bad], capture_output=True, text=True)
    assert (
        res.returncode == 2
        and "Invalid value for '--method'" in res.stderr
        and "is not one of 'rules', 'llm'" in res.stderr
    )


def test_help_says_what_it_reads_writes_and_defaults():
    res = subprocess.run(
        [*PSR, "segment", "--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    assert res.returncode == 0
    for words in (
        "Reads problem records",
        "writes IFT records",
        "default openai",
        "--rejects",
        "default: llm",
        "default: 2",
    ):
        assert words in " ".join(res.stdout.split()).replace("[", "").replace("]", ""), words


@pytest.mark.slow
def test_llm_through_the_hf_engine_on_a_tiny_model(tmp_path, tiny_model_dir):
    # An untrained model cannot segment: every record must end in the rejects file, none in the output.
    probs = generate_problems(3, seed=0)
    src = write_jsonl(
        tmp_path / "sol.jsonl", [{k: p[k] for k in ("id", "question", "answer", "solution")} for p in probs]
    )
    out, rej = str(tmp_path / "ift.jsonl"), str(tmp_path / "rej.jsonl")
    counts = seg.run(
        IOConfig([src], out),
        seg.SegmentConfig(method="llm", max_retries=1, rejects=rej, max_tokens=16),
        EngineConfig(engine="hf", model=tiny_model_dir),
    )
    assert counts == {"ok": 0, "retried": 0, "rejected": 3}
    assert not read_jsonl(out)
    assert all(r["reject_reason"].startswith("after 2 attempt(s): ") for r in read_jsonl(rej))


def test_a_request_out_of_retries_leaves_its_record_undone_and_a_too_long_prompt_is_rejected(tmp_path):
    recs, script, prompt = _server_case()
    src = write_jsonl(tmp_path / "sol.jsonl", recs)
    out, rej = str(tmp_path / "ift.jsonl"), str(tmp_path / "rejects.jsonl")
    cfg = seg.SegmentConfig(method="llm", max_retries=0, rejects=rej)
    faults = {prompt["p0"]: ["null"] * 3, prompt["p1"]: ["context"]}  # p0: empty answers; p1: too long for it
    with ScriptServer(script, faults=faults) as server:
        ecfg = EngineConfig(
            engine="openai", model="m", base_url=server.base_url, api_key_env="PSR_TEST_NO_KEY", max_retries=2
        )
        with pytest.raises(PsrError, match=r"1 record\(s\) got no answer.*rerun the same command"):
            seg.run(IOConfig([src], out), cfg, ecfg)
    assert read_jsonl(out) == []  # p2, p3 rejected by content, p1 rejected as too long, p0 left undone
    bad = {r["id"]: r["reject_reason"] for r in read_jsonl(rej)}
    assert set(bad) == {"p1", "p2", "p3"} and bad["p1"] == "the prompt is longer than the model's context"
    with ScriptServer(script) as server:  # the rerun asks about p0 only
        ecfg = EngineConfig(engine="openai", model="m", base_url=server.base_url, api_key_env="PSR_TEST_NO_KEY")
        assert seg.run(IOConfig([src], out), cfg, ecfg) == {"ok": 1, "retried": 0, "rejected": 0}
        assert server.asked == {prompt["p0"]: 1}
    assert [r["id"] for r in read_jsonl(out)] == ["p0"]
