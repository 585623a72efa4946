"""The eval config and what the math and judge tasks share: chunks, reading back, failing on unanswered records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from psr.core.errors import InputError, PsrError
from psr.core.graders import GRADERS
from psr.core.options import option
from psr.core.records import iter_lines
from psr.search import SearchConfig

PROMPTS = ("step", "qwen-cot")
TASKS = ("math", "judge")


@dataclass
class EvalConfig:
    task: Literal[TASKS] = option(
        "math", "--task", help="math (benchmark accuracy) | judge (step-wise judge on EFT records)."
    )
    prompt: Literal[PROMPTS] = option(
        "step", "--prompt", help="step (Figure 4) | qwen-cot (Qwen2.5-Math CoT system prompt)."
    )
    grader: Literal[GRADERS] = option(
        "default",
        "--grader",
        help="default (math-verify + normalization) | qwen (Qwen2.5-Math evaluator) | math-verify.",
    )
    # seconds per answer, as the Qwen2.5-Math evaluator (psr.core.grading)
    grade_timeout: float = option(
        3.0,
        "--grade-timeout",
        help="Seconds to grade one answer; a slower one is graded wrong (grade_failure: timeout).",
    )
    max_tokens: int = option(2048, "--max-tokens", help="Most new tokens per answer, judgment or step.")
    chunk_size: int = option(512, "--chunk-size", help="Prompts per engine call; results are written after each call.")
    tts: bool = option(False, "--tts", help="Test-time scaling: answer with the self-judged step search.")
    # the search --tts answers with (its width, temperature, top_p, max_iterations: the command's --tts options)
    search: SearchConfig = field(default_factory=lambda: SearchConfig(tts=True))
    few_shot: int = option(
        0,
        "--few-shot",
        help="judge: K worked examples (Figure 5 prompts with their judgments) "
        "before each prompt, for a base model (Table 3: M0 3-shot).",
    )
    few_shot_examples: str | None = option(
        None,
        "--few-shot-examples",
        help="judge: pairwise EFT records the "
        "--few-shot examples are drawn from (the EFT training split), none of "
        "them a judged record.",
    )
    name: str | None = option(None, "--name", help="Label of this run in --compare (default: the summary's file name).")
    summary: str | None = option(None, "--summary", help="Write the summary JSON here.")
    summary_md: str | None = option(
        None, "--summary-md", help="Write the Markdown table here (default: beside --summary, .md)."
    )

    def __post_init__(self) -> None:
        for flag, value, choices in (
            ("--task", self.task, TASKS),
            ("--prompt", self.prompt, PROMPTS),
            ("--grader", self.grader, GRADERS),
        ):
            if value not in choices:  # typed on the CLI (a Literal); this guards a config made in Python
                raise InputError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")
        if self.task == "judge" and self.tts:
            raise InputError("--tts applies to --task math only")
        if self.few_shot < 0 or (self.few_shot and (self.task != "judge" or not self.few_shot_examples)):
            raise InputError("--few-shot K (>= 0) goes with --task judge and --few-shot-examples FILE")
        if self.max_tokens < 1 or self.chunk_size < 1 or self.grade_timeout <= 0:
            raise InputError("--max-tokens and --chunk-size must be >= 1, --grade-timeout > 0")


def chunks(items: list, size: int):
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + max(1, size)]


def fail_if_unanswered(ids: list[str], output: str) -> None:
    if ids:
        raise PsrError(
            f"{len(ids)} record(s) got no answer (first: {ids[0]}): the engine's requests failed on every "
            f"retry; the others are written to {output}; rerun the same command to do the rest"
        )


def read_back(path: str, ids: set[str], written: list[dict]) -> list[dict]:
    """The predictions of this run's problems, resumed ones included (stdout holds only this run's)."""
    if path == "-":
        return written
    return [rec for _, rec in iter_lines(path) if isinstance(rec, dict) and rec.get("id") in ids]
