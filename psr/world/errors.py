"""What kind of error a wrong step makes: the vocabulary of the events world's diagnosis (and the old world's).

The oracle (check.py) says whether a step is right and why; this names the error as the issue that made
the events world asks for, so that a policy's errors can be counted by kind: are they choices a step judge
can check by lookup (``distractor``, ``skipped``, ``repeated_event``, ``wrong_event``, ``early_box``,
``wrong_start``, ``repeated_step``, ``extra_step``) or arithmetic (``arithmetic``), which the README found
a 0.9M judge cannot check?
"""

from __future__ import annotations

from collections import Counter

from psr.core.steps import strip_step_prefix
from psr.world import events as events_world
from psr.world.check import _BOX, check_step
from psr.world.generator import parse_equation, parse_question

KINDS = (
    "right",
    "no_equation",
    "repeated_step",
    "extra_step",
    "wrong_start",
    "distractor",
    "skipped",
    "repeated_event",
    "wrong_event",
    "arithmetic",
    "early_box",
    "wrong_box",
)
CHECKABLE = {
    "repeated_step",
    "extra_step",
    "wrong_start",
    "distractor",
    "skipped",
    "repeated_event",
    "wrong_event",
    "early_box",
    "wrong_box",
}


def error_kind(meta: dict, previous_steps: list[str], step: str) -> str:
    """The kind of ``step`` as the next step after ``previous_steps`` (one of KINDS; "right" if it is)."""
    c = check_step(meta, previous_steps, step)
    if c.ok:
        return "right"
    text = " ".join(strip_step_prefix(step).split())
    eq = parse_equation(text)
    i = len(previous_steps)
    if "repeats Step" in c.text:
        return "repeated_step"
    if eq is None:
        return "no_equation"
    if i >= len(meta["ops"]):
        return "extra_step"
    if c.score == 1:
        return "wrong_start"
    if c.score == 2:  # the event told or computed is not the next one
        ops = [tuple(o) for o in meta["ops"]]
        told = events_world.event_of(text) if meta.get("kind") == events_world.KIND else None
        got = (told[1], told[2]) if told else (eq[1], eq[2])
        if told and told[0] != meta["name"]:
            return "distractor"
        if got in ops[i + 1 :]:
            return "skipped"
        if got in ops[:i]:
            return "repeated_event"
        theirs = {(s, x) for who, s, x in meta.get("story", []) if who != meta["name"]}
        return "distractor" if got in theirs else "wrong_event"
    if _BOX.findall(text) and "too early" in c.text:
        return "early_box"
    if "boxes" in c.text:
        return "wrong_box"
    return "arithmetic"


def first_error(question: str, steps: list[str]) -> str | None:
    """The kind of a solution's first wrong step; "stopped" if every step is right but the answer never came,
    None if the solution is right, or if the question is not a world problem."""
    meta = parse_question(question)
    if meta is None:
        return None
    for j, s in enumerate(steps):
        kind = error_kind(meta, steps[:j], s)
        if kind != "right":
            return kind
    return None if len(steps) == len(meta["ops"]) else "stopped"


def error_table(records: list[dict]) -> dict:
    """Counts of first-error kinds over eval records (``question``, ``steps``, ``correct``), with the share that
    a step judge can check by lookup."""
    kinds = Counter(first_error(r["question"], r.get("steps") or []) for r in records if not r.get("correct"))
    kinds.pop(None, None)
    wrong = sum(kinds.values())
    checkable = sum(n for k, n in kinds.items() if k in CHECKABLE)
    return {
        "wrong": wrong,
        "kinds": dict(kinds.most_common()),
        "checkable": checkable,
        "checkable_share": round(checkable / wrong, 3) if wrong else None,
    }
