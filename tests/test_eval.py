"""psr eval's math task: benchmark inputs, accuracy and step statistics, resume, shards, tts, --compare and
failures.

A scripted Engine subclass (an injected dependency: it returns known outputs and verdicts) checks the
numbers exactly.
"""

from __future__ import annotations

import json
import sys

import pytest
from helpers import ScriptedEngine, read_jsonl, shown_a, write_jsonl
from servers import ChatServer
from typer.testing import CliRunner

from psr.cli import app
from psr.core.errors import InputError, PsrError
from psr.core.prompts import step_prompt
from psr.core.records import IOConfig
from psr.engines.base import Completion, EngineConfig
from psr.stages import eval as ev

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def problems(prefix, n):
    return [
        {"id": f"{prefix}{i}", "question": f"What is {i} + {i}? ({prefix})", "answer": str(2 * i)} for i in range(n)
    ]


def math_engine():
    """Right on even i, wrong on odd i; even answers take 2 steps, odd ones 3."""

    def respond(chat):
        i = int(chat.user.split("What is ")[1].split(" ")[0])
        if i % 2 == 0:
            return f"Step 1: Add {i} and {i}.\nStep 2: The answer is \\boxed{{{2 * i}}}."
        return f"Step 1: Add.\nStep 2: Think.\nStep 3: So \\boxed{{{2 * i + 1}}}."

    return ScriptedEngine(respond)


def run_math(tmp_path, inputs, out="preds.jsonl", engine=None, **kw):
    io_kw = {k: kw.pop(k) for k in ("limit", "shard", "overwrite") if k in kw}
    io = IOConfig(inputs=inputs, output=str(tmp_path / out), **io_kw)
    # generous: on a busy 2-core machine a slow grade must not turn into a timeout
    cfg = ev.EvalConfig(**{"grade_timeout": 60.0, **kw})
    return ev.run(io, cfg, engine or math_engine())


# ---------------------------------------------------------------------------------------------
# Inputs


def test_benchmark_name_from_file_or_name_equals_path(tmp_path):
    assert ev.benchmark_name("/x/gsm8k_test.jsonl") == ("gsm8k", "/x/gsm8k_test.jsonl")
    assert ev.benchmark_name("/x/math500_test.jsonl")[0] == "math500"
    assert ev.benchmark_name("mine=/x/a_test.jsonl") == ("mine", "/x/a_test.jsonl")
    assert ev.benchmark_name("/x/gsm8k_train.jsonl")[0] == "gsm8k_train"
    p = write_jsonl(tmp_path / "a=b.jsonl", problems("p", 1))  # an existing path with "=" is a path
    assert ev.benchmark_name(p) == ("a=b", p)


def test_two_inputs_with_one_name_are_refused(tmp_path):
    a = write_jsonl(tmp_path / "x_test.jsonl", problems("a", 2))
    (tmp_path / "d").mkdir()
    b = write_jsonl(tmp_path / "d" / "x_test.jsonl", problems("b", 2))
    with pytest.raises(InputError, match="NAME=PATH"):
        run_math(tmp_path, [a, b])
    s = run_math(tmp_path, [a, f"y={b}"])
    assert set(s["benchmarks"]) == {"x", "y"}


# ---------------------------------------------------------------------------------------------
# Math accuracy with known answers


def test_math_accuracy_counts_and_step_statistics(tmp_path):
    a = write_jsonl(tmp_path / "alpha_test.jsonl", problems("q", 4))  # 2 right of 4
    b = write_jsonl(tmp_path / "beta_test.jsonl", problems("q", 3))  # same source ids: 2 right of 3
    eng = math_engine()
    s = run_math(tmp_path, [a, b], engine=eng, summary=str(tmp_path / "s.json"), chunk_size=4)
    preds = read_jsonl(tmp_path / "preds.jsonl")
    assert [p["id"] for p in preds] == [f"alpha/q{i}" for i in range(4)] + [f"beta/q{i}" for i in range(3)]
    assert eng.calls == [4, 3]  # the benchmarks share the engine and its batches
    for p in preds:
        i = int(p["source_id"][1:])
        assert p["benchmark"] in ("alpha", "beta") and p["answer"] == str(2 * i)
        assert p["correct"] is (i % 2 == 0)
        assert p["pred"] == (str(2 * i) if i % 2 == 0 else str(2 * i + 1))
        assert len(p["steps"]) == (2 if i % 2 == 0 else 3) and not p["steps"][0].startswith("Step")
        assert p["step_tokens"] == [len(x.split()) for x in p["steps"]]
    al, be = s["benchmarks"]["alpha"], s["benchmarks"]["beta"]
    assert (al["n"], al["correct"], al["accuracy"]) == (4, 2, 50.0)
    assert (be["n"], be["correct"], be["accuracy"]) == (3, 2, 66.67)
    assert s["average"] == round((50.0 + 200 / 3) / 2, 2) and s["overall"] == round(400 / 7, 2)
    assert s["n"] == 7 == al["n"] + be["n"]
    assert al["mean_steps"] == 2.5 and be["mean_steps"] == round(7 / 3, 2)
    steps = [x for p in preds if p["benchmark"] == "alpha" for x in p["steps"]]
    assert al["mean_step_chars"] == round(sum(map(len, steps)) / len(steps), 2)
    assert al["mean_step_tokens"] == round(sum(len(x.split()) for x in steps) / len(steps), 2)
    assert "tokenizer" in s["tokens_unit"]
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["benchmarks"] == s["benchmarks"]
    md = (tmp_path / "s.md").read_text()
    assert "| alpha | 4 | 2 | 50.0 |" in md and "chr/step: mean characters per step" in md


