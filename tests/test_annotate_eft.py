"""psr annotate-eft against the oracle engine: swap-consistency filtering, position balance, the
question-disjoint test split and resume, --format scoring, and bad usage."""

from __future__ import annotations

import os
import random
import subprocess

import pytest
from helpers import PSR, read_jsonl, write_jsonl

from psr.core.errors import InputError
from psr.core.prompts import judge_prompt, parse_score, parse_verdict, srlm_score_prompt
from psr.core.records import IOConfig, read_records
from psr.core.steps import format_steps
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
                pairs.append(
                    {
                        "id": f"{p['id']}/{k}",
                        "question": p["question"],
                        "previous_steps": p["steps"][:k],
                        "chosen": step,
                        "rejected": bad,
                        "chosen_score": 0.9,
                        "rejected_score": 0.1,
                    }
                )
    return pairs


class CountingOracle(OracleEngine):
    def __init__(self):
        super().__init__()
        self.calls = []

    def generate(self, chats, sampling):
        self.calls.append(len(chats))
        return super().generate(chats, sampling)


# -- the filter, unit by unit -------------------------------------------------------------------


@pytest.mark.parametrize(
    "va,vb,kind",
    [
        ("A", "B", "keep"),
        ("B", "A", "disagrees_with_prm"),
        ("A", "A", "inconsistent"),
        ("B", "B", "inconsistent"),
        (None, "B", "no_verdict"),
        ("A", None, "no_verdict"),
    ],
)
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
        assert r["judgment"] == OracleEngine().respond(
            judge_prompt(r["question"], r["previous_steps"], r["step_a"], r["step_b"])
        )
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
    swapped_fields = [
        {
            **p,
            "id": p["id"] + "-sw",
            "chosen": p["rejected"],
            "rejected": p["chosen"],
            "chosen_score": 0.1,
            "rejected_score": 0.9,
        }
        for p in pairs[10:14]
    ]
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


def test_both_orders_writes_each_kept_pair_twice_and_holds_out_one_order(tmp_path):
    pairs = world_pairs(40)
    src = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    out, test = str(tmp_path / "eft.jsonl"), str(tmp_path / "eft_test.jsonl")
    cfg = ann.AnnotateConfig(both_orders=True, test_size=20, test_output=test, chunk_size=16)
    # A partial run (as if killed), then the rest: groups of two records resume by pair_id.
    ann.run(IOConfig([src], out, limit=25), cfg, engine=OracleEngine())
    counts = ann.run(IOConfig([src], out), cfg, engine=OracleEngine())
    train, held = read_records(out, "eft"), read_records(test, "eft")
    one_order = str(tmp_path / "one.jsonl")
    ann.run(IOConfig([src], one_order), ann.AnnotateConfig(), engine=OracleEngine())
    primary = {r["id"]: r for r in read_records(one_order, "eft")}
    by_pair: dict[str, list[dict]] = {}
    for r in train:
        by_pair.setdefault(r["pair_id"], []).append(r)
    assert counts["kept"] == len(pairs) - 25 and len(by_pair) + len(held) // 2 == len(pairs)
    for pid, (first, other) in by_pair.items():
        # The first is the one-order record (same order, same judgment); the other swaps A/B and the verdict.
        assert {k: v for k, v in first.items() if k != "pair_id"} == primary[pid]
        assert other["id"] == pid + "/swapped" and other["label"] != first["label"]
        assert (other["step_a"], other["step_b"]) == (first["step_b"], first["step_a"])
        assert parse_verdict(other["judgment"]) == other["label"]
        assert other["judgment"] == OracleEngine().respond(
            judge_prompt(other["question"], other["previous_steps"], other["step_a"], other["step_b"])
        )
    # The held-out split takes a question's records together (both orders), no question on both sides; the
    # judge eval counts each held-out pair once.
    assert sorted(r["id"] for r in held) == sorted(
        x for r in held if r["id"] == r["pair_id"] for x in (r["id"], r["id"] + "/swapped")
    )
    assert not {r["question"] for r in train} & {r["question"] for r in held}
    from psr.stages import eval as ev

    io = IOConfig([test], str(tmp_path / "judge.jsonl"))
    summary = ev.run(io, ev.EvalConfig(task="judge"), OracleEngine())
    assert summary["n"] == len(held) // 2 and summary["judgments"] == len(held) and summary["accuracy"] == 100.0
    # Resuming an output written in one order would mix the two layouts: refused, naming the file.
    with pytest.raises(InputError, match="without --both-orders") as e:
        ann.run(IOConfig([src], one_order), ann.AnnotateConfig(both_orders=True), engine=OracleEngine())
    assert one_order in str(e.value)
    with pytest.raises(InputError, match="--both-orders is for --format pairwise"):
        ann.AnnotateConfig(both_orders=True, format="scoring")


