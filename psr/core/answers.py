"""Where is the final answer in model text? psr's extraction, for the ``default`` grader.

Candidates are found by kind and the one that starts last wins, so a later "the final answer is 7"
beats an earlier intermediate ``\\boxed{}`` and a box written after "The answer is" beats the phrase.
Each rule names the failure kind it exists for (issue 21):

* boxes (``\\boxed``/``\\fbox``, braces matched in one linear pass): the usual answer. Several boxes
  in the final sentence joined only by "and", "or", commas, ``\\quad``, ``\\text{...}`` are one
  answer set (``\\boxed{3} and \\boxed{4}``).
* phrases: "The (final) answer is", "Answer:", "**Answer:**", "Final Answer:", "答案是", an
  "Answer" line; when the phrase runs on as prose ("Final Answer: The largest n is 34.") the
  answer is what follows its last "is", or its last math span or number.
* PRM800K's ``# Answer`` section (the answer is the paragraph after the heading).
* with none of those: the last inline math of the text (``We find that $x \\lt 3$.``, a matrix in
  ``$...$``) unless a plain number comes after it, then the last number (fractions, percents,
  thousands and decimal commas included), never a "Step n:" marker.

Choice letters ("Final answer is B", "A. Because ...") depend on the gold being a letter, so the
grader handles them (psr.core.graders). Everything here is plain string work: nothing is evaluated.
"""

from __future__ import annotations

import re

from psr.core.normalize import is_label

TAIL = 20_000  # characters at the end of a text where phrases and inline answers are looked for
_BOX = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")


def brace_pairs(text: str) -> dict[int, int]:
    """Position of each unescaped ``{`` -> position of its matching ``}`` (one pass, so linear)."""
    pairs, stack = {}, []
    for i, c in enumerate(text):
        if c not in "{}" or (i and text[i - 1] == "\\"):
            continue
        if c == "{":
            stack.append(i)
        elif stack:
            pairs[stack.pop()] = i
    return pairs


def find_boxes(text: str) -> list[tuple[int, int, str]]:
    """Every complete ``\\boxed{...}``/``\\fbox{...}`` (also ``\\boxed 5``) as (start, end, content),
    outermost only; a box cut off by the token limit is skipped."""
    pairs = None
    boxes: list[tuple[int, int, str]] = []
    for m in _BOX.finditer(text):
        if boxes and m.start() < boxes[-1][1]:
            continue  # a box inside the previous one
        j = m.end()
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            pairs = brace_pairs(text) if pairs is None else pairs
            if j in pairs:
                boxes.append((m.start(), pairs[j] + 1, text[j + 1 : pairs[j]].strip()))
        elif j > m.end():
            tok = re.match(r"[^\s$]+", text[j:])
            if tok:
                boxes.append((m.start(), j + tok.end(), tok.group(0)))
    return boxes


def find_boxed(text: str) -> str | None:
    """Content of the last complete box, or None."""
    boxes = find_boxes(text)
    return boxes[-1][2] if boxes else None


# between two boxes of one answer set: connectors, labels ("y_2 ="), short \text{...}, math
# delimiters; no sentence end and no paragraph break
_BOX_JOIN = re.compile(
    r"(?:[\s,;$]|\\[()\[\]]|\\q?quad|\\text\{[^{}]{0,40}\}|\b(?:and|or)\b"
    r"|[a-zA-Z](?:_\{?\w+\}?)?\s*=)*"
)


def _box_group(text: str, boxes: list[tuple[int, int, str]]) -> tuple[int, str]:
    """The last box and the boxes joined to it: (start, answer text; several joined with ", ")."""
    group = [boxes[-1]]
    for prev in reversed(boxes[:-1]):
        gap = text[prev[1] : group[0][0]]
        if len(gap) > 80 or "\n\n" in gap or not _BOX_JOIN.fullmatch(gap):
            break
        group.insert(0, prev)
    if len(group) > 1 and len({b[2] for b in group}) == 1:
        group = group[-1:]  # the same answer boxed twice
    return group[0][0], ", ".join(b[2] for b in group)


# ---------------------------------------------------------------------------------------------
# phrases and sections

