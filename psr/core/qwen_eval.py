"""The Qwen2.5-Math evaluator (QwenLM/Qwen2.5-Math, evaluation/parser.py and grader.py), the ``qwen`` grader
(``math_equal`` in psr.core.qwen_equal).

Re-written from that code's behaviour, quirks included, so that psr's numbers compare with the
paper's tables (the benchmark golds in ../shared/benchmarks were produced by exactly these rules):
``extract_answer`` (Minerva "final answer is $...$. I hope", then the text after the last word
"boxed", then "he answer is", "final answer is", "答案是", then the last number of the text with
commas removed), ``strip_string`` (its unit list holds "a", "c", "t", "east", so "b > a > c" strips
to ""; unit patterns are regexes there, so "q ." also matches "q x") and ``math_equal`` with
include_percentage=True and is_close=True as the evaluator calls it (a number also equals the gold
/100 and *100; relative tolerance 1e-4; a gold choice letter A-E equals the last standalone letter
A-E of the prediction).

Known divergences, all from never evaluating model text as code. Measured against a transcription
of the evaluator's code (run outside the repo, with its latex2sympy2 1.9.1): same verdict on
14,285 of 14,299 items (99.90%: math-verify's 273 cases, MATH/GSM8K/OlympiadBench reference
solutions against their golds and against perturbed golds); every remaining difference is one
where the evaluator says equal and psr does not:

* ``symbolic_equal`` there parses with sympy's ``parse_latex``, then ``parse_expr`` (Python ``eval``
  of the text), then the original latex2sympy2; here latex2sympy2_extended only, its maintained
  successor. Where the two read the same text differently psr follows the original: lists, decimal
  commas, ratios, ``\\cfrac`` and ``\\approx`` compare as text (the original gives a list or fails),
  and the extended parser's sets count as unparsed. What is left: the original reads the longest
  valid start of a malformed string (``C)+`` as C, ``10).Ihopeitiscorrect`` as 10), so a gold
  ``(C)+1`` equals ``(C)`` there (11 of the 14), and one list of equations it happens to parse.
* the evaluator's per-item timeout runs ``symbolic_equal`` in a new process for 1 s (when
  ``timeout=True``) or not at all; psr bounds the whole item (``--timeout``, default 3 s, as its
  pool's timeout).
* ``extract_answer`` is the one for open-ended benchmarks (data_name "math"); the multiple-choice
  data sets' ``choice_answer_clean`` path is not taken, but ``math_equal``'s choice rule is. A raw
  gold is stripped once (the benchmark golds are already in the evaluator's form).
"""

from __future__ import annotations

import functools
import re

_QWEN_UNITS = [
    "east",
    "degree",
    "mph",
    "kmph",
    "ft",
    "m sqaure",
    " m east",
    "sq m",
    "deg",
    "mile",
    "q .",
    "monkey",
    "prime",
    "ratio",
    "profit of rs",
    "rd",
    "o",
    "gm",
    "p . m",
    "lb",
    "tile",
    "per",
    "dm",
    "lt",
    "gain",
    "ab",
    "way",
    "west",
    "a .",
    "b .",
    "c .",
    "d .",
    "e .",
    "f .",
    "g .",
    "h .",
    "t",
    "a",
    "h",
    "no change",
    "men",
    "soldier",
    "pie",
    "bc",
    "excess",
    "st",
    "inches",
    "noon",
    "percent",
    "by",
    "gal",
    "kmh",
    "c",
    "acre",
    "rise",
    "a . m",
    "th",
    "π r 2",
    "sq",
    "mark",
    "l",
    "toy",
    "coin",
    "sq . m",
    "gallon",
    "° f",
    "profit",
    "minw",
    "yr",
    "women",
    "feet",
    "am",
    "pm",
    "hr",
    "cu cm",
    "square",
    "v â € ™",
    "are",
    "rupee",
    "rounds",
    "cubic",
    "cc",
    "mtr",
    "s",
    "ohm",
    "number",
    "kmph",
    "day",
    "hour",
    "minute",
    "min",
    "second",
    "man",
    "woman",
    "sec",
    "cube",
    "mt",
    "sq inch",
    "mp",
    "∏ cm ³",
    "hectare",
    "more",
    "sec",
    "unit",
    "cu . m",
    "cm 2",
    "rs .",
    "rs",
    "kg",
    "g",
    "month",
    "km",
    "m",
    "cm",
    "mm",
    "apple",
    "liter",
    "loss",
    "yard",
    "pure",
    "year",
    "increase",
    "decrease",
    "d",
    "less",
    "Surface",
    "litre",
    "pi sq m",
    "s .",
    "metre",
    "meter",
    "inch",
]
_QWEN_UNITS = _QWEN_UNITS + [u + "s" for u in _QWEN_UNITS]
# (pattern, literal text that must occur for it to match): the substring test skips most patterns
_QWEN_UNIT_RES = [(re.compile(r"(^|\W)" + u + r"($|\W)"), None if "." in u else u) for u in _QWEN_UNITS]

