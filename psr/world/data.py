"""A world data set on disk: problems from the generator, step labels from the oracle (the one module that needs
both, so that neither of them imports the other)."""

from __future__ import annotations

import os

from psr.core.errors import InputError
from psr.core.records import write_records
from psr.world.generator import generate_problems
from psr.world.oracle import prm_examples


def write_world(
    out_dir: str, n_train: int, n_test: int, n_prm: int, seed: int = 0, n_search: int = 0, **world
) -> dict[str, int]:
    """Write a world data set to ``out_dir``; returns records written per file.

    train.jsonl / test.jsonl: problems with reference ``steps``; train_solutions.jsonl: the same
    train problems without ``steps`` (what ``psr segment`` reads); prm.jsonl: step-labelled
    solutions (what ``psr train-prm`` reads) on other train-split problems than train.jsonl;
    search.jsonl (when ``n_search`` > 0): train-split problems in neither, for ``psr search`` to
    meet problems the model was not fine-tuned on. ``world``: generate_problems' world keywords.
    """
    for name, n in (("--train", n_train), ("--test", n_test), ("--prm", n_prm), ("--search", n_search)):
        if n < 0:
            raise InputError(f"{name} must be >= 0, got {n}")
    pool = generate_problems(n_train + n_prm + n_search, seed, "train", **world)
    train, prm_problems, search = pool[:n_train], pool[n_train : n_train + n_prm], pool[n_train + n_prm :]
    files = {
        "train.jsonl": train,
        "test.jsonl": generate_problems(n_test, seed, "test", **world),
        "train_solutions.jsonl": [{k: p[k] for k in ("id", "question", "answer", "solution")} for p in train],
        "prm.jsonl": prm_examples(prm_problems, seed),
    }
    if n_search:
        files["search.jsonl"] = search
    return {name: write_records(os.path.join(out_dir, name), recs) for name, recs in files.items()}
