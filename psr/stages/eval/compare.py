"""``psr eval --compare``: iterations M0..Mn side by side from their saved summaries (Tables 1-3), with a plot."""

from __future__ import annotations

import json
import os

from psr.core.errors import InputError, PsrError
from psr.core.log import warn
from psr.core.paths import write_text
from psr.stages.eval.common import TASKS
from psr.stages.eval.report import markdown_table, print_table


def load_summary(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            s = json.load(fh)
    except OSError as e:
        raise InputError(f"cannot open summary: {e.strerror}", path) from None
    except json.JSONDecodeError as e:
        raise InputError(f"not a JSON summary: {e.msg}", path, e.lineno) from None
    except UnicodeDecodeError as e:
        raise InputError(f"not a JSON summary: not valid UTF-8 (byte {e.start})", path) from None
    if not isinstance(s, dict) or s.get("task") not in TASKS:
        raise InputError("not a psr eval summary (no 'task': math|judge)", path)
    if s["task"] == "math" and not isinstance(s.get("benchmarks"), dict):
        raise InputError("math summary without 'benchmarks'", path)
    s.setdefault("name", None)
    s["name"] = s["name"] or os.path.splitext(os.path.basename(path))[0]
    return s


def compare(
    paths: list[str], plot: str | None = None, markdown: str | None = None, output_json: str | None = None
) -> dict:
    """Rows = runs (M0..Mn, in the given order), columns = benchmarks + average; deltas vs the first row."""
    if len(paths) < 1:
        raise InputError("--compare needs at least one summary JSON")
    runs = [load_summary(p) for p in paths]
    tasks = {r["task"] for r in runs}
    if len(tasks) > 1:
        raise InputError("--compare mixes math and judge summaries; compare one kind at a time")
    if tasks == {"math"}:
        cols: list[str] = []
        for r in runs:
            cols += [b for b in r["benchmarks"] if b not in cols]
        if any(set(r["benchmarks"]) != set(cols) for r in runs):
            warn("the summaries cover different benchmarks: their averages are not comparable")
        values = [[(r["benchmarks"].get(b) or {}).get("accuracy") for b in cols] + [r.get("average")] for r in runs]
        cols = cols + ["average"]
    else:
        if len({r.get("format", "pairwise") for r in runs}) > 1:
            raise InputError("--compare mixes pairwise and scoring judge summaries; compare one kind at a time")
        if runs[0].get("format") == "scoring":
            cols = ["accuracy", "within_one", "pair_order_accuracy", "pair_tie_rate", "no_score_rate"]
        else:
            cols = [
                "accuracy_stored_order",
                "accuracy",
                "accuracy_better_as_A",
                "accuracy_better_as_B",
                "agreement",
                "no_verdict_rate",
            ]
        values = [[r.get(c) for c in cols] for r in runs]
    first = values[0]

    def cell(v, v0, k: int) -> str:
        if v is None:
            return "—"
        if k == 0 or v0 is None:
            return f"{v:.1f}"
        return f"{v:.1f} ({v - v0:+.1f})"

    head = ["model"] + cols
    rows = [
        [r["name"]] + [cell(v, first[j], i) for j, v in enumerate(vals)]
        for i, (r, vals) in enumerate(zip(runs, values, strict=True))
    ]
    title = "accuracy % (delta vs " + runs[0]["name"] + ")"
    print_table(title, head, rows)
    md = f"{title}\n\n" + markdown_table(head, rows)
    if markdown:
        write_text(markdown, md)
    result = {
        "task": runs[0]["task"],
        "columns": cols,
        "rows": [
            {
                "name": r["name"],
                "values": dict(zip(cols, vals, strict=True)),
                "delta": {
                    c: (None if v is None or v0 is None else round(v - v0, 2))
                    for c, v, v0 in zip(cols, vals, first, strict=True)
                },
            }
            for r, vals in zip(runs, values, strict=True)
        ],
    }
    if output_json:
        write_text(output_json, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    if plot:
        plot_accuracy([r["name"] for r in runs], cols, values, plot)
    result["markdown"] = md
    return result


def plot_accuracy(names: list[str], cols: list[str], values: list[list[float | None]], path: str) -> None:
    """Accuracy by iteration: one line per benchmark, the average drawn bold."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a GPU box
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(names) + 3), 4.5))
    xs = list(range(len(names)))
    for j, c in enumerate(cols):
        ys = [v[j] if v[j] is not None else float("nan") for v in values]
        bold = c == "average"
        ax.plot(xs, ys, marker="o", linewidth=2.8 if bold else 1.4, color="black" if bold else None, label=c)
    ax.set_xticks(xs, names)
    ax.set_xlabel("iteration")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        fig.savefig(path, dpi=120, format="png")
    except OSError as e:
        raise PsrError(f"cannot write the plot: {e}") from None
    finally:
        plt.close(fig)
