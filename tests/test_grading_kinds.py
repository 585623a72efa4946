"""Each failure kind of issue 21, with psr's own cases, for each grader.

Columns: the default grader's verdict (the right one), the Qwen2.5-Math evaluator's (what its
extract_answer + math_equal do, quirks included) and plain math-verify's."""

import pytest

from psr.core.grading import grade_many

T = 60.0  # generous per-item limit: a busy machine must not turn a verdict into a timeout

# (kind, output, gold, default, qwen, math-verify)
CASES = [
    # where the final answer is
    (
        "answer section",
        "We add the parts.\n\n13/18 of the cake is left.\n\n# Answer\n\n13/18",
        r"\frac{13}{18}",
        True,
        False,
        True,
    ),  # qwen: the last number, 18
    ("answer section", "First, 4 + 5 = 9.\n\n# Answer\n\n9", "9", True, True, True),
    ("Answer: line", "The total is twelve dollars.\nAnswer: 12", "12", True, True, True),
    ("**Answer:** line", "So the slope is found.\n\n**Answer:** \\( \\frac{3}{4} \\)", r"\frac34", True, False, True),
    (
        "Final Answer: prose",
        "Checking all cases, 41 works.\nFinal Answer: The smallest prime is 41.",
        "41",
        True,
        True,
        True,
    ),
    ("trailing inline math", r"Solving the inequality we find that $y \lt -2$.", "y < -2", True, False, True),
    (
        "trailing inline matrix",
        r"The inverse matrix is $\begin{pmatrix} 2 & 0 \\ 0 & 3 \end{pmatrix}$.",
        r"\begin{pmatrix}2&0\\0&3\end{pmatrix}",
        True,
        False,
        True,
    ),
    (
        "inline matrix with a label",
        r"Hence $A^{-1} = \begin{pmatrix} 1 & 2 \\ 0 & 1 \end{pmatrix}$",
        r"\begin{pmatrix}1&2\\0&1\end{pmatrix}",
        True,
        False,
        True,
    ),
    (
        "later final answer beats a box",
        r"First $\boxed{x = 4}$ for part one. Then add 3. The final answer is $7$.",
        "7",
        True,
        False,
        True,
    ),
    ("choice letter after a phrase", "Comparing the options, the final answer is D", "D", True, True, False),
    ("choice letter leading", "C. The other options fail at n = 2.", "C", True, False, False),
    # several answers
    ("boxes in the final sentence", r"The roots are $\boxed{5}$ and $\boxed{-1}$.", "-1, 5", True, False, True),
    ("boxes joined by commas", r"So $x = \boxed{2}$, $\boxed{4}$, $\boxed{6}$.", r"\{2,4,6\}", True, False, True),
    ("boxes, one answer wrong", r"The roots are $\boxed{5}$ and $\boxed{-1}$.", "-1, 6", False, False, False),
    (r"\text{ and }", r"$\boxed{3 \text{ and } 8}$", "3, 8", True, True, True),  # qwen: "38" vs "3,8", commas dropped
    (r"\quad", r"$\boxed{x = 2 \quad x = 9}$", "2, 9", True, False, False),
    ("semicolon", r"$\boxed{4; 7}$", "4, 7", True, False, True),  # qwen: "4;7" and "4,7" are two texts there
    (r"\text{ or }", r"$\boxed{10 \text{ or } 20}$", "10, 20", True, False, True),
    (r"\pm vs a set", r"$\boxed{\pm 7}$", "-7, 7", True, False, True),  # qwen: "pm" is in its unit list
    (r"a set vs \pm", r"$\boxed{\{-3, 3\}}$", r"\pm 3", True, False, True),
    ("repeated tuples", r"$\boxed{(1, 4), (4, 1), (1,4)}$", "(4,1),(1,4)", True, False, True),
    # forms
    ("decimal comma", r"The answer is $\boxed{3,75}$.", "3.75", True, True, False),
    (r"thousands ,\!", r"$\boxed{45,\! 120}$", "45120", True, True, True),
    ("thousands space", r"$\boxed{2 500}$", "2500", True, True, False),
    ("comma and space is a list", r"$\boxed{45, 120}$", "45120", False, True, False),  # qwen drops the space
    ("pct", r"$\boxed{35 pct}$", r"35\%", True, False, True),
    ("percentage", r"$\boxed{35 percentage}$", r"35\%", True, False, True),
    (r"\textbf unit", r"$\boxed{8 \textbf{ km}}$", "8", True, False, True),
    (r"\textnormal unit", r"$\boxed{8\textnormal{ km}}$", "8", True, False, True),
    (r"\mbox unit", r"$\boxed{8 \mbox{ km}}$", "8", True, True, True),
    ("interval for an inequality", r"$\boxed{(-\infty,-3)}$", "t < -3", True, False, True),
    ("interval for a double inequality", r"$\boxed{[\frac13, 4]}$", r"\frac13 \le t \le 4", True, False, True),
    ("interval, wrong end", r"$\boxed{(-\infty,-3]}$", "t < -3", False, False, False),
    ("inequality vs inequality", r"$\boxed{-3 > t}$", r"t \lt -3", True, False, False),
    # an inequality does not answer "in interval notation" (math-verify's rule, no new false positive)
    ("inequality for an interval", r"$\boxed{t < -3}$", r"(-\infty,-3)", False, False, False),
    ("equation rearranged", r"$\boxed{y = 3x - 2}$", "3x - y - 2 = 0", True, False, True),
    ("equation rearranged, wrong", r"$\boxed{y = 3x + 2}$", "3x - y - 2 = 0", False, False, False),
    ("solutions as equations", r"$\boxed{(1, 3), (2, 5)}$", "a=1,b=3;a=2,b=5", True, False, True),
    # the false positive
    ("an equation is not its right side", r"$\boxed{2b+d}$", "5 = 2b+d", False, True, False),  # qwen drops "5 ="
    ("a label is", r"$\boxed{2b+d}$", "y = 2b+d", True, True, True),
]


@pytest.fixture(scope="module")
def grades():
    outs, golds = [c[1] for c in CASES], [c[2] for c in CASES]
    return {g: grade_many(outs, golds, g, timeout=T) for g in ("default", "qwen", "math-verify")}


@pytest.mark.parametrize("grader, col", [("default", 3), ("qwen", 4), ("math-verify", 5)])
@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_failure_kinds(grades, grader, col, i):
    case, got = CASES[i], grades[grader][i]
    assert got.correct == case[col], (grader, case[:3], got)
    assert got.failure is None or (got.failure == "no answer" and not case[col])


def test_percent_questions_read_a_bare_number_as_percent():
    q = "What percent of the marbles are red?"
    got = grade_many(
        [r"$\boxed{0.2}$", r"$\boxed{20}$", r"$\boxed{20\%}$", r"$\boxed{0.2}$"],
        [r"20\%", r"20\%", "20", r"20\%"],
        "default",
        timeout=T,
        questions=[q, q, q, None],
    )
    # 0.2 does not answer "what percent" (it is 0.2%); without the question either reading is taken
    assert [g.correct for g in got] == [False, True, True, True]
