"""The demo pipeline at CI size: every stage's output exists, is non-empty and well-formed."""

import json
import os
import subprocess
import sys

import pytest

from psr.core.records import read_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "psr.world.demo", "--size", "ci", "--out", str(out), "--srlm", "--oracle-judge"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return str(out), proc


def test_every_stage_wrote_well_formed_output(run):
    out, _ = run
    p = lambda *a: os.path.join(out, *a)  # noqa: E731
    assert read_records(p("world", "train.jsonl"), "problem")
    assert read_records(p("world", "prm.jsonl"), "prm", unique_ids=False)
    ift = read_records(p("ift.jsonl"), "ift")
    assert all(r["steps"] for r in ift)
    assert json.load(open(p("prm", "config.json")))["psr_prm"]
    pairs = read_records(p("pairs.jsonl"), "pair")
    assert all(r["chosen_score"] >= r["rejected_score"] for r in pairs)
    eft = read_records(p("eft.jsonl"), "eft") + read_records(p("eft_test.jsonl"), "eft")
    train_q = {r["question"] for r in read_records(p("eft.jsonl"), "eft")}
    assert not train_q & {r["question"] for r in read_records(p("eft_test.jsonl"), "eft")}
    assert all(r["judgment"].rstrip().endswith(f"[[{r['label']}]]") for r in eft)
    # The SRLM baseline's judge data: the same pairs, scored 0-5, two records a kept pair, held out by question.
    scoring_train = read_records(p("eft_scoring.jsonl"), "eft_scoring")
    scoring_test = read_records(p("eft_scoring_test.jsonl"), "eft_scoring")
    assert scoring_train and scoring_test
    assert not {r["question"] for r in scoring_train} & {r["question"] for r in scoring_test}
    by_pair: dict[str, dict] = {}
    for r in scoring_train + scoring_test:
        assert r["judgment"].rstrip().endswith(f"Score: {r['score']}")
        by_pair.setdefault(r["pair_id"], {})[r["role"]] = r["score"]
    assert all(s["chosen"] > s["rejected"] for s in by_pair.values())
    assert set(by_pair) <= {r["id"] for r in pairs}
    made = 0
    # search meets questions SFT did not train on: world/search.jsonl, a new slice each round
    ift_q = {r["question"] for r in ift}
    searched = [{r["question"] for r in read_records(p(f"search_problems_m{i}.jsonl"), "problem")} for i in (1, 2)]
    pool = {r["question"] for r in read_records(p("world", "search.jsonl"), "problem")}
    assert all(q and q <= pool and not q & ift_q for q in searched) and not searched[0] & searched[1]
    for i in (1, 2):
        trajectories = read_records(p(f"trajectories_m{i}.jsonl"), None)
        assert len(trajectories) == sum(1 for _ in open(p(f"search_problems_m{i}.jsonl")))
        n = sum(len(t["pairs"]) for t in trajectories)
        assert n == sum(1 for _ in open(p(f"ppd_m{i}.jsonl")))
        if n:
            assert read_records(p(f"ppd_m{i}.jsonl"), "ppd")
        else:  # a round whose judgments all tied (a chance-level judge at CI size) passes its model on
            assert (
                open(p(f"m{i}", "model.safetensors"), "rb").read()
                == open(p(f"m{i + 1}", "model.safetensors"), "rb").read()
            )
        made += n
    # Pairs are made somewhere: by M1's own judgments or, failing those, by the oracle-judged control.
    assert made or read_records(p("ppd_m1_oracle.jsonl"), "ppd")
    for m in ("m1", "m2", "m3", "s1", "s2", "s3", "o2", "o3"):
        assert os.path.exists(p(m, "config.json")) and os.path.exists(p(m, "psr_config.json"))
    # S1 is the SRLM baseline's own M1: M0 + the same IFT + the scoring EFT, not a copy of M1.
    s1 = json.load(open(p("s1", "psr_config.json")))
    assert s1["ift_records"] == len(ift) and s1["eft_records"] == len(scoring_train)
    for branch, srcs in (("srlm", ("s1", "s2")), ("oracle", ("m1", "o2"))):
        for src in srcs:
            assert len(read_records(p(f"trajectories_{src}_{branch}.jsonl"), None)) == sum(
                1 for _ in open(p(f"search_problems_m{src[1]}.jsonl"))
            )
    # S1 scores whole solutions with Yuan et al.'s prompt. At CI size it trains on a few dozen scoring records and
    # rarely writes a parsable "Score: n" yet (a measured run: 1 of 20 held-out judgments, 3 of 36 in its search,
    # none in a pair), so the branch may make no pairs; the search counts every judgment without a score, and
    # a round without pairs passes the model on unchanged.
    assert len(read_records(p("evals", "judge_s1.jsonl"), None)) == len(scoring_test)
    for src, dst in (("s1", "s2"), ("s2", "s3")):
        traj = read_records(p(f"trajectories_{src}_srlm.jsonl"), None)
        for t in traj:
            assert t["judge_calls"] == sum(1 for x in t["samples"] if x)
            assert t["judge_failures"] == sum(1 for x in t["sample_scores"] if x is None)
        made = sum(len(t["pairs"]) for t in traj)
        assert made == sum(1 for _ in open(p(f"ppd_{src}_srlm.jsonl")))
        if made == 0:
            assert open(p(src, "model.safetensors"), "rb").read() == open(p(dst, "model.safetensors"), "rb").read()
    # the control's judge is the oracle: it always gives a verdict
    assert all(t["judge_failures"] == 0 for t in read_records(p("trajectories_m1_oracle.jsonl"), None))
    with open(p("accuracy.png"), "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_summary_covers_every_model(run):
    out, proc = run
    summary = json.load(open(os.path.join(out, "demo_summary.json")))
    assert [r["model"] for r in summary["models"]] == ["M0", "M1", "M2", "M3", "S1", "S2", "S3", "O2", "O3"]
    for r in summary["models"]:
        assert set(r["benchmarks"]) == {"world", "gsm8k"}
        assert all(0 <= v <= 100 for v in r["benchmarks"].values())
    assert all(r["judge_accuracy"] is not None for r in summary["models"][1:])
    # S rows are scorers, measured on the held-out scoring EFT split; the others judge step pairs.
    assert [r["judge_format"] for r in summary["models"][1:]] == ["pairwise"] * 3 + ["scoring"] * 3 + ["pairwise"] * 2
    assert summary["eft_scoring_records"] > 0 and summary["sft"]["S1"]["too_long"] is not None
    assert summary["eft_pairs"] > 0 and summary["ift_records"] > 0
    gate = summary["judge_gate"]  # M1's judge accuracy, measured before the self-rewarding rounds
    assert gate["model"] == "M1" and gate["accuracy"] == summary["models"][1]["judge_accuracy"]
    assert gate["ci95"][0] <= gate["accuracy"] <= gate["ci95"][1]
    assert gate["passed"] == (gate["ci95"][0] > 50.0)
    assert "judge gate: M1" in proc.stderr
    assert "psr demo" in proc.stderr


def test_rerun_resumes_without_redoing_work(run):
    out, _ = run
    before = {f: os.path.getsize(os.path.join(out, f)) for f in ("ift.jsonl", "pairs.jsonl", "ppd_m1.jsonl")}
    proc = subprocess.run(
        [sys.executable, "-m", "psr.world.demo", "--size", "ci", "--out", out, "--srlm", "--oracle-judge"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "skip" in proc.stderr
    assert before == {f: os.path.getsize(os.path.join(out, f)) for f in before}


def test_seed_report_reads_the_run(run):
    # bench/demo_seeds.py pairs every model's answers per problem; with one seed its M3 - M1 gain must be
    # exactly the difference of the two accuracies in the demo's own summary.
    out, _ = run
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "demo_seeds.py"), out], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.load(open(os.path.join(out, "demo_summary.json")))
    acc = {m["model"]: m["benchmarks"]["world"] for m in summary["models"]}
    for a, b in (("M3", "M1"), ("S3", "S1"), ("S1", "M1"), ("M3", "S3"), ("O3", "M1")):
        row = next(line for line in proc.stdout.splitlines() if line.startswith(f"| {a} - {b}"))
        assert f"| {acc[a] - acc[b]:+.1f} |" in row
    # issue 18's gates are printed from the same run: each of the three, passed or not, with its numbers
    gates = proc.stdout[proc.stdout.index("## Gates (issue 18)") :]
    for gate in ("gate 1 (training half", "gate 2 (judge half", "gate 3 (method"):
        assert gate in gates
    assert "O3 - M1 >= +5" in gates and f"pooled {acc['O3'] - acc['M1']:+.1f}" in gates
    assert "nan" not in gates  # one seed has no interval over seeds, and the report says so


def test_gate_stop_ends_the_run_when_the_judge_is_at_chance(run):
    # The gate is read from the run's own measurement: --gate stop must exit 1 exactly when M1 did not pass.
    out, _ = run
    gate = json.load(open(os.path.join(out, "judge_gate.json")))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "psr.world.demo",
            "--size",
            "ci",
            "--out",
            out,
            "--srlm",
            "--oracle-judge",
            "--gate",
            "stop",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == (0 if gate["passed"] else 1), proc.stderr[-3000:]
    assert "judge gate: M1" in proc.stderr


def test_iterate_adds_a_round_on_top_of_the_run(run, tmp_path):
    # `just iterate 1`: one more search -> step-dpo round from the last model; what exists is not redone.
    # On a copy, so the other tests keep reading the original run.
    import shutil

    out = str(tmp_path / "run")
    shutil.copytree(run[0], out)
    kept = {
        f: open(os.path.join(out, f), "rb").read() for f in ("ppd_m1.jsonl", "ppd_m2.jsonl", "m3/model.safetensors")
    }
    proc = subprocess.run(
        [sys.executable, "-m", "psr.world.demo", "--size", "ci", "--out", out, "--iterate", "1"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert kept == {f: open(os.path.join(out, f), "rb").read() for f in kept}
    searched = [
        {r["question"] for r in read_records(os.path.join(out, f"search_problems_m{i}.jsonl"), "problem")}
        for i in (1, 2, 3)
    ]
    assert searched[2] and not searched[2] & (searched[0] | searched[1])  # round 3 meets new questions
    traj = read_records(os.path.join(out, "trajectories_m3.jsonl"), None)
    assert len(traj) == len(searched[2])
    assert sum(len(t["pairs"]) for t in traj) == sum(1 for _ in open(os.path.join(out, "ppd_m3.jsonl")))
    assert os.path.exists(os.path.join(out, "m4", "config.json"))
    summary = json.load(open(os.path.join(out, "demo_summary.json")))
    assert [r["model"] for r in summary["models"]] == ["M0", "M1", "M2", "M3", "M4"]
    assert all(set(r["benchmarks"]) == {"world", "gsm8k"} for r in summary["models"])
