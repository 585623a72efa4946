"""Rendering eval summaries: terminal tables, Markdown, the summary JSON."""

from __future__ import annotations

import json
import os

from psr.core.log import console
from psr.core.paths import write_text
from psr.stages.eval.common import EvalConfig


def _fmt(v, nd: int = 1) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def math_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    head = ["benchmark", "n", "correct", "acc %", "no ans", "trunc", "steps", "tok/step", "chr/step"]
    rows = [
        [
            b,
            str(v["n"]),
            str(v["correct"]),
            _fmt(v["accuracy"]),
            str(v["no_answer"]),
            str(v["truncated"]),
            _fmt(v["mean_steps"], 2),
            _fmt(v["mean_step_tokens"], 1),
            _fmt(v["mean_step_chars"], 1),
        ]
        for b, v in summary["benchmarks"].items()
    ]
    rows.append(
        [
            "average",
            str(summary["n"]),
            str(sum(v["correct"] for v in summary["benchmarks"].values())),
            _fmt(summary["average"]),
            "",
            "",
            "",
            "",
            "",
        ]
    )
    return head, rows


def math_caption(summary: dict) -> str:
    grader = f" ({summary['grader']} grader)" if summary.get("grader") else ""
    unit = summary.get("tokens_unit") or "tokens"
    return (
        f"acc %: percent correct{grader}; no ans: no final answer found; trunc: cut at --max-tokens "
        f"(tts: at --max-iterations); steps: mean steps per solution; tok/step: mean {unit} per step; "
        f"chr/step: mean characters per step"
    )


def judge_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    if summary.get("format") == "scoring":
        rows = [
            [k, _fmt(summary[k])]
            for k in ("accuracy", "within_one", "no_score_rate", "pair_order_accuracy", "pair_tie_rate")
        ]
        return ["metric", "value %"], rows + [
            ["mean_abs_error (points)", _fmt(summary["mean_abs_error"], 2)],
            ["records", str(summary["n"])],
            ["pairs", str(summary["pairs"])],
        ]
    keys = [
        "accuracy",
        "accuracy_stored_order",
        "accuracy_both_orders",
        "no_verdict_rate",
        "accuracy_better_as_A",
        "accuracy_better_as_B",
        "agreement",
    ]
    return ["metric", "value %"], [[k, _fmt(summary[k])] for k in keys] + [["records", str(summary["n"])]]


def markdown_table(head: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, head)) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_table(title: str, head: list[str], rows: list[list[str]], caption: str | None = None) -> None:
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=box.SIMPLE_HEAD)
    for i, h in enumerate(head):
        width = max(len(str(r[i])) for r in [head, *rows])
        t.add_column(h, justify="left" if i == 0 else "right", no_wrap=True, min_width=min(width, 40))
    for r in rows:
        t.add_row(*r)
    console.print(t)
    if caption:
        console.print(caption, style="dim", markup=False, highlight=False)


def summary_markdown(summary: dict) -> str:
    if summary["task"] == "math":
        return markdown_table(*math_rows(summary)) + "\n" + math_caption(summary) + "\n"
    return markdown_table(*judge_rows(summary))


def write_summary(summary: dict, cfg: EvalConfig) -> None:
    head, rows = math_rows(summary) if summary["task"] == "math" else judge_rows(summary)
    title = f"psr eval: {summary['task']}" + (f" ({summary['name']})" if summary.get("name") else "")
    print_table(title, head, rows, math_caption(summary) if summary["task"] == "math" else None)
    md_path = cfg.summary_md
    if cfg.summary:
        write_text(cfg.summary, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        md_path = md_path or os.path.splitext(cfg.summary)[0] + ".md"
    if md_path:
        write_text(md_path, summary_markdown(summary))


def summary_outputs(summary: str | None, summary_md: str | None, plot: str | None = None) -> dict:
    """The files a summary goes to, by option (the Markdown defaults to beside the JSON), for the up-front
    check of outputs (psr.core.paths.check_outputs)."""
    md = summary_md or (os.path.splitext(summary)[0] + ".md" if summary else None)
    return {"--summary": summary, "--summary-md": md, "--plot": plot}
