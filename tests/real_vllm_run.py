"""The offline vllm engine on real models, for the real tier (tests/test_real_model.py).

Runs in the vLLM environment (.venv-vllm), one process for every model it is given, so that vLLM is
imported once:

    .venv-vllm/bin/python tests/real_vllm_run.py SPEC.json

SPEC: ``{"runs": [{"model": DIR, "output": PATH, "max_tokens": N, "inputs": [...], "limit": N,
"chats": [user text, ...]}, ...]}``. Each run loads a VLLMEngine (``enforce_eager=True``: torch.compile
of the model takes minutes on a small CPU, for nothing in a test), runs the eval stage
(psr.stages.eval.run) on ``inputs`` into ``output``, and, with ``chats``, answers each user text greedily
into ``output + ".chats.json"``; ``output + ".done"`` says the run finished. A model directory that
is not there yet is waited for (``DIR/psr_config.json`` marks a finished training run), so the
process can start, and import vLLM, while the model it evaluates last is still training.
"""

import json
import os
import sys
import time
from dataclasses import asdict


def _ready(model: str) -> bool:
    trained = os.path.isfile(os.path.join(model, "psr_config.json"))
    provisioned = os.path.isfile(os.path.join(model, "psr_source.json"))
    return trained or provisioned


def _wait_for(model: str, timeout: float = 1200) -> None:
    deadline = time.monotonic() + timeout
    while not _ready(model):
        if time.monotonic() > deadline:
            sys.exit(f"{model} did not appear within {timeout}s")
        time.sleep(1)


if __name__ == "__main__":
    from psr.core.records import IOConfig
    from psr.engines.base import Chat, EngineConfig, Sampling
    from psr.engines.vllm import VLLMEngine
    from psr.stages import eval as eval_stage

    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    for run in spec["runs"]:
        _wait_for(run["model"])
        cfg = EngineConfig(engine="vllm", model=run["model"], seed=0, dtype="float32", max_model_len=2048)
        io = IOConfig(inputs=run["inputs"], output=run["output"], overwrite=True, limit=run.get("limit"))
        t = time.monotonic()
        with VLLMEngine(cfg, enforce_eager=True) as engine:
            loaded = time.monotonic() - t
            eval_stage.run(io, eval_stage.EvalConfig(max_tokens=run["max_tokens"]), engine)
            if run.get("chats"):
                outs = engine.generate([Chat(u) for u in run["chats"]], Sampling(max_tokens=run["max_tokens"]))
                with open(run["output"] + ".chats.json", "w") as fh:
                    json.dump([asdict(o[0]) for o in outs], fh)
        with open(run["output"] + ".done", "w") as fh:
            json.dump({"load_s": loaded, "total_s": time.monotonic() - t}, fh)
        print(f"vllm {run['model']}: load {loaded:.0f}s, total {time.monotonic() - t:.0f}s", file=sys.stderr)
