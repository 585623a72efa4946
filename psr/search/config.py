"""The hyper-parameters of the search methods; the defaults are the paper's (§4) where it gives one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from psr.core.errors import InputError
from psr.core.options import option

MODES = ("psr", "srlm")


@dataclass
class SearchConfig:
    """Search hyper-parameters; the defaults are the paper's (§4) where it gives one."""

    mode: Literal[MODES] = option(
        "psr", "--mode", help="psr: step search (the paper) | srlm: whole-solution scoring baseline (Yuan et al. 2024)."
    )
    tts: bool = option(
        False,
        "--tts",
        help="Test-time scaling: answer with the search, write trajectories to -o, no "
        "pairs; a tie takes the first candidate instead of rolling back.",
    )
    width: int = option(6, "--width", "-w", help="Candidates a step (srlm: solutions a problem).")
    temperature: float = option(0.5, "--temperature", help="Sampling temperature of candidates.")
    top_p: float = option(0.95, "--top-p", help="Nucleus sampling of candidates.")
    max_iterations: int = option(20, "--max-iterations", help="Generation rounds a problem, rollbacks included.")
    judge_orders: int = option(
        1,
        "--judge-orders",
        help="1: judge each pair once, A/B positions balanced (paper "
        "cost) | 2: both orders, a win only when they agree (2x judge cost, robust to position "
        "bias).",
    )
    max_step_tokens: int = option(512, "--max-step-tokens", help="Token limit of one step.")
    max_solution_tokens: int = option(2048, "--max-solution-tokens", help="srlm: token limit of a solution.")
    judge_max_tokens: int = option(1024, "--judge-max-tokens", help="Token limit of one judgment.")
    # greedy judging: a verdict should not be a coin flip
    judge_temperature: float = option(0.0, "--judge-temperature", help="0 = greedy judging.")
    working_set: int = option(
        128, "--working-set", help="Problems searched together (one engine call per round for all of them)."
    )
    seed: int = 0

    def check(self) -> None:
        """Check again after fields were changed in place (construction checks them)."""
        self.__post_init__()

    def __post_init__(self) -> None:
        if self.mode not in MODES:  # the CLI types it (a Literal); this guards a config made in Python
            raise InputError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.tts and self.mode != "psr":
            raise InputError("--tts runs the step search; it cannot be combined with --mode srlm")
        if self.width < 2:
            raise InputError(f"--width must be >= 2 (a pair needs two candidates), got {self.width}")
        if self.judge_orders not in (1, 2):
            raise InputError(f"--judge-orders must be 1 or 2, got {self.judge_orders}")
        for name in ("max_iterations", "max_step_tokens", "max_solution_tokens", "judge_max_tokens", "working_set"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.top_p <= 1:
            raise InputError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.temperature < 0 or self.judge_temperature < 0:
            raise InputError("temperatures must be >= 0")


@dataclass
class MCTSConfig:
    """Paper §4: simulation_depth=3, num_iterations=100, T=0.7, top_p=0.95; the rest are psr's choices."""

    num_iterations: int = option(100, "--num-iterations", help="MCTS iterations per problem.")
    simulation_depth: int = option(
        3, "--simulation-depth", help="Rollout steps after an expansion (0: value = the new step's P(+))."
    )
    # the paper's search width (§4); its MCTS width is not given
    width: int = option(6, "--width", help="Candidate next steps sampled per expansion.")
    exploration: float = option(1.0, "--exploration", "--c-puct", help="UCT exploration constant.")
    margin: float = option(0.0, "--margin", help="Keep a pair only if chosen P(+) > rejected P(+) + margin.")
    temperature: float = option(0.7, "--temperature", help="Sampling temperature.")
    top_p: float = option(0.95, "--top-p", help="Nucleus sampling.")
    max_depth: int = option(20, "--max-depth", help="Steps in a solution before a node is terminal.")
    max_step_tokens: int = option(512, "--max-step-tokens", help="Token limit of one step.")
    working_set: int = option(32, "--working-set", help="Problems searched together (model calls batch across them).")
    prm_batch_size: int = option(16, "--prm-batch-size", help="Sequences per PRM forward pass.")
    # Where the PRM runs (a 72B PRM fits no single GPU): transformers on one device or sharded over the visible
    # GPUs, or a vLLM engine of its own with its own tensor parallelism and memory share.
    prm_engine: Literal["hf", "vllm"] = option(
        "hf",
        "--prm-engine",
        help="hf: the PRM in transformers (on one device, or sharded with --prm-device-map) | "
        "vllm: a vLLM engine of its own (--prm-tensor-parallel-size, --prm-gpu-memory-utilization).",
    )
    prm_device_map: str | None = option(
        None,
        "--prm-device-map",
        help="hf PRM: shard its layers over the visible GPUs (then CPU) with accelerate: "
        "auto | balanced | sequential; for a PRM larger than one GPU (72B). Default: all on one device.",
    )
    prm_tensor_parallel_size: int = option(1, "--prm-tensor-parallel-size", help="vllm PRM: GPUs for the PRM.")
    prm_gpu_memory_utilization: float = option(
        0.4,
        "--prm-gpu-memory-utilization",
        help="vllm PRM: share of each GPU's memory it takes (the policy's "
        "--gpu-memory-utilization plus this must stay under 1 on shared GPUs).",
    )
    prm_max_model_len: int | None = option(
        None, "--prm-max-model-len", help="vllm PRM: context length (default: the model's)."
    )
    seed: int = 0

    def check(self) -> None:
        """Check again after fields were changed in place (construction checks them)."""
        self.__post_init__()

    def __post_init__(self) -> None:
        if self.prm_engine not in ("hf", "vllm"):  # typed on the CLI; guards a config made in Python
            raise InputError(f"--prm-engine must be hf or vllm, got {self.prm_engine!r}")
        if self.prm_device_map is not None and self.prm_engine != "hf":
            raise InputError("--prm-device-map is for --prm-engine hf (vLLM shards with --prm-tensor-parallel-size)")
        if self.prm_device_map not in (None, "auto", "balanced", "balanced_low_0", "sequential"):
            raise InputError(
                f"--prm-device-map must be auto, balanced, balanced_low_0 or sequential, got {self.prm_device_map!r}"
            )
        if not 0 < self.prm_gpu_memory_utilization <= 1 or self.prm_tensor_parallel_size < 1:
            raise InputError("--prm-gpu-memory-utilization must be in (0, 1] and --prm-tensor-parallel-size >= 1")
        for name in ("num_iterations", "width", "max_depth", "max_step_tokens", "working_set", "prm_batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.simulation_depth < 0 or self.margin < 0 or self.exploration < 0:
            raise InputError("--simulation-depth, --margin and --exploration must be >= 0")
        if self.width < 2:
            raise InputError(f"--width must be >= 2 to compare candidates, got {self.width}")
        if not self.temperature >= 0 or not 0 < self.top_p <= 1:
            raise InputError(
                f"--temperature must be >= 0 and --top-p in (0, 1], got {self.temperature:g} and {self.top_p:g}"
            )
