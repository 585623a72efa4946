"""The events world: stories of small additions and subtractions where the hard part is choosing the next event.

The arithmetic world (generator.py) left a 0.9M-parameter model's errors as arithmetic slips, which its judge
cannot check (README, "What we measured"). Here the arithmetic is easy (+ and - only, operands 2-9, every value
of the asked-about person in 1..49) and the difficulty is a choice: the question tells ``events`` things that
happen to one person interleaved with ``distractors`` that happen to someone else, and only the asked-about
person's events count. A right step restates its event in the question's own words, then computes it::

    Question: Tom has 12 apples. Mia has 7 apples. Then Mia finds 3 more apples. Then Tom gives away 4
              apples. Then Tom finds 6 more apples. How many apples does Tom have now?
    Step 1: Tom gives away 4 apples, so 12 - 4 = 8.
    Step 2: Tom finds 6 more apples, so 8 + 6 = \\boxed{14}.

so the errors a policy makes (another person's event, a skipped or repeated event, an answer boxed early) are
visible by lookup: copy the step's sentence, find it in the question, compare. ``distractors`` is the
difficulty knob: with none the world is a control with (almost) nothing to choose.

A problem's ``world`` metadata keeps the arithmetic world's keys (``start``, ``ops``, ``values``: the
asked-about person's events only), so the oracle's step check applies unchanged, plus ``kind`` "events",
``other``, ``other_start`` and ``story`` (every event in question order, as [who, sym, x]).
This module imports nothing from the rest of the world package (generator.py imports it).
"""

from __future__ import annotations

import random
import re

NOUNS = [
    "apples",
    "marbles",
    "stickers",
    "cards",
    "shells",
    "pencils",
    "coins",
    "books",
]  # data/m0's tokenizer knows them
PEOPLE = ["Tom", "Mia", "Sam", "Ava", "Leo", "Zoe", "Ben", "Lily", "Max", "Emma", "Jack", "Nora"]
VERB = {"+": "finds {x} more {noun}", "-": "gives away {x} {noun}"}
MAX_VALUE = 49
KIND = "events"


def _event(who: str, sym: str, x: int, noun: str) -> str:
    return f"{who} " + VERB[sym].replace("{x}", str(x)).replace("{noun}", noun)


def render_step(
    meta: dict, i: int, a: int, sym: str, x: int, result, final: bool | None = None, who: str | None = None
) -> str:
    """Step ``i`` (0-based): the event in the question's words, then ``a sym x = result``; the last step boxes."""
    final = i == len(meta["ops"]) - 1 if final is None else final
    res = f"\\boxed{{{result}}}" if final else str(result)
    return f"{_event(who or meta['name'], sym, x, meta['noun'])}, so {a} {sym} {x} = {res}."


def question(meta: dict) -> str:
    name, other, noun = meta["name"], meta.get("other"), meta["noun"]
    people = [(name, meta["start"])]
    if other:
        people.append((other, meta["other_start"]))
        if meta.get("other_first"):
            people.reverse()
    parts = [f"{who} has {n} {noun}." for who, n in people]
    parts += [f"Then {_event(who, sym, x, noun)}." for who, sym, x in meta["story"]]
    parts.append(f"How many {noun} does {name} have now?")
    return " ".join(parts)


def _pick(rng: random.Random, knob) -> int:
    return rng.randint(*knob) if isinstance(knob, tuple | list) else int(knob)


def _walk(rng: random.Random, v: int, n: int) -> list[tuple[str, int]] | None:
    """``n`` events from ``v`` keeping every value in 1..MAX_VALUE, or None if the walk got stuck."""
    ops = []
    for _ in range(n):
        for _try in range(20):
            sym, x = rng.choice("+-"), rng.randint(2, 9)
            r = v + x if sym == "+" else v - x
            if 1 <= r <= MAX_VALUE:
                break
        else:
            return None
        ops.append((sym, x))
        v = r
    return ops


def sample(rng: random.Random, events=4, distractors=2, other_first: float = 0.0) -> dict:
    """One problem's metadata; ``events`` and ``distractors`` are counts or (lo, hi) ranges (a mix, for pretraining).

    ``other_first``: the chance that the question introduces the other person before the asked-about one.
    At 0.5 (data/m0-events was pretrained so) Step 1's start is a lookup a 0.9M model fails: seed 0's M1
    copied the other person's start in 222 of its 231 wrong starts (D = 2). The default, 0, keeps the choice
    the world is about (which events count), not where the start is.
    """
    n, d = _pick(rng, events), _pick(rng, distractors)
    noun = rng.choice(NOUNS)
    name, other = rng.sample(PEOPLE, 2)
    while True:
        start = rng.randint(10, 30)
        ops = _walk(rng, start, n)
        other_start = rng.randint(10, 30)
        other_ops = _walk(rng, other_start, d) if d else []
        if ops is not None and other_ops is not None:
            break
    # Distractors land anywhere between the events, never all at the end (that would make them free to ignore).
    slots = sorted(rng.randint(0, n - 1) for _ in range(d))
    story, k = [], 0
    for j, (sym, x) in enumerate(ops):
        while k < d and slots[k] == j:
            story.append([other, *other_ops[k]])
            k += 1
        story.append([name, sym, x])
    values = [start]
    for sym, x in ops:
        values.append(values[-1] + x if sym == "+" else values[-1] - x)
    meta = {
        "kind": KIND,
        "template": KIND,
        "name": name,
        "pron": "he",
        "noun": noun,
        "start": start,
        "ops": [list(o) for o in ops],
        "values": values,
        "story": story,
    }
    if d:
        meta.update(other=other, other_start=other_start, other_first=rng.random() < other_first)
    return meta