def test_qwen_cot_prompt_uses_the_system_turn(tmp_path):
    seen = []

    def respond(chat):
        seen.append(chat)
        return "\\boxed{0}"

    a = write_jsonl(tmp_path / "z_test.jsonl", problems("q", 2))
    s = run_math(tmp_path, [a], engine=ScriptedEngine(respond), prompt="qwen-cot")
    assert all(c.system and "boxed" in c.system and c.user.startswith("What is") for c in seen)
    assert s["benchmarks"]["z"]["correct"] == 1  # 0 + 0 = 0
    with pytest.raises(InputError, match="--prompt"):
        run_math(tmp_path, [a], out="other.jsonl", prompt="nope")


def test_problem_without_gold_is_counted_not_graded(tmp_path):
    recs = problems("q", 3)
    del recs[1]["answer"]
    a = write_jsonl(tmp_path / "g_test.jsonl", recs)
    s = run_math(tmp_path, [a])
    b = s["benchmarks"]["g"]
    assert (b["n"], b["graded"], b["no_gold"], b["correct"], b["accuracy"]) == (3, 2, 1, 2, 100.0)
    assert read_jsonl(tmp_path / "preds.jsonl")[1]["correct"] is None


def test_resume_from_a_partial_output_with_a_torn_line(tmp_path):
    a = write_jsonl(tmp_path / "r_test.jsonl", problems("q", 6))
    full = run_math(tmp_path, [a], out="full.jsonl", chunk_size=2)
    lines = (tmp_path / "full.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "part.jsonl").write_text("".join(lines[:2]) + lines[2][:15])  # a kill mid-write
    eng = math_engine()
    resumed = run_math(tmp_path, [a], out="part.jsonl", engine=eng, chunk_size=2)
    assert sum(eng.calls) == 4  # only the 4 unfinished problems were answered again
    assert (tmp_path / "part.jsonl").read_text() == "".join(lines)
    assert resumed["benchmarks"] == full["benchmarks"]  # the summary covers the resumed records too


def test_shards_concatenate_to_the_full_run(tmp_path):
    a = write_jsonl(tmp_path / "a_test.jsonl", problems("q", 5))
    b = write_jsonl(tmp_path / "b_test.jsonl", problems("q", 4))
    run_math(tmp_path, [a, b], out="full.jsonl", limit=4)
    parts = [run_math(tmp_path, [a, b], out=f"s{k}.jsonl", shard=f"{k}/3", limit=4) for k in range(3)]
    cat = "".join((tmp_path / f"s{k}.jsonl").read_text() for k in range(3))
    assert cat == (tmp_path / "full.jsonl").read_text()
    assert sum(p["n"] for p in parts) == 8  # --limit 4 of each benchmark
    (tmp_path / "cat.jsonl").write_text(cat)
    merged = ev.summarize_file([str(tmp_path / "cat.jsonl")], ev.EvalConfig())
    full = ev.summarize_file([str(tmp_path / "full.jsonl")], ev.EvalConfig())
    assert merged["benchmarks"] == full["benchmarks"] and merged["average"] == full["average"]


class SearchingEngine(ScriptedEngine):
    """Candidate k of a step is right only for k == 3; the judge prefers the right one. Greedy (n=1)
    therefore answers wrong, and the self-judged step search answers right."""

    def __init__(self):
        super().__init__(None)

    def generate(self, chats, sampling):
        self.calls.append(len(chats))
        out = []
        for c in chats:
            if c.user.startswith("Please act as an impartial judge"):
                out.append([Completion("[[A]]" if "\\boxed{10" in shown_a(c) else "[[B]]", "eos", 0, 2)])
            else:
                i = int(c.user.split("What is ")[1].split(" ")[0])
                out.append(
                    [
                        Completion(f"Step 1: So \\boxed{{{100 + i if k == 3 else 200 + 10 * i + k}}}", "eos", 0, 3)
                        for k in range(sampling.n)
                    ]
                )
        return out


def test_tts_answers_with_the_step_search(tmp_path):
    recs = [{"id": f"q{i}", "question": f"What is {i} + {i}?", "answer": str(100 + i)} for i in range(3)]
    a = write_jsonl(tmp_path / "t_test.jsonl", recs)
    greedy = run_math(tmp_path, [a], out="greedy.jsonl", engine=SearchingEngine())
    assert greedy["benchmarks"]["t"]["correct"] == 0
    s = run_math(tmp_path, [a], out="tts.jsonl", engine=SearchingEngine(), tts=True)
    assert s["tts"] and s["tts_config"]["width"] == 6
    assert s["benchmarks"]["t"]["correct"] == 3 and s["benchmarks"]["t"]["truncated"] == 0
    preds = read_jsonl(tmp_path / "tts.jsonl")
    assert sorted(p["id"] for p in preds) == ["t/q0", "t/q1", "t/q2"]
    for p in preds:
        assert p["steps"] == [f"So \\boxed{{{p['answer']}}}"] and p["finish_reason"] == "final"
        assert p["tts"]["iterations"] == 1 and p["tts"]["judge_calls"] == 15  # 6 candidates: 15 pairs


# ---------------------------------------------------------------------------------------------
# Comparing iterations


def test_compare_renders_matrix_markdown_and_png(tmp_path):
    def summ(name, accs):
        b = {k: {"n": 10, "correct": int(v / 10), "accuracy": v} for k, v in accs.items()}
        s = {"task": "math", "benchmarks": b, "average": round(sum(accs.values()) / len(accs), 2), "name": name}
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(s))
        return str(p)

    m1 = summ("M1", {"gsm8k": 80.0, "math": 40.0})
    m2 = summ("M2", {"gsm8k": 82.5, "math": 39.0})
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--compare",
            m1,
            m2,
            "--plot",
            str(tmp_path / "acc.png"),
            "--summary-md",
            str(tmp_path / "cmp.md"),
            "--summary",
            str(tmp_path / "c.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    md = (tmp_path / "cmp.md").read_text()
    assert "| model | gsm8k | math | average |" in md
    assert "| M1 | 80.0 | 40.0 | 60.0 |" in md
    assert "| M2 | 82.5 (+2.5) | 39.0 (-1.0) | 60.8 (+0.8) |" in md
    with open(tmp_path / "acc.png", "rb") as fh:
        assert fh.read(8) == PNG_MAGIC
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["rows"][1]["delta"] == {"gsm8k": 2.5, "math": -1.0, "average": 0.75}


def test_compare_refuses_a_file_that_is_not_a_summary(tmp_path):
    p = write_jsonl(tmp_path / "preds.jsonl", problems("q", 2))
    with pytest.raises(InputError, match="preds.jsonl"):
        ev.compare([p])


def test_bad_benchmark_record_is_file_line_error(tmp_path, monkeypatch, capsys):
    from psr.cli import main

    bad = tmp_path / "b_test.jsonl"
    bad.write_text(json.dumps({"id": "1", "question": "q"}) + "\n" + json.dumps({"id": "2"}) + "\n")
    # the input is checked before the model loads: this directory holds no model
    monkeypatch.setattr(
        sys, "argv", ["psr", "eval", "-i", str(bad), "--model", str(tmp_path / "none"), "-o", str(tmp_path / "o.jsonl")]
    )
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert f"{bad}:2: missing field 'question'" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_a_request_out_of_retries_leaves_only_its_problem_undone(tmp_path):
    probs = [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(5)]
    src = write_jsonl(tmp_path / "bench.jsonl", probs)
    out = str(tmp_path / "preds.jsonl")
    faults = {step_prompt(probs[2]["question"]): ["500"] * 2, step_prompt(probs[4]["question"]): ["context"]}
    with ChatServer(faults=faults) as server:
        ecfg = EngineConfig(
            engine="openai", model="m", base_url=server.base_url, api_key_env="PSR_TEST_NO_KEY", max_retries=1
        )
        with pytest.raises(PsrError, match=r"1 record\(s\) got no answer \(first: bench/q2\)"):
            ev.run(IOConfig([src], out), ev.EvalConfig(chunk_size=8), ecfg)
        assert sorted(r["id"] for r in read_jsonl(out)) == ["bench/q0", "bench/q1", "bench/q3", "bench/q4"]
        summary = ev.run(IOConfig([src], out), ev.EvalConfig(chunk_size=8), ecfg)  # the rerun asks for q2
        assert summary["n"] == 5 and sorted(r["id"] for r in read_jsonl(out)) == [f"bench/q{i}" for i in range(5)]
        # a prompt too long for the model is an answer of its own kind, counted, not a failure
        assert summary["benchmarks"]["bench"]["prompt_too_long"] == 1
    asked = [b["messages"][-1]["content"] for b in server.bodies]
    assert (
        len(asked) == 5 + 1 + 1 and asked.count(step_prompt(probs[2]["question"])) == 3
    )  # q2: 2 failed, 1 answered; q4 refused once


def test_eval_grading_sees_the_question_as_psr_grade_does():
    """A percent question: 0.2 does not answer it (0.2%), as in `psr grade`; without the question it would."""
    from psr.stages.eval import grade_outputs

    q = "What percent of the marbles are red?"
    outs, golds = [r"$\boxed{0.2}$", r"$\boxed{20}$"], [r"20\%", r"20\%"]
    assert [c for _, c, _ in grade_outputs(outs, golds, "default", questions=[q, q])] == [False, True]
    assert [c for _, c, _ in grade_outputs(outs, golds, "default")] == [True, True]
