"""Multi-step arithmetic word problems with step-by-step reference solutions (the offline world).

A problem is a start quantity followed by 2-4 operations (+, -, *, /) told as events of a short
story; every intermediate value and the answer is an integer in [1, 99]. Add/subtract operands are
mostly 2-9 (1 would read "1 dollars"): measured on 2 cores, a 0.9M-parameter model learns results < 100 with small operands
and learns almost nothing with results < 1000 (issue 9).

A reference step is one sentence that restates the quantity it starts from and ends with its
equation, e.g. "Tom then gives away 3 of his 8 apples, so 8 - 3 = 5."; the last step writes the
answer as ``\\boxed{}``. Most first errors of tiny models were copying the wrong quantity, so each
step names the number it copies next to the noun it belongs to.

Train and test are disjoint by construction: a problem's split is a hash of its content, and each
split only keeps problems that hash to it. Problem ``i`` of a (split, seed) depends only on
``i``, so ``generate_problems(10, s)`` is a prefix of ``generate_problems(100, s)``.
"""

from __future__ import annotations

import hashlib
import random
import re

from psr.world import events as events_world

# One story per template. Question sentences and step phrases use these slots:
# {name} {Pron} (He/She) {pos} (his/her) {noun} {x} (operand) {v} (quantity before the step).
# "*" and "/" words: {times} ("doubles"/"triples") in questions and steps.
TEMPLATES: dict[str, dict] = {
    "items": {
        "nouns": ["apples", "marbles", "stickers", "cards", "shells", "pencils", "coins", "books"],
        "start": "{name} has {a} {noun}.",
        "q": {
            "+": "Then {pron} finds {x} more {noun}.",
            "-": "Then {pron} gives away {x} {noun}.",
            "*": "Then {pron} {times} the number of {noun}.",
            "/": "Then {pron} splits the {noun} into {x} equal piles and keeps one pile.",
        },
        "first": "{name} starts with {a} {noun} and",
        "then": "{name} then",
        "step": {
            "+": "finds {x} more {noun} to add to {pos} {v}",
            "-": "gives away {x} of {pos} {v} {noun}",
            "*": "{times} {pos} {v} {noun}",
            "/": "splits {pos} {v} {noun} into {x} equal piles and keeps one",
        },
        "ask": "How many {noun} does {name} have now?",
    },
    "bus": {
        "nouns": ["passengers"],
        "start": "A bus leaves the depot with {a} passengers.",
        "q": {
            "+": "At the next stop, {x} people get on.",
            "-": "At the next stop, {x} people get off.",
            "*": "At the station, the number of passengers {times}.",
            "/": "At the square, the passengers form {x} equal groups and only one group stays on.",
        },
        "first": "The bus starts with {a} passengers and",
        "then": "The bus then",
        "step": {
            "+": "takes on {x} more people besides its {v} passengers",
            "-": "lets {x} of its {v} passengers off",
            "*": "{times} its {v} passengers",
            "/": "keeps one of {x} equal groups of its {v} passengers",
        },
        "ask": "How many passengers are on the bus now?",
    },
    "money": {
        "nouns": ["dollars"],
        "start": "{name} has {a} dollars.",
        "q": {
            "+": "Then {pron} earns {x} dollars.",
            "-": "Then {pron} spends {x} dollars on lunch.",
            "*": "Then {pron} {times} {pos} money.",
            "/": "Then {pron} splits {pos} money into {x} equal parts and keeps one part.",
        },
        "first": "{name} starts with {a} dollars and",
        "then": "{name} then",
        "step": {
            "+": "earns {x} dollars on top of {pos} {v} dollars",
            "-": "spends {x} of {pos} {v} dollars",
            "*": "{times} {pos} {v} dollars",
            "/": "keeps one of {x} equal parts of {pos} {v} dollars",
        },
        "ask": "How many dollars does {name} have now?",
    },
    "farm": {
        "nouns": ["chickens", "goats", "sheep", "ducks", "cows"],
        "start": "A farm has {a} {noun}.",
        "q": {
            "+": "Then the farmer buys {x} more {noun}.",
            "-": "Then the farmer sells {x} {noun}.",
            "*": "Then the number of {noun} {times}.",
            "/": "Then the farmer divides the {noun} into {x} equal herds and keeps one herd.",
        },
        "first": "The farm starts with {a} {noun} and",
        "then": "The farm then",
        "step": {
            "+": "gets {x} more {noun} to add to its {v}",
            "-": "sells {x} of its {v} {noun}",
            "*": "{times} its {v} {noun}",
            "/": "keeps one of {x} equal herds of its {v} {noun}",
        },
        "ask": "How many {noun} does the farm have now?",
    },
}

