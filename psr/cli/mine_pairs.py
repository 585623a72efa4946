"""`psr mine-pairs`: problems + policy + PRM -> candidate step pairs (MCTS, paper §3.2)."""

from __future__ import annotations

from typing import Annotated

import typer

from psr.cli import options as O
from psr.cli.root import app
from psr.stages import mine_pairs as stage

_D = stage.MCTSConfig()


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
def mine_pairs(
    inputs: O.Inputs = None,
    output: O.Output = "-",
    prm: Annotated[str, typer.Option("--prm", help="PRM directory (written by `psr train-prm`).")] = "",
    engine: O.EngineName = "hf",
    model: O.Model = None,
    base_url: O.BaseUrl = None,
    api_key_env: O.ApiKeyEnv = "OPENAI_API_KEY",
    num_iterations: Annotated[int, typer.Option("--num-iterations", help="MCTS iterations per problem.")] = _D.num_iterations,
    simulation_depth: Annotated[int, typer.Option("--simulation-depth", help="Rollout steps after an expansion "
                                                  "(0: value = the new step's P(+)).")] = _D.simulation_depth,
    width: Annotated[int, typer.Option("--width", help="Candidate next steps sampled per expansion.")] = _D.width,
    exploration: Annotated[float, typer.Option("--exploration", "--c-puct", help="UCT exploration constant.")] = _D.exploration,
    margin: Annotated[float, typer.Option("--margin", help="Keep a pair only if chosen P(+) > rejected P(+) + "
                                          "margin.")] = _D.margin,
    temperature: Annotated[float, typer.Option("--temperature", help="Sampling temperature.")] = _D.temperature,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling.")] = _D.top_p,
    max_depth: Annotated[int, typer.Option("--max-depth", help="Steps in a solution before a node is "
                                           "terminal.")] = _D.max_depth,
    max_step_tokens: Annotated[int, typer.Option("--max-step-tokens", help="Token limit of one step.")] = _D.max_step_tokens,
    working_set: Annotated[int, typer.Option("--working-set", help="Problems searched together (model calls "
                                             "batch across them).")] = _D.working_set,
    prm_batch_size: Annotated[int, typer.Option("--prm-batch-size", help="Sequences per PRM forward pass.")] = _D.prm_batch_size,
    prm_engine: Annotated[str, typer.Option("--prm-engine", help="hf: the PRM in transformers (on one device, or "
                                            "sharded with --prm-device-map) | vllm: a vLLM engine of its own "
                                            "(--prm-tensor-parallel-size, --prm-gpu-memory-utilization).")] = _D.prm_engine,
    prm_device_map: Annotated[str | None, typer.Option("--prm-device-map", help="hf PRM: shard its layers over "
                                                       "the visible GPUs (then CPU) with accelerate: auto | balanced "
                                                       "| sequential; for a PRM larger than one GPU (72B). Default: "
                                                       "all on one device.")] = _D.prm_device_map,
    prm_tensor_parallel_size: Annotated[int, typer.Option("--prm-tensor-parallel-size", help="vllm PRM: GPUs for "
                                                          "the PRM.")] = _D.prm_tensor_parallel_size,
    prm_gpu_memory_utilization: Annotated[float, typer.Option("--prm-gpu-memory-utilization", help="vllm PRM: "
                                                              "share of each GPU's memory it takes (the policy's "
                                                              "--gpu-memory-utilization plus this must stay under "
                                                              "1 on shared GPUs).")] = _D.prm_gpu_memory_utilization,
    prm_max_model_len: Annotated[int | None, typer.Option("--prm-max-model-len", help="vllm PRM: context length "
                                                          "(default: the model's).")] = _D.prm_max_model_len,
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
) -> None:
    cfg = stage.MCTSConfig(num_iterations=num_iterations, simulation_depth=simulation_depth, temperature=temperature,
                           top_p=top_p, width=width, exploration=exploration, margin=margin, max_depth=max_depth,
                           max_step_tokens=max_step_tokens, working_set=working_set, prm_batch_size=prm_batch_size,
                           seed=seed, prm_engine=prm_engine, prm_device_map=prm_device_map,
                           prm_tensor_parallel_size=prm_tensor_parallel_size,
                           prm_gpu_memory_utilization=prm_gpu_memory_utilization, prm_max_model_len=prm_max_model_len)
    stage.run(O.io_config(inputs, output, overwrite, limit, shard, {"--stats": stats}),
              O.engine_config(engine, model, base_url, api_key_env, seed, trust_remote_code, tensor_parallel_size,
                              concurrency, batch_size, dtype, request_timeout=request_timeout,
                              max_retries=max_retries, gpu_memory_utilization=gpu_memory_utilization,
                              max_model_len=max_model_len, enforce_eager=enforce_eager),
              prm, cfg, stats_path=stats, prm_dtype=dtype)
