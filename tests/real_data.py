"""Small training and search inputs for the real tier, made from the shipped world samples (data/world).

IFT: the reference segmentations of data/world/train.jsonl. Candidate pairs for annotate-eft: a reference
step (chosen) against a corrupted one (rejected, psr.world.oracle.corrupt_step), as mine-pairs would give.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL_MODEL = REPO / "models" / "smollm2-135m-instruct"
WORLD = REPO / "data" / "world"
GSM8K = REPO / "data" / "gsm8k_test_sample.jsonl"


def world(split: str) -> list[dict]:
    with open(WORLD / f"{split}.jsonl", encoding="utf-8") as fh:
        return [json.loads(x) for x in fh if x.strip()]


def ift_records(n: int) -> list[dict]:
    return [{k: r[k] for k in ("id", "question", "answer", "steps")} for r in world("train")[:n]]


def candidate_pairs(n: int, seed: int = 0) -> list[dict]:
    """``n`` pair records (chosen: the reference step k, rejected: a wrong one) over the train problems."""
    from psr.world.oracle import corrupt_step

    rng = random.Random(seed)
    out = []
    for p in world("train"):
        k = rng.randrange(len(p["steps"]))
        kinds = ["wrong_sum", "wrong_quantity", "wrong_operand"]
        rng.shuffle(kinds)
        wrong = next((w for w in (corrupt_step(p, k, kind, rng) for kind in kinds) if w and w != p["steps"][k]), None)
        if wrong is None:
            continue
        out.append(
            {
                "id": f"{p['id']}/{k}",
                "question": p["question"],
                "previous_steps": p["steps"][:k],
                "chosen": p["steps"][k],
                "rejected": wrong,
                "chosen_score": 1.0,
                "rejected_score": 0.0,
            }
        )
        if len(out) == n:
            break
    return out


def require_real_model() -> str:
    """The provisioned model folder; the test is skipped, saying how to make it, when it is absent."""
    import pytest

    if not (REAL_MODEL / "psr_source.json").is_file():
        pytest.skip(f"{REAL_MODEL} is absent: run `just real-model` (python scripts/real_model.py) to provision it")
    return str(REAL_MODEL)


def psr_ok(*args: str, timeout: float = 900) -> str:
    """Run the psr command as a user would; return its stderr, failing the test with it on a non-zero exit."""
    import os
    import subprocess

    from helpers import PSR

    env = dict(os.environ, PSR_QUIET="1", HF_HUB_OFFLINE="1")
    run = subprocess.run([*PSR, *args], capture_output=True, text=True, env=env, timeout=timeout)
    assert run.returncode == 0, f"psr {' '.join(args)} exited {run.returncode}:\n{run.stderr[-3000:]}"
    return run.stderr
