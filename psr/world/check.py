"""Checking one step of a world problem locally, as a human grader reads a partial solution (the oracle's core).

A step must carry out the question's next event on the quantity the previous step ended with (or the
question's start), with right arithmetic, without repeating an earlier step, and box an answer only at the
end; in the events world (psr.world.events) it must also tell that event in the question's words. Only text
is parsed, never evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from psr.core.steps import strip_step_prefix
from psr.world import events as events_world
from psr.world.generator import apply, parse_equation, render_step

_BOX = re.compile(r"\\boxed\s*\{\s*(-?\d+)\s*\}")


@dataclass
class Check:
    ok: bool
    score: int  # how far the step got before its first error: 0 (nothing usable) .. 4 (right)
    text: str  # "computes 8 - 3 = 5, which is correct" (no subject, no final period)
    # The same check written recompute-first, with the subject as "{X}":
    # "{X} writes 8 - 3 = 6. Start: should be 8, it uses 8: same. ... So {X} is wrong."
    walk: str = ""


def _norm(step: str) -> str:
    return " ".join(strip_step_prefix(step).split())


def _same(want, got) -> str:
    return "same" if want == got else "different"


def _wanted_start(meta: dict, previous_steps: list[str]) -> tuple[int, str]:
    """The quantity the next step must start from, and where it comes from."""
    i = len(previous_steps)
    if i == 0:
        return meta["start"], "the start in the question"
    got = parse_equation(previous_steps[-1])
    return (got[3] if got else meta["values"][i]), f"the result of Step {i}"


def next_equation(meta: dict, previous_steps: list[str]) -> str | None:
    """The equation a right next step computes ("45 + 37 = 82"), or None when no event is left."""
    i = len(previous_steps)
    if i >= len(meta["ops"]):
        return None
    a, _ = _wanted_start(meta, previous_steps)
    sym, b = meta["ops"][i]
    return f"{a} {sym} {b} = {apply(a, sym, b)}"


def _is_next(meta: dict, previous_steps: list[str], step: str, eq: tuple) -> bool:
    """Does ``step`` (equation ``eq``) carry out the question's next event on the right quantity, rightly?"""
    i = len(previous_steps)
    if i >= len(meta["ops"]):
        return False
    want_a, _ = _wanted_start(meta, previous_steps)
    sym, x = meta["ops"][i]
    if eq != (want_a, sym, x, apply(want_a, sym, x)):
        return False
    return meta.get("kind") != events_world.KIND or events_world.event_of(step) == (meta["name"], sym, x, meta["noun"])


