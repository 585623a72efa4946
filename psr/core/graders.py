"""The three graders, one item at a time and with no time bound (psr.core.grading runs them in
bounded worker processes).

* ``default``: psr's extraction (psr.core.answers) and comparison (psr.core.equality), which use
  math-verify's LaTeX parser and ``verify`` for the symbolic rest; choice letters are found with
  math-verify's ``StringExtractionConfig`` when the gold is a letter and the text boxes none.
* ``qwen``: the Qwen2.5-Math evaluator (psr.core.qwen_eval).
* ``math-verify``: plain math-verify as a user calls it, ``verify(parse("$"+gold+"$"), parse(output))``
  with its default extraction (LaTeX, then plain expressions). One change, for safety only: its
  expression extractor hands what its regex matched (digits, ``.``, ``+ - * / ^ ( )``) to sympy's
  ``parse_expr``, which is Python ``eval``; here that text is read with ``ast.parse`` and built into
  the same sympy expression (``_safe_parse_expr``), so nothing is evaluated.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from psr.core.answers import extract_answer
from psr.core.equality import answers_equal, mv
from psr.core.normalize import normalize
from psr.core.qwen_equal import qwen_math_equal
from psr.core.qwen_eval import qwen_extract_answer, qwen_strip_string

GRADERS = ("default", "qwen", "math-verify")
OnPred = Callable[[str | None], None]


@dataclass
class Grade:
    pred: str | None  # the extracted answer (None: nothing found)
    correct: bool
    failure: str | None = None  # "no answer", "timeout", "error: ...", "worker died"; None when graded


def _noop(_pred: str | None) -> None:
    pass


# "What percent of ...", "as a percentage", "express ... in percent": a bare number answers in percent
_ASKS_PERCENT = re.compile(
    r"\b(?:what|which|how many)\s+(?:\w+\s+){0,2}percent(?:age)?\b"
    r"|\b(?:as|in|into)\s+(?:a\s+)?percent(?:age)?\b|\bexpress\w*\b.{0,60}\bpercent",
    re.I | re.S,
)
_CHOICE = re.compile(r"\(?([A-E])\)?")


def asks_for_percent(question: str | None) -> bool:
    return bool(question and _ASKS_PERCENT.search(question))


def _choice_letter(output: str) -> str | None:
    """A choice letter A-E the way math-verify's string extraction finds it ("Final answer is B",
    "A. Because ...", "Because B is valid")."""
    m = mv()
    got = m.parse(
        output, [m.StringExtractionConfig(strings=("A", "B", "C", "D", "E"), lowercase=False)], parsing_timeout=None
    )
    return got[0] if got and isinstance(got[0], str) else None


MAX_NESTING = 100  # brackets deeper than this are no answer a parser should spend seconds on


def nesting(s: str) -> int:
    depth = deepest = 0
    for c in s:
        if c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")]}":
            depth -= 1
    return deepest


def grade_default(
    output: str, gold: str, extract: bool = True, question: str | None = None, on_pred: OnPred = _noop
) -> Grade:
    pred = extract_answer(output) if extract else output.strip()
    if pred is not None and nesting(pred) > MAX_NESTING:  # 100k nested brackets: say so, at once
        on_pred(pred[:200])
        return Grade(pred[:200], False, f"error: brackets nested deeper than {MAX_NESTING}")
    gold_choice = _CHOICE.fullmatch(normalize(gold).upper()) if len(gold.strip()) <= 8 else None
    if extract and gold_choice and not (pred and _CHOICE.fullmatch(normalize(pred).upper())):
        pred = _choice_letter(output) or pred
    on_pred(pred)
    if pred is None or not pred.strip():
        return Grade(None, False, "no answer")
    return Grade(pred, answers_equal(pred, gold, asks_for_percent(question)))


def grade_qwen(
    output: str, gold: str, extract: bool = True, question: str | None = None, on_pred: OnPred = _noop
) -> Grade:
    # the evaluator strips the extracted answer once more (run_execute), and the gold through
    # parse_ground_truth; both are idempotent on already-stripped text
    pred = qwen_strip_string(qwen_extract_answer(output) if extract else output)
    on_pred(pred)
    ok = qwen_math_equal(pred, qwen_strip_string(gold))  # "" equals an empty gold, as in the evaluator
    return Grade(pred, ok, None if pred or ok else "no answer")


# ---------------------------------------------------------------------------------------------
# plain math-verify

_OPS = {ast.Add: "Add", ast.Sub: "Sub", ast.Mult: "Mul", ast.Div: "Div", ast.Pow: "Pow"}


def _build(node):
    import sympy

    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return sympy.Integer(node.value) if isinstance(node.value, int) else sympy.Float(repr(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        x = _build(node.operand)
        return sympy.Mul(-1, x, evaluate=False) if isinstance(node.op, ast.USub) else x
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        a, b, op = _build(node.left), _build(node.right), _OPS[type(node.op)]
        if op == "Add":
            return sympy.Add(a, b, evaluate=False)
        if op == "Sub":
            return sympy.Add(a, sympy.Mul(-1, b, evaluate=False), evaluate=False)
        if op == "Mul":
            return sympy.Mul(a, b, evaluate=False)
        if op == "Div":
            return sympy.Mul(a, sympy.Pow(b, -1, evaluate=False), evaluate=False)
        return sympy.Pow(a, b, evaluate=False)
    raise ValueError("not plain arithmetic")


@functools.lru_cache(maxsize=20)
def _safe_parse_expr(expr: str):
    return _build(ast.parse(expr.strip(), mode="eval").body)


@functools.cache
def _plain_mv():
    m = mv()
    import math_verify.parser as mv_parser

    mv_parser.parse_expr_cached = _safe_parse_expr  # the one name extract_expr calls
    return m


def grade_math_verify(
    output: str, gold: str, extract: bool = True, question: str | None = None, on_pred: OnPred = _noop
) -> Grade:
    m = _plain_mv()
    p = m.parse(output if extract else "$" + output + "$", parsing_timeout=None)
    on_pred(str(p[-1]) if p else None)
    if not p:
        return Grade(None, False, "no answer")
    g = m.parse("$" + gold + "$", parsing_timeout=None)
    return Grade(str(p[-1]), bool(g and m.verify(g, p, timeout_seconds=None)))


GRADE_FN = {"default": grade_default, "qwen": grade_qwen, "math-verify": grade_math_verify}


def grade_unbounded(
    output: str,
    gold: str,
    grader: str = "default",
    extract: bool = True,
    question: str | None = None,
    on_pred: OnPred = _noop,
) -> Grade:
    """Grade one item in this process, with no time bound: for workers; callers use grade_many."""
    try:
        return GRADE_FN[grader](output, gold, extract, question, on_pred)
    except (RecursionError, MemoryError) as e:  # 100k nested brackets, a runaway power
        return Grade(None, False, f"error: {type(e).__name__}")
    except Exception as e:  # noqa: BLE001 - a grader bug on odd text must cost one item, not the run
        return Grade(None, False, f"error: {type(e).__name__}: {e}"[:200])
