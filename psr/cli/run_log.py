"""RUN/run.jsonl, the run directory's log of a ``psr paper`` run: one line per stage launched or skipped, with
the command line, its resolved options (what the command wrote beside its output), wall time, exit code and its
counts (records written, pairs mined, accuracy), so that a week-long run can be read, and compared, in one place.

Each line is appended by rewriting the file through a temporary one (``os.replace``): a kill mid-write leaves the
previous log whole. ``table`` renders it at the end of a run.
"""

from __future__ import annotations

import json
import os
import time

import yaml

LOG = "run.jsonl"
# the numbers worth a glance, from a stage's --stats / --summary JSON or its model's psr_config.json
COUNT_KEYS = (
    "problems",
    "pairs",
    "pairs_per_problem",
    "average",
    "overall",
    "accuracy",
    "n",
    "global_steps",
    "effective_batch_size",
)


def option_value(args: list[str], *names: str) -> str | None:
    found = None
    for i, a in enumerate(args[:-1]):
        if a in names:
            found = args[i + 1]
    return found


def _json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stage_facts(args: list[str]) -> dict:
    """What a finished stage left behind: records in its -o, its numbers, its resolved options."""
    facts: dict = {}
    out = option_value(args, "-o", "--output")
    numbers: dict = {}
    if out and os.path.isfile(out):
        with open(out, "rb") as fh:
            facts["records"] = sum(1 for line in fh if line.strip())
        resolved = out + ".config.yaml"
    elif out and os.path.isdir(out):
        numbers.update(_json(os.path.join(out, "psr_config.json")))
        resolved = os.path.join(out, "psr_options.yaml")
    else:
        resolved = None
    for opt in ("--stats", "--summary"):
        if (path := option_value(args, opt)) is not None:
            numbers.update(_json(path))
    facts.update({k: numbers[k] for k in COUNT_KEYS if isinstance(numbers.get(k), (int, float))})
    if resolved and os.path.isfile(resolved):
        with open(resolved, encoding="utf-8") as fh:
            facts["resolved_config"] = yaml.safe_load(fh)
    return facts


def append(run_dir: str, entry: dict) -> None:
    path = os.path.join(run_dir, LOG)
    os.makedirs(run_dir, exist_ok=True)
    old = b""
    if os.path.exists(path):
        with open(path, "rb") as fh:
            old = fh.read()
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(old + (json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **entry}) + "\n").encode())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, LOG)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(x) for x in fh if x.strip()]


def table(run_dir: str) -> str:
    """The latest entry of every stage (by block and output), in the order they first ran."""
    latest: dict[tuple, dict] = {}
    for e in read(run_dir):
        latest[(e.get("stage"), e.get("output"))] = e
    rows = [("stage", "status", "wall s", "records", "numbers", "output")]
    for e in latest.values():
        numbers = " ".join(f"{k}={e[k]}" for k in COUNT_KEYS if k in e)
        rows.append(
            (
                e.get("stage", ""),
                e.get("status", ""),
                f"{e['wall_s']:.0f}" if "wall_s" in e else "",
                str(e.get("records", "")),
                numbers,
                os.path.relpath(e["output"], run_dir) if e.get("output") else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
