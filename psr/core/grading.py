"""Is a model's final answer equal to the gold one? Three graders, every call bounded in time.

* ``default``: the best psr can do: string normalization (units, degrees, ``\\text``, thousands
  separators, ``x=`` prefixes), exact numbers (fractions vs decimals, percent, mixed numbers),
  structures compared element by element (tuples, intervals, sets, matrices, several answers), and
  math-verify for the symbolic rest.
* ``qwen``: the Qwen2.5-Math evaluator (``extract_answer`` + ``strip_string`` + ``math_equal``),
  so numbers compare with the paper. One deliberate difference: its sympy fallback also tries
  ``parse_latex`` and ``parse_expr`` (the latter is Python ``eval`` of model text); here LaTeX
  goes through latex2sympy only (the third parser it tries).
* ``math-verify``: plain math-verify on the whole output, LaTeX extraction only (its expression
  extractor hands text to sympy's ``parse_expr``, i.e. ``eval``).

Time bound: sympy can hang on adversarial input (``9^{9^{9^{9}}}``) and math-verify's own timeout
uses ``signal.alarm`` (main thread only). So every item is graded in a worker process, one item
at a time; a worker that overruns ``timeout`` is killed and replaced, and the item is graded
incorrect with ``failure="timeout"``. Workers are kept between calls.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from multiprocessing.connection import Connection, wait

from psr.core.answers import (
    extract_answer,
    normalize,
    qwen_extract_answer,
    qwen_strip_string,
    split_top_level,
    strip_text_commands,
)
from psr.core.errors import PsrError

GRADERS = ("default", "qwen", "math-verify")
DEFAULT_TIMEOUT = 3.0  # seconds per item, as in the Qwen2.5-Math evaluator
WORKER_START_TIMEOUT = 120.0  # seconds for a worker to import sympy and math-verify
WORKER_MEMORY = 8 << 30  # address-space cap per worker: a runaway power fails with MemoryError, not OOM


@dataclass
class Grade:
    pred: str | None  # the extracted answer (None: nothing found)
    correct: bool
    failure: str | None = None  # "no answer", "timeout", "error: ...", "worker died"; None when graded


# ---------------------------------------------------------------------------------------------
# math-verify, without its signal-based timeouts (the worker process is the time bound)

def _mv():
    import math_verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns on every call that timeouts are off
    return math_verify


def _mv_parse(text: str):
    mv = _mv()
    return mv.parse(text, [mv.LatexExtractionConfig()], parsing_timeout=None)


def _mv_equal(pred: str, gold: str) -> bool:
    g, p = _mv_parse("\\boxed{" + gold + "}"), _mv_parse("\\boxed{" + pred + "}")
    return bool(g and p and _mv().verify(g, p, timeout_seconds=None))


def grade_math_verify(output: str, gold: str, extract: bool = True) -> Grade:
    p = _mv_parse(output if extract else "\\boxed{" + output + "}")
    if not p:
        return Grade(None, False, "no answer")
    g = _mv_parse("\\boxed{" + gold + "}")
    return Grade(str(p[-1]), bool(g and _mv().verify(g, p, timeout_seconds=None)))


# ---------------------------------------------------------------------------------------------
# default

_INT = r"[+-]?\d+"
_DEC = r"[+-]?(?:\d+\.\d*|\.\d+|\d+)"


def to_number(s: str) -> tuple[Fraction, int | None, bool] | None:
    """A normalized answer as an exact number: (value, decimals written or None for a fraction,
    had a percent sign), or None. Handles ``-3``, ``2.5``, ``\\frac{1}{2}``, ``-\\frac12``, ``1/2``,
    ``2\\frac{1}{4}`` (mixed), ``50\\%``.
    """
    s = s.strip()
    pct = bool(re.search(r"\\?%$", s))
    s = re.sub(r"\\?%$", "", s).strip()
    m = re.fullmatch(_DEC, s)
    if m:
        decimals = len(s.split(".")[1]) if "." in s else 0
        return Fraction(s), decimals, pct
    m = re.fullmatch(r"([+-]?)\\frac\{(" + _INT + r")\}\{(" + _INT + r")\}", s) or \
        re.fullmatch(r"([+-]?)(" + _INT + r")/(" + _INT + r")", s)
    if m and int(m.group(3)) != 0:
        v = Fraction(int(m.group(2)), int(m.group(3)))
        return (-v if m.group(1) == "-" else v), None, pct
    m = re.fullmatch(r"([+-]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}", s)
    if m and int(m.group(4)) != 0 and int(m.group(3)) < int(m.group(4)):
        v = int(m.group(2)) + Fraction(int(m.group(3)), int(m.group(4)))
        return (-v if m.group(1) == "-" else v), None, pct
    return None


def _terminates(x: Fraction) -> bool:
    d = x.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _numbers_equal(a: tuple[Fraction, int | None, bool], b: tuple[Fraction, int | None, bool]) -> bool:
    """Exact equality; a decimal of 3+ places also equals a fraction it rounds or truncates
    (0.333 vs 1/3), never another decimal (0.35625 vs 0.35626 differ)."""
    (x, x_dec, x_pct), (y, y_dec, y_pct) = a, b
    candidates = [x]
    if x_pct != y_pct:  # "50%" vs "0.5" or vs "50": either reading is fine
        candidates.append(x / 100 if x_pct else x * 100)
    for c in candidates:
        if c == y or _rounds_to(c, x_dec, y, y_dec) or _rounds_to(y, y_dec, c, x_dec):
            return True
    return False


def _rounds_to(decimal: Fraction, places: int | None, fraction: Fraction, frac_places: int | None) -> bool:
    """``decimal`` (written with ``places`` >= 3) is ``fraction`` (non-terminating) rounded or cut."""
    return (places is not None and places >= 3 and frac_places is None and not _terminates(fraction)
            and abs(decimal - fraction) <= Fraction(1, 10**places))


_BASE = re.compile(r"(-?[0-9A-Za-z.]+)_\{?(\d+)\}?")
_MATRIX = re.compile(r"^\\begin\{[pbvBV]?matrix\}(.*)\\end\{[pbvBV]?matrix\}$", re.S)


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


def _unordered_equal(xs: list[str], ys: list[str], depth: int) -> bool:
    if len(xs) != len(ys):
        return False
    left = list(ys)
    for x in xs:
        hit = next((j for j, y in enumerate(left) if _equal(x, y, depth + 1)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


def _equal(pred: str, gold: str, depth: int = 0) -> bool:
    if depth > 4:
        return False
    np_, ng = normalize(pred), normalize(gold)
    if not np_:
        return False
    if np_ == ng:
        return True
    # benchmark golds are Qwen-stripped (benchmarks README): compare in that form too, without the
    # unit-word removal that mangles single letters
    qp, qg = qwen_strip_string(pred, skip_unit=True), qwen_strip_string(gold, skip_unit=True)
    if qp and qp.lower() == qg.lower():
        return True
    bp_, bg_ = _BASE.fullmatch(np_), _BASE.fullmatch(ng)
    if bp_ or bg_:  # "1101_4": digits and base must both agree (a missing base is taken as the gold's)
        dp, basep = (bp_.group(1), bp_.group(2)) if bp_ else (np_, None)
        dg, baseg = (bg_.group(1), bg_.group(2)) if bg_ else (ng, None)
        return dp.lower() == dg.lower() and (basep is None or baseg is None or int(basep) == int(baseg))
    xp, xg = to_number(np_), to_number(ng)
    if xp and xg:
        return _numbers_equal(xp, xg)
    # structures: matrices, unions, intervals, tuples, sets, several answers
    mp_, mg = _matrix_cells(np_), _matrix_cells(ng)
    if mp_ is not None and mg is not None:
        return [len(r) for r in mp_] == [len(r) for r in mg] and all(
            _equal(a, b, depth + 1) for ra, rb in zip(mp_, mg, strict=True) for a, b in zip(ra, rb, strict=True))
    up, ug = np_.split("\\cup"), ng.split("\\cup")
    if len(up) > 1 or len(ug) > 1:
        return len(up) == len(ug) and _unordered_equal(up, ug, depth)
    bp, bg = _brackets(np_), _brackets(ng)
    if bp or bg:
        if bp and bg and bp[0] + bp[2] == bg[0] + bg[2]:
            ep, eg = split_top_level(bp[1]), split_top_level(bg[1])
            if len(ep) > 1 or len(eg) > 1:
                if bp[0] == "{":
                    return _unordered_equal(ep, eg, depth)
                return len(ep) == len(eg) and all(_equal(a, b, depth + 1) for a, b in zip(ep, eg, strict=True))
        elif (bp and bp[0] == "{" and not bg) or (bg and bg[0] == "{" and not bp):
            # "{1,2}" vs "1, 2": a set written as a list
            inner_p, inner_g = (bp[1] if bp else np_), (bg[1] if bg else ng)
            return _unordered_equal(split_top_level(inner_p), split_top_level(inner_g), depth)
    else:
        ep, eg = split_top_level(np_), split_top_level(ng)
        if len(ep) > 1 or len(eg) > 1:  # several answers, order free ("2, -3" vs "-3, 2")
            return _unordered_equal(ep, eg, depth)
    if re.fullmatch(r"[a-z ]+", strip_text_commands(np_).lower()) and not re.search(r"\d", ng):
        return False  # two different words: nothing symbolic to compare
    return _mv_equal(np_, ng) and not _differ_in_value(np_, ng)


def _differ_in_value(pred: str, gold: str) -> bool:
    """A second opinion on a math-verify "equal": it rounds numbers to 6 places and drops some
    letters as units, so 1/2004! equals 1/2005! and 3s^2 equals 3s^3 there."""
    from latex2sympy2_extended import latex2sympy

    try:
        return _surely_different(latex2sympy(pred), latex2sympy(gold), exact=True)
    except Exception:  # noqa: BLE001 - unparsable here: keep math-verify's verdict
        return False


def grade_default(output: str, gold: str, extract: bool = True) -> Grade:
    pred = extract_answer(output) if extract else output.strip()
    if pred is None or not pred.strip():
        return Grade(None, False, "no answer")
    return Grade(pred, _equal(pred, gold))


# ---------------------------------------------------------------------------------------------
# qwen: math_equal of the Qwen2.5-Math evaluator (evaluation/grader.py), from its documented
# behaviour. include_percentage=True and is_close=True, as the evaluator calls it.

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


@functools.lru_cache(maxsize=4096)
def _qwen_parse(s: str):
    from latex2sympy2_extended import latex2sympy
    from sympy import Float, Integer, Rational

    # plain numbers skip the (slow) LaTeX parser; same values as it gives
    if re.fullmatch(r"-?\d+", s):
        return Integer(int(s))
    if re.fullmatch(r"-?\d*\.\d+", s):
        return Float(s)
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{([1-9]\d*)\}", s)
    if m:
        return Rational(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)

    for text in dict.fromkeys((s.replace("\\\\", "\\"), s)):  # each distinct form once
        try:
            return latex2sympy(text)
        except Exception:  # noqa: BLE001 - any parser failure means "not LaTeX", as in the evaluator
            pass
    return s


def _surely_different(a, b, exact: bool = False) -> bool:
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
        if _surely_different(a, b):
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
    return [ln.strip() for ln in s[len("\\begin{pmatrix}"):-len("\\end{pmatrix}")].split("\\\\") if ln.strip()]


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
        reference = ", ".join("\\begin{pmatrix}" + m.strip("{}").replace(",", "\\") + "\\end{pmatrix}"
                              for m in re.findall(r"\{.*,.*\}", reference))
    ps, rs = prediction, reference
    if (ps.startswith("[") and ps.endswith("]") and not (rs.startswith("(") and rs.endswith(")"))) or (
            ps.startswith("(") and ps.endswith(")") and not (rs.startswith("[") and rs.endswith("]"))):
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


def grade_qwen(output: str, gold: str, extract: bool = True) -> Grade:
    # the evaluator strips the extracted answer once more (run_execute), and the gold through
    # parse_ground_truth; both are idempotent on already-stripped text
    pred = qwen_strip_string(qwen_extract_answer(output) if extract else output)
    ok = qwen_math_equal(pred, qwen_strip_string(gold))  # "" equals an empty gold, as in the evaluator
    return Grade(pred, ok, None if pred or ok else "no answer")


_GRADE_FN: dict[str, Callable[[str, str, bool], Grade]] = {
    "default": grade_default, "qwen": grade_qwen, "math-verify": grade_math_verify,
}


def grade_unbounded(output: str, gold: str, grader: str = "default", extract: bool = True) -> Grade:
    """Grade one item in this process, with no time bound: for workers; callers use grade_many."""
    try:
        return _GRADE_FN[grader](output, gold, extract)
    except (RecursionError, MemoryError) as e:
        return Grade(None, False, f"error: {type(e).__name__}")
    except Exception as e:  # noqa: BLE001 - a grader bug on odd text must cost one item, not the run
        return Grade(None, False, f"error: {type(e).__name__}: {e}"[:200])


def _pred_only(grader: str, output: str, extract: bool) -> str | None:
    """The extracted answer of an item that timed out (string work only, so safe in this process)."""
    if grader == "math-verify":
        return None  # its extraction is the part that may hang
    if not extract:
        return output.strip()
    return qwen_extract_answer(output) if grader == "qwen" else extract_answer(output)


# ---------------------------------------------------------------------------------------------
# Worker processes
#
# Plain subprocesses (``python -c``), not multiprocessing: its fork method would copy the caller's
# threads (progress bars, torch) and its spawn/forkserver methods re-import the caller's __main__,
# which breaks scripts without a main guard. Messages are JSON over the worker's stdin/stdout.

def _serve() -> None:
    """Worker loop: read [output, gold, grader, extract] messages, answer with Grade fields."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))
    except (ImportError, ValueError, OSError):
        pass
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it kills us
    out_fd = os.dup(1)
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the message stream
    inbox, outbox = Connection(0, writable=False), Connection(out_fd, readable=False)
    _mv()
    # The LaTeX parser (antlr, pure Python) is slow until its caches fill: a cold worker can take
    # seconds on a first polynomial. Fill them before the per-item clock starts.
    for pred, gold in _WARM_UP:
        for grader in GRADERS:
            grade_unbounded(pred, gold, grader, extract=False)
    outbox.send_bytes(b"ready")
    while True:
        try:
            task = json.loads(inbox.recv_bytes())
        except EOFError:
            return
        outbox.send_bytes(json.dumps(asdict(grade_unbounded(*task))).encode())