def test_bad_usage_and_input_exit_2(tmp_path):
    src = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {
                "id": "1",
                "question": "q",
                "previous_steps": [],
                "chosen": "a",
                "rejected": "b",
                "chosen_score": "high",
                "rejected_score": 0.1,
            }
        ],
    )
    res = subprocess.run([*PSR, "annotate-eft", "-i", src, "--engine", "oracle"], capture_output=True, text=True)
    assert res.returncode == 2 and f"{src}:1: field 'chosen_score' must be a number" in res.stderr
    with pytest.raises(InputError, match="--test-size needs --test-output"):
        ann.run(IOConfig([src], str(tmp_path / "o.jsonl")), ann.AnnotateConfig(test_size=5))
    res = subprocess.run(
        [*PSR, "annotate-eft", "--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    text = " ".join(res.stdout.split())
    for words in (
        "Reads candidate pair records",
        "Writes EFT records",
        "default engine openai",
        "paper: 500",
        "default: 128",
    ):
        assert words in text.replace("[", "").replace("]", ""), words


# -- --format scoring: the SRLM baseline's judge data ----------------------------------------------


def test_scoring_format_with_the_oracle_end_to_end(tmp_path):
    pairs = world_pairs(60)
    flipped = [{**p, "id": p["id"] + "-flip", "chosen": p["rejected"], "rejected": p["chosen"]} for p in pairs[:5]]
    tie = [{**p, "id": p["id"] + "-tie", "chosen_score": 0.5, "rejected_score": 0.5} for p in pairs[:3]]
    src = write_jsonl(tmp_path / "pairs.jsonl", pairs + flipped + tie)
    out, test = str(tmp_path / "eft_scoring.jsonl"), str(tmp_path / "eft_scoring_test.jsonl")
    cfg = ann.AnnotateConfig(format="scoring", test_size=30, test_output=test, chunk_size=16)
    counts = ann.run(IOConfig([src], out), cfg, engine=CountingOracle())
    assert set(ann.SCORING_DROPS) <= set(counts) and "no_verdict" not in counts
    assert counts["kept"] + sum(counts[d] for d in ann.SCORING_DROPS) == len(pairs) + 8
    assert counts["prm_tie"] == 3 and counts["no_score"] == 0
    # The reference step always scores at least as high as a wrong one, so a flipped pair is dropped whole.
    assert counts["disagrees_with_prm"] + counts["score_tie"] >= 5
    # A later step of a long problem can tie (3 of 4 events right and 2 of 4 both score 3).
    assert counts["score_tie"] > 0 and counts["kept"] > len(pairs) / 2
    train, held = read_records(out, "eft_scoring"), read_records(test, "eft_scoring")
    assert len(train) + len(held) == 2 * counts["kept"] and counts["train"] + counts["test"] == 2 * counts["kept"]
    assert sum(counts["scores"].values()) == 2 * counts["kept"]
    by_id = {p["id"]: p for p in pairs + flipped}
    recs = train + held
    for r in recs:
        p = by_id[r["pair_id"]]
        assert r["id"] == f"{p['id']}/{r['role']}" and r["format"] == "scoring"
        # The response is the partial solution rendered as the srlm search renders a solution.
        assert r["response"] == format_steps([*p["previous_steps"], p[r["role"]]])
        assert r["judgment"] == OracleEngine().respond(srlm_score_prompt(r["question"], r["response"]))
        assert r["score"] == parse_score(r["judgment"])
    pairs_kept: dict[str, dict] = {}
    for r in recs:
        pairs_kept.setdefault(r["pair_id"], {})[r["role"]] = r["score"]
    assert all(set(s) == {"chosen", "rejected"} and s["chosen"] > s["rejected"] for s in pairs_kept.values())
    # Held out by whole questions (so a pair is never split), at least 30 records.
    assert not {r["question"] for r in train} & {r["question"] for r in held} and len(held) >= 30
    assert {r["pair_id"] for r in train}.isdisjoint({r["pair_id"] for r in held})
    # Resume: nothing is judged again and nothing changes.
    before = (open(out).read(), open(test).read())
    engine = CountingOracle()
    again = ann.run(IOConfig([src], out), cfg, engine=engine)
    assert again["kept"] == 0 and engine.calls == [] and (open(out).read(), open(test).read()) == before


def test_scoring_responses_match_what_the_srlm_search_scores():
    # The SRLM search scores the policy's whole text; the oracle policy writes "Step n:" lines, as a trained
    # model does. Training responses must look exactly like that (here: a whole solution as one pair).
    from psr.search import SearchConfig, iter_srlm

    probs = generate_problems(5, seed=2)
    trajs = [t for batch in iter_srlm(OracleEngine(), probs, SearchConfig(mode="srlm", width=2)) for t in batch]
    for p, t in zip(probs, trajs, strict=True):
        pair = {"previous_steps": p["steps"][:-1], "chosen": p["steps"][-1], "rejected": "x"}
        assert ann.scoring_responses(pair)[0] == t["samples"][0]
        assert t["sample_scores"] == [5, 5]  # the oracle scores its own right solutions 5


def test_scoring_format_cli_counts_drops_and_refuses_a_bad_format(tmp_path):
    pairs = world_pairs(10)
    src = write_jsonl(
        tmp_path / "pairs.jsonl", pairs + [{**pairs[0], "id": "tie", "chosen_score": 0.5, "rejected_score": 0.5}]
    )
    out = tmp_path / "eft_scoring.jsonl"
    res = subprocess.run(
        [*PSR, "annotate-eft", "--format", "scoring", "--engine", "oracle", "-i", src, "-o", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "PSR_QUIET": "0"},
    )
    assert res.returncode == 0, res.stderr
    err = " ".join(res.stderr.split())
    assert "annotate-eft (scoring): kept" in err and f"of {len(pairs) + 1} pairs" in err
    for words in ("prm tie: 1", "no score: 0", "score tie:", "disagrees with prm:"):
        assert words in err, words
    assert read_records(str(out), "eft_scoring")
    res = subprocess.run(
        [*PSR, "annotate-eft", "--format", "votes", "--engine", "oracle", "-i", src, "-o", str(tmp_path / "x.jsonl")],
        capture_output=True,
        text=True,
    )
    assert (
        res.returncode == 2
        and "Invalid value for '--format'" in res.stderr
        and "is not one of 'pairwise', 'scoring'" in res.stderr
    )


def test_the_oracle_engines_model_names_its_judge_style(tmp_path):
    from psr.world.oracle import judge

    src = write_jsonl(tmp_path / "pairs.jsonl", world_pairs(6))
    outs = {}
    for style in ("lookup-first", None):
        out = tmp_path / f"eft-{style}.jsonl"
        extra = ["--model", style] if style else []
        res = subprocess.run(
            [*PSR, "annotate-eft", "-i", src, "-o", str(out), "--engine", "oracle", *extra],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
        outs[style] = read_jsonl(out)
    problems = {p["question"]: p for p in generate_problems(6, seed=0)}
    assert len(outs[None]) >= 6
    for r, plain in zip(outs["lookup-first"], outs[None], strict=True):
        meta = problems[r["question"]]["world"]
        assert r["judgment"] == judge(meta, r["previous_steps"], r["step_a"], r["step_b"], style="lookup-first")
        assert plain["judgment"] == judge(meta, r["previous_steps"], r["step_a"], r["step_b"])  # verdict-first
        assert r["label"] == plain["label"] and r["judgment"] != plain["judgment"]
    # A model path (search's --judge-engine oracle passes the policy's) keeps the default style.
    assert OracleEngine(EngineConfig(engine="oracle", model="runs/m1")).style == "verdict-first"
