"""The same prompts through any engine, for tests/test_vllm_engine.py.

``run_cases(engine, spec)`` runs in the test process for the hf and openai engines; for the vllm engine
this file runs in the vLLM environment (.venv-vllm), which has vLLM but is not the test environment:

    .venv-vllm/bin/python tests/vllm_run.py MODEL_DIR OUT.json

vLLM starts worker processes, hence the __main__ guard.
"""

import json
import re
import sys
from dataclasses import asdict, replace

from psr.engines.base import Chat, Sampling

QUESTION = "Solve x + 1 = 4."
CHATS = [Chat("What is 2 + 3?"), Chat(QUESTION, "Step 1: Subtract 1 from both sides.\n")]
GREEDY = Sampling(n=2, temperature=0.0, max_tokens=16)
SAMPLED = Sampling(n=3, temperature=0.8, top_p=0.95, max_tokens=12, seed=1)


def run_cases(engine) -> dict:
    greedy = engine.generate(CHATS, GREEDY)
    # A stop string taken from the greedy text itself, so that a random tiny model still hits one.
    # Letters only: a stop string holding half a multi-byte character would test the detokenizer instead.
    m = re.search(r"[A-Za-z]{3}", greedy[0][0].text[1:])
    stop = m.group(0) if m else "zzz"
    stopped = engine.generate(CHATS[:1], Sampling(max_tokens=16, stop=[stop]))
    # A stop string that never occurs: vLLM then detokenizes as it goes, where without stop strings the
    # engine decodes the finished token ids in one batch; both must give the same text.
    unstopped = engine.generate(CHATS, Sampling(max_tokens=16, stop=["\x00"]))
    sampled = engine.generate(CHATS, SAMPLED)
    steps = engine.next_steps(
        [(QUESTION, ["Subtract 1 from both sides."])], Sampling(n=2, temperature=0.7, max_tokens=12, seed=3)
    )
    # per-chat seeds: a chat's samples depend on its own seed, not on the other chats of the call
    seeded = engine.generate(CHATS, replace(SAMPLED, seeds=[7, 9]))
    seeded_alone = engine.generate(CHATS[1:], replace(SAMPLED, seeds=[9]))
    plain = lambda res: [[asdict(c) for c in outs] for outs in res]  # noqa: E731
    return {
        "greedy": plain(greedy),
        "stop": stop,
        "stopped": plain(stopped),
        "unstopped": plain(unstopped),
        "sampled": plain(sampled),
        "seeded": plain(seeded),
        "seeded_alone": plain(seeded_alone),
        "steps": [[{"content": s.content, "is_final": s.is_final, **asdict(s.completion)} for s in ss] for ss in steps],
    }


if __name__ == "__main__":
    from psr.engines.base import EngineConfig
    from psr.engines.vllm import VLLMEngine

    cfg = EngineConfig(engine="vllm", model=sys.argv[1], seed=0, dtype="float32", max_model_len=1024)
    # enforce_eager: torch.compile of the model takes minutes on a small CPU, for nothing in a test
    with VLLMEngine(cfg, enforce_eager=True) as engine:
        out = run_cases(engine)
        out["rendered"] = engine.render(CHATS[1])
    with open(sys.argv[2], "w") as fh:
        json.dump(out, fh)
