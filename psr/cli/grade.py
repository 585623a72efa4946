"""``psr grade``: re-grade model outputs against gold answers."""

from __future__ import annotations

from typing import Annotated

import typer

from psr.cli import options as O
from psr.cli.root import app
from psr.core.grading import DEFAULT_TIMEOUT

# one line per paragraph: the help renderer re-wraps paragraphs to the terminal but keeps newlines
HELP = "\n\n".join([
    "Re-grade model answers. Reads JSONL records with id, output (the model's text) and answer (the gold final "
    "answer), e.g. psr eval predictions; writes each record back with pred (the extracted final answer), correct "
    "(true/false) and, for an item that could not be graded, grade_failure (\"no answer\", \"timeout\", "
    "\"error: ...\"; graded incorrect).",
    "--grader default (psr's extraction and comparison on math-verify's parser: answer sections and lines, "
    "several boxed answers as a set, fractions vs decimals, units, degrees, percent, inequalities vs intervals, "
    "equations, sets, tuples, matrices, text answers, thousands separators and decimal commas; a record's question, "
    "when it has one, says whether a percent is asked for) | qwen (the Qwen2.5-Math evaluator's extract_answer and "
    "math_equal, as in the paper's tables) | math-verify (plain math-verify: verify(parse(\"$\"+gold+\"$\"), "
    "parse(output))).",
    "Each item, extraction included, is graded in a worker process (--workers, default one per CPU) and given at most "
    "--timeout seconds (default 3); workers end with psr, even after kill -9. A summary (accuracy, count, no answer, timeouts, errors; per benchmark when records have a "
    "benchmark field) is printed on stderr and saved with --summary PATH.json. Resumes by id; --shard K/N, "
    "--limit N, --overwrite.",
])


@app.command("grade", help=HELP)
def grade(
    inputs: O.Inputs = None,
    output: O.Output = "-",
    overwrite: O.Overwrite = False,
    limit: O.Limit = None,
    shard: O.Shard = None,
    grader: Annotated[str, typer.Option("--grader", help="default | qwen | math-verify.")] = "default",
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per item before it counts as a timeout "
                                           "(incorrect).")] = DEFAULT_TIMEOUT,
    workers: Annotated[int | None, typer.Option("--workers", help="Grading processes (default: one per CPU).")]
    = None,
    summary: Annotated[str | None, typer.Option("--summary", help="Write the summary JSON here.")] = None,
) -> None:
    from psr.stages import grade as stage

    stage.run(O.io_config(inputs, output, overwrite, limit, shard, {"--summary": summary}), grader, timeout=timeout, workers=workers,
              summary_path=summary)
