"""psr mine-pairs: MCTS on the tiny policy with a tiny PRM — visit counts, pairs, seeding, stats, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import MINE_QUESTIONS as QUESTIONS
from helpers import SMALL_MCTS as SMALL
from helpers import problems_file
from helpers import read_pairs as _pairs
from helpers import same_pairs as _same_pairs

from psr.core.errors import InputError
from psr.core.records import IOConfig
from psr.engines import EngineConfig
from psr.search import MCTSConfig, Miner, Tree
from psr.stages import mine_pairs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_visit_counts_add_up_and_pairs_clear_the_margin(tiny_model_dir, tiny_prm):
    from psr.engines import load_engine
    from psr.engines.prm import PRMScorer

    cfg = MCTSConfig(**SMALL)
    trees = [Tree({"id": f"p{i}", "question": q}, cfg) for i, q in enumerate(QUESTIONS[:3])]
    with load_engine(EngineConfig(engine="hf", model=tiny_model_dir, batch_size=32)) as policy:
        miner = Miner(policy, PRMScorer.load(tiny_prm), cfg)
        while not all(t.done for t in trees):
            miner.step(trees)
    expanded = 0
    for t in trees:
        assert t.root.visits == t.iterations == cfg.num_iterations
        assert sum(node.ended_here for node in t.nodes) == t.iterations
        for node in t.nodes:
            assert node.visits == node.ended_here + sum(ch.visits for ch in node.children)
            if node.expanded and node.children:
                expanded += 1
                assert len(node.children) <= cfg.width
                assert len({ch.steps[-1] for ch in node.children}) == len(node.children)
            for ch in node.children:
                assert ch.steps[:-1] == node.steps and 0.0 <= ch.score <= 1.0
            assert len(node.steps) <= cfg.max_depth
        for pair in t.pairs:
            assert pair["chosen_score"] > pair["rejected_score"] + cfg.margin
            assert pair["problem_id"] == t.problem["id"] and pair["chosen"] != pair["rejected"]
            parent = t.nodes[int(pair["id"].split("/")[1])]
            assert pair["previous_steps"] == parent.steps
            scores = {ch.steps[-1]: ch.score for ch in parent.children}
            assert pair["chosen_score"] == scores[pair["chosen"]] == max(scores.values())
            assert pair["rejected_score"] == scores[pair["rejected"]] == min(scores.values())
    assert expanded > len(trees)  # the search went below the roots
    assert miner.stats.expansions == expanded and sum(len(t.pairs) for t in trees) > 0
    # the PRM scores of the children are the scorer's own P(+) of those steps
    t = trees[0]
    child = t.root.children[0]
    [again] = miner.prm.score([(t.problem["question"], child.steps)])
    assert again[-1] == pytest.approx(child.score, abs=1e-5)


def test_seeded_runs_are_identical_and_write_stats(tiny_model_dir, tiny_prm, tmp_path):
    probs = problems_file(tmp_path / "problems.jsonl", 4)
    outs = []
    for k in range(2):
        out, stats = tmp_path / f"pairs{k}.jsonl", tmp_path / f"stats{k}.json"
        summary = mine_pairs.run(
            IOConfig(inputs=[probs], output=str(out)),
            MCTSConfig(**SMALL, seed=7),
            EngineConfig(engine="hf", model=tiny_model_dir, seed=7),
            prm=tiny_prm,
            stats_path=str(stats),
        )
        outs.append(out.read_bytes())
        on_disk = json.loads(stats.read_text())
        assert on_disk == summary
    assert outs[0] == outs[1]
    recs = [json.loads(x) for x in outs[0].splitlines()]
    assert recs and len({r["id"] for r in recs}) == len(recs)
    assert summary["problems"] == 4 and summary["pairs"] == len(recs)
    assert summary["pairs_per_problem"] == pytest.approx(len(recs) / 4, abs=1e-3)
    assert summary["iterations"] == 4 * SMALL["num_iterations"]
    assert summary["nodes"] > 0 and summary["generation_s"] > 0 and summary["scoring_s"] > 0
    # a rerun with nothing left to do keeps the stats of the run that did the work
    again = mine_pairs.run(
        IOConfig(inputs=[probs], output=str(out)),
        MCTSConfig(**SMALL, seed=7),
        EngineConfig(engine="hf", model=tiny_model_dir, seed=7),
        prm=tiny_prm,
        stats_path=str(stats),
    )
    assert again["problems"] == 0 and json.loads(stats.read_text()) == summary
    for r in recs:
        assert set(r) >= {
            "id",
            "problem_id",
            "question",
            "previous_steps",
            "chosen",
            "rejected",
            "chosen_score",
            "rejected_score",
        }
    # another seed samples other steps
    other = tmp_path / "other.jsonl"
    mine_pairs.run(
        IOConfig(inputs=[probs], output=str(other)),
        MCTSConfig(**SMALL, seed=8),
        EngineConfig(engine="hf", model=tiny_model_dir),
        prm=tiny_prm,
    )
    assert other.read_bytes() != outs[0]
    # a finished output is resumed: nothing to do, nothing added
    again = mine_pairs.run(
        IOConfig(inputs=[probs], output=str(tmp_path / "pairs0.jsonl")),
        MCTSConfig(**SMALL, seed=7),
        EngineConfig(engine="hf", model=tiny_model_dir, seed=7),
        prm=tiny_prm,
    )
    assert again["problems"] == 0 and (tmp_path / "pairs0.jsonl").read_bytes() == outs[0]


def test_resumed_sharded_and_reordered_runs_make_the_same_pairs(tiny_model_dir, tiny_prm, tmp_path):
    """Each tree samples from seeds of (run seed, problem id, its own call count): what a problem gets does not
    depend on which problems share its working set, nor on how many engine calls came before it."""
    probs = problems_file(tmp_path / "problems.jsonl", 5)
    eng = EngineConfig(engine="hf", model=tiny_model_dir, seed=3)
    cfg = MCTSConfig(**{**SMALL, "working_set": 2, "top_p": 0.9}, seed=3)

    def mine(out, inputs=probs, **io):
        mine_pairs.run(IOConfig(inputs=[inputs], output=str(out), **io), cfg, eng, prm=tiny_prm)
        return _pairs(out)

    full = mine(tmp_path / "full.jsonl")
    assert len({r["problem_id"] for r in full}) >= 3  # enough problems make pairs for the comparison to bite
    mine(tmp_path / "resumed.jsonl", limit=1)  # as if a run were stopped after its first problem
    assert _same_pairs(mine(tmp_path / "resumed.jsonl"), full)
    shards = [mine(tmp_path / f"shard{k}.jsonl", shard=f"{k}/2") for k in range(2)]
    assert _same_pairs(sorted(shards[0] + shards[1], key=lambda r: r["id"]), full)
    reordered = tmp_path / "reordered.jsonl"
    reordered.write_text("".join(reversed(open(probs).readlines())))
    assert _same_pairs(mine(tmp_path / "reordered_out.jsonl", inputs=str(reordered)), full)


def test_bad_options_and_input(tiny_model_dir, tiny_prm, tmp_path):
    probs = problems_file(tmp_path / "p.jsonl", 1)
    eng = EngineConfig(engine="hf", model=tiny_model_dir)
    with pytest.raises(InputError, match="--width"):
        mine_pairs.run(
            IOConfig(inputs=[probs], output=str(tmp_path / "o.jsonl")), MCTSConfig(width=1), eng, prm=tiny_prm
        )
    with pytest.raises(InputError, match="--prm"):
        mine_pairs.run(
            IOConfig(inputs=[probs], output=str(tmp_path / "o.jsonl")), MCTSConfig(), eng, prm=str(tmp_path / "nope")
        )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "Q"}\n{"id": "b"}\n')
    with pytest.raises(InputError) as e:
        mine_pairs.run(IOConfig(inputs=[str(bad)], output=str(tmp_path / "o.jsonl")), MCTSConfig(), eng, prm=tiny_prm)
    assert str(e.value).startswith(f"{bad}:2: missing field 'question'")


@pytest.mark.slow
def test_a_killed_run_resumes_without_duplicates(tiny_model_dir, tiny_prm, tmp_path):
    probs = problems_file(tmp_path / "problems.jsonl")
    out = tmp_path / "pairs.jsonl"
    args = [
        sys.executable,
        "-m",
        "psr.cli",
        "mine-pairs",
        "-i",
        probs,
        "-o",
        str(out),
        "--model",
        tiny_model_dir,
        "--prm",
        tiny_prm,
        "--num-iterations",
        "6",
        "--width",
        "3",
        "--simulation-depth",
        "1",
        "--max-step-tokens",
        "8",
        "--max-depth",
        "3",
        "--working-set",
        "1",
        "--margin",
        "0.01",
    ]
    env = {**os.environ, "PSR_QUIET": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done_file = str(out) + ".done"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(done_file) and open(done_file).read().count("\n") >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = open(done_file).read().split()
    assert 2 <= len(first) < len(QUESTIONS), "the kill should land mid-run"
    r = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    done = [json.loads(x) for x in open(done_file).read().split()]
    assert sorted(done) == sorted(f"p{i}" for i in range(len(QUESTIONS)))  # each problem finished once
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len({r["id"] for r in recs}) == len(recs)
    assert {r["problem_id"] for r in recs} <= set(done)
    # the problems finished before the kill kept their pairs and were not redone
    assert [json.loads(x) for x in first] == done[: len(first)]