NAMES = [
    ("Tom", "he"),
    ("Mia", "she"),
    ("Sam", "he"),
    ("Ava", "she"),
    ("Leo", "he"),
    ("Zoe", "she"),
    ("Ben", "he"),
    ("Lily", "she"),
    ("Max", "he"),
    ("Emma", "she"),
    ("Jack", "he"),
    ("Nora", "she"),
]
TIMES = {2: "doubles", 3: "triples"}
MAX_VALUE = 99
TEST_FRACTION = 5  # one problem in 5, by content hash, belongs to the test split
SPLITS = ("train", "test")

# The equation that closes a step: "8 - 3 = 5", "9 * 2 = \boxed{18}". The last one in a step counts.
EQUATION = re.compile(r"(\d+)\s*([-+*/×÷x])\s*(\d+)\s*=\s*(?:\\boxed\s*\{\s*)?(-?\d+)")
SYMBOLS = {"×": "*", "x": "*", "÷": "/"}


def apply(a: int, sym: str, x: int) -> int | None:
    """The integer result of ``a sym x``, or None when it is not an integer."""
    if sym == "+":
        return a + x
    if sym == "-":
        return a - x
    if sym == "*":
        return a * x
    if x != 0 and a % x == 0:
        return a // x
    return None


def _slots(meta: dict) -> dict:
    pron = meta["pron"]
    return {
        "name": meta["name"],
        "pron": pron,
        "Pron": pron.capitalize(),
        "pos": "his" if pron == "he" else "her",
        "noun": meta["noun"],
    }


def _fill(text: str, **values) -> str:
    for k, v in values.items():
        text = text.replace("{" + k + "}", str(v))
    return text


def render_step(meta: dict, i: int, a: int, sym: str, x: int, result: int | str, final: bool | None = None) -> str:
    """Step ``i`` (0-based) of a problem, computing ``a sym x = result``.

    The numbers are taken as given, so a corrupted step (wrong sum, wrong quantity) reads as
    naturally as a right one. The last step boxes its result unless ``final`` says otherwise.
    """
    if meta.get("kind") == events_world.KIND:
        return events_world.render_step(meta, i, a, sym, x, result, final)
    t = TEMPLATES[meta["template"]]
    s = _slots(meta)
    final = i == len(meta["ops"]) - 1 if final is None else final
    intro = _fill(t["first"], a=a, **s) if i == 0 else _fill(t["then"], **s)
    phrase = _fill(t["step"][sym], x=x, v=a, times=TIMES.get(x, "multiplies by " + str(x)), **s)
    res = f"\\boxed{{{result}}}" if final else str(result)
    return f"{intro} {phrase}, so {a} {sym} {x} = {res}."


def _question(meta: dict) -> str:
    if meta.get("kind") == events_world.KIND:
        return events_world.question(meta)
    t = TEMPLATES[meta["template"]]
    s = _slots(meta)
    parts = [_fill(t["start"], a=meta["start"], **s)]
    for sym, x in meta["ops"]:
        parts.append(_fill(t["q"][sym], x=x, times=TIMES.get(x, ""), **s))
    parts.append(_fill(t["ask"], **s))
    return " ".join(p[0].upper() + p[1:] for p in parts)


def _sample(rng: random.Random) -> dict:
    template = rng.choice(sorted(TEMPLATES))
    name, pron = rng.choice(NAMES)
    noun = rng.choice(TEMPLATES[template]["nouns"])
    if "{name}" not in TEMPLATES[template]["start"]:
        name, pron = "", "he"  # a nameless story: keeps the metadata equal to what the question says
    n_ops = rng.choice([2, 3, 4])
    while True:
        v = rng.randint(2, 30)
        start, ops, values = v, [], [v]
        for _ in range(n_ops):
            choices = ["+", "-"] * 3 + ["*", "/"]
            rng.shuffle(choices)
            for sym in choices:
                if sym in "+-":
                    x = rng.randint(2, 9) if rng.random() < 0.85 else rng.randint(10, 20)
                elif sym == "*":
                    x = rng.choice([2, 3])
                else:
                    x = rng.choice([2, 3])
                r = apply(v, sym, x)
                if r is not None and 1 <= r <= MAX_VALUE and r != v:
                    break
            else:
                break
            ops.append((sym, x))
            values.append(r)
            v = r
        if len(ops) == n_ops:
            return {
                "template": template,
                "name": name,
                "pron": pron,
                "noun": noun,
                "start": start,
                "ops": [list(o) for o in ops],
                "values": values,
            }


def split_of(question: str) -> str:
    """The split a question belongs to (by content, so no question is ever in both)."""
    h = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16)
    return "test" if h % TEST_FRACTION == 0 else "train"


