"""Final answers: extract them from model text and normalize them for comparison.

Two families live here:

* psr's own extraction (``extract_answer``): the last ``\\boxed{...}``/``\\fbox{...}`` with brace
  matching, then the usual phrases ("The answer is ...", "Final Answer: ..."), then the last number;
  plus the normalization helpers that the ``default`` grader uses.
* ``qwen_extract_answer`` / ``qwen_strip_string``: the Qwen2.5-Math evaluator's rules (its
  ``evaluation/parser.py``), re-written from their documented behaviour, quirks included (the
  benchmark golds in ../shared/benchmarks were produced by exactly these rules).

Everything here is plain string work: nothing is evaluated.
"""

from __future__ import annotations

import functools
import re

# ---------------------------------------------------------------------------------------------
# psr's extraction

_BOX = re.compile(r"\\(?:boxed|fbox)\b")


def _match_braces(text: str, start: int) -> str | None:
    """Content of the brace group opening at ``text[start] == "{"``, or None if it never closes."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "{" and text[i - 1:i] != "\\":
            depth += 1
        elif c == "}" and text[i - 1:i] != "\\":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
    return None


def find_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` (nested braces matched), or None.

    ``\\boxed 5`` (no braces) gives ``5``. A box that never closes (a cut-off output) is skipped in
    favour of an earlier complete one.
    """
    for m in reversed(list(_BOX.finditer(text))):
        rest = text[m.end():]
        stripped = rest.lstrip()
        if stripped.startswith("{"):
            got = _match_braces(text, m.end() + len(rest) - len(stripped))
            if got is not None:
                return got.strip()
        elif stripped and rest[:1] == " ":
            tok = re.match(r"[^\s$]+", stripped)
            if tok:
                return tok.group(0)
    return None


# "The answer is X", "final answer is X", "Final Answer: X", "答案是 X"; the last one wins.
_PHRASE = re.compile(r"(?:[Tt]he (?:final )?answer is|[Ff]inal [Aa]nswer\s*[:：]|答案是)\s*[:：]?\s*")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _answer_after_phrase(tail: str) -> str:
    tail = tail.strip()
    if tail.startswith("$"):
        # a math span: "$\frac{1}{2}$." or "$$x=3$$"
        m = re.match(r"\$\$(.+?)\$\$|\$(.+?)\$", tail, re.S)
        if m:
            return (m.group(1) or m.group(2)).strip()
    if tail.startswith("\\(") and "\\)" in tail:
        return tail[2:tail.index("\\)")].strip()
    if tail.startswith("\\[") and "\\]" in tail:
        return tail[2:tail.index("\\]")].strip()
    line = tail.split("\n", 1)[0].strip()
    # end of the sentence: a period followed by a space or the end, not a decimal point
    line = re.split(r"\.(?:\s|$)", line, maxsplit=1)[0]
    return line.strip().strip("$").strip()


def extract_answer(text: str, use_last_number: bool = True) -> str | None:
    """The final answer in model text, as written (not normalized); None if there is none."""
    boxed = find_boxed(text)
    if boxed is not None:
        return boxed
    if "final answer is $" in text and "$. I hope" in text:  # the Minerva few-shot format
        return text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    hits = list(_PHRASE.finditer(text))
    if hits:
        got = _answer_after_phrase(text[hits[-1].end():])
        if got:
            return got
    if use_last_number:
        # "Step 3:" markers are numbering, not answers: an unfinished "Step 1: Tom starts" has none.
        nums = _NUMBER.findall(_STEP_MARKER.sub(" ", text))
        if nums:
            return nums[-1].rstrip(",")
    return None


_STEP_MARKER = re.compile(r"(?m)^[ \t>#*_]*Step[ \t]*\d+[ \t]*[:.)]")


# ---------------------------------------------------------------------------------------------
# Normalization helpers for the default grader. They only rewrite strings; sympy comparison is
# in psr.core.grading.

_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:(?:,|\{,\}|\\,)\d{3})+(?:\.\d+)?$")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_PERCENT = re.compile(r"\\?%|\s*\\text\{\s*percent\s*\}|\s+percent$")
UNIT_WORDS = {
    # length, area, volume, mass, time, speed, money, counting nouns that often trail a number
    "mm", "cm", "m", "km", "in", "inch", "inches", "ft", "foot", "feet", "yd", "yard", "yards", "mile", "miles",
    "meter", "meters", "metre", "metres", "centimeter", "centimeters", "kilometer", "kilometers",
    "sq", "square", "cubic", "units", "unit", "g", "kg", "gram", "grams", "kilogram", "kilograms", "lb", "lbs",
    "pound", "pounds", "ounce", "ounces", "oz", "l", "liter", "liters", "litre", "litres", "ml", "gallon", "gallons",
    "s", "sec", "second", "seconds", "min", "minute", "minutes", "h", "hr", "hrs", "hour", "hours", "day", "days",
    "week", "weeks", "month", "months", "year", "years", "mph", "kph", "dollar", "dollars", "cent", "cents",
    "degree", "degrees", "radian", "radians", "percent", "people", "students", "times", "ways", "points",
}
# a number, then words (and ^2/^3) up to the end; one flat character class, so no backtracking blow-up
_TRAILING_WORDS = re.compile(r"^(.*?\d[^a-zA-Z]*?)\s*([a-zA-Z][a-zA-Z.\s^{}²³23]*)$")


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
    m = re.match(r"^(.*?\S)\s*\\(?:text|mbox|mathrm)\s*\{\s*[a-zA-Z][a-zA-Z .^]*\}\s*(?:\^\{?[23]\}?)?$", s)
    if m and re.search(r"\d", m.group(1)):
        s = m.group(1).strip()
    m = _TRAILING_WORDS.match(s)
    if m and all(w.strip(".").lower() in UNIT_WORDS for w in re.findall(r"[a-zA-Z]+\.?", m.group(2))):
        # a one-letter unit ("5 s", "3 m") needs a space before it: "3s^2" is algebra
        if len(re.match(r"[a-zA-Z]*", m.group(2)).group(0)) > 1 or s[len(m.group(1)):][:1].isspace():
            s = m.group(1).strip()
    return s


