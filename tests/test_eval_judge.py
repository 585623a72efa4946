"""psr eval --task judge: pairwise judge accuracy in both orders (position bias, missing verdicts) and the 0-5
scores of scoring records, on a scripted engine and on the tiny model."""

from __future__ import annotations

import json

import pytest
from helpers import ScriptedEngine, eft_records, read_jsonl, shown_a, write_jsonl

from psr.core.errors import InputError
from psr.core.records import IOConfig
from psr.engines.base import EngineConfig
from psr.stages import eval as ev


def run_judge(tmp_path, respond, n=6, out="judge.jsonl"):
    path = write_jsonl(tmp_path / "eft_test.jsonl", eft_records(n))
    io = IOConfig(inputs=[path], output=str(tmp_path / out))
    return ev.run(io, ev.EvalConfig(task="judge"), ScriptedEngine(respond))


def test_judge_perfect_judge(tmp_path):
    s = run_judge(tmp_path, lambda c: "A is right. [[A]]" if "good" in shown_a(c) else "B wins [[B]]")
    assert s["n"] == 6 and s["judgments"] == 12
    for k in (
        "accuracy",
        "accuracy_stored_order",
        "accuracy_both_orders",
        "accuracy_better_as_A",
        "accuracy_better_as_B",
        "agreement",
    ):
        assert s[k] == 100.0, k
    assert s["no_verdict_rate"] == 0.0
    preds = read_jsonl(tmp_path / "judge.jsonl")
    assert [p["id"] for p in preds] == [f"e{i}" for i in range(6)]
    for p in preds:
        assert p["verdict"] == p["label"] and p["pick_swapped"] == p["label"] and p["agree"] is True
        assert p["verdict_swapped"] != p["label"]  # the swapped order shows the letters the other way round
    (tmp_path / "M1.json").write_text(json.dumps(s))
    (tmp_path / "M2.json").write_text(json.dumps({**s, "name": None, "accuracy_stored_order": 90.0}))
    md = ev.compare([str(tmp_path / "M1.json"), str(tmp_path / "M2.json")])["markdown"]
    assert "| M1 | 100.0 |" in md and "| M2 | 90.0 (-10.0) |" in md  # Table 3: judge accuracy by iteration


def test_judge_position_bias_and_missing_verdicts(tmp_path):
    # Always "[[A]]" except that records e4, e5 get no verdict in the swapped order.
    def respond(c):
        return "I cannot decide." if shown_a(c).endswith(("bad step 4", "good step 5")) else "[[A]]"

    s = run_judge(tmp_path, respond)
    preds = {p["id"]: p for p in read_jsonl(tmp_path / "judge.jsonl")}
    # e4: label A, swapped shows "bad step 4" as A -> no verdict; e5: label B, swapped shows "good step 5" as A.
    assert preds["e4"]["verdict_swapped"] is None and preds["e5"]["verdict_swapped"] is None
    assert s["no_verdict_rate"] == round(100 * 2 / 12, 2)
    # Always-A is right exactly when the better step is shown as A (but e5's swapped order has no verdict).
    assert s["accuracy_better_as_A"] == round(100 * 5 / 6, 2) and s["accuracy_better_as_B"] == 0.0
    assert s["accuracy_stored_order"] == 50.0  # labels alternate A, B
    assert s["accuracy"] == round(100 * 5 / 12, 2)  # the 6 stored-order A-shown ones minus e5's swapped
    assert s["agreement"] == 0.0 and s["accuracy_both_orders"] == 0.0


def scoring_records():
    """Three pairs (chosen scored 3, rejected 1 by the reference judge); responses name their pair and role."""
    return [
        {
            "id": f"p{i}/{role}",
            "pair_id": f"p{i}",
            "question": f"Q{i}",
            "response": f"Step 1: {role} {i}",
            "judgment": f"ref Score: {score}",
            "score": score,
            "role": role,
            "format": "scoring",
        }
        for i in range(3)
        for role, score in (("chosen", 3), ("rejected", 1))
    ]


