"""Answer forms for the ``default`` grader: strings rewritten so that equal answers look equal.

String work only (sympy comparison is in psr.core.equality). Each rule and its failure kind:

* LaTeX noise: delimiters, ``\\left``/``\\right``, spacing commands, ``\\dfrac``, ``\\displaystyle``.
* units: ``5\\text{ cm}``, ``\\textbf{meters}``, ``\\textnormal{ miles}``, ``\\mbox{ cm}``, ``12 inches``.
* percent spellings: ``28 pct``, ``28 percentage``, ``28 percent`` -> ``28\\%`` (compared as numbers).
* thousands separators: ``1,234``, ``1{,}234``, ``1\\,234``, ``32,\\! 349``, ``1 000``; a decimal
  comma (``2,74``, ``0,111``) is a reading the comparison tries (psr.core.equality).
* relations: ``\\lt``, ``<=``, ``\\leqslant``, ``!=`` ... one spelling; a one-variable inequality
  is also an interval (``k < -5`` is ``(-\\infty,-5)``, ``\\frac12 \\le x \\le 8`` is ``[\\frac12,8]``).
* several answers: items split on top-level commas, semicolons, "and"/"or", ``\\text{ and }``,
  ``\\quad``; ``p=5,q=2`` (a solution written as equations) is the tuple ``(5,2)``; ``a \\pm b``
  is the two answers ``a-b, a+b``.
* labels: ``x = 5``, ``f(x) = 2x``, ``y_{2} = ...``, ``(x, y) = (1, 2)``, ``AB = 4`` -> the value;
  a left side that is a number (``7 = 11a+c``) is not a label, so that equation stays whole.
"""

from __future__ import annotations

import re

_TEXT_CMD = re.compile(
    r"\\(?:text|textbf|textit|textnormal|textrm|mathrm|mathbf|mathit|mbox|operatorname)"
    r"\s*\{([^{}]*)\}"
)
_THOUSANDS = re.compile(r"^[+-]?[1-9]\d{0,2}(?:(?:,|\{,\}|\\,| |~)\d{3})+(?:\.\d+)?$")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_PERCENT_WORD = re.compile(r"\s*(?:\\text\{\s*)?(?:percentage|percent|pct)\.?\s*\}?\s*$", re.I)
UNIT_WORDS = {
    # length, area, volume, mass, time, speed, money, counting nouns that often trail a number
    "mm",
    "cm",
    "m",
    "km",
    "in",
    "inch",
    "inches",
    "ft",
    "foot",
    "feet",
    "yd",
    "yard",
    "yards",
    "mile",
    "miles",
    "meter",
    "meters",
    "metre",
    "metres",
    "centimeter",
    "centimeters",
    "kilometer",
    "kilometers",
    "sq",
    "square",
    "cubic",
    "units",
    "unit",
    "g",
    "kg",
    "gram",
    "grams",
    "kilogram",
    "kilograms",
    "lb",
    "lbs",
    "pound",
    "pounds",
    "ounce",
    "ounces",
    "oz",
    "l",
    "liter",
    "liters",
    "litre",
    "litres",
    "ml",
    "gallon",
    "gallons",
    "s",
    "sec",
    "second",
    "seconds",
    "min",
    "minute",
    "minutes",
    "h",
    "hr",
    "hrs",
    "hour",
    "hours",
    "day",
    "days",
    "week",
    "weeks",
    "month",
    "months",
    "year",
    "years",
    "mph",
    "kph",
    "dollar",
    "dollars",
    "cent",
    "cents",
    "degree",
    "degrees",
    "radian",
    "radians",
    "people",
    "students",
    "times",
    "ways",
    "points",
    "yuan",
    "euros",
    "euro",
    "m²",
    "cm²",
}
# a number, then words (and ^2/^3) up to the end; one flat character class, so no backtracking blow-up
_TRAILING_WORDS = re.compile(r"^(.*?\d[^a-zA-Z]*?)\s*([a-zA-Z][a-zA-Z.\s^{}²³23]*)$")
_REL = [
    (re.compile(p), r)
    for p, r in [
        (r"\\leqslant|\\leq|\\le(?![a-zA-Z])|<=|≤", r"\\leq "),
        (r"\\geqslant|\\geq|\\ge(?![a-zA-Z])|>=|≥", r"\\geq "),
        (r"\\neq|\\ne(?![a-zA-Z])|!=|≠", r"\\neq "),
        (r"\\lt(?![a-zA-Z])", "<"),
        (r"\\gt(?![a-zA-Z])", ">"),
    ]
]