def make_problem(meta: dict, pid: str) -> dict:
    steps = [
        render_step(meta, i, meta["values"][i], sym, x, meta["values"][i + 1]) for i, (sym, x) in enumerate(meta["ops"])
    ]
    return {
        "id": pid,
        "question": _question(meta),
        "answer": str(meta["values"][-1]),
        "solution": " ".join(steps),
        "steps": steps,
        "world": meta,
    }


WORLDS = ("arith", events_world.KIND)


def generate_problems(
    n: int, seed: int = 0, split: str = "train", world: str = "arith", events=4, distractors=2, other_first: float = 0.0
) -> list[dict]:
    """``n`` distinct problems of ``split`` ("train" or "test"), deterministic in (n, seed, split) and the world.

    ``world`` "arith" (the default, the original world) or "events" (psr.world.events: ``events`` events of
    the asked-about person and ``distractors`` of someone else, each a count or a (lo, hi) range, and
    ``other_first`` the chance that the other person is introduced first).

    Records: ``id``, ``question``, ``answer`` (str), ``solution`` (the steps as one paragraph, for
    ``psr segment``), ``steps`` (the reference segmentation), ``world`` (start, ops, values, story).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    out, seen = [], set()
    i = 0
    # The arithmetic world's seed strings are unchanged, so its data (and the old null result) reproduce.
    tag = "" if world == "arith" else f"{world}:{events}:{distractors}:"
    while len(out) < n:
        rng = random.Random(f"psr-world:{tag}{split}:{seed}:{i}")
        i += 1
        while True:
            meta = _sample(rng) if world == "arith" else events_world.sample(rng, events, distractors, other_first)
            prob = make_problem(meta, f"world-{split}-{seed}-{len(out)}")
            if split_of(prob["question"]) == split:
                break
        if prob["question"] in seen:
            continue
        seen.add(prob["question"])
        out.append(prob)
    return out


# ------------------------------------------------------------------------------------------------
# Reading a question back (the oracle sees only prompts)


def _pattern(text: str) -> str:
    """A template sentence -> a regex; the first use of each slot is a named group."""
    out = re.escape(text)
    for slot, rx in (
        ("a", r"\d+"),
        ("x", r"\d+"),
        ("times", r"doubles|triples"),
        ("name", r"[A-Z][a-z]+"),
        ("pron", r"[Hh]e|[Ss]he"),
        ("pos", r"his|her"),
        ("noun", r"[a-z]+"),
    ):
        key = re.escape("{" + slot + "}")
        out = out.replace(key, f"(?P<{slot}>{rx})", 1).replace(key, f"(?:{rx})")
    return "^" + out + "$"


_Q_PATTERNS = [
    (tname, sym, re.compile(_pattern(t["q"][sym][0].upper() + t["q"][sym][1:])))
    for tname, t in TEMPLATES.items()
    for sym in t["q"]
]
_START_PATTERNS = [(tname, re.compile(_pattern(t["start"]))) for tname, t in TEMPLATES.items()]
_SENTENCE = re.compile(r"(?<=[.?])\s+(?=[A-Z])")


_PRONOUNS = dict(NAMES)


def parse_question(question: str) -> dict | None:
    """Recover the ``world`` metadata (story, start, ops, values) of a question, or None if not one."""
    sentences = _SENTENCE.split(question.strip())
    if len(sentences) < 3:
        return None
    if (meta := events_world.parse(sentences)) is not None:
        return meta
    for template, rx in _START_PATTERNS:
        m = rx.match(sentences[0])
        if m:
            parsed = _parse_ops(template, int(m["a"]), sentences[1:-1])
            if parsed is not None:
                name = m.groupdict().get("name") or ""
                noun = m.groupdict().get("noun") or TEMPLATES[template]["nouns"][0]
                return {"template": template, "name": name, "pron": _PRONOUNS.get(name, "he"), "noun": noun, **parsed}
    return None


def _parse_ops(template: str, start: int, sentences: list[str]) -> dict | None:
    ops, values = [], [start]
    for sent in sentences:
        for tname, sym, rx in _Q_PATTERNS:
            m = rx.match(sent) if tname == template else None
            if m:
                x = int(m["x"]) if m.groupdict().get("x") else {"doubles": 2, "triples": 3}[m["times"]]
                r = apply(values[-1], sym, x)
                if r is None:
                    return None
                ops.append([sym, x])
                values.append(r)
                break
        else:
            return None
    return {"start": start, "ops": ops, "values": values}


def parse_equation(step: str) -> tuple[int, str, int, int] | None:
    """The last ``a op b = c`` of a step as (a, op, b, c), or None."""
    found = EQUATION.findall(step)
    if not found:
        return None
    a, sym, b, c = found[-1]
    return int(a), SYMBOLS.get(sym, sym), int(b), int(c)
