"""Are two final answers equal? The comparison of the ``default`` grader.

Exact numbers first (fractions vs decimals, percent, mixed numbers, decimal commas), then
structures element by element (matrices, unions, intervals, tuples, sets, several answers), then
equations, then math-verify (its LaTeX parser and ``verify``) for the symbolic rest, with a
second opinion from latex2sympy where math-verify rounds. What each rule is for (issue 21):

* several answers are a set: ``\\boxed{1}, \\boxed{2}`` vs ``{1,2,3}`` minus one differ, repeated
  items count once (``(3,17,3,7)`` written twice), ``\\pm 2021`` is ``{-2021, 2021}``.
* decimal comma vs thousands: ``2,74`` is 2.74 when the other side is one number and the comma
  cannot be a thousands separator (not exactly three digits after it, or a leading ``0,``).
* percent: ``50\\%`` equals 0.5 and 50; when the question asks for a percent, a bare number is read
  as a percent only (so 0.2 does not answer "what percent" with gold 20).
* inequalities vs intervals: a gold inequality is answered by its interval (``k < -5`` by
  ``(-\\infty,-5)``), two inequalities compare as intervals; a gold interval is not answered by an
  inequality (the question asked for interval notation; math-verify decides the same).
* equations: ``2x+4y-3=0`` vs ``y=-\\frac12x+\\frac34`` are equal when left minus right differ by a
  nonzero constant factor; an equation never equals a bare expression (``7 = 11a+c`` vs
  ``11a+c``: math-verify strips the left side there).
"""

from __future__ import annotations

import functools
import logging
import re
from fractions import Fraction

from psr.core.normalize import (
    answer_items,
    inequality_interval,
    is_label,
    normalize,
    split_top_level,
    strip_text_commands,
)
from psr.core.qwen_equal import surely_different
from psr.core.qwen_eval import qwen_strip_string

_INT = r"[+-]?\d+"
_DEC = r"[+-]?(?:\d+\.\d*|\.\d+|\d+)"
_BASE = re.compile(r"(-?[0-9A-Za-z.]+)_\{?(\d+)\}?")
_MATRIX = re.compile(r"^\\begin\{[pbvBV]?matrix\}((?:(?!\\end\{|\\begin\{).)*)\\end\{[pbvBV]?matrix\}$", re.S)
MAX_DEPTH = 6


def mv():
    import math_verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns on every call that timeouts are off
    return math_verify


def mv_parse_latex(text: str):
    m = mv()
    return m.parse(text, [m.LatexExtractionConfig()], parsing_timeout=None)


def _mv_equal(pred: str, gold: str) -> bool:
    g, p = mv_parse_latex("\\boxed{" + gold + "}"), mv_parse_latex("\\boxed{" + pred + "}")
    return bool(g and p and mv().verify(g, p, timeout_seconds=None))


def to_number(s: str) -> tuple[Fraction, int | None, bool] | None:
    """A normalized answer as an exact number: (value, decimals written or None for a fraction,
    had a percent sign), or None. Handles ``-3``, ``2.5``, ``\\frac{1}{2}``, ``-\\frac12``, ``1/2``,
    ``2\\frac{1}{4}`` (mixed), ``50\\%``.
    """
    s = s.strip()
    pct = bool(re.search(r"\\?%$", s))
    s = re.sub(r"\\?%$", "", s).strip()
    if re.fullmatch(_DEC, s):
        decimals = len(s.split(".")[1]) if "." in s else 0
        return Fraction(s), decimals, pct
    m = re.fullmatch(r"([+-]?)\\frac\{(" + _INT + r")\}\{(" + _INT + r")\}", s) or re.fullmatch(
        r"([+-]?)(" + _INT + r")/(" + _INT + r")", s
    )
    if m and int(m.group(3)) != 0:
        v = Fraction(int(m.group(2)), int(m.group(3)))
        return (-v if m.group(1) == "-" else v), None, pct
    m = re.fullmatch(r"([+-]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}", s)
    if m and int(m.group(4)) != 0 and int(m.group(3)) < int(m.group(4)):
        v = int(m.group(2)) + Fraction(int(m.group(3)), int(m.group(4)))
        return (-v if m.group(1) == "-" else v), None, pct
    return None


def _decimal_comma(s: str) -> str | None:
    """``2,74`` -> ``2.74``; None where the comma may be a thousands separator or a list."""
    m = re.fullmatch(r"(-?\d+),(\d+)(\\?%)?", s)
    if m and (len(m.group(2)) != 3 or m.group(1).lstrip("-") == "0"):
        return f"{m.group(1)}.{m.group(2)}{m.group(3) or ''}"
    return None


