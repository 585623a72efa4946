"""The Qwen2.5-Math evaluator's ``math_equal`` (evaluation/grader.py), for the ``qwen`` grader.

Its extraction and ``strip_string`` are in psr.core.qwen_eval, with the divergences of both files.
"""

from __future__ import annotations

import functools
import math
import re


def _qwen_digits(num: str) -> float | None:
    num = num.replace(",", "")
    try:
        return float(num)
    except ValueError:
        if num.endswith("%"):
            num = num[:-1].removesuffix("\\")
            try:
                return float(num) / 100
            except ValueError:
                pass
    return None


def _qwen_choice(pred: str) -> str:
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    letters = re.findall(r"\b(A|B|C|D|E)\b", pred.upper())
    return (letters[-1] if letters else pred.strip().strip(".")).rstrip(".").rstrip("/")


# where the evaluator's parsers give a list or fail and latex2sympy2_extended reads a value: lists
# (it gives sets: order-free), decimal commas, ratios ("12:00" and "1:00" both 1/0 there), \cfrac, \approx
_NOT_PARSED_THERE = re.compile(r"[,;:]|\{,\}|\\cfrac|\\approx")


@functools.lru_cache(maxsize=4096)
def _qwen_parse(s: str):
    from latex2sympy2_extended import latex2sympy
    from sympy import Float, Integer, Rational, Set

    # plain numbers skip the (slow) LaTeX parser; same values as it gives
    if re.fullmatch(r"-?\d+", s):
        return Integer(int(s))
    if re.fullmatch(r"-?\d*\.\d+", s):
        return Float(s)
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{([1-9]\d*)\}", s)
    if m:
        return Rational(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)

    if _NOT_PARSED_THERE.search(s) and "matrix" not in s:
        return s  # compare as text, as the evaluator ends up doing
    for text in dict.fromkeys((s.replace("\\\\", "\\"), s)):  # each distinct form once
        try:
            got = latex2sympy(text)
        except Exception:  # noqa: BLE001 - any parser failure means "not LaTeX", as in the evaluator
            continue
        # latex2sympy2_extended reads "1 or 2" and intervals as sets, which the evaluator's parsers do not
        return s if isinstance(got, Set) else got
    return s


def surely_different(a, b, exact: bool = False) -> bool:
    """True when the sympy expressions differ in value at a sample point (so no check can find them
    equal): lets plain unequal answers skip simplify(), the slowest check. False when unsure."""
    from sympy import Expr, N

    if not (isinstance(a, Expr) and isinstance(b, Expr)):
        return False
    if exact and a.is_Rational and b.is_Rational:
        return a != b
    if a.is_Number and b.is_Number:
        return not math.isclose(float(b), float(a), rel_tol=1e-4)
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    if not symbols and not exact:
        # the evaluator's own test for constants, float(N(.)) with rel_tol 1e-4, quirks included:
        # 1/2004! and 2/2004! both underflow to 0.0, 3^2005 and 2^2005 both overflow to inf
        try:
            return not math.isclose(float(N(b)), float(N(a)), rel_tol=1e-4)
        except (TypeError, ValueError, OverflowError, AttributeError):
            return False
    point = {x: 0.5772156649 + 0.7 * i for i, x in enumerate(symbols)}
    try:
        # sympy Floats, not Python floats: 1/2004! must not underflow to 0
        va, vb = N(a.subs(point), 30), N(b.subs(point), 30)
        if not (va.is_finite and vb.is_finite and va.is_number and vb.is_number):
            return False
        return bool(abs(va - vb) > 1e-6 * (abs(va) + abs(vb)))
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, AttributeError):
        return False


def _qwen_symbolic_equal(a: str, b: str) -> bool:
    from sympy import N, simplify

    a, b = _qwen_parse(a), _qwen_parse(b)
    try:
        if str(a) == str(b) or a == b:
            return True
        if surely_different(a, b):
            return False
    except Exception:  # noqa: BLE001 - fall through to the evaluator's own checks
        pass
    checks = (
        lambda: str(a) == str(b) or a == b,
        lambda: a.equals(b) or simplify(a - b) == 0,
        lambda: abs(a.lhs - a.rhs).equals(abs(b.lhs - b.rhs)),
        lambda: math.isclose(float(N(b)), float(N(a)), rel_tol=1e-4),
        lambda: a.shape == b.shape and a.applyfunc(lambda x: round(x, 3)).equals(b.applyfunc(lambda x: round(x, 3))),
    )
    for check in checks:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001 - the evaluator treats any failure of a check as "not equal"
            pass
    return False