def strip_text_commands(s: str) -> str:
    """``\\text{Monday}`` -> ``Monday`` (also \\mathrm, \\mbox, ... one level at a time)."""
    for _ in range(3):
        new = _TEXT_CMD.sub(r"\1", s)
        if new == s:
            break
        s = new
    return s


def strip_units(s: str) -> str:
    """Drop a unit after a number: ``5\\text{ cm}``, ``12 inches``, ``3 square feet`` -> the number part."""
    s = s.strip()
    m = re.match(
        r"^(.*?\S)\s*\\(?:text|textbf|textnormal|textrm|mbox|mathrm)\s*\{\s*[a-zA-Z][a-zA-Z .^]*\}"
        r"\s*(?:\^\{?[23]\}?)?$",
        s,
    )
    if m and re.search(r"\d", m.group(1)):
        s = m.group(1).strip()
    m = _TRAILING_WORDS.match(s)
    if m and all(w.strip(".").lower() in UNIT_WORDS for w in re.findall(r"[a-zA-Z²]+\.?", m.group(2))):
        # a one-letter unit ("5 s", "3 m") needs a space before it: "3s^2" is algebra
        if len(re.match(r"[a-zA-Z]*", m.group(2)).group(0)) > 1 or s[len(m.group(1)) :][:1].isspace():
            s = m.group(1).strip()
    return s


def strip_thousands(s: str) -> str:
    """``1,234,567`` / ``1{,}234`` / ``1\\,234`` / ``1 000`` -> ``1234567``; ``1,23`` is left alone."""
    t = s.strip()
    if _THOUSANDS.match(t):
        return re.sub(r"\{,\}|\\,|,| |~", "", t)
    return s


def relations(s: str) -> str:
    """One spelling per relation symbol."""
    for rx, rep in _REL:
        s = rx.sub(rep, s)
    return s


def normalize(s: str, drop_label: bool = True) -> str:
    """A canonical string for equality: LaTeX noise, units, degrees, thousands separators removed.

    Percent signs are kept (``50\\%`` must not silently equal ``50`` or ``0.5`` by string); the
    grader compares percents numerically.
    """
    s = s.strip()
    s = re.sub(r",\\!\s*(?=\d{3})", ",", s)  # "32,\! 349": a thousands comma with a negative space
    s = re.sub(r"\\[\[\]()]", "", s)  # \[ \] \( \) delimiters
    s = s.replace("\\$", "").replace("$", "").replace("\\!", "").replace("\\displaystyle", "")
    s = re.sub(r"\\[dtc]frac", r"\\frac", s)
    s = re.sub(r"\\(?:left|right|bigg|Bigg|big|Big)(?![a-zA-Z])", "", s)
    s = s.replace("\\{", "{").replace("\\}", "}")
    s = re.sub(r"\\begin\{array\}\{[^{}]*\}", r"\\begin{pmatrix}", s).replace("\\end{array}", "\\end{pmatrix}")
    s = re.sub(r"(?<!\\)\\[ ;,:]", " ", s).replace("\\quad", " ")  # LaTeX spaces, not a "\\" row break
    s = s.replace("bmatrix", "pmatrix")
    s = relations(s)
    s = _DEGREES.sub("", s)
    if re.search(r"\d", s) and _PERCENT_WORD.search(s):
        s = _PERCENT_WORD.sub("", s) + "\\%"
    s = strip_units(s)
    s = strip_text_commands(s)
    s = s.rstrip(".").strip()
    s = _DOMAIN.sub("", s)
    if drop_label:
        s = label_value(s)
    m = re.match(r"^(.+?)\\in\s*(.+)$", s)
    if m and is_label(m.group(1)):
        s = m.group(2)
    s = strip_thousands(s)
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"(\d)\.0+(?!\d)", r"\1", s)  # 3.00 -> 3
    s = re.sub(r"^\((\w)\)$", r"\1", s)  # "(C)" -> "C" (a choice letter)
    s = re.sub(r"^[(\[](\\begin\{pmatrix\}.*\\end\{pmatrix\})[)\]]$", r"\1", s)  # a matrix in brackets
    return s.lower() if re.fullmatch(r"[A-Za-z ]+", s) else s


