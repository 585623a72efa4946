"""Options shared by the stages, declared once (design.md "Shared options")."""

from __future__ import annotations

from typing import Annotated

import typer

from psr.core.records import IOConfig
from psr.engines.base import EngineConfig

Inputs = Annotated[list[str], typer.Option("-i", "--input", help="Input JSONL path, or - for stdin; repeat for several.")]
Output = Annotated[str, typer.Option("-o", "--output", help="Output JSONL path, or - for stdout. Resumed if it exists.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Start afresh instead of resuming an existing output.")]
Limit = Annotated[int | None, typer.Option("--limit", help="Process at most N records (after --shard).")]
Shard = Annotated[str | None, typer.Option("--shard", help="K/N: process the K-th (0-based) of N contiguous slices; "
                                            "the N outputs concatenate to the full job.")]
EngineName = Annotated[str, typer.Option("--engine", help="hf (transformers) | vllm | openai | oracle (the offline world).")]
Model = Annotated[str | None, typer.Option("--model", "-m", help="Model directory or hub name (openai: the served model name).")]
BaseUrl = Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")]
ApiKeyEnv = Annotated[str, typer.Option("--api-key-env", help="Name of the environment variable holding the API key.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (sampling, shuffles, training).")]
TrustRemoteCode = Annotated[bool, typer.Option("--trust-remote-code", help="Allow model repos to run their own code (off by default).")]
TensorParallel = Annotated[int, typer.Option("--tensor-parallel-size", help="vllm: GPUs per model.")]
Concurrency = Annotated[int, typer.Option("--concurrency", help="openai: requests in flight.")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="hf: sequences per generation batch.")]
Dtype = Annotated[str, typer.Option("--dtype", help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16.")]
ContinueMode = Annotated[str | None, typer.Option(
    "--continue-mode", help="openai: how a partial answer is continued: vllm (an assistant turn with "
    "continue_final_message; vLLM/SGLang servers) | inline (quoted in the user turn; any API). "
    "Default: vllm with --base-url, inline without.")]


def io_config(inputs: list[str] | None, output: str, overwrite: bool, limit: int | None, shard: str | None) -> IOConfig:
    return IOConfig(inputs=inputs or ["-"], output=output, overwrite=overwrite, limit=limit, shard=shard)


def engine_config(engine: str, model: str | None, base_url: str | None, api_key_env: str, seed: int,
                  trust_remote_code: bool = False, tensor_parallel_size: int = 1, concurrency: int = 32,
                  batch_size: int = 64, dtype: str = "auto", continue_mode: str | None = None) -> EngineConfig:
    return EngineConfig(engine=engine, model=model, base_url=base_url, api_key_env=api_key_env, seed=seed,
                        trust_remote_code=trust_remote_code, tensor_parallel_size=tensor_parallel_size,
                        concurrency=concurrency, batch_size=batch_size, dtype=dtype, continue_mode=continue_mode)