def test_judge_scoring_records(tmp_path):
    # p0: both scores right; p1: right order, chosen off by one; p2: a tie, and the rejected one has no score.
    said = {
        "chosen 0": "Score: 3",
        "rejected 0": "Score: 1",
        "chosen 1": "Score: 4",
        "rejected 1": "Score: 1",
        "chosen 2": "Score: 2",
        "rejected 2": "I cannot score this.",
    }
    engine = ScriptedEngine(lambda c: said[c.user.split("<response>Step 1: ")[1].split("</response>")[0]])
    path = write_jsonl(tmp_path / "eft_scoring_test.jsonl", scoring_records())
    io = IOConfig(inputs=[path], output=str(tmp_path / "judge.jsonl"))
    s = ev.run(io, ev.EvalConfig(task="judge", summary=str(tmp_path / "S1.json")), engine=engine)
    assert engine.calls == [6]  # one scoring prompt a record, no swapped order
    assert s["format"] == "scoring" and s["n"] == 6 and s["pairs"] == 3
    assert s["accuracy"] == 50.0  # p0 both, p1 rejected; p2 neither
    assert s["no_score_rate"] == round(100 / 6, 2) and s["within_one"] == round(500 / 6, 2)
    assert s["pair_order_accuracy"] == round(200 / 3, 2) and s["pair_tie_rate"] == 0.0
    assert s["mean_abs_error"] == round((0 + 0 + 1 + 0 + 1) / 5, 3)
    preds = {p["id"]: p for p in read_jsonl(tmp_path / "judge.jsonl")}
    assert preds["p1/chosen"]["score"] == 4 and preds["p1/chosen"]["label_score"] == 3
    assert preds["p2/rejected"]["score"] is None and preds["p2/rejected"]["correct"] is False
    # The same summary again from the predictions alone, and a comparison of scorers by iteration.
    again = ev.summarize_file([str(tmp_path / "judge.jsonl")], ev.EvalConfig(task="judge"))
    assert {k: again[k] for k in ("accuracy", "pair_order_accuracy")} == {
        k: s[k] for k in ("accuracy", "pair_order_accuracy")
    }
    assert "| pair_order_accuracy | 66.7 |" in (tmp_path / "S1.md").read_text()
    (tmp_path / "S2.json").write_text(json.dumps({**s, "name": "S2", "accuracy": 60.0}))
    md = ev.compare([str(tmp_path / "S1.json"), str(tmp_path / "S2.json")])["markdown"]
    assert "| model | accuracy | within_one | pair_order_accuracy |" in md and "| S2 | 60.0 (+10.0) |" in md


def test_judge_refuses_pairwise_and_scoring_records_in_one_run(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", eft_records(2) + scoring_records())
    io = IOConfig(inputs=[path], output=str(tmp_path / "judge.jsonl"))
    with pytest.raises(InputError, match="not both"):
        ev.run(io, ev.EvalConfig(task="judge"), ScriptedEngine(str))
    bad = write_jsonl(tmp_path / "bad.jsonl", [{**scoring_records()[0], "score": 9}])
    with pytest.raises(InputError) as e:
        ev.run(
            IOConfig(inputs=[bad], output=str(tmp_path / "j.jsonl")), ev.EvalConfig(task="judge"), ScriptedEngine(str)
        )
    assert (e.value.path, e.value.line) == (bad, 1) and "must be 0 to 5" in e.value.message


def test_a_judge_prompt_longer_than_the_model_is_counted_not_a_crash(tmp_path, tiny_model_dir, capfd):
    # Yuan et al.'s prompt takes most of a small model's positions: a long response must not end the run.
    from psr.engines.hf import HFEngine

    recs = scoring_records()[:2]
    recs[1] = {**recs[1], "response": "Step 1: " + "x " * 5000}
    path = write_jsonl(tmp_path / "eft_scoring_test.jsonl", recs)
    io = IOConfig(inputs=[path], output=str(tmp_path / "judge.jsonl"))
    engine = HFEngine(EngineConfig(model=tiny_model_dir, seed=0))
    s = ev.run(io, ev.EvalConfig(task="judge", max_tokens=4), engine)
    preds = {p["id"]: p for p in read_jsonl(tmp_path / "judge.jsonl")}
    assert s["n"] == 2 and set(preds) == {"p0/chosen", "p0/rejected"}
    assert preds["p0/rejected"]["output"] == "" and preds["p0/rejected"]["score"] is None
    assert "1 judge prompt(s) longer than the judge's context" in " ".join(capfd.readouterr().err.split())