# a name standing for the answer: x, x_1, y_{2}, f(x), W(n), AB, |AB|, \angle ABC, (x, y), a:b names
_LABEL = re.compile(
    r"\s*(?:\\?[a-zA-Z]{1,3}(?:_\{?\w+\}?)?(?:\^\{?-?\w+\}?)?(?:\([a-zA-Z, ]*\))?|\|[A-Za-z]{1,3}\|"
    r"|\\angle\s*[A-Z]{1,3}|\([a-zA-Z](?:\s*,\s*[a-zA-Z])+\)"
    r"|[A-Za-z]{1,2}(?:_\{?\w+\}?)?\s*:\s*[A-Za-z]{1,2}(?:_\{?\w+\}?)?"
    r"|\\frac\{[A-Za-z]{1,3}\}\{[A-Za-z]{1,3}\}|[A-Za-z]{1,3}\s*/\s*[A-Za-z]{1,3})\s*"
)
# "f(x)=x-1, x \in \mathbb{R}", "... \text{ for all } x": where an answer holds, not part of it
_DOMAIN = re.compile(
    r"(?:,|\\quad|\s)\s*(?:\\forall\s*\w|\\text\{\s*for (?:all|every|any)\b|for (?:all|every) |"
    r"[a-z]\s*\\in\s*\\mathbb\{[RNZQC]\}\S*$).*$"
)
_NOT_LABELS = {"\\pi", "\\infty", "e", "i"}


def is_label(s: str) -> bool:
    return bool(_LABEL.fullmatch(s)) and s.strip() not in _NOT_LABELS


def label_value(s: str) -> str:
    """``x = 5`` -> ``5``; ``x = 5+5+1 = 11`` -> ``11`` (a chain: its last value); other equations whole."""
    parts = split_top_level(s, "=")
    if len(parts) < 2 or any(not p for p in parts) or re.search(r"[<>!:]$|\\(?:leq|geq|neq)\s*$", parts[0]):
        return s
    if is_label(parts[0]) and all(not re.search(r"[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", p)) for p in parts[1:-1]):
        return parts[-1]
    return s


