"""psr annotate-eft: swap-consistency filtering, position balance, the question-disjoint test split and
resume, against the oracle engine and against a local OpenAI-compatible server (the real openai package
through psr's openai engine) that answers crafted judge texts."""

from __future__ import annotations

import os
import random
import subprocess

import pytest
from helpers import PSR, read_jsonl, write_jsonl
from servers import ChatServer

from psr.core.errors import InputError
from psr.core.prompts import judge_prompt, parse_verdict
from psr.core.records import IOConfig, read_records
from psr.engines import EngineConfig
from psr.stages import annotate_eft as ann
from psr.world.generator import generate_problems
from psr.world.oracle import OracleEngine, corrupt_step, label_step


def world_pairs(n_problems, seed=0):
    """Mine-pairs-like records from world problems: the reference step vs a corrupted one, at every layer."""
    rng = random.Random(seed)
    pairs = []
    for p in generate_problems(n_problems, seed=seed):
        for k, step in enumerate(p["steps"]):
            bad = corrupt_step(p, k, rng.choice(["wrong_sum", "wrong_quantity", "wrong_operand"]), rng)
            if bad is not None:
                pairs.append({"id": f"{p['id']}/{k}", "question": p["question"], "previous_steps": p["steps"][:k],
                              "chosen": step, "rejected": bad, "chosen_score": 0.9, "rejected_score": 0.1})
    return pairs


class CountingOracle(OracleEngine):
    def __init__(self):
        super().__init__()
        self.calls = []

    def generate(self, chats, sampling):
        self.calls.append(len(chats))
        return super().generate(chats, sampling)


class VerdictServer(ChatServer):
    """Answers a judge prompt with ``verdicts[prompt]`` (what the judge writes), else an echo-free text."""

    def __init__(self, verdicts: dict[str, str], **kw):
        super().__init__(**kw)
        self.verdicts = verdicts

    def _completion(self, body, user):
        text = self.verdicts.get(user, "I cannot tell.")
        return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


# -- the filter, unit by unit -------------------------------------------------------------------


@pytest.mark.parametrize("va,vb,kind", [
    ("A", "B", "keep"), ("B", "A", "disagrees_with_prm"), ("A", "A", "inconsistent"), ("B", "B", "inconsistent"),
    (None, "B", "no_verdict"), ("A", None, "no_verdict"),
])
def test_classify(va, vb, kind):
    assert ann.classify(va, vb) == kind


# -- against the oracle ---------------------------------------------------------------------------