_PHRASE = re.compile(
    r"(?:[Tt]he (?:final )?answer is|[Ff]inal [Aa]nswer\s*(?:is)?\s*[:：]?|(?:^|(?<=[\n.!>*#]))[ \t]*(?:\*\*)?[Aa]nswer(?:\*\*)?\s*[:：]"
    r"|(?m:^[ \t>*_]*(?:\*\*)?[Aa]nswer(?:\*\*)?(?=[ \t]*[$\\]))|(?m:^[ \t]*####)|答案是)"
    r"(?:\s*\*\*)?\s*[:：]?\s*(?:\*\*\s*)?"
)
_SECTION = re.compile(r"(?m)^[ \t]*#+[ \t]*(?:Final )?Answer[ \t]*:?[ \t]*$")
# a span's content never holds its own opening delimiter, so a text of 30,000 "\(" is scanned once, not
# once per opening
_MATH_SPAN = re.compile(
    r"\$\$((?:(?!\$\$).)+?)\$\$|(?<![\\$])\$((?:\\\$|[^$\n])+?)(?<!\\)\$"
    r"|\\\(((?:(?!\\\().)+?)\\\)|\\\[((?:(?!\\\[).)+?)\\\]",
    re.S,
)
_SPAN = r"(?:\$[^$]+\$|\\\(.+?\\\))"
_JOINED_SPANS = re.compile(_SPAN + r"(?:\s*(?:,|and|or|,\s*and)\s*" + _SPAN + r")+")
_CALCULATOR = re.compile(r"<<[^<>\n]{0,200}>>")  # GSM8K's calculator marks: "= <<9+6=15>>15"
_SPAN_JOIN = re.compile(r"[ \t]*\n?[ \t]*(?:,|,?\s*and|,?\s*or)[ \t]*\n?[ \t]*")
_ROWS = re.compile(
    r"\\begin\{(aligned|align\*?|gathered|array|split|eqnarray\*?)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}", re.S
)
_JUNK = re.compile(r"<\|im_(?:start|end)\|>.*|<\|endoftext\|>.*|I hope it is correct\.?.*", re.S)
NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:[.,]\d+)?(?:\s*/\s*\d+)?(?:\s*(?:\\?%|percent\b))?|-?\.\d+"
_NUMBER = re.compile(r"(?<![\w.])(?:" + NUMBER + r")(?!\d)")
# one reading per text: no decimal commas, and a comma before three digits is a thousands separator
_VALUE = r"(?:[a-z]\s*=\s*)?-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?"
_LISTED = re.compile(
    r"(?<![\w.=+*/-])"
    + _VALUE
    + r"(?:(?:\s*,(?!\d{3}(?!\d))\s*(?:(?:and|or)\s+)?|\s+(?:and|or)\s+)"
    + _VALUE
    + r")+\s*\.?\s*$"
)  # each separator one way only: no backtracking blow-up
_RESTATED = [
    re.compile(p + r"[$€£]?\s*(" + NUMBER + r")(?![\d,.]\d|\d|\s*(?:[-+*=×(]|[/x]\s*\d))")
    for p in (r"=\s*", r"round(?:s|ed|ing)?(?: up| down)? to (?:about )?", r"which is ")
]
_STEP_MARKER = re.compile(r"(?m)^[ \t>#*_]*Step[ \t]*\d+[ \t]*[:.)]")
_ANSWERISH = re.compile(r"\d|\\|\$|^[A-Za-z]$|^\(?[A-E]\)?$")


def _math_content(m: re.Match) -> str:
    s = next(g for g in m.groups() if g is not None).strip()
    rows = _ROWS.fullmatch(s)
    if rows:  # a derivation: its last row ("x & = 9") holds the result
        last = [r for r in re.split(r"\\\\", rows.group(2)) if r.strip(" \n.,")][-1:]
        s = re.sub(r"^\s*=", "", last[0].replace("&", "")).strip(" \n.,") if last else s
    return s