_WARM_UP = [
    (r"x^2+2x+1", r"(x+1)^2"), (r"\frac{\sqrt{3}}{2}", r"0.5\pi"), (r"(-\infty, 3) \cup [5, 7]", r"\{1, 2\}"),
    (r"\begin{pmatrix} 1 & -2 \\ 3 & 4 \end{pmatrix}", r"y = 2x - 3"), (r"\sin^{2} \theta + e^{i}", r"10^{\circ}"),
]


class _Worker:
    def __init__(self):
        import psr

        root = os.path.dirname(os.path.dirname(os.path.abspath(psr.__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen([sys.executable, "-c", "from psr.core.grading import _serve; _serve()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.outbox = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self.conn = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.ready = False
        self.index: int | None = None
        self.deadline = time.monotonic() + WORKER_START_TIMEOUT

    def submit(self, index: int, task: list, timeout: float) -> None:
        self.index, self.deadline = index, time.monotonic() + timeout
        self.outbox.send_bytes(json.dumps(task).encode())

    def receive(self) -> Grade:
        return Grade(**json.loads(self.conn.recv_bytes()))

    def close(self, kill: bool = True) -> None:
        self.outbox.close()  # EOF: an idle worker exits by itself
        if kill:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.conn.close()


_IDLE: list[_Worker] = []  # kept between calls so repeated grade_many calls skip the start-up


@atexit.register
def _shutdown() -> None:
    while _IDLE:
        _IDLE.pop().close(kill=False)


def grade_many(outputs: Sequence[str], golds: Sequence[str], grader: str = "default", *,
               timeout: float = DEFAULT_TIMEOUT, extract: bool = True, workers: int | None = None,
               on_result: Callable[[int, Grade], None] | None = None) -> list[Grade]:
    """Grade ``outputs[i]`` (model text, or bare answers with ``extract=False``) against ``golds[i]``.

    Runs in ``workers`` processes (default: one per CPU); an item that takes longer than ``timeout``
    seconds is graded incorrect with ``failure="timeout"``. ``on_result(i, grade)`` is called as
    each item finishes (in completion order), e.g. to write records as they come.
    """
    if grader not in _GRADE_FN:
        raise ValueError(f"unknown grader {grader!r}; choose one of {', '.join(GRADERS)}")
    if len(outputs) != len(golds):
        raise ValueError(f"{len(outputs)} outputs but {len(golds)} golds")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    n = len(outputs)
    results: list[Grade | None] = [None] * n
    if n == 0:
        return []
    k = max(1, min(workers or os.cpu_count() or 1, n))
    for dead in [w for w in _IDLE if w.proc.poll() is not None]:  # idle workers that died meanwhile
        _IDLE.remove(dead)
        dead.close()
    pool = [_IDLE.pop() if _IDLE else _Worker() for _ in range(k)]
    todo = iter(range(n))
    left = n  # items not yet handed to a worker

    def finish(i: int, g: Grade) -> None:
        results[i] = g
        if on_result is not None:
            on_result(i, g)

    def feed(w: _Worker) -> None:
        nonlocal left
        i = next(todo, None)
        left -= i is not None
        w.index = i
        if i is not None:
            w.submit(i, [outputs[i], golds[i], grader, extract], timeout)

    def replace(w: _Worker) -> _Worker:
        # the new worker gets the next item once it reports ready
        w.close()
        pool[pool.index(w)] = fresh = _Worker()
        return fresh

    try:
        for w in pool:
            if w.ready:
                feed(w)
        while True:
            busy = [w for w in pool if w.index is not None or (not w.ready and left)]
            if not busy:
                break
            ready = wait([w.conn for w in busy], timeout=max(0.0, min(w.deadline for w in busy) - time.monotonic()))
            for w in busy:
                if w.conn in ready and not w.ready:
                    try:
                        w.ready = w.conn.recv_bytes() == b"ready"
                    except (EOFError, OSError):
                        pass
                    if not w.ready:
                        raise PsrError("a grading worker failed to start; run `python -c \"import psr.core.grading\"` "
                                       "to see why")
                    feed(w)
                elif w.conn in ready:
                    try:
                        finish(w.index, w.receive())
                    except (EOFError, OSError):  # killed from outside, or crashed in C code
                        finish(w.index, Grade(None, False, "worker died"))
                        w = replace(w)
                        continue
                    feed(w)
                elif time.monotonic() >= w.deadline:
                    if not w.ready:
                        raise PsrError(f"a grading worker did not start within {WORKER_START_TIMEOUT:.0f} s")
                    finish(w.index, Grade(_pred_only(grader, outputs[w.index], extract), False, "timeout"))
                    replace(w)
    except BaseException:
        for w in pool:
            w.close()
        raise
    _IDLE.extend(pool)
    return results  # type: ignore[return-value]
