"""`psr mine-pairs`: problems + policy + PRM -> candidate step pairs (MCTS, paper §3.2)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from psr.cli import options as O
from psr.cli.root import app
from psr.stages import mine_pairs as stage


@app.command(
    "mine-pairs",
    help=(
        "MCTS on a policy model (--engine/--model) with a PRM (--prm DIR from `psr train-prm`; run with "
        "transformers, sharded by --prm-device-map, or with --prm-engine vllm) as value. Reads problem records (id, question); writes candidate pair records (id, "
        "problem_id, question, previous_steps, chosen, rejected, chosen_score, rejected_score): at every expanded "
        "node the PRM's best and worst candidate next steps, kept when P(+) differs by more than --margin. "
        "Expansion samples --width steps for the whole working set in one engine call; the PRM scores them in one "
        "batched call; selection by UCT. Paper defaults: --simulation-depth 3, --num-iterations 100, "
        "--temperature 0.7, --top-p 0.95. Resumes by problem (an unfinished problem is redone); --shard/--limit "
        "as every stage. Stats (nodes, pairs, pairs per problem, generation vs scoring time) go to stderr and "
        "--stats."
    ),
)
@O.with_options(O.dataclass_options(stage.MCTSConfig), "cfg")
def mine_pairs(
    inputs: O.Inputs = None,
    output: O.Output = "-",
    prm: Annotated[str, typer.Option("--prm", help="PRM directory (written by `psr train-prm`).")] = "",
    engine: O.EngineName = "hf",
    model: O.Model = None,
    base_url: O.BaseUrl = None,
    api_key_env: O.ApiKeyEnv = "OPENAI_API_KEY",
    stats: Annotated[str | None, typer.Option("--stats", help="Also write the stats to this JSON file.")] = None,
    overwrite: O.Overwrite = False,
    limit: O.Limit = None,
    shard: O.Shard = None,
    seed: O.Seed = 0,
    batch_size: O.BatchSize = 64,
    concurrency: O.Concurrency = 32,
    tensor_parallel_size: O.TensorParallel = 1,
    gpu_memory_utilization: O.GpuMemory = 0.9,
    max_model_len: O.MaxModelLen = None,
    enforce_eager: O.EnforceEager = False,
    dtype: O.Dtype = "auto",
    trust_remote_code: O.TrustRemoteCode = False,
    request_timeout: O.RequestTimeout = 120.0,
    max_retries: O.MaxRetries = 4,
    *,
    cfg: stage.MCTSConfig,
) -> None:
    cfg = replace(cfg, seed=seed)
    stage.run(O.io_config(inputs, output, overwrite, limit, shard, {"--stats": stats}), cfg,
              O.engine_config(engine, model, base_url, api_key_env, seed, trust_remote_code, tensor_parallel_size,
                              concurrency, batch_size, dtype, request_timeout=request_timeout,
                              max_retries=max_retries, gpu_memory_utilization=gpu_memory_utilization,
                              max_model_len=max_model_len, enforce_eager=enforce_eager),
              prm=prm, stats_path=stats, prm_dtype=dtype)