_HAS = re.compile(r"^([A-Z][a-z]+) has (\d+) ([a-z]+)\.$")
_THEN = re.compile(r"^Then ([A-Z][a-z]+) (?:finds (\d+) more|gives away (\d+)) ([a-z]+)\.$")
_ASK = re.compile(r"^How many ([a-z]+) does ([A-Z][a-z]+) have now\?$")


def parse(sentences: list[str]) -> dict | None:
    """The metadata of an events-world question split into sentences, or None if it is not one."""
    has = [m for s in sentences[:2] if (m := _HAS.match(s))]
    ask = _ASK.match(sentences[-1]) if sentences else None
    if not has or not ask:
        return None
    noun, name = ask[1], ask[2]
    starts = {m[1]: int(m[2]) for m in has}
    if name not in starts or any(m[3] != noun for m in has):
        return None
    story = []
    for s in sentences[len(has) : -1]:
        m = _THEN.match(s)
        if not m or m[4] != noun or m[1] not in starts:
            return None
        story.append([m[1], "+" if m[2] else "-", int(m[2] or m[3])])
    ops = [[sym, x] for who, sym, x in story if who == name]
    if not ops:
        return None
    values = [starts[name]]
    for sym, x in ops:
        values.append(values[-1] + x if sym == "+" else values[-1] - x)
    meta = {
        "kind": KIND,
        "template": KIND,
        "name": name,
        "pron": "he",
        "noun": noun,
        "start": starts[name],
        "ops": ops,
        "values": values,
        "story": story,
    }
    others = [who for who in starts if who != name]
    if others:
        meta.update(other=others[0], other_start=starts[others[0]], other_first=has[0][1] != name)
    return meta


_STEP_EVENT = re.compile(r"^([A-Z][a-z]+) (?:finds (\d+) more|gives away (\d+)) ([a-z]+), so\b")


def event_of(step: str) -> tuple[str, str, int, str] | None:
    """The event a step tells before its equation, as (who, sym, x, noun), or None if it tells none."""
    m = _STEP_EVENT.match(step.strip())
    return (m[1], "+" if m[2] else "-", int(m[2] or m[3]), m[4]) if m else None


def told(event: tuple[str, str, int, str] | None) -> str:
    """An event in words ("Tom finds 3 more apples"), or "no event"."""
    return _event(event[0], event[1], event[2], event[3]) if event else "no event"


CORRUPTIONS = ("distractor", "skipped", "repeated_event", "early_box", "wrong_sum")


def corrupt(problem: dict, k: int, kind: str, rng: random.Random) -> str | None:
    """A wrong version of reference step ``k`` of an events-world problem, or None if it has no such error.

    The kinds are the choices a policy gets wrong here, each visible by lookup in the question or the steps
    before: ``distractor`` (the other person's event, told as theirs or as the asked-about person's),
    ``skipped`` (a later event of the asked-about person), ``repeated_event`` (an earlier one again, on the
    current quantity), ``early_box`` (the right step boxing its result before the last event), and
    ``wrong_sum`` (the one arithmetic slip, kept rare in pretraining data by the caller's choice of kinds).
    """
    meta = problem["world"]
    ops, values = meta["ops"], meta["values"]
    a = values[k]

    def step(sym: str, x: int, who: str | None = None, final: bool | None = None, result=None) -> str | None:
        r = a + x if sym == "+" else a - x
        if r < 0:
            return None
        return render_step(meta, k, a, sym, x, r if result is None else result, final, who)

    if kind == "distractor":
        mine = {(s, x) for s, x in ops}
        theirs = [(s, x) for who, s, x in meta["story"] if who != meta["name"] and (s, x) != tuple(ops[k])]
        if not theirs:
            return None
        sym, x = rng.choice(theirs)
        # Told as the asked-about person's only when the quantity is not one of theirs (else it is "skipped").
        who = meta["other"] if (sym, x) in mine or rng.random() < 0.5 else None
        return step(sym, x, who)
    if kind == "skipped":
        later = [tuple(o) for o in ops[k + 1 :] if tuple(o) != tuple(ops[k])]
        return step(*rng.choice(later)) if later else None
    if kind == "repeated_event":
        # an earlier event that also comes again later would read as a skip to the next one
        earlier = [tuple(o) for o in ops[:k] if tuple(o) not in {tuple(o2) for o2 in ops[k:]}]
        return step(*rng.choice(earlier)) if earlier else None
    if kind == "early_box":
        return step(*ops[k], final=True) if k < len(ops) - 1 else None
    if kind == "wrong_sum":
        c = values[k + 1]
        return step(*ops[k], result=rng.choice([w for w in (c - 2, c - 1, c + 1, c + 2) if w >= 0]))
    raise ValueError(f"unknown corruption {kind!r}")
