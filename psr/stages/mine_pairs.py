"""``psr mine-pairs``: read problems, grow an MCTS tree per problem with a PRM as value (psr.search.mcts, the paper's
§3.2), write the candidate step pairs of each finished problem as one group, so a killed run resumes with the
unfinished problems and never duplicates pairs."""

from __future__ import annotations

import os
import time
from dataclasses import replace

from psr.core.errors import InputError
from psr.core.log import info, progress
from psr.core.paths import write_json
from psr.core.records import IOConfig, RecordWriter
from psr.engines import Engine, EngineConfig, load_engine, open_engine
from psr.engines.prm import CONFIG_KEY, PRMScorer, is_prm_dir
from psr.search import MCTSConfig, Stats, search


def run(
    io: IOConfig,
    cfg: MCTSConfig,
    engine: EngineConfig | Engine,
    *,
    prm: str,
    stats_path: str | None = None,
    prm_device: str = "auto",
    prm_dtype: str = "auto",
    prm_scorer=None,
) -> dict:
    """Mine candidate pairs for every problem of ``io.inputs`` with the policy ``engine`` (an ``EngineConfig`` or a
    ready ``Engine``) and the PRM directory ``prm``; returns the stats (also on stderr / ``stats_path``).
    ``prm_scorer``: an already loaded scorer (``load_prm``'s result), used instead of loading ``prm``, not closed."""
    prm_path = prm
    if not prm_path:
        raise InputError("--prm is required: a PRM directory written by `psr train-prm`")
    if not os.path.isdir(prm_path):
        raise InputError("--prm: no such model directory", prm_path)
    if not is_prm_dir(prm_path):
        # A base model loads as a PRM just as well and scores every step near 0.5: the pairs would be noise.
        raise InputError(
            f"--prm: not a process reward model written by `psr train-prm` (its config.json has no "
            f"'{CONFIG_KEY}' entry); train one with `psr train-prm -o DIR` first",
            prm_path,
        )
    start = time.perf_counter()
    with RecordWriter(io.output, overwrite=io.overwrite, group_field="problem_id") as writer:
        todo = io.todo("problem", writer)
        miner_stats = Stats()
        if todo:
            ecfg = engine if isinstance(engine, EngineConfig) else EngineConfig()
            scorer = prm_scorer or load_prm(prm_path, ecfg, cfg, prm_device, prm_dtype)
            try:
                with open_engine(engine) as policy, progress("mine-pairs", len(todo)) as advance:
                    for trees in search("mcts", policy, todo, cfg, scorer, stats=miner_stats):
                        for t in trees:
                            writer.write_group(t["id"], t["pairs"])
                        advance(len(trees))
            finally:
                if prm_scorer is None and hasattr(scorer, "close"):
                    scorer.close()
    miner_stats.total_s = time.perf_counter() - start
    summary = miner_stats.summary()
    info("mine-pairs: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    # A rerun with nothing left to do keeps the stats of the run that did the work instead of writing zeros
    if stats_path and (todo or not os.path.exists(stats_path)):
        write_json(stats_path, summary)
    return summary


def load_prm(prm_path: str, engine_cfg: EngineConfig, cfg: MCTSConfig, device: str = "auto", dtype: str = "auto"):
    """The PRM as an object with ``score(items)``: transformers on one device or sharded by ``prm_device_map``,
    or a vLLM engine of its own (``VLLMEngine.score``: the same P(+), read from prompt log-probabilities)."""
    if cfg.prm_engine == "vllm":
        return load_engine(
            replace(
                engine_cfg,
                engine="vllm",
                model=prm_path,
                dtype=dtype,
                tensor_parallel_size=cfg.prm_tensor_parallel_size,
                gpu_memory_utilization=cfg.prm_gpu_memory_utilization,
                max_model_len=cfg.prm_max_model_len,
            )
        )
    return PRMScorer.load(
        prm_path,
        device=device,
        dtype=dtype,
        batch_size=cfg.prm_batch_size,
        trust_remote_code=engine_cfg.trust_remote_code,
        device_map=cfg.prm_device_map,
    )


__all__ = ["MCTSConfig", "load_prm", "run"]
