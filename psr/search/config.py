"""The hyper-parameters of the search methods; the defaults are the paper's (§4) where it gives one."""

from __future__ import annotations

from dataclasses import dataclass

from psr.core.errors import InputError

MODES = ("psr", "srlm")


@dataclass
class SearchConfig:
    """Search hyper-parameters; the defaults are the paper's (§4) where it gives one."""

    mode: str = "psr"  # psr: step search (the paper) | srlm: whole-solution scoring baseline (Yuan et al.)
    tts: bool = False  # answer with the search (test-time scaling) instead of making pairs
    width: int = 6  # candidates a step (srlm: solutions a problem)
    temperature: float = 0.5
    top_p: float = 0.95
    max_iterations: int = 20  # generation rounds per problem, rollbacks included
    judge_orders: int = 1  # 1: each pair once (positions balanced) | 2: both orders, win only if they agree
    max_step_tokens: int = 512
    max_solution_tokens: int = 2048  # srlm samples
    judge_max_tokens: int = 1024
    judge_temperature: float = 0.0  # greedy judging: a verdict should not be a coin flip
    working_set: int = 128  # problems searched at once
    seed: int = 0

    def check(self) -> None:
        if self.mode not in MODES:
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

    num_iterations: int = 100
    simulation_depth: int = 3
    temperature: float = 0.7
    top_p: float = 0.95
    width: int = 6  # candidates per expansion (the paper's search width, §4; its MCTS width is not given)
    exploration: float = 1.0  # UCT exploration constant c
    margin: float = 0.0  # a pair needs chosen_score > rejected_score + margin
    max_depth: int = 20  # steps in a solution before a node is terminal
    max_step_tokens: int = 512
    working_set: int = 32  # problems advanced together
    prm_batch_size: int = 16
    seed: int = 0

    def check(self) -> None:
        for name in ("num_iterations", "width", "max_depth", "max_step_tokens", "working_set", "prm_batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.simulation_depth < 0 or self.margin < 0 or self.exploration < 0:
            raise InputError("--simulation-depth, --margin and --exploration must be >= 0")
        if self.width < 2:
            raise InputError(f"--width must be >= 2 to compare candidates, got {self.width}")
        if not self.temperature >= 0 or not 0 < self.top_p <= 1:
            raise InputError(f"--temperature must be >= 0 and --top-p in (0, 1], got {self.temperature:g} and "
                             f"{self.top_p:g}")

