import json
import os
import re
import subprocess
import sys
import threading

import pytest

from psr.core.grading import Grade, grade_many

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T = 60.0  # per-item time limit for verdict tests: generous, so a busy machine cannot turn a verdict into a timeout


def boxed(ans: str) -> str:
    return f"Step 1: Work it out.\nStep 2: So the answer is $\\boxed{{{ans}}}$."


def perturb(answer: str) -> str:
    """Add 1 to the first integer in the answer (or append "+1" when it has none)."""
    m = re.search(r"\d+", answer)
    if m is None:
        return answer + "+1"
    return answer[: m.start()] + str(int(m.group()) + 1) + answer[m.end() :]


def _bench(bench_dir, name):
    with open(os.path.join(bench_dir, name), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# --- hand cases, one per normalization class ----------------------------------------------------

# (prediction as the model boxed it, gold, equal?)
DEFAULT_CASES = [
    # fractions vs decimals
    (r"0.5", r"\frac{1}{2}", True),
    (r"\dfrac12", "0.5", True),
    (r"0.333", r"\frac{1}{3}", True),
    (r"0.3", r"\frac{1}{3}", False),
    (r"0.35626", "0.35625", False),
    (r"2\frac{1}{4}", r"\frac{9}{4}", True),
    # units
    (r"5\text{ cm}", "5", True),
    ("12 inches", "12", True),
    (r"18\text{ dollars}", "18", True),
    (r"6\text{ cm}", "5", False),
    ("3s^3", "3s^2", False),
    # degrees
    (r"30^\circ", "30", True),
    (r"30^{\circ}", r"30^\circ", True),
    ("31^\\circ", "30", False),
    # percent
    (r"50\%", "50", True),
    (r"50\%", "0.5", True),
    ("25", r"25\%", True),
    (r"40\%", "0.5", False),
    # intervals
    (r"\left[ -2, 7 \right]", "[-2,7]", True),
    ("(-2,7]", "[-2,7]", False),
    (r"(-\infty, 3) \cup (5, \infty)", r"(-\infty,3)\cup(5,\infty)", True),
    ("(1,2)", "(1,3)", False),
    # sets and several answers (order free)
    (r"\{3, 1, 2\}", r"\{1,2,3\}", True),
    ("2, -3", "-3,2", True),
    (r"\{1,2\}", r"\{1,3\}", False),
    # tuples (ordered)
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})", True),
    ("(2,1)", "(1,2)", False),
    # matrices
    (r"\begin{bmatrix} 1 & 2 \\ 3 & 4 \end{bmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", True),
    (r"\begin{pmatrix} 0.5 & 0 \\ 0 & 1 \end{pmatrix}", r"\begin{pmatrix}\frac{1}{2}&0\\0&1\end{pmatrix}", True),
    (r"\begin{pmatrix} 1 & 2 \\ 3 & 5 \end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", False),
    # text answers
    (r"\text{Monday}", "Monday", True),
    (r"\textbf{(C)}", "C", True),
    ("Tuesday", r"\text{Monday}", False),
    # thousands separators
    ("1,000", "1000", True),
    ("1{,}234{,}567", "1234567", True),
    ("1,001", "1000", False),
    # bases, symbolic forms, equations
    ("1101_4", "1101_4", True),
    ("1101_5", "1101_4", False),
    (r"x^2+2x+1", "(x+1)^2", True),
    ("y = 2x + 3", "2x+3", True),
    (r"\frac{1}{2005!}", r"\frac{1}{2004!}", False),
    (r"\sqrt{8}", r"2\sqrt{2}", True),
]


def test_default_grader_normalization_classes():
    got = grade_many([boxed(p) for p, _, _ in DEFAULT_CASES], [g for _, g, _ in DEFAULT_CASES], "default", timeout=T)
    wrong = [(p, g, want) for (p, g, want), r in zip(DEFAULT_CASES, got, strict=True) if r.correct != want]
    assert not wrong
    assert all(r.failure is None for r in got)
    assert got[0].pred == "0.5"