def _terminates(x: Fraction) -> bool:
    d = x.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _numbers_equal(a, b, percent_question: bool = False) -> bool:
    """Exact equality; a decimal of 3+ places also equals a fraction it rounds or truncates
    (0.333 vs 1/3), never another decimal (0.35625 vs 0.35626 differ)."""
    (x, x_dec, x_pct), (y, y_dec, y_pct) = a, b
    candidates = [x]
    if x_pct != y_pct and not percent_question:  # "50%" vs "0.5" or vs "50": either reading is fine
        candidates.append(x / 100 if x_pct else x * 100)
    return any(c == y or _rounds_to(c, x_dec, y, y_dec) or _rounds_to(y, y_dec, c, x_dec) for c in candidates)


def _rounds_to(decimal: Fraction, places: int | None, fraction: Fraction, frac_places: int | None) -> bool:
    """``decimal`` (written with ``places`` >= 3) is ``fraction`` (non-terminating) rounded or cut."""
    return (
        places is not None
        and places >= 3
        and frac_places is None
        and not _terminates(fraction)
        and abs(decimal - fraction) <= Fraction(1, 10**places)
    )


def _matrix_cells(s: str) -> list[list[str]] | None:
    m = _MATRIX.match(s)
    if not m:
        return None
    rows = [r for r in re.split(r"\\\\", m.group(1)) if r.strip()]
    return [[c.strip() for c in r.split("&")] for r in rows]


def _brackets(s: str) -> tuple[str, str, str] | None:
    """``"(1,2]"`` -> ("(", "1,2", "]") when the outer brackets enclose the whole string."""
    if len(s) < 2 or s[0] not in "([{" or s[-1] not in ")]}":
        return None
    depth = 0
    for i, c in enumerate(s):
        depth += c in "([{"
        depth -= c in ")]}"
        if depth == 0 and i < len(s) - 1:
            return None  # e.g. "(1,2)\cup(3,4)" or "(a)(b)"
    return s[0], s[1:-1], s[-1]


def _dedupe(xs: list[str], depth: int) -> list[str]:
    out: list[str] = []
    for x in xs:
        if not any(x == y or _equal(x, y, depth=depth + 1) for y in out):
            out.append(x)
    return out


