"""Is a model's final answer equal to the gold one? ``grade_many``: three graders, every item bounded in time.

The graders (psr.core.graders): ``default`` (psr's extraction and comparison on top of
math-verify), ``qwen`` (the Qwen2.5-Math evaluator), ``math-verify`` (plain math-verify).

Time bound: sympy can hang on adversarial input (``9^{9^{9^{9}}}``) and math-verify's own timeout
uses ``signal.alarm`` (main thread only). So every item, extraction included, is graded in a
worker process, one item at a time; a worker that overruns ``timeout`` is killed and replaced, and
the item is graded incorrect with ``failure="timeout"`` (and the answer the worker had extracted
by then, if it got that far: this process never redoes a worker's work). Workers are kept between
calls, and die with this process: a parent-death signal on Linux, a watchdog on the parent pid
elsewhere, so a ``kill -9`` of ``psr grade`` leaves no worker behind.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from multiprocessing.connection import Connection, wait

from psr.core.errors import PsrError
from psr.core.graders import GRADE_FN, GRADERS, Grade, grade_unbounded

__all__ = ["DEFAULT_TIMEOUT", "GRADERS", "Grade", "grade_many", "grade_unbounded"]

DEFAULT_TIMEOUT = 3.0  # seconds per item, as in the Qwen2.5-Math evaluator
WORKER_START_TIMEOUT = 120.0  # seconds for a worker to import sympy and math-verify
WORKER_MEMORY = 8 << 30  # address-space cap per worker: a runaway power fails with MemoryError, not OOM
PARENT_ENV = "PSR_GRADING_PARENT"  # the pid a worker must outlive no longer than a second
PDEATHSIG_ENV = "PSR_GRADING_PDEATHSIG"


# ---------------------------------------------------------------------------------------------
# Worker processes
#
# Plain subprocesses (``python -c``), not multiprocessing: its fork method would copy the caller's
# threads (progress bars, torch) and its spawn/forkserver methods re-import the caller's __main__,
# which breaks scripts without a main guard. Messages are JSON over the worker's stdin/stdout:
# a task, then "P" + the extracted answer as soon as it is known, then "G" + the grade.


def _die_with_parent(parent: int) -> None:
    """Exit when ``parent`` is gone, even in the middle of an item."""
    import signal

    if os.environ.get(PDEATHSIG_ENV) == "1":
        try:
            import ctypes

            # PR_SET_PDEATHSIG: the kernel kills us when the parent thread that started us ends, so it is
            # only armed for workers started by the main thread (a busy worker in C code never polls)
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
        except (OSError, AttributeError):
            pass  # not Linux: the watchdog below

    def watchdog() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    if os.getppid() != parent:
        os._exit(0)  # the parent died before the signal was armed
    threading.Thread(target=watchdog, daemon=True).start()


def _serve() -> None:
    """Worker loop: read [output, gold, grader, extract, question] tasks, answer with Grade fields."""
    parent = int(os.environ.get(PARENT_ENV, os.getppid()))
    _die_with_parent(parent)
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
    try:
        # The LaTeX parser (antlr, pure Python) is slow until its caches fill: a cold worker can take
        # seconds on a first polynomial. Fill them before the per-item clock starts.
        for pred, gold in _WARM_UP:
            for grader in GRADERS:
                grade_unbounded(pred, gold, grader, extract=False)
        outbox.send_bytes(b"ready")
        while True:
            task = json.loads(inbox.recv_bytes())
            grade = grade_unbounded(*task, on_pred=lambda p: outbox.send_bytes(b"P" + json.dumps(p).encode()))
            outbox.send_bytes(b"G" + json.dumps(asdict(grade)).encode())
    except (EOFError, OSError):  # the parent closed our pipes or died: nothing to report to anyone
        os._exit(0)


_WARM_UP = [
    (r"x^2+2x+1", r"(x+1)^2"),
    (r"\frac{\sqrt{3}}{2}", r"0.5\pi"),
    (r"(-\infty, 3) \cup [5, 7]", r"\{1, 2\}"),
    (r"\begin{pmatrix} 1 & -2 \\ 3 & 4 \end{pmatrix}", r"y = 2x - 3"),
    (r"\sin^{2} \theta + e^{i}", r"10^{\circ}"),
]


class _Worker:
    def __init__(self):
        import psr

        root = os.path.dirname(os.path.dirname(os.path.abspath(psr.__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        env[PARENT_ENV] = str(os.getpid())
        env[PDEATHSIG_ENV] = "1" if threading.current_thread() is threading.main_thread() else "0"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from psr.core.grading import _serve; _serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.outbox = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self.conn = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.ready = False
        self.index: int | None = None
        self.pred: str | None = None  # the current item's answer, once the worker has extracted it
        self.deadline = time.monotonic() + WORKER_START_TIMEOUT

    def submit(self, index: int, task: list, timeout: float) -> None:
        self.index, self.pred, self.deadline = index, None, time.monotonic() + timeout
        self.outbox.send_bytes(json.dumps(task).encode())

    def receive(self) -> Grade | None:
        """The grade, or None after a message with the extracted answer only."""
        msg = self.conn.recv_bytes()
        if msg[:1] == b"P":
            self.pred = json.loads(msg[1:])
            return None
        return Grade(**json.loads(msg[1:]))

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


def grade_many(
    outputs: Sequence[str],
    golds: Sequence[str],
    grader: str = "default",
    *,
    timeout: float = DEFAULT_TIMEOUT,
    extract: bool = True,
    workers: int | None = None,
    questions: Sequence[str | None] | None = None,
    on_result: Callable[[int, Grade], None] | None = None,
) -> list[Grade]:
    """Grade ``outputs[i]`` (model text, or bare answers with ``extract=False``) against ``golds[i]``.

    Runs in ``workers`` processes (default: one per CPU); an item that takes longer than ``timeout``
    seconds is graded incorrect with ``failure="timeout"``. ``questions[i]`` (optional) lets the
    default grader see whether a question asks for a percent. ``on_result(i, grade)`` is called as
    each item finishes (in completion order), e.g. to write records as they come.
    """
    if grader not in GRADE_FN:
        raise ValueError(f"unknown grader {grader!r}; choose one of {', '.join(GRADERS)}")
    if len(outputs) != len(golds) or (questions is not None and len(questions) != len(golds)):
        raise ValueError(
            f"{len(outputs)} outputs but {len(golds)} golds"
            + (f" and {len(questions)} questions" if questions is not None else "")
        )
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
            w.submit(i, [outputs[i], golds[i], grader, extract, questions[i] if questions else None], timeout)

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
                        raise PsrError(
                            'a grading worker failed to start; run `python -c "import psr.core.grading"` to see why'
                        )
                    feed(w)
                elif w.conn in ready:
                    try:
                        got = w.receive()
                    except (EOFError, OSError):  # killed from outside, or crashed in C code
                        finish(w.index, Grade(w.pred, False, "worker died"))
                        w = replace(w)
                        continue
                    if got is not None:
                        finish(w.index, got)
                        feed(w)
                elif time.monotonic() >= w.deadline:
                    if not w.ready:
                        raise PsrError(f"a grading worker did not start within {WORKER_START_TIMEOUT:.0f} s")
                    finish(w.index, Grade(w.pred, False, "timeout"))
                    replace(w)
    except BaseException:
        for w in pool:
            w.close()
        raise
    _IDLE.extend(pool)
    return results  # type: ignore[return-value]