# The word2number package's vocabulary (used by the evaluator's convert_word_number).
_SMALL = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_W2N = {w: i for i, w in enumerate(_SMALL)}
_W2N.update(
    {w: 10 * i for i, w in enumerate(["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"], 2)}
)
_W2N.update({"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9})


def _w2n_group(words: list[str]) -> int:
    # word2number's number_formation: it only knows up to four words per group
    n = [_W2N[w] for w in words]
    if len(n) == 4:
        return n[0] * n[1] + n[2] + n[3]
    if len(n) == 3:
        return n[0] * n[1] + n[2]
    if len(n) == 2:
        return n[0] * n[1] if 100 in n else n[0] + n[1]
    return n[0]  # IndexError on an empty group, as in word2number


def word_to_number(text: str) -> str | None:
    """word2number's ``word_to_num`` as the evaluator uses it: number words anywhere in ``text``
    (other words ignored) -> the number as a string; None where it would raise."""
    t = text.replace("-", " ").lower()
    if t.isdigit():
        try:
            return str(int(t))
        except ValueError:  # digits int() rejects, such as "²"
            return None
    words = [w for w in t.strip().split() if w in _W2N or w == "point"]
    if not words or any(words.count(w) > 1 for w in ("thousand", "million", "billion", "point")):
        return None
    dec: list[str] = []
    if "point" in words:
        i = words.index("point")
        words, dec = words[:i], words[i + 1 :]
    idx = {k: (words.index(k) if k in words else -1) for k in ("billion", "million", "thousand")}
    b, m, th = idx["billion"], idx["million"], idx["thousand"]
    if (th > -1 and (th < m or th < b)) or (m > -1 and m < b):
        return None
    try:
        total: float = 0
        if len(words) == 1:
            total += _W2N[words[0]]
        elif words:
            if b > -1:
                total += _w2n_group(words[:b]) * 10**9
            if m > -1:
                total += _w2n_group(words[b + 1 : m] if b > -1 else words[:m]) * 10**6
            if th > -1:
                start = m + 1 if m > -1 else (b + 1 if b > -1 else 0)
                total += _w2n_group(words[start:th]) * 1000
            if th > -1 and th != len(words) - 1:
                total += _w2n_group(words[th + 1 :])
            elif m > -1 and m != len(words) - 1:
                total += _w2n_group(words[m + 1 :])
            elif b > -1 and b != len(words) - 1:
                total += _w2n_group(words[b + 1 :])
            elif th == -1 and m == -1 and b == -1:
                total += _w2n_group(words)
        if dec and all(w in _SMALL[:10] for w in dec):  # other words after "point" add 0 there
            total += float("0." + "".join(str(_W2N[w]) for w in dec))
    except (IndexError, KeyError):
        return None
    return str(total)


def _qwen_fix_fracs(s: str) -> str:
    parts = s.split("\\frac")
    out = parts[0]
    for sub in parts[1:]:
        out += "\\frac"
        if sub[:1] == "{":
            out += sub
        elif len(sub) < 2:
            return s
        elif sub[1] != "{":
            out += "{" + sub[0] + "}{" + sub[1] + "}" + sub[2:]
        else:
            out += "{" + sub[0] + "}" + sub[1:]
    return out


def _qwen_fix_a_slash_b(s: str) -> str:
    if len(s.split("/")) != 2:
        return s
    a, b = s.split("/")
    try:
        a2 = a if "sqrt" in a else int(a)
        b2 = b if "sqrt" in b else int(b)
    except ValueError:
        return s
    if s != f"{a2}/{b2}":
        return s
    return "\\frac{" + str(a2) + "}{" + str(b2) + "}"


@functools.lru_cache(maxsize=4096)
def qwen_strip_string(string: str, skip_unit: bool = False) -> str:
    """The Qwen2.5-Math evaluator's ``strip_string``, step for step."""
    s = str(string).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s)
    s = s.replace("bmatrix", "pmatrix").replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    t = re.sub(r"\\text{.*?}$", "", s).strip()
    if t != "" and t != s:
        s = t
    if not skip_unit:
        for _ in range(2):
            for rx, literal in _QWEN_UNIT_RES:
                if literal is not None and literal not in s:
                    continue
                t = rx.sub(r"\1\2", s)
                if t != "":
                    s = t
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    w = word_to_number(s)
    if w is not None:
        s = w
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for key in ["x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"]:
        s = s.replace(key, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.isalnum() and ((s[:1], s[-1:]) in (("{", "}"), ("(", ")"), ("[", "]"))):
        s = s[1:-1]  # never true for an alphanumeric string, as in the original
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("+\\inity", "\\infty").replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox{.*?}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    if len(s.split("=")) == 2 and len(s.split("=")[0]) <= 2:
        s = s.split("=")[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s).replace(" ", "")
    return _qwen_fix_a_slash_b(_qwen_fix_fracs(s))


def qwen_extract_answer(text: str, data_name: str = "math", use_last_number: bool = True) -> str:
    """The Qwen2.5-Math evaluator's ``extract_answer`` (open-ended benchmarks; no multiple choice)."""
    text = text.replace("\u043a\u0438", "")
    if "final answer is $" in text and "$. I hope" in text:
        pred = text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    elif "boxed" in text:
        # it splits on the bare word "boxed" and takes the text after the last one
        ans = text.split("boxed")[-1]
        if not ans:
            return ""
        if ans[0] == "{":
            depth, chars = 1, []
            for c in ans[1:]:
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                    if depth == 0:
                        break
                chars.append(c)
            pred = "".join(chars)
        else:
            pred = ans.split("$")[0].strip()
    elif "he answer is" in text:
        pred = text.split("he answer is")[-1].strip()
    elif "final answer is" in text:
        pred = text.split("final answer is")[-1].strip()
    elif "答案是" in text:
        pred = text.split("答案是")[1].strip().split("\n\n")[0].strip()
    elif use_last_number:
        nums = re.findall(r"-?\d*\.?\d+", text.replace(",", ""))
        pred = nums[-1] if nums else ""
    else:
        pred = ""
    pred = re.sub(r"\n\s*", "", pred)
    if pred[:1] == ":":
        pred = pred[1:]
    if pred[-1:] == ".":
        pred = pred[:-1]
    if pred[-1:] == "/":
        pred = pred[:-1]
    return qwen_strip_string(pred, skip_unit=data_name in ("carp_en", "minerva_math"))