def _unordered_equal(xs: list[str], ys: list[str], depth: int, dedupe: bool = False) -> bool:
    if dedupe:
        xs, ys = _dedupe(xs, depth), _dedupe(ys, depth)
    if len(xs) != len(ys):
        return False
    left = list(ys)
    for x in xs:
        hit = next((j for j, y in enumerate(left) if _equal(x, y, depth=depth + 1)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


def answers_equal(pred: str, gold: str, percent_question: bool = False) -> bool:
    """Is the extracted answer ``pred`` the gold answer? Several answers compare as sets."""
    return _equal(pred, gold, percent_question)


def _equal(pred: str, gold: str, percent_question: bool = False, depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        return False
    ip, ig = answer_items(pred), answer_items(gold)
    if (len(ip) > 1 or len(ig) > 1) and _unordered_equal(ip, ig, depth, dedupe=True):
        return True
    return _equal_one(pred, gold, percent_question, depth)


def _top_equation(s: str) -> tuple[str, str] | None:
    parts = split_top_level(s, "=")
    if len(parts) == 2 and all(parts) and not re.search(r"[<>!:]$", parts[0]):
        return parts[0], parts[1]
    return None


def _equal_one(pred: str, gold: str, percent_question: bool, depth: int) -> bool:
    np_, ng = normalize(pred), normalize(gold)
    if not np_:
        return False
    if np_ == ng:
        return True
    rp, rg = _top_equation(normalize(pred, drop_label=False)), _top_equation(normalize(gold, drop_label=False))
    if rp and rg:
        if _equations_equal(rp, rg):
            return True
        if not (is_label(rp[0]) and is_label(rg[0])):
            return False
    elif rg and not is_label(rg[0]):
        return False  # "7 = 11a+c" is not "11a+c" (math-verify strips that left side)
    elif rp and not is_label(rp[0]):
        if re.search(r"[a-zA-Z]", re.sub(r"\\(?:frac|sqrt|pi|cdot|times|circ)", "", rp[1])):
            return False  # "x + y = 2z" is not "2z"
        np_ = normalize(rp[1])  # "f(9)-f(3) = 210", "\frac12 \cdot 3 = 1.5": what it computes, and the value
    # benchmark golds are Qwen-stripped (benchmarks README): compare in that form too, without the
    # unit-word removal that mangles single letters
    qp, qg = qwen_strip_string(pred, skip_unit=True), qwen_strip_string(gold, skip_unit=True)
    if qp and qp.lower() == qg.lower() and not (rp or rg):
        return True
    if gold == qwen_strip_string(gold) and qwen_strip_string(pred) == gold:
        return True  # a gold in the evaluator's form, mangled by its unit list ("\\pm" -> "\\", "(a+5)" -> "(+5)")
    ip, ig = inequality_interval(np_), inequality_interval(ng)
    if ip and ig or ig and _is_set(np_):
        return _equal(ip, ig, percent_question, depth + 1) if ip else _equal(np_, ig, percent_question, depth + 1)
    if ip and _is_set(ng):
        return False  # an inequality does not answer "in interval notation" (math-verify's rule too)
    bp_, bg_ = _BASE.fullmatch(np_), _BASE.fullmatch(ng)
    if bp_ or bg_:  # "1101_4": digits and base must both agree (a missing base is taken as the gold's)
        dp, basep = (bp_.group(1), bp_.group(2)) if bp_ else (np_, None)
        dg, baseg = (bg_.group(1), bg_.group(2)) if bg_ else (ng, None)
        return dp.lower() == dg.lower() and (basep is None or baseg is None or int(basep) == int(baseg))
    xp, xg = to_number(np_), to_number(ng)
    if xp is None and xg is not None and _decimal_comma(np_):
        xp = to_number(_decimal_comma(np_))
    if xg is None and xp is not None and _decimal_comma(ng):
        xg = to_number(_decimal_comma(ng))
    if xp and xg:
        return _numbers_equal(xp, xg, percent_question)
    structural = _structures_equal(np_, ng, depth)
    if structural is not None:
        return structural
    if re.fullmatch(r"[a-z ]+", strip_text_commands(np_).lower()) and not re.search(r"\d", ng):
        return False  # two different words: nothing symbolic to compare
    return _mv_equal(np_, ng) and not _differ_in_value(np_, ng)


def _is_set(s: str) -> bool:
    return bool(re.match(r"[(\[]", s) and re.search(r"[)\]]$", s)) or "\\cup" in s or s == "\\mathbb{R}"


def _structures_equal(np_: str, ng: str, depth: int) -> bool | None:
    """Matrices, unions, intervals, tuples, sets, lists; None when neither side is one."""
    mp_, mg = _matrix_cells(np_), _matrix_cells(ng)
    if mp_ is not None and mg is not None:
        return [len(r) for r in mp_] == [len(r) for r in mg] and all(
            _equal(a, b, depth=depth + 1) for ra, rb in zip(mp_, mg, strict=True) for a, b in zip(ra, rb, strict=True)
        )
    up, ug = np_.split("\\cup"), ng.split("\\cup")
    if len(up) > 1 or len(ug) > 1:
        if len(up) == len(ug) and _unordered_equal(up, ug, depth):
            return True
        return None if "|" in np_ + ng else False  # |z| bounds: math-verify's relation-to-set reading
    bp, bg = _brackets(np_), _brackets(ng)
    if bp or bg:
        if bp and bg and bp[0] + bp[2] == bg[0] + bg[2]:
            ep, eg = split_top_level(bp[1]), split_top_level(bg[1])
            if len(ep) > 1 or len(eg) > 1:
                if bp[0] == "{":
                    return _unordered_equal(ep, eg, depth, dedupe=True)
                return len(ep) == len(eg) and all(_equal(a, b, depth=depth + 1) for a, b in zip(ep, eg, strict=True))
        elif (bp and bp[0] == "{" and not bg) or (bg and bg[0] == "{" and not bp):
            # "{1,2}" vs "1, 2": a set written as a list
            inner_p, inner_g = (bp[1] if bp else np_), (bg[1] if bg else ng)
            return _unordered_equal(split_top_level(inner_p), split_top_level(inner_g), depth, dedupe=True)
        return None
    ep, eg = split_top_level(np_), split_top_level(ng)
    if len(ep) > 1 or len(eg) > 1:  # several answers, order free ("2, -3" vs "-3, 2")
        return _unordered_equal(ep, eg, depth, dedupe=True)
    return None


def _latex(s: str):
    from latex2sympy2_extended import latex2sympy

    return latex2sympy(s)


def _equations_equal(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """``L1 = R1`` and ``L2 = R2`` say the same when L1 - R1 is a nonzero constant times L2 - R2."""
    from sympy import simplify

    try:
        da, db = _latex(a[0]) - _latex(a[1]), _latex(b[0]) - _latex(b[1])
        if da == 0 or db == 0:
            return da == db
        ratio = simplify(da / db)
        return bool(ratio.is_number and ratio != 0 and ratio.is_finite)
    except Exception:  # noqa: BLE001 - unparsable: no verdict from this rule
        return False


@functools.lru_cache(maxsize=4096)
def _differ_in_value(pred: str, gold: str) -> bool:
    """A second opinion on a math-verify "equal": it rounds numbers to 6 places and drops some
    letters as units, so 1/2004! equals 1/2005! and 3s^2 equals 3s^3 there."""
    try:
        return surely_different(_latex(pred), _latex(gold), exact=True)
    except Exception:  # noqa: BLE001 - unparsable here: keep math-verify's verdict
        return False