def _qwen_is_list(s: str) -> bool:
    return re.match(r"(\(|\[).+(\)|\])", s) is not None


def _qwen_is_matrix(s: str) -> bool:
    return s.startswith(("\\begin{pmatrix}", "\\begin{bmatrix}")) and s.endswith(("\\end{pmatrix}", "\\end{bmatrix}"))


def _qwen_matrix_rows(s: str) -> list[str]:
    return [ln.strip() for ln in s[len("\\begin{pmatrix}") : -len("\\end{pmatrix}")].split("\\\\") if ln.strip()]


def qwen_math_equal(prediction: str, reference: str) -> bool:
    """The evaluator's ``math_equal(prediction, reference)`` (percentages and closeness on)."""
    if prediction is None or reference is None:
        return False
    if prediction.strip().lower() == reference.strip().lower():
        return True
    if reference in ("A", "B", "C", "D", "E") and _qwen_choice(prediction) == reference:
        return True
    p, r = _qwen_digits(prediction), _qwen_digits(reference)
    if p is not None and r is not None:
        for item in (r / 100, r, r * 100):
            try:
                if math.isclose(item, p, rel_tol=1e-4):
                    return True
            except (OverflowError, ValueError):
                continue
    if not prediction:
        return False
    reference, prediction = reference.strip(), prediction.strip()
    if "pmatrix" in prediction and "pmatrix" not in reference:
        # "{1,2},{3,4}"-style reference as pmatrix rows (the evaluator's str_to_pmatrix)
        reference = ", ".join(
            "\\begin{pmatrix}" + m.strip("{}").replace(",", "\\") + "\\end{pmatrix}"
            for m in re.findall(r"\{.*,.*\}", reference)
        )
    ps, rs = prediction, reference
    if (ps.startswith("[") and ps.endswith("]") and not (rs.startswith("(") and rs.endswith(")"))) or (
        ps.startswith("(") and ps.endswith(")") and not (rs.startswith("[") and rs.endswith("]"))
    ):
        ps, rs = ps.strip("[]()"), rs.strip("[]()")
    for br in "{}()":
        ps, rs = ps.replace(br, ""), rs.replace(br, "")
    if ps.lower() == rs.lower():
        return True
    if _qwen_is_list(prediction) and _qwen_is_list(reference):
        pp, rp = prediction[1:-1].split(","), reference[1:-1].split(",")
        return len(pp) == len(rp) and all(qwen_math_equal(a, b) for a, b in zip(pp, rp, strict=True))
    if _qwen_is_matrix(prediction) and _qwen_is_matrix(reference):
        pl, rl = _qwen_matrix_rows(prediction), _qwen_matrix_rows(reference)
        if len(pl) != len(rl):
            return False
        for a, b in zip(pl, rl, strict=True):
            ac, bc = a.split("&"), b.split("&")
            if len(ac) != len(bc) or not all(qwen_math_equal(x, y) for x, y in zip(ac, bc, strict=True)):
                return False
        return True
    simple = lambda e: e.count("=") == 1 and len(e.split("=")[0].strip()) <= 2  # noqa: E731
    if prediction.count("=") == 1 and reference.count("=") == 1:
        fmt = lambda e: f"{e.split('=')[0].strip()} - ({e.split('=')[1].strip()})"  # noqa: E731
        pf, rf = fmt(prediction), fmt(reference)
        return _qwen_symbolic_equal(pf, rf) or _qwen_symbolic_equal(f"-({pf})", rf)
    if simple(prediction) and "=" not in reference:
        return qwen_math_equal(prediction.split("=")[1], reference)
    if simple(reference) and "=" not in prediction:
        return qwen_math_equal(prediction, reference.split("=")[1])
    return _qwen_symbolic_equal(prediction, reference)
