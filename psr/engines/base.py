"""The one engine interface every stage uses: batched chat sampling, step generation, PRM scoring.

Engines: ``hf`` (transformers, the embedded default), ``vllm`` (offline LLM), ``openai`` (any
OpenAI-compatible endpoint), plus ``oracle`` from the offline world (psr.world). Pick one with
:func:`psr.engines.load_engine`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from psr.core.errors import PsrError
from psr.core.prompts import step_prompt
from psr.core.steps import STEP_STOP, assistant_prefix, has_final_answer, strip_step_prefix


@dataclass
class Chat:
    """One conversation to continue: a user turn, optionally a partial assistant answer to extend."""

    user: str
    assistant_prefix: str = ""
    system: str | None = None


@dataclass
class Sampling:
    n: int = 1
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_tokens: int = 512
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class Completion:
    text: str  # without the stop string that ended it
    finish_reason: str  # "stop" (a stop string), "eos" (end of turn), "length" (max_tokens)
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class EngineConfig:
    """Options shared by every engine; each engine reads the ones it understands."""

    engine: str = "hf"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"  # the *name* of the variable; keys never travel in flags
    seed: int = 0
    dtype: str = "auto"  # auto: bf16 on GPU, fp32 on CPU
    device: str = "auto"
    trust_remote_code: bool = False
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    batch_size: int = 64  # hf: sequences per forward batch
    concurrency: int = 32  # openai: requests in flight
    timeout: float = 600.0  # openai: seconds per request
    max_retries: int = 6
    continue_mode: str | None = None  # openai: "vllm" (continue_final_message) | "inline"; None: by --base-url


@dataclass
class Step:
    """One sampled next step."""

    content: str  # without the "Step n: " prefix
    completion: Completion

    @property
    def is_final(self) -> bool:
        """Ends the solution: states the final answer, or the model ended its turn."""
        return has_final_answer(self.content) or self.completion.finish_reason == "eos"


class Engine(ABC):
    name = "engine"

    @abstractmethod
    def generate(self, chats: list[Chat], sampling: Sampling) -> list[list[Completion]]:
        """``sampling.n`` completions for every chat, in input order."""

    def score_steps(self, question: str, solutions: list[list[str]]) -> list[list[float]]:
        """PRM: P("+") after each step of each partial solution (engines that load a PRM)."""
        raise PsrError(f"the {self.name} engine cannot score steps with a process reward model")

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens of each text under this engine's tokenizer (characters/4 where there is none)."""
        return [max(1, len(t) // 4) for t in texts]

    def close(self) -> None:  # noqa: B027 - engines without resources need no cleanup
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- helpers built on generate() ---------------------------------------------------------

    def next_steps(self, problems: list[tuple[str, list[str]]], sampling: Sampling) -> list[list[Step]]:
        """Sample ``sampling.n`` candidate next steps for each (question, previous steps).

        The model continues its own partial answer (Figure 4 prompt, previous steps as the start of
        the assistant turn) and stops before it would begin the following step.
        """
        chats = [Chat(step_prompt(q), assistant_prefix(prev)) for q, prev in problems]
        stop = list(dict.fromkeys([*sampling.stop, STEP_STOP]))
        s = Sampling(sampling.n, sampling.temperature, sampling.top_p, sampling.max_tokens, stop, sampling.seed)
        return [[Step(strip_step_prefix(c.text), c) for c in outs] for outs in self.generate(chats, s)]