QWEN_CASES = [  # the evaluator's documented verdicts, its leniencies included
    ("10", "10", True),
    ("10\\%", "0.1", True),
    ("0.5", "50", True),
    ("(1,2,3)", "(1,2,3)", True),
    (r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", True),
    ("x = 10", "10", True),
    ("1,000", "1000", True),
    (r"\frac{1}{2}", "0.5", True),
    ("10", "20", False),
    ("(2,1)", "(1,2)", False),
    (r"x^2+2x+1", "(x+1)^2", True),
    ("3", "2", False),
    # where latex2sympy2_extended reads more than the evaluator's parsers, psr's qwen mode follows the
    # evaluator: lists keep their order, "1:00" is no "12:00" (both 1/0 to the extended parser), no \cfrac
    ("-2,1", "1,-2", False),
    ("1:00", "12:00", False),
    (r"\cfrac{1}{3}", "1/3", False),
    # constants compare as floats with rel_tol 1e-4, underflow included
    (r"27000-4500\pi", r"27001-4500\pi", True),
    (r"\frac{1}{2004!}", r"\frac{2}{2004!}", True),
]


def test_qwen_grader_documented_verdicts():
    got = grade_many([boxed(p) for p, _, _ in QWEN_CASES], [g for _, g, _ in QWEN_CASES], "qwen", timeout=T)
    assert [r.correct for r in got] == [want for _, _, want in QWEN_CASES]
    assert got[1].pred == "10"  # the evaluator's strip_string drops the percent sign


def test_math_verify_grader_and_missing_answers():
    got = grade_many(
        [boxed(r"\frac{1}{2}"), boxed("3"), "I do not know.", "so it is 7"],
        ["0.5", "4", "1", "7"],
        "math-verify",
        timeout=T,
    )
    assert [r.correct for r in got] == [True, False, False, True]  # plain math-verify reads plain numbers too
    assert got[2].failure == "no answer" and got[2].pred is None
    default = grade_many(["I do not know.", "so it is 7"], ["1", "7"], "default", timeout=T)
    assert default[0].failure == "no answer" and default[1].correct  # the last-number fallback


def test_bare_answers_with_extract_false():
    got = grade_many([r"\frac{1}{2}", "2"], ["0.5", "3"], "default", extract=False, timeout=T)
    assert [r.correct for r in got] == [True, False]


def test_model_text_is_never_run_as_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = f"__import__('os').system('touch {marker}')"
    for grader in ("default", "qwen", "math-verify"):
        got = grade_many([boxed(evil), evil], ["1", "1"], grader, timeout=T)
        assert not any(r.correct for r in got)
    assert not marker.exists()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown grader"):
        grade_many(["1"], ["1"], "nope")
    with pytest.raises(ValueError, match="golds"):
        grade_many(["1", "2"], ["1"])
    assert grade_many([], []) == []


# --- time bound ---------------------------------------------------------------------------------

ADVERSARIAL = r"9^{9^{9^{9}}}"


@pytest.mark.parametrize("grader", ["default", "qwen", "math-verify"])
def test_adversarial_answer_times_out_and_the_batch_goes_on(grader):
    got = grade_many([boxed(ADVERSARIAL), boxed("2"), boxed("3")], ["1", "2", "3"], grader, timeout=2.0, workers=2)
    assert got[0] == Grade(got[0].pred, False, "timeout")
    # the other worker goes on with the rest (test_psr_grade_writes_pred_correct_and_summary checks
    # that a replaced worker grades what comes after a timeout)
    assert [r.correct for r in got[1:]] == [True, True]
    assert all(r.failure is None for r in got[1:])


def test_grading_from_a_thread_needs_no_signals():
    # math-verify's own timeouts use signal.alarm, which raises in a non-main thread; ours must not
    box: dict = {}
    t = threading.Thread(
        target=lambda: box.update(
            res=grade_many([boxed("0.5"), boxed(ADVERSARIAL)], ["1/2", "1"], "math-verify", timeout=2.0)
        )
    )
    t.start()
    t.join(120)
    assert not t.is_alive()
    assert [r.correct for r in box["res"]] == [True, False]
    assert box["res"][1].failure == "timeout"


# --- real benchmark golds -----------------------------------------------------------------------


def _self_and_perturbed(bench_dir, files, step, grader):
    recs = [r for name in files for r in _bench(bench_dir, name)[::step]]
    golds = [r["answer"] for r in recs]
    same = grade_many([boxed(g) for g in golds], golds, grader, timeout=T)
    pert = grade_many([boxed(perturb(g)) for g in golds], golds, grader, timeout=T)
    return recs, same, pert


# Known by construction: the Qwen evaluator compares numbers with rel_tol=1e-4 and with percent
# readings (x/100, x*100), and takes the last letter A-E of a prediction when the gold is a choice
# letter ("D+1" -> "D"): these perturbed golds stay "equal" there.
def _qwen_lenient(gold: str, changed: str) -> bool:
    if gold in ("A", "B", "C", "D", "E"):
        return True
    try:
        a, b = float(gold.replace(",", "")), float(changed.replace(",", ""))
    except ValueError:
        return False
    return abs(a - b) <= 1e-4 * abs(a) or abs(a * 100 - b) <= 1e-4 * abs(b) or abs(a / 100 - b) <= 1e-4 * abs(b)


@pytest.mark.parametrize("grader", ["default", "qwen"])
def test_benchmark_golds_graded_against_themselves_and_perturbed(bench_dir, grader):
    files = ["math500_test.jsonl", "gsm8k_test.jsonl", "gaokao2023en_test.jsonl"]
    recs, same, pert = _self_and_perturbed(bench_dir, files, 16, grader)
    assert len(recs) > 130
    for r, s, p in zip(recs, same, pert, strict=True):
        if r.get("gold_issue") or not r["answer"]:
            continue
        assert s.correct, (grader, r["id"], r["answer"], s)
        if grader == "default" or not _qwen_lenient(r["answer"], perturb(r["answer"])):
            assert not p.correct, (grader, r["id"], r["answer"], p)


@pytest.mark.slow
@pytest.mark.parametrize("grader", ["default", "qwen"])
def test_full_benchmark_golds(bench_dir, grader):
    files = ["math500_test.jsonl", "gsm8k_test.jsonl", "gaokao2023en_test.jsonl"]
    recs, same, pert = _self_and_perturbed(bench_dir, files, 1, grader)
    self_fail = [
        r["id"] for r, s in zip(recs, same, strict=True) if not s.correct and not r.get("gold_issue") and r["answer"]
    ]
    assert self_fail == []
    pert_pass = [r["id"] for r, p in zip(recs, pert, strict=True) if p.correct and not r.get("gold_issue")]
    if grader == "default":
        assert pert_pass == []
    else:
        assert len(pert_pass) <= 0.05 * len(recs)  # the evaluator's own leniencies (see _qwen_lenient)


# --- psr grade ----------------------------------------------------------------------------------


def _psr_process(*args, timeout=300):
    env = dict(os.environ, PSR_QUIET="1", PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-m", "psr.cli", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )


@pytest.fixture
def psr(monkeypatch, capfd):
    """Run the psr command in this process (its grading workers are reused between tests)."""
    from psr.cli import main

    def call(*args):
        monkeypatch.setattr(sys, "argv", ["psr", *args])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return call


def _write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_psr_grade_writes_pred_correct_and_summary(tmp_path, psr):
    inp, out, summ = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "s.json"
    _write(
        inp,
        [
            {"id": "a", "output": boxed("1,000"), "answer": "1000", "benchmark": "gsm8k"},
            {"id": "b", "output": boxed("7"), "answer": "8", "benchmark": "gsm8k"},
            {"id": "c", "output": "no idea", "answer": "x", "benchmark": "math"},
            {"id": "d", "output": boxed(ADVERSARIAL), "answer": "1", "benchmark": "math"},
        ],
    )
    res = psr("grade", "-i", str(inp), "-o", str(out), "--summary", str(summ), "--timeout", "2", "--workers", "1")
    assert res.returncode == 0, res.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in recs] == ["a", "b", "c", "d"]
    assert [r["correct"] for r in recs] == [True, False, False, False]
    assert recs[0]["pred"] == "1,000" and recs[0]["benchmark"] == "gsm8k"
    assert recs[2]["grade_failure"] == "no answer" and recs[3]["grade_failure"] == "timeout"
    s = json.loads(summ.read_text())
    assert (s["count"], s["correct"], s["accuracy"], s["no_answer"], s["timeouts"]) == (4, 1, 25.0, 1, 1)
    assert s["benchmarks"]["gsm8k"]["accuracy"] == 50.0
    assert "accuracy" in res.stderr and res.stdout == ""  # the table goes to stderr, records to the file


def test_psr_grade_resumes_without_duplicates(tmp_path, psr):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(inp, [{"id": str(i), "output": boxed(str(i)), "answer": str(i)} for i in range(6)])
    assert psr("grade", "-i", str(inp), "-o", str(out), "--limit", "2").returncode == 0
    assert psr("grade", "-i", str(inp), "-o", str(out), "--grader", "qwen").returncode == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in recs] == [str(i) for i in range(6)]
    assert all(r["correct"] for r in recs)