def check_step(meta: dict, previous_steps: list[str], step: str) -> Check:
    """Check the next step of a world problem (``meta``: start, ops, values, as parse_question gives)."""
    i = len(previous_steps)
    ops = meta["ops"]
    step = _norm(step)

    def fail(score: int, text: str, walk: list[str]) -> Check:
        return Check(False, score, text, " ".join(walk + ["So {X} is wrong."]))

    eq = parse_equation(step)
    # A step that carries out the next event right is not a repeat even when its words equal an earlier
    # step's (a quantity can come back to a value and meet the same event again).
    repeat_ok = eq is not None and _is_next(meta, previous_steps, step, eq)
    for k, prev in enumerate(previous_steps, 1):
        if _norm(prev) == step and not repeat_ok:
            return fail(0, f"repeats Step {k}, which is wrong", [f"{{X}} repeats Step {k} word for word."])
    if eq is None:
        return fail(0, "computes nothing, which is wrong", ["{X} writes no equation."])
    a, sym, b, c = eq
    shown = f"computes {a} {sym} {b} = {c}"
    walk = [f"{{X}} writes {a} {sym} {b} = {c}."]
    for k, prev in enumerate(previous_steps, 1):
        if parse_equation(prev) == eq and not repeat_ok:
            return fail(
                0,
                f"{shown} again, which is wrong: it repeats Step {k}",
                walk + [f"Step {k} wrote {a} {sym} {b} = {c}: same."],
            )
    if i >= len(ops):
        return fail(
            0,
            f"{shown}, which is wrong: the question has no event left",
            walk + [f"Events: the question has {len(ops)}, this would be {i + 1}: too many."],
        )
    want_a, source = _wanted_start(meta, previous_steps)
    # Recompute-first: each check writes the wanted value, then the step's value, then a verdict on
    # two adjacent numbers, so that every decision is a local copy or compare (see judge()).
    walk.append(f"Start: should be {want_a}, it uses {a}: {_same(want_a, a)}.")
    if a != want_a:
        return fail(1, f"{shown}, which is wrong: it should start from {want_a}, {source}", walk)
    want_sym, want_b = ops[i]
    if meta.get("kind") == events_world.KIND:
        # The events world's choice is the event itself: the step must tell the asked-about person's next
        # event in the question's words (a lookup a judge can make), not another person's, a later or an earlier one.
        want_event = (meta["name"], want_sym, want_b, meta["noun"])
        got_event = events_world.event_of(step)
        walk.append(
            f"Told: should be {events_world.told(want_event)}, it tells {events_world.told(got_event)}: "
            f"{_same(want_event, got_event)}."
        )
        if got_event != want_event:
            return fail(
                2,
                f"{shown}, which is wrong: it tells {events_world.told(got_event)}, but the next "
                f"event is {events_world.told(want_event)}",
                walk,
            )
    walk.append(f"Event: should be {want_sym} {want_b}, it does {sym} {b}: {_same((want_sym, want_b), (sym, b))}.")
    if (sym, b) != (want_sym, want_b):
        return fail(2, f"{shown}, which is wrong: the next event is {want_sym} {want_b}", walk)
    right = apply(a, sym, b)
    walk.append(f"Result: {a} {sym} {b} = {right}, it wrote {c}: {_same(right, c)}.")
    if c != right:
        return fail(3, f"{shown}, which is wrong: {a} {sym} {b} is {right}", walk)
    boxed = _BOX.findall(step)
    if boxed and i < len(ops) - 1:
        return fail(
            3,
            f"{shown}, which is right, but it gives a final answer too early",
            walk + [f"Box: should be none before the last event, it boxes {boxed[-1]}: different."],
        )
    if boxed and int(boxed[-1]) != c:
        return fail(
            3,
            f"{shown}, which is right, but it boxes {boxed[-1]}",
            walk + [f"Box: should be {c}, it boxes {boxed[-1]}: different."],
        )
    return Check(True, 4, f"{shown}, which is correct", " ".join(walk + ["So {X} is correct."]))


def lookup(meta: dict, previous_steps: list[str]) -> str:
    """The right next step written as a lookup from where the solution stands (the oracle's lookup-first style).

    "After Ava gives away 2 pencils, Ava's next event is: Ava finds 9 more pencils, so 21 + 9 = 30." The
    anchor is copied from the last step, so finding the next event is one match in the question and a move
    to the asked-about person's following sentence, and checking a candidate is a compare with this line.
    """
    i = len(previous_steps)
    events = meta.get("kind") == events_world.KIND
    if i == 0:
        anchor = (
            f"{meta['name']} has {meta['start']} {meta['noun']}, so the first event is"
            if events
            else "The first step is"
        )
    else:
        prev = _norm(previous_steps[-1])
        told = events_world.event_of(prev) if events else None
        eq = parse_equation(prev)
        what = events_world.told(told) if told else (f"{eq[0]} {eq[1]} {eq[2]} = {eq[3]}" if eq else f"Step {i}")
        anchor = f"After {what}, the next {'event' if events else 'step'} is"
    if i >= len(meta["ops"]):
        return f"{anchor} none: the question has no event left."
    a, _ = _wanted_start(meta, previous_steps)
    sym, x = meta["ops"][i]
    return f"{anchor}: {render_step(meta, i, a, sym, x, apply(a, sym, x))}"
