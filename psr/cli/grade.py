"""``psr grade``: re-grade model outputs against gold answers."""

from __future__ import annotations

from psr.cli import options as O
from psr.cli.root import app
from psr.core.records import IOConfig
from psr.stages.grade import GradeConfig

# one line per paragraph: the help renderer re-wraps paragraphs to the terminal but keeps newlines
HELP = "\n\n".join(
    [
        "Re-grade model answers. Reads JSONL records with id, output (the model's text) and answer (the gold final "
        "answer), e.g. psr eval predictions; writes each record back with pred (the extracted final answer), correct "
        '(true/false) and, for an item that could not be graded, grade_failure ("no answer", "timeout", '
        '"error: ..."; graded incorrect).',
        "--grader default (psr's extraction and comparison on math-verify's parser: answer sections and lines, "
        "several boxed answers as a set, fractions vs decimals, units, degrees, percent, inequalities vs intervals, "
        "equations, sets, tuples, matrices, text answers, thousands separators and decimal commas; a record's question, "
        "when it has one, says whether a percent is asked for) | qwen (the Qwen2.5-Math evaluator's extract_answer and "
        'math_equal, as in the paper\'s tables) | math-verify (plain math-verify: verify(parse("$"+gold+"$"), '
        "parse(output))).",
        "Each item, extraction included, is graded in a worker process (--workers, default one per CPU) and given at most "
        "--timeout seconds (default 3); workers end with psr, even after kill -9. A summary (accuracy, count, no answer, timeouts, errors; per benchmark when records have a "
        "benchmark field) is printed on stderr and saved with --summary PATH.json. Resumes by id; --shard K/N, "
        "--limit N, --overwrite.",
    ]
)


@app.command("grade", help=HELP)
@O.with_options(O.dataclass_options(GradeConfig), "cfg")
@O.with_options(O.io_options(), "io")
def grade(*, io: IOConfig, cfg: GradeConfig) -> None:
    from psr.stages import grade as stage

    stage.run(io, cfg)