def test_psr_grade_to_stdout_with_shard(tmp_path, psr):
    inp = tmp_path / "in.jsonl"
    _write(inp, [{"id": str(i), "output": boxed(str(i)), "answer": "1"} for i in range(4)])
    res = psr("grade", "-i", str(inp), "--shard", "1/2")
    assert res.returncode == 0, res.stderr
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(r["id"], r["correct"]) for r in recs] == [("2", False), ("3", False)]


def test_psr_grade_bad_input_is_file_line_exit_2(tmp_path, psr):
    inp = tmp_path / "in.jsonl"
    _write(inp, [{"id": "a", "output": "x", "answer": "1"}, {"id": "b", "answer": "1"}])
    res = _psr_process("grade", "-i", str(inp), "-o", str(tmp_path / "o.jsonl"))  # a real process: exit code
    assert res.returncode == 2
    assert f"{inp}:2:" in res.stderr and "output" in res.stderr
    assert "Traceback" not in res.stderr
    _write(inp, [{"id": "a", "output": "x"}])
    res = psr("grade", "-i", str(inp), "-o", str(tmp_path / "o.jsonl"))
    assert res.returncode == 2 and f"{inp}:1:" in res.stderr and "answer" in res.stderr
    res = psr("grade", "-i", str(inp), "--grader", "nope")
    assert res.returncode == 2 and "--grader" in res.stderr


def test_psr_grade_help_says_what_it_reads_and_writes():
    res = _psr_process("grade", "--help")
    assert res.returncode == 0
    for word in ("output", "answer", "pred", "correct", "--grader", "--summary", "--timeout", "default"):
        assert word in res.stdout


@pytest.mark.slow
def test_psr_grade_resumes_after_kill_9(tmp_path, bench_dir):
    import signal
    import time

    recs = _bench(bench_dir, "math500_test.jsonl")
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(inp, [{"id": r["id"], "output": boxed(r["answer"]), "answer": r["answer"]} for r in recs])
    env = dict(os.environ, PSR_QUIET="1", PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "psr.cli", "grade", "-i", str(inp), "-o", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 20):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = out.read_text().count("\n")
    assert 20 <= partial < len(recs)
    assert subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, timeout=300).returncode == 0
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(r["id"] for r in recs)  # nothing lost, nothing twice