def split_top_level(s: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside any (), [], {} nesting."""
    parts, depth, cur = [], 0, []
    for c in s:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


_JOINERS = re.compile(
    r"\\(?:text|mbox|textnormal)\{\s*(?:,?\s*and|or|,)\s*\}|\\q?quad|(?<=[\s\d)}\]])(?:and|or)"
    r"(?=[\s\d(\\A-Za-z-])|\s+(?:and|or)\s+"
)


def answer_items(s: str) -> list[str]:
    """The answers in ``s`` when it holds several (``1, 2``, ``6 \\text{ and } 8``, ``p=5,q=2;p=7,q=2``,
    ``\\pm 2021``); a one-element list otherwise. Items keep their own form (not normalized)."""
    s = re.sub(r"\\[{}]", lambda m: m.group(0)[1], s.strip().strip("$").strip())
    s = re.sub(r"\\left|\\right", "", s)
    s = re.sub(r"(\d),\\!\s*(?=\d{3})", r"\1,", s)
    s = re.sub(r"(?<=[\[(])[^\[\]()]*(?=[\])])", lambda m: m.group(0).replace(";", ","), s)  # (0;0;6)
    if not re.search(r"\\begin\{", s):
        s = _JOINERS.sub(";", s)
    b = _outer_braces(s)
    if b is not None and ("," in b or ";" in b):
        s = b  # "{1, 2}": a set of answers
    items = []
    for group in split_top_level(s, ";"):
        parts = [p for p in split_top_level(group) if p]
        labels = [p.partition("=")[0].strip() for p in parts]
        if len(parts) > 1 and all(_label_and_value(p) for p in parts) and len(set(labels)) == len(labels):
            items.append("(" + ",".join(_label_and_value(p) for p in parts) + ")")  # p=5,q=2 -> (5,2)
        else:
            items.extend(parts)
    out = []
    for it in items:
        out.extend(_plus_minus(it))
    return [it for it in out if it.strip(" ,.")] or [s]


def _outer_braces(s: str) -> str | None:
    if len(s) > 1 and s[0] == "{" and s[-1] == "}":
        depth = 0
        for i, c in enumerate(s):
            depth += (c == "{") - (c == "}")
            if depth == 0 and i < len(s) - 1:
                return None
        return s[1:-1]
    return None


def _label_and_value(p: str) -> str | None:
    lhs, eq, rhs = p.partition("=")
    return rhs.strip() if eq and is_label(lhs) and rhs.strip() and "=" not in rhs else None


def _plus_minus(s: str) -> list[str]:
    """``a \\pm b`` -> [a-b, a+b]; ``\\pm b`` -> [-b, b] (only a top-level, single \\pm)."""
    label, eq, value = s.rpartition("=")
    if not eq or not is_label(label):
        label, value = "", s
    if value.count("\\pm") != 1 or re.search(r"[{(\[][^})\]]*\\pm", value):
        return [s]
    a, _, b = value.partition("\\pm")
    return [
        f"{a.strip()}-{b.strip()}" if a.strip() else f"-{b.strip()}",
        f"{a.strip()}+{b.strip()}" if a.strip() else b.strip(),
    ]


_INEQ = re.compile(r"^(?:(?P<a>[^<>=]+?)(?P<r1><|\\leq)\s*)?(?P<v>[^<>=]+?)(?P<r2><|\\leq)(?P<b>[^<>=]+)$")


def inequality_interval(s: str) -> str | None:
    """A one-variable inequality as an interval string, or None: ``x<3`` -> ``(-\\infty,3)``,
    ``-2\\leq x\\leq 7`` -> ``[-2,7]``, ``x\\geq 5`` -> ``[5,\\infty)``, ``x\\neq 5`` -> a union."""
    s = relations(s).replace(" ", "")
    m = re.fullmatch(r"([^<>=]+?)\\neq(.+)", s)
    if m and is_label(m.group(1)):
        v = m.group(2)
        return f"(-\\infty,{v})\\cup({v},\\infty)"
    if ">" in s or "\\geq" in s:  # read it backwards: a>x>b is b<x<a
        parts = re.split(r"(>|\\geq)", s)
        if any(r in s for r in ("<", "\\leq")):
            return None
        flipped = {">": "<", "\\geq": "\\leq"}
        s = "".join(flipped.get(p, p) for p in reversed(parts))
    m = _INEQ.match(s)
    if not m:
        return None
    a, v, b = m.group("a"), m.group("v"), m.group("b")
    if a is None:
        if is_label(v) and not v.startswith("|"):
            return f"(-\\infty,{b}{')' if m.group('r2') == '<' else ']'}"
        if is_label(b) and not b.startswith("|"):  # "3 < x": x in (3, oo)
            return f"{'(' if m.group('r2') == '<' else '['}{v},\\infty)"
        return None
    if not is_label(v) or v.startswith("|"):
        return None
    return f"{'(' if m.group('r1') == '<' else '['}{a},{b}{')' if m.group('r2') == '<' else ']'}"
