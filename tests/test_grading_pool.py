"""The grading pool: every piece of work under the time bound, workers that die with their parent."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from psr.core.grading import grade_many

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADVERSARIAL = r"9^{9^{9^{9}}}"  # sympy computes the power for minutes


def _in_thread(fn, limit: float = 300.0):
    """Run ``fn`` in a thread and fail (instead of hanging the suite) if it is not back in ``limit`` s."""
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(res=fn()), daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), "grading did not come back"
    return box["res"]


@pytest.mark.parametrize("grader", ["default", "qwen"])
def test_a_timeout_keeps_the_answer_the_worker_extracted(grader):
    # the parent process never re-extracts (that was quadratic in the number of boxes): the worker
    # reports its answer before it compares, and a timeout keeps it
    got = grade_many([f"So $\\boxed{{{ADVERSARIAL}}}$."], ["1"], grader, timeout=2.0)
    assert got[0].failure == "timeout" and not got[0].correct
    assert got[0].pred == ADVERSARIAL


def test_hostile_shapes_get_an_outcome_each():
    n = 100_000
    outputs = [
        "\\boxed{" * 16_000,  # 16k unclosed boxes: quadratic extraction before
        "\\boxed{" + "(" * n + "1" + ")" * n + "}",  # 100k nested brackets (RecursionError before)
        "{" * n + "}" * n,
        "[" * n + "2",
        r"The answer is $\boxed{2}$.",
    ]
    for grader in ("default", "qwen", "math-verify"):
        # (((1))) is 1, so the nested one is graded against 3
        got = _in_thread(lambda g=grader: grade_many(outputs, ["1", "3", "1", "1", "2"], g, timeout=2.0))
        assert [r.correct for r in got] == [False] * 4 + [True], grader
        assert got[1].failure is not None, grader  # said why: nesting, timeout or error
    nested = grade_many(outputs[1:2], ["3"], "default", timeout=60.0)[0]
    assert nested.failure == "error: brackets nested deeper than 100"


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as fh:
            kids |= {int(k) for k in fh.read().split()}
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_psr_grade(tmp_path):
    inp, out, err = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "err.txt"
    recs = [
        {"id": "easy", "output": r"\boxed{1}", "answer": "1"},
        {"id": "busy", "output": f"\\boxed{{{ADVERSARIAL}}}", "answer": "1"},
    ]
    inp.write_text("".join(json.dumps(r) + "\n" for r in recs))
    env = dict(os.environ, PSR_QUIET="1", PYTHONPATH=ROOT)
    with open(err, "w") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "psr.cli",
                "grade",
                "-i",
                str(inp),
                "-o",
                str(out),
                "--workers",
                "2",
                "--timeout",
                "600",
            ],
            env=env,
            cwd=ROOT,
            stderr=fh,
        )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") >= 1):
            assert proc.poll() is None, err.read_text()
            time.sleep(0.1)
        workers = _children(proc.pid)
        assert len(workers) == 2  # one idle (it graded "easy"), one busy with the power
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert left == []
    time.sleep(0.5)  # let anything a dying worker writes reach the file
    assert "Traceback" not in err.read_text() and "Error" not in err.read_text()