def strip_thousands(s: str) -> str:
    """``1,234,567`` / ``1{,}234`` / ``1\\,234`` -> ``1234567``; a tuple such as ``1,23`` is left alone."""
    t = s.strip()
    if _THOUSANDS.match(t):
        return re.sub(r"\{,\}|\\,|,", "", t)
    return s


def normalize(s: str) -> str:
    """A canonical string for equality: LaTeX noise, units, degrees, thousands separators removed.

    Percent signs are kept (``50\\%`` must not silently equal ``50`` or ``0.5`` by string); the
    grader compares percents numerically.
    """
    s = s.strip()
    s = re.sub(r"\\[\[\]()]", "", s)  # \[ \] \( \) delimiters
    s = s.replace("\\$", "").replace("$", "").replace("\\!", "").replace("\\displaystyle", "")
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\(?:left|right|bigg|Bigg|big|Big)(?![a-zA-Z])", "", s)
    s = s.replace("\\{", "{").replace("\\}", "}")
    s = re.sub(r"(?<!\\)\\[ ;,:]", " ", s).replace("\\quad", " ")  # LaTeX spaces, not a "\\" row break
    s = s.replace("bmatrix", "pmatrix").replace("\\le ", "\\leq ").replace("\\ge ", "\\geq ")
    s = _DEGREES.sub("", s)
    s = strip_units(s)
    s = strip_text_commands(s)
    s = s.rstrip(".").strip()
    # "x = 5", "k=5" -> "5" (a short name on the left only, so real equations stay whole)
    m = re.match(r"^\\?[a-zA-Z]{1,2}(?:_\{?\w+\}?)?\s*=\s*([^=]+)$", s)
    if m:
        s = m.group(1)
    m = re.match(r"^[a-zA-Z]\s*\\in\s*(.+)$", s)
    if m:
        s = m.group(1)
    s = strip_thousands(s)
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"(\d)\.0+(?!\d)", r"\1", s)  # 3.00 -> 3
    s = re.sub(r"^\((\w)\)$", r"\1", s)  # "(C)" -> "C" (a choice letter)
    return s.lower() if re.fullmatch(r"[A-Za-z ]+", s) else s


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


# ---------------------------------------------------------------------------------------------
# The Qwen2.5-Math evaluator's rules (QwenLM/Qwen2.5-Math, evaluation/parser.py), kept faithful,
# quirks included: e.g. its unit list holds "a", "c", "t", "east", so "b > a > c" strips to ""
# (benchmarks README, `gold_issue`). Unit patterns are regexes there (not escaped), so "q ." also
# matches "q x"; reproduced as such.

_QWEN_UNITS = [
    "east", "degree", "mph", "kmph", "ft", "m sqaure", " m east", "sq m", "deg", "mile", "q .", "monkey", "prime",
    "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per", "dm", "lt", "gain", "ab", "way", "west",
    "a .", "b .", "c .", "d .", "e .", "f .", "g .", "h .", "t", "a", "h", "no change", "men", "soldier", "pie", "bc",
    "excess", "st", "inches", "noon", "percent", "by", "gal", "kmh", "c", "acre", "rise", "a . m", "th", "π r 2", "sq",
    "mark", "l", "toy", "coin", "sq . m", "gallon", "° f", "profit", "minw", "yr", "women", "feet", "am", "pm", "hr",
    "cu cm", "square", "v â € ™", "are", "rupee", "rounds", "cubic", "cc", "mtr", "s", "ohm", "number", "kmph", "day",
    "hour", "minute", "min", "second", "man", "woman", "sec", "cube", "mt", "sq inch", "mp", "∏ cm ³", "hectare",
    "more", "sec", "unit", "cu . m", "cm 2", "rs .", "rs", "kg", "g", "month", "km", "m", "cm", "mm", "apple", "liter",
    "loss", "yard", "pure", "year", "increase", "decrease", "d", "less", "Surface", "litre", "pi sq m", "s .",
    "metre", "meter", "inch",
]
_QWEN_UNITS = _QWEN_UNITS + [u + "s" for u in _QWEN_UNITS]
# (pattern, literal text that must occur for it to match): the substring test skips most patterns
_QWEN_UNIT_RES = [(re.compile(r"(^|\W)" + u + r"($|\W)"), None if "." in u else u) for u in _QWEN_UNITS]

# The word2number package's vocabulary (used by the evaluator's convert_word_number).
_SMALL = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_W2N = {w: i for i, w in enumerate(_SMALL)}
_W2N.update({w: 10 * i for i, w in enumerate(["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty",
                                              "ninety"], 2)})
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
        words, dec = words[:i], words[i + 1:]
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
                total += _w2n_group(words[b + 1:m] if b > -1 else words[:m]) * 10**6
            if th > -1:
                start = m + 1 if m > -1 else (b + 1 if b > -1 else 0)
                total += _w2n_group(words[start:th]) * 1000
            if th > -1 and th != len(words) - 1:
                total += _w2n_group(words[th + 1:])
            elif m > -1 and m != len(words) - 1:
                total += _w2n_group(words[m + 1:])
            elif b > -1 and b != len(words) - 1:
                total += _w2n_group(words[b + 1:])
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
