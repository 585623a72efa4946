"""``psr grade``: re-grade records that carry model text (``output``) and a gold ``answer``.

Each input record comes back with ``pred`` (the extracted answer), ``correct``, and, when an item
could not be graded normally, ``grade_failure`` ("no answer", "timeout", "error: ...").
Records are written in input order as they finish, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from rich.table import Table

from psr.core.errors import InputError
from psr.core.grading import DEFAULT_TIMEOUT, GRADERS, grade_many
from psr.core.log import console, info, progress
from psr.core.options import option
from psr.core.paths import write_json
from psr.core.records import IOConfig, RecordWriter

FAILURE_FIELD = "grade_failure"


def _failure_kind(failure: str | None) -> str | None:
    if failure is None:
        return None
    return "timeouts" if failure == "timeout" else "no_answer" if failure == "no answer" else "errors"


def summarize(recs: list[dict], grader: str) -> dict:
    """Accuracy (percent), counts and failures; per benchmark too when records name one."""

    def block(rs: list[dict]) -> dict:
        n = len(rs)
        kinds = Counter(_failure_kind(r.get(FAILURE_FIELD)) for r in rs)
        right = sum(bool(r.get("correct")) for r in rs)
        return {
            "count": n,
            "correct": right,
            "accuracy": round(100.0 * right / n, 2) if n else 0.0,
            "no_answer": kinds["no_answer"],
            "timeouts": kinds["timeouts"],
            "errors": kinds["errors"],
        }

    out = {"grader": grader, **block(recs)}
    names = sorted({r["benchmark"] for r in recs if isinstance(r.get("benchmark"), str)})
    if names:
        out["benchmarks"] = {b: block([r for r in recs if r.get("benchmark") == b]) for b in names}
    return out


def print_summary(summary: dict) -> None:
    table = Table(title=f"psr grade ({summary['grader']})", title_justify="left")
    for col in ("", "accuracy %", "correct", "count", "no answer", "timeouts", "errors"):
        table.add_column(col, justify="left" if not col else "right")
    rows = [(b, s) for b, s in summary.get("benchmarks", {}).items()] + [("all", summary)]
    for name, s in rows:
        table.add_row(
            name,
            f"{s['accuracy']:.2f}",
            str(s["correct"]),
            str(s["count"]),
            str(s["no_answer"]),
            str(s["timeouts"]),
            str(s["errors"]),
        )
    console.print(table)


def _read_output(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@dataclass
class GradeConfig:
    """``psr grade``'s options."""

    grader: Literal[GRADERS] = option("default", "--grader", help="default | qwen | math-verify.")
    timeout: float = option(
        DEFAULT_TIMEOUT, "--timeout", help="Seconds per item before it counts as a timeout (incorrect)."
    )
    workers: int | None = option(None, "--workers", help="Grading processes (default: one per CPU).")
    summary: str | None = option(None, "--summary", help="Write the summary JSON here.")

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise InputError(f"--timeout must be > 0 seconds, got {self.timeout}")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"--workers must be >= 1, got {self.workers}")


def run(io: IOConfig, cfg: GradeConfig, *, show: bool = True) -> dict:
    """Grade ``io``'s inputs into ``io.output``; return (and with ``cfg.summary`` save) the summary."""
    grader, timeout, workers, summary_path = cfg.grader, cfg.timeout, cfg.workers, cfg.summary
    io = io.writing({"--summary": summary_path})
    with RecordWriter(io.output, overwrite=io.overwrite) as writer:
        recs = io.todo("gradable", writer)
        done_before = len(writer.done)
        graded: list[dict | None] = [None] * len(recs)
        next_out = 0
        info(f"grading {len(recs)} record(s) with the {grader} grader")
        with progress("grade", len(recs)) as advance:

            def on_result(i: int, g) -> None:
                nonlocal next_out
                rec = {k: v for k, v in recs[i].items() if k != FAILURE_FIELD}
                rec["pred"], rec["correct"] = g.pred, bool(g.correct)
                if g.failure:
                    rec[FAILURE_FIELD] = g.failure
                graded[i] = rec
                # write in input order, so outputs of shards concatenate in order
                while next_out < len(graded) and graded[next_out] is not None:
                    writer.write(graded[next_out])
                    next_out += 1
                advance()

            questions = [r.get("question") if isinstance(r.get("question"), str) else None for r in recs]
            grade_many(
                [r["output"] for r in recs],
                [r["answer"] for r in recs],
                grader,
                timeout=timeout,
                workers=workers,
                questions=questions,
                on_result=on_result,
            )
    # the summary covers the whole output file, records of earlier (resumed) runs included
    everything = graded if io.output == "-" or not done_before else _read_output(io.output)
    summary = summarize([r for r in everything if r is not None], grader)
    if show:
        print_summary(summary)
    if summary_path:
        write_json(summary_path, summary)  # atomic; a device such as /dev/null is only written to
    return summary