def test_oracle_keeps_right_pairs_balanced_and_batched(tmp_path):
    pairs = world_pairs(120)
    src = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    out = str(tmp_path / "eft.jsonl")
    engine = CountingOracle()
    counts = ann.run(IOConfig([src], out), ann.AnnotateConfig(chunk_size=50), engine=engine)
    assert counts["kept"] == len(pairs) and all(counts[d] == 0 for d in ann.DROPS)
    assert engine.calls == [100] * (len(pairs) // 50) + [2 * (len(pairs) % 50)]  # one call per chunk
    recs = read_records(out, "eft")
    by_id = {p["id"]: p for p in pairs}
    problems = {p["question"]: p for p in generate_problems(120, seed=0)}
    for r in recs:
        p = by_id[r["id"]]
        better, worse = (r["step_a"], r["step_b"]) if r["label"] == "A" else (r["step_b"], r["step_a"])
        assert (better, worse) == (p["chosen"], p["rejected"])
        assert parse_verdict(r["judgment"]) == r["label"]
        assert r["judgment"] == OracleEngine().respond(judge_prompt(r["question"], r["previous_steps"],
                                                                     r["step_a"], r["step_b"]))
        assert label_step(problems[r["question"]], r["previous_steps"], better)
    share_a = counts["label_a"] / len(recs)
    assert 0.4 < share_a < 0.6 and counts["label_a"] + counts["label_b"] == len(recs)
    # The position is a function of (seed, id): the same again with the same seed, different with another.
    again = str(tmp_path / "again.jsonl")
    ann.run(IOConfig([src], again), ann.AnnotateConfig(), engine=OracleEngine())
    assert read_records(again, "eft") == recs
    other = str(tmp_path / "other.jsonl")
    ann.run(IOConfig([src], other), ann.AnnotateConfig(seed=1), engine=OracleEngine())
    assert [r["label"] for r in read_records(other, "eft")] != [r["label"] for r in recs]


def test_oracle_drops_pairs_the_prm_ranked_wrong(tmp_path):
    pairs = world_pairs(20)
    flipped = [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in pairs[:10]]
    tie = [{**p, "id": p["id"] + "-tie", "chosen_score": 0.5, "rejected_score": 0.5} for p in pairs[:3]]
    # A pair whose fields are the other way round: the higher score names the better step.
    swapped_fields = [{**p, "id": p["id"] + "-sw", "chosen": p["rejected"], "rejected": p["chosen"],
                       "chosen_score": 0.1, "rejected_score": 0.9} for p in pairs[10:14]]
    src = write_jsonl(tmp_path / "pairs.jsonl", flipped + pairs[10:] + tie + swapped_fields)
    counts = ann.run(IOConfig([src], str(tmp_path / "eft.jsonl")), ann.AnnotateConfig(), engine=OracleEngine())
    assert counts["disagrees_with_prm"] == 10 and counts["prm_tie"] == 3
    assert counts["kept"] == len(pairs) - 10 + 4
    kept = {r["id"]: r for r in read_jsonl(tmp_path / "eft.jsonl")}
    for p in swapped_fields:
        r = kept[p["id"]]
        assert (r["step_a"] if r["label"] == "A" else r["step_b"]) == p["rejected"]  # the 0.9 one


def test_split_holds_out_whole_questions_and_is_stable(tmp_path):
    pairs = world_pairs(60)
    src = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    out, test = str(tmp_path / "eft.jsonl"), str(tmp_path / "eft_test.jsonl")
    cfg = ann.AnnotateConfig(test_size=40, test_output=test, chunk_size=16)
    # First a partial run (as if killed), then the rest: the split is redone over everything.
    c1 = ann.run(IOConfig([src], out, limit=50), cfg, engine=OracleEngine())
    assert c1["train"] + c1["test"] == 50
    counts = ann.run(IOConfig([src], out), cfg, engine=OracleEngine())
    train, held = read_records(out, "eft"), read_records(test, "eft")
    assert counts["kept"] == len(pairs) - 50 and len(train) + len(held) == len(pairs)
    assert {r["id"] for r in train} | {r["id"] for r in held} == {p["id"] for p in pairs}
    assert not {r["question"] for r in train} & {r["question"] for r in held}
    # At least N held out, and no more questions than needed to reach N.
    assert len(held) >= 40
    assert len(held) - max(sum(r["question"] == q for r in held) for q in {r["question"] for r in held}) < 40
    # Rerunning changes nothing.
    before = (open(out).read(), open(test).read())
    again = ann.run(IOConfig([src], out), cfg, engine=OracleEngine())
    assert again["kept"] == 0 and (open(out).read(), open(test).read()) == before


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
            pairs.append({"id": f"{name}-{i}", "question": qi, "previous_steps": [], "chosen": good,
                          "rejected": bad, "chosen_score": 0.8, "rejected_score": 0.3})
            verdicts[judge_prompt(qi, [], good, bad)] = ja
            verdicts[judge_prompt(qi, [], bad, good)] = jb
    pairs.append({"id": "tie", "question": q, "previous_steps": [], "chosen": good, "rejected": bad,
                  "chosen_score": 0.5, "rejected_score": 0.5})
    return pairs, verdicts


def test_openai_engine_swap_consistency_filter(tmp_path):
    pairs, verdicts = crafted_case()
    src = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    out = str(tmp_path / "eft.jsonl")
    with VerdictServer(verdicts, delay=0.05, models=("judge",)) as server:
        ecfg = EngineConfig(engine="openai", model="judge", base_url=server.base_url, api_key_env="PSR_TEST_NO_KEY",
                            concurrency=8)
        counts = ann.run(IOConfig([src], out), ann.AnnotateConfig(chunk_size=100), ecfg)
        assert {k: counts[k] for k in ("kept", *ann.DROPS)} == {
            "kept": 3, "inconsistent": 3, "disagrees_with_prm": 3, "no_verdict": 3, "prm_tie": 1}
        assert len(server.bodies) == 24  # two orders per judged pair; the tie is never sent
        assert server.max_in_flight > 1  # one engine call per chunk, so requests run concurrently
        assert {b["model"] for b in server.bodies} == {"judge"} and {b["temperature"] for b in server.bodies} == {0}
        recs = read_records(out, "eft")
        assert sorted(r["id"] for r in recs) == ["keep-0", "keep-1", "keep-2"]
        for r in recs:
            want = "A is right, B is wrong. [[A]]" if r["label"] == "A" else "A is wrong, B is right. [[B]]"
            assert r["judgment"] == want
            assert (r["step_a"], r["step_b"]) == (("8 - 3 = 5.", "8 - 3 = 6.") if r["label"] == "A"
                                                  else ("8 - 3 = 6.", "8 - 3 = 5."))
        # Resume: dropped pairs are remembered too, nothing is sent again.
        n = len(server.bodies)
        assert ann.run(IOConfig([src], out), ann.AnnotateConfig(), ecfg)["kept"] == 0
        assert len(server.bodies) == n


def test_cli_through_a_server_with_split(tmp_path):
    pairs, verdicts = crafted_case()
    src = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    out, test = tmp_path / "eft.jsonl", tmp_path / "eft_test.jsonl"
    with VerdictServer(verdicts, models=("judge",)) as server:
        res = subprocess.run([*PSR, "annotate-eft", "-i", src, "-o", str(out), "--test-size", "1", "--test-output",
                              str(test), "--model", "judge", "--base-url", server.base_url, "--api-key-env",
                              "PSR_TEST_NO_KEY"], capture_output=True, text=True, env={**os.environ, "PSR_QUIET": "0"})
    assert res.returncode == 0, res.stderr
    err = " ".join(res.stderr.split())
    assert "kept 3 of 13 pairs" in err and "inconsistent: 3" in err and "disagrees with prm: 3" in err
    assert "no verdict: 3" in err and "prm tie: 1" in err
    assert len(read_jsonl(out)) == 2 and len(read_jsonl(test)) == 1


def test_bad_usage_and_input_exit_2(tmp_path):
    src = write_jsonl(tmp_path / "pairs.jsonl", [{"id": "1", "question": "q", "previous_steps": [], "chosen": "a",
                                                   "rejected": "b", "chosen_score": "high", "rejected_score": 0.1}])
    res = subprocess.run([*PSR, "annotate-eft", "-i", src, "--engine", "oracle"], capture_output=True, text=True)
    assert res.returncode == 2 and f"{src}:1: field 'chosen_score' must be a number" in res.stderr
    with pytest.raises(InputError, match="--test-size needs --test-output"):
        ann.run(IOConfig([src], str(tmp_path / "o.jsonl")), ann.AnnotateConfig(test_size=5))
    res = subprocess.run([*PSR, "annotate-eft", "--help"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"})
    text = " ".join(res.stdout.split())
    for words in ("Reads candidate pair records", "Writes EFT records", "default engine openai", "paper: 500",
                  "default: 128"):
        assert words in text.replace("[", "").replace("]", ""), words
