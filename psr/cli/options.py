"""Options shared by the stages, declared once (design.md "Shared options")."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer

from psr.core.records import IOConfig
from psr.engines import ENGINES
from psr.engines.base import EngineConfig

Inputs = Annotated[list[str], typer.Option("-i", "--input", help="Input JSONL path, or - for stdin; repeat for several.")]
Output = Annotated[str, typer.Option("-o", "--output", help="Output JSONL path, or - for stdout. Resumed if it exists.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Start afresh instead of resuming an existing output.")]
Limit = Annotated[int | None, typer.Option("--limit", help="Process at most N records (after --shard).")]
Shard = Annotated[str | None, typer.Option("--shard", help="K/N: process the K-th (0-based) of N contiguous slices; "
                                            "the N outputs concatenate to the full job.")]
# A Literal is a typed choice: an unknown engine is a usage error before anything loads.
EngineChoice = Literal[ENGINES]
EngineName = Annotated[EngineChoice, typer.Option("--engine", help="hf (transformers) | vllm | openai | oracle (the "
                                                  "offline world).")]
Model = Annotated[str | None, typer.Option("--model", "-m", help="Model directory or hub name (openai: the served model name).")]
BaseUrl = Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1; "
                                             "several comma-separated (one vLLM server per GPU): each request goes to "
                                             "the least busy, a failing server's requests to the others.")]
ApiKeyEnv = Annotated[str, typer.Option("--api-key-env", help="Name of the environment variable holding the API key.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (sampling, shuffles, training).")]
TrustRemoteCode = Annotated[bool, typer.Option("--trust-remote-code", help="Allow model repos to run their own code (off by default).")]
TensorParallel = Annotated[int, typer.Option("--tensor-parallel-size", help="vllm: GPUs per model (tensor "
                                              "parallel); the engine uses the first N GPUs CUDA_VISIBLE_DEVICES shows.")]
GpuMemory = Annotated[float, typer.Option("--gpu-memory-utilization", help="vllm: share (0-1] of each GPU's memory "
                                          "this engine may take (weights + KV cache); lower it when a second model "
                                          "(the PRM, a judge) shares the GPUs.")]
MaxModelLen = Annotated[int | None, typer.Option("--max-model-len", help="vllm, hf: context length in tokens (prompt + "
                                                 "answer; longer prompts are refused or skipped as too long). Default: "
                                                 "the model's own.")]
EnforceEager = Annotated[bool, typer.Option("--enforce-eager", help="vllm: no CUDA graphs / torch.compile (less "
                                            "memory and a faster start, slower decoding).")]
Concurrency = Annotated[int, typer.Option("--concurrency", help="openai: requests in flight.")]
RequestTimeout = Annotated[float, typer.Option("--request-timeout", help="openai: seconds to wait for one answer "
                                               "before the request is retried.")]
MaxRetries = Annotated[int, typer.Option("--max-retries", help="openai: retries of a failed request (429, 5xx, "
                                         "timeout, empty answer) before its record is left undone; the stage then "
                                         "exits 1 and a rerun retries it.")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="hf: sequences per generation batch.")]
Dtype = Annotated[str, typer.Option("--dtype", help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16.")]
PrefixSharing = Annotated[bool, typer.Option(
    "--prefix-sharing/--no-prefix-sharing",
    help="hf: prefill a prompt prefix that several prompts of a batch share once (search's judge prompts, "
    "sampled copies). vllm has its own prefix caching.")]
ContinueMode = Annotated[str | None, typer.Option(
    "--continue-mode", help="openai: how a partial answer is continued: vllm (an assistant turn with "
    "continue_final_message; vLLM/SGLang servers) | inline (quoted in the user turn; any API). "
    "Default: vllm with --base-url, inline without.")]


def io_config(inputs: list[str] | None, output: str, overwrite: bool, limit: int | None, shard: str | None,
              also_writes: dict[str, str | None] | None = None) -> IOConfig:
    """The stage's I/O; ``also_writes`` names its other output files by option ({"--summary": path}), so that
    an output that is an input, or cannot be written, is refused before any work (psr.core.paths)."""
    return IOConfig(inputs=inputs or ["-"], output=output, overwrite=overwrite, limit=limit, shard=shard,
                    also_writes=also_writes or {})


def engine_config(engine: EngineName = "hf", model: Model = None, base_url: BaseUrl = None,
                  api_key_env: ApiKeyEnv = "OPENAI_API_KEY", seed: Seed = 0,
                  trust_remote_code: TrustRemoteCode = False, tensor_parallel_size: TensorParallel = 1,
                  concurrency: Concurrency = 32, batch_size: BatchSize = 64, dtype: Dtype = "auto",
                  prefix_sharing: PrefixSharing = True, request_timeout: RequestTimeout = 120.0,
                  max_retries: MaxRetries = 4, gpu_memory_utilization: GpuMemory = 0.9,
                  max_model_len: MaxModelLen = None, enforce_eager: EnforceEager = False) -> EngineConfig:
    """The engine options of a command (with_options(engine_config, ...)), or called directly."""
    if not request_timeout > 0:
        raise typer.BadParameter(f"must be > 0, got {request_timeout:g}", param_hint="--request-timeout")
    if max_retries < 0:
        raise typer.BadParameter(f"must be >= 0, got {max_retries}", param_hint="--max-retries")
    if concurrency < 1 or batch_size < 1:
        raise typer.BadParameter("--concurrency and --batch-size must be >= 1")
    if not 0 < gpu_memory_utilization <= 1:
        raise typer.BadParameter(f"must be in (0, 1], got {gpu_memory_utilization:g}", param_hint="--gpu-memory-utilization")
    if tensor_parallel_size < 1 or (max_model_len is not None and max_model_len < 1):
        raise typer.BadParameter("--tensor-parallel-size and --max-model-len must be >= 1")
    return EngineConfig(engine=engine, model=model, base_url=base_url, api_key_env=api_key_env, seed=seed,
                        trust_remote_code=trust_remote_code, tensor_parallel_size=tensor_parallel_size,
                        concurrency=concurrency, batch_size=batch_size, dtype=dtype, prefix_sharing=prefix_sharing,
                        timeout=request_timeout, max_retries=max_retries,
                        gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                        enforce_eager=enforce_eager)


def with_options(group: Callable[..., Any], into: str, *, after: str | None = None, omit: tuple[str, ...] = (),
                 **defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: give a command the options declared once as the parameters of `group`; the command gets
    ``group(**those options)`` as its (keyword-only) parameter `into` instead.

    Typer reads a command's options, their help and defaults from its signature, so the signature is rewritten:
    the group's options come after the command's own ones, or with `after`, the command's own options come right
    after that group option (so each --help lists its options in the order the command had). `defaults` are the
    command's own defaults for group options; `omit` leaves group options out (they keep the group's default).
    """
    shared = [p.replace(default=defaults.pop(p.name, p.default))
              for p in inspect.signature(group, eval_str=True).parameters.values() if p.name not in omit]
    if defaults:
        raise TypeError(f"{group.__name__} has no options {sorted(defaults)}")
    names = [p.name for p in shared]
    cut = names.index(after) + 1 if after else 0

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != into]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            options = {name: kwargs.pop(name) for name in names}
            return command(**kwargs, **{into: group(**options)})

        # keyword-only parameters (another group's `into`, for a later with_options) stay last
        kw_only = [p for p in own if p.kind is p.KEYWORD_ONLY]
        params = shared[:cut] + [p for p in own if p not in kw_only] + shared[cut:] + kw_only
        run.__signature__ = inspect.Signature(params)
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return decorate


def dataclass_options(cls: type, *, omit: tuple[str, ...] = ()) -> Callable[..., Any]:
    """The option group of a config dataclass, for ``with_options(dataclass_options(Config), "cfg")``: one Typer
    option for each field declared with ``psr.core.options.option`` (its flags, help, default; its type, so a
    ``Literal`` field is a choice), returning ``Config(**values)``; other fields keep their defaults, as do ``omit``."""
    hints = typing.get_type_hints(cls, include_extras=True)
    params = []
    for f in dataclasses.fields(cls):
        if "flags" not in f.metadata or f.name in omit:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        params.append(inspect.Parameter(
            f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
            annotation=Annotated[hints[f.name], typer.Option(*f.metadata["flags"], help=f.metadata["help"])]))

    def build(**values: Any) -> Any:
        return cls(**values)

    build.__name__ = cls.__name__
    build.__signature__ = inspect.Signature(params)
    return build