def _answer_in_prose(tail: str) -> str:
    """The answer at the start of ``tail`` (the text after a phrase): a math span, or the
    sentence, cut down to its answer when it runs on as prose."""
    tail = re.sub(r"^(?:\\?[\"'“])+", "", _JUNK.sub("", tail).strip()).strip()  # a quoted answer
    joined = _JOINED_SPANS.match(tail)
    if joined and len(list(_MATH_SPAN.finditer(joined.group(0)))) > 1:  # "$12$ and $13$"
        return ", ".join(_math_content(m) for m in _MATH_SPAN.finditer(joined.group(0)))
    m = _MATH_SPAN.match(tail)
    if m:
        rest = tail[m.end() :].lstrip()
        if not rest or rest[0] in ".,;\n" or not re.match(r"[a-zA-Z]", rest):
            return _math_content(m)
    line = tail.split("\n", 1)[0].strip()
    line = re.split(r"\.(?:\s|$)", line, maxsplit=1)[0].strip().strip("*").strip()
    if re.search(r"[a-zA-Z]{2,}\s+[a-zA-Z]{2,}", re.sub(r"\$[^$]*\$|\\\(.*?\\\)|\\[a-zA-Z]+", "", line)):
        # prose: "The largest $n$ is 34", "Jane started growing 3 hours ago"
        after_is = re.split(r"\s(?:is|are|was|equals|be)\s", line)
        line = after_is[-1].strip() if len(after_is) > 1 else line
        spans = list(_MATH_SPAN.finditer(line))
        nums = list(_NUMBER.finditer(_strip_math(line)))
        if spans and (not nums or spans[-1].end() >= len(line) - 2 or _ANSWERISH.search(_math_content(spans[-1]))):
            return _math_content(spans[-1])
        if nums:
            return nums[-1].group(0)
    return line.strip("$").strip()


def _strip_math(s: str) -> str:
    """``s`` with its math spans blanked out (same length, so positions still line up)."""
    return _MATH_SPAN.sub(lambda m: " " * len(m.group(0)), s)


def _phrase_candidates(text: str) -> list[tuple[int, str]]:
    out = []
    for m in list(_PHRASE.finditer(text))[-20:]:  # the last few: only the last one that holds an answer counts
        got = _answer_in_prose(text[m.end() : m.end() + 2000])
        if got and _ANSWERISH.search(got):
            out.append((m.end(), got))
    for m in _SECTION.finditer(text):
        body = text[m.end() :].strip().split("\n\n", 1)[0].strip()
        if body:
            out.append((m.end(), _answer_in_prose(body) if "\n" not in body else body))
    return out


def _last_inline_math_or_number(text: str) -> str | None:
    text = _JUNK.sub("", _STEP_MARKER.sub(" ", text))
    spans = [
        m
        for m in _MATH_SPAN.finditer(text)
        if re.search(r"[\d=<>\\]", _math_content(m))
        and not re.match(r"[\d.,]+\s+[a-zA-Z]", _math_content(m))  # "$5 and $6": money, not math
        and not is_label(_math_content(m))
    ]  # "the values of $\angle BAC$": a name, not a value
    nums = list(_NUMBER.finditer(_strip_math(text)))
    if spans and (not nums or spans[-1].start() > nums[-1].start()):
        group = [spans[-1]]  # "the values are $n=69$ and $n=84$.": one answer set
        for prev in reversed(spans[:-1]):
            if not _SPAN_JOIN.fullmatch(text[prev.end() : group[0].start()]):
                break
            group.insert(0, prev)
        return ", ".join(_math_content(m) for m in group)
    if not nums:
        return None
    # "so 9 + 6 = 15 liters of the 24": the value the last line computes, not its last number, unless
    # the line goes on to round it ("= 15.36 minutes, which rounds down to 15")
    last_line = text.rstrip()[text.rstrip().rfind("\n") + 1 :]
    last_line = re.split(r"(?<=[.!?])\s+(?=[A-Z])", last_line[-1000:])[-1]  # its last sentence
    listed = _LISTED.search(last_line)
    if listed and ("=" in listed.group(0) or re.search(r"\bor\b", listed.group(0))):
        # "so x = 2 or x = 3.", "it is 4 or 5": the sentence ends in several values
        return ", ".join(m.group(0).strip() for m in re.finditer(_VALUE, listed.group(0)))
    said = [m for rx in _RESTATED for m in rx.finditer(last_line)]
    computed = max(said, key=lambda m: m.start(1), default=None)
    return (computed.group(1) if computed else nums[-1].group(0)).rstrip(",")


def extract_answer(text: str, use_last_number: bool = True) -> str | None:
    """The final answer in model text, as written (not normalized); None if there is none."""
    text = _CALCULATOR.sub("", text)
    # phrases, inline math and numbers are looked for near the end only (where answers are), so no
    # text makes this slow; boxes anywhere (one linear pass)
    start = max(0, len(text) - TAIL)
    candidates = [(start + i, got) for i, got in _phrase_candidates(text[start:])]
    boxes = find_boxes(text)
    if boxes:
        candidates.append(_box_group(text, boxes))
    if candidates:
        _, got = max(candidates, key=lambda c: c[0])
        inner = find_boxed(got)
        return inner if inner is not None else got
    if use_last_number:
        return _last_inline_math_or_number(text[start:])
    return None
