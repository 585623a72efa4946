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

from psr.core.errors import InputError, PsrError
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
