"""The eval config and what the math and judge tasks share: chunks, reading back, failing on unanswered records."""

from __future__ import annotations

from dataclasses import dataclass

from psr.core.errors import PsrError
from psr.core.records import iter_lines

PROMPTS = ("step", "qwen-cot")
TASKS = ("math", "judge")


@dataclass
class EvalConfig:
    task: str = "math"  # math | judge
    prompt: str = "step"  # step: Figure 4 | qwen-cot: Qwen2.5-Math CoT system prompt, for base models
    grader: str = "default"
    grade_timeout: float = 3.0  # seconds per answer, as the Qwen2.5-Math evaluator (psr.core.grading)
    max_tokens: int = 2048
    chunk_size: int = 512  # prompts per engine call; results are graded and written after each call
    tts: bool = False  # answer with the self-judged step search instead of greedy decoding
    width: int = 6
    temperature: float = 0.5
    top_p: float = 0.95
    max_iterations: int = 20
    name: str | None = None  # the row label of this run in --compare (default: the summary's file name)
    summary: str | None = None  # JSON path
    summary_md: str | None = None  # Markdown path (default: next to the JSON)
    few_shot: int = 0  # judge: worked judge examples before each prompt (Table 3's M0 row is 3-shot)
    few_shot_examples: str | None = None  # judge: pairwise EFT records they are drawn from


def chunks(items: list, size: int):
    for i in range(0, len(items), max(1, size)):
        yield items[i:i + max(1, size)]


def fail_if_unanswered(ids: list[str], output: str) -> None:
    if ids:
        raise PsrError(f"{len(ids)} record(s) got no answer (first: {ids[0]}): the engine's requests failed on every "
                       f"retry; the others are written to {output}; rerun the same command to do the rest")


def read_back(path: str, ids: set[str], written: list[dict]) -> list[dict]:
    """The predictions of this run's problems, resumed ones included (stdout holds only this run's)."""
    if path == "-":
        return written
    return [rec for _, rec in iter_lines(path) if isinstance(rec, dict) and rec.get("id") in ids]
